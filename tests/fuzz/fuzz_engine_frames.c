/* libFuzzer target: engine_frame_parse, walked over the input as the attach stream would be. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runner/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy so that any over-read is caught. */
	uint8_t *buf = malloc(size ? size : 1);
	struct engine_frame f;
	size_t pos = 0;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	while (pos < size && engine_frame_parse(buf + pos, size - pos, &f) == PARSE_OK) {
		if (f.size < ENGINE_FRAME_HDR || f.size > size - pos || f.len != f.size - 8)
			abort();
		pos += f.size;
	}
	free(buf);
	return 0;
}

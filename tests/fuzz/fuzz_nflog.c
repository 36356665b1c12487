/* libFuzzer target: nflog_parse_packet.  The first byte picks the family. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "enforcer/nflog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nflog_pkt p = { .prefix = "fuzz" };

	if (size < 1)
		return 0;
	int family = data[0] & 1 ? AF_INET6 : AF_INET;
	/* An exact-size copy so that any over-read is caught. */
	uint8_t *buf = malloc(size - 1 ? size - 1 : 1);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1);
	nflog_parse_packet(buf, size - 1, family, &p);
	free(buf);
	return 0;
}

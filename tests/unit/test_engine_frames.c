/* The attach stream frame parser: a table of byte strings and what it must make of them. */
#include "common/moat.h"
#include "runner/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

struct frame_case {
	const char *name;
	const char *in;
	size_t len;
	enum parse_result want;
	uint8_t stream;
	const char *payload;     /* when OK */
	size_t plen;
	size_t size;
};

#define B(s) .in = s, .len = sizeof(s) - 1

static const struct frame_case cases[] = {
	{ .name = "empty", B(""), .want = PARSE_NEED_MORE },
	{ .name = "stream byte only", B("\x01"), .want = PARSE_NEED_MORE },
	{ .name = "half a header", B("\x01\0\0\0\0"), .want = PARSE_NEED_MORE },
	{ .name = "header, payload missing", B("\x01\0\0\0\0\0\0\x03"), .want = PARSE_NEED_MORE },
	{ .name = "payload short by one", B("\x01\0\0\0\0\0\0\x03ou"), .want = PARSE_NEED_MORE },
	{ .name = "stdout frame", B("\x01\0\0\0\0\0\0\x03out"), .want = PARSE_OK, .stream = 1,
	  .payload = "out", .plen = 3, .size = 11 },
	{ .name = "stderr frame", B("\x02\0\0\0\0\0\0\x04" "err\n"), .want = PARSE_OK, .stream = 2,
	  .payload = "err\n", .plen = 4, .size = 12 },
	{ .name = "stdin frame", B("\x00\0\0\0\0\0\0\x01x"), .want = PARSE_OK, .stream = 0,
	  .payload = "x", .plen = 1, .size = 9 },
	{ .name = "empty payload", B("\x01\0\0\0\0\0\0\0"), .want = PARSE_OK, .stream = 1,
	  .payload = "", .plen = 0, .size = 8 },
	{ .name = "first of two frames", B("\x01\0\0\0\0\0\0\x01" "a\x02\0\0\0\0\0\0\x01" "b"),
	  .want = PARSE_OK, .stream = 1, .payload = "a", .plen = 1, .size = 9 },
	{ .name = "payload with NUL bytes", B("\x01\0\0\0\0\0\0\x03" "a\0b"), .want = PARSE_OK,
	  .stream = 1, .payload = "a\0b", .plen = 3, .size = 11 },
	{ .name = "stream 3", B("\x03\0\0\0\0\0\0\x01x"), .want = PARSE_INVALID },
	{ .name = "stream 0xff", B("\xff"), .want = PARSE_INVALID },
	{ .name = "non-zero padding byte 1", B("\x01\x01"), .want = PARSE_INVALID },
	{ .name = "non-zero padding byte 3", B("\x01\0\0\x01\0\0\0\x01x"), .want = PARSE_INVALID },
	{ .name = "text, not a frame (tty stream)", B("hello world\n"), .want = PARSE_INVALID },
	{ .name = "length at the cap", B("\x01\0\0\0\0\x10\0\0"), .want = PARSE_NEED_MORE },
	{ .name = "length over the cap", B("\x01\0\0\0\0\x10\0\x01"), .want = PARSE_INVALID },
	{ .name = "length 4 GiB - 1", B("\x01\0\0\0\xff\xff\xff\xff"), .want = PARSE_INVALID },
	{ .name = "big-endian length 0x0102", B("\x01\0\0\0\0\0\x01\x02"), .want = PARSE_NEED_MORE },
};

static void test_frame_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct frame_case *c = &cases[i];
		struct engine_frame f = { 0 };
		/* an exact-size copy, so any over-read shows under ASan */
		uint8_t *buf = malloc(c->len ? c->len : 1);
		assert_non_null(buf);
		memcpy(buf, c->in, c->len);
		enum parse_result r = engine_frame_parse(buf, c->len, &f);
		bool same = r != PARSE_OK ||
			    (f.stream == c->stream && f.len == c->plen && f.size == c->size &&
			     f.payload == buf + 8 && memcmp(f.payload, c->payload, c->plen) == 0);
		free(buf);
		if (r != c->want)
			fail_msg("%s: got %d, want %d", c->name, r, c->want);
		if (!same)
			fail_msg("%s: stream %u len %zu size %zu", c->name, f.stream, f.len, f.size);
	}
}

/* Every prefix of a valid frame is NEED_MORE, the whole is OK. */
static void test_frame_prefixes(void **state)
{
	static const uint8_t fr[] = { 2, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o' };
	struct engine_frame f;

	for (size_t n = 0; n < sizeof(fr); n++)
		assert_int_equal(engine_frame_parse(fr, n, &f), PARSE_NEED_MORE);
	assert_int_equal(engine_frame_parse(fr, sizeof(fr), &f), PARSE_OK);
	assert_int_equal(f.size, sizeof(fr));
}

/* A frame as large as allowed parses. */
static void test_frame_max(void **state)
{
	size_t n = ENGINE_FRAME_HDR + ENGINE_FRAME_MAX;
	uint8_t *buf = calloc(1, n);
	struct engine_frame f;

	assert_non_null(buf);
	buf[0] = 1;
	buf[5] = (ENGINE_FRAME_MAX >> 16) & 0xff;
	assert_int_equal(engine_frame_parse(buf, n - 1, &f), PARSE_NEED_MORE);
	assert_int_equal(engine_frame_parse(buf, n, &f), PARSE_OK);
	assert_int_equal(f.len, ENGINE_FRAME_MAX);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_table),
		cmocka_unit_test(test_frame_prefixes),
		cmocka_unit_test(test_frame_max),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

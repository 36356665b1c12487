/* TLS ClientHello parser: real captures from curl, openssl and python (tests/data/clienthello,
 * made by tools/capture-clienthello), every prefix and every re-framing of them, and a table of
 * synthesized malformed hellos. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/moat.h"
#include "tproxy/tls.h"

/* The captures, from the source tree whatever the working directory. */
static const char *const data_dirs[] = {
	"tests/data/clienthello",
#ifdef MOAT_SRC_PROFILE_DIR
	MOAT_SRC_PROFILE_DIR "/../../tests/data/clienthello",
#endif
	"../tests/data/clienthello",
	"../../tests/data/clienthello",
};

static uint8_t scratch[TLS_HELLO_MAX];

/* ---- a byte builder ---- */
struct bb {
	uint8_t b[3 * TLS_HELLO_MAX];
	size_t n;
};

static void put8(struct bb *b, unsigned v)
{
	assert_true(b->n + 1 <= sizeof(b->b));
	b->b[b->n++] = (uint8_t)v;
}
static void put16(struct bb *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v & 0xff);
}
static void put24(struct bb *b, unsigned v)
{
	put8(b, v >> 16);
	put16(b, v & 0xffff);
}
static void put(struct bb *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static struct bb *bb_new(void)
{
	struct bb *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	return b;
}

/* Re-frames a handshake message into records of at most rec bytes. */
static void frame(struct bb *out, const uint8_t *hs, size_t n, size_t rec)
{
	for (size_t off = 0; off < n; off += rec) {
		size_t k = n - off < rec ? n - off : rec;

		put8(out, 22);
		put16(out, 0x0301);
		put16(out, (unsigned)k);
		put(out, hs + off, k);
	}
}

/* Extracts the handshake bytes of a capture (concatenated record fragments). */
static void unframe(struct bb *hs, const uint8_t *raw, size_t n)
{
	size_t pos = 0;

	while (pos + 5 <= n) {
		size_t k = (size_t)raw[pos + 3] << 8 | raw[pos + 4];

		assert_true(pos + 5 + k <= n);
		put(hs, raw + pos + 5, k);
		pos += 5 + k;
	}
	assert_int_equal(pos, n);
}

/* ---- captures ---- */
struct capture_case {
	const char *file;
	const char *sni;        /* NULL: no server_name */
	bool alpn_h2, alpn_http11;
};

static const struct capture_case captures[] = {
	{ "curl.bin", "allowed.test", true, true },
	{ "curl-http11.bin", "allowed.test", false, true },
	{ "openssl-sni.bin", "allowed.test", false, false },
	{ "openssl-nosni.bin", NULL, false, false },
	{ "openssl-tls12.bin", "allowed.test", false, false },
	{ "openssl-big.bin", "a-rather-long-name.allowed.test", true, true },
	{ "python-sni.bin", "allowed.test", false, false },
	{ "python-nosni.bin", NULL, false, false },
};

static uint8_t *load(const char *file, size_t *len)
{
	char path[1024];
	FILE *f = NULL;
	uint8_t *buf = malloc(TLS_HELLO_MAX);
	const char *env = getenv("MOAT_TEST_DATA");

	assert_non_null(buf);
	if (env) {
		snprintf(path, sizeof(path), "%s/clienthello/%s", env, file);
		f = fopen(path, "rb");
	}
	for (size_t i = 0; !f && i < ARRAY_SIZE(data_dirs); i++) {
		snprintf(path, sizeof(path), "%s/%s", data_dirs[i], file);
		f = fopen(path, "rb");
	}
	if (!f)
		fail_msg("cannot find %s (run from the source tree or set MOAT_TEST_DATA)", file);
	*len = fread(buf, 1, TLS_HELLO_MAX, f);
	fclose(f);
	assert_true(*len > 0);
	return buf;
}

static void check_hello(const struct capture_case *c, const uint8_t *buf, size_t len)
{
	struct tls_hello h;
	enum parse_result r = tls_parse_client_hello(buf, len, scratch, sizeof(scratch), &h);

	if (r != PARSE_OK)
		fail_msg("%s: result %d (%s)", c->file, r, h.error ? h.error : "");
	assert_int_equal(h.consumed, len);
	if (c->sni) {
		assert_true(h.has_sni);
		assert_int_equal(h.sni_len, strlen(c->sni));
		assert_memory_equal(h.sni, c->sni, h.sni_len);
	} else {
		assert_false(h.has_sni);
		assert_int_equal(h.sni_len, 0);
	}
	assert_int_equal(h.alpn_h2, c->alpn_h2);
	assert_int_equal(h.alpn_http11, c->alpn_http11);
	assert_false(h.ech);
	assert_int_equal(h.legacy_version, 0x0303);
}

static void every_prefix_needs_more(const char *what, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		struct tls_hello h;
		enum parse_result r = tls_parse_client_hello(buf, i, scratch, sizeof(scratch), &h);

		if (r != PARSE_NEED_MORE)
			fail_msg("%s: prefix of %zu/%zu bytes gave %d (%s)", what, i, len, r,
				 h.error ? h.error : "");
	}
}

static void test_captures(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(captures); i++) {
		size_t len;
		uint8_t *buf = load(captures[i].file, &len);

		check_hello(&captures[i], buf, len);
		/* Bytes the client sends after its hello are not part of it. */
		memcpy(buf + len, "\x14\x03\x03\x00\x01\x01", 6);
		{
			struct tls_hello h;

			assert_int_equal(tls_parse_client_hello(buf, len + 6, scratch,
								sizeof(scratch), &h), PARSE_OK);
			assert_int_equal(h.consumed, len);
		}
		every_prefix_needs_more(captures[i].file, buf, len);
		free(buf);
	}
}

static void test_captures_reframed(void **state)
{
	static const size_t sizes[] = { 1, 2, 3, 4, 5, 7, 100, 512, 4096 };

	for (size_t i = 0; i < ARRAY_SIZE(captures); i++) {
		size_t len;
		uint8_t *raw = load(captures[i].file, &len);
		struct bb *hs = bb_new();

		unframe(hs, raw, len);
		for (size_t j = 0; j < ARRAY_SIZE(sizes); j++) {
			struct bb *rec = bb_new();

			frame(rec, hs->b, hs->n, sizes[j]);
			check_hello(&captures[i], rec->b, rec->n);
			if (sizes[j] >= 100)
				every_prefix_needs_more(captures[i].file, rec->b, rec->n);
			free(rec);
		}
		free(hs);
		free(raw);
	}
}

/* ---- synthesized hellos ---- */
enum xkind { X_END, X_RAW, X_SNI, X_SNI2, X_ALPN, X_PAD };

struct ext_spec {
	enum xkind kind;
	uint16_t type;          /* X_RAW */
	const char *data;       /* X_RAW: extension_data; X_SNI*: name; X_ALPN: wire list */
	size_t len;             /* of data; X_PAD: padding bytes */
};

enum mutation {
	M_NONE,
	M_SID33,                /* session_id of 33 bytes */
	M_ODD_SUITES,
	M_NO_SUITES,
	M_NO_COMPRESSION,
	M_NO_EXT_BLOCK,         /* old client: no extensions field at all */
	M_EXT_LEN_SHORT,        /* extensions length one less than the bytes present */
	M_EXT_LEN_LONG,
	M_TRAILING,             /* a byte after the message in its record */
	M_HS_TYPE2,             /* handshake type server_hello */
	M_HS_OVER_CAP,
	M_ALERT_FIRST,
	M_CCS_FIRST,
	M_CCS_MIDDLE,           /* change_cipher_spec record between two fragments */
	M_RECORD_OVER,          /* a record of 2^14 + 1 bytes */
	M_RECORD_OVER_256,      /* a record of 2^14 + 257 bytes */
	M_RECORD_EMPTY,
	M_RECORD_V2,            /* record version 0x0200 */
	M_HELLO_V2,             /* ClientHello version 0x0200 */
	M_TRUNC_EXT,            /* message cut in the middle of the last extension, lengths fixed */
};

#define S(str) str, sizeof(str) - 1

struct synth_case {
	const char *name;
	struct ext_spec ext[4];
	enum mutation mut;
	size_t rec;             /* record size, 0: one record */
	enum parse_result want;
	const char *sni;
	bool ech, alpn_h2, alpn_http11, has_alpn;
};

static const char name255[] =
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
	"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc."
	"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd.x";

static const char name256[] =
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
	"ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc."
	"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd.xy";

/* OK(name, mutation, record size, sni, extensions...) and BAD(...) without the sni. */
#define OK(n, m, r, s, ...) \
	{ .name = n, .mut = m, .rec = r, .want = PARSE_OK, .sni = s, .ext = { __VA_ARGS__ } }
#define BAD(n, m, r, ...) \
	{ .name = n, .mut = m, .rec = r, .want = PARSE_INVALID, .ext = { __VA_ARGS__ } }
#define SNI(name) { X_SNI, 0, S(name) }
#define RAW(type, bytes) { X_RAW, type, S(bytes) }
#define ALPN(list) { X_ALPN, 0, S(list) }
#define PAD(n) { X_PAD, 0, NULL, n }

static const struct synth_case synth[] = {
	OK("plain SNI", M_NONE, 0, "a.test", SNI("a.test")),
	OK("SNI trailing dot", M_NONE, 0, "a.test.", SNI("a.test.")),
	OK("SNI mixed case, digits, dash", M_NONE, 0, "Api-2.Example.COM",
	   SNI("Api-2.Example.COM")),
	OK("SNI 255 bytes", M_NONE, 0, name255, { X_SNI, 0, name255, 255 }),
	OK("no extensions", M_NONE, 0, NULL, { X_END }),
	OK("no extension block", M_NO_EXT_BLOCK, 0, NULL, { X_END }),
	OK("4 KB padded hello, 512-byte records", M_NONE, 512, "big.test",
	   SNI("big.test"), PAD(4000)),
	OK("4 KB padded hello, one record", M_NONE, 0, "big.test", PAD(4000), SNI("big.test")),
	OK("60 KB padded hello, 2^14-byte records", M_NONE, 1 << 14, "huge.test",
	   PAD(60000), SNI("huge.test")),
	{ .name = "ECH", .want = PARSE_OK, .sni = "public.test", .ech = true,
	  .ext = { SNI("public.test"), RAW(0xfe0d, "\x00\x01\x02") } },
	{ .name = "ALPN h2 and http/1.1", .want = PARSE_OK, .has_alpn = true, .alpn_h2 = true,
	  .alpn_http11 = true, .ext = { ALPN("\x02h2\x08http/1.1") } },
	{ .name = "ALPN others only", .want = PARSE_OK, .has_alpn = true,
	  .ext = { ALPN("\x03h2c\x02h3\x09http/1.10") } },
	OK("GREASE and unknown extensions", M_NONE, 0, "g.test",
	   RAW(0x0a0a, ""), RAW(0x1a1a, "\x00"), SNI("g.test")),

	BAD("duplicate server_name extension", M_NONE, 0, SNI("a.test"), SNI("b.test")),
	BAD("duplicate server_name extension, same name", M_NONE, 0, SNI("a.test"), SNI("a.test")),
	BAD("two host_names", M_NONE, 0, { X_SNI2, 0, S("a.test") }),
	BAD("NUL in name", M_NONE, 0, SNI("allowed.test\0.evil")),
	BAD("space in name", M_NONE, 0, SNI("a b.test")),
	BAD("underscore in name", M_NONE, 0, SNI("a_b.test")),
	BAD("slash in name", M_NONE, 0, SNI("a.test/x")),
	BAD("high byte in name", M_NONE, 0, SNI("\xc3\xa9.test")),
	BAD("empty name", M_NONE, 0, SNI("")),
	BAD("name of 256 bytes", M_NONE, 0, { X_SNI, 0, name256, 256 }),
	BAD("empty server_name extension", M_NONE, 0, RAW(0, "")),
	BAD("server_name list length lies", M_NONE, 0,
	    RAW(0, "\x00\x09\x00\x00\x06" "a.test" "\x00")),
	BAD("server_name name length lies", M_NONE, 0, RAW(0, "\x00\x09\x00\x00\x07" "a.test")),
	BAD("server_name type 1", M_NONE, 0, RAW(0, "\x00\x09\x01\x00\x06" "a.test")),
	BAD("ALPN empty name", M_NONE, 0, ALPN("\x02h2\x00")),
	BAD("ALPN name overruns", M_NONE, 0, ALPN("\x09http/1.1")),
	BAD("ALPN empty list", M_NONE, 0, RAW(16, "\x00\x00")),
	BAD("duplicate ALPN", M_NONE, 0, ALPN("\x02h2"), ALPN("\x02h2")),
	BAD("duplicate unknown extension", M_NONE, 0, RAW(0x1234, ""), RAW(0x1234, "")),
	BAD("extension length overflows", M_EXT_LEN_LONG, 0, SNI("a.test"), RAW(0xff00, "")),
	BAD("extensions length short", M_EXT_LEN_SHORT, 0, SNI("a.test")),
	BAD("truncated in an extension, lengths lying", M_TRUNC_EXT, 0, SNI("a.test"), PAD(100)),
	BAD("truncated in an extension, 7-byte records", M_TRUNC_EXT, 7, SNI("a.test"), PAD(100)),
	BAD("session_id of 33 bytes", M_SID33, 0, { X_END }),
	BAD("odd cipher_suites", M_ODD_SUITES, 0, { X_END }),
	BAD("no cipher_suites", M_NO_SUITES, 0, { X_END }),
	BAD("no compression methods", M_NO_COMPRESSION, 0, { X_END }),
	BAD("data after the hello in its record", M_TRAILING, 0, SNI("a.test")),
	BAD("data after the hello, 10-byte records", M_TRAILING, 10, SNI("a.test")),
	BAD("handshake type server_hello", M_HS_TYPE2, 0, SNI("a.test")),
	BAD("handshake length over the cap", M_HS_OVER_CAP, 0, { X_END }),
	BAD("alert record first", M_ALERT_FIRST, 0, SNI("a.test")),
	BAD("change_cipher_spec first", M_CCS_FIRST, 0, SNI("a.test")),
	BAD("change_cipher_spec between fragments", M_CCS_MIDDLE, 20, SNI("a.test")),
	BAD("record of 2^14 + 1 bytes", M_RECORD_OVER, 0, PAD(17000)),
	BAD("record of 2^14 + 257 bytes", M_RECORD_OVER_256, 0, PAD(17000)),
	BAD("empty record", M_RECORD_EMPTY, 0, SNI("a.test")),
	BAD("record version 2.0", M_RECORD_V2, 0, SNI("a.test")),
	BAD("ClientHello version 2.0", M_HELLO_V2, 0, SNI("a.test")),
};

static void put_ext(struct bb *b, const struct ext_spec *x)
{
	switch (x->kind) {
	case X_END:
		break;
	case X_RAW:
		put16(b, x->type);
		put16(b, (unsigned)x->len);
		put(b, x->data, x->len);
		break;
	case X_SNI:
		put16(b, 0);
		put16(b, (unsigned)x->len + 5);
		put16(b, (unsigned)x->len + 3);
		put8(b, 0);
		put16(b, (unsigned)x->len);
		put(b, x->data, x->len);
		break;
	case X_SNI2:
		put16(b, 0);
		put16(b, 2 * ((unsigned)x->len + 3) + 2);
		put16(b, 2 * ((unsigned)x->len + 3));
		for (int i = 0; i < 2; i++) {
			put8(b, 0);
			put16(b, (unsigned)x->len);
			put(b, x->data, x->len);
		}
		break;
	case X_ALPN:
		put16(b, 16);
		put16(b, (unsigned)x->len + 2);
		put16(b, (unsigned)x->len);
		put(b, x->data, x->len);
		break;
	case X_PAD:
		put16(b, 21);
		put16(b, (unsigned)x->len);
		for (size_t i = 0; i < x->len; i++)
			put8(b, 0);
		break;
	}
}

/* Builds the records of a synthesized ClientHello into out. */
static void build(struct bb *out, const struct synth_case *c)
{
	struct bb *hs = bb_new(), *ext = bb_new();
	size_t body_at, ext_len_at = 0, last_ext = 0, rec = c->rec ? c->rec : (1 << 14);

	for (size_t i = 0; i < ARRAY_SIZE(c->ext); i++) {
		if (c->ext[i].kind != X_END)
			last_ext = ext->n;
		put_ext(ext, &c->ext[i]);
	}

	put8(hs, c->mut == M_HS_TYPE2 ? 2 : 1);
	put24(hs, 0);                   /* fixed below */
	body_at = hs->n;
	put16(hs, c->mut == M_HELLO_V2 ? 0x0200 : 0x0303);
	for (int i = 0; i < 32; i++)
		put8(hs, i);
	put8(hs, c->mut == M_SID33 ? 33 : 32);
	for (int i = 0; i < (c->mut == M_SID33 ? 33 : 32); i++)
		put8(hs, 0xee);
	if (c->mut == M_NO_SUITES) {
		put16(hs, 0);
	} else {
		put16(hs, c->mut == M_ODD_SUITES ? 3 : 4);
		put(hs, "\x13\x01\x13\x02", c->mut == M_ODD_SUITES ? 3 : 4);
	}
	if (c->mut == M_NO_COMPRESSION) {
		put8(hs, 0);
	} else {
		put8(hs, 1);
		put8(hs, 0);
	}
	if (c->mut != M_NO_EXT_BLOCK) {
		ext_len_at = hs->n;
		put16(hs, (unsigned)ext->n + (c->mut == M_EXT_LEN_SHORT ? (unsigned)-1 : 0));
		if (c->mut == M_EXT_LEN_LONG) {
			/* The last extension claims one byte more than the block holds. */
			ext->b[ext->n - 1] = 1;
		}
		put(hs, ext->b, ext->n);
	}
	if (c->mut == M_TRUNC_EXT) {
		/* Cut in the middle of the last extension; the outer lengths say "complete". */
		size_t cut = ext_len_at + 2 + last_ext + 4 + 10;

		hs->n = cut;
		hs->b[ext_len_at] = (uint8_t)((cut - ext_len_at - 2) >> 8);
		hs->b[ext_len_at + 1] = (uint8_t)(cut - ext_len_at - 2);
	}
	{
		size_t body = hs->n - body_at;

		if (c->mut == M_HS_OVER_CAP)
			body = TLS_HELLO_MAX - 3;
		hs->b[1] = (uint8_t)(body >> 16);
		hs->b[2] = (uint8_t)(body >> 8);
		hs->b[3] = (uint8_t)body;
	}

	if (c->mut == M_ALERT_FIRST)
		put(out, "\x15\x03\x03\x00\x02\x02\x28", 7);
	if (c->mut == M_CCS_FIRST)
		put(out, "\x14\x03\x03\x00\x01\x01", 6);
	if (c->mut == M_RECORD_EMPTY)
		put(out, "\x16\x03\x01\x00\x00", 5);
	if (c->mut == M_TRAILING)
		put8(hs, 0);
	if (c->mut == M_RECORD_OVER || c->mut == M_RECORD_OVER_256)
		rec = (1 << 14) + (c->mut == M_RECORD_OVER ? 1 : 257);
	if (c->mut == M_CCS_MIDDLE) {
		frame(out, hs->b, c->rec, c->rec);
		put(out, "\x14\x03\x03\x00\x01\x01", 6);
		frame(out, hs->b + c->rec, hs->n - c->rec, c->rec);
	} else {
		frame(out, hs->b, hs->n, rec);
	}
	if (c->mut == M_RECORD_V2)
		out->b[1] = 2;
	free(hs);
	free(ext);
}

static void test_synthesized(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(synth); i++) {
		const struct synth_case *c = &synth[i];
		struct bb *b = bb_new();
		struct tls_hello h;
		enum parse_result r;

		build(b, c);
		r = tls_parse_client_hello(b->b, b->n, scratch, sizeof(scratch), &h);
		if (r != c->want)
			fail_msg("%s: result %d, want %d (%s)", c->name, r, c->want,
				 h.error ? h.error : "");
		if (r == PARSE_INVALID) {
			assert_non_null(h.error);
		} else {
			if (c->sni) {
				assert_true(h.has_sni);
				assert_int_equal(h.sni_len, strlen(c->sni));
				assert_memory_equal(h.sni, c->sni, h.sni_len);
			} else {
				assert_false(h.has_sni);
			}
			assert_int_equal(h.ech, c->ech);
			assert_int_equal(h.has_alpn, c->has_alpn);
			assert_int_equal(h.alpn_h2, c->alpn_h2);
			assert_int_equal(h.alpn_http11, c->alpn_http11);
			assert_int_equal(h.consumed, b->n);
			every_prefix_needs_more(c->name, b->b, b->n);
		}
		free(b);
	}
}

/* Malformations must be seen as soon as the bytes that show them have arrived. */
static void test_early_invalid(void **state)
{
	static const struct {
		const char *name;
		const char *bytes;
		size_t len;
	} cases[] = {
		{ "alert", S("\x15") },
		{ "change_cipher_spec", S("\x14\x03") },
		{ "HTTP", S("GET / HTTP/1.1\r\n") },
		{ "SSLv2 hello", S("\x80\x2e\x01\x00\x02") },
		{ "record version 4.x", S("\x16\x04\x01") },
		{ "record too long", S("\x16\x03\x01\x40\x01") },
		{ "empty record", S("\x16\x03\x01\x00\x00") },
		{ "server_hello", S("\x16\x03\x01\x00\x30\x02\x00\x00\x2c") },
		{ "server_hello, first byte", S("\x16\x03\x01\x00\x30\x02") },
		{ "over the cap", S("\x16\x03\x01\x00\x30\x01\x01\x00\x00") },
		{ "over the cap, 1-byte records",
		  S("\x16\x03\x01\x00\x01\x01\x16\x03\x01\x00\x01\x01\x16\x03\x01\x00\x01\x00"
		    "\x16\x03\x01\x00\x01\x00") },
	};
	struct tls_hello h;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		enum parse_result r = tls_parse_client_hello((const uint8_t *)cases[i].bytes,
							     cases[i].len, scratch,
							     sizeof(scratch), &h);
		if (r != PARSE_INVALID)
			fail_msg("%s: result %d", cases[i].name, r);
	}
	/* The largest allowed message is still waited for. */
	assert_int_equal(tls_parse_client_hello((const uint8_t *)"\x16\x03\x01\x40\x00\x01\x00\xff"
						"\xfc", 9, scratch, sizeof(scratch), &h),
			 PARSE_NEED_MORE);
}

/* A hello in one record is read in place; one spread over records needs the scratch buffer. */
static void test_in_place(void **state)
{
	size_t len;
	uint8_t *raw = load("curl.bin", &len);
	struct bb *hs = bb_new(), *rec = bb_new();
	struct tls_hello h;

	assert_int_equal(tls_parse_client_hello(raw, len, NULL, 0, &h), PARSE_OK);
	assert_true(h.sni >= (const char *)raw && h.sni + h.sni_len <= (const char *)raw + len);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(tls_parse_client_hello(raw, i, NULL, 0, &h), PARSE_NEED_MORE);
	unframe(hs, raw, len);
	frame(rec, hs->b, hs->n, 100);
	assert_int_equal(tls_parse_client_hello(rec->b, rec->n, NULL, 0, &h), PARSE_INVALID);
	assert_int_equal(tls_parse_client_hello(rec->b, rec->n, scratch, 256, &h), PARSE_INVALID);
	assert_int_equal(tls_parse_client_hello(rec->b, rec->n, scratch, sizeof(scratch), &h),
			 PARSE_OK);
	assert_true(h.sni >= (const char *)scratch &&
		    h.sni + h.sni_len <= (const char *)scratch + sizeof(scratch));
	free(rec);
	free(hs);
	free(raw);
}

static void test_looks_like(void **state)
{
	static const struct {
		const char *bytes;
		size_t len;
		bool want;
	} cases[] = {
		{ S("\x16\x03\x01"), true },
		{ S("\x16\x03\x03\x02\x00"), true },
		{ S("\x16\x03"), false },
		{ S(""), false },
		{ S("\x16\x02\x00"), false },
		{ S("\x15\x03\x03"), false },
		{ S("GET / HTTP/1.1\r\n"), false },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		assert_int_equal(tls_looks_like((const uint8_t *)cases[i].bytes, cases[i].len),
				 cases[i].want);
}

static void test_alert(void **state)
{
	uint8_t out[16];

	assert_int_equal(tls_build_alert_access_denied(out, sizeof(out), 0x0301), 7);
	assert_memory_equal(out, "\x15\x03\x01\x00\x02\x02\x31", 7);
	assert_int_equal(tls_build_alert_access_denied(out, sizeof(out), 0), 7);
	assert_memory_equal(out, "\x15\x03\x03\x00\x02\x02\x31", 7);
	assert_int_equal(tls_build_alert_access_denied(out, 6, 0x0303), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captures),
		cmocka_unit_test(test_captures_reframed),
		cmocka_unit_test(test_synthesized),
		cmocka_unit_test(test_early_invalid),
		cmocka_unit_test(test_in_place),
		cmocka_unit_test(test_looks_like),
		cmocka_unit_test(test_alert),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* HTTP/1.x request parser and body framing: tables of requests (valid ones and the
 * ambiguities request smuggling lives on), pipelined requests, chunked bodies cut at every
 * byte, and the 403 builder. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/moat.h"
#include "tproxy/http.h"

#define S(str) str, sizeof(str) - 1

struct req_case {
	const char *name;
	const char *raw;
	size_t len;
	enum parse_result want;
	const char *error;              /* INVALID: the exact error */
	const char *host;               /* OK: NULL when no host */
	uint16_t port;
	bool absolute_form, connect, upgrade_h2c, upgrade, chunked, has_cl, keep_alive;
	uint64_t cl;
	int minor;
};

#define BAD(n, r, e) { .name = n, .raw = r, .len = sizeof(r) - 1, .want = PARSE_INVALID, .error = e }
#define OK(n, r, ...) { .name = n, .raw = r, .len = sizeof(r) - 1, .want = PARSE_OK, __VA_ARGS__ }
#define H11 "HTTP/1.1\r\n"
#define HOST "Host: a.test\r\n"

static const struct req_case reqs[] = {
	OK("simple GET", "GET / " H11 HOST "\r\n", .host = "a.test", .keep_alive = true, .minor = 1),
	OK("header names any case, OWS trimmed", "GET /x?y=1 " H11 "hOsT: \t a.test \t\r\n"
	   "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
	   .host = "a.test", .keep_alive = true, .minor = 1),
	OK("Host with port", "GET / " H11 "Host: a.test:8080\r\n\r\n", .host = "a.test",
	   .port = 8080, .keep_alive = true, .minor = 1),
	OK("Host with trailing dot", "GET / " H11 "Host: a.test.\r\n\r\n", .host = "a.test.",
	   .keep_alive = true, .minor = 1),
	OK("Host IPv4 literal", "GET / " H11 "Host: 198.18.0.1:80\r\n\r\n", .host = "198.18.0.1",
	   .port = 80, .keep_alive = true, .minor = 1),
	OK("Host IPv6 with port", "GET / " H11 "Host: [2001:2::1]:8080\r\n\r\n",
	   .host = "2001:2::1", .port = 8080, .keep_alive = true, .minor = 1),
	OK("Host IPv6", "GET / " H11 "Host: [2001:2::1]\r\n\r\n", .host = "2001:2::1",
	   .keep_alive = true, .minor = 1),
	OK("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", .minor = 0),
	OK("HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: a.test\r\nConnection: Keep-Alive\r\n\r\n",
	   .host = "a.test", .keep_alive = true),
	OK("HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\n"
	   "Connection: keep-alive, close\r\n\r\n"),
	OK("HTTP/1.1 close", "GET / " H11 HOST "Connection: close\r\n\r\n", .host = "a.test",
	   .minor = 1),
	OK("HTTP/1.1 close in a list", "GET / " H11 HOST "Connection: foo\r\nConnection: bar ,close\r\n\r\n",
	   .host = "a.test", .minor = 1),
	OK("absolute-form agrees", "GET http://a.test/x " H11 HOST "\r\n", .host = "a.test",
	   .absolute_form = true, .keep_alive = true, .minor = 1),
	OK("absolute-form, scheme and host case, default port", "GET HTTP://A.Test:80/ " H11
	   "Host: a.TEST\r\n\r\n", .host = "A.Test", .port = 80, .absolute_form = true,
	   .keep_alive = true, .minor = 1),
	OK("absolute-form https, Host with default port", "GET https://a.test/ " H11
	   "Host: a.test:443\r\n\r\n", .host = "a.test", .port = 443, .absolute_form = true,
	   .keep_alive = true, .minor = 1),
	OK("absolute-form, query without path", "GET http://a.test?q " H11 HOST "\r\n",
	   .host = "a.test", .absolute_form = true, .keep_alive = true, .minor = 1),
	OK("absolute-form IPv6", "GET http://[2001:2::1]:8080/ " H11
	   "Host: [2001:2::1]:8080\r\n\r\n", .host = "2001:2::1", .port = 8080,
	   .absolute_form = true, .keep_alive = true, .minor = 1),
	OK("absolute-form HTTP/1.0 without Host", "GET http://b.test:81/ HTTP/1.0\r\n\r\n",
	   .host = "b.test", .port = 81, .absolute_form = true),
	OK("CONNECT", "CONNECT a.test:443 " H11 "Host: a.test:443\r\n\r\n", .host = "a.test",
	   .port = 443, .connect = true, .keep_alive = true, .minor = 1),
	OK("CONNECT, Host without port", "CONNECT a.test:443 " H11 HOST "\r\n", .host = "a.test",
	   .port = 443, .connect = true, .keep_alive = true, .minor = 1),
	OK("Upgrade h2c", "GET / " H11 HOST "Connection: Upgrade, HTTP2-Settings\r\n"
	   "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", .host = "a.test",
	   .upgrade = true, .upgrade_h2c = true, .keep_alive = true, .minor = 1),
	OK("Upgrade h2c among others", "GET / " H11 HOST "Upgrade: websocket, H2C\r\n\r\n",
	   .host = "a.test", .upgrade = true, .upgrade_h2c = true, .keep_alive = true, .minor = 1),
	OK("Upgrade h2c with version", "GET / " H11 HOST "Upgrade: foo/2, h2c/1\r\n\r\n",
	   .host = "a.test", .upgrade = true, .upgrade_h2c = true, .keep_alive = true, .minor = 1),
	OK("HTTP2-Settings alone", "GET / " H11 HOST "HTTP2-Settings: AAMAAABk\r\n\r\n",
	   .host = "a.test", .upgrade_h2c = true, .keep_alive = true, .minor = 1),
	OK("Upgrade websocket", "GET /ws " H11 HOST "Upgrade: websocket\r\n\r\n", .host = "a.test",
	   .upgrade = true, .keep_alive = true, .minor = 1),
	OK("Upgrade h2cx is not h2c", "GET / " H11 HOST "Upgrade: h2cx\r\n\r\n", .host = "a.test",
	   .upgrade = true, .keep_alive = true, .minor = 1),
	OK("POST with Content-Length", "POST /p " H11 HOST "Content-Length: 5\r\n\r\n",
	   .host = "a.test", .has_cl = true, .cl = 5, .keep_alive = true, .minor = 1),
	OK("two equal Content-Lengths", "POST /p " H11 HOST "Content-Length: 5\r\n"
	   "content-length: 5\r\n\r\n", .host = "a.test", .has_cl = true, .cl = 5,
	   .keep_alive = true, .minor = 1),
	OK("Content-Length 2^62", "POST /p " H11 HOST "Content-Length: 4611686018427387904\r\n\r\n",
	   .host = "a.test", .has_cl = true, .cl = UINT64_C(1) << 62, .keep_alive = true,
	   .minor = 1),
	OK("chunked", "POST /p " H11 HOST "Transfer-Encoding: chunked\r\n\r\n", .host = "a.test",
	   .chunked = true, .keep_alive = true, .minor = 1),
	OK("gzip, chunked", "POST /p " H11 HOST "Transfer-Encoding: gzip, Chunked\r\n\r\n",
	   .host = "a.test", .chunked = true, .keep_alive = true, .minor = 1),
	OK("gzip then chunked in two headers", "POST /p " H11 HOST "Transfer-Encoding: gzip\r\n"
	   "Transfer-Encoding: chunked\r\n\r\n", .host = "a.test", .chunked = true,
	   .keep_alive = true, .minor = 1),
	OK("obs-text in a value", "GET / " H11 HOST "X-Name: caf\xc3\xa9\r\n\r\n", .host = "a.test",
	   .keep_alive = true, .minor = 1),
	OK("empty value", "GET / " H11 HOST "X-Empty:\r\n\r\n", .host = "a.test",
	   .keep_alive = true, .minor = 1),
	OK("OPTIONS *", "OPTIONS * " H11 HOST "\r\n", .host = "a.test", .keep_alive = true,
	   .minor = 1),
	OK("odd token method", "M-SEARCH /x " H11 HOST "\r\n", .host = "a.test",
	   .keep_alive = true, .minor = 1),

	BAD("absolute-form, other host", "GET http://evil.test/ " H11 HOST "\r\n",
	    "authority and Host differ"),
	BAD("absolute-form, other port", "GET http://a.test:8080/ " H11 HOST "\r\n",
	    "authority and Host differ"),
	BAD("absolute-form https, Host port 80", "GET https://a.test/ " H11
	    "Host: a.test:80\r\n\r\n", "authority and Host differ"),
	BAD("absolute-form, suffix host", "GET http://a.test.evil/ " H11 HOST "\r\n",
	    "authority and Host differ"),
	BAD("absolute-form, userinfo", "GET http://a.test@evil.test/ " H11 HOST "\r\n",
	    "userinfo in request-target"),
	BAD("absolute-form, empty authority", "GET http:///x " H11 HOST "\r\n",
	    "bad authority in request-target"),
	BAD("absolute-form, bad authority", "GET http://a_b.test/ " H11 HOST "\r\n",
	    "bad authority in request-target"),
	BAD("CONNECT to another host", "CONNECT evil.test:443 " H11 HOST "\r\n",
	    "authority and Host differ"),
	BAD("CONNECT without port", "CONNECT a.test " H11 HOST "\r\n",
	    "CONNECT target without port"),
	BAD("CONNECT to a path", "CONNECT /x " H11 HOST "\r\n", "bad CONNECT target"),
	BAD("duplicate Host", "GET / " H11 HOST "Host: b.test\r\n\r\n", "duplicate Host"),
	BAD("duplicate Host, same value", "GET / " H11 HOST HOST "\r\n", "duplicate Host"),
	BAD("missing Host on HTTP/1.1", "GET / " H11 "Accept: */*\r\n\r\n", "missing Host"),
	BAD("empty Host", "GET / " H11 "Host:\r\n\r\n", "bad Host"),
	BAD("Host with userinfo", "GET / " H11 "Host: u@a.test\r\n\r\n", "bad Host"),
	BAD("Host with underscore", "GET / " H11 "Host: a_b.test\r\n\r\n", "bad Host"),
	BAD("Host with a space", "GET / " H11 "Host: a b.test\r\n\r\n", "bad Host"),
	BAD("Host with a path", "GET / " H11 "Host: a.test/x\r\n\r\n", "bad Host"),
	BAD("Host two values", "GET / " H11 "Host: a.test, b.test\r\n\r\n", "bad Host"),
	BAD("Host port 0", "GET / " H11 "Host: a.test:0\r\n\r\n", "bad Host"),
	BAD("Host port 65536", "GET / " H11 "Host: a.test:65536\r\n\r\n", "bad Host"),
	BAD("Host empty port", "GET / " H11 "Host: a.test:\r\n\r\n", "bad Host"),
	BAD("Host port not digits", "GET / " H11 "Host: a.test:8o\r\n\r\n", "bad Host"),
	BAD("Host bad IPv6", "GET / " H11 "Host: [2001:zz::1]\r\n\r\n", "bad Host"),
	BAD("Host IPv6 unclosed", "GET / " H11 "Host: [2001:2::1\r\n\r\n", "bad Host"),
	BAD("Host IPv6 zone", "GET / " H11 "Host: [fe80::1%25eth0]\r\n\r\n", "bad Host"),
	BAD("Host IPv6 junk after", "GET / " H11 "Host: [2001:2::1]x\r\n\r\n", "bad Host"),
	BAD("Content-Length and Transfer-Encoding", "POST / " H11 HOST "Content-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"),
	BAD("Transfer-Encoding and Content-Length", "POST / " H11 HOST
	    "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
	    "both Content-Length and Transfer-Encoding"),
	BAD("two different Content-Lengths", "POST / " H11 HOST "Content-Length: 5\r\n"
	    "Content-Length: 6\r\n\r\n", "conflicting Content-Length"),
	BAD("Content-Length list", "POST / " H11 HOST "Content-Length: 5, 5\r\n\r\n",
	    "bad Content-Length"),
	BAD("Content-Length not digits", "POST / " H11 HOST "Content-Length: 5a\r\n\r\n",
	    "bad Content-Length"),
	BAD("Content-Length negative", "POST / " H11 HOST "Content-Length: -1\r\n\r\n",
	    "bad Content-Length"),
	BAD("Content-Length plus", "POST / " H11 HOST "Content-Length: +5\r\n\r\n",
	    "bad Content-Length"),
	BAD("Content-Length empty", "POST / " H11 HOST "Content-Length: \r\n\r\n",
	    "bad Content-Length"),
	BAD("Content-Length 20 digits", "POST / " H11 HOST
	    "Content-Length: 18446744073709551617\r\n\r\n", "bad Content-Length"),
	BAD("Content-Length over 2^62", "POST / " H11 HOST
	    "Content-Length: 4611686018427387905\r\n\r\n", "Content-Length too large"),
	BAD("chunked, gzip", "POST / " H11 HOST "Transfer-Encoding: chunked, gzip\r\n\r\n",
	    "chunked is not the last transfer coding"),
	BAD("chunked twice", "POST / " H11 HOST "Transfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", "chunked is not the last transfer coding"),
	BAD("Transfer-Encoding gzip", "POST / " H11 HOST "Transfer-Encoding: gzip\r\n\r\n",
	    "Transfer-Encoding does not end in chunked"),
	BAD("Transfer-Encoding identity", "POST / " H11 HOST
	    "Transfer-Encoding: identity\r\n\r\n", "Transfer-Encoding does not end in chunked"),
	BAD("Transfer-Encoding with a parameter", "POST / " H11 HOST
	    "Transfer-Encoding: chunked;q=1\r\n\r\n", "bad Transfer-Encoding"),
	BAD("Transfer-Encoding empty element", "POST / " H11 HOST
	    "Transfer-Encoding: gzip,,chunked\r\n\r\n", "bad Transfer-Encoding"),
	BAD("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0"),
	BAD("obs-fold", "GET / " H11 HOST "X-A: b\r\n c\r\n\r\n", "obs-fold"),
	BAD("obs-fold with tab", "GET / " H11 HOST "X-A: b\r\n\tc\r\n\r\n", "obs-fold"),
	BAD("space before colon", "GET / " H11 "Host : a.test\r\n\r\n", "whitespace before colon"),
	BAD("tab before colon", "GET / " H11 HOST "Content-Length\t: 5\r\n\r\n",
	    "whitespace before colon"),
	BAD("bad character in name", "GET / " H11 HOST "X(A): b\r\n\r\n",
	    "bad character in header name"),
	BAD("line without colon", "GET / " H11 HOST "XA\r\n\r\n", "header line without colon"),
	BAD("empty name", "GET / " H11 HOST ": b\r\n\r\n", "empty header name"),
	BAD("bare LF everywhere", "GET / HTTP/1.1\nHost: a.test\n\n", "bare LF"),
	BAD("bare LF after the headers", "GET / " H11 HOST "\n", "bare LF"),
	BAD("bare LF in a header", "GET / " H11 "X-A: b\nHost: a.test\r\n\r\n", "bare LF"),
	BAD("bare CR", "GET / " H11 "X-A: b\rHost: a.test\r\n\r\n", "bare CR"),
	BAD("NUL in a value", "GET / " H11 HOST "X-A: b\0c\r\n\r\n",
	    "control character in header value"),
	BAD("DEL in a value", "GET / " H11 HOST "X-A: b\x7f\r\n\r\n",
	    "control character in header value"),
	BAD("NUL in the target", "GET /\0 " H11 HOST "\r\n", "control character in request-target"),
	BAD("NUL in the Host", "GET / " H11 "Host: a.test\0.evil\r\n\r\n",
	    "control character in header value"),
	BAD("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http2-preface"),
	BAD("HTTP/2.0 GET", "GET / HTTP/2.0\r\n" HOST "\r\n", "unsupported HTTP version"),
	BAD("HTTP/1.2", "GET / HTTP/1.2\r\n" HOST "\r\n", "unsupported HTTP version"),
	BAD("HTTP/0.9", "GET /\r\n\r\n", "bad request-target"),
	BAD("lower-case version", "GET / http/1.1\r\n" HOST "\r\n", "unsupported HTTP version"),
	BAD("space after the version", "GET / HTTP/1.1 \r\n" HOST "\r\n",
	    "unsupported HTTP version"),
	BAD("two spaces after the method", "GET  / " H11 HOST "\r\n", "bad request-target"),
	BAD("target without slash", "GET a.test " H11 HOST "\r\n", "bad request-target"),
	BAD("asterisk with GET", "GET * " H11 HOST "\r\n", "bad request-target"),
	BAD("ftp scheme", "GET ftp://a.test/ " H11 HOST "\r\n", "bad request-target"),
	BAD("empty line first", "\r\nGET / " H11 HOST "\r\n", "bad method"),
	BAD("bad method char", "GE(T / " H11 HOST "\r\n", "bad method"),
	BAD("TLS bytes", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", "bad method"),
};

static void check_req(const struct req_case *c, const struct http_request *r)
{
	if (c->host) {
		assert_int_equal(r->host_len, strlen(c->host));
		assert_memory_equal(r->host, c->host, r->host_len);
	} else {
		assert_int_equal(r->host_len, 0);
	}
	assert_int_equal(r->port, c->port);
	assert_int_equal(r->absolute_form, c->absolute_form);
	assert_int_equal(r->connect, c->connect);
	assert_int_equal(r->upgrade_h2c, c->upgrade_h2c);
	assert_int_equal(r->upgrade, c->upgrade);
	assert_int_equal(r->chunked, c->chunked);
	assert_int_equal(r->has_content_length, c->has_cl);
	assert_int_equal(r->content_length, c->cl);
	assert_int_equal(r->keep_alive, c->keep_alive);
	assert_int_equal(r->version_minor, c->minor);
	assert_int_equal(r->head_len, c->len);
	assert_memory_equal(r->method, c->raw, r->method_len);
	assert_int_equal(r->method[r->method_len], ' ');
}

static void test_requests(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
		const struct req_case *c = &reqs[i];
		struct http_request r;
		enum parse_result res = http_parse_request(c->raw, c->len, &r);

		if (res != c->want)
			fail_msg("%s: result %d, want %d (%s)", c->name, res, c->want,
				 r.error ? r.error : "");
		if (res == PARSE_INVALID) {
			if (strcmp(r.error, c->error) != 0)
				fail_msg("%s: error \"%s\", want \"%s\"", c->name, r.error,
					 c->error);
			continue;
		}
		check_req(c, &r);
		/* Every prefix of a valid head is incomplete, never OK nor INVALID. */
		for (size_t k = 0; k < c->len; k++) {
			res = http_parse_request(c->raw, k, &r);
			if (res != PARSE_NEED_MORE)
				fail_msg("%s: prefix %zu gave %d (%s)", c->name, k, res,
					 r.error ? r.error : "");
		}
	}
}

/* The head cap: exactly HTTP_HEAD_MAX is fine, one byte more is not, and a head that never
 * ends is INVALID once the cap is reached. */
static void test_head_cap(void **state)
{
	static const char start[] = "GET / " H11 HOST "X-Pad: ";
	char *buf = malloc(2 * HTTP_HEAD_MAX);
	struct http_request r;
	size_t n;

	assert_non_null(buf);
	memset(buf, 'a', 2 * HTTP_HEAD_MAX);
	memcpy(buf, start, sizeof(start) - 1);
	memcpy(buf + HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
	assert_int_equal(http_parse_request(buf, 2 * HTTP_HEAD_MAX, &r), PARSE_OK);
	assert_int_equal(r.head_len, HTTP_HEAD_MAX);

	memset(buf, 'a', 2 * HTTP_HEAD_MAX);
	memcpy(buf, start, sizeof(start) - 1);
	memcpy(buf + HTTP_HEAD_MAX - 3, "\r\n\r\n", 4);
	assert_int_equal(http_parse_request(buf, 2 * HTTP_HEAD_MAX, &r), PARSE_INVALID);
	assert_string_equal(r.error, "request head too large");

	memset(buf, 'a', 2 * HTTP_HEAD_MAX);
	memcpy(buf, start, sizeof(start) - 1);
	for (n = HTTP_HEAD_MAX - 2; n <= HTTP_HEAD_MAX + 2; n++) {
		enum parse_result want = n < HTTP_HEAD_MAX ? PARSE_NEED_MORE : PARSE_INVALID;

		assert_int_equal(http_parse_request(buf, n, &r), want);
	}
	/* Many small header lines hit the same cap. */
	n = sizeof(start) - 1;
	memcpy(buf, start, n);
	while (n + 8 < 2 * HTTP_HEAD_MAX) {
		memcpy(buf + n, "\r\nX-A: b", 8);
		n += 8;
	}
	assert_int_equal(http_parse_request(buf, n, &r), PARSE_INVALID);
	assert_string_equal(r.error, "request head too large");
	free(buf);
}

static void test_looks_like(void **state)
{
	static const struct {
		const char *s;
		size_t len;
		bool want;
	} cases[] = {
		{ S("GET / HTTP/1.1\r\n"), true },
		{ S("GET "), true },
		{ S("M-SEARCH * HTTP/1.1"), true },
		{ S("PRI * HTTP/2.0"), true },
		{ S("GET"), false },
		{ S(""), false },
		{ S(" GET /"), false },
		{ S("GE\x01T /"), false },
		{ S("\x16\x03\x01\x00"), false },
		{ S("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA /"), true },
		{ S("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA /"), false },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (http_looks_like((const uint8_t *)cases[i].s, cases[i].len) != cases[i].want)
			fail_msg("case %zu \"%s\"", i, cases[i].s);
}

/* ---- bodies ---- */
struct body_case {
	const char *name;
	const char *raw;
	size_t len;
	enum parse_result want;
	size_t body_len;        /* OK: bytes of the body; the rest belongs to the next request */
};

#define BODY_OK(n, body, next) { n, body next, sizeof(body next) - 1, PARSE_OK, sizeof(body) - 1 }
#define BODY_BAD(n, body) { n, body, sizeof(body) - 1, PARSE_INVALID, 0 }

static const struct body_case chunked[] = {
	BODY_OK("one chunk", "5\r\nhello\r\n0\r\n\r\n", "GET / HTTP/1.1\r\n"),
	BODY_OK("empty body", "0\r\n\r\n", "GET"),
	BODY_OK("several chunks, hex case", "a\r\n0123456789\r\nA\r\n0123456789\r\n"
		"1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n", "X"),
	BODY_OK("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", ""),
	BODY_OK("chunk extensions", "5;name=value;x=\"a b\"\r\nhello\r\n0;last\r\n\r\n", "Y"),
	BODY_OK("trailers", "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Empty:\r\n\r\n", "Z"),
	BODY_OK("data holding CRLF and digits", "6\r\n\r\n0\r\n\r\r\n0\r\n\r\n", "GET"),
	BODY_BAD("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
	BODY_BAD("bare LF after data", "5\r\nhello\n0\r\n\r\n"),
	BODY_BAD("bare LF at the end", "0\r\n\n"),
	BODY_BAD("space after size", "5 \r\nhello\r\n0\r\n\r\n"),
	BODY_BAD("space before ext", "5 ;a\r\nhello\r\n0\r\n\r\n"),
	BODY_BAD("not hex", "g\r\n"),
	BODY_BAD("negative", "-1\r\n"),
	BODY_BAD("0x prefix", "0x5\r\nhello\r\n"),
	BODY_BAD("empty size", "\r\n"),
	BODY_BAD("ext without size", ";a\r\n"),
	BODY_BAD("data longer than size", "5\r\nhelloX\r\n0\r\n\r\n"),
	BODY_BAD("data shorter than size", "5\r\nhell\r\n0\r\n\r\n"),
	BODY_BAD("size over 2^62", "4000000000000001\r\n"),
	BODY_BAD("17 hex digits", "10000000000000000\r\n"),
	BODY_BAD("control char in ext", "5;a\x01\r\nhello\r\n"),
	BODY_BAD("trailer obs-fold", "0\r\nX: a\r\n b\r\n\r\n"),
	BODY_BAD("trailer without colon", "0\r\nX\r\n\r\n"),
	BODY_BAD("trailer space before colon", "0\r\nX : a\r\n\r\n"),
	BODY_BAD("trailer NUL", "0\r\nX: a\0\r\n\r\n"),
	BODY_BAD("bare CR in trailer", "0\r\nX: a\rb\r\n\r\n"),
};

/* Feeds the body in pieces cut at the given points, as the proxy would (the bytes of one
 * call that the body did not take are offered again, with more, in the next). */
static enum parse_result feed(const struct body_case *c, const size_t *cuts, size_t ncuts,
			      size_t *total)
{
	struct http_request req = { .chunked = true };
	struct http_body b;
	size_t pos = 0;

	http_body_init(&b, &req);
	assert_int_equal(b.kind, HTTP_BODY_CHUNKED);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : c->len, used = 0;
		enum parse_result r;

		if (end < pos)
			continue;
		r = http_body_consume(&b, (const uint8_t *)c->raw + pos, end - pos, &used);
		assert_true(used <= end - pos);
		pos += used;
		if (r != PARSE_NEED_MORE) {
			*total = pos;
			return r;
		}
		assert_int_equal(used, end - pos + used);
		/* In chunk data nothing else is inspected. */
		if (b.remaining)
			assert_int_equal(b.kind, HTTP_BODY_CHUNKED);
	}
	*total = pos;
	return PARSE_NEED_MORE;
}

static void test_chunked_splits(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(chunked); i++) {
		const struct body_case *c = &chunked[i];
		size_t total, cuts[2];
		enum parse_result r = feed(c, NULL, 0, &total);

		if (r != c->want)
			fail_msg("%s: result %d, want %d", c->name, r, c->want);
		if (r == PARSE_OK)
			assert_int_equal(total, c->body_len);
		/* Every single split point, and every pair of split points. */
		for (cuts[0] = 0; cuts[0] <= c->len; cuts[0]++) {
			for (cuts[1] = cuts[0]; cuts[1] <= c->len; cuts[1]++) {
				r = feed(c, cuts, 2, &total);
				if (r != c->want)
					fail_msg("%s: cut at %zu,%zu: result %d", c->name,
						 cuts[0], cuts[1], r);
				if (r == PARSE_OK && total != c->body_len)
					fail_msg("%s: cut at %zu,%zu: %zu bytes", c->name,
						 cuts[0], cuts[1], total);
			}
		}
		/* One byte at a time. */
		{
			size_t one[512], n = c->len < 512 ? c->len : 512;

			for (size_t k = 0; k < n; k++)
				one[k] = k + 1;
			r = feed(c, one, n, &total);
			assert_int_equal(r, c->want);
			if (r == PARSE_OK)
				assert_int_equal(total, c->body_len);
		}
	}
}

/* A size line that never ends, or chunk extensions without end, are cut off. */
static void test_chunked_caps(void **state)
{
	struct http_request req = { .chunked = true };
	struct http_body b;
	char *buf = malloc(16384);
	size_t used;

	assert_non_null(buf);
	memset(buf, '0', 16384);
	http_body_init(&b, &req);
	assert_int_equal(http_body_consume(&b, (uint8_t *)buf, 16384, &used), PARSE_INVALID);

	buf[0] = '1';
	buf[1] = ';';
	memset(buf + 2, 'e', 16384 - 2);
	http_body_init(&b, &req);
	assert_int_equal(http_body_consume(&b, (uint8_t *)buf, 4000, &used), PARSE_NEED_MORE);
	assert_int_equal(http_body_consume(&b, (uint8_t *)buf + 2, 16000, &used), PARSE_INVALID);

	/* 2^62 itself is a valid (if large) chunk size. */
	http_body_init(&b, &req);
	assert_int_equal(http_body_consume(&b, (const uint8_t *)"4000000000000000\r\n", 18, &used),
			 PARSE_NEED_MORE);
	assert_int_equal(b.remaining, UINT64_C(1) << 62);
	free(buf);
}

/* The proxy forwards chunk data unseen (splice) and accounts for it with http_body_skip. */
static void test_skip(void **state)
{
	static const char body[] = "a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\nNEXT";
	struct http_request req = { .chunked = true };
	struct http_body b;
	size_t pos = 0, used;
	enum parse_result r;

	http_body_init(&b, &req);
	for (;;) {
		r = http_body_consume(&b, (const uint8_t *)body + pos, 1, &used);
		pos += used;
		if (r != PARSE_NEED_MORE)
			break;
		if (b.remaining) {
			uint64_t n = b.remaining > 4 ? 4 : b.remaining;

			http_body_skip(&b, n);
			pos += n;
		}
	}
	assert_int_equal(r, PARSE_OK);
	assert_string_equal(body + pos, "NEXT");

	req = (struct http_request){ .has_content_length = true, .content_length = 10 };
	http_body_init(&b, &req);
	assert_int_equal(b.kind, HTTP_BODY_LENGTH);
	assert_int_equal(b.remaining, 10);
	http_body_skip(&b, 7);
	assert_int_equal(http_body_consume(&b, (const uint8_t *)"abcdef", 6, &used), PARSE_OK);
	assert_int_equal(used, 3);
	http_body_skip(&b, 100);
	assert_int_equal(b.remaining, 0);

	req = (struct http_request){ .has_content_length = true, .content_length = 0 };
	http_body_init(&b, &req);
	assert_int_equal(b.kind, HTTP_BODY_NONE);
	assert_int_equal(http_body_consume(&b, (const uint8_t *)"GET", 3, &used), PARSE_OK);
	assert_int_equal(used, 0);
}

/* Pipelined requests in one buffer, as the proxy walks them: parse, body, parse, ... */
static void test_pipeline(void **state)
{
	static const char stream[] =
		"POST /a HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"
		"GET /b HTTP/1.1\r\nHost: b.test\r\n\r\n"
		"POST /c HTTP/1.1\r\nHost: c.test:8080\r\nTransfer-Encoding: chunked\r\n\r\n"
		"4\r\nGET \r\n0\r\n\r\n"
		"POST /d HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"
		"GET http://evil.test/ HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n";
	static const struct { const char *host; uint16_t port; bool ka; } want[] = {
		{ "a.test", 0, true }, { "b.test", 0, true }, { "c.test", 8080, true },
		{ "a.test", 0, true }, { "evil.test", 0, false },
	};
	size_t pos = 0, n = 0, len = sizeof(stream) - 1;

	while (pos < len) {
		struct http_request r;
		struct http_body b;
		size_t used;

		assert_true(n < ARRAY_SIZE(want));
		assert_int_equal(http_parse_request(stream + pos, len - pos, &r), PARSE_OK);
		assert_int_equal(r.host_len, strlen(want[n].host));
		assert_memory_equal(r.host, want[n].host, r.host_len);
		assert_int_equal(r.port, want[n].port);
		assert_int_equal(r.keep_alive, want[n].ka);
		pos += r.head_len;
		http_body_init(&b, &r);
		assert_int_equal(http_body_consume(&b, (const uint8_t *)stream + pos, len - pos,
						   &used), PARSE_OK);
		pos += used;
		n++;
	}
	assert_int_equal(n, ARRAY_SIZE(want));
	assert_int_equal(pos, len);
}

static void test_forbidden(void **state)
{
	static const char full[] = "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
				   "Content-Length: 34\r\nConnection: close\r\n\r\n"
				   "moat: host-not-allowed: evil.test\n";
	char out[512];
	size_t n = http_build_forbidden(out, sizeof(out), "host-not-allowed", "evil.test", 9);

	assert_int_equal(n, sizeof(full) - 1);
	assert_string_equal(out, full);

	n = http_build_forbidden(out, sizeof(out), "bad-request", "a\r\nb\0c", 6);
	assert_non_null(strstr(out, "moat: bad-request: a??b?c\n"));
	n = http_build_forbidden(out, sizeof(out), "bad-request", NULL, 0);
	assert_non_null(strstr(out, "\r\n\r\nmoat: bad-request\n"));

	/* Any capacity: nothing beyond cap, and the Content-Length matches the body. */
	for (size_t cap = 0; cap <= sizeof(full) + 1; cap++) {
		char buf[sizeof(full) + 8];
		const char *body;
		unsigned long cl;

		memset(buf, 'Z', sizeof(buf));
		n = http_build_forbidden(buf, cap, "host-not-allowed", "evil.test", 9);
		assert_true(n <= cap);
		assert_int_equal(buf[cap], 'Z');
		if (!n)
			continue;
		body = memmem(buf, n, "\r\n\r\n", 4);
		assert_non_null(body);
		body += 4;
		assert_int_equal(sscanf(strstr(buf, "Content-Length: "), "Content-Length: %lu",
					&cl), 1);
		assert_int_equal(cl, n - (size_t)(body - buf));
		assert_true(cl >= 1);
		assert_int_equal(buf[n - 1], '\n');
		assert_memory_equal(buf, "HTTP/1.1 403 Forbidden\r\n", 24);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_head_cap),
		cmocka_unit_test(test_looks_like),
		cmocka_unit_test(test_chunked_splits),
		cmocka_unit_test(test_chunked_caps),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_pipeline),
		cmocka_unit_test(test_forbidden),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* libFuzzer target for the HTTP/1.x parser and body framing, walking a connection the way
 * the proxy does: parse a head, consume its body, parse the next.  Each body is fed once
 * whole and once cut at a point derived from the input; both must frame it the same way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tproxy/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum parse_result body(const struct http_request *req, const uint8_t *buf, size_t len,
			      size_t cut, size_t *used)
{
	struct http_body b;
	enum parse_result r;
	size_t a = 0, c = 0;

	http_body_init(&b, req);
	if (cut > len)
		cut = len;
	r = http_body_consume(&b, buf, cut, &a);
	if (a > cut)
		abort();
	if (r != PARSE_NEED_MORE) {
		*used = a;
		return r;
	}
	if (a != cut)
		abort();
	/* Forward chunk data unseen, as splice would. */
	if (b.remaining && b.kind == HTTP_BODY_CHUNKED) {
		uint64_t n = b.remaining < (len - a) / 2 ? b.remaining : (len - a) / 2;

		http_body_skip(&b, n);
		a += n;
	}
	r = http_body_consume(&b, buf + a, len - a, &c);
	if (c > len - a)
		abort();
	*used = a + c;
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t pos = 0, cut = size ? data[0] : 0;

	http_looks_like(data, size);
	while (pos < size) {
		struct http_request req;
		enum parse_result r = http_parse_request(buf + pos, size - pos, &req), r1, r2;
		size_t u1 = 0, u2 = 0;

		if (r == PARSE_INVALID && !req.error)
			abort();
		if (r != PARSE_OK)
			break;
		if (req.head_len > size - pos || req.head_len > HTTP_HEAD_MAX ||
		    req.host_len > 255 || (req.chunked && req.has_content_length) ||
		    req.version_minor < 0 || req.version_minor > 1)
			abort();
		if (http_parse_request(buf + pos, req.head_len - 1, &req) != PARSE_NEED_MORE)
			abort();
		r = http_parse_request(buf + pos, size - pos, &req);
		pos += req.head_len;
		r1 = body(&req, data + pos, size - pos, size - pos, &u1);
		r2 = body(&req, data + pos, size - pos, cut, &u2);
		if (r1 != r2 || (r1 == PARSE_OK && u1 != u2))
			abort();
		if (r1 != PARSE_OK)
			break;
		pos += u1;
	}
	return 0;
}

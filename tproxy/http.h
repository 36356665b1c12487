/* HTTP/1.x request parser and request-body framing for the L7 proxy: the
 * authority a request is for, and where the next request on the connection
 * starts, so that every request of a kept-alive or pipelined connection is
 * judged.  Strict on purpose: what moat and the upstream server could read
 * differently (bare LF, obs-fold, CL+TE, ...) is refused. */
#ifndef MOAT_HTTP_H
#define MOAT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tproxy/parse.h"

#define HTTP_HEAD_MAX (32 * 1024)   /* cap on request line + headers */

struct http_request {
	const char *method; size_t method_len;
	const char *target; size_t target_len;
	const char *host; size_t host_len;    /* host part of Host (brackets stripped for v6), no port */
	uint16_t port;                        /* port from Host / authority, 0 when absent */
	bool absolute_form;                   /* target was http://authority/... */
	bool connect;                         /* CONNECT method */
	bool upgrade_h2c;                     /* Upgrade: h2c (or HTTP2-Settings header) */
	bool upgrade;                         /* any Upgrade header (websocket etc.) */
	bool chunked;                         /* Transfer-Encoding ends in chunked */
	bool has_content_length;
	uint64_t content_length;
	int version_minor;                    /* 0 or 1 (HTTP/1.x only) */
	bool keep_alive;                      /* connection persists after this request */
	size_t head_len;                      /* bytes of request line + headers incl. the blank line */
	const char *error;
};

/* Parses the request head at the start of buf.  OK when the blank line ending the head has
 * arrived (head_len bytes); NEED_MORE while the head is incomplete and under HTTP_HEAD_MAX;
 * INVALID otherwise, with error saying why ("http2-preface" for the HTTP/2 preface). */
enum parse_result http_parse_request(const char *buf, size_t len, struct http_request *out);

/* Starts with a token method (1..32 bytes) and a space (prefix check), false otherwise,
 * including while fewer bytes than that have arrived. */
bool http_looks_like(const uint8_t *buf, size_t len);

enum { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

/* Streaming body framing for the request just parsed, so every request on a kept-alive or
 * pipelined connection is found and judged. */
struct http_body {
	int kind;            /* HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED */
	uint64_t remaining;  /* bytes left in the current length-delimited body or chunk data */
	int state;           /* chunked parser state, private */
	size_t line_len;     /* private: bytes of the current chunk-size / trailer line */
	uint64_t chunk_size; /* private: chunk size being read */
};

void http_body_init(struct http_body *b, const struct http_request *req);
/* Consumes body bytes from buf. *consumed: how many bytes belong to this body (<= len).
 * PARSE_OK when the body is complete (the next request starts at buf + *consumed);
 * PARSE_NEED_MORE when all of buf belonged to the body; PARSE_INVALID on bad chunk framing.
 * While in chunk data (kind CHUNKED, remaining > 0) or in a LENGTH body, the caller may forward
 * `remaining` bytes without inspecting them (e.g. with splice) and then call
 * http_body_skip(b, n) to account for them. */
enum parse_result http_body_consume(struct http_body *b, const uint8_t *buf, size_t len,
				    size_t *consumed);
/* Accounts for n body bytes forwarded unseen; n is clamped to remaining. */
void http_body_skip(struct http_body *b, uint64_t n);

/* The denial: "HTTP/1.1 403 Forbidden" with Content-Type text/plain, Connection: close, and a
 * one-line body "moat: <reason>: <host>\n". Returns the length written (truncates safely:
 * the body is shortened so that the whole response and its Content-Length stay consistent;
 * 0 when even an empty-bodied response does not fit). NUL-terminated when room is left. */
size_t http_build_forbidden(char *out, size_t cap, const char *reason, const char *host,
			    size_t host_len);

#endif

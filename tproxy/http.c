/* HTTP/1.x request head parser and body framing (RFC 9112, RFC 9110).
 *
 * moat forwards the client's bytes unchanged, so the upstream server must
 * frame the stream exactly as moat does, or a request moat never judged could
 * hide in a body (request smuggling).  Everything RFC 9112 lets a recipient
 * read in more than one way is therefore INVALID here:
 *
 *   - lines end in CRLF; a bare LF or a bare CR is INVALID (RFC 9112 2.2 lets a
 *     recipient accept bare LF; moat does not, as the upstream might not);
 *   - no empty lines before the request line, no obs-fold, no whitespace between
 *     a field name and its colon, no control characters in values;
 *   - Content-Length together with Transfer-Encoding, differing Content-Lengths,
 *     a Transfer-Encoding that does not end in chunked, or any Transfer-Encoding
 *     in HTTP/1.0.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tproxy/http.h"

#define HTTP_METHOD_MAX 32
#define HTTP_HOST_MAX 255
#define HTTP_V6_MAX 45                   /* INET6_ADDRSTRLEN - 1 */
#define HTTP_LENGTH_MAX (UINT64_C(1) << 62)
#define CHUNK_LINE_MAX 4096              /* chunk-size line with its extensions */
#define TRAILER_LINE_MAX 8192

static enum parse_result invalid(struct http_request *out, const char *why)
{
	out->error = why;
	return PARSE_INVALID;
}

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" /
 *         "~" / DIGIT / ALPHA */
static bool is_tchar(uint8_t c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar / SP / HTAB: VCHAR, obs-text (0x80-0xff), SP, HT; no other control character. */
static bool is_value_char(uint8_t c)
{
	return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

static bool is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

bool http_looks_like(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; buf && i < len && i <= HTTP_METHOD_MAX; i++) {
		if (buf[i] == ' ')
			return i > 0;
		if (!is_tchar(buf[i]))
			return false;
	}
	return false;
}

/* Finds the CRLF ending the line that starts at pos; *eol is the index of its CR. */
static enum parse_result find_eol(const char *buf, size_t len, size_t pos, size_t *eol,
				  struct http_request *out)
{
	const char *cr = memchr(buf + pos, '\r', len - pos);
	const char *lf = memchr(buf + pos, '\n', cr ? (size_t)(cr - buf) - pos : len - pos);

	if (lf)
		return invalid(out, "bare LF");
	if (!cr)
		return PARSE_NEED_MORE;
	*eol = (size_t)(cr - buf);
	if (*eol + 1 >= len)
		return PARSE_NEED_MORE;
	if (buf[*eol + 1] != '\n')
		return invalid(out, "bare CR");
	return PARSE_OK;
}

/* host = "[" IPv6address "]" / reg-name ; port = 1*5DIGIT (1..65535)
 * uri-host [ ":" port ], reg-name restricted to letters, digits, "-" and ".". */
static bool parse_hostport(const char *s, size_t n, const char **host, size_t *host_len,
			   uint16_t *port)
{
	size_t pos = 0;
	unsigned long p = 0;

	*port = 0;
	if (n == 0)
		return false;
	if (s[0] == '[') {
		const char *end = memchr(s, ']', n);
		char v6[HTTP_V6_MAX + 1];
		struct in6_addr a;
		size_t k;

		if (!end)
			return false;
		k = (size_t)(end - s) - 1;
		if (k == 0 || k > HTTP_V6_MAX)
			return false;
		memcpy(v6, s + 1, k);
		v6[k] = 0;
		if (inet_pton(AF_INET6, v6, &a) != 1)
			return false;
		*host = s + 1;
		*host_len = k;
		pos = k + 2;
	} else {
		while (pos < n && s[pos] != ':') {
			uint8_t c = (uint8_t)s[pos];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '.'))
				return false;
			pos++;
		}
		if (pos == 0 || pos > HTTP_HOST_MAX)
			return false;
		*host = s;
		*host_len = pos;
	}
	if (pos == n)
		return true;
	if (s[pos] != ':' || pos + 1 == n || n - pos - 1 > 5)
		return false;
	for (pos++; pos < n; pos++) {
		if (s[pos] < '0' || s[pos] > '9')
			return false;
		p = p * 10 + (unsigned long)(s[pos] - '0');
	}
	if (p == 0 || p > 65535)
		return false;
	*port = (uint16_t)p;
	return true;
}

/* One element of a comma-separated list: the next element of s[*pos..n) without OWS.
 * Returns false at the end; an empty element gives *elen == 0. */
static bool next_element(const char *s, size_t n, size_t *pos, const char **el, size_t *elen)
{
	size_t i = *pos, start, end;

	if (i > n)
		return false;
	while (i < n && is_ows((uint8_t)s[i]))
		i++;
	start = i;
	while (i < n && s[i] != ',')
		i++;
	end = i;
	while (end > start && is_ows((uint8_t)s[end - 1]))
		end--;
	*el = s + start;
	*elen = end - start;
	*pos = i + 1;
	return true;
}

static bool all_tchars(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((uint8_t)s[i]))
			return false;
	return n > 0;
}

struct head_state {
	int host_count;
	const char *host_value;
	size_t host_value_len;
	int te_count;
	bool te_chunked_seen;
	bool conn_close, conn_keep_alive;
};

static enum parse_result on_header(const char *name, size_t nlen, const char *v, size_t vlen,
				   struct head_state *st, struct http_request *out)
{
	size_t pos = 0, elen;
	const char *el;

	if (ieq(name, nlen, "host")) {
		if (++st->host_count > 1)
			return invalid(out, "duplicate Host");
		if (!parse_hostport(v, vlen, &out->host, &out->host_len, &out->port))
			return invalid(out, "bad Host");
		st->host_value = v;
		st->host_value_len = vlen;
	} else if (ieq(name, nlen, "content-length")) {
		uint64_t cl = 0;

		if (vlen == 0 || vlen > 19)
			return invalid(out, "bad Content-Length");
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return invalid(out, "bad Content-Length");
			cl = cl * 10 + (uint64_t)(v[i] - '0');
		}
		if (cl > HTTP_LENGTH_MAX)
			return invalid(out, "Content-Length too large");
		if (out->has_content_length && out->content_length != cl)
			return invalid(out, "conflicting Content-Length");
		out->has_content_length = true;
		out->content_length = cl;
	} else if (ieq(name, nlen, "transfer-encoding")) {
		st->te_count++;
		while (next_element(v, vlen, &pos, &el, &elen)) {
			if (!all_tchars(el, elen))
				return invalid(out, "bad Transfer-Encoding");
			if (st->te_chunked_seen)
				return invalid(out, "chunked is not the last transfer coding");
			st->te_chunked_seen = ieq(el, elen, "chunked");
		}
	} else if (ieq(name, nlen, "connection")) {
		while (next_element(v, vlen, &pos, &el, &elen)) {
			if (!all_tchars(el, elen))
				return invalid(out, "bad Connection");
			if (ieq(el, elen, "close"))
				st->conn_close = true;
			else if (ieq(el, elen, "keep-alive"))
				st->conn_keep_alive = true;
		}
	} else if (ieq(name, nlen, "upgrade")) {
		out->upgrade = true;
		while (next_element(v, vlen, &pos, &el, &elen)) {
			const char *slash = memchr(el, '/', elen);
			size_t plen = slash ? (size_t)(slash - el) : elen;

			if (ieq(el, plen, "h2c"))
				out->upgrade_h2c = true;
		}
	} else if (ieq(name, nlen, "http2-settings")) {
		out->upgrade_h2c = true;
	}
	return PARSE_OK;
}

/* request-line = method SP request-target SP HTTP-version CRLF
 * method = token; HTTP-version = "HTTP/1.0" / "HTTP/1.1"
 * request-target = origin-form ("/" ...) / absolute-form ("http[s]://" authority ...) /
 *                  authority-form (CONNECT only) / asterisk-form ("*", OPTIONS only) */
static enum parse_result parse_request_line(const char *buf, size_t eol, const char **auth,
					    size_t *auth_len, uint16_t *default_port,
					    struct http_request *out)
{
	size_t pos = 0, tstart;
	const char *ver;

	while (pos < eol && is_tchar((uint8_t)buf[pos]))
		pos++;
	if (pos == 0 || pos >= eol || buf[pos] != ' ')
		return invalid(out, "bad method");
	out->method = buf;
	out->method_len = pos;
	tstart = ++pos;
	while (pos < eol && buf[pos] != ' ') {
		uint8_t c = (uint8_t)buf[pos];

		if (c < 0x21 || c == 0x7f)
			return invalid(out, "control character in request-target");
		pos++;
	}
	if (pos == tstart || pos >= eol)
		return invalid(out, "bad request-target");
	out->target = buf + tstart;
	out->target_len = pos - tstart;
	pos++;
	ver = buf + pos;
	if (eol - pos == 8 && memcmp(ver, "HTTP/1.", 7) == 0 && (ver[7] == '0' || ver[7] == '1')) {
		out->version_minor = ver[7] - '0';
	} else if (eol - pos == 8 && memcmp(ver, "HTTP/2.0", 8) == 0 &&
		   ieq(out->method, out->method_len, "PRI")) {
		return invalid(out, "http2-preface");
	} else {
		return invalid(out, "unsupported HTTP version");
	}

	if (out->method_len == 7 && memcmp(out->method, "CONNECT", 7) == 0) {
		out->connect = true;
		*auth = out->target;
		*auth_len = out->target_len;
		return PARSE_OK;
	}
	if (out->target[0] == '/')
		return PARSE_OK;
	if (out->target_len == 1 && out->target[0] == '*' &&
	    out->method_len == 7 && memcmp(out->method, "OPTIONS", 7) == 0)
		return PARSE_OK;
	if (out->target_len > 7 && strncasecmp(out->target, "http://", 7) == 0) {
		*auth = out->target + 7;
		*default_port = 80;
	} else if (out->target_len > 8 && strncasecmp(out->target, "https://", 8) == 0) {
		*auth = out->target + 8;
		*default_port = 443;
	} else {
		return invalid(out, "bad request-target");
	}
	out->absolute_form = true;
	for (*auth_len = 0; *auth + *auth_len < out->target + out->target_len; (*auth_len)++)
		if (strchr("/?#", (*auth)[*auth_len]))
			break;
	if (memchr(*auth, '@', *auth_len))
		return invalid(out, "userinfo in request-target");
	return PARSE_OK;
}

/* request head = request-line *( field-line CRLF ) CRLF
 * field-line = field-name ":" OWS field-value OWS */
enum parse_result http_parse_request(const char *buf, size_t len, struct http_request *out)
{
	size_t lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	size_t pos, eol = 0, auth_len = 0;
	const char *auth = NULL;
	uint16_t default_port = 0;
	struct head_state st = { 0 };
	enum parse_result r;

	memset(out, 0, sizeof(*out));
	if (!buf)
		return len ? invalid(out, "no buffer") : PARSE_NEED_MORE;

	r = find_eol(buf, lim, 0, &eol, out);
	if (r == PARSE_OK)
		r = parse_request_line(buf, eol, &auth, &auth_len, &default_port, out);
	for (pos = eol + 2; r == PARSE_OK; pos = eol + 2) {
		const char *name = buf + pos, *v;
		size_t nlen = 0, vlen, vend;

		r = find_eol(buf, lim, pos, &eol, out);
		if (r != PARSE_OK)
			break;
		if (eol == pos) {
			out->head_len = pos + 2;
			break;
		}
		if (is_ows((uint8_t)buf[pos]))
			return invalid(out, "obs-fold");
		while (pos + nlen < eol && is_tchar((uint8_t)name[nlen]))
			nlen++;
		if (pos + nlen == eol)
			return invalid(out, "header line without colon");
		if (name[nlen] != ':')
			return invalid(out, is_ows((uint8_t)name[nlen]) ?
				       "whitespace before colon" : "bad character in header name");
		if (nlen == 0)
			return invalid(out, "empty header name");
		for (size_t i = pos + nlen + 1; i < eol; i++)
			if (!is_value_char((uint8_t)buf[i]))
				return invalid(out, "control character in header value");
		v = name + nlen + 1;
		vend = eol;
		while (v < buf + vend && is_ows((uint8_t)*v))
			v++;
		while (buf + vend > v && is_ows((uint8_t)buf[vend - 1]))
			vend--;
		vlen = (size_t)(buf + vend - v);
		r = on_header(name, nlen, v, vlen, &st, out);
	}
	if (r == PARSE_NEED_MORE && len >= HTTP_HEAD_MAX)
		return invalid(out, "request head too large");
	if (r != PARSE_OK)
		return r;

	if (st.host_count == 0 && out->version_minor == 1)
		return invalid(out, "missing Host");
	if (st.te_count) {
		if (out->has_content_length)
			return invalid(out, "both Content-Length and Transfer-Encoding");
		if (out->version_minor == 0)
			return invalid(out, "Transfer-Encoding in HTTP/1.0");
		if (!st.te_chunked_seen)
			return invalid(out, "Transfer-Encoding does not end in chunked");
		out->chunked = true;
	}
	if (auth) {
		const char *ahost;
		size_t ahost_len;
		uint16_t aport;

		if (!parse_hostport(auth, auth_len, &ahost, &ahost_len, &aport))
			return invalid(out, out->connect ? "bad CONNECT target" :
						       "bad authority in request-target");
		if (out->connect && !aport)
			return invalid(out, "CONNECT target without port");
		/* Same host, same port once the scheme's default fills an absent one; a Host
		 * without port matches any CONNECT port. */
		if (st.host_count) {
			uint16_t hport = out->port ? out->port : default_port;
			uint16_t eport = aport ? aport : default_port;

			if (ahost_len != out->host_len ||
			    strncasecmp(ahost, out->host, ahost_len) != 0 ||
			    (hport != eport && !(out->connect && !out->port)))
				return invalid(out, "authority and Host differ");
		}
		out->host = ahost;
		out->host_len = ahost_len;
		if (aport)
			out->port = aport;
	}
	if (out->version_minor == 1)
		out->keep_alive = !st.conn_close;
	else
		out->keep_alive = st.conn_keep_alive && !st.conn_close;
	return PARSE_OK;
}

void http_body_init(struct http_body *b, const struct http_request *req)
{
	memset(b, 0, sizeof(*b));
	if (req->chunked) {
		b->kind = HTTP_BODY_CHUNKED;
	} else if (req->has_content_length && req->content_length > 0) {
		b->kind = HTTP_BODY_LENGTH;
		b->remaining = req->content_length;
	} else {
		b->kind = HTTP_BODY_NONE;
	}
}

enum chunk_state {
	CH_SIZE_FIRST = 0,      /* first hex digit of a chunk-size */
	CH_SIZE,                /* more hex digits, ";" or CR */
	CH_EXT,                 /* chunk-ext up to CR */
	CH_SIZE_LF,
	CH_DATA,                /* remaining bytes of chunk data */
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_START,       /* start of a trailer line or of the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_END_LF,
	CH_DONE,
};

/* chunked-body = *chunk last-chunk trailer-section CRLF
 * chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 * chunk-size   = 1*HEXDIG (at most 2^62 here); last-chunk = 1*"0" [ chunk-ext ] CRLF
 * chunk-ext    = *( ";" ... ) : any field-value characters after ";", bounded by
 *                CHUNK_LINE_MAX; no whitespace between the size and ";"
 * trailer-section = *( field-line CRLF ), each line bounded by TRAILER_LINE_MAX
 * A streaming state machine: the input may be cut at any byte. */
static enum parse_result chunked_consume(struct http_body *b, const uint8_t *buf, size_t len,
					 size_t *consumed)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = buf[i];
		int h;

		switch (b->state) {
		case CH_SIZE_FIRST:
		case CH_SIZE:
			h = hexval(c);
			if (h >= 0) {
				if (b->state == CH_SIZE_FIRST) {
					b->chunk_size = 0;
					b->line_len = 0;
				}
				if (b->chunk_size > (HTTP_LENGTH_MAX - (uint64_t)h) / 16)
					goto bad;
				b->chunk_size = b->chunk_size * 16 + (uint64_t)h;
				b->state = CH_SIZE;
			} else if (b->state == CH_SIZE && c == ';') {
				b->state = CH_EXT;
			} else if (b->state == CH_SIZE && c == '\r') {
				b->state = CH_SIZE_LF;
			} else {
				goto bad;
			}
			if (++b->line_len > CHUNK_LINE_MAX)
				goto bad;
			break;
		case CH_EXT:
			if (c == '\r')
				b->state = CH_SIZE_LF;
			else if (!is_value_char(c))
				goto bad;
			if (++b->line_len > CHUNK_LINE_MAX)
				goto bad;
			break;
		case CH_SIZE_LF:
			if (c != '\n')
				goto bad;
			if (b->chunk_size) {
				b->remaining = b->chunk_size;
				b->state = CH_DATA;
			} else {
				b->state = CH_TRAILER_START;
			}
			break;
		case CH_DATA: {
			size_t n = len - i;

			if (n > b->remaining)
				n = (size_t)b->remaining;
			b->remaining -= n;
			i += n;
			if (!b->remaining)
				b->state = CH_DATA_CR;
			continue;
		}
		case CH_DATA_CR:
			if (c != '\r')
				goto bad;
			b->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (c != '\n')
				goto bad;
			b->state = CH_SIZE_FIRST;
			break;
		case CH_TRAILER_START:
			b->line_len = 1;
			if (c == '\r')
				b->state = CH_END_LF;
			else if (is_tchar(c))
				b->state = CH_TRAILER_NAME;
			else
				goto bad;
			break;
		case CH_TRAILER_NAME:
			if (c == ':')
				b->state = CH_TRAILER_VALUE;
			else if (!is_tchar(c))
				goto bad;
			if (++b->line_len > TRAILER_LINE_MAX)
				goto bad;
			break;
		case CH_TRAILER_VALUE:
			if (c == '\r')
				b->state = CH_TRAILER_LF;
			else if (!is_value_char(c))
				goto bad;
			if (++b->line_len > TRAILER_LINE_MAX)
				goto bad;
			break;
		case CH_TRAILER_LF:
			if (c != '\n')
				goto bad;
			b->state = CH_TRAILER_START;
			break;
		case CH_END_LF:
			if (c != '\n')
				goto bad;
			b->state = CH_DONE;
			*consumed = i + 1;
			return PARSE_OK;
		case CH_DONE:
			*consumed = i;
			return PARSE_OK;
		default:
			goto bad;
		}
		i++;
	}
	*consumed = len;
	return b->state == CH_DONE ? PARSE_OK : PARSE_NEED_MORE;
bad:
	*consumed = i;
	return PARSE_INVALID;
}

enum parse_result http_body_consume(struct http_body *b, const uint8_t *buf, size_t len,
				    size_t *consumed)
{
	size_t n;

	*consumed = 0;
	if (!buf)
		len = 0;
	switch (b->kind) {
	case HTTP_BODY_NONE:
		return PARSE_OK;
	case HTTP_BODY_LENGTH:
		n = len < b->remaining ? len : (size_t)b->remaining;
		b->remaining -= n;
		*consumed = n;
		return b->remaining ? PARSE_NEED_MORE : PARSE_OK;
	case HTTP_BODY_CHUNKED:
		if (b->state == CH_DONE)
			return PARSE_OK;
		return chunked_consume(b, buf, len, consumed);
	default:
		return PARSE_INVALID;
	}
}

void http_body_skip(struct http_body *b, uint64_t n)
{
	if (b->kind == HTTP_BODY_CHUNKED && b->state != CH_DATA)
		return;
	if (n > b->remaining)
		n = b->remaining;
	b->remaining -= n;
	if (b->kind == HTTP_BODY_CHUNKED && !b->remaining)
		b->state = CH_DATA_CR;
}

/* Copies s into out as printable ASCII ('?' for anything else); returns bytes written. */
static size_t put_printable(char *out, size_t cap, const char *s, size_t n)
{
	size_t i;

	for (i = 0; s && i < n && i < cap; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	return i;
}

size_t http_build_forbidden(char *out, size_t cap, const char *reason, const char *host,
			    size_t host_len)
{
	char body[128 + 2 * HTTP_HOST_MAX];
	size_t blen = 0, hlen, k;
	int n;

	if (!out || !cap)
		return 0;
	blen += put_printable(body + blen, sizeof(body) - blen, "moat: ", 6);
	k = reason ? strlen(reason) : 0;
	blen += put_printable(body + blen, 96, reason, k);
	if (host && host_len) {
		blen += put_printable(body + blen, sizeof(body) - blen, ": ", 2);
		blen += put_printable(body + blen, sizeof(body) - blen - 1, host,
				      host_len < HTTP_HOST_MAX + 2 ? host_len : HTTP_HOST_MAX + 2);
	}
	body[blen++] = '\n';

	/* Shorten the body (keeping its final newline) until head and body fit. */
	for (;;) {
		n = snprintf(NULL, 0, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\n\r\n", blen);
		hlen = (size_t)n;
		if (hlen + blen <= cap)
			break;
		if (hlen + 1 > cap || blen == 1)
			return 0;
		k = hlen + blen - cap;
		if (k >= blen)
			k = blen - 1;
		blen -= k;
		body[blen - 1] = '\n';
	}
	snprintf(out, cap, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n", blen);
	memcpy(out + hlen, body, blen);
	if (hlen + blen < cap)
		out[hlen + blen] = 0;
	return hlen + blen;
}

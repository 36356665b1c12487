/* TLS ClientHello parser (RFC 8446 4.1.2, RFC 5246 7.4.1.2, RFC 6066 3, RFC 7301 3.1).
 *
 * A pure function over the bytes a client sent so far.  The first flight of a
 * client is one ClientHello handshake message, which may be fragmented over
 * several handshake records (post-quantum key shares make it larger than one
 * TCP segment, and a client may cut it anywhere).  When it spans records, the
 * fragments are reassembled into the caller's scratch buffer; a ClientHello in
 * one record is read in place. */
#include <string.h>

#include "tproxy/tls.h"

#define TLS_CT_CHANGE_CIPHER_SPEC 20
#define TLS_CT_ALERT 21
#define TLS_CT_HANDSHAKE 22
#define TLS_CT_APPLICATION_DATA 23
#define TLS_HS_CLIENT_HELLO 1

#define TLS_EXT_SERVER_NAME 0x0000
#define TLS_EXT_ALPN 0x0010
#define TLS_EXT_ECH 0xfe0d
#define TLS_SNI_HOST_NAME 0

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

bool tls_looks_like(const uint8_t *buf, size_t len)
{
	return buf && len >= 3 && buf[0] == TLS_CT_HANDSHAKE && buf[1] == 3;
}

static enum parse_result invalid(struct tls_hello *out, const char *why)
{
	out->error = why;
	return PARSE_INVALID;
}

static bool sni_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.';
}

/* extension_data of server_name:
 *
 *   struct {
 *       NameType name_type;              -- uint8, host_name(0)
 *       opaque HostName<1..2^16-1>;      -- uint16 length + bytes
 *   } ServerName;
 *   struct { ServerName server_name_list<1..2^16-1> } ServerNameList;  -- uint16 length
 *
 * moat accepts exactly one entry, of type host_name, 1..255 bytes of
 * [A-Za-z0-9.-] (a trailing dot is the matcher's business). */
static enum parse_result parse_sni(const uint8_t *p, size_t len, struct tls_hello *out)
{
	size_t pos = 0, list_len, name_len;

	if (pos + 2 > len)
		return invalid(out, "server_name extension too short");
	list_len = be16(p);
	pos += 2;
	if (list_len == 0 || pos + list_len != len)
		return invalid(out, "server_name list length mismatch");
	if (pos + 3 > len)
		return invalid(out, "server_name entry truncated");
	if (p[pos] != TLS_SNI_HOST_NAME)
		return invalid(out, "server_name entry of unknown type");
	name_len = be16(p + pos + 1);
	pos += 3;
	if (pos + name_len > len)
		return invalid(out, "server_name entry truncated");
	if (name_len == 0)
		return invalid(out, "empty server name");
	if (name_len > TLS_SNI_MAX)
		return invalid(out, "server name longer than 255 bytes");
	for (size_t i = 0; i < name_len; i++)
		if (!sni_char_ok(p[pos + i]))
			return invalid(out, "invalid character in server name");
	if (pos + name_len != len)
		return invalid(out, "more than one server name");
	out->sni = (const char *)(p + pos);
	out->sni_len = name_len;
	out->has_sni = true;
	return PARSE_OK;
}

/* extension_data of application_layer_protocol_negotiation:
 *
 *   opaque ProtocolName<1..2^8-1>;
 *   struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
 */
static enum parse_result parse_alpn(const uint8_t *p, size_t len, struct tls_hello *out)
{
	size_t pos = 0, list_len;

	if (pos + 2 > len)
		return invalid(out, "ALPN extension too short");
	list_len = be16(p);
	pos += 2;
	if (list_len < 2 || pos + list_len != len)
		return invalid(out, "ALPN list length mismatch");
	while (pos < len) {
		size_t n = p[pos++];

		if (n == 0 || pos + n > len)
			return invalid(out, "bad ALPN protocol name length");
		if (n == 2 && memcmp(p + pos, "h2", 2) == 0)
			out->alpn_h2 = true;
		else if (n == 8 && memcmp(p + pos, "http/1.1", 8) == 0)
			out->alpn_http11 = true;
		pos += n;
	}
	out->has_alpn = true;
	return PARSE_OK;
}

/* The ClientHello body (after the 4-byte handshake header):
 *
 *   uint16 legacy_version;
 *   opaque random[32];
 *   opaque legacy_session_id<0..32>;                    -- uint8 length
 *   CipherSuite cipher_suites<2..2^16-2>;               -- uint16 length, even
 *   opaque legacy_compression_methods<1..2^8-1>;        -- uint8 length
 *   Extension extensions<0..2^16-1>;                    -- uint16 length; absent in
 *                                                          old clients
 *   struct { uint16 extension_type; opaque extension_data<0..2^16-1>; } Extension;
 *
 * The message length is known, so anything short is INVALID, never NEED_MORE. */
static enum parse_result parse_body(const uint8_t *p, size_t len, struct tls_hello *out)
{
	uint64_t seen[65536 / 64];
	size_t pos = 0, n, ext_end;
	enum parse_result r;

	if (pos + 2 > len)
		return invalid(out, "ClientHello truncated");
	out->legacy_version = be16(p);
	if (p[0] != 3)
		return invalid(out, "ClientHello version is not 3.x");
	pos += 2;
	if (pos + 32 > len)
		return invalid(out, "ClientHello truncated");
	pos += 32;
	if (pos + 1 > len)
		return invalid(out, "ClientHello truncated");
	n = p[pos++];
	if (n > 32)
		return invalid(out, "session_id longer than 32 bytes");
	if (pos + n > len)
		return invalid(out, "ClientHello truncated");
	pos += n;
	if (pos + 2 > len)
		return invalid(out, "ClientHello truncated");
	n = be16(p + pos);
	pos += 2;
	if (n == 0 || n % 2)
		return invalid(out, "bad cipher_suites length");
	if (pos + n > len)
		return invalid(out, "ClientHello truncated");
	pos += n;
	if (pos + 1 > len)
		return invalid(out, "ClientHello truncated");
	n = p[pos++];
	if (n == 0)
		return invalid(out, "no compression methods");
	if (pos + n > len)
		return invalid(out, "ClientHello truncated");
	pos += n;
	if (pos == len)
		return PARSE_OK;        /* no extensions at all */
	if (pos + 2 > len)
		return invalid(out, "ClientHello truncated");
	n = be16(p + pos);
	pos += 2;
	if (pos + n != len)
		return invalid(out, "extensions length mismatch");
	ext_end = len;

	memset(seen, 0, sizeof(seen));
	while (pos < ext_end) {
		uint16_t type;
		size_t elen;

		if (pos + 4 > ext_end)
			return invalid(out, "extension header truncated");
		type = be16(p + pos);
		elen = be16(p + pos + 2);
		pos += 4;
		if (pos + elen > ext_end)
			return invalid(out, "extension length overflows the extensions");
		if (seen[type / 64] & (UINT64_C(1) << (type % 64)))
			return invalid(out, "duplicate extension");
		seen[type / 64] |= UINT64_C(1) << (type % 64);
		switch (type) {
		case TLS_EXT_SERVER_NAME:
			r = parse_sni(p + pos, elen, out);
			break;
		case TLS_EXT_ALPN:
			r = parse_alpn(p + pos, elen, out);
			break;
		case TLS_EXT_ECH:
			out->ech = true;
			r = PARSE_OK;
			break;
		default:
			r = PARSE_OK;
			break;
		}
		if (r != PARSE_OK)
			return r;
		pos += elen;
	}
	return PARSE_OK;
}

static const char *bad_content_type(uint8_t type)
{
	switch (type) {
	case TLS_CT_ALERT:
		return "alert before ClientHello";
	case TLS_CT_CHANGE_CIPHER_SPEC:
		return "change_cipher_spec before ClientHello";
	case TLS_CT_APPLICATION_DATA:
		return "application data before ClientHello";
	default:
		return "not a TLS handshake record";
	}
}

/* Checks the record header at buf[pos], as far as it has arrived:
 *
 *   struct {
 *       ContentType type;                   -- uint8, handshake(22) until the hello is whole
 *       ProtocolVersion legacy_record_version;  -- uint16, 0x03xx
 *       uint16 length;                      -- 1..2^14 for a plaintext handshake record
 *       opaque fragment[length];
 *   } TLSPlaintext;
 */
static enum parse_result record_header(const uint8_t *buf, size_t len, size_t pos,
				       size_t *rlen, struct tls_hello *out)
{
	if (pos + 1 > len)
		return PARSE_NEED_MORE;
	if (buf[pos] != TLS_CT_HANDSHAKE)
		return invalid(out, bad_content_type(buf[pos]));
	if (pos + 2 > len)
		return PARSE_NEED_MORE;
	if (buf[pos + 1] != 3)
		return invalid(out, "record version is not 3.x");
	if (pos + 5 > len)
		return PARSE_NEED_MORE;
	*rlen = be16(buf + pos + 3);
	if (*rlen == 0)
		return invalid(out, "empty handshake record");
	if (*rlen > TLS_RECORD_MAX)
		return invalid(out, "record longer than 2^14 bytes");
	return PARSE_OK;
}

/* Checks the handshake header (msg_type uint8, length uint24) once its 4 bytes are known;
 * returns the whole message length in *need. */
static enum parse_result handshake_header(const uint8_t *h, size_t *need, size_t cap,
					  struct tls_hello *out)
{
	size_t body;

	if (h[0] != TLS_HS_CLIENT_HELLO)
		return invalid(out, "first handshake message is not a ClientHello");
	body = be24(h + 1);
	if (body + 4 > TLS_HELLO_MAX)
		return invalid(out, "ClientHello larger than the cap");
	if (body + 4 > cap)
		return invalid(out, "ClientHello larger than the scratch buffer");
	*need = body + 4;
	return PARSE_OK;
}

enum parse_result tls_parse_client_hello(const uint8_t *buf, size_t len, uint8_t *scratch,
					 size_t scratch_len, struct tls_hello *out)
{
	size_t pos = 0, rlen = 0, have = 0, need = 0;
	enum parse_result r;

	memset(out, 0, sizeof(*out));
	if (!buf && len)
		return invalid(out, "no buffer");

	r = record_header(buf, len, 0, &rlen, out);
	if (r != PARSE_OK)
		return r;
	/* Fast path: the whole message in the first record, read in place. */
	if (rlen >= 4 && len < 5 + 4) {
		if (len > 5 && buf[5] != TLS_HS_CLIENT_HELLO)
			return invalid(out, "first handshake message is not a ClientHello");
		return PARSE_NEED_MORE;
	}
	if (rlen >= 4) {
		r = handshake_header(buf + 5, &need, TLS_HELLO_MAX, out);
		if (r != PARSE_OK)
			return r;
		if (need <= rlen) {
			if (need != rlen)
				return invalid(out, "data after the ClientHello in its record");
			if (5 + rlen > len)
				return PARSE_NEED_MORE;
			out->consumed = 5 + rlen;
			return parse_body(buf + 5 + 4, need - 4, out);
		}
		need = 0;
	}

	/* Reassembly: copy each record's fragment into scratch until the message is whole. */
	for (;;) {
		size_t avail, off = 0, take;

		r = record_header(buf, len, pos, &rlen, out);
		if (r != PARSE_OK)
			return r;
		avail = len - pos - 5 < rlen ? len - pos - 5 : rlen;
		while (off < avail) {
			if (!need) {
				take = 4 - have;
				if (take > avail - off)
					take = avail - off;
				if (!scratch || scratch_len < 4)
					return invalid(out, "no scratch buffer for reassembly");
				memcpy(scratch + have, buf + pos + 5 + off, take);
				have += take;
				off += take;
				if (have < 4)
					break;
				r = handshake_header(scratch, &need, scratch_len, out);
				if (r != PARSE_OK)
					return r;
				continue;
			}
			if (have == need)
				break;
			take = need - have;
			if (take > avail - off)
				take = avail - off;
			memcpy(scratch + have, buf + pos + 5 + off, take);
			have += take;
			off += take;
		}
		if (need && have == need) {
			if (off != rlen)
				return invalid(out, "data after the ClientHello in its record");
			out->consumed = pos + 5 + rlen;
			return parse_body(scratch + 4, need - 4, out);
		}
		if (avail < rlen)
			return PARSE_NEED_MORE;
		pos += 5 + rlen;
	}
}

size_t tls_build_alert_access_denied(uint8_t *out, size_t cap, uint16_t record_version)
{
	if (!out || cap < 7)
		return 0;
	if (record_version >> 8 != 3)
		record_version = 0x0303;
	out[0] = TLS_CT_ALERT;
	out[1] = (uint8_t)(record_version >> 8);
	out[2] = (uint8_t)record_version;
	out[3] = 0;
	out[4] = 2;
	out[5] = 2;     /* fatal */
	out[6] = 49;    /* access_denied */
	return 7;
}

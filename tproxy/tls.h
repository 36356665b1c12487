/* TLS ClientHello parser: the server name (SNI), ALPN and ECH, read from the
 * first flight of a client, whatever the record and segment boundaries. */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tproxy/parse.h"

#define TLS_HELLO_MAX (64 * 1024)   /* cap on the reassembled handshake message */
#define TLS_RECORD_MAX (1 << 14)    /* largest plaintext record fragment (RFC 8446 5.1) */
#define TLS_SNI_MAX 255

struct tls_hello {
	const char *sni;        /* points into the scratch buffer (or the input); NOT NUL-terminated */
	size_t sni_len;         /* 0 when no server_name extension */
	bool has_sni;
	bool ech;               /* encrypted_client_hello extension (0xfe0d) present */
	bool has_alpn;
	bool alpn_h2, alpn_http11;
	uint16_t legacy_version;
	size_t consumed;        /* bytes of input holding the whole ClientHello (all records) */
	const char *error;      /* static string saying why INVALID */
};

/* Looks like TLS? (first byte 0x16, version 0x03xx): lets the proxy tell TLS from HTTP early.
 * False if len < 3 or not TLS. */
bool tls_looks_like(const uint8_t *buf, size_t len);

/* buf: the bytes the client sent so far (TLS records). scratch: caller-provided buffer of
 * scratch_len bytes (>= TLS_HELLO_MAX) where handshake fragments spread over several records
 * are reassembled (a ClientHello in a single record is read in place and scratch is not
 * touched). NEED_MORE only while the message is genuinely incomplete and still under the cap. */
enum parse_result tls_parse_client_hello(const uint8_t *buf, size_t len, uint8_t *scratch,
					 size_t scratch_len, struct tls_hello *out);

/* A TLS alert record: level fatal(2), description access_denied(49); returns its length (7),
 * or 0 when cap < 7. record_version 0 (or not 0x03xx) means 0x0303. */
size_t tls_build_alert_access_denied(uint8_t *out, size_t cap, uint16_t record_version);

#endif

/* libFuzzer target for the ClientHello parser: the input as records, and the input after its
 * first byte as a handshake message framed into records of two sizes derived from that byte,
 * which must parse the same way whatever the framing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tproxy/tls.h"

static uint8_t scratch[TLS_HELLO_MAX];
static uint8_t framed[TLS_HELLO_MAX * 2];
static uint8_t sni[2][TLS_SNI_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *buf, size_t len, enum parse_result r, const struct tls_hello *h)
{
	struct tls_hello p;

	if (r == PARSE_INVALID) {
		if (!h->error)
			abort();
		return;
	}
	if (r != PARSE_OK)
		return;
	if (h->consumed > len || h->consumed < 9 || h->sni_len > TLS_SNI_MAX ||
	    h->has_sni != (h->sni_len > 0))
		abort();
	for (size_t i = 0; i < h->sni_len; i++)
		if (h->sni[i] == 0)
			abort();
	/* One byte short of the hello is incomplete, not malformed. */
	if (tls_parse_client_hello(buf, h->consumed - 1, scratch, sizeof(scratch), &p) !=
	    PARSE_NEED_MORE)
		abort();
}

static size_t frame(const uint8_t *hs, size_t n, size_t rec)
{
	size_t out = 0;

	for (size_t off = 0; off < n && out + 5 + rec <= sizeof(framed); off += rec) {
		size_t k = n - off < rec ? n - off : rec;

		framed[out++] = 22;
		framed[out++] = 3;
		framed[out++] = 1;
		framed[out++] = (uint8_t)(k >> 8);
		framed[out++] = (uint8_t)k;
		memcpy(framed + out, hs + off, k);
		out += k;
	}
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_hello h;
	enum parse_result r, first = PARSE_OK;
	size_t sizes[2], n, sni_len0 = 0;

	r = tls_parse_client_hello(data, size, scratch, sizeof(scratch), &h);
	check(data, size, r, &h);
	tls_looks_like(data, size);

	/* The message alone (no bytes after it, which one framing would put in the hello's own
	 * record and another in a record of their own), at most 2^14 bytes so that even 1-byte
	 * records fit in framed[]. */
	if (size < 2)
		return 0;
	size--;
	if (size >= 4 && size > 4 + ((size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4]))
		size = 4 + ((size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4]);
	if (size > (1 << 14))
		return 0;
	sizes[0] = (size_t)data[0] * 64 + 1;
	sizes[1] = (size_t)(data[0] % 7) + 1;
	for (int i = 0; i < 2; i++) {
		n = frame(data + 1, size, sizes[i]);
		r = tls_parse_client_hello(framed, n, scratch, sizeof(scratch), &h);
		check(framed, n, r, &h);
		if (r == PARSE_OK && h.sni_len)
			memcpy(sni[i], h.sni, h.sni_len);
		if (i == 0) {
			first = r;
			sni_len0 = h.sni_len;
			continue;
		}
		/* Record boundaries change nothing but an error's wording. */
		if (r != first || (r == PARSE_OK && h.sni_len != sni_len0) || (r == PARSE_OK && (h.sni_len && memcmp(sni[0], sni[1],
									   h.sni_len))))
			abort();
	}
	return 0;
}

/* libFuzzer target for the DNS message code: the input is parsed as a query,
 * answered with every builder, walked as an upstream reply (against itself and
 * against its own parsed question), and framed as a TCP stream.  Invariants
 * that must hold are checked with abort(). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tproxy/dns_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_answer(void *arg, const struct dns_answer *a)
{
	unsigned *n = arg;
	if (a->name_len > DNS_NAME_MAX || a->owner_len > DNS_NAME_MAX)
		abort();
	if (a->family != 2 && a->family != 10)   /* AF_INET, AF_INET6 */
		abort();
	if (a->ttl > 0x7fffffffu)
		abort();
	(*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[DNS_MSG_MAX];
	struct dns_query q, q2;
	struct dns_reply_info info;
	unsigned n = 0;

	enum parse_result r = dns_parse_query(data, size, &q);
	if (r == PARSE_NEED_MORE)
		abort();
	if (q.qname_len > DNS_NAME_MAX || strlen(q.qname) > q.qname_len)
		abort();
	if (r == PARSE_OK) {
		if (q.question_len == 0 || DNS_HDR_LEN + q.question_len > size)
			abort();
		int rcodes[] = { DNS_RCODE_NOERROR, DNS_RCODE_NXDOMAIN, DNS_RCODE_REFUSED,
				 DNS_RCODE_BADVERS };
		for (size_t i = 0; i < sizeof(rcodes) / sizeof(rcodes[0]); i++) {
			size_t m = dns_build_response(out, sizeof(out), data, size, &q, rcodes[i],
						      i == 0);
			if (!m)
				abort();
			/* moat's own reply must satisfy its own reply walker */
			if (dns_parse_answers(out, m, &q, &info, on_answer, &n) != PARSE_OK ||
			    info.n_addrs != 0)
				abort();
		}
		size_t m = dns_build_query(out, sizeof(out), data, size, &q, 0xabcd);
		if (!m || dns_parse_query(out, m, &q2) != PARSE_OK || q2.id != 0xabcd ||
		    q2.qname_len != q.qname_len || memcmp(q2.qname, q.qname, q.qname_len) != 0)
			abort();
		/* the input as a reply to its own question (it has QR=0: must be refused) */
		if (dns_parse_answers(data, size, &q, &info, on_answer, &n) != PARSE_INVALID)
			abort();
	} else if (q.rcode_hint > 0) {
		size_t m = dns_build_response(out, sizeof(out), data, size, &q, q.rcode_hint, false);
		if (m != DNS_HDR_LEN)
			abort();
	}

	/* as an upstream reply, with and without a question to match */
	r = dns_parse_answers(data, size, NULL, &info, on_answer, &n);
	if (r == PARSE_NEED_MORE || (r == PARSE_OK && info.n_addrs > size / 11))
		abort();
	/* as a TCP stream: frames one after the other */
	size_t off = 0;
	for (int i = 0; i < 64 && off < size; i++) {
		const uint8_t *msg;
		size_t ml;
		r = dns_tcp_frame(data + off, size - off, &msg, &ml);
		if (r != PARSE_OK)
			break;
		if (msg != data + off + 2 || off + 2 + ml > size)
			abort();
		dns_parse_query(msg, ml, &q2);
		off += 2 + ml;
	}
	return 0;
}

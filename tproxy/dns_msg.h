/* DNS messages (RFC 1035, EDNS0 RFC 6891): a strict query parser, the
 * answer walker the filter uses on upstream replies, and the builders for the
 * replies moat gives itself.  Pure functions over (buffer, length). */
#ifndef MOAT_DNS_MSG_H
#define MOAT_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tproxy/parse.h"

#define DNS_HDR_LEN     12
#define DNS_NAME_MAX    253     /* dotted text, no trailing dot */
#define DNS_WIRE_NAME_MAX 255   /* wire bytes of a name, root label included */
#define DNS_MSG_MAX     65535
#define DNS_UDP_MIN     512     /* what a client without EDNS accepts */
#define DNS_EDNS_SIZE   1232    /* the UDP size moat advertises */

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
	DNS_RCODE_BADVERS = 16,  /* extended: needs an OPT record */
	DNS_RCODE_DROP = -1,     /* rcode_hint only: no reply can be built, drop it */
};

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_SRV = 33,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_SVCB = 64,
	DNS_TYPE_HTTPS = 65,
	DNS_TYPE_ANY = 255,
};

#define DNS_CLASS_IN 1
#define DNS_OPCODE_QUERY 0

struct dns_query {
	uint16_t id;
	uint16_t flags;             /* the header's flag word as received */
	uint8_t opcode;
	bool rd, cd;
	uint16_t qdcount, ancount, nscount, arcount;

	/* Valid when the question was parsed (question_len > 0). */
	char qname[DNS_NAME_MAX + 1];   /* lower case, dotted, no trailing dot, NUL-terminated
					 * ("" is the root); may hold odd bytes, see below */
	size_t qname_len;
	bool name_has_odd_chars;    /* a byte outside [A-Za-z0-9-_] in a label */
	uint16_t qtype, qclass;
	size_t question_len;        /* wire bytes of the question, from offset 12 */

	/* EDNS0 */
	bool has_opt;
	uint8_t edns_version;
	uint16_t udp_size;          /* as sent; dns_client_udp_size() gives the usable size */
	bool do_bit;

	/* 0 when the query can be answered normally; otherwise the rcode moat
	 * replies with (FORMERR, NOTIMP, REFUSED, BADVERS) or DNS_RCODE_DROP. */
	int rcode_hint;
};

/* Parses a query.  PARSE_OK: well formed; q->rcode_hint may still be set
 * (REFUSED for a class other than IN, BADVERS for EDNS version > 0).
 * PARSE_INVALID: malformed; q->rcode_hint is FORMERR, NOTIMP (opcode other
 * than QUERY) or DNS_RCODE_DROP (under 12 bytes, over 65535 bytes, or QR=1:
 * never answer a response).  Never returns PARSE_NEED_MORE: a datagram is
 * whole or broken; TCP reassembly is dns_tcp_frame()'s job. */
enum parse_result dns_parse_query(const uint8_t *buf, size_t len, struct dns_query *q);

/* TCP framing: a 2-byte big-endian length, then the message.  PARSE_OK sets
 * *msg and *msglen (the frame takes 2 + *msglen bytes); PARSE_NEED_MORE until
 * the frame is complete; PARSE_INVALID for a zero length. */
enum parse_result dns_tcp_frame(const uint8_t *buf, size_t len, const uint8_t **msg,
				size_t *msglen);

/* The reply size a UDP client accepts: 512 without EDNS, else its EDNS size
 * (at least 512). */
size_t dns_client_udp_size(const struct dns_query *q);

/* Builds moat's own reply to a query: same id, opcode and question (copied
 * byte for byte), QR=1, RA=1, RD copied, no answers, the given rcode, and an
 * OPT record when the query had one (extended rcodes go there).
 * empty_noerror forces NOERROR with an empty answer section (the NODATA
 * answer given to HTTPS/SVCB queries).  When the question could not be parsed
 * (q->question_len == 0) the reply is the header alone with the query's id.
 * Returns the length, or 0 when nothing can be built (query under 12 bytes,
 * rcode DNS_RCODE_DROP, or cap too small): drop the query then. */
size_t dns_build_response(uint8_t *out, size_t cap, const uint8_t *query, size_t qlen,
			  const struct dns_query *q, int rcode, bool empty_noerror);

/* Builds the query moat sends upstream for a parsed client query: a new id,
 * RD=1, CD copied, the client's question byte for byte, and an OPT record
 * (moat's UDP size, DO copied, no options) only when the client sent one.
 * Nothing else of the client's message goes upstream.  Returns the length
 * or 0 when cap is too small. */
size_t dns_build_query(uint8_t *out, size_t cap, const uint8_t *query, size_t qlen,
		       const struct dns_query *q, uint16_t id);

/* One address from an answer. */
struct dns_answer {
	const char *name;           /* the name to learn it for: the queried name */
	size_t name_len;
	const char *owner;          /* the record's owner (end of a CNAME chain) */
	size_t owner_len;
	int family;                 /* AF_INET / AF_INET6 */
	uint8_t addr[16];
	uint32_t ttl;               /* the smallest TTL along the chain */
};
typedef void (*dns_answer_cb)(void *arg, const struct dns_answer *a);

struct dns_reply_info {
	uint16_t id;
	int rcode;                  /* header rcode (4 bits) */
	bool tc;
	unsigned n_addrs;           /* addresses reported */
};

#define DNS_CNAME_CHAIN_MAX 8

/* Walks an upstream reply.  When q is not NULL the reply must carry q's id
 * and exactly q's question (name compared case-insensitively, type, class).
 * Every A/AAAA record owned by the queried name, or by a name reached from it
 * through a CNAME chain in the answer section (at most DNS_CNAME_CHAIN_MAX
 * links), is reported through cb (may be NULL) under the queried name;
 * records for other owners are ignored.  info->id, rcode and tc are filled as
 * soon as the header is read, even when the result is PARSE_INVALID.
 * PARSE_INVALID on any malformation or mismatch; never PARSE_NEED_MORE. */
enum parse_result dns_parse_answers(const uint8_t *buf, size_t len, const struct dns_query *q,
				    struct dns_reply_info *info, dns_answer_cb cb, void *arg);

/* "A", "AAAA", "HTTPS", ... or the number as text, into buf. */
const char *dns_type_name(uint16_t type, char *buf, size_t cap);
/* "NOERROR", "NXDOMAIN", ... or the number as text. */
const char *dns_rcode_name(int rcode, char *buf, size_t cap);

#endif

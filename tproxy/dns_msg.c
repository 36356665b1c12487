#include "tproxy/dns_msg.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* A DNS message (RFC 1035 4.1, RFC 6891):
 *
 *   header, 12 bytes, big endian:
 *     0  id            16
 *     2  flags         QR(1) OPCODE(4) AA(1) TC(1) RD(1) | RA(1) Z(1) AD(1) CD(1) RCODE(4)
 *     4  qdcount       16   questions
 *     6  ancount       16   answer RRs
 *     8  nscount       16   authority RRs
 *     10 arcount       16   additional RRs
 *   question:   NAME  TYPE(16) CLASS(16)
 *   RR:         NAME  TYPE(16) CLASS(16) TTL(32) RDLENGTH(16) RDATA[RDLENGTH]
 *   NAME:       a sequence of labels, each LEN(8) then LEN bytes, LEN <= 63
 *               (top bits 00), ended by a zero byte, or by a pointer: two
 *               bytes 11xxxxxx xxxxxxxx giving the offset of the rest of the
 *               name in the message.  Top bits 01 and 10 are not valid.  At
 *               most 255 bytes on the wire, root byte included.
 *   OPT RR (EDNS0, in the additional section): NAME is the root (one zero
 *               byte), CLASS is the sender's UDP payload size, TTL is
 *               EXT-RCODE(8) VERSION(8) DO(1) Z(15), RDATA is a list of
 *               options CODE(16) LEN(16) DATA[LEN].
 *
 * Compression pointers are accepted only when they point strictly before the
 * start of the name segment being read (so every jump goes further back and
 * no loop is possible), never into the header, and at most
 * DNS_PTR_JUMPS_MAX times per name. */

#define DNS_PTR_JUMPS_MAX 64

#define F_QR 0x8000
#define F_TC 0x0200
#define F_RD 0x0100
#define F_RA 0x0080
#define F_CD 0x0010

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)(v >> 16));
	wr16(p + 2, (uint16_t)v);
}

static bool label_char_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Reads the name at off.  out (DNS_NAME_MAX + 1 bytes) gets the dotted,
 * lower-cased form; *end the offset just after the name where it started
 * (after the first pointer if there is one).  Returns 0 or -1. */
static int name_read(const uint8_t *buf, size_t len, size_t off, char *out, size_t *outlen,
		     bool *odd, size_t *end)
{
	size_t pos = off, floor = off, wire = 0, n = 0;
	unsigned jumps = 0;
	bool jumped = false, bad = false;

	for (;;) {
		if (pos >= len)
			return -1;
		uint8_t l = buf[pos];
		if ((l & 0xC0) == 0xC0) {
			if (pos + 1 >= len)
				return -1;
			size_t t = ((size_t)(l & 0x3F) << 8) | buf[pos + 1];
			if (t < DNS_HDR_LEN || t >= floor || ++jumps > DNS_PTR_JUMPS_MAX)
				return -1;
			if (!jumped)
				*end = pos + 2;
			jumped = true;
			pos = floor = t;
			continue;
		}
		if (l & 0xC0)
			return -1;      /* 0x40 extended / 0x80 reserved label types */
		wire += 1 + (size_t)l;
		if (l == 0) {
			if (wire > DNS_WIRE_NAME_MAX)
				return -1;
			if (!jumped)
				*end = pos + 1;
			break;
		}
		/* keep room for the root byte */
		if (wire + 1 > DNS_WIRE_NAME_MAX || pos + 1 + l > len)
			return -1;
		if (n)
			out[n++] = '.';
		for (size_t i = 0; i < l; i++) {
			uint8_t c = buf[pos + 1 + i];
			if (!label_char_ok(c))
				bad = true;
			if (c >= 'A' && c <= 'Z')
				c = (uint8_t)(c - 'A' + 'a');
			out[n++] = (char)c;
		}
		pos += 1 + (size_t)l;
	}
	out[n] = '\0';
	*outlen = n;
	if (odd)
		*odd = bad;
	return 0;
}

struct rr {
	size_t name_off;        /* where the owner name starts */
	uint16_t type, cls;
	uint32_t ttl;
	size_t rdata, rdlen;    /* rdata offset and length */
};

/* Reads one RR at *pos (owner name decoded into name) and advances *pos. */
static int rr_read(const uint8_t *buf, size_t len, size_t *pos, struct rr *rr, char *name,
		   size_t *name_len)
{
	size_t end;
	rr->name_off = *pos;
	if (name_read(buf, len, *pos, name, name_len, NULL, &end) < 0)
		return -1;
	if (end + 10 > len)
		return -1;
	rr->type = rd16(buf + end);
	rr->cls = rd16(buf + end + 2);
	rr->ttl = rd32(buf + end + 4);
	rr->rdlen = rd16(buf + end + 8);
	rr->rdata = end + 10;
	if (rr->rdata + rr->rdlen > len)
		return -1;
	*pos = rr->rdata + rr->rdlen;
	return 0;
}

/* EDNS options: CODE(16) LEN(16) DATA, exactly filling the rdata. */
static int opt_options_ok(const uint8_t *buf, size_t off, size_t rdlen)
{
	size_t p = 0;
	while (p < rdlen) {
		if (p + 4 > rdlen)
			return -1;
		size_t ol = rd16(buf + off + p + 2);
		if (p + 4 + ol > rdlen)
			return -1;
		p += 4 + ol;
	}
	return 0;
}

enum parse_result dns_parse_query(const uint8_t *buf, size_t len, struct dns_query *q)
{
	char scratch[DNS_NAME_MAX + 1];
	size_t slen, pos, end;

	memset(q, 0, sizeof(*q));
	q->rcode_hint = DNS_RCODE_DROP;
	if (len < DNS_HDR_LEN || len > DNS_MSG_MAX)
		return PARSE_INVALID;
	q->id = rd16(buf);
	q->flags = rd16(buf + 2);
	q->opcode = (uint8_t)((q->flags >> 11) & 0xF);
	q->rd = q->flags & F_RD;
	q->cd = q->flags & F_CD;
	q->qdcount = rd16(buf + 4);
	q->ancount = rd16(buf + 6);
	q->nscount = rd16(buf + 8);
	q->arcount = rd16(buf + 10);
	if (q->flags & F_QR)
		return PARSE_INVALID;   /* a response: answering it could start a loop */

	q->rcode_hint = DNS_RCODE_FORMERR;
	if (q->opcode != DNS_OPCODE_QUERY) {
		q->rcode_hint = DNS_RCODE_NOTIMP;
		return PARSE_INVALID;
	}
	if (q->qdcount != 1 || q->ancount != 0 || q->nscount != 0)
		return PARSE_INVALID;

	pos = DNS_HDR_LEN;
	if (name_read(buf, len, pos, q->qname, &q->qname_len, &q->name_has_odd_chars, &end) < 0) {
		q->qname[0] = '\0';
		q->qname_len = 0;
		return PARSE_INVALID;
	}
	if (end + 4 > len)
		return PARSE_INVALID;
	q->qtype = rd16(buf + end);
	q->qclass = rd16(buf + end + 2);
	pos = end + 4;
	size_t question_len = pos - DNS_HDR_LEN;

	bool has_opt = false;
	for (unsigned i = 0; i < q->arcount; i++) {
		struct rr rr;
		size_t start = pos;
		if (rr_read(buf, len, &pos, &rr, scratch, &slen) < 0)
			return PARSE_INVALID;
		if (rr.type != DNS_TYPE_OPT)
			continue;
		/* one OPT, owned by the root written as a single zero byte */
		if (has_opt || buf[start] != 0 || opt_options_ok(buf, rr.rdata, rr.rdlen) < 0)
			return PARSE_INVALID;
		has_opt = true;
		q->udp_size = rr.cls;
		q->edns_version = (uint8_t)(rr.ttl >> 16);
		q->do_bit = rr.ttl & 0x8000;
	}
	if (pos != len)
		return PARSE_INVALID;   /* trailing bytes */

	q->question_len = question_len;
	q->has_opt = has_opt;
	q->rcode_hint = 0;
	if (q->qclass != DNS_CLASS_IN)
		q->rcode_hint = DNS_RCODE_REFUSED;
	else if (has_opt && q->edns_version != 0)
		q->rcode_hint = DNS_RCODE_BADVERS;
	return PARSE_OK;
}

enum parse_result dns_tcp_frame(const uint8_t *buf, size_t len, const uint8_t **msg,
				size_t *msglen)
{
	if (len < 2)
		return PARSE_NEED_MORE;
	size_t l = rd16(buf);
	if (l == 0)
		return PARSE_INVALID;
	if (len - 2 < l)
		return PARSE_NEED_MORE;
	*msg = buf + 2;
	*msglen = l;
	return PARSE_OK;
}

size_t dns_client_udp_size(const struct dns_query *q)
{
	if (!q->has_opt || q->udp_size < DNS_UDP_MIN)
		return DNS_UDP_MIN;
	return q->udp_size;
}

static size_t put_opt(uint8_t *p, int rcode, bool do_bit)
{
	p[0] = 0;                               /* root */
	wr16(p + 1, DNS_TYPE_OPT);
	wr16(p + 3, DNS_EDNS_SIZE);
	wr32(p + 5, ((uint32_t)((rcode >> 4) & 0xFF) << 24) | (do_bit ? 0x8000u : 0));
	wr16(p + 9, 0);
	return 11;
}

size_t dns_build_response(uint8_t *out, size_t cap, const uint8_t *query, size_t qlen,
			  const struct dns_query *q, int rcode, bool empty_noerror)
{
	if (!q || qlen < DNS_HDR_LEN || rcode < 0 || rcode > 4095)
		return 0;
	if (empty_noerror)
		rcode = DNS_RCODE_NOERROR;
	size_t qsec = q->question_len;
	if (qsec && DNS_HDR_LEN + qsec > qlen)
		return 0;
	bool opt = q->has_opt && qsec;
	size_t need = DNS_HDR_LEN + qsec + (opt ? 11 : 0);
	if (need > cap)
		return 0;
	uint16_t flags = F_QR | (uint16_t)((q->opcode & 0xF) << 11) | (q->rd ? F_RD : 0) | F_RA |
			 (uint16_t)(rcode & 0xF);
	wr16(out, q->id);
	wr16(out + 2, flags);
	wr16(out + 4, qsec ? 1 : 0);
	wr16(out + 6, 0);
	wr16(out + 8, 0);
	wr16(out + 10, opt ? 1 : 0);
	size_t n = DNS_HDR_LEN;
	if (qsec) {
		memcpy(out + n, query + DNS_HDR_LEN, qsec);
		n += qsec;
	}
	if (opt)
		n += put_opt(out + n, rcode, q->do_bit);
	return n;
}

size_t dns_build_query(uint8_t *out, size_t cap, const uint8_t *query, size_t qlen,
		       const struct dns_query *q, uint16_t id)
{
	size_t qsec = q->question_len;
	if (!qsec || DNS_HDR_LEN + qsec > qlen)
		return 0;
	size_t need = DNS_HDR_LEN + qsec + (q->has_opt ? 11 : 0);
	if (need > cap)
		return 0;
	wr16(out, id);
	wr16(out + 2, F_RD | (q->cd ? F_CD : 0));
	wr16(out + 4, 1);
	wr16(out + 6, 0);
	wr16(out + 8, 0);
	wr16(out + 10, q->has_opt ? 1 : 0);
	memcpy(out + DNS_HDR_LEN, query + DNS_HDR_LEN, qsec);
	size_t n = DNS_HDR_LEN + qsec;
	if (q->has_opt)
		n += put_opt(out + n, 0, q->do_bit);
	return n;
}

static uint32_t ttl_norm(uint32_t ttl)
{
	return ttl > 0x7FFFFFFFu ? 0 : ttl;     /* RFC 2181 8 */
}

enum parse_result dns_parse_answers(const uint8_t *buf, size_t len, const struct dns_query *q,
				    struct dns_reply_info *info, dns_answer_cb cb, void *arg)
{
	char chain[DNS_CNAME_CHAIN_MAX + 1][DNS_NAME_MAX + 1];
	size_t chain_len[DNS_CNAME_CHAIN_MAX + 1];
	uint32_t chain_ttl[DNS_CNAME_CHAIN_MAX + 1];
	char owner[DNS_NAME_MAX + 1], target[DNS_NAME_MAX + 1];
	size_t olen, tlen, end, pos;
	struct rr rr;

	memset(info, 0, sizeof(*info));
	if (len < DNS_HDR_LEN || len > DNS_MSG_MAX)
		return PARSE_INVALID;
	uint16_t flags = rd16(buf + 2);
	info->id = rd16(buf);
	info->rcode = flags & 0xF;
	info->tc = flags & F_TC;
	if (!(flags & F_QR) || ((flags >> 11) & 0xF) != DNS_OPCODE_QUERY)
		return PARSE_INVALID;
	if (q && info->id != q->id)
		return PARSE_INVALID;
	unsigned qd = rd16(buf + 4), an = rd16(buf + 6), ns = rd16(buf + 8), ar = rd16(buf + 10);
	if (qd != 1)
		return PARSE_INVALID;

	if (name_read(buf, len, DNS_HDR_LEN, chain[0], &chain_len[0], NULL, &end) < 0)
		return PARSE_INVALID;
	if (end + 4 > len)
		return PARSE_INVALID;
	uint16_t qtype = rd16(buf + end), qclass = rd16(buf + end + 2);
	if (q && (qtype != q->qtype || qclass != q->qclass || chain_len[0] != q->qname_len ||
		  memcmp(chain[0], q->qname, q->qname_len) != 0))
		return PARSE_INVALID;
	chain_ttl[0] = UINT32_MAX;
	size_t an_start = end + 4;

	/* validate every record once; the walks below may then trust the layout */
	pos = an_start;
	size_t an_end = an_start;
	for (unsigned i = 0; i < an + ns + ar; i++) {
		if (rr_read(buf, len, &pos, &rr, owner, &olen) < 0)
			return PARSE_INVALID;
		if (i < an && rr.cls == DNS_CLASS_IN) {
			if ((rr.type == DNS_TYPE_A && rr.rdlen != 4) ||
			    (rr.type == DNS_TYPE_AAAA && rr.rdlen != 16))
				return PARSE_INVALID;
			if (rr.type == DNS_TYPE_CNAME &&
			    (name_read(buf, len, rr.rdata, target, &tlen, NULL, &end) < 0 ||
			     end != rr.rdata + rr.rdlen))
				return PARSE_INVALID;
		}
		if (i + 1 == an)
			an_end = pos;
	}
	if (pos != len)
		return PARSE_INVALID;

	/* follow CNAMEs from the queried name */
	size_t k = 0;
	while (k < DNS_CNAME_CHAIN_MAX) {
		bool found = false;
		pos = an_start;
		while (pos < an_end) {
			if (rr_read(buf, len, &pos, &rr, owner, &olen) < 0)
				return PARSE_INVALID;
			if (rr.type != DNS_TYPE_CNAME || rr.cls != DNS_CLASS_IN ||
			    olen != chain_len[k] || memcmp(owner, chain[k], olen) != 0)
				continue;
			if (name_read(buf, len, rr.rdata, target, &tlen, NULL, &end) < 0)
				return PARSE_INVALID;
			found = true;
			break;
		}
		if (!found)
			break;
		for (size_t j = 0; j <= k; j++)
			if (chain_len[j] == tlen && memcmp(chain[j], target, tlen) == 0)
				found = false;  /* a loop */
		if (!found)
			break;
		k++;
		memcpy(chain[k], target, tlen + 1);
		chain_len[k] = tlen;
		uint32_t t = ttl_norm(rr.ttl);
		chain_ttl[k] = t < chain_ttl[k - 1] ? t : chain_ttl[k - 1];
	}

	pos = an_start;
	while (pos < an_end) {
		if (rr_read(buf, len, &pos, &rr, owner, &olen) < 0)
			return PARSE_INVALID;
		if (rr.cls != DNS_CLASS_IN || (rr.type != DNS_TYPE_A && rr.type != DNS_TYPE_AAAA))
			continue;
		for (size_t j = 0; j <= k; j++) {
			if (chain_len[j] != olen || memcmp(chain[j], owner, olen) != 0)
				continue;
			struct dns_answer a = {
				.name = chain[0], .name_len = chain_len[0],
				.owner = owner, .owner_len = olen,
				.family = rr.type == DNS_TYPE_A ? AF_INET : AF_INET6,
			};
			memcpy(a.addr, buf + rr.rdata, rr.rdlen);
			uint32_t t = ttl_norm(rr.ttl);
			a.ttl = t < chain_ttl[j] ? t : chain_ttl[j];
			info->n_addrs++;
			if (cb)
				cb(arg, &a);
			break;
		}
	}
	return PARSE_OK;
}

const char *dns_type_name(uint16_t type, char *buf, size_t cap)
{
	static const struct { uint16_t t; const char *n; } names[] = {
		{ DNS_TYPE_A, "A" }, { DNS_TYPE_NS, "NS" }, { DNS_TYPE_CNAME, "CNAME" },
		{ DNS_TYPE_SOA, "SOA" }, { DNS_TYPE_PTR, "PTR" }, { DNS_TYPE_MX, "MX" },
		{ DNS_TYPE_TXT, "TXT" }, { DNS_TYPE_AAAA, "AAAA" }, { DNS_TYPE_SRV, "SRV" },
		{ DNS_TYPE_OPT, "OPT" }, { DNS_TYPE_SVCB, "SVCB" }, { DNS_TYPE_HTTPS, "HTTPS" },
		{ DNS_TYPE_ANY, "ANY" }, { 43, "DS" }, { 48, "DNSKEY" }, { 46, "RRSIG" },
		{ 35, "NAPTR" }, { 257, "CAA" }, { 252, "AXFR" }, { 251, "IXFR" },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].t == type)
			return names[i].n;
	snprintf(buf, cap, "%u", type);
	return buf;
}

const char *dns_rcode_name(int rcode, char *buf, size_t cap)
{
	static const char *const names[] = {
		"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	};
	if (rcode >= 0 && (size_t)rcode < sizeof(names) / sizeof(names[0]))
		return names[rcode];
	if (rcode == DNS_RCODE_BADVERS)
		return "BADVERS";
	snprintf(buf, cap, "%d", rcode);
	return buf;
}

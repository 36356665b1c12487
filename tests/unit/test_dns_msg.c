/* DNS message parser and builders: tables of wire messages and the verdicts
 * they must get. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "tproxy/dns_msg.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define HDR(id, fl, qd, an, ns, ar) \
	(id) >> 8, (id) & 0xff, (fl) >> 8, (fl) & 0xff, 0, qd, 0, an, 0, ns, 0, ar
#define WWW_EXAMPLE_COM 3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0
#define T_A 0, 1
#define T_AAAA 0, 28
#define C_IN 0, 1
#define OPT_4096_DO 0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0
#define MSG(...) .msg = { __VA_ARGS__ }, .len = sizeof((uint8_t[]){ __VA_ARGS__ })

struct qcase {
	const char *desc;
	uint8_t msg[128];
	size_t len;
	enum parse_result want;
	int hint;
	const char *qname;      /* expected when want == PARSE_OK */
	uint16_t qtype;
	bool opt, odd;
};

static const struct qcase qcases[] = {
	{ "A query", MSG(HDR(0x1234, 0x0100, 1, 0, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN),
	  PARSE_OK, 0, "www.example.com", 1, false, false },
	{ "AAAA query in mixed case is lower-cased",
	  MSG(HDR(0x1234, 0x0100, 1, 0, 0, 0), 3, 'W', 'w', 'W', 7, 'E', 'x', 'a', 'm', 'p', 'l',
	      'E', 3, 'C', 'O', 'M', 0, T_AAAA, C_IN),
	  PARSE_OK, 0, "www.example.com", 28, false, false },
	{ "with EDNS0", MSG(HDR(1, 0x0100, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, OPT_4096_DO),
	  PARSE_OK, 0, "www.example.com", 1, true, false },
	{ "EDNS0 with a cookie option",
	  MSG(HDR(1, 0x0100, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0, 0, 41, 0x04, 0xd0, 0, 0,
	      0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8),
	  PARSE_OK, 0, "www.example.com", 1, true, false },
	{ "compression pointer in the additional section",
	  MSG(HDR(1, 0x0100, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0xc0, 0x0c, T_A, C_IN, 0, 0,
	      0, 0, 0, 4, 198, 18, 0, 1),
	  PARSE_OK, 0, "www.example.com", 1, false, false },
	{ "underscore is a normal character",
	  MSG(HDR(1, 0, 1, 0, 0, 0), 6, '_', 'd', 'm', 'a', 'r', 'c', 1, 'x', 0, 0, 16, C_IN),
	  PARSE_OK, 0, "_dmarc.x", 16, false, false },
	{ "space in a label is flagged",
	  MSG(HDR(1, 0, 1, 0, 0, 0), 3, 'a', ' ', 'b', 1, 'x', 0, T_A, C_IN),
	  PARSE_OK, 0, "a b.x", 1, false, true },
	{ "dot inside a label is flagged",
	  MSG(HDR(1, 0, 1, 0, 0, 0), 3, 'a', '.', 'b', 1, 'x', 0, T_A, C_IN),
	  PARSE_OK, 0, "a.b.x", 1, false, true },
	{ "root name", MSG(HDR(1, 0, 1, 0, 0, 0), 0, 0, 2, C_IN), PARSE_OK, 0, "", 2, false, false },
	{ "class CH is refused",
	  MSG(HDR(1, 0, 1, 0, 0, 0), WWW_EXAMPLE_COM, T_A, 0, 3),
	  PARSE_OK, DNS_RCODE_REFUSED, "www.example.com", 1, false, false },
	{ "EDNS version 1 gets BADVERS",
	  MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0, 0, 41, 2, 0, 0, 1, 0, 0, 0, 0),
	  PARSE_OK, DNS_RCODE_BADVERS, "www.example.com", 1, true, false },

	{ "header alone, question missing", MSG(HDR(1, 0, 1, 0, 0, 0)), PARSE_INVALID,
	  DNS_RCODE_FORMERR },
	{ "truncated header (11 bytes)", MSG(0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0), PARSE_INVALID, DNS_RCODE_DROP },
	{ "QR=1: a response", MSG(HDR(1, 0x8100, 1, 0, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN),
	  PARSE_INVALID, DNS_RCODE_DROP },
	{ "opcode 2 (STATUS)", MSG(HDR(1, 0x1000, 1, 0, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN),
	  PARSE_INVALID, DNS_RCODE_NOTIMP },
	{ "qdcount 0", MSG(HDR(1, 0, 0, 0, 0, 0)), PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "qdcount 2",
	  MSG(HDR(1, 0, 2, 0, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN, 0xc0, 0x0c, T_AAAA, C_IN),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "ancount 1 in a query",
	  MSG(HDR(1, 0, 1, 1, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN, 0xc0, 0x0c, T_A, C_IN, 0, 0, 0, 0,
	      0, 4, 1, 2, 3, 4),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "label of 64 bytes (type bits 01)",
	  MSG(HDR(1, 0, 1, 0, 0, 0), 64, 'a', 'b', 0, T_A, C_IN), PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "label type 0x80", MSG(HDR(1, 0, 1, 0, 0, 0), 0x81, 'a', 0, T_A, C_IN),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "label longer than the message", MSG(HDR(1, 0, 1, 0, 0, 0), 10, 'a', 'b'),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "pointer to itself", MSG(HDR(1, 0, 1, 0, 0, 0), 0xc0, 0x0c, T_A, C_IN),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "forward pointer", MSG(HDR(1, 0, 1, 0, 0, 0), 0xc0, 0x12, T_A, C_IN, 1, 'a', 0),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "forward pointer to a well-formed name later in the message",
	  MSG(HDR(1, 0, 1, 0, 0, 1), 0xc0, 0x12, T_A, C_IN, 1, 'a', 0, T_A, C_IN, 0, 0, 0, 0, 0, 0),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "pointer into the header", MSG(HDR(1, 0, 1, 0, 0, 0), 0xc0, 0x02, T_A, C_IN),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "pointer out of bounds in additional",
	  MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0xff, 0xff, T_A, C_IN, 0, 0, 0, 0,
	      0, 0),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "pointer loop in additional (label then pointer back to it)",
	  MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 1, 'a', 0xc0, 33, T_A, C_IN,
	      0, 0, 0, 0, 0, 0),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "pointer cut in half", MSG(HDR(1, 0, 1, 0, 0, 0), 0xc0), PARSE_INVALID,
	  DNS_RCODE_FORMERR },
	{ "question without class", MSG(HDR(1, 0, 1, 0, 0, 0), WWW_EXAMPLE_COM, T_A),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "trailing garbage", MSG(HDR(1, 0, 1, 0, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN, 0xde, 0xad),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "arcount says 1, nothing there", MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "two OPT records",
	  MSG(HDR(1, 0, 1, 0, 0, 2), WWW_EXAMPLE_COM, T_A, C_IN, OPT_4096_DO, OPT_4096_DO),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "OPT owned by a name", MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0xc0, 0x0c,
				      0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "OPT option overruns its rdata",
	  MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0, 0, 41, 0x10, 0, 0, 0, 0, 0,
	      0, 4, 0, 10, 0, 8),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
	{ "RR rdlength overruns the message",
	  MSG(HDR(1, 0, 1, 0, 0, 1), WWW_EXAMPLE_COM, T_A, C_IN, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 9,
	      1, 2),
	  PARSE_INVALID, DNS_RCODE_FORMERR },
};

static void test_parse_query_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(qcases); i++) {
		const struct qcase *c = &qcases[i];
		struct dns_query q;
		enum parse_result r = dns_parse_query(c->msg, c->len, &q);
		print_message("%s\n", c->desc);
		assert_int_equal(r, c->want);
		assert_int_equal(q.rcode_hint, c->hint);
		if (c->want != PARSE_OK)
			continue;
		assert_string_equal(q.qname, c->qname);
		assert_int_equal(q.qname_len, strlen(c->qname));
		assert_int_equal(q.qtype, c->qtype);
		assert_int_equal(q.has_opt, c->opt);
		assert_int_equal(q.name_has_odd_chars, c->odd);
		assert_int_equal(q.id, (c->msg[0] << 8) | c->msg[1]);
	}
}

static size_t put_name_wire(uint8_t *p, const char *dotted)
{
	size_t n = 0;
	while (*dotted) {
		const char *dot = strchr(dotted, '.');
		size_t l = dot ? (size_t)(dot - dotted) : strlen(dotted);
		p[n++] = (uint8_t)l;
		memcpy(p + n, dotted, l);
		n += l;
		dotted += l + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

static size_t make_query(uint8_t *buf, uint16_t id, const char *name, uint16_t type, bool opt)
{
	uint8_t hdr[] = { HDR(0, 0x0100, 1, 0, 0, 0) };
	memcpy(buf, hdr, sizeof(hdr));
	buf[0] = (uint8_t)(id >> 8);
	buf[1] = (uint8_t)id;
	buf[11] = opt;
	size_t n = 12 + put_name_wire(buf + 12, name);
	buf[n++] = (uint8_t)(type >> 8);
	buf[n++] = (uint8_t)type;
	buf[n++] = 0;
	buf[n++] = 1;
	if (opt) {
		uint8_t o[] = { OPT_4096_DO };
		memcpy(buf + n, o, sizeof(o));
		n += sizeof(o);
	}
	return n;
}

/* 253 characters (255 wire bytes) is the longest name; one more is too long. */
static void test_name_length_limits(void **state)
{
	char name[400];
	uint8_t buf[500];
	struct dns_query q;
	memset(name, 'a', sizeof(name));
	name[63] = name[127] = name[191] = '.';
	name[253] = '\0';
	size_t n = make_query(buf, 7, name, 1, false);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_OK);
	assert_int_equal(q.qname_len, 253);
	assert_memory_equal(q.qname, name, 253);

	name[253] = 'a';
	name[254] = '\0';
	n = make_query(buf, 7, name, 1, false);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_INVALID);
	assert_int_equal(q.rcode_hint, DNS_RCODE_FORMERR);

	/* five labels of 63: 320 wire bytes */
	memset(name, 'b', sizeof(name));
	for (int i = 1; i < 5; i++)
		name[i * 64 - 1] = '.';
	name[319] = '\0';
	n = make_query(buf, 7, name, 1, false);
	assert_int_equal(dns_parse_query(buf, n, &q), PARSE_INVALID);

	/* 65536 bytes is over the cap, whatever is inside */
	static uint8_t big[65536];
	memcpy(big, buf, n);
	assert_int_equal(dns_parse_query(big, sizeof(big), &q), PARSE_INVALID);
	assert_int_equal(q.rcode_hint, DNS_RCODE_DROP);
}

struct bcase {
	const char *name;
	uint16_t type;
	bool opt;
	int rcode;
	bool empty_noerror;
	int want_rcode;
};

static const struct bcase bcases[] = {
	{ "blocked.example", 1, false, DNS_RCODE_NXDOMAIN, false, DNS_RCODE_NXDOMAIN },
	{ "blocked.example", 28, true, DNS_RCODE_NXDOMAIN, false, DNS_RCODE_NXDOMAIN },
	{ "any.example", 255, true, DNS_RCODE_REFUSED, false, DNS_RCODE_REFUSED },
	{ "svc.example", 65, true, DNS_RCODE_NXDOMAIN, true, DNS_RCODE_NOERROR },
	{ "svc.example", 64, false, DNS_RCODE_NOERROR, true, DNS_RCODE_NOERROR },
	{ "x.example", 1, false, DNS_RCODE_SERVFAIL, false, DNS_RCODE_SERVFAIL },
};

static void test_build_response_reparses(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bcases); i++) {
		const struct bcase *c = &bcases[i];
		uint8_t qb[300], out[600];
		struct dns_query q;
		struct dns_reply_info info;
		size_t qn = make_query(qb, (uint16_t)(0xbe00 + i), c->name, c->type, c->opt);
		assert_int_equal(dns_parse_query(qb, qn, &q), PARSE_OK);
		size_t n = dns_build_response(out, sizeof(out), qb, qn, &q, c->rcode,
					      c->empty_noerror);
		assert_true(n >= qn);
		assert_int_equal(dns_parse_answers(out, n, &q, &info, NULL, NULL), PARSE_OK);
		assert_int_equal(info.rcode, c->want_rcode);
		assert_int_equal(info.id, 0xbe00 + i);
		assert_false(info.tc);
		assert_int_equal(info.n_addrs, 0);
		assert_int_equal(out[2] & 0x81, 0x81);        /* QR, RD copied */
		assert_int_equal(out[3] & 0x80, 0x80);        /* RA */
		assert_int_equal(out[11], c->opt ? 1 : 0);
		/* too small a buffer builds nothing */
		assert_int_equal(dns_build_response(out, n - 1, qb, qn, &q, c->rcode, false), 0);
	}
}

static void test_build_formerr_header_only(void **state)
{
	uint8_t qb[] = { HDR(0x4242, 0x0100, 2, 0, 0, 0), WWW_EXAMPLE_COM, T_A, C_IN };
	uint8_t out[64];
	struct dns_query q;
	assert_int_equal(dns_parse_query(qb, sizeof(qb), &q), PARSE_INVALID);
	assert_int_equal(q.rcode_hint, DNS_RCODE_FORMERR);
	size_t n = dns_build_response(out, sizeof(out), qb, sizeof(qb), &q, q.rcode_hint, false);
	assert_int_equal(n, 12);
	uint8_t want[] = { HDR(0x4242, 0x8181, 0, 0, 0, 0) };
	assert_memory_equal(out, want, 12);

	/* under 12 bytes or QR=1: nothing */
	assert_int_equal(dns_parse_query(qb, 11, &q), PARSE_INVALID);
	assert_int_equal(dns_build_response(out, sizeof(out), qb, 11, &q, q.rcode_hint, false), 0);
	qb[2] |= 0x80;
	assert_int_equal(dns_parse_query(qb, sizeof(qb), &q), PARSE_INVALID);
	assert_int_equal(dns_build_response(out, sizeof(out), qb, sizeof(qb), &q, q.rcode_hint,
					     false), 0);
}

static void test_build_query(void **state)
{
	/* the client's EDNS options and extra records do not go upstream */
	uint8_t qb[] = { HDR(1, 0x0110, 1, 0, 0, 2), WWW_EXAMPLE_COM, T_A, C_IN,
			 0xc0, 0x0c, 0, 16, C_IN, 0, 0, 0, 0, 0, 4, 3, 'x', 'y', 'z',
			 0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 8, 0, 10, 0, 4, 1, 2, 3, 4 };
	uint8_t out[600];
	struct dns_query q, uq;
	assert_int_equal(dns_parse_query(qb, sizeof(qb), &q), PARSE_OK);
	size_t n = dns_build_query(out, sizeof(out), qb, sizeof(qb), &q, 0x9999);
	assert_int_equal(dns_parse_query(out, n, &uq), PARSE_OK);
	assert_int_equal(uq.id, 0x9999);
	assert_string_equal(uq.qname, "www.example.com");
	assert_true(uq.has_opt);
	assert_true(uq.do_bit);
	assert_true(uq.cd);
	assert_int_equal(uq.udp_size, DNS_EDNS_SIZE);
	assert_int_equal(uq.arcount, 1);
	assert_int_equal(n, 12 + q.question_len + 11);
}

static void test_tcp_frame(void **state)
{
	uint8_t b[] = { 0, 3, 'a', 'b', 'c', 0, 1 };
	const uint8_t *m;
	size_t ml;
	assert_int_equal(dns_tcp_frame(b, 0, &m, &ml), PARSE_NEED_MORE);
	assert_int_equal(dns_tcp_frame(b, 1, &m, &ml), PARSE_NEED_MORE);
	assert_int_equal(dns_tcp_frame(b, 4, &m, &ml), PARSE_NEED_MORE);
	assert_int_equal(dns_tcp_frame(b, 5, &m, &ml), PARSE_OK);
	assert_int_equal(ml, 3);
	assert_ptr_equal(m, b + 2);
	assert_int_equal(dns_tcp_frame(b, sizeof(b), &m, &ml), PARSE_OK);
	uint8_t z[] = { 0, 0, 1 };
	assert_int_equal(dns_tcp_frame(z, sizeof(z), &m, &ml), PARSE_INVALID);
}

/* ---- answers ---- */

struct w {
	uint8_t b[1024];
	size_t n;
};

static void w16(struct w *w, uint16_t v)
{
	w->b[w->n++] = (uint8_t)(v >> 8);
	w->b[w->n++] = (uint8_t)v;
}

static void w32(struct w *w, uint32_t v)
{
	w16(w, (uint16_t)(v >> 16));
	w16(w, (uint16_t)v);
}

/* "@" is a pointer to the question name */
static void wname(struct w *w, const char *name)
{
	if (strcmp(name, "@") == 0) {
		w16(w, 0xc00c);
		return;
	}
	w->n += put_name_wire(w->b + w->n, name);
}

struct rrspec {
	const char *owner;
	uint16_t type;
	uint32_t ttl;
	const char *data;       /* address text or CNAME target */
};

enum mutation { M_NONE, M_BAD_ID, M_OTHER_QNAME, M_OTHER_QTYPE, M_CUT_LAST, M_A_LEN5,
		M_TC, M_NOT_RESPONSE, M_TRAILING };

struct acase {
	const char *desc;
	const char *qname;
	uint16_t qtype;
	struct rrspec rr[6];
	enum mutation mut;
	enum parse_result want;
	unsigned n_addrs;
	const char *first;      /* first address reported */
	uint32_t first_ttl;
	const char *first_owner;
};

static const struct acase acases[] = {
	{ .desc = "two A records", "www.example.com", 1,
	  { { "@", 1, 300, "198.18.0.10" }, { "@", 1, 300, "198.18.0.11" } },
	  M_NONE, PARSE_OK, 2, "198.18.0.10", 300, "www.example.com" },
	{ .desc = "AAAA", "www.example.com", 28, { { "@", 28, 60, "2001:2::1" } },
	  M_NONE, PARSE_OK, 1, "2001:2::1", 60, "www.example.com" },
	{ .desc = "owner name written out in upper case", "www.example.com", 1,
	  { { "WWW.EXAMPLE.COM", 1, 30, "198.18.0.12" } },
	  M_NONE, PARSE_OK, 1, "198.18.0.12", 30, "www.example.com" },
	{ .desc = "CNAME chain: TTL is the smallest along it", "www.example.com", 1,
	  { { "@", 5, 60, "cdn.example.net" }, { "cdn.example.net", 5, 600, "edge.cdn.net" },
	    { "edge.cdn.net", 1, 300, "198.18.0.20" } },
	  M_NONE, PARSE_OK, 1, "198.18.0.20", 60, "edge.cdn.net" },
	{ .desc = "CNAME chain out of order", "www.example.com", 1,
	  { { "edge.cdn.net", 1, 30, "198.18.0.21" }, { "cdn.example.net", 5, 600, "edge.cdn.net" },
	    { "@", 5, 60, "cdn.example.net" } },
	  M_NONE, PARSE_OK, 1, "198.18.0.21", 30, "edge.cdn.net" },
	{ .desc = "records for other owners are ignored", "www.example.com", 1,
	  { { "evil.example", 1, 300, "198.18.9.9" }, { "@", 1, 300, "198.18.0.30" } },
	  M_NONE, PARSE_OK, 1, "198.18.0.30", 300, "www.example.com" },
	{ .desc = "CNAME loop ends", "a.example", 1,
	  { { "a.example", 5, 60, "b.example" }, { "b.example", 5, 60, "a.example" } },
	  M_NONE, PARSE_OK, 0 },
	{ .desc = "NXDOMAIN without answers", "nope.example", 1, { { 0 } }, M_NONE, PARSE_OK, 0 },
	{ .desc = "TC flag", "www.example.com", 1, { { 0 } }, M_TC, PARSE_OK, 0 },
	{ .desc = "wrong id", "www.example.com", 1, { { "@", 1, 300, "198.18.0.10" } },
	  M_BAD_ID, PARSE_INVALID },
	{ .desc = "question names another name", "www.example.com", 1,
	  { { "@", 1, 300, "198.18.0.10" } }, M_OTHER_QNAME, PARSE_INVALID },
	{ .desc = "question has another type", "www.example.com", 1,
	  { { "@", 1, 300, "198.18.0.10" } }, M_OTHER_QTYPE, PARSE_INVALID },
	{ .desc = "last RR cut short", "www.example.com", 1,
	  { { "@", 1, 300, "198.18.0.10" } }, M_CUT_LAST, PARSE_INVALID },
	{ .desc = "A record with 5 bytes", "www.example.com", 1,
	  { { "@", 1, 300, "198.18.0.10" } }, M_A_LEN5, PARSE_INVALID },
	{ .desc = "QR=0", "www.example.com", 1, { { "@", 1, 300, "198.18.0.10" } },
	  M_NOT_RESPONSE, PARSE_INVALID },
	{ .desc = "trailing bytes", "www.example.com", 1, { { "@", 1, 300, "198.18.0.10" } },
	  M_TRAILING, PARSE_INVALID },
};

struct got {
	unsigned n;
	char first[64];
	char first_name[256];
	char first_owner[256];
	uint32_t first_ttl;
};

static void collect(void *arg, const struct dns_answer *a)
{
	struct got *g = arg;
	if (g->n++ == 0) {
		inet_ntop(a->family, a->addr, g->first, sizeof(g->first));
		memcpy(g->first_name, a->name, a->name_len);
		g->first_name[a->name_len] = '\0';
		memcpy(g->first_owner, a->owner, a->owner_len);
		g->first_owner[a->owner_len] = '\0';
		g->first_ttl = a->ttl;
	}
}

static size_t make_reply(const struct acase *c, const struct dns_query *q, uint8_t *qb, size_t qn,
			 uint8_t *out)
{
	struct w w = { .n = 0 };
	size_t nrr = 0;
	while (nrr < ARRAY_SIZE(c->rr) && c->rr[nrr].owner)
		nrr++;
	memcpy(w.b, qb, qn);
	w.n = qn;
	w.b[2] = c->mut == M_NOT_RESPONSE ? 0x01 : c->mut == M_TC ? 0x83 : 0x81;
	w.b[3] = 0x80;
	w.b[7] = (uint8_t)nrr;
	if (c->mut == M_BAD_ID)
		w.b[1] ^= 1;
	if (c->mut == M_OTHER_QNAME)
		w.b[13] = 'x';
	if (c->mut == M_OTHER_QTYPE)
		w.b[qn - 3] ^= 0x40;
	for (size_t i = 0; i < nrr; i++) {
		const struct rrspec *r = &c->rr[i];
		wname(&w, r->owner);
		w16(&w, r->type);
		w16(&w, 1);
		w32(&w, r->ttl);
		if (r->type == 5) {
			size_t at = w.n;
			w16(&w, 0);
			wname(&w, r->data);
			w.b[at + 1] = (uint8_t)(w.n - at - 2);
		} else {
			int fam = r->type == 1 ? AF_INET : AF_INET6;
			size_t al = fam == AF_INET ? 4 : 16;
			w16(&w, (uint16_t)(al + (c->mut == M_A_LEN5)));
			assert_int_equal(inet_pton(fam, r->data, w.b + w.n), 1);
			w.n += al + (c->mut == M_A_LEN5);
		}
	}
	if (c->mut == M_CUT_LAST)
		w.n--;
	if (c->mut == M_TRAILING)
		w.b[w.n++] = 0;
	memcpy(out, w.b, w.n);
	return w.n;
}

static void test_parse_answers_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(acases); i++) {
		const struct acase *c = &acases[i];
		uint8_t qb[300], out[1024];
		struct dns_query q;
		struct dns_reply_info info;
		struct got g = { 0 };
		print_message("%s\n", c->desc);
		size_t qn = make_query(qb, 0x5150, c->qname, c->qtype, false);
		assert_int_equal(dns_parse_query(qb, qn, &q), PARSE_OK);
		size_t n = make_reply(c, &q, qb, qn, out);
		enum parse_result r = dns_parse_answers(out, n, &q, &info, collect, &g);
		assert_int_equal(r, c->want);
		if (c->mut != M_BAD_ID)
			assert_int_equal(info.id, 0x5150);
		assert_int_equal(info.tc, c->mut == M_TC);
		if (r != PARSE_OK)
			continue;
		assert_int_equal(g.n, c->n_addrs);
		assert_int_equal(info.n_addrs, c->n_addrs);
		if (!c->n_addrs)
			continue;
		assert_string_equal(g.first, c->first);
		assert_string_equal(g.first_name, c->qname);
		assert_string_equal(g.first_owner, c->first_owner);
		assert_int_equal(g.first_ttl, c->first_ttl);
		/* every shorter prefix of a good reply is malformed, never a crash */
		for (size_t cut = 0; cut < n; cut++)
			assert_int_equal(dns_parse_answers(out, cut, &q, &info, NULL, NULL),
					 PARSE_INVALID);
	}
}

static void test_names(void **state)
{
	char b[16];
	assert_string_equal(dns_type_name(1, b, sizeof(b)), "A");
	assert_string_equal(dns_type_name(65, b, sizeof(b)), "HTTPS");
	assert_string_equal(dns_type_name(4242, b, sizeof(b)), "4242");
	assert_string_equal(dns_rcode_name(3, b, sizeof(b)), "NXDOMAIN");
	assert_string_equal(dns_rcode_name(9, b, sizeof(b)), "9");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_query_table),
		cmocka_unit_test(test_name_length_limits),
		cmocka_unit_test(test_build_response_reparses),
		cmocka_unit_test(test_build_formerr_header_only),
		cmocka_unit_test(test_build_query),
		cmocka_unit_test(test_tcp_frame),
		cmocka_unit_test(test_parse_answers_table),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

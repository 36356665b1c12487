/* pcap reader, packet decoder, payload names and the flow table: pcap files
 * built byte by byte in the test, as tables of cases and expected results. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "common/moat.h"
#include "tools/flows.h"
#include "tools/pcapread.h"

/* ---- byte builder ---- */
struct bb {
	uint8_t b[16384];
	size_t n;
	bool swap;              /* write the pcap headers in the other byte order */
};

static void put8(struct bb *b, unsigned v)
{
	assert_true(b->n < sizeof(b->b));
	b->b[b->n++] = (uint8_t)v;
}
static void put16be(struct bb *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v);
}
static void put32be(struct bb *b, uint32_t v)
{
	put16be(b, v >> 16);
	put16be(b, v & 0xffff);
}
static void put(struct bb *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}
/* pcap header fields: host order, or swapped */
static void hput32(struct bb *b, uint32_t v)
{
	if (b->swap)
		v = __builtin_bswap32(v);
	put(b, &v, 4);
}
static void hput16(struct bb *b, uint16_t v)
{
	if (b->swap)
		v = __builtin_bswap16(v);
	put(b, &v, 2);
}

static void global_hdr(struct bb *b, uint32_t magic, uint32_t snaplen, uint32_t link)
{
	hput32(b, magic);
	hput16(b, 2);
	hput16(b, 4);
	hput32(b, 0);
	hput32(b, 0);
	hput32(b, snaplen);
	hput32(b, link);
}

static void rec_hdr(struct bb *b, uint32_t sec, uint32_t frac, uint32_t caplen, uint32_t len)
{
	hput32(b, sec);
	hput32(b, frac);
	hput32(b, caplen);
	hput32(b, len);
}

/* ---- frames ---- */
struct frame {
	uint8_t b[4096];
	size_t n;
};

static const uint8_t v4a[4] = { 10, 0, 0, 2 }, v4b[4] = { 198, 18, 0, 10 };
static uint8_t v6a[16], v6b[16];

static void fr_put(struct frame *f, const void *p, size_t n)
{
	assert_true(f->n + n <= sizeof(f->b));
	memcpy(f->b + f->n, p, n);
	f->n += n;
}

/* Ethernet + IP + L4 header + payload.  l4: 6, 17, 1/58. */
static void make_frame(struct frame *f, int family, uint8_t l4, bool reverse, uint16_t sport,
		       uint16_t dport, uint8_t flags, uint32_t seq, const void *pay, size_t plen)
{
	struct bb h = { .n = 0 };
	size_t l4len = l4 == 6 ? 20 : l4 == 17 ? 8 : 8, iplen;
	const uint8_t *s = family == AF_INET ? (reverse ? v4b : v4a) : (reverse ? v6b : v6a);
	const uint8_t *d = family == AF_INET ? (reverse ? v4a : v4b) : (reverse ? v6a : v6b);

	f->n = 0;
	put(&h, "\x02\0\0\0\0\x01\x02\0\0\0\0\x02", 12);
	put16be(&h, family == AF_INET ? 0x0800 : 0x86dd);
	iplen = l4len + plen;
	if (family == AF_INET) {
		put8(&h, 0x45);
		put8(&h, 0);
		put16be(&h, (unsigned)(20 + iplen));
		put32be(&h, 0);
		put8(&h, 64);
		put8(&h, l4);
		put16be(&h, 0);
		put(&h, s, 4);
		put(&h, d, 4);
	} else {
		put32be(&h, 0x60000000);
		put16be(&h, (unsigned)iplen);
		put8(&h, l4);
		put8(&h, 64);
		put(&h, s, 16);
		put(&h, d, 16);
	}
	if (l4 == 6) {
		put16be(&h, sport);
		put16be(&h, dport);
		put32be(&h, seq);
		put32be(&h, 0);
		put8(&h, 5 << 4);
		put8(&h, flags);
		put16be(&h, 65535);
		put32be(&h, 0);
	} else if (l4 == 17) {
		put16be(&h, sport);
		put16be(&h, dport);
		put16be(&h, (unsigned)(8 + plen));
		put16be(&h, 0);
	} else {
		put8(&h, 8);     /* echo request */
		put8(&h, 0);
		put16be(&h, 0);
		put32be(&h, 0x00010001);
	}
	fr_put(f, h.b, h.n);
	if (plen)
		fr_put(f, pay, plen);
}

static void add_frame(struct bb *b, uint32_t sec, const struct frame *f)
{
	rec_hdr(b, sec, 0, (uint32_t)f->n, (uint32_t)f->n);
	put(b, f->b, f->n);
}

/* ---- file-level cases ---- */

enum shape { S_GOOD, S_SHORT_HDR, S_BAD_MAGIC, S_PCAPNG, S_CAPLEN_SNAPLEN, S_CAPLEN_LEN,
	     S_TRUNC_REC, S_TRUNC_HDR, S_BAD_FRAC };

struct file_case {
	const char *what;
	uint32_t magic;
	bool swap;
	enum shape shape;
	enum parse_result open;         /* pcap_open_buf */
	unsigned records;               /* good records before the end */
	enum parse_result last;         /* what ends the records */
	bool at_end;
	const char *err;                /* substring of f.err, or NULL */
};

static const struct file_case file_cases[] = {
	{ "µs, host order", 0xa1b2c3d4, false, S_GOOD, PARSE_OK, 3, PARSE_NEED_MORE, true, NULL },
	{ "µs, swapped", 0xa1b2c3d4, true, S_GOOD, PARSE_OK, 3, PARSE_NEED_MORE, true, NULL },
	{ "ns, host order", 0xa1b23c4d, false, S_GOOD, PARSE_OK, 3, PARSE_NEED_MORE, true, NULL },
	{ "ns, swapped", 0xa1b23c4d, true, S_GOOD, PARSE_OK, 3, PARSE_NEED_MORE, true, NULL },
	{ "truncated global header", 0xa1b2c3d4, false, S_SHORT_HDR, PARSE_NEED_MORE, 0, 0, 0,
	  "offset 0: file header truncated (10 of 24 bytes)" },
	{ "bad magic", 0xa1b2c3d4, false, S_BAD_MAGIC, PARSE_INVALID, 0, 0, 0,
	  "offset 0: bad magic 0xdeadbeef" },
	{ "pcapng", 0xa1b2c3d4, false, S_PCAPNG, PARSE_INVALID, 0, 0, 0, "pcapng" },
	{ "caplen > snaplen", 0xa1b2c3d4, false, S_CAPLEN_SNAPLEN, PARSE_OK, 1, PARSE_INVALID,
	  false, "record length 300 exceeds snaplen 256" },
	{ "caplen > len", 0xa1b2c3d4, true, S_CAPLEN_LEN, PARSE_OK, 1, PARSE_INVALID, false,
	  "captured length 100 exceeds packet length 60" },
	{ "truncated last record", 0xa1b2c3d4, false, S_TRUNC_REC, PARSE_OK, 2, PARSE_NEED_MORE,
	  false, "file ends inside a record (" },
	{ "truncated last record header", 0xa1b23c4d, true, S_TRUNC_HDR, PARSE_OK, 2,
	  PARSE_NEED_MORE, false, "file ends inside a record header (7 of 16 bytes)" },
	{ "µs fraction out of range", 0xa1b2c3d4, false, S_BAD_FRAC, PARSE_OK, 0, PARSE_INVALID,
	  false, "offset 28: time stamp fraction" },
};

static void build_file(struct bb *b, const struct file_case *c, size_t *first_rec_len)
{
	struct frame f;

	b->n = 0;
	b->swap = c->swap;
	switch (c->shape) {
	case S_SHORT_HDR:
		global_hdr(b, c->magic, 65535, 1);
		b->n = 10;
		return;
	case S_BAD_MAGIC:
		global_hdr(b, 0xdeadbeef, 65535, 1);
		return;
	case S_PCAPNG:
		global_hdr(b, 0x0a0d0d0a, 65535, 1);
		return;
	default:
		break;
	}
	global_hdr(b, c->magic, c->shape == S_CAPLEN_SNAPLEN ? 256 : 262144, 1);
	if (c->shape == S_BAD_FRAC) {
		rec_hdr(b, 1, c->magic == 0xa1b2c3d4 ? 1000000 : 1000000000, 0, 0);
		return;
	}
	make_frame(&f, AF_INET, 17, false, 40000, 53, 0, 0, "abc", 3);
	rec_hdr(b, 1700000000, c->magic == 0xa1b2c3d4 ? 250000 : 250000000, (uint32_t)f.n,
		(uint32_t)f.n);
	put(b, f.b, f.n);
	*first_rec_len = f.n;
	switch (c->shape) {
	case S_CAPLEN_SNAPLEN:
		rec_hdr(b, 2, 0, 300, 300);
		for (int i = 0; i < 300; i++)
			put8(b, 0);
		return;
	case S_CAPLEN_LEN:
		rec_hdr(b, 2, 0, 100, 60);
		return;
	default:
		break;
	}
	make_frame(&f, AF_INET6, 6, false, 40001, 443, TCP_SYN, 1, NULL, 0);
	add_frame(b, 2, &f);
	make_frame(&f, AF_INET, 1, false, 0, 0, 0, 0, NULL, 0);
	if (c->shape == S_TRUNC_REC) {
		rec_hdr(b, 3, 0, (uint32_t)f.n, (uint32_t)f.n);
		put(b, f.b, f.n - 5);
	} else if (c->shape == S_TRUNC_HDR) {
		rec_hdr(b, 3, 0, (uint32_t)f.n, (uint32_t)f.n);
		b->n -= 9;
	} else {
		add_frame(b, 3, &f);
	}
}

static void test_file_cases(void **state)
{
	static struct bb b;

	for (size_t i = 0; i < ARRAY_SIZE(file_cases); i++) {
		const struct file_case *c = &file_cases[i];
		struct pcap_file f;
		struct pcap_rec rec;
		enum parse_result r;
		unsigned n = 0;
		size_t first_len = 0;

		print_message("file: %s\n", c->what);
		build_file(&b, c, &first_len);
		r = pcap_open_buf(&f, b.b, b.n);
		assert_int_equal(r, c->open);
		if (r != PARSE_OK) {
			assert_non_null(strstr(f.err, c->err));
			continue;
		}
		assert_int_equal(f.swapped, c->swap);
		assert_int_equal(f.nsec, c->magic == 0xa1b23c4d);
		while ((r = pcap_next_rec(&f, &rec)) == PARSE_OK) {
			if (n == 0) {
				assert_int_equal(rec.ts_us, 1700000000ull * 1000000 + 250000);
				assert_int_equal(rec.caplen, first_len);
				assert_int_equal(rec.offset, 24);
			}
			n++;
		}
		assert_int_equal(n, c->records);
		assert_int_equal(r, c->last);
		assert_int_equal(pcap_at_end(&f), c->at_end);
		if (c->err) {
			print_message("  err: %s\n", f.err);
			assert_non_null(strstr(f.err, c->err));
			assert_non_null(strstr(f.err, "offset "));
		}
	}
}

/* ---- packet decoding ---- */

enum mangle { M_NONE, M_IHL4, M_TCP_DOFF4, M_CUT_TCP, M_ARP, M_V4_TOTLEN_SHORT, M_PAD };

struct pkt_case {
	const char *what;
	int family;
	uint8_t l4;
	enum mangle m;
	enum parse_result res;
	uint8_t proto;
	uint16_t sport, dport;
	size_t payload;
};

static const struct pkt_case pkt_cases[] = {
	{ "IPv4 TCP", AF_INET, 6, M_NONE, PARSE_OK, 6, 40000, 443, 5 },
	{ "IPv4 UDP", AF_INET, 17, M_NONE, PARSE_OK, 17, 40000, 443, 5 },
	{ "IPv4 ICMP", AF_INET, 1, M_NONE, PARSE_OK, 1, 0, 0, 4 + 5 },
	{ "IPv6 TCP", AF_INET6, 6, M_NONE, PARSE_OK, 6, 40000, 443, 5 },
	{ "IPv6 UDP", AF_INET6, 17, M_NONE, PARSE_OK, 17, 40000, 443, 5 },
	{ "IPv6 ICMPv6", AF_INET6, 58, M_NONE, PARSE_OK, 58, 0, 0, 4 + 5 },
	{ "IPv4 bad IHL", AF_INET, 6, M_IHL4, PARSE_INVALID, 0, 0, 0, 0 },
	{ "TCP data offset < 5", AF_INET, 6, M_TCP_DOFF4, PARSE_INVALID, 6, 0, 0, 0 },
	{ "TCP cut by snaplen", AF_INET6, 6, M_CUT_TCP, PARSE_NEED_MORE, 6, 0, 0, 0 },
	{ "ARP is not IP", AF_INET, 6, M_ARP, PARSE_OK, 0, 0, 0, 0 },
	{ "IPv4 total length < IHL", AF_INET, 17, M_V4_TOTLEN_SHORT, PARSE_INVALID, 0, 0, 0, 0 },
	{ "Ethernet padding ignored", AF_INET, 17, M_PAD, PARSE_OK, 17, 40000, 443, 5 },
};

static void test_decode_cases(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(pkt_cases); i++) {
		const struct pkt_case *c = &pkt_cases[i];
		struct frame f;
		struct pkt p;
		enum parse_result r;

		print_message("decode: %s\n", c->what);
		make_frame(&f, c->family, c->l4, false, 40000, 443, TCP_ACK, 7, "hello", 5);
		switch (c->m) {
		case M_IHL4: f.b[14] = 0x44; break;
		case M_TCP_DOFF4: f.b[14 + 20 + 12] = 4 << 4; break;
		case M_CUT_TCP: f.n = 14 + 40 + 10; break;
		case M_ARP: f.b[12] = 0x08; f.b[13] = 0x06; break;
		case M_V4_TOTLEN_SHORT: f.b[16] = 0; f.b[17] = 12; break;
		case M_PAD: memset(f.b + f.n, 0xee, 20); f.n += 20; break;
		default: break;
		}
		r = pkt_decode(PCAP_LINKTYPE_ETHERNET, f.b, f.n, &p);
		assert_int_equal(r, c->res);
		assert_int_equal(p.proto, c->proto);
		if (r != PARSE_OK)
			assert_non_null(p.why);
		if (r == PARSE_OK && c->proto) {
			assert_int_equal(p.family, c->family);
			assert_int_equal(p.sport, c->sport);
			assert_int_equal(p.dport, c->dport);
			assert_int_equal(p.payload_len, c->payload);
		}
		if (c->m == M_ARP)
			assert_int_equal(p.family, 0);
	}
}

/* ---- HTTP Host ---- */

struct host_case {
	const char *in;
	enum parse_result r;
	const char *host;
};

static const struct host_case host_cases[] = {
	{ "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", PARSE_OK, "example.com" },
	{ "POST /x HTTP/1.1\r\nUser-Agent: a\r\nhOsT:\t api.example.com:8080  \r\n\r\n", PARSE_OK,
	  "api.example.com:8080" },
	{ "GET / HTTP/1.1\nHost: lf.example\n\n", PARSE_OK, "lf.example" },
	{ "GET / HTTP/1.1\r\nX-Host: no\r\n\r\n", PARSE_INVALID, NULL },
	{ "GET / HTTP/1.1\r\nAccept: */*\r\n", PARSE_NEED_MORE, NULL },
	{ "GE", PARSE_NEED_MORE, NULL },
	{ "\x16\x03\x01\x00\x10", PARSE_INVALID, NULL },
	{ "get / HTTP/1.1\r\nHost: a\r\n\r\n", PARSE_INVALID, NULL },
	{ "GET / FTP\r\nHost: a\r\n\r\n", PARSE_INVALID, NULL },
	{ "GET / HTTP/1.1\r\nHost: \r\n\r\n", PARSE_INVALID, NULL },
};

static void test_http_host(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(host_cases); i++) {
		const struct host_case *c = &host_cases[i];
		const char *h = NULL;
		size_t n = 0;

		print_message("host: case %zu\n", i);
		assert_int_equal(http_find_host((const uint8_t *)c->in, strlen(c->in), &h, &n), c->r);
		if (c->host) {
			assert_int_equal(n, strlen(c->host));
			assert_memory_equal(h, c->host, n);
		}
	}
}

/* ---- DNS question ---- */

struct dns_case {
	const char *what;
	const uint8_t *msg;
	size_t len;
	enum parse_result r;
	const char *name;
	uint16_t qtype;
};

#define HDR "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
#define M(s) (const uint8_t *)(s), sizeof(s) - 1

static const struct dns_case dns_cases[] = {
	{ "plain", M(HDR "\x03www\x07" "Example\x03" "com\x00\x00\x01\x00\x01"), PARSE_OK,
	  "www.example.com", 1 },
	{ "root", M(HDR "\x00\x00\x1c\x00\x01"), PARSE_OK, "", 28 },
	{ "odd bytes shown as ?", M(HDR "\x03" "a.b\x00\x00\x01\x00\x01"), PARSE_OK, "a?b", 1 },
	{ "pointer to itself (loop)", M(HDR "\xc0\x0c\x00\x01\x00\x01"), PARSE_INVALID, NULL, 0 },
	{ "pointer forward", M(HDR "\xc0\x0e\x00\x03" "abc\x00\x00\x01\x00\x01"), PARSE_INVALID,
	  NULL, 0 },
	{ "pointer into the header", M(HDR "\xc0\x02\x00\x01\x00\x01"), PARSE_INVALID, NULL, 0 },
	{ "label cut", M(HDR "\x05" "ab"), PARSE_NEED_MORE, NULL, 0 },
	{ "no qtype", M(HDR "\x01" "a\x00\x00"), PARSE_NEED_MORE, NULL, 0 },
	{ "short header", M("\x12\x34\x01"), PARSE_NEED_MORE, NULL, 0 },
	{ "qdcount 0", M("\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), PARSE_INVALID,
	  NULL, 0 },
	{ "label type 0x40", M(HDR "\x41" "a\x00\x00\x01\x00\x01"), PARSE_INVALID, NULL, 0 },
};

static void test_dns_question(void **state)
{
	/* "\x01x\xc0\x0c": a label, then a pointer back to the label: a loop */
	static const uint8_t loop2[] = HDR "\x01x\xc0\x0c\x00\x01\x00\x01";

	for (size_t i = 0; i < ARRAY_SIZE(dns_cases); i++) {
		const struct dns_case *c = &dns_cases[i];
		char out[PKT_NAME_MAX + 1];
		uint16_t qt = 0;
		bool resp = true;

		print_message("dns: %s\n", c->what);
		assert_int_equal(dns_question_name(c->msg, c->len, out, sizeof(out), &qt, &resp),
				 c->r);
		if (c->r == PARSE_OK) {
			assert_string_equal(out, c->name);
			assert_int_equal(qt, c->qtype);
			assert_false(resp);
		}
	}
	/* "x" then a pointer back to the start of the name: a loop through a label */
	{
		char out[PKT_NAME_MAX + 1];

		assert_int_equal(dns_question_name(loop2, sizeof(loop2) - 1, out, sizeof(out), NULL,
						   NULL), PARSE_INVALID);
	}
	/* a name over 255 wire bytes */
	{
		uint8_t m[12 + 5 * 61 + 1 + 4];
		char out[PKT_NAME_MAX + 1];
		size_t n = 12;

		memcpy(m, HDR, 12);
		for (int k = 0; k < 5; k++) {
			m[n++] = 60;
			memset(m + n, 'a', 60);
			n += 60;
		}
		m[n++] = 0;
		memcpy(m + n, "\x00\x01\x00\x01", 4);
		n += 4;
		assert_int_equal(dns_question_name(m, n, out, sizeof(out), NULL, NULL),
				 PARSE_INVALID);
	}
}

/* ---- flows: names from payloads, directions, verdicts ---- */

static size_t client_hello(uint8_t *out, const char *sni)
{
	struct bb b = { .n = 0 };
	size_t sl = strlen(sni);
	size_t ext = 2 + 2 + 2 + 1 + 2 + sl;    /* one server_name extension */
	size_t body = 2 + 32 + 1 + 4 + 2 + 2 + ext;

	put8(&b, 22);
	put16be(&b, 0x0301);
	put16be(&b, (unsigned)(4 + body));
	put8(&b, 1);
	put8(&b, 0);
	put16be(&b, (unsigned)body);
	put16be(&b, 0x0303);
	for (int i = 0; i < 32; i++)
		put8(&b, i);
	put8(&b, 0);
	put16be(&b, 2);
	put16be(&b, 0x1301);
	put8(&b, 1);
	put8(&b, 0);
	put16be(&b, (unsigned)ext);
	put16be(&b, 0);                 /* server_name */
	put16be(&b, (unsigned)(2 + 1 + 2 + sl));
	put16be(&b, (unsigned)(1 + 2 + sl));
	put8(&b, 0);
	put16be(&b, (unsigned)sl);
	put(&b, sni, sl);
	memcpy(out, b.b, b.n);
	return b.n;
}

static void test_flows(void **state)
{
	static struct bb b;
	static const char dnsq[] = HDR "\x03" "api\x07" "example\x03" "com\x00\x00\x01\x00\x01";
	static const char http[] = "GET / HTTP/1.1\r\nHost: plain.example\r\n\r\n";
	static const char log[] =
		"{\"ts\":\"2023-11-14T22:13:20.100000Z\",\"sandbox\":\"s\",\"event\":\"tcp\","
		"\"verdict\":\"allow\",\"reason\":\"allow-host\",\"src\":\"10.0.0.2\",\"sport\":40000,"
		"\"dst\":\"198.18.0.10\",\"dport\":443,\"proto\":\"tcp\",\"sni\":\"tls.example\"}\n"
		"{\"ts\":\"2023-11-14T22:13:21.000000Z\",\"sandbox\":\"s\",\"event\":\"drop\","
		"\"verdict\":\"deny\",\"reason\":\"port\",\"src\":\"10.0.0.2\",\"sport\":40003,"
		"\"dst\":\"198.18.0.10\",\"dport\":25,\"proto\":\"tcp\"}\n"
		"{\"ts\":\"2023-11-14T22:13:20.050000Z\",\"sandbox\":\"s\",\"event\":\"dns\","
		"\"verdict\":\"allow\",\"reason\":\"allow-host\",\"qname\":\"api.example.com\","
		"\"qtype\":\"A\",\"rcode\":\"NOERROR\",\"src\":\"10.0.0.2\",\"dst\":\"198.18.0.10\","
		"\"proto\":\"udp\",\"answers\":[\"198.18.0.10\"]}\n"
		"{\"ts\":\"2023-11-14T22:13:25.000000Z\",\"sandbox\":\"s\",\"event\":\"tcp\","
		"\"verdict\":\"deny\",\"reason\":\"host-not-allowed\",\"src\":\"10.0.0.2\","
		"\"sport\":41000,\"dst\":\"198.18.0.11\",\"dport\":443,\"proto\":\"tcp\","
		"\"sni\":\"evil.example\"}\n";
	struct {
		const char *name;
		const char *verdict;
		uint16_t dport;
		uint64_t up, down;
	} want[] = {
		{ "api.example.com", "allow", 53, 1, 1 },
		{ "tls.example", "allow", 443, 3, 1 },
		{ "plain.example", "-", 80, 1, 1 },
		{ "", "dropped (L4)", 25, 2, 0 },
		{ "", "no answer", 9999, 1, 0 },
		{ "evil.example", "deny", 443, 0, 0 },
	};
	uint8_t ch[600];
	size_t chn = client_hello(ch, "tls.example"), nrows;
	struct frame f;
	struct flow_table *t = flows_new();
	struct moat_error e = { 0 };
	struct audit_log al;
	struct flow **rows;
	uint32_t t0 = 1700000000;

	assert_non_null(t);
	b.n = 0;
	b.swap = false;
	global_hdr(&b, 0xa1b2c3d4, 262144, 1);
	/* DNS query and answer */
	make_frame(&f, AF_INET, 17, false, 33333, 53, 0, 0, dnsq, sizeof(dnsq) - 1);
	add_frame(&b, t0, &f);
	make_frame(&f, AF_INET, 17, true, 53, 33333, 0, 0, dnsq, sizeof(dnsq) - 1);
	f.b[14 + 20 + 8 + 2] |= 0x80;
	add_frame(&b, t0, &f);
	/* TLS: the first record seen is the server's SYN+ACK: the client still opens */
	make_frame(&f, AF_INET, 6, true, 443, 40000, TCP_SYN | TCP_ACK, 500, NULL, 0);
	rec_hdr(&b, t0, 1, (uint32_t)f.n, (uint32_t)f.n);
	put(&b, f.b, f.n);
	/* the ClientHello split over two segments, with a retransmission of the first */
	make_frame(&f, AF_INET, 6, false, 40000, 443, TCP_ACK, 1000, ch, 40);
	add_frame(&b, t0 + 1, &f);
	make_frame(&f, AF_INET, 6, false, 40000, 443, TCP_ACK, 1000, ch, 40);
	add_frame(&b, t0 + 1, &f);
	make_frame(&f, AF_INET, 6, false, 40000, 443, TCP_ACK, 1040, ch + 40, chn - 40);
	add_frame(&b, t0 + 1, &f);
	/* HTTP */
	make_frame(&f, AF_INET, 6, false, 40002, 80, TCP_ACK, 1, http, sizeof(http) - 1);
	add_frame(&b, t0 + 2, &f);
	make_frame(&f, AF_INET, 6, true, 80, 40002, TCP_ACK, 1, "HTTP/1.1 200 OK\r\n", 17);
	add_frame(&b, t0 + 2, &f);
	/* a SYN to port 25, dropped, retransmitted */
	make_frame(&f, AF_INET, 6, false, 40003, 25, TCP_SYN, 1, NULL, 0);
	add_frame(&b, t0 + 1, &f);
	add_frame(&b, t0 + 2, &f);
	/* UDP nobody answers */
	make_frame(&f, AF_INET, 17, false, 40004, 9999, 0, 0, "x", 1);
	add_frame(&b, t0 + 3, &f);

	assert_int_equal(flows_add_pcap_buf(t, b.b, b.n, "mem.pcap", &e), 0);
	assert_int_equal(auditlog_parse_buf(log, sizeof(log) - 1, "log", &al, &e), 0);
	assert_int_equal(al.n, 4);
	flows_join_audit(t, &al);
	rows = flows_sorted(t, &nrows);
	assert_int_equal(nrows, ARRAY_SIZE(want));
	for (size_t i = 0; i < nrows; i++) {
		size_t k;

		for (k = 0; k < ARRAY_SIZE(want); k++)
			if (rows[i]->bport == want[k].dport && !strcmp(rows[i]->name, want[k].name))
				break;
		print_message("flow %zu: %u %s %s\n", i, rows[i]->bport, rows[i]->name,
			      flow_verdict(rows[i]));
		assert_true(k < ARRAY_SIZE(want));
		assert_string_equal(flow_verdict(rows[i]), want[k].verdict);
		assert_int_equal(rows[i]->pkts[0], want[k].up);
		assert_int_equal(rows[i]->pkts[1], want[k].down);
		assert_int_equal(rows[i]->aport == 40000 || rows[i]->aport >= 33333 ||
				 rows[i]->aport == 41000, true);
	}
	/* a file cut inside its last record: a warning, the good records are kept */
	{
		struct flow_table *t2 = flows_new();

		assert_int_equal(flows_add_pcap_buf(t2, b.b, b.n - 3, "cut.pcap", &e), 1);
		assert_non_null(strstr(e.msg, "cut.pcap: offset "));
		assert_int_equal(flows_stats(t2)->packets, 10);
		flows_free(t2);
	}
	auditlog_free(&al);
	flows_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_cases),
		cmocka_unit_test(test_decode_cases),
		cmocka_unit_test(test_http_host),
		cmocka_unit_test(test_dns_question),
		cmocka_unit_test(test_flows),
	};

	inet_pton(AF_INET6, "2001:db8::2", v6a);
	inet_pton(AF_INET6, "2001:2::10", v6b);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

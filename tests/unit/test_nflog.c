/* nflog_parse_packet: a table of packets and the fields expected from each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "enforcer/nflog.h"
#include "tproxy/parse.h"

#define V4(proto, ihl, tot) 0x40 | (ihl), 0, 0, (tot), 0, 0, 0, 0, 64, (proto), 0, 0, \
	10, 0, 0, 2, 198, 18, 0, 7
#define V4F(proto, off) 0x45, 0, 0, 28, 0, 0, 0, (off), 64, (proto), 0, 0, \
	10, 0, 0, 2, 198, 18, 0, 7
#define V6(next, plen) 0x60, 0, 0, 0, 0, (plen), (next), 64, \
	0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, \
	0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7

struct pkt_case {
	const char *name;
	int family;
	uint8_t bytes[128];
	size_t len;
	int ret;
	uint8_t proto;
	uint16_t sport, dport;
	uint8_t icmp_type;
	size_t plen;
};

static const struct pkt_case cases[] = {
	{ "v4 tcp", AF_INET, { V4(6, 5, 40), 0x9c, 0x40, 0x00, 0x16 }, 24, PARSE_OK,
	  6, 40000, 22, 0, 40 },
	{ "v4 udp", AF_INET, { V4(17, 5, 28), 0x30, 0x39, 0x0d, 0x96, 0, 8, 0, 0 }, 28,
	  PARSE_OK, 17, 12345, 3478, 0, 28 },
	{ "v4 icmp echo", AF_INET, { V4(1, 5, 28), 8, 0, 0, 0 }, 24, PARSE_OK, 1, 0, 0, 8, 28 },
	{ "v4 options", AF_INET, { V4(6, 6, 44), 1, 1, 1, 1, 0x00, 0x50, 0x01, 0xbb }, 28,
	  PARSE_OK, 6, 80, 443, 0, 44 },
	{ "v4 tcp ports cut", AF_INET, { V4(6, 5, 40), 0x9c, 0x40 }, 22, PARSE_OK,
	  6, 0, 0, 0, 40 },
	{ "v4 later fragment", AF_INET, { V4F(17, 0x10), 0x30, 0x39, 0x0d, 0x96 }, 24,
	  PARSE_OK, 17, 0, 0, 0, 28 },
	{ "v4 truncated header", AF_INET, { V4(6, 5, 40) }, 19, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "v4 IHL 4", AF_INET, { V4(6, 4, 40) }, 20, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "v4 IHL past buffer", AF_INET, { V4(6, 15, 80) }, 20, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "v4 total < IHL", AF_INET, { V4(6, 5, 10) }, 20, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "v4 says v6", AF_INET, { V6(6, 0) }, 40, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "empty", AF_INET, { 0 }, 0, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "bad family", AF_UNSPEC, { V4(6, 5, 40) }, 20, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "v6 tcp", AF_INET6, { V6(6, 20), 0x9c, 0x40, 0x01, 0xbb }, 44, PARSE_OK,
	  6, 40000, 443, 0, 60 },
	{ "v6 udp", AF_INET6, { V6(17, 8), 0x00, 0x35, 0x00, 0x35 }, 44, PARSE_OK,
	  17, 53, 53, 0, 48 },
	{ "v6 icmpv6 echo", AF_INET6, { V6(58, 8), 128, 0 }, 42, PARSE_OK, 58, 0, 0, 128, 48 },
	{ "v6 hop-by-hop then udp", AF_INET6,
	  { V6(0, 16), 17, 0, 1, 4, 0, 0, 0, 0, 0x30, 0x39, 0x0d, 0x96 }, 52, PARSE_OK,
	  17, 12345, 3478, 0, 56 },
	{ "v6 dstopts then fragment 0 then tcp", AF_INET6,
	  { V6(60, 36), 44, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 1, 0x00, 0x50, 0x00, 0x51 },
	  60, PARSE_OK, 6, 80, 81, 0, 76 },
	{ "v6 later fragment", AF_INET6, { V6(44, 16), 17, 0, 0x01, 0x00, 0, 0, 0, 1, 1, 2, 3, 4 },
	  52, PARSE_OK, 17, 0, 0, 0, 56 },
	{ "v6 extension header cut", AF_INET6, { V6(0, 16), 17, 2 }, 42, PARSE_OK, 0, 0, 0, 0, 56 },
	{ "v6 extension longer than packet", AF_INET6, { V6(43, 8), 6, 9, 0, 0, 0, 0, 0, 0 }, 48,
	  PARSE_OK, 43, 0, 0, 0, 48 },
	{ "v6 esp", AF_INET6, { V6(50, 8), 1, 2, 3, 4 }, 44, PARSE_OK, 50, 0, 0, 0, 48 },
	{ "v6 truncated header", AF_INET6, { V6(6, 0) }, 39, PARSE_INVALID, 0, 0, 0, 0, 0 },
	{ "v6 says v4", AF_INET6, { V4(6, 5, 40) }, 40, PARSE_INVALID, 0, 0, 0, 0, 0 },
};

static void test_parse_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pkt_case *c = &cases[i];
		struct nflog_pkt p = { .prefix = "moat drop port" };
		/* A heap copy of exactly len bytes, so ASan sees any over-read. */
		uint8_t *buf = malloc(c->len ? c->len : 1);
		memcpy(buf, c->bytes, c->len);
		int ret = nflog_parse_packet(buf, c->len, c->family, &p);
		print_message("%s\n", c->name);
		assert_int_equal(ret, c->ret);
		assert_string_equal(p.prefix, "moat drop port");
		if (ret == PARSE_OK) {
			assert_int_equal(p.family, c->family);
			assert_int_equal(p.proto, c->proto);
			assert_int_equal(p.sport, c->sport);
			assert_int_equal(p.dport, c->dport);
			assert_int_equal(p.icmp_type, c->icmp_type);
			assert_int_equal(p.len, c->plen);
			const uint8_t *dst = c->family == AF_INET ? (const uint8_t[]){ 198, 18, 0, 7 } :
				(const uint8_t[]){ 0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7 };
			assert_memory_equal(p.dst, dst, c->family == AF_INET ? 4 : 16);
		}
		free(buf);
	}
}

/* Every prefix of every case: never a crash, never a read past the end. */
static void test_parse_all_prefixes(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t n = 0; n <= cases[i].len; n++) {
			uint8_t *buf = malloc(n ? n : 1);
			struct nflog_pkt p = { 0 };
			memcpy(buf, cases[i].bytes, n);
			int ret = nflog_parse_packet(buf, n, cases[i].family, &p);
			assert_true(ret == PARSE_OK || ret == PARSE_INVALID);
			free(buf);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_all_prefixes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The proxy's decision as a table: destination classes, SNI, Host, CONNECT,
 * h2c, ECH, IP-literal allowances and the anti-fronting check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/moat.h"
#include "profiles/profile.h"
#include "tproxy/learned.h"
#include "tproxy/proxy_internal.h"

#include <arpa/inet.h>
#include <string.h>

static const char *const policies[] = {
	/* 0: names, a CIDR, a per-host port */
	"{\"network\":{\"outbound\":{\"allow_host\":[\"allowed.test\",\".wild.test\","
	"\"198.18.5.0/24\",\"alt.test:8443\"],\"allow_port\":[80,443]}}}",
	/* 1: audit mode */
	"{\"network\":{\"outbound\":{\"insecure_allow_all\":true}}}",
	/* 2: a private network opened on purpose */
	"{\"network\":{\"outbound\":{\"allow_host\":[\"10.0.0.1\",\"internal.test\"],"
	"\"allow_port\":[80],\"allow_private\":[\"private\"]}}}",
};

enum { LEARNED = 1, FALLBACK = 2, LOCAL = 4 };

struct dcase {
	const char *what;
	int policy;
	const char *dst;
	uint16_t dport;
	enum seen seen;
	const char *name;               /* SNI or Host */
	unsigned flags;
	const char *resolved;           /* moat's own answer (one address), NULL: none yet */
	bool ech, connect, h2c;
	uint16_t host_port;
	enum verdict want;
	const char *reason;
};

#define A VERDICT_ALLOW
#define D VERDICT_DENY
#define R VERDICT_RESOLVE

static const struct dcase cases[] = {
	{ "allowed SNI, learned answer", 0, "198.18.1.1", 443, SEEN_TLS, "allowed.test", LEARNED,
	  .want = A, .reason = "allow-host" },
	{ "allowed SNI, any case, trailing dot", 0, "198.18.1.1", 443, SEEN_TLS, "ALLOWED.test.",
	  LEARNED, .want = A, .reason = "allow-host" },
	{ "denied SNI", 0, "198.18.1.1", 443, SEEN_TLS, "evil.test", LEARNED, .want = D,
	  .reason = "host-not-allowed" },
	{ "allowed SNI on a port not allowed", 0, "198.18.1.1", 8443, SEEN_TLS, "allowed.test",
	  LEARNED, .want = D, .reason = "port-not-allowed" },
	{ "per-host port", 0, "198.18.1.3", 8443, SEEN_TLS, "alt.test", FALLBACK,
	  "198.18.1.3", .want = A, .reason = "allow-host" },
	{ "subdomain rule", 0, "198.18.1.4", 443, SEEN_TLS, "a.b.wild.test", FALLBACK,
	  "198.18.1.4", .want = A, .reason = "allow-host" },
	{ "ECH", 0, "198.18.1.1", 443, SEEN_TLS, "allowed.test", LEARNED, .ech = true, .want = D,
	  .reason = "ech" },
	{ "no SNI, no IP rule", 0, "198.18.1.1", 443, SEEN_TLS, NULL, 0, .want = D,
	  .reason = "no-sni" },
	{ "no SNI, IP rule", 0, "198.18.5.9", 443, SEEN_TLS, NULL, 0, .want = A,
	  .reason = "allow-addr" },
	{ "denied SNI to an address an IP rule allows", 0, "198.18.5.9", 443, SEEN_TLS,
	  "evil.test", 0, .want = A, .reason = "allow-addr" },
	{ "HTTP Host allowed", 0, "198.18.1.1", 80, SEEN_HTTP, "allowed.test", LEARNED, .want = A,
	  .reason = "allow-host" },
	{ "HTTP Host allowed with the right port", 0, "198.18.1.1", 80, SEEN_HTTP,
	  "allowed.test", LEARNED, .host_port = 80, .want = A, .reason = "allow-host" },
	{ "HTTP Host denied", 0, "198.18.1.1", 80, SEEN_HTTP, "evil.test", LEARNED, .want = D,
	  .reason = "host-not-allowed" },
	{ "HTTP Host port mismatch", 0, "198.18.1.1", 80, SEEN_HTTP, "allowed.test", LEARNED,
	  .host_port = 8080, .want = D, .reason = "host-port-mismatch" },
	{ "CONNECT", 0, "198.18.1.1", 80, SEEN_HTTP, "allowed.test", LEARNED, .connect = true,
	  .want = D, .reason = "connect" },
	{ "h2c", 0, "198.18.1.1", 80, SEEN_HTTP, "allowed.test", LEARNED, .h2c = true, .want = D,
	  .reason = "h2c" },
	{ "HTTP no Host", 0, "198.18.1.1", 80, SEEN_HTTP, NULL, 0, .want = D,
	  .reason = "no-host" },
	{ "HTTP no Host, IP rule", 0, "198.18.5.1", 80, SEEN_HTTP, NULL, 0, .want = A,
	  .reason = "allow-addr" },
	{ "raw stream", 0, "198.18.1.1", 80, SEEN_OTHER, NULL, 0, .want = D,
	  .reason = "not-tls-or-http" },
	{ "raw stream, IP rule", 0, "198.18.5.1", 443, SEEN_OTHER, NULL, 0, .want = A,
	  .reason = "allow-addr" },
	{ "raw stream, IP rule, port not allowed", 0, "198.18.5.1", 22, SEEN_OTHER, NULL, 0,
	  .want = D, .reason = "not-tls-or-http" },
	{ "bad TLS", 0, "198.18.1.1", 443, SEEN_BAD_TLS, NULL, 0, .want = D, .reason = "bad-tls" },
	{ "bad HTTP", 0, "198.18.1.1", 80, SEEN_BAD_HTTP, NULL, 0, .want = D,
	  .reason = "bad-http" },
	{ "nothing before the deadline", 0, "198.18.1.1", 80, SEEN_TIMEOUT, NULL, 0, .want = D,
	  .reason = "first-bytes-timeout" },
	/* destination classes */
	{ "loopback", 0, "127.0.0.1", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-loopback" },
	{ "metadata", 0, "169.254.169.254", 80, SEEN_HTTP, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-link-local" },
	{ "RFC 1918", 0, "10.0.0.1", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-private" },
	{ "CGNAT", 0, "100.64.0.1", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-cgnat" },
	{ "ULA", 0, "fd00::1", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-ula" },
	{ "v6 link-local", 0, "fe80::1", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-link-local" },
	{ "v4-mapped loopback", 0, "::ffff:127.0.0.1", 443, SEEN_TLS, "allowed.test", LEARNED,
	  .want = D, .reason = "dst-loopback" },
	{ "unspecified", 0, "0.0.0.0", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-unspecified" },
	{ "v6 loopback", 0, "::1", 443, SEEN_TLS, "allowed.test", LEARNED, .want = D,
	  .reason = "dst-loopback" },
	{ "the host's own address", 0, "198.18.1.1", 443, SEEN_TLS, "allowed.test",
	  LEARNED | LOCAL, .want = D, .reason = "host-address" },
	/* audit mode */
	{ "allow_all still denies loopback", 1, "127.0.0.1", 80, SEEN_HTTP, "x.test", 0,
	  .want = D, .reason = "dst-loopback" },
	{ "allow_all still denies metadata", 1, "169.254.169.254", 80, SEEN_OTHER, NULL, 0,
	  .want = D, .reason = "dst-link-local" },
	{ "allow_all still denies the host", 1, "198.18.1.1", 80, SEEN_OTHER, NULL, LOCAL,
	  .want = D, .reason = "host-address" },
	{ "allow_all allows raw", 1, "198.18.9.9", 22, SEEN_OTHER, NULL, 0, .want = A,
	  .reason = "allow-all" },
	{ "allow_all allows ECH", 1, "198.18.9.9", 443, SEEN_TLS, "x.test", 0, .ech = true,
	  .want = A, .reason = "allow-all" },
	{ "allow_all skips anti-fronting", 1, "198.18.9.9", 443, SEEN_TLS, "x.test", FALLBACK,
	  .want = A, .reason = "allow-all" },
	/* anti-fronting */
	{ "SNI to an address the name does not resolve to", 0, "198.18.1.2", 443, SEEN_TLS,
	  "allowed.test", LEARNED, .want = D, .reason = "sni-ip-mismatch" },
	{ "Host to an address the name does not resolve to", 0, "198.18.1.2", 80, SEEN_HTTP,
	  "allowed.test", LEARNED, .want = D, .reason = "host-ip-mismatch" },
	{ "not learned: resolve", 0, "198.18.1.2", 443, SEEN_TLS, "allowed.test",
	  LEARNED | FALLBACK, .want = R },
	{ "resolved: match", 0, "198.18.1.2", 443, SEEN_TLS, "allowed.test", LEARNED | FALLBACK,
	  "198.18.1.2", .want = A, .reason = "allow-host" },
	{ "resolved: mismatch", 0, "198.18.1.2", 443, SEEN_TLS, "allowed.test",
	  LEARNED | FALLBACK, "198.18.7.7", .want = D, .reason = "sni-ip-mismatch" },
	{ "resolved v6: match", 0, "2001:2::10", 443, SEEN_TLS, "allowed.test", FALLBACK,
	  "2001:2::10", .want = A, .reason = "allow-host" },
	{ "no learned store, no fallback", 0, "198.18.1.1", 443, SEEN_TLS, "allowed.test", 0,
	  .want = D, .reason = "sni-ip-mismatch" },
	/* private opt-in */
	{ "allow_private + IP rule", 2, "10.0.0.1", 80, SEEN_OTHER, NULL, 0, .want = A,
	  .reason = "allow-addr" },
	{ "allow_private, name rule", 2, "10.0.0.2", 80, SEEN_HTTP, "internal.test", FALLBACK,
	  "10.0.0.2", .want = A, .reason = "allow-host" },
	{ "allow_private does not open loopback", 2, "127.0.0.1", 80, SEEN_OTHER, NULL, 0,
	  .want = D, .reason = "dst-loopback" },
};

static struct policy *pol[ARRAY_SIZE(policies)];
static struct learned *learned;

static int setup(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(policies); i++) {
		struct moat_error e = { 0 };
		if (policy_load_buffer(policies[i], strlen(policies[i]), "test", &pol[i], &e) < 0) {
			print_error("policy %zu: %s\n", i, e.msg);
			return -1;
		}
	}
	learned = learned_new(30, 300);
	if (!learned)
		return -1;
	uint8_t a[4];
	inet_pton(AF_INET, "198.18.1.1", a);
	learned_add(learned, "allowed.test", 12, AF_INET, a, 60);
	return 0;
}

static int teardown(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(policies); i++)
		policy_free(pol[i]);
	learned_free(learned);
	return 0;
}

static int parse_addr(const char *s, uint8_t *out)
{
	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	assert_int_equal(inet_pton(AF_INET6, s, out), 1);
	return AF_INET6;
}

static void test_table(void **state)
{
	int failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct dcase *k = &cases[i];
		uint8_t dst[16];
		int family = parse_addr(k->dst, dst);
		struct sockaddr_storage local = { 0 };
		if (family == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&local;
			s->sin_family = AF_INET;
			memcpy(&s->sin_addr, dst, 4);
		} else {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&local;
			s->sin6_family = AF_INET6;
			memcpy(&s->sin6_addr, dst, 16);
		}
		struct tls_hello th = { 0 };
		struct http_request hr = { 0 };
		if (k->name) {
			th.sni = hr.host = k->name;
			th.sni_len = hr.host_len = strlen(k->name);
			th.has_sni = true;
		}
		th.ech = k->ech;
		hr.connect = k->connect;
		hr.upgrade_h2c = hr.upgrade = k->h2c;
		hr.port = k->host_port;
		struct resolved res = { 0 };
		if (k->resolved) {
			res.n = 1;
			res.a[0].family = parse_addr(k->resolved, res.a[0].addr);
		}
		struct decide_in in = {
			.policy = pol[k->policy],
			.family = family,
			.dst = dst,
			.dport = k->dport,
			.local_addrs = (k->flags & LOCAL) ? &local : NULL,
			.n_local_addrs = (k->flags & LOCAL) ? 1 : 0,
			.seen = k->seen,
			.tls = &th,
			.http = &hr,
			.learned = (k->flags & LEARNED) ? learned : NULL,
			.resolve_fallback = k->flags & FALLBACK,
			.resolved = k->resolved ? &res : NULL,
		};
		struct decision d;
		tproxy_decide(&in, &d);
		bool ok = d.verdict == k->want &&
			  (!k->reason || (d.reason && strcmp(d.reason, k->reason) == 0));
		if (!ok) {
			print_error("case %zu (%s): verdict %d reason %s, want %d %s\n", i, k->what,
				    d.verdict, d.reason ? d.reason : "(null)", k->want,
				    k->reason ? k->reason : "");
			failed++;
		}
		if (k->want == VERDICT_ALLOW && k->name && k->policy == 0 &&
		    strcmp(k->reason, "allow-host") == 0 && !d.rule) {
			print_error("case %zu (%s): no rule named\n", i, k->what);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

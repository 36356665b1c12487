/* The matcher against adversarial names, ports, addresses and classes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/moat.h"
#include "profiles/profile.h"

#include <arpa/inet.h>
#include <string.h>

static const char P_GITHUB[] =
	"{\"network\":{\"outbound\":{\"allow_host\":[\".github.com\",\"api.example.com\","
	"\"xn--bcher-kva.example\",\"*.svc.example.org\"],\"allow_port\":[443]}}}";

static const char P_PORTS[] =
	"{\"network\":{\"outbound\":{\"allow_host\":[\"api.example.com:8443\","
	"\"range.example.com:8000-8100\",\"plain.example.com\",\".wild.example.com:9000\","
	"\"198.18.0.0/15:80\",\"[2001:2::1]:443\",\"2001:2:0:1::/64\",\"198.19.255.255\"],"
	"\"allow_port\":[443,\"7000-7001\"],\"allow_transport\":[\"tcp\",\"udp\"]}}}";

static const char P_ALL[] = "{\"network\":{\"outbound\":{\"insecure_allow_all\":true}}}";

static const char P_NONE[] =
	"{\"network\":{\"outbound\":{\"insecure_allow_all\":false,\"allow_host\":[],"
	"\"allow_port\":[]}}}";

static const char P_PRIV[] =
	"{\"network\":{\"outbound\":{\"allow_host\":[\"10.1.2.3:5432\"],"
	"\"allow_private\":[\"link-local\",\"10.1.0.0/16\",\"fd00::/8\"]}}}";

static struct policy *load(const char *json)
{
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	int r = policy_load_buffer(json, strlen(json), "test.json", &p, &e);
	if (r < 0)
		fail_msg("load failed: %s", e.msg);
	return p;
}

struct host_case {
	const char *profile;
	const char *name;
	size_t len;                     /* 0: strlen(name) */
	uint16_t port;
	enum policy_proto proto;
	bool allow;
	const char *reason;
	const char *rule;               /* expected deciding entry, or NULL */
};

#define T POLICY_TCP
#define U POLICY_UDP

static const char NUL_NAME[] = "api.github.com\0.evil.com";

static const struct host_case host_cases[] = {
	/* suffix walking */
	{ P_GITHUB, "github.com", 0, 443, T, true, "allow-host", ".github.com" },
	{ P_GITHUB, "api.github.com", 0, 443, T, true, "allow-host", ".github.com" },
	{ P_GITHUB, "a.b.c.github.com", 0, 443, T, true, "allow-host", ".github.com" },
	{ P_GITHUB, "GITHUB.COM.", 0, 443, T, true, "allow-host", ".github.com" },
	{ P_GITHUB, "Api.GitHub.Com", 0, 443, T, true, "allow-host", ".github.com" },
	{ P_GITHUB, "evilgithub.com", 0, 443, T, false, "host-not-allowed", NULL },
	{ P_GITHUB, "github.com.evil.com", 0, 443, T, false, "host-not-allowed", NULL },
	{ P_GITHUB, "github.co", 0, 443, T, false, "host-not-allowed", NULL },
	{ P_GITHUB, "com", 0, 443, T, false, "host-not-allowed", NULL },
	{ P_GITHUB, "api.example.com", 0, 443, T, true, "allow-host", "api.example.com" },
	{ P_GITHUB, "x.api.example.com", 0, 443, T, false, "host-not-allowed", NULL },
	{ P_GITHUB, "example.com", 0, 443, T, false, "host-not-allowed", NULL },
	{ P_GITHUB, "svc.example.org", 0, 443, T, true, "allow-host", "*.svc.example.org" },
	{ P_GITHUB, "a.svc.example.org", 0, 443, T, true, "allow-host", "*.svc.example.org" },
	{ P_GITHUB, "xn--bcher-kva.example", 0, 443, T, true, "allow-host", "xn--bcher-kva.example" },
	{ P_GITHUB, "XN--BCHER-KVA.EXAMPLE", 0, 443, T, true, "allow-host", "xn--bcher-kva.example" },
	{ P_GITHUB, "b\xc3\xbc" "cher.example", 0, 443, T, false, "bad-name", NULL },
	/* malformed names */
	{ P_GITHUB, NUL_NAME, sizeof(NUL_NAME) - 1, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "127.1", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "0x7f.1", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "1.2.3.4", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "api_x.github.com", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "api .github.com", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "api..github.com", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, ".github.com", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "*.github.com", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, ".", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "github.com..", 0, 443, T, false, "bad-name", NULL },
	{ P_GITHUB, "-a.github.com", 0, 443, T, false, "bad-name", NULL },
	/* ports */
	{ P_GITHUB, "api.github.com", 0, 80, T, false, "port-not-allowed", ".github.com" },
	{ P_GITHUB, "api.github.com", 0, 443, U, false, "transport-not-allowed", NULL },
	{ P_PORTS, "api.example.com", 0, 8443, T, true, "allow-host", "api.example.com:8443" },
	{ P_PORTS, "api.example.com", 0, 443, T, false, "port-not-allowed", "api.example.com:8443" },
	{ P_PORTS, "range.example.com", 0, 8000, T, true, "allow-host", "range.example.com:8000-8100" },
	{ P_PORTS, "range.example.com", 0, 8100, T, true, "allow-host", "range.example.com:8000-8100" },
	{ P_PORTS, "range.example.com", 0, 7999, T, false, "port-not-allowed", "range.example.com:8000-8100" },
	{ P_PORTS, "range.example.com", 0, 8101, T, false, "port-not-allowed", "range.example.com:8000-8100" },
	{ P_PORTS, "plain.example.com", 0, 443, T, true, "allow-host", "plain.example.com" },
	{ P_PORTS, "plain.example.com", 0, 7001, U, true, "allow-host", "plain.example.com" },
	{ P_PORTS, "plain.example.com", 0, 7002, T, false, "port-not-allowed", "plain.example.com" },
	{ P_PORTS, "plain.example.com", 0, 8443, T, false, "port-not-allowed", "plain.example.com" },
	{ P_PORTS, "x.wild.example.com", 0, 9000, T, true, "allow-host", ".wild.example.com:9000" },
	{ P_PORTS, "x.wild.example.com", 0, 443, T, false, "port-not-allowed", ".wild.example.com:9000" },
	{ P_PORTS, "other.example.com", 0, 443, T, false, "host-not-allowed", NULL },
	/* allow_all and none */
	{ P_ALL, "anything.example", 0, 1, T, true, "allow-all", NULL },
	{ P_ALL, "anything.example", 0, 53, U, true, "allow-all", NULL },
	{ P_ALL, "127.1", 0, 443, T, false, "bad-name", NULL },
	{ P_NONE, "github.com", 0, 443, T, false, "host-not-allowed", NULL },
};

static void test_match_host(void **state)
{
	int failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(host_cases); i++) {
		const struct host_case *c = &host_cases[i];
		struct policy *p = load(c->profile);
		struct policy_decision d = { 0 };
		size_t len = c->len ? c->len : strlen(c->name);
		policy_match_host(p, c->name, len, c->port, c->proto, &d);
		bool ok = d.allow == c->allow && d.reason && strcmp(d.reason, c->reason) == 0 &&
			  ((!c->rule && !d.rule) || (c->rule && d.rule && strcmp(c->rule, d.rule) == 0));
		if (!ok) {
			print_error("case %zu: %.*s:%u: got %s %s (%s), want %s %s (%s)\n", i,
				    (int)len, c->name, c->port, d.allow ? "allow" : "deny", d.reason,
				    d.rule ? d.rule : "-", c->allow ? "allow" : "deny", c->reason,
				    c->rule ? c->rule : "-");
			failed++;
		}
		policy_free(p);
	}
	assert_int_equal(failed, 0);
}

static void test_long_names(void **state)
{
	struct policy *p = load(P_ALL);
	char name[600];
	struct policy_decision d;
	/* 4 x 63-byte labels = 255 bytes: over the 253 limit */
	memset(name, 'a', sizeof(name));
	for (int i = 63; i < 255; i += 64)
		name[i] = '.';
	policy_match_host(p, name, 255, 443, T, &d);
	assert_false(d.allow);
	assert_string_equal(d.reason, "bad-name");
	policy_match_host(p, name, 600, 443, T, &d);
	assert_string_equal(d.reason, "bad-name");
	/* 253 bytes is fine, with or without a trailing dot */
	name[253] = '.';
	policy_match_host(p, name, 253, 443, T, &d);
	assert_true(d.allow);
	policy_match_host(p, name, 254, 443, T, &d);
	assert_true(d.allow);
	/* a 64-byte label is not */
	memset(name, 'b', 64);
	memcpy(name + 64, ".com", 4);
	policy_match_host(p, name, 68, 443, T, &d);
	assert_string_equal(d.reason, "bad-name");
	policy_free(p);
}

struct addr_case {
	const char *profile;
	const char *addr;
	uint16_t port;
	enum policy_proto proto;
	bool allow;
	const char *reason;
};

static const struct addr_case addr_cases[] = {
	{ P_PORTS, "198.18.0.0", 80, T, true, "allow-addr" },
	{ P_PORTS, "198.19.255.254", 80, T, true, "allow-addr" },
	{ P_PORTS, "198.17.255.255", 80, T, false, "addr-not-allowed" },
	{ P_PORTS, "198.20.0.0", 80, T, false, "addr-not-allowed" },
	{ P_PORTS, "198.18.0.1", 443, T, false, "port-not-allowed" },
	{ P_PORTS, "198.19.255.255", 443, T, true, "allow-addr" },  /* the /32, allow_port */
	{ P_PORTS, "::ffff:198.18.0.1", 80, T, true, "allow-addr" }, /* v4-mapped = v4 */
	{ P_PORTS, "2001:2::1", 443, T, true, "allow-addr" },
	{ P_PORTS, "2001:2::1", 80, T, false, "port-not-allowed" },
	{ P_PORTS, "2001:2::2", 443, T, false, "addr-not-allowed" },
	{ P_PORTS, "2001:2:0:1::", 443, T, true, "allow-addr" },
	{ P_PORTS, "2001:2:0:1:ffff:ffff:ffff:ffff", 7000, U, true, "allow-addr" },
	{ P_PORTS, "2001:2:0:2::", 443, T, false, "addr-not-allowed" },
	{ P_GITHUB, "198.18.0.1", 443, T, false, "addr-not-allowed" },
	{ P_GITHUB, "198.18.0.1", 443, U, false, "transport-not-allowed" },
	{ P_ALL, "203.0.113.1", 9, U, true, "allow-all" },
	{ P_ALL, "127.0.0.1", 9, T, true, "allow-all" },   /* class is checked separately */
	{ P_PRIV, "10.1.2.3", 5432, T, true, "allow-addr" },
	{ P_PRIV, "10.1.2.3", 443, T, false, "port-not-allowed" },
};

static int parse_addr(const char *s, uint8_t out[16])
{
	memset(out, 0, 16);
	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	assert_int_equal(inet_pton(AF_INET6, s, out), 1);
	return AF_INET6;
}

static void test_match_addr(void **state)
{
	int failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(addr_cases); i++) {
		const struct addr_case *c = &addr_cases[i];
		struct policy *p = load(c->profile);
		uint8_t a[16];
		int fam = parse_addr(c->addr, a);
		struct policy_decision d = { 0 };
		policy_match_addr(p, fam, a, c->port, c->proto, &d);
		if (d.allow != c->allow || strcmp(d.reason, c->reason) != 0) {
			print_error("case %zu: %s:%u: got %s, want %s\n", i, c->addr, c->port,
				    d.reason, c->reason);
			failed++;
		}
		policy_free(p);
	}
	assert_int_equal(failed, 0);
}

struct class_case {
	const char *addr;
	enum addr_class cls;
	bool none_ok;                   /* opened by P_NONE (nothing opened) */
	bool priv_ok;                   /* opened by P_PRIV */
};

static const struct class_case class_cases[] = {
	{ "127.0.0.1", ADDR_LOOPBACK, false, false },
	{ "127.255.255.254", ADDR_LOOPBACK, false, false },
	{ "::1", ADDR_LOOPBACK, false, false },
	{ "::ffff:127.0.0.1", ADDR_LOOPBACK, false, false },
	{ "169.254.169.254", ADDR_LINK_LOCAL, false, true },
	{ "fe80::1", ADDR_LINK_LOCAL, false, true },
	{ "febf:ffff::1", ADDR_LINK_LOCAL, false, true },
	{ "fec0::1", ADDR_PUBLIC, true, true },
	{ "10.0.0.1", ADDR_PRIVATE, false, false },
	{ "10.1.255.255", ADDR_PRIVATE, false, true },
	{ "10.2.0.0", ADDR_PRIVATE, false, false },
	{ "172.16.0.1", ADDR_PRIVATE, false, false },
	{ "172.31.255.255", ADDR_PRIVATE, false, false },
	{ "172.15.255.255", ADDR_PUBLIC, true, true },
	{ "172.32.0.0", ADDR_PUBLIC, true, true },
	{ "192.168.1.1", ADDR_PRIVATE, false, false },
	{ "192.169.0.1", ADDR_PUBLIC, true, true },
	{ "100.64.0.1", ADDR_CGNAT, false, false },
	{ "100.127.255.255", ADDR_CGNAT, false, false },
	{ "100.128.0.0", ADDR_PUBLIC, true, true },
	{ "fc00::1", ADDR_ULA, false, false },
	{ "fd12::1", ADDR_ULA, false, true },
	{ "0.0.0.0", ADDR_UNSPECIFIED, false, false },
	{ "::", ADDR_UNSPECIFIED, false, false },
	{ "255.255.255.255", ADDR_UNSPECIFIED, false, false },
	{ "224.0.0.1", ADDR_UNSPECIFIED, false, false },
	{ "ff02::1", ADDR_UNSPECIFIED, false, false },
	{ "64:ff9b::7f00:1", ADDR_LOOPBACK, false, false },
	{ "198.18.0.1", ADDR_PUBLIC, true, true },
	{ "2001:2::1", ADDR_PUBLIC, true, true },
	{ "::ffff:198.18.0.1", ADDR_PUBLIC, true, true },
};

static void test_addr_class(void **state)
{
	struct policy *none = load(P_NONE), *priv = load(P_PRIV), *all = load(P_ALL);
	int failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(class_cases); i++) {
		const struct class_case *c = &class_cases[i];
		uint8_t a[16];
		int fam = parse_addr(c->addr, a);
		enum addr_class got = policy_addr_class(fam, a);
		bool n = policy_private_allowed(none, fam, a);
		bool pr = policy_private_allowed(priv, fam, a);
		bool al = policy_private_allowed(all, fam, a);
		if (got != c->cls || n != c->none_ok || pr != c->priv_ok || al != c->none_ok) {
			print_error("%s: class %s/%d/%d/%d, want %s/%d/%d\n", c->addr,
				    policy_addr_class_name(got), n, pr, al,
				    policy_addr_class_name(c->cls), c->none_ok, c->priv_ok);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
	policy_free(none);
	policy_free(priv);
	policy_free(all);
}

static void test_private_keywords(void **state)
{
	static const struct {
		const char *kw;
		const char *addr;
	} cases[] = {
		{ "loopback", "127.0.0.1" }, { "loopback", "::1" },
		{ "link-local", "169.254.169.254" }, { "private", "192.168.0.1" },
		{ "cgnat", "100.64.0.1" }, { "ula", "fd00::1" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char json[256];
		snprintf(json, sizeof(json),
			 "{\"network\":{\"outbound\":{\"allow_private\":[\"%s\"]}}}", cases[i].kw);
		struct policy *p = load(json);
		uint8_t a[16];
		int fam = parse_addr(cases[i].addr, a);
		assert_true(policy_private_allowed(p, fam, a));
		/* one keyword opens one class only */
		for (size_t j = 0; j < ARRAY_SIZE(cases); j++) {
			if (strcmp(cases[j].kw, cases[i].kw) == 0)
				continue;
			fam = parse_addr(cases[j].addr, a);
			assert_false(policy_private_allowed(p, fam, a));
		}
		policy_free(p);
	}
}

static void test_ports(void **state)
{
	struct policy *p = load(P_PORTS);
	struct port_set s;
	/* 80, 443, 7000-7001, 8000-8100, 8443, 9000 */
	assert_int_equal(policy_ports(p, T, &s), 0);
	static const struct port_range want[] = {
		{ 80, 80 }, { 443, 443 }, { 7000, 7001 }, { 8000, 8100 }, { 8443, 8443 }, { 9000, 9000 },
	};
	assert_int_equal(s.n, ARRAY_SIZE(want));
	for (size_t i = 0; i < s.n; i++) {
		assert_int_equal(s.r[i].lo, want[i].lo);
		assert_int_equal(s.r[i].hi, want[i].hi);
	}
	assert_true(port_set_has(&s, 8050));
	assert_false(port_set_has(&s, 8101));
	assert_false(port_set_has(&s, 1));
	port_set_free(&s);
	policy_free(p);

	p = load(P_GITHUB);
	assert_int_equal(policy_ports(p, U, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(policy_ports(p, T, &s), 0);
	assert_int_equal(s.n, 1);
	port_set_free(&s);
	policy_free(p);

	p = load(P_ALL);
	assert_int_equal(policy_ports(p, U, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.r[0].lo, 1);
	assert_int_equal(s.r[0].hi, 65535);
	port_set_free(&s);
	policy_free(p);

	p = load(P_NONE);
	assert_int_equal(policy_ports(p, T, &s), 0);
	assert_int_equal(s.n, 0);
	port_set_free(&s);
	policy_free(p);

	/* adjacent and overlapping ranges merge */
	p = load("{\"network\":{\"outbound\":{\"allow_host\":[\"a.example\"],"
		 "\"allow_port\":[\"10-20\",21,\"15-30\",5]}}}");
	assert_int_equal(policy_ports(p, T, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.r[1].lo, 10);
	assert_int_equal(s.r[1].hi, 30);
	port_set_free(&s);
	policy_free(p);
}

static void test_resolvable(void **state)
{
	static const struct {
		const char *profile, *name;
		bool want;
	} cases[] = {
		{ P_GITHUB, "github.com", true },
		{ P_GITHUB, "deep.api.github.com.", true },
		{ P_GITHUB, "evilgithub.com", false },
		{ P_GITHUB, "x.api.example.com", false },
		{ P_GITHUB, "api.github.com\0.x", false },
		{ P_PORTS, "api.example.com", true },      /* whatever the port */
		{ P_NONE, "github.com", false },
		{ P_ALL, "anything.example", true },
		{ P_ALL, "bad_name.example", false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct policy *p = load(cases[i].profile);
		size_t len = strlen(cases[i].name);
		if (strcmp(cases[i].name, "api.github.com") == 0)
			len = 17;  /* reaches past the NUL */
		bool got = policy_name_resolvable(p, cases[i].name, len);
		if (got != cases[i].want)
			fail_msg("%s: got %d", cases[i].name, got);
		policy_free(p);
	}
}

/* Many rules: the lookup must not depend on rule order or count. */
static void test_many_rules(void **state)
{
	size_t cap = 2000 * 32 + 128, o = 0;
	char *json = malloc(cap);
	assert_non_null(json);
	o += (size_t)snprintf(json + o, cap - o, "{\"network\":{\"outbound\":{\"allow_host\":[");
	for (int i = 0; i < 2000; i++)
		o += (size_t)snprintf(json + o, cap - o, "%s\"%sh%d.example.com\"", i ? "," : "",
				      i % 2 ? "." : "", i);
	snprintf(json + o, cap - o, "],\"allow_port\":[443]}}}");
	struct policy *p = load(json);
	free(json);
	struct policy_decision d;
	policy_match_host(p, "h1998.example.com", 17, 443, T, &d);
	assert_true(d.allow);
	policy_match_host(p, "x.h1998.example.com", 19, 443, T, &d);
	assert_false(d.allow);
	policy_match_host(p, "x.h1999.example.com", 19, 443, T, &d);
	assert_true(d.allow);
	assert_string_equal(d.rule, ".h1999.example.com");
	policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_host),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_match_addr),
		cmocka_unit_test(test_addr_class),
		cmocka_unit_test(test_private_keywords),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_resolvable),
		cmocka_unit_test(test_many_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

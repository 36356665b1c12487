/* Profile learning: audit-log fixtures and the exact profile each must give;
 * every profile learned must load with the profile loader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/moat.h"
#include "profiles/profile.h"
#include "tools/auditlog.h"
#include "tools/learn.h"

#define EVS(ev, verdict, src, dst, dport, extra)                                               \
	"{\"ts\":\"2025-01-02T03:04:05.000001Z\",\"sandbox\":\"s\",\"event\":\"" ev "\","        \
	"\"verdict\":\"" verdict "\",\"reason\":\"allow-all\",\"src\":\"" src "\","             \
	"\"sport\":40000,\"dst\":\"" dst "\",\"dport\":" #dport ",\"proto\":\"tcp\"" extra "}\n"
#define EV(ev, verdict, dst, dport, extra) EVS(ev, verdict, "10.0.0.2", dst, dport, extra)
#define EV6(dst, dport) EVS("tcp", "allow", "2001:db8::2", dst, dport, "")
#define TLS(name, dst, port) EV("tcp", "allow", dst, port, ",\"sni\":\"" name "\"")
#define HTTP(name, dst, port) EV("http", "allow", dst, port, ",\"host\":\"" name "\"")

struct learn_case {
	const char *what;
	bool wildcards;
	const char *log;
	const char *hosts;              /* allow_host, comma-joined */
	const char *ports;              /* allow_port, comma-joined */
	const char *transport;
	const char *private_;           /* allow_private or NULL */
};

static const struct learn_case cases[] = {
	{ "two hosts, two ports: per-host ports", false,
	  TLS("api.example.com", "198.18.0.10", 443) HTTP("Plain.Example.ORG.", "198.18.0.11", 8080)
	  TLS("api.example.com", "198.18.0.10", 443),
	  "api.example.com:443,plain.example.org:8080", "", "tcp", NULL },
	{ "same port: allow_port and plain names, sorted", false,
	  TLS("b.example.com", "198.18.0.10", 443) TLS("a.example.net", "198.18.0.11", 443)
	  HTTP("c.example.com:443", "198.18.0.12", 443),
	  "a.example.net,b.example.com,c.example.com", "443", "tcp", NULL },
	{ "one host on two ports, another on one: per-host", false,
	  TLS("a.example.com", "198.18.0.10", 443) TLS("a.example.com", "198.18.0.10", 8443)
	  TLS("b.example.com", "198.18.0.10", 443),
	  "a.example.com:443,a.example.com:8443,b.example.com:443", "", "tcp", NULL },
	{ "all hosts on the same two ports", false,
	  TLS("a.example.com", "198.18.0.10", 443) TLS("a.example.com", "198.18.0.10", 80)
	  HTTP("b.example.com", "198.18.0.10", 80) TLS("b.example.com", "198.18.0.10", 443),
	  "a.example.com,b.example.com", "80,443", "tcp", NULL },
	{ "denied and non-connection events are not learned", false,
	  TLS("a.example.com", "198.18.0.10", 443)
	  EV("tcp", "deny", "198.18.0.66", 443, ",\"sni\":\"evil.example\"")
	  EV("drop", "deny", "198.18.0.67", 25, "")
	  EV("close", "allow", "198.18.0.68", 443, ",\"sni\":\"close.example\""),
	  "a.example.com", "443", "tcp", NULL },
	{ "direct IP (no SNI) becomes an address entry", false,
	  TLS("a.example.com", "198.18.0.10", 443) EV("tcp", "allow", "198.18.0.99", 443, "")
	  EV6("2001:2::99", 443),
	  "198.18.0.99,2001:2::99,a.example.com", "443", "tcp", NULL },
	{ "IPv6 address with its own port", false,
	  TLS("a.example.com", "198.18.0.10", 443) EV6("2001:2::99", 8443),
	  "[2001:2::99]:8443,a.example.com:443", "", "tcp", NULL },
	{ "private address needs allow_private", false,
	  EV("tcp", "allow", "10.1.2.3", 443, ""),
	  "10.1.2.3", "443", "tcp", "10.1.2.3" },
	{ "wildcards: siblings grouped, apex absorbed", true,
	  TLS("a.cdn.example.com", "198.18.0.10", 443) TLS("b.cdn.example.com", "198.18.0.11", 443)
	  TLS("cdn.example.com", "198.18.0.12", 443) TLS("api.other.net", "198.18.0.13", 443),
	  ".cdn.example.com,api.other.net", "443", "tcp", NULL },
	{ "wildcards: a lone name stays a name", true,
	  TLS("a.cdn.example.com", "198.18.0.10", 443) TLS("x.example.org", "198.18.0.11", 443),
	  "a.cdn.example.com,x.example.org", "443", "tcp", NULL },
	{ "wildcards: never at a TLD", true,
	  TLS("example.com", "198.18.0.10", 443) TLS("other.com", "198.18.0.11", 443),
	  "example.com,other.com", "443", "tcp", NULL },
	{ "wildcards: never at co.uk", true,
	  TLS("shop.co.uk", "198.18.0.10", 443) TLS("bank.co.uk", "198.18.0.11", 443),
	  "bank.co.uk,shop.co.uk", "443", "tcp", NULL },
	{ "wildcards: never at github.io", true,
	  TLS("alice.github.io", "198.18.0.10", 443) TLS("bob.github.io", "198.18.0.11", 443),
	  "alice.github.io,bob.github.io", "443", "tcp", NULL },
	{ "wildcards: below co.uk is fine", true,
	  TLS("www.shop.co.uk", "198.18.0.10", 443) TLS("img.shop.co.uk", "198.18.0.11", 443),
	  ".shop.co.uk", "443", "tcp", NULL },
	{ "wildcards: siblings on different ports stay apart", true,
	  TLS("a.example.com", "198.18.0.10", 443) TLS("b.example.com", "198.18.0.11", 8443),
	  "a.example.com:443,b.example.com:8443", "", "tcp", NULL },
	{ "without wildcards siblings stay names", false,
	  TLS("a.cdn.example.com", "198.18.0.10", 443) TLS("b.cdn.example.com", "198.18.0.11", 443),
	  "a.cdn.example.com,b.cdn.example.com", "443", "tcp", NULL },
	{ "udp to an address a DNS answer gave: the name, and udp", false,
	  "{\"ts\":\"2025-01-02T03:04:05Z\",\"event\":\"dns\",\"verdict\":\"allow\","
	  "\"reason\":\"allow-all\",\"qname\":\"stun.example.com\",\"qtype\":\"A\",\"src\":\"10.0.0.2\","
	  "\"dst\":\"198.18.0.53\",\"proto\":\"udp\",\"answers\":[\"198.18.0.20\"]}\n"
	  "{\"ts\":\"2025-01-02T03:04:05Z\",\"event\":\"dns\",\"verdict\":\"allow\","
	  "\"reason\":\"allow-all\",\"qname\":\"only-resolved.example.com\",\"src\":\"10.0.0.2\","
	  "\"dst\":\"198.18.0.53\",\"proto\":\"udp\",\"answers\":[\"198.18.0.21\"]}\n"
	  "{\"ts\":\"2025-01-02T03:04:06Z\",\"event\":\"udp\",\"verdict\":\"allow\","
	  "\"reason\":\"allow-all\",\"src\":\"10.0.0.2\",\"sport\":5000,\"dst\":\"198.18.0.20\","
	  "\"dport\":3478,\"proto\":\"udp\"}\n"
	  "{\"ts\":\"2025-01-02T03:04:06Z\",\"event\":\"udp\",\"verdict\":\"allow\","
	  "\"reason\":\"allow-all\",\"src\":\"10.0.0.2\",\"sport\":5000,\"dst\":\"198.18.0.30\","
	  "\"dport\":3478,\"proto\":\"udp\"}\n"
	  TLS("api.example.com", "198.18.0.10", 443),
	  "198.18.0.30:3478,api.example.com:443,stun.example.com:3478", "", "tcp,udp", NULL },
	{ "empty log: no network", false, "", "", "", "tcp", NULL },
	{ "names no profile can hold fall back to the address", false,
	  EV("tcp", "allow", "198.18.0.10", 443, ",\"sni\":\"bad name!\""),
	  "198.18.0.10", "443", "tcp", NULL },
	{ "names the loader refuses fall back to the address", false,
	  EV("tcp", "allow", "198.18.0.10", 443, ",\"sni\":\"_api.example.com\"")
	  EV("tcp", "allow", "198.18.0.10", 443, ",\"sni\":\"-a.example.com\"")
	  EV("tcp", "allow", "198.18.0.10", 443, ",\"sni\":\"a.example.1com\""),
	  "198.18.0.10", "443", "tcp", NULL },
	{ "a name ending in a numeric label is no name", false,
	  EV("tcp", "allow", "198.18.0.10", 443, ",\"sni\":\"api.exa.0.0.2\""),
	  "198.18.0.10", "443", "tcp", NULL },
};

static void join(const cJSON *arr, char *out, size_t cap)
{
	const cJSON *it;
	size_t n = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(it, arr) {
		if (cJSON_IsString(it))
			n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "", it->valuestring);
		else
			n += (size_t)snprintf(out + n, cap - n, "%s%d", n ? "," : "", it->valueint);
	}
}

static void test_cases(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct learn_case *c = &cases[i];
		struct audit_log log;
		struct moat_error e = { 0 };
		struct policy *p = NULL;
		char *json = NULL, got[512];
		cJSON *root, *ob;

		print_message("learn: %s\n", c->what);
		assert_int_equal(auditlog_parse_buf(c->log, strlen(c->log), "t", &log, &e), 0);
		assert_int_equal(log.bad_lines, 0);
		assert_int_equal(learn_profile_log(&log, c->wildcards, &json, &e), 0);
		root = cJSON_Parse(json);
		assert_non_null(root);
		ob = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "network"), "outbound");
		assert_non_null(ob);
		assert_true(cJSON_IsFalse(cJSON_GetObjectItem(ob, "insecure_allow_all")));
		join(cJSON_GetObjectItem(ob, "allow_host"), got, sizeof(got));
		print_message("  allow_host %s\n", got);
		assert_string_equal(got, c->hosts);
		join(cJSON_GetObjectItem(ob, "allow_port"), got, sizeof(got));
		assert_string_equal(got, c->ports);
		join(cJSON_GetObjectItem(ob, "allow_transport"), got, sizeof(got));
		assert_string_equal(got, c->transport);
		if (c->private_) {
			join(cJSON_GetObjectItem(ob, "allow_private"), got, sizeof(got));
			assert_string_equal(got, c->private_);
		} else {
			assert_null(cJSON_GetObjectItem(ob, "allow_private"));
		}
		/* what moat profile check does */
		if (policy_load_buffer(json, strlen(json), "learned.json", &p, &e) < 0)
			print_message("  %s\n%s\n", e.msg, json);
		assert_non_null(p);
		policy_free(p);
		cJSON_Delete(root);
		free(json);
		auditlog_free(&log);
	}
}

/* The learned profile allows what it learned from and nothing next to it. */
static void test_allows_what_it_learned(void **state)
{
	static const char log_text[] =
		TLS("a.cdn.example.com", "198.18.0.10", 443) TLS("b.cdn.example.com", "198.18.0.11", 443)
		HTTP("plain.example.org", "198.18.0.12", 80);
	struct audit_log log;
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	struct policy_decision d;
	char *json = NULL;

	assert_int_equal(auditlog_parse_buf(log_text, sizeof(log_text) - 1, "t", &log, &e), 0);
	assert_int_equal(learn_profile_log(&log, true, &json, &e), 0);
	assert_int_equal(policy_load_buffer(json, strlen(json), "l", &p, &e), 0);
	policy_match_host(p, "a.cdn.example.com", 17, 443, POLICY_TCP, &d);
	assert_true(d.allow);
	policy_match_host(p, "c.cdn.example.com", 17, 443, POLICY_TCP, &d);
	assert_true(d.allow);
	policy_match_host(p, "a.cdn.example.com", 17, 80, POLICY_TCP, &d);
	assert_false(d.allow);
	policy_match_host(p, "plain.example.org", 17, 80, POLICY_TCP, &d);
	assert_true(d.allow);
	policy_match_host(p, "plain.example.org", 17, 443, POLICY_TCP, &d);
	assert_false(d.allow);
	policy_match_host(p, "example.com", 11, 443, POLICY_TCP, &d);
	assert_false(d.allow);
	policy_free(p);
	free(json);
	auditlog_free(&log);
}

static void test_public_suffix(void **state)
{
	assert_true(learn_is_public_suffix("com"));
	assert_true(learn_is_public_suffix("co.uk"));
	assert_true(learn_is_public_suffix("github.io"));
	assert_false(learn_is_public_suffix("example.com"));
	assert_false(learn_is_public_suffix("shop.co.uk"));
}

static void test_file(void **state)
{
	char *json = NULL;
	struct moat_error e = { 0 };

	assert_true(learn_profile("/nonexistent/audit.jsonl", false, &json, &e) < 0);
	assert_non_null(strstr(e.msg, "/nonexistent/audit.jsonl"));
	assert_null(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_allows_what_it_learned),
		cmocka_unit_test(test_public_suffix),
		cmocka_unit_test(test_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The profile loader: every mistake gets its own precise line; ToolHive's
 * files and moat's built-ins load as they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/moat.h"
#include "profiles/profile.h"

#include <dirent.h>
#include <string.h>

#define OUT(x) "{\"network\":{\"outbound\":{" x "}}}"

struct bad_case {
	const char *json;
	const char *want;               /* substring of the error line */
};

static const struct bad_case bad_cases[] = {
	/* syntax */
	{ "", "t.json: empty file" },
	{ "  \n ", "t.json: empty file" },
	{ "{\n  \"name\": \"x\",\n  \"read\": [,]\n}", "t.json:3:12: malformed JSON" },
	{ "{\"name\": \"x\"", "t.json:1:13: malformed JSON: unexpected end of file" },
	{ "{} {}", "t.json:1:4: malformed JSON: text after the top-level value" },
	{ "{\"name\": \"a\\u0000b\"}", "t.json:1:12: \\u0000 (NUL) in a string" },
	{ "[]", "t.json: top level: expected an object (an array)" },
	{ "42", "top level: expected an object (42)" },
	/* unknown and misplaced keys */
	{ OUT("\"allow_hosts\": []"),
	  "t.json: network.outbound.allow_hosts: unknown key (did you mean \"allow_host\"?)" },
	{ OUT("\"insecure_allow\": true"), "(did you mean \"insecure_allow_all\"?)" },
	{ "{\"netwrk\": {}}", "t.json: netwrk: unknown key (did you mean \"network\"?)" },
	{ "{\"allow_host\": []}", "allow_host: unknown key here (did you mean \"network.outbound.allow_host\"?)" },
	{ "{\"seccomp\": {}}", "t.json: seccomp: unknown key" },
	{ "{\"network\": {\"outbound\": {}, \"outbound\": {}}}", "network.outbound: duplicate key" },
	{ "{\"network\": {\"inbound\": {\"allow_port\": []}}}", "network.inbound.allow_port: unknown key" },
	/* types */
	{ "{\"name\": 3}", "t.json: name: expected a string (3)" },
	{ "{\"read\": \"/tmp\"}", "t.json: read: expected an array of strings (\"/tmp\")" },
	{ "{\"write\": [\"/a\", 1]}", "t.json: write[1]: expected a string (1)" },
	{ "{\"privileged\": \"no\"}", "t.json: privileged: expected true or false (\"no\")" },
	{ "{\"network\": []}", "t.json: network: expected an object (an array)" },
	{ "{\"network\": {\"mode\": 1}}", "network.mode: expected a string (1)" },
	{ OUT("\"insecure_allow_all\": 1"), "network.outbound.insecure_allow_all: expected true or false (1)" },
	{ OUT("\"allow_host\": \"a.com\""), "network.outbound.allow_host: expected an array of strings (\"a.com\")" },
	{ OUT("\"allow_host\": [\"a.com\", 7]"), "network.outbound.allow_host[1]: expected a string (7)" },
	{ OUT("\"allow_port\": 443"), "network.outbound.allow_port: expected an array of ports (443)" },
	{ OUT("\"allow_port\": [true]"), "allow_port[0]: expected a port number or a \"LO-HI\" string (true)" },
	/* ports */
	{ OUT("\"allow_port\": [0]"), "network.outbound.allow_port[0]: port out of range 1-65535 (0)" },
	{ OUT("\"allow_port\": [443, 65536]"), "allow_port[1]: port out of range 1-65535 (65536)" },
	{ OUT("\"allow_port\": [-1]"), "allow_port[0]: port out of range 1-65535 (-1)" },
	{ OUT("\"allow_port\": [443.5]"), "allow_port[0]: port must be an integer (443.5)" },
	{ OUT("\"allow_port\": [1e99]"), "allow_port[0]: port must be an integer" },
	{ OUT("\"allow_port\": [\"9000-8000\"]"), "allow_port[0]: reversed port range (\"9000-8000\")" },
	{ OUT("\"allow_port\": [\"80-\"]"), "allow_port[0]: not a port or LO-HI range (\"80-\")" },
	{ OUT("\"allow_port\": [\"http\"]"), "allow_port[0]: not a port or LO-HI range (\"http\")" },
	{ OUT("\"allow_port\": [\"0-10\"]"), "allow_port[0]: port out of range 1-65535 (\"0-10\")" },
	{ OUT("\"allow_host\": [\"a.com:0\"]"), "allow_host[0]: port out of range 1-65535 (\"a.com:0\")" },
	{ OUT("\"allow_host\": [\"a.com:\"]"), "allow_host[0]: empty port (\"a.com:\")" },
	{ OUT("\"allow_host\": [\"a.com:99999\"]"), "allow_host[0]: port out of range 1-65535" },
	{ OUT("\"allow_host\": [\"a.com:90-80\"]"), "allow_host[0]: reversed port range (\"a.com:90-80\")" },
	/* names */
	{ OUT("\"allow_host\": [\"\"]"), "network.outbound.allow_host[0]: empty host (\"\")" },
	{ OUT("\"allow_host\": [\"*\"]"), "allow_host[0]: \"*\" alone is not a host (use insecure_allow_all) (\"*\")" },
	{ OUT("\"allow_host\": [\".\"]"), "allow_host[0]: \".\" alone is not a host (\".\")" },
	{ OUT("\"allow_host\": [\"*.\"]"), "allow_host[0]: empty name after the wildcard (\"*.\")" },
	{ OUT("\"allow_host\": [\"api.*.com\"]"), "allow_host[0]: wildcard allowed only as a leading \"*.\" (\"api.*.com\")" },
	{ OUT("\"allow_host\": [\"*api.example.com\"]"), "wildcard allowed only as a leading \"*.\" (\"*api.example.com\")" },
	{ OUT("\"allow_host\": [\"*.*.example.com\"]"), "wildcard allowed only as a leading \"*.\"" },
	{ OUT("\"allow_host\": [\"a..b\"]"), "allow_host[0]: empty label (\"a..b\")" },
	{ OUT("\"allow_host\": [\"..a\"]"), "allow_host[0]: empty label (\"..a\")" },
	{ OUT("\"allow_host\": [\"a.com..\"]"), "allow_host[0]: empty label (\"a.com..\")" },
	{ OUT("\"allow_host\": [\"api_v2.example.com\"]"), "allow_host[0]: invalid character (letters, digits, '-' and '.' only)" },
	{ OUT("\"allow_host\": [\"a b.com\"]"), "invalid character" },
	{ OUT("\"allow_host\": [\"a.com/x\"]"), "allow_host[0]: not a canonical IP address (\"a.com/x\")" },
	{ OUT("\"allow_host\": [\"-a.com\"]"), "allow_host[0]: label starts or ends with '-' (\"-a.com\")" },
	{ OUT("\"allow_host\": [\"a-.com\"]"), "label starts or ends with '-'" },
	{ OUT("\"allow_host\": [\"b\xc3\xbc" "cher.example\"]"),
	  "allow_host[0]: non-ASCII name: write it in punycode (xn--...) (\"b\\xc3\\xbccher.example\")" },
	{ OUT("\"allow_host\": [\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com\"]"),
	  "allow_host[0]: label longer than 63 bytes" },
	/* IP literals */
	{ OUT("\"allow_host\": [\"127.1\"]"), "allow_host[0]: not a canonical IPv4 address (write 127.0.0.1) (\"127.1\")" },
	{ OUT("\"allow_host\": [\"0x7f.0.0.1\"]"), "not a canonical IPv4 address (write 127.0.0.1) (\"0x7f.0.0.1\")" },
	{ OUT("\"allow_host\": [\"0177.0.0.1\"]"), "not a canonical IPv4 address (write 127.0.0.1)" },
	{ OUT("\"allow_host\": [\"1.2.3.256\"]"), "allow_host[0]: numeric name: not a canonical IPv4 address" },
	{ OUT("\"allow_host\": [\"2130706433\"]"), "not a canonical IPv4 address (write 127.0.0.1)" },
	{ OUT("\"allow_host\": [\"198.18.0.1/15\"]"), "allow_host[0]: host bits set (the network is 198.18.0.0/15) (\"198.18.0.1/15\")" },
	{ OUT("\"allow_host\": [\"198.18.0.0/33\"]"), "allow_host[0]: prefix length must be 0-32" },
	{ OUT("\"allow_host\": [\"198.18.0.0/015x\"]"), "prefix length must be 0-32" },
	{ OUT("\"allow_host\": [\"2001:2::/129\"]"), "prefix length must be 0-128" },
	{ OUT("\"allow_host\": [\"2001:2::1/48\"]"), "host bits set (the network is 2001:2::/48)" },
	{ OUT("\"allow_host\": [\"2001:2::g\"]"), "allow_host[0]: not a canonical IP address" },
	{ OUT("\"allow_host\": [\"[2001:2::1\"]"), "allow_host[0]: missing ']' after an IPv6 address" },
	{ OUT("\"allow_host\": [\"[2001:2::1]443\"]"), "allow_host[0]: expected ':PORT' after ']'" },
	{ OUT("\"allow_host\": [\"[198.18.0.1]:443\"]"), "allow_host[0]: brackets hold an IPv6 address only" },
	{ OUT("\"allow_host\": [\"[a.com]:443\"]"), "allow_host[0]: not a canonical IP address" },
	/* transports and private classes */
	{ OUT("\"allow_transport\": [\"icmp\"]"), "allow_transport[0]: unknown transport (expected \"tcp\" or \"udp\") (\"icmp\")" },
	{ OUT("\"allow_transport\": \"tcp\""), "network.outbound.allow_transport: expected an array" },
	{ OUT("\"allow_transport\": [6]"), "allow_transport[0]: expected \"tcp\" or \"udp\" (6)" },
	{ OUT("\"allow_private\": [\"intranet\"]"), "allow_private[0]: expected loopback, link-local, private, cgnat, ula or a CIDR (\"intranet\")" },
	{ OUT("\"allow_private\": [\"10.0.0.1/8\"]"), "allow_private[0]: host bits set (the network is 10.0.0.0/8)" },
	{ OUT("\"allow_private\": [\"LOOPBACK\"]"), "allow_private[0]: expected loopback" },
	{ OUT("\"allow_private\": \"private\""), "network.outbound.allow_private: expected an array of strings" },
	{ "{\"network\": {\"inbound\": {\"allow_host\": [1]}}}", "network.inbound.allow_host[0]: expected a string (1)" },
};

static void test_bad(void **state)
{
	int failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		struct moat_error e = { 0 };
		struct policy *p = NULL;
		const char *j = bad_cases[i].json;
		int r = policy_load_buffer(j, strlen(j), "t.json", &p, &e);
		if (r >= 0) {
			print_error("case %zu loaded: %s\n", i, j);
			policy_free(p);
			failed++;
		} else if (!strstr(e.msg, bad_cases[i].want) || strchr(e.msg, '\n')) {
			print_error("case %zu: got  %s\n         want %s\n", i, e.msg, bad_cases[i].want);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* Raw NUL bytes and buffers without a terminator. */
static void test_raw_bytes(void **state)
{
	static const char nul[] = "{\"name\": \"a\0b\"}";
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	assert_true(policy_load_buffer(nul, sizeof(nul) - 1, "t.json", &p, &e) < 0);
	assert_non_null(strstr(e.msg, "t.json:1:12: NUL byte in profile"));
	/* length is honoured: the closing brace is outside */
	static const char cut[] = "{\"name\": \"a\"}";
	assert_true(policy_load_buffer(cut, sizeof(cut) - 2, "t.json", &p, &e) < 0);
	assert_non_null(strstr(e.msg, "unexpected end of file"));
	assert_int_equal(policy_load_buffer(cut, sizeof(cut) - 1, "t.json", &p, &e), 0);
	policy_free(p);
}

struct warn_collect {
	char buf[2048];
};

static void collect(void *arg, const char *msg)
{
	struct warn_collect *w = arg;
	size_t n = strlen(w->buf);
	snprintf(w->buf + n, sizeof(w->buf) - n, "%s\n", msg);
}

struct warn_case {
	const char *json;
	const char *want;               /* substring of the warnings, NULL: none */
};

static const struct warn_case warn_cases[] = {
	{ OUT("\"allow_host\": [\"a.com\"], \"allow_port\": []"),
	  "network.outbound.allow_host[0]: \"a.com\" is allowed on no port" },
	{ OUT("\"allow_host\": [\"a.com\"]"), "is allowed on no port" },
	{ OUT("\"allow_host\": [\"a.com:443\"]"), NULL },
	{ OUT("\"allow_host\": [\"a.com\", \"A.COM.\"], \"allow_port\": [443]"),
	  "network.outbound.allow_host[1]: duplicate of allow_host[0] (\"A.COM.\")" },
	{ OUT("\"allow_host\": [\".a.com\", \"*.a.com\"], \"allow_port\": [443]"), "duplicate of allow_host[0]" },
	{ OUT("\"allow_host\": [\"a.com:443\", \"a.com:8443\"], \"allow_port\": [443]"), NULL },
	{ OUT("\"allow_host\": [\"198.18.0.1\", \"198.18.0.1\"], \"allow_port\": [443]"), "duplicate of allow_host[0]" },
	{ OUT("\"allow_host\": [\"a.com\"], \"allow_port\": [443, 443]"),
	  "network.outbound.allow_port[1]: duplicate port (443)" },
	{ OUT("\"allow_transport\": [\"tcp\", \"tcp\"]"), "allow_transport[1]: duplicate transport" },
	{ OUT("\"allow_private\": [\"private\", \"private\"]"), "allow_private[1]: duplicate entry" },
	{ OUT("\"allow_private\": [\"198.18.0.0/15\"]"), "a public network: allow_private changes nothing" },
	{ OUT("\"allow_host\": [\"10.0.0.5:22\"]"), "\"10.0.0.5:22\" is private, closed unless allow_private opens it" },
	{ OUT("\"allow_host\": [\"10.0.0.5:22\"], \"allow_private\": [\"10.0.0.0/24\"]"), NULL },
	{ OUT("\"insecure_allow_all\": true, \"allow_host\": [\"a.com\"]"), "has no effect: insecure_allow_all" },
};

static void test_warnings(void **state)
{
	int failed = 0;
	for (size_t i = 0; i < ARRAY_SIZE(warn_cases); i++) {
		struct moat_error e = { 0 };
		struct policy *p = NULL;
		const char *j = warn_cases[i].json;
		if (policy_load_buffer(j, strlen(j), "t.json", &p, &e) < 0) {
			print_error("case %zu: %s\n", i, e.msg);
			failed++;
			continue;
		}
		struct warn_collect w = { "" };
		policy_warnings(p, collect, &w);
		const char *want = warn_cases[i].want;
		if (want ? !strstr(w.buf, want) : w.buf[0] != '\0') {
			print_error("case %zu: warnings:\n%s want: %s\n", i, w.buf, want ? want : "none");
			failed++;
		}
		policy_free(p);
	}
	assert_int_equal(failed, 0);
}

static void test_normalized(void **state)
{
	static const char json[] = OUT(
		"\"allow_transport\": [\"UDP\"],"
		"\"allow_host\": [\"API.Example.COM.:8443\", \"*.CDN.example.com\", \".b.example\","
		"\"198.18.0.0/15:80-81\", \"[2001:2::1]:443\", \"2001:2::/48\", \"[::ffff:198.18.0.9]\","
		"\"0.0.0.0/0\"],"
		"\"allow_port\": [443, \"1000-2000\", 80],"
		"\"allow_private\": [\"cgnat\", \"fd00::/8\", \"loopback\"]");
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	assert_int_equal(policy_load_buffer(json, strlen(json), "dir/x.json", &p, &e), 0);
	assert_string_equal(p->name, "x");
	assert_false(p->tcp);
	assert_true(p->udp);
	assert_false(p->allow_all);
	assert_int_equal(p->n_hosts, 3);
	assert_string_equal(p->hosts[0].name, "api.example.com");
	assert_false(p->hosts[0].subdomains);
	assert_int_equal(p->hosts[0].ports.n, 1);
	assert_int_equal(p->hosts[0].ports.r[0].lo, 8443);
	assert_string_equal(p->hosts[0].source, "API.Example.COM.:8443");
	assert_int_equal(p->hosts[0].index, 0);
	assert_string_equal(p->hosts[1].name, "cdn.example.com");
	assert_true(p->hosts[1].subdomains);
	assert_string_equal(p->hosts[2].name, "b.example");
	assert_true(p->hosts[2].subdomains);
	assert_int_equal(p->n_addrs, 5);
	assert_int_equal(p->addrs[0].family, AF_INET);
	assert_int_equal(p->addrs[0].prefix, 15);
	assert_int_equal(p->addrs[0].ports.r[0].lo, 80);
	assert_int_equal(p->addrs[0].ports.r[0].hi, 81);
	assert_int_equal(p->addrs[0].index, 3);
	assert_int_equal(p->addrs[1].family, AF_INET6);
	assert_int_equal(p->addrs[1].prefix, 128);
	assert_int_equal(p->addrs[2].prefix, 48);
	assert_int_equal(p->addrs[2].ports.n, 0);
	/* the v4-mapped literal is the IPv4 address */
	assert_int_equal(p->addrs[3].family, AF_INET);
	assert_int_equal(p->addrs[3].prefix, 32);
	assert_memory_equal(p->addrs[3].addr, "\xc6\x12\x00\x09", 4);
	assert_int_equal(p->addrs[4].prefix, 0);
	assert_int_equal(p->ports.n, 3);
	assert_int_equal(p->ports.r[2].lo, 1000);
	assert_int_equal(p->private_classes, (1u << ADDR_CGNAT) | (1u << ADDR_LOOPBACK));
	assert_int_equal(p->n_private_ok, 1);
	assert_int_equal(p->private_ok[0].prefix, 8);

	/* policy_to_json loads back to the same JSON */
	char *out = policy_to_json(p);
	assert_non_null(out);
	struct policy *q = NULL;
	assert_int_equal(policy_load_buffer(out, strlen(out), "x.json", &q, &e), 0);
	char *again = policy_to_json(q);
	assert_string_equal(out, again);
	assert_non_null(strstr(out, "\".cdn.example.com\""));
	assert_non_null(strstr(out, "\"api.example.com:8443\""));
	assert_non_null(strstr(out, "\"[2001:2::1]:443\""));
	assert_non_null(strstr(out, "\"198.18.0.9\""));
	assert_non_null(strstr(out, "\"1000-2000\""));
	free(out);
	free(again);
	policy_free(q);
	policy_free(p);
}

static const char *const toolhive_examples[] = {
	/* as in ToolHive's docs and built-ins */
	"{\"name\":\"none\",\"read\":[],\"write\":[],\"network\":{\"outbound\":"
	"{\"insecure_allow_all\":false,\"allow_host\":[],\"allow_port\":[]}},\"privileged\":false}",
	"{\"name\":\"network\",\"read\":[],\"write\":[],\"network\":{\"outbound\":"
	"{\"insecure_allow_all\":true}},\"privileged\":false}",
	"{\"name\":\"data-processor\",\"read\":[\"/home/user/input:/input\"],"
	"\"write\":[\"/home/user/output:/output\"],\"network\":{\"outbound\":"
	"{\"allow_host\":[\"api.example.com\"],\"allow_port\":[443]}},\"privileged\":false}",
	"{\"network\":{\"outbound\":{\"allow_host\":[\"api.example.com\",\"*.google.com\"]}}}",
	"{\"network\":{\"inbound\":{\"allow_host\":[\"192.168.1.0/24\",\"10.0.0.100\"]}}}",
	"{\"read\":[\"volume://my-data:/data\"],\"privileged\":true,\"network\":{\"mode\":\"bridge\"}}",
	"{\"network\":{\"outbound\":{\"insecure_allow_all\":false,\"allow_transport\":[],"
	"\"allow_host\":[\".github.com\"],\"allow_port\":[443]}}}",
	"{\"network\":null,\"read\":null}",
	"{}",
};

static void test_toolhive(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(toolhive_examples); i++) {
		struct moat_error e = { 0 };
		struct policy *p = NULL;
		const char *j = toolhive_examples[i];
		if (policy_load_buffer(j, strlen(j), "th.json", &p, &e) < 0)
			fail_msg("example %zu: %s", i, e.msg);
		assert_true(p->tcp);
		policy_free(p);
	}
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	const char *j = toolhive_examples[5];
	assert_int_equal(policy_load_buffer(j, strlen(j), "th.json", &p, &e), 0);
	assert_true(p->privileged);
	assert_string_equal(p->mode, "bridge");
	assert_int_equal(p->n_read, 1);
	assert_string_equal(p->read[0], "volume://my-data:/data");
	policy_free(p);
}

static void test_builtins(void **state)
{
	const char *const *names = policy_builtin_names();
	size_t n = 0;
	for (; names[n]; n++) {
		struct moat_error e = { 0 };
		struct policy *p = NULL;
		if (policy_load(names[n], &p, &e) < 0)
			fail_msg("built-in %s: %s", names[n], e.msg);
		assert_string_equal(p->name, names[n]);
		assert_non_null(p->path);
		assert_non_null(strstr(p->path, names[n]));
		struct warn_collect w = { "" };
		policy_warnings(p, collect, &w);
		if (w.buf[0])
			fail_msg("built-in %s warns: %s", names[n], w.buf);
		policy_free(p);
	}
	assert_true(n >= 7);

	struct moat_error e = { 0 };
	struct policy *p = NULL;
	assert_true(policy_load("nosuch", &p, &e) < 0);
	assert_non_null(strstr(e.msg, "nosuch: unknown profile (built-ins: none, network, github"));
	assert_true(policy_load("./nosuch", &p, &e) < 0);
	assert_non_null(strstr(e.msg, "./nosuch: No such file"));
	assert_true(policy_load("nosuch.json", &p, &e) < 0);
	assert_non_null(strstr(e.msg, "nosuch.json: No such file"));

	/* the built-ins decide as documented */
	struct policy_decision d;
	assert_int_equal(policy_load("github", &p, &e), 0);
	policy_match_host(p, "api.github.com", 14, 443, POLICY_TCP, &d);
	assert_true(d.allow);
	policy_match_host(p, "raw.githubusercontent.com", 25, 443, POLICY_TCP, &d);
	assert_true(d.allow);
	policy_match_host(p, "evilgithub.com", 14, 443, POLICY_TCP, &d);
	assert_false(d.allow);
	policy_free(p);
	assert_int_equal(policy_load("none", &p, &e), 0);
	policy_match_host(p, "github.com", 10, 443, POLICY_TCP, &d);
	assert_false(d.allow);
	policy_free(p);
	assert_int_equal(policy_load("network", &p, &e), 0);
	assert_true(p->allow_all);
	policy_free(p);
}

/* $MOAT_PROFILE_PATH comes first. */
static void test_search_path(void **state)
{
	char dir[] = "/tmp/moat-test-profile-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/github.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"name\": \"mine\"}", f);
	fclose(f);
	char env[300];
	snprintf(env, sizeof(env), "/nonexistent::%s", dir);
	setenv("MOAT_PROFILE_PATH", env, 1);
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	int r = policy_load("github", &p, &e);
	unsetenv("MOAT_PROFILE_PATH");
	unlink(path);
	rmdir(dir);
	assert_int_equal(r, 0);
	assert_string_equal(p->name, "mine");
	assert_string_equal(p->path, path);
	policy_free(p);
}

/* Each file in tests/profiles/bad fails with one line naming it; each in
 * tests/profiles/good loads. */
static void check_dir(const char *sub, bool want_ok)
{
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/../../tests/profiles/%s", MOAT_SRC_PROFILE_DIR, sub);
	DIR *d = opendir(dir);
	if (!d)
		fail_msg("%s: %s", dir, strerror(errno));
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d))) {
		if (!strstr(de->d_name, ".json"))
			continue;
		char path[1400];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct moat_error e = { 0 };
		struct policy *p = NULL;
		int r = policy_load(path, &p, &e);
		if ((r == 0) != want_ok)
			fail_msg("%s: %s", path, r ? e.msg : "loaded");
		if (r < 0 && strncmp(e.msg, path, strlen(path)) != 0)
			fail_msg("%s: error does not name the file: %s", path, e.msg);
		policy_free(p);
		n++;
	}
	closedir(d);
	assert_true(n >= (want_ok ? 3 : 15));
}

static void test_files(void **state)
{
	check_dir("bad", false);
	check_dir("good", true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_raw_bytes),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_normalized),
		cmocka_unit_test(test_toolhive),
		cmocka_unit_test(test_builtins),
		cmocka_unit_test(test_search_path),
		cmocka_unit_test(test_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

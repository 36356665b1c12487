/* nftables table of a sandbox against the real kernel, in a private netns.
 * The `nft` and `ip` tools are used only to look at what moat did. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <libnftnl/chain.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <cmocka.h>

#include "common/moat.h"
#include "enforcer/nflog.h"
#include "enforcer/nft.h"
#include "enforcer/nft_priv.h"
#include "profiles/profile.h"

static struct port_range tcp_r[] = { { 80, 80 }, { 443, 443 }, { 8000, 8080 } };
static struct port_set tcp_ps = { tcp_r, 3 };
static struct port_range udp_r[] = { { 3478, 3478 }, { 60000, 65535 } };
static struct port_set udp_ps = { udp_r, 2 };

static struct nft_sandbox sandbox(const char *id)
{
	return (struct nft_sandbox){
		.id = id, .owner = 4242, .profile = "github", .host_ifname = "mveth0",
		.tproxy_port4 = 15001, .tproxy_port6 = 15002, .dns_port4 = 15053,
		.dns_port6 = 15054, .mark = 0x4d4f, .nflog_group = 7,
		.tcp_ports = &tcp_ps, .udp_ports = &udp_ps, .udp = true,
	};
}

/* Output of a command (tests only). */
static char *run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t cap = 1 << 16, len = 0;
	char *out = calloc(1, cap);
	size_t r;
	while ((r = fread(out + len, 1, cap - 1 - len, f)) > 0) {
		len += r;
		if (len == cap - 1) {
			out = realloc(out, cap * 2);
			cap *= 2;
		}
	}
	out[len] = '\0';
	pclose(f);
	return out;
}

static bool table_exists(const char *id)
{
	struct nft_table_info *t = NULL;
	size_t n = 0;
	struct moat_error e = { 0 };
	bool found = false;
	assert_int_equal(nft_list_tables(&t, &n, &e), 0);
	for (size_t i = 0; i < n; i++)
		found |= strcmp(t[i].id, id) == 0;
	free(t);
	return found;
}

/* The listing moat promises in docs/rules.md, line by line. */
static const char *const expected_lines[] = {
	"table inet moat_t1 {",
	"comment \"moat pid=4242 profile=github if=mveth0\"",
	"counter drop_port {", "counter drop_udp {", "counter drop_icmp {",
	"counter drop_host {", "counter drop_other {", "counter drop_fwd {",
	"set tcp_ports {", "elements = { 80, 443, 8000-8080 }",
	"set udp_ports {", "elements = { 3478, 60000-65535 }",
	"set learned4 {", "type ipv4_addr", "set learned6 {", "type ipv6_addr",
	"chain pre {",
	"type filter hook prerouting priority mangle; policy accept;",
	"iifname != \"mveth0\" accept",
	"icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
	"icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } drop",
	"meta nfproto ipv4 meta l4proto { tcp, udp } th dport 53 meta mark set 0x00004d4f "
	"tproxy ip to :15053 accept",
	"meta nfproto ipv6 meta l4proto { tcp, udp } th dport 53 meta mark set 0x00004d4f "
	"tproxy ip6 to :15054 accept",
	"fib daddr type local limit rate 20/second log prefix \"moat drop host\" group 7",
	"fib daddr type local counter name \"drop_host\" drop",
	"meta nfproto ipv4 tcp dport @tcp_ports meta mark set 0x00004d4f tproxy ip to :15001 accept",
	"meta nfproto ipv6 tcp dport @tcp_ports meta mark set 0x00004d4f tproxy ip6 to :15002 accept",
	"ip daddr @learned4 udp dport @udp_ports accept",
	"ip6 daddr @learned6 udp dport @udp_ports accept",
	"meta l4proto tcp limit rate 20/second log prefix \"moat drop port\" group 7",
	"meta l4proto tcp counter name \"drop_port\" drop",
	"meta l4proto udp limit rate 20/second log prefix \"moat drop udp\" group 7",
	"meta l4proto udp counter name \"drop_udp\" drop",
	"meta l4proto { icmp, ipv6-icmp } limit rate 20/second log prefix \"moat drop icmp\" group 7",
	"meta l4proto { icmp, ipv6-icmp } counter name \"drop_icmp\" drop",
	"limit rate 20/second log prefix \"moat drop other\" group 7",
	"counter name \"drop_other\" drop",
	"chain forward {",
	"type filter hook forward priority filter; policy accept;",
	"iifname \"mveth0\" ip daddr @learned4 udp dport @udp_ports accept",
	"iifname \"mveth0\" ip6 daddr @learned6 udp dport @udp_ports accept",
	"oifname \"mveth0\" ct state established,related accept",
	"iifname \"mveth0\" counter name \"drop_fwd\" drop",
	"oifname \"mveth0\" counter name \"drop_fwd\" drop",
	"chain post {",
	"type nat hook postrouting priority srcnat; policy accept;",
	"oifname != \"mveth0\" iifname \"mveth0\" masquerade",
};

static void test_install_list_remove(void **state)
{
	struct nft_sandbox s = sandbox("t1");
	struct moat_error e = { 0 };

	assert_int_equal(nft_install(&s, &e), 0);
	char *out = run("nft list table inet moat_t1");
	/* Every expected line, in this order, and no other rule line. */
	const char *pos = out;
	for (size_t i = 0; i < ARRAY_SIZE(expected_lines); i++) {
		const char *at = strstr(pos, expected_lines[i]);
		if (!at)
			fail_msg("missing or out of order: %s\n%s", expected_lines[i], out);
		pos = at + strlen(expected_lines[i]);
	}
	int rules = 0;
	for (const char *l = out; (l = strstr(l, "\n\t\t")); l++)
		rules += strncmp(l + 3, "type", 4) && strncmp(l + 3, "flags", 5) &&
			 strncmp(l + 3, "elements", 8) && strncmp(l + 3, "packets", 7);
	assert_int_equal(rules, 19 + 5 + 1);
	free(out);

	struct nft_table_info *t = NULL;
	size_t n = 0;
	assert_int_equal(nft_list_tables(&t, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(t[0].id, "t1");
	assert_int_equal(t[0].owner, 4242);
	assert_string_equal(t[0].profile, "github");
	assert_string_equal(t[0].ifname, "mveth0");
	free(t);

	struct nft_counter *c = NULL;
	assert_int_equal(nft_counters("t1", &c, &n, &e), 0);
	static const char *const names[] = { "drop_port", "drop_udp", "drop_icmp", "drop_host",
					     "drop_other", "drop_fwd" };
	assert_int_equal(n, ARRAY_SIZE(names));
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		bool found = false;
		for (size_t j = 0; j < n; j++)
			found |= strcmp(c[j].name, names[i]) == 0 && c[j].packets == 0;
		assert_true(found);
	}
	free(c);

	assert_int_equal(nft_remove("t1", &e), 0);
	assert_false(table_exists("t1"));
	assert_int_equal(nft_remove("t1", &e), 0);
	assert_int_equal(nft_counters("t1", &c, &n, &e), -ENOENT);
}

static void test_tcp_only_has_no_udp_objects(void **state)
{
	struct nft_sandbox s = sandbox("t2");
	struct moat_error e = { 0 };
	s.udp = false;
	assert_int_equal(nft_install(&s, &e), 0);
	char *out = run("nft list table inet moat_t2");
	assert_null(strstr(out, "udp_ports"));
	assert_null(strstr(out, "learned"));
	assert_null(strstr(out, "chain post"));
	assert_non_null(strstr(out, "iifname \"mveth0\" counter name \"drop_fwd\" drop"));
	free(out);
	assert_int_equal(nft_remove("t2", &e), 0);
}

struct bad_case {
	const char *name;
	struct port_range r[3];
	size_t n;
	const char *id, *ifname;
	int ret;
	const char *msg;
};

static void test_bad_input(void **state)
{
	static const struct bad_case cases[] = {
		{ "lo > hi", { { 80, 80 }, { 90, 85 } }, 2, "bad1", "mveth0", -EINVAL,
		  "set tcp_ports element 1 (90-85)" },
		{ "port 0", { { 0, 10 } }, 1, "bad2", "mveth0", -EINVAL, "set tcp_ports element 0" },
		{ "overlap", { { 80, 90 }, { 85, 95 } }, 2, "bad3", "mveth0", -EINVAL,
		  "not sorted and merged" },
		{ "unsorted", { { 443, 443 }, { 80, 80 } }, 2, "bad4", "mveth0", -EINVAL,
		  "element 1 (80-80)" },
		{ "bad id", { { 80, 80 } }, 1, "Bad_id", "mveth0", -EINVAL, "bad sandbox id" },
		{ "long id", { { 80, 80 } }, 1, "abcdefghijklmnopq", "mveth0", -EINVAL,
		  "bad sandbox id" },
		{ "long ifname", { { 80, 80 } }, 1, "bad5", "abcdefghijklmnop", -EINVAL,
		  "bad interface name" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct bad_case *c = &cases[i];
		struct port_range r[3];
		memcpy(r, c->r, sizeof(r));
		struct port_set ps = { r, c->n };
		struct nft_sandbox s = sandbox(c->id);
		struct moat_error e = { 0 };
		s.tcp_ports = &ps;
		s.host_ifname = c->ifname;
		print_message("%s\n", c->name);
		assert_int_equal(nft_install(&s, &e), c->ret);
		if (!strstr(e.msg, c->msg))
			fail_msg("%s: \"%s\" lacks \"%s\"", c->name, e.msg, c->msg);
	}
	struct nft_table_info *t = NULL;
	size_t n = 9;
	struct moat_error e = { 0 };
	assert_int_equal(nft_list_tables(&t, &n, &e), 0);
	assert_int_equal(n, 0);
	free(t);
}

static void test_twice_names_the_table(void **state)
{
	struct nft_sandbox s = sandbox("dup");
	struct moat_error e = { 0 };
	assert_int_equal(nft_install(&s, &e), 0);
	assert_int_equal(nft_install(&s, &e), -EEXIST);
	assert_string_equal(e.msg, "nftables: add table inet moat_dup: File exists");
	/* The first table is untouched. */
	char *out = run("nft list table inet moat_dup | grep -c 'tcp dport @tcp_ports'");
	assert_string_equal(out, "2\n");
	free(out);
	assert_int_equal(nft_remove("dup", &e), 0);
}

/* A refusal in the middle of a batch names that message and undoes the
 * table created before it in the same batch. */
static void test_kernel_refusal_is_atomic(void **state)
{
	_cleanup_batch_ struct nft_batch *b = NULL;
	struct moat_error e = { 0 };
	assert_int_equal(nft_batch_new(&b), 0);

	struct nftnl_table *t = nftnl_table_alloc();
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, "moat_half");
	struct nlmsghdr *nlh = nft_batch_msg(b, NFT_MSG_NEWTABLE, NLM_F_CREATE, 512);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nft_batch_msg_end(b, nlh, "add table inet moat_half");
	nftnl_table_free(t);

	static const char *const types[] = { "filter", "nosuchtype", "filter" };
	for (int i = 0; i < 3; i++) {
		struct nftnl_chain *ch = nftnl_chain_alloc();
		char name[8];
		snprintf(name, sizeof(name), "c%d", i);
		nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
		nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, "moat_half");
		nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, name);
		nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, types[i]);
		nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, NF_INET_FORWARD);
		nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, 0);
		nlh = nft_batch_msg(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, 512);
		nftnl_chain_nlmsg_build_payload(nlh, ch);
		nft_batch_msg_end(b, nlh, "add chain inet moat_half %s", name);
		nftnl_chain_free(ch);
	}
	assert_int_equal(nft_batch_count(b), 4);
	int ret = nft_batch_commit(b, 0, &e);
	assert_true(ret < 0);
	print_message("kernel said: %s\n", e.msg);
	assert_non_null(strstr(e.msg, "add chain inet moat_half c1: "));
	assert_false(table_exists("half"));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* 1 .. 1000 ranges install; the time should not grow with them (a set). */
static void test_port_set_sizes(void **state)
{
	static const size_t sizes[] = { 1, 10, 100, 1000 };
	enum { RUNS = 50 };
	for (size_t k = 0; k < ARRAY_SIZE(sizes); k++) {
		size_t n = sizes[k];
		struct port_range *r = calloc(n, sizeof(*r));
		for (size_t i = 0; i < n; i++)
			r[i].lo = r[i].hi = (uint16_t)(2000 + 3 * i);
		r[n - 1].hi = (uint16_t)(r[n - 1].lo + 1);
		struct port_set ps = { r, n };
		struct nft_sandbox s = sandbox("size");
		struct moat_error e = { 0 };
		uint64_t t[RUNS];
		s.tcp_ports = &ps;
		for (int i = 0; i < RUNS; i++) {
			uint64_t t0 = moat_now_ns();
			if (nft_install(&s, &e) < 0)
				fail_msg("%zu ranges: %s", n, e.msg);
			t[i] = moat_now_ns() - t0;
			if (i == 0) {
				char *out = run("nft list set inet moat_size tcp_ports");
				char want[32];
				snprintf(want, sizeof(want), "%u-%u", r[n - 1].lo, r[n - 1].hi);
				assert_non_null(strstr(out, want));
				assert_non_null(strstr(out, n > 1 ? "2000, 2003" : "2000-2001"));
				free(out);
			}
			assert_int_equal(nft_remove("size", &e), 0);
		}
		qsort(t, RUNS, sizeof(t[0]), cmp_u64);
		print_message("nft_install with %4zu port ranges: median %.3f ms (min %.3f, max %.3f)\n",
			      n, t[RUNS / 2] / 1e6, t[0] / 1e6, t[RUNS - 1] / 1e6);
		assert_true(t[RUNS / 2] < 200 * 1000000ull);
		free(r);
	}
}

static void test_learned_add(void **state)
{
	struct nft_sandbox s = sandbox("ln");
	struct moat_error e = { 0 };
	const uint8_t a4[4] = { 198, 18, 0, 9 };
	struct in6_addr a6;
	inet_pton(AF_INET6, "2001:2::9", &a6);
	assert_int_equal(nft_install(&s, &e), 0);
	assert_int_equal(nft_learned_add("ln", AF_INET, a4, 30, &e), 0);
	assert_int_equal(nft_learned_add("ln", AF_INET, a4, 30, &e), 0);
	assert_int_equal(nft_learned_add("ln", AF_INET6, &a6, 60, &e), 0);
	char *out = run("nft list set inet moat_ln learned4; nft list set inet moat_ln learned6");
	assert_non_null(strstr(out, "198.18.0.9 timeout 30s"));
	assert_non_null(strstr(out, "2001:2::9 timeout 1m"));
	free(out);
	assert_int_equal(nft_learned_add("nosuch", AF_INET, a4, 30, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "add element inet moat_nosuch learned4 { 198.18.0.9"));
	assert_int_equal(nft_learned_add("ln", AF_INET, a4, 0, &e), -EINVAL);
	assert_int_equal(nft_remove("ln", &e), 0);
}

struct seen {
	int port_events;
	uint16_t dport;
};

static void on_pkt(void *arg, const struct nflog_pkt *p)
{
	struct seen *s = arg;
	if (strcmp(p->prefix, "moat drop port") == 0 && p->proto == IPPROTO_TCP) {
		s->port_events++;
		s->dport = p->dport;
	}
}

static uint64_t counter(const char *id, const char *name)
{
	struct nft_counter *c = NULL;
	size_t n = 0;
	struct moat_error e = { 0 };
	uint64_t v = UINT64_MAX;
	assert_int_equal(nft_counters(id, &c, &n, &e), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(c[i].name, name) == 0)
			v = c[i].packets;
	free(c);
	return v;
}

/* The sandbox side: a TCP connect to a port that is not allowed, then a
 * ping.  Exit status: bit 0 set if the connect got through or was refused
 * (it must time out), bit 1 if the ping got an answer. */
static int sandbox_child(int ready, int go)
{
	char c;
	if (unshare(CLONE_NEWNET) < 0 || write(ready, "r", 1) != 1 || read(go, &c, 1) != 1)
		return 100;
	if (system("ip link set lo up && ip addr add 198.18.99.2/24 dev mc0 && "
		   "ip link set mc0 up && ip route add default via 198.18.99.1") != 0)
		return 101;
	int status = 0;
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(9) };
	inet_pton(AF_INET, "198.19.0.5", &dst.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == 0 || errno != EINPROGRESS)
		status |= 1;
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, 300) != 0)
		status |= 1;
	close(fd);

	int icmp = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	struct icmphdr echo = { .type = ICMP_ECHO, .un.echo.id = htons(7), .un.echo.sequence = 1 };
	echo.checksum = (uint16_t)~htons(ICMP_ECHO << 8 | 0);   /* id 7 and seq 1 below */
	uint32_t sum = (ICMP_ECHO << 8) + 7 + 1;
	echo.checksum = htons((uint16_t)~(sum + (sum >> 16)));
	echo.un.echo.sequence = htons(1);
	dst.sin_port = 0;
	sendto(icmp, &echo, sizeof(echo), 0, (struct sockaddr *)&dst, sizeof(dst));
	pfd = (struct pollfd){ .fd = icmp, .events = POLLIN };
	if (poll(&pfd, 1, 300) > 0)
		status |= 2;
	close(icmp);
	return status;
}

static void test_traffic_is_dropped_counted_logged(void **state)
{
	int ready[2], go[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(sandbox_child(ready[1], go[0]));
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);

	struct nflog *log = NULL;
	uint16_t group = 0;
	struct moat_error e = { 0 };
	assert_int_equal(nflog_open(100, &log, &group, &e), 0);
	assert_true(group >= 100);
	struct port_range r[] = { { 443, 443 } };
	struct port_set ps = { r, 1 };
	struct nft_sandbox s = sandbox("trf");
	s.host_ifname = "mt0";
	s.tcp_ports = &ps;
	s.nflog_group = group;
	s.udp = false;
	char *out = run("ip link set lo up && ip link add mt0 type veth peer name mc0 netns %d && "
			"ip addr add 198.18.99.1/24 dev mt0 && ip link set mt0 up && echo ok",
			(int)pid);
	assert_string_equal(out, "ok\n");
	free(out);
	assert_int_equal(nft_install(&s, &e), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_true(counter("trf", "drop_port") >= 1);
	assert_true(counter("trf", "drop_icmp") >= 1);
	assert_int_equal(counter("trf", "drop_host"), 0);

	struct seen seen = { 0 };
	uint64_t deadline = moat_now_ms() + 1000;
	while (!seen.port_events && moat_now_ms() < deadline) {
		struct pollfd pfd = { .fd = nflog_fd(log), .events = POLLIN };
		poll(&pfd, 1, 100);
		assert_true(nflog_dispatch(log, on_pkt, &seen) >= 0);
	}
	assert_true(seen.port_events >= 1);
	assert_int_equal(seen.dport, 9);

	/* A second reader cannot take the same group: it gets the next one. */
	struct nflog *log2 = NULL;
	uint16_t group2 = 0;
	assert_int_equal(nflog_open(group, &log2, &group2, &e), 0);
	assert_int_equal(group2, group + 1);
	nflog_close(log2);
	nflog_close(log);
	assert_int_equal(nft_remove("trf", &e), 0);
	free(run("ip link del mt0 2>/dev/null"));
	close(ready[0]); close(ready[1]); close(go[0]); close(go[1]);
}

int main(void)
{
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_nft: needs root and a new network namespace; skipped\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install_list_remove),
		cmocka_unit_test(test_tcp_only_has_no_udp_objects),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_twice_names_the_table),
		cmocka_unit_test(test_kernel_refusal_is_atomic),
		cmocka_unit_test(test_learned_add),
		cmocka_unit_test(test_port_set_sizes),
		cmocka_unit_test(test_traffic_is_dropped_counted_logged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

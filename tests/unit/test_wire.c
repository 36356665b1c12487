/* veth wiring and TPROXY policy routing against the real kernel.  Needs root:
 * the process first moves into a fresh netns (the "enforcement" netns), and
 * every "sandbox" netns is made by a thread that unshares and exits, kept
 * alive by its fd.  What moat did is inspected with the ip tool (nsenter for
 * the sandbox side) and checked with real TCP traffic across the veth. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <linux/rtnetlink.h>

#include "common/moat.h"
#include "enforcer/netlink.h"
#include "enforcer/wire.h"

/* ---- helpers ---- */

static void *unshare_thread(void *arg)
{
	int *fd = arg;
	if (unshare(CLONE_NEWNET) == 0)
		*fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	return NULL;
}

/* A new, empty netns (only lo, down), alive as long as the fd is open. */
static int sandbox_new(void)
{
	int fd = -1;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, unshare_thread, &fd), 0);
	pthread_join(t, NULL);
	assert_true(fd >= 0);
	return fd;
}

/* Output of a shell command (run in this process's netns), malloc'ed. */
static char *sh_out(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	size_t k;
	while (n < cap - 1 && (k = fread(buf + n, 1, cap - 1 - n, p)) > 0)
		n += k;
	buf[n] = '\0';
	pclose(p);
	return buf;
}

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define NSENTER "nsenter --net=/proc/%d/fd/%d "

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static void assert_lacks(const char *hay, const char *needle)
{
	if (strstr(hay, needle))
		fail_msg("did not expect \"%s\" in:\n%s", needle, hay);
}

static size_t count_moat_links(void)
{
	struct net_link_info *v = NULL;
	size_t n = 99;
	struct moat_error e = { 0 };
	assert_int_equal(net_list_moat_links(&v, &n, &e), 0);
	free(v);
	return n;
}

static const char *ip4(struct in_addr a, char *buf)
{
	return inet_ntop(AF_INET, &a, buf, INET6_ADDRSTRLEN);
}

static const char *ip6(struct in6_addr a, char *buf)
{
	return inet_ntop(AF_INET6, &a, buf, INET6_ADDRSTRLEN);
}

static int wire(int sb, const char *id, struct sandbox_link *l)
{
	struct net_pool pool;
	net_pool_default(&pool);
	struct moat_error e = { 0 };
	int r = net_wire(sb, id, &pool, l, &e);
	if (r < 0)
		fail_msg("net_wire %s: %s", id, e.msg);
	return r;
}

static void unwire(const char *ifname)
{
	struct moat_error e = { 0 };
	if (net_unwire(ifname, &e) < 0)
		fail_msg("net_unwire %s: %s", ifname, e.msg);
}

/* ---- real traffic: connect from inside the sandbox to the host end ---- */

struct conn {
	int netns;
	struct sockaddr_storage to;
	socklen_t tolen;
	int err;
};

static void *connect_thread(void *arg)
{
	struct conn *c = arg;
	c->err = -1;
	if (setns(c->netns, CLONE_NEWNET) < 0) {
		c->err = errno;
		return NULL;
	}
	int s = socket(c->to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0) {
		c->err = errno;
		return NULL;
	}
	if (connect(s, (struct sockaddr *)&c->to, c->tolen) < 0 && errno != EINPROGRESS) {
		c->err = errno;
		close(s);
		return NULL;
	}
	struct pollfd p = { .fd = s, .events = POLLOUT };
	if (poll(&p, 1, 3000) != 1) {
		c->err = ETIMEDOUT;
	} else {
		socklen_t l = sizeof(c->err);
		getsockopt(s, SOL_SOCKET, SO_ERROR, &c->err, &l);
	}
	close(s);
	return NULL;
}

/* Listens on addr in this netns, connects from the sandbox, checks the peer
 * address seen here is the sandbox's. */
static void check_tcp(int sb, int family, const void *host, const void *sbaddr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, host, 4);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, host, 16);
		sl = sizeof(*a);
	}
	int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(l >= 0);
	if (bind(l, (struct sockaddr *)&ss, sl) < 0)
		fail_msg("bind: %s", strerror(errno));
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&ss, &sl), 0);

	struct conn c = { .netns = sb, .to = ss, .tolen = sl };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, connect_thread, &c), 0);
	pthread_join(t, NULL);
	if (c.err != 0)
		fail_msg("connect from the sandbox (family %d): %s", family, strerror(c.err));
	struct pollfd p = { .fd = l, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 1000), 1);
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	int a = accept(l, (struct sockaddr *)&peer, &pl);
	assert_true(a >= 0);
	if (family == AF_INET)
		assert_memory_equal(&((struct sockaddr_in *)&peer)->sin_addr, sbaddr, 4);
	else
		assert_memory_equal(&((struct sockaddr_in6 *)&peer)->sin6_addr, sbaddr, 16);
	close(a);
	close(l);
}

/* ---- pool parsing ---- */

static void test_pool_parse(void **state)
{
	static const struct {
		const char *v4, *v6;
		int ret;
		const char *want4, *want6;
		unsigned p4, p6;
	} cases[] = {
		{ NULL, NULL, 0, "10.231.0.0", "fd6d:6f61:7400::", 16, 48 },
		{ "10.9.0.0/24", NULL, 0, "10.9.0.0", "fd6d:6f61:7400::", 24, 48 },
		{ "192.168.7.4/30", "fd00:1:2:3::/64", 0, "192.168.7.4", "fd00:1:2:3::", 30, 64 },
		{ "10.9.0.0/31", NULL, -EINVAL, NULL, NULL, 0, 0 },               /* no room for a /30 */
		{ "10.9.0.1/24", NULL, -EINVAL, NULL, NULL, 0, 0 },               /* host bits */
		{ "10.9.0.0", NULL, -EINVAL, NULL, NULL, 0, 0 },                  /* no prefix */
		{ "10.9.0/24", NULL, -EINVAL, NULL, NULL, 0, 0 },
		{ "10.9.0.0/", NULL, -EINVAL, NULL, NULL, 0, 0 },
		{ "10.9.0.0/8x", NULL, -EINVAL, NULL, NULL, 0, 0 },
		{ "fd00::/48", NULL, -EINVAL, NULL, NULL, 0, 0 },                 /* v6 where v4 goes */
		{ NULL, "fd00::/65", -EINVAL, NULL, NULL, 0, 0 },
		{ NULL, "fd00::1/64", -EINVAL, NULL, NULL, 0, 0 },
		{ NULL, "fd00:0:0:1::/48", -EINVAL, NULL, NULL, 0, 0 },
		{ NULL, "10.0.0.0/8", -EINVAL, NULL, NULL, 0, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct net_pool p;
		memset(&p, 0xaa, sizeof(p));
		struct moat_error e = { 0 };
		int r = net_pool_parse(cases[i].v4, cases[i].v6, &p, &e);
		if (r != cases[i].ret)
			fail_msg("case %zu (%s, %s): got %d (%s)", i, cases[i].v4, cases[i].v6,
				 r, e.msg);
		if (r < 0) {
			assert_true(e.msg[0] != '\0');
			continue;
		}
		char b[INET6_ADDRSTRLEN];
		assert_string_equal(ip4(p.v4, b), cases[i].want4);
		assert_string_equal(ip6(p.v6, b), cases[i].want6);
		assert_int_equal(p.v4_prefix, cases[i].p4);
		assert_int_equal(p.v6_prefix, cases[i].p6);
	}
}

/* ---- the netlink layer itself ---- */

static void test_nl_ext_ack_and_overflow(void **state)
{
	struct moat_error e = { 0 };
	struct nl_sock *s = nl_open(-1, &e);
	assert_non_null(s);

	/* a gateway that is not on any link: the kernel explains why */
	struct nl_msg m;
	struct rtmsg *rtm = nl_msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_type = RTN_UNICAST;
	struct in_addr gw;
	inet_pton(AF_INET, "198.18.0.1", &gw);
	nl_put(&m, RTA_GATEWAY, 4, &gw);
	int r = nl_request(s, &m, &e);
	assert_true(r < 0);
	assert_int_equal(e.code, -r);
	assert_contains(e.msg, strerror(-r));
	assert_contains(e.msg, "(kernel: ");

	/* attributes past the buffer: refused before sending */
	nl_msg_init(&m, RTM_NEWLINK, 0, sizeof(struct ifinfomsg));
	char big[256] = { 0 };
	for (int i = 0; i < 20; i++)
		nl_put(&m, IFLA_IFALIAS, sizeof(big), big);
	assert_true(m.overflow);
	memset(&e, 0, sizeof(e));
	assert_int_equal(nl_request(s, &m, &e), -EMSGSIZE);
	assert_int_equal(e.code, EMSGSIZE);

	/* lookups */
	assert_int_equal(nl_link_index(s, "lo", &e), 1);
	assert_int_equal(nl_link_index(s, "nonexistent0", &e), -ENODEV);
	nl_close(s);
}

/* ---- wiring ---- */

static void test_wire_basic(void **state)
{
	int sb = sandbox_new();
	struct sandbox_link l;
	assert_int_equal(wire(sb, "t1", &l), 0);
	char b[INET6_ADDRSTRLEN];
	int pid = getpid();

	assert_string_equal(l.host_ifname, "moat-t1");
	assert_string_equal(ip4(l.host4, b), "10.231.0.1");
	assert_string_equal(ip4(l.sb4, b), "10.231.0.2");
	assert_string_equal(ip6(l.host6, b), "fd6d:6f61:7400::1");
	assert_string_equal(ip6(l.sb6, b), "fd6d:6f61:7400::2");
	assert_int_equal(l.prefix4, 30);
	assert_int_equal(l.prefix6, 64);

	/* host side */
	char *o = sh_out("ip -o link show dev moat-t1 2>&1");
	assert_contains(o, "moat-t1@if");
	assert_contains(o, ",UP");
	assert_contains(o, "state UP");
	free(o);
	char want[64];
	snprintf(want, sizeof(want), "%d: moat-t1", l.host_ifindex);
	o = sh_out("ip -o link show dev moat-t1");
	assert_contains(o, want);
	free(o);
	o = sh_out("ip -o addr show dev moat-t1");
	assert_contains(o, "inet 10.231.0.1/30");
	assert_contains(o, "inet6 fd6d:6f61:7400::1/64");
	assert_lacks(o, "tentative");
	free(o);
	static const char *const sysctls[][2] = {
		{ "/proc/sys/net/ipv4/conf/moat-t1/rp_filter", "0\n" },
		{ "/proc/sys/net/ipv4/conf/moat-t1/accept_redirects", "0\n" },
		{ "/proc/sys/net/ipv6/conf/moat-t1/accept_ra", "0\n" },
		{ "/proc/sys/net/ipv6/conf/moat-t1/autoconf", "0\n" },
		{ "/proc/sys/net/ipv6/conf/moat-t1/accept_redirects", "0\n" },
		{ "/proc/sys/net/ipv6/conf/moat-t1/accept_dad", "0\n" },
		{ "/proc/sys/net/ipv4/conf/moat-t1/forwarding", "0\n" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(sysctls); i++) {
		o = sh_out("cat %s", sysctls[i][0]);
		if (strcmp(o, sysctls[i][1]) != 0)
			fail_msg("%s = %s", sysctls[i][0], o);
		free(o);
	}

	/* sandbox side */
	o = sh_out(NSENTER "ip -o link show", pid, sb);
	assert_contains(o, "eth0@if");
	assert_contains(o, "lo: <LOOPBACK,UP");
	assert_lacks(o, "moat-");
	free(o);
	o = sh_out(NSENTER "ip -o addr show dev eth0", pid, sb);
	assert_contains(o, "inet 10.231.0.2/30");
	assert_contains(o, "inet6 fd6d:6f61:7400::2/64");
	free(o);
	o = sh_out(NSENTER "ip -o addr show dev lo", pid, sb);
	assert_contains(o, "inet 127.0.0.1/8");
	free(o);
	o = sh_out(NSENTER "ip route show default", pid, sb);
	assert_contains(o, "default via 10.231.0.1 dev eth0");
	free(o);
	o = sh_out(NSENTER "ip -6 route show default", pid, sb);
	assert_contains(o, "default via fd6d:6f61:7400::1 dev eth0");
	free(o);

	/* real traffic both ways round the veth, v4 and v6 (nodad: no wait) */
	check_tcp(sb, AF_INET, &l.host4, &l.sb4);
	check_tcp(sb, AF_INET6, &l.host6, &l.sb6);

	/* listings */
	struct net_link_info *li = NULL;
	size_t n = 0;
	struct moat_error e = { 0 };
	assert_int_equal(net_list_moat_links(&li, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(li[0].ifname, "moat-t1");
	assert_int_equal(li[0].ifindex, l.host_ifindex);
	assert_memory_equal(&li[0].addr4, &l.host4, 4);
	assert_memory_equal(&li[0].addr6, &l.host6, 16);
	free(li);
	struct sockaddr_storage *as = NULL;
	assert_int_equal(net_local_addrs(&as, &n, &e), 0);
	bool have4 = false, have6 = false;
	for (size_t i = 0; i < n; i++) {
		if (as[i].ss_family == AF_INET &&
		    !memcmp(&((struct sockaddr_in *)&as[i])->sin_addr, &l.host4, 4))
			have4 = true;
		if (as[i].ss_family == AF_INET6 &&
		    !memcmp(&((struct sockaddr_in6 *)&as[i])->sin6_addr, &l.host6, 16))
			have6 = true;
		assert_false(as[i].ss_family == AF_INET &&
			     !memcmp(&((struct sockaddr_in *)&as[i])->sin_addr, &l.sb4, 4));
	}
	free(as);
	assert_true(have4);
	assert_true(have6);

	/* unwire removes both ends */
	unwire("moat-t1");
	assert_int_not_equal(sh("ip link show dev moat-t1 >/dev/null 2>&1"), 0);
	o = sh_out(NSENTER "ip -o link show", pid, sb);
	assert_lacks(o, "eth0");
	assert_contains(o, "lo:");
	free(o);
	assert_int_equal(count_moat_links(), 0);
	/* a second unwire of the same name is fine */
	unwire("moat-t1");
	close(sb);
}

static void test_pool_skips_routed_subnet(void **state)
{
	assert_int_equal(sh("ip route add blackhole 10.231.0.0/30 && "
			    "ip -6 route add blackhole fd6d:6f61:7400::/64 && "
			    "ip -6 route add blackhole fd6d:6f61:7400:1::/64 table 77"), 0);
	int sb = sandbox_new();
	struct sandbox_link l;
	int r = wire(sb, "skip", &l);
	sh("ip route del blackhole 10.231.0.0/30; ip -6 route del blackhole fd6d:6f61:7400::/64;"
	   "ip -6 route del blackhole fd6d:6f61:7400:1::/64 table 77");
	assert_int_equal(r, 0);
	char b[INET6_ADDRSTRLEN];
	assert_string_equal(ip4(l.host4, b), "10.231.0.5");
	assert_string_equal(ip4(l.sb4, b), "10.231.0.6");
	/* the /64 routed in another table counts too */
	assert_string_equal(ip6(l.host6, b), "fd6d:6f61:7400:2::1");
	check_tcp(sb, AF_INET, &l.host4, &l.sb4);
	check_tcp(sb, AF_INET6, &l.host6, &l.sb6);
	unwire(l.host_ifname);
	close(sb);
}

struct par {
	int sb;
	char id[9];
	struct sandbox_link l;
	int r;
	struct moat_error e;
};

static void *wire_thread(void *arg)
{
	struct par *p = arg;
	struct net_pool pool;
	net_pool_default(&pool);
	p->r = net_wire(p->sb, p->id, &pool, &p->l, &p->e);
	return NULL;
}

static void test_links_get_distinct_subnets(void **state)
{
	enum { N = 6 };
	struct par p[N];
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		p[i].sb = sandbox_new();
		snprintf(p[i].id, sizeof(p[i].id), "par%d", i);
	}
	/* concurrently, so the lock is what keeps them apart */
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&t[i], NULL, wire_thread, &p[i]), 0);
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		if (p[i].r != 0)
			fail_msg("%s: %s", p[i].id, p[i].e.msg);
		for (int j = 0; j < i; j++) {
			assert_int_not_equal(p[i].l.host4.s_addr, p[j].l.host4.s_addr);
			assert_memory_not_equal(&p[i].l.host6, &p[j].l.host6, 16);
		}
		/* all within the first N links of the pool */
		uint32_t h = ntohl(p[i].l.host4.s_addr);
		assert_true(h >= 0x0ae70001u && h < 0x0ae70001u + 4 * N);
	}
	assert_int_equal(count_moat_links(), N);
	for (int i = 0; i < N; i++) {
		check_tcp(p[i].sb, AF_INET, &p[i].l.host4, &p[i].l.sb4);
		check_tcp(p[i].sb, AF_INET6, &p[i].l.host6, &p[i].l.sb6);
	}
	/* a sandbox cannot reach another sandbox's host end address through its
	 * own link's subnet: each link is its own /30 */
	for (int i = 0; i < N; i++) {
		unwire(p[i].l.host_ifname);
		close(p[i].sb);
	}
	assert_int_equal(count_moat_links(), 0);
}

static void test_failures_undo(void **state)
{
	int sb = sandbox_new();
	int closed = 1000;      /* an fd number surely not open */
	assert_int_equal(fcntl(closed, F_GETFD), -1);
	int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(self >= 0);
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(devnull >= 0);
	struct net_pool full;
	net_pool_default(&full);
	assert_int_equal(net_pool_parse("10.231.200.0/30", NULL, &full, NULL), 0);
	struct net_pool dflt;
	net_pool_default(&dflt);
	assert_int_equal(sh("ip route add blackhole 10.231.200.0/30"), 0);

	static const struct {
		const char *name;
		int fd;        /* 0: the live sandbox, 1: closed, 2: /dev/null, 3: -1, 4: own */
		const char *id;
		bool full_pool;
		int ret;
		const char *msg;
	} cases[] = {
		{ "id too long", 0, "abcdefghi", false, -EINVAL, "must be 1 to 8" },
		{ "empty id", 0, "", false, -EINVAL, "must be 1 to 8" },
		{ "slash in id", 0, "a/b", false, -EINVAL, "only letters" },
		{ "closed netns fd", 1, "c1", false, -EBADF, "sandbox netns" },
		{ "not a netns", 2, "c2", false, -EINVAL, "sandbox netns" },
		{ "negative fd", 3, "c3", false, -EBADF, "sandbox netns" },
		{ "our own netns", 4, "c5", false, -EINVAL, "is the enforcement netns itself" },
		{ "pool exhausted after veth made", 0, "c4", true, -EADDRINUSE,
		  "no free /30 left in the pool 10.231.200.0/30" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int fd = cases[i].fd == 0 ? sb : cases[i].fd == 1 ? closed :
			 cases[i].fd == 2 ? devnull : cases[i].fd == 4 ? self : -1;
		struct sandbox_link l;
		struct moat_error e = { 0 };
		int r = net_wire(fd, cases[i].id, cases[i].full_pool ? &full : &dflt, &l, &e);
		if (r != cases[i].ret || !strstr(e.msg, cases[i].msg))
			fail_msg("%s: got %d \"%s\"", cases[i].name, r, e.msg);
		assert_int_equal(e.code, -r);
		assert_int_equal(count_moat_links(), 0);
		char *o = sh_out(NSENTER "ip -o link show", getpid(), sb);
		assert_lacks(o, "eth0");
		free(o);
	}
	sh("ip route del blackhole 10.231.200.0/30");

	/* a name already taken: an error, and the existing link is left alone */
	struct sandbox_link l1, l2;
	assert_int_equal(wire(sb, "dup", &l1), 0);
	int sb2 = sandbox_new();
	struct moat_error e = { 0 };
	assert_int_equal(net_wire(sb2, "dup", &dflt, &l2, &e), -EEXIST);
	assert_contains(e.msg, "create veth moat-dup");
	assert_contains(e.msg, "File exists");
	assert_int_equal(count_moat_links(), 1);
	check_tcp(sb, AF_INET, &l1.host4, &l1.sb4);
	unwire("moat-dup");

	/* the sandbox already has an eth0: clean error, nothing left behind */
	assert_int_equal(sh(NSENTER "ip link add eth0 type veth peer name eth1", getpid(), sb2), 0);
	memset(&e, 0, sizeof(e));
	int r = net_wire(sb2, "hasit", &dflt, &l2, &e);
	if (r == 0)
		net_unwire(l2.host_ifname, NULL);
	assert_int_equal(r, -EEXIST);
	assert_contains(e.msg, "create veth moat-hasit");
	assert_int_equal(count_moat_links(), 0);

	close(sb2);
	close(devnull);
	close(self);
	close(sb);
}

/* ---- TPROXY policy routing ---- */

static void test_tproxy_routing(void **state)
{
	struct moat_error e = { 0 };
	assert_int_equal(sh("ip link set lo down"), 0);
	for (int i = 0; i < 2; i++)
		if (net_tproxy_routing_add(MOAT_FWMARK, MOAT_ROUTE_TABLE, &e) < 0)
			fail_msg("add #%d: %s", i, e.msg);
	char *o = sh_out("ip -o link show dev lo");
	assert_contains(o, "<LOOPBACK,UP");
	free(o);
	o = sh_out("ip rule show");
	assert_contains(o, "1000:\tfrom all fwmark 0x4d4f0001 lookup 19791");
	free(o);
	o = sh_out("ip -6 rule show");
	assert_contains(o, "1000:\tfrom all fwmark 0x4d4f0001 lookup 19791");
	free(o);
	o = sh_out("ip rule show | grep -c 19791");
	assert_string_equal(o, "1\n");          /* idempotent: not added twice */
	free(o);
	o = sh_out("ip route show table 19791");
	assert_contains(o, "local default dev lo");
	free(o);
	o = sh_out("ip -6 route show table 19791");
	assert_contains(o, "local default dev lo");
	free(o);

	/* lo down loses the v6 local route; adding again brings it back */
	assert_int_equal(sh("ip link set lo down"), 0);
	o = sh_out("ip -6 route show table 19791");
	assert_lacks(o, "local default dev lo");
	free(o);
	assert_int_equal(net_tproxy_routing_add(MOAT_FWMARK, MOAT_ROUTE_TABLE, &e), 0);
	o = sh_out("ip -6 route show table 19791");
	assert_contains(o, "local default dev lo");
	free(o);
	o = sh_out("ip route show table 19791");
	assert_contains(o, "local default dev lo");
	free(o);

	/* a table below 256 goes in the header byte as well */
	assert_int_equal(net_tproxy_routing_add(0x77, 100, &e), 0);
	o = sh_out("ip rule show");
	assert_contains(o, "fwmark 0x77 lookup 100");
	free(o);
	assert_int_equal(net_tproxy_routing_del(0x77, 100, &e), 0);

	for (int i = 0; i < 2; i++)
		if (net_tproxy_routing_del(MOAT_FWMARK, MOAT_ROUTE_TABLE, &e) < 0)
			fail_msg("del #%d: %s", i, e.msg);
	o = sh_out("ip rule show; ip -6 rule show; ip route show table all; "
		   "ip -6 route show table all");
	assert_lacks(o, "19791");
	assert_lacks(o, "fwmark");
	assert_lacks(o, "table 100");
	free(o);
}

/* ---- cost: net_wire + net_unwire ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_wire_cost(void **state)
{
	enum { RUNS = 100 };
	static uint64_t wire_ns[RUNS], total_ns[RUNS];
	int sb = sandbox_new();
	for (int i = 0; i < RUNS; i++) {
		struct sandbox_link l;
		uint64_t t0 = moat_now_ns();
		assert_int_equal(wire(sb, "bench", &l), 0);
		uint64_t t1 = moat_now_ns();
		unwire(l.host_ifname);
		uint64_t t2 = moat_now_ns();
		wire_ns[i] = t1 - t0;
		total_ns[i] = t2 - t0;
	}
	close(sb);
	qsort(wire_ns, RUNS, sizeof(wire_ns[0]), cmp_u64);
	qsort(total_ns, RUNS, sizeof(total_ns[0]), cmp_u64);
	printf("net_wire median %.3f ms (p90 %.3f); net_wire+net_unwire median %.3f ms "
	       "(p90 %.3f, max %.3f) over %d runs\n",
	       wire_ns[RUNS / 2] / 1e6, wire_ns[RUNS * 9 / 10] / 1e6,
	       total_ns[RUNS / 2] / 1e6, total_ns[RUNS * 9 / 10] / 1e6,
	       total_ns[RUNS - 1] / 1e6, RUNS);
	/* set-up is on the critical path; deleting a veth waits for RCU grace
	 * periods in the kernel (~25 ms with `ip link del` too) */
	assert_true(wire_ns[RUNS / 2] < 20ull * 1000 * 1000);
	assert_true(total_ns[RUNS / 2] < 200ull * 1000 * 1000);
	assert_int_equal(count_moat_links(), 0);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_wire: needs root (network namespaces)\n");
		return 77;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "test_wire: unshare(CLONE_NEWNET): %s\n", strerror(errno));
		return 1;
	}
	/* New interfaces inherit these: moat must set its own values, not rely
	 * on a fresh netns's defaults. */
	if (sh("echo 1 > /proc/sys/net/ipv4/conf/default/rp_filter && "
	       "echo 1 > /proc/sys/net/ipv4/conf/default/accept_redirects && "
	       "echo 1 > /proc/sys/net/ipv6/conf/default/accept_ra && "
	       "echo 1 > /proc/sys/net/ipv6/conf/default/autoconf") != 0) {
		fprintf(stderr, "test_wire: cannot set default sysctls\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_parse),
		cmocka_unit_test(test_nl_ext_ack_and_overflow),
		cmocka_unit_test(test_wire_basic),
		cmocka_unit_test(test_pool_skips_routed_subnet),
		cmocka_unit_test(test_links_get_distinct_subnets),
		cmocka_unit_test(test_failures_undo),
		cmocka_unit_test(test_tproxy_routing),
		cmocka_unit_test(test_wire_cost),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

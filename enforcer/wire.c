/* moat — veth wiring, address pool and TPROXY policy routing over rtnetlink.
 * What each step does and why is in docs/wiring.md. */
#include "enforcer/wire.h"
#include "enforcer/netlink.h"
#include "common/moat.h"

#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#define LOOPBACK_IFINDEX 1      /* fixed by the kernel in every netns */
#define POOL_V6_MAX_LINKS 65536u

/* ---- address pool ---- */

void net_pool_default(struct net_pool *p)
{
	memset(p, 0, sizeof(*p));
	inet_pton(AF_INET, "10.231.0.0", &p->v4);
	p->v4_prefix = 16;
	inet_pton(AF_INET6, "fd6d:6f61:7400::", &p->v6);
	p->v6_prefix = 48;
}

/* Is any bit at position >= plen set in the len-byte address a? */
static bool host_bits_set(const uint8_t *a, size_t len, unsigned plen)
{
	for (size_t i = 0; i < len; i++) {
		unsigned first = (unsigned)i * 8;
		uint8_t mask = plen >= first + 8 ? 0 : plen <= first ? 0xff : 0xff >> (plen - first);
		if (a[i] & mask)
			return true;
	}
	return false;
}

static int parse_cidr(const char *s, int family, unsigned max_plen, void *addr, uint8_t *plen,
		      struct moat_error *e)
{
	const char *what = family == AF_INET ? "IPv4" : "IPv6";
	const char *slash = strchr(s, '/');
	char buf[INET6_ADDRSTRLEN];
	size_t alen = slash ? (size_t)(slash - s) : 0;
	if (!slash || alen == 0 || alen >= sizeof(buf))
		return moat_error_set(e, EINVAL, "%s pool '%s': expected ADDRESS/PREFIX", what, s);
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(family, buf, addr) != 1)
		return moat_error_set(e, EINVAL, "%s pool '%s': bad address '%s'", what, s, buf);
	unsigned long long p;
	if (moat_parse_uint(slash + 1, 0, max_plen, &p) < 0)
		return moat_error_set(e, EINVAL, "%s pool '%s': prefix length must be 0..%u",
				      what, s, max_plen);
	if (host_bits_set(addr, family == AF_INET ? 4 : 16, (unsigned)p))
		return moat_error_set(e, EINVAL, "%s pool '%s': address has bits set after /%llu",
				      what, s, p);
	*plen = (uint8_t)p;
	return 0;
}

int net_pool_parse(const char *v4cidr, const char *v6cidr, struct net_pool *p,
		   struct moat_error *e)
{
	struct net_pool n;
	net_pool_default(&n);
	int r;
	if (v4cidr && (r = parse_cidr(v4cidr, AF_INET, 30, &n.v4, &n.v4_prefix, e)) < 0)
		return r;
	if (v6cidr && (r = parse_cidr(v6cidr, AF_INET6, 64, &n.v6, &n.v6_prefix, e)) < 0)
		return r;
	*p = n;
	return 0;
}

/* ---- what is already in use: every route (all tables) and address ---- */

struct prefix {
	int family;
	uint8_t plen;
	uint8_t a[16];
};

struct prefixes {
	struct prefix *v;
	size_t n, cap;
};

static int prefixes_add(struct prefixes *ps, int family, const void *a, uint8_t plen,
			struct moat_error *e)
{
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 64;
		struct prefix *v = realloc(ps->v, cap * sizeof(*v));
		if (!v)
			return moat_error_errno(e, ENOMEM, "list routes");
		ps->v = v;
		ps->cap = cap;
	}
	struct prefix *p = &ps->v[ps->n++];
	memset(p, 0, sizeof(*p));
	p->family = family;
	p->plen = plen;
	memcpy(p->a, a, family == AF_INET ? 4 : 16);
	return 0;
}

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

static int collect_route(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct rtmsg))
		return 0;
	const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
	size_t alen = addr_len(rtm->rtm_family);
	/* default routes overlap everything and say nothing about the link */
	if (!alen || rtm->rtm_dst_len == 0 || rtm->rtm_dst_len > alen * 8)
		return 0;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*rtm)) {
		if (mnl_attr_get_type(a) == RTA_DST && mnl_attr_get_payload_len(a) == alen)
			return prefixes_add(data, rtm->rtm_family, mnl_attr_get_payload(a),
					    rtm->rtm_dst_len, e);
	}
	return 0;
}

static int collect_addr(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg))
		return 0;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	size_t alen = addr_len(ifa->ifa_family);
	if (!alen || ifa->ifa_prefixlen > alen * 8)
		return 0;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*ifa)) {
		uint16_t t = mnl_attr_get_type(a);
		if ((t == IFA_ADDRESS || t == IFA_LOCAL) && mnl_attr_get_payload_len(a) == alen) {
			int r = prefixes_add(data, ifa->ifa_family, mnl_attr_get_payload(a),
					     ifa->ifa_prefixlen, e);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* A dump interrupted by a concurrent change (NLM_F_DUMP_INTR: another sandbox being
 * wired at the same moment) is started over, this many times at most. */
#define DUMP_ATTEMPTS 50

static int collect_in_use(struct nl_sock *s, struct prefixes *ps, struct moat_error *e)
{
	int r = -EAGAIN;
	for (int attempt = 0; attempt < DUMP_ATTEMPTS && r == -EAGAIN; attempt++) {
		ps->n = 0;
		struct nl_msg m;
		struct rtmsg *rtm = nl_msg_init(&m, RTM_GETROUTE, 0, sizeof(*rtm));
		rtm->rtm_family = AF_UNSPEC;    /* every family, every table */
		r = nl_dump(s, &m, collect_route, ps, e);
		if (r < 0) {
			moat_error_prefix(e, "list routes");
			continue;
		}
		struct ifaddrmsg *ifa = nl_msg_init(&m, RTM_GETADDR, 0, sizeof(*ifa));
		ifa->ifa_family = AF_UNSPEC;
		r = nl_dump(s, &m, collect_addr, ps, e);
		if (r < 0)
			moat_error_prefix(e, "list addresses");
	}
	return r;
}

static bool prefix_overlaps(const struct prefix *p, int family, const uint8_t *a, unsigned plen)
{
	if (p->family != family)
		return false;
	unsigned n = p->plen < plen ? p->plen : plen;   /* compare the shorter prefix */
	unsigned whole = n / 8, rest = n % 8;
	if (memcmp(p->a, a, whole) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));
		if ((p->a[whole] & mask) != (a[whole] & mask))
			return false;
	}
	return true;
}

static bool in_use(const struct prefixes *ps, int family, const uint8_t *a, unsigned plen)
{
	for (size_t i = 0; i < ps->n; i++)
		if (prefix_overlaps(&ps->v[i], family, a, plen))
			return true;
	return false;
}

static int pick_subnets(const struct prefixes *ps, const struct net_pool *pool,
			struct sandbox_link *l, struct moat_error *e)
{
	uint32_t base4 = ntohl(pool->v4.s_addr);
	uint32_t links4 = 1u << (30 - pool->v4_prefix);
	bool found = false;
	for (uint32_t i = 0; i < links4 && !found; i++) {
		uint32_t net = htonl(base4 + i * 4);
		if (in_use(ps, AF_INET, (const uint8_t *)&net, 30))
			continue;
		l->host4.s_addr = htonl(base4 + i * 4 + 1);
		l->sb4.s_addr = htonl(base4 + i * 4 + 2);
		l->prefix4 = 30;
		found = true;
	}
	char buf[INET6_ADDRSTRLEN];
	if (!found)
		return moat_error_set(e, EADDRINUSE, "no free /30 left in the pool %s/%u",
				      inet_ntop(AF_INET, &pool->v4, buf, sizeof(buf)),
				      pool->v4_prefix);

	uint64_t hi;
	memcpy(&hi, pool->v6.s6_addr, 8);
	hi = be64toh(hi);
	unsigned bits = 64u - pool->v6_prefix;
	uint64_t links6 = bits >= 16 ? POOL_V6_MAX_LINKS : 1ull << bits;
	found = false;
	for (uint64_t i = 0; i < links6 && !found; i++) {
		struct in6_addr net = IN6ADDR_ANY_INIT;
		uint64_t be = htobe64(hi + i);
		memcpy(net.s6_addr, &be, 8);
		if (in_use(ps, AF_INET6, net.s6_addr, 64))
			continue;
		l->host6 = net;
		l->host6.s6_addr[15] = 1;
		l->sb6 = net;
		l->sb6.s6_addr[15] = 2;
		l->prefix6 = 64;
		found = true;
	}
	if (!found)
		return moat_error_set(e, EADDRINUSE, "no free /64 left in the pool %s/%u",
				      inet_ntop(AF_INET6, &pool->v6, buf, sizeof(buf)),
				      pool->v6_prefix);
	return 0;
}

/* Serialises choosing a subnet and adding it among moats on this machine. */
static int wire_lock(struct moat_error *e)
{
	if (mkdir("/run/moat", 0755) < 0 && errno != EEXIST)
		return moat_error_errno(e, errno, "create /run/moat");
	int fd = open(NET_WIRE_LOCK, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return moat_error_errno(e, errno, "open %s", NET_WIRE_LOCK);
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int err = errno;
			close(fd);
			return moat_error_errno(e, err, "lock %s", NET_WIRE_LOCK);
		}
	}
	return fd;
}

/* ---- single rtnetlink operations ---- */

static const char *addr_str(int family, const void *a, uint8_t plen, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	inet_ntop(family, a, ip, sizeof(ip));
	snprintf(buf, len, "%s/%u", ip, plen);
	return buf;
}

static int addr_add(struct nl_sock *s, int ifindex, const char *ifname, int family,
		    const void *a, uint8_t plen, struct moat_error *e)
{
	struct nl_msg m;
	struct ifaddrmsg *ifa = nl_msg_init(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
					    sizeof(*ifa));
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_prefixlen = plen;
	ifa->ifa_index = (uint32_t)ifindex;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	size_t alen = addr_len(family);
	nl_put(&m, IFA_LOCAL, alen, a);
	nl_put(&m, IFA_ADDRESS, alen, a);
	if (family == AF_INET6) {
		/* no duplicate address detection: usable at once, not ~1.7 s later */
		ifa->ifa_flags = IFA_F_NODAD;
		nl_put_u32(&m, IFA_FLAGS, IFA_F_NODAD);
	}
	int r = nl_request(s, &m, e);
	if (r < 0) {
		char buf[64];
		moat_error_prefix(e, "add address %s to %s",
				  addr_str(family, a, plen, buf, sizeof(buf)), ifname);
	}
	return r;
}

static int default_route_add(struct nl_sock *s, int oif, int family, const void *gw,
			     struct moat_error *e)
{
	struct nl_msg m;
	struct rtmsg *rtm = nl_msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	nl_put(&m, RTA_GATEWAY, addr_len(family), gw);
	nl_put_u32(&m, RTA_OIF, (uint32_t)oif);
	int r = nl_request(s, &m, e);
	if (r < 0) {
		char ip[INET6_ADDRSTRLEN] = "?";
		inet_ntop(family, gw, ip, sizeof(ip));
		moat_error_prefix(e, "add default route via %s in the sandbox", ip);
	}
	return r;
}

static int link_del(struct nl_sock *s, const char *ifname, struct moat_error *e)
{
	struct nl_msg m;
	struct ifinfomsg *ifi = nl_msg_init(&m, RTM_DELLINK, 0, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	nl_put_str(&m, IFLA_IFNAME, ifname);
	return nl_request(s, &m, e);
}

static int veth_create(struct nl_sock *s, const char *ifname, int sandbox_netns_fd,
		       struct moat_error *e)
{
	struct nl_msg m;
	struct ifinfomsg *ifi = nl_msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
					    sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	nl_put_str(&m, IFLA_IFNAME, ifname);
	struct nlattr *info = nl_nest_start(&m, IFLA_LINKINFO);
	nl_put_str(&m, IFLA_INFO_KIND, "veth");
	struct nlattr *data = nl_nest_start(&m, IFLA_INFO_DATA);
	struct nlattr *peer = nl_nest_start(&m, VETH_INFO_PEER);
	struct ifinfomsg *pifi = nl_msg_put_extra(&m, sizeof(*pifi));
	pifi->ifi_family = AF_UNSPEC;
	/* The peer is born inside the sandbox netns: its name never clashes
	 * with ours and it never exists in the enforcement netns. */
	nl_put_str(&m, IFLA_IFNAME, NET_SANDBOX_IFNAME);
	nl_put_u32(&m, IFLA_NET_NS_FD, (uint32_t)sandbox_netns_fd);
	nl_nest_end(&m, peer);
	nl_nest_end(&m, data);
	nl_nest_end(&m, info);
	int r = nl_request(s, &m, e);
	if (r < 0)
		moat_error_prefix(e, "create veth %s (peer %s in the sandbox netns)",
				  ifname, NET_SANDBOX_IFNAME);
	return r;
}

static int sysctl_write(const char *family, const char *ifname, const char *key,
			const char *value, struct moat_error *e)
{
	char path[128];
	snprintf(path, sizeof(path), "/proc/sys/net/%s/conf/%s/%s", family, ifname, key);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(value);
	if (fd < 0 || write(fd, value, len) != (ssize_t)len)
		return moat_error_errno(e, errno ? errno : EIO, "set net.%s.conf.%s.%s=%s",
					family, ifname, key, value);
	return 0;
}

/* Host-side settings; why each one is in docs/wiring.md. */
static int host_sysctls(const char *ifname, struct moat_error *e)
{
	static const struct { const char *family, *key, *value; } set[] = {
		{ "ipv4", "rp_filter", "0" },
		{ "ipv4", "accept_redirects", "0" },
		{ "ipv6", "accept_ra", "0" },
		{ "ipv6", "autoconf", "0" },
		{ "ipv6", "accept_redirects", "0" },
		{ "ipv6", "accept_dad", "0" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(set); i++) {
		errno = 0;
		int r = sysctl_write(set[i].family, ifname, set[i].key, set[i].value, e);
		if (r < 0)
			return r;
	}
	return 0;
}

static int check_id(const char *id, struct moat_error *e)
{
	size_t n = strlen(id);
	if (n == 0 || n > NET_ID_MAX)
		return moat_error_set(e, EINVAL, "sandbox id '%s' must be 1 to %d characters "
				      "(interface name moat-<id>)", id, NET_ID_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return moat_error_set(e, EINVAL, "sandbox id '%s': only letters, digits, "
					      "'-' and '_' are allowed", id);
	}
	return 0;
}

static int link_flags_cb(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	if (nlh->nlmsg_type == RTM_NEWLINK &&
	    nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg))) {
		const struct ifinfomsg *ifi = NLMSG_DATA(nlh);
		*(unsigned *)data = ifi->ifi_flags;
	}
	return 0;
}

/* A veth carries packets only once the kernel's link watcher has seen the
 * carrier and attached the queueing discipline (IFF_RUNNING); until then the
 * workload's first packet would be dropped and its connect() stall for a
 * SYN retransmission.  Usually a matter of a millisecond or two. */
static int wait_running(struct nl_sock *s, int ifindex, const char *ifname, struct moat_error *e)
{
	uint64_t until = moat_now_ms() + 3000;
	for (;;) {
		struct nl_msg m;
		struct ifinfomsg *ifi = nl_msg_init(&m, RTM_GETLINK, 0, sizeof(*ifi));
		ifi->ifi_family = AF_UNSPEC;
		ifi->ifi_index = ifindex;
		unsigned flags = 0;
		int r = nl_talk(s, &m, link_flags_cb, &flags, e);
		if (r < 0)
			return moat_error_prefix(e, "state of %s", ifname);
		if (flags & IFF_RUNNING)
			return 0;
		if (moat_now_ms() >= until)
			return moat_error_set(e, ETIMEDOUT, "%s did not come up within 3 s", ifname);
		usleep(500);
	}
}

int net_wire(int sandbox_netns_fd, const char *id, const struct net_pool *pool,
	     struct sandbox_link *out, struct moat_error *e)
{
	struct sandbox_link l;
	memset(&l, 0, sizeof(l));
	int r = check_id(id, e);
	if (r < 0)
		return r;
	if (sandbox_netns_fd < 0)
		return moat_error_set(e, EBADF, "sandbox netns: invalid file descriptor %d",
				      sandbox_netns_fd);
	struct stat sbst, self;
	if (fstat(sandbox_netns_fd, &sbst) == 0 && stat("/proc/thread-self/ns/net", &self) == 0 &&
	    sbst.st_dev == self.st_dev && sbst.st_ino == self.st_ino)
		return moat_error_set(e, EINVAL, "sandbox netns: fd %d is the enforcement netns "
				      "itself", sandbox_netns_fd);
	if (pool->v4_prefix > 30 || pool->v6_prefix > 64)
		return moat_error_set(e, EINVAL, "address pool prefixes must be <= /30 and <= /64");
	snprintf(l.host_ifname, sizeof(l.host_ifname), "moat-%s", id);

	_cleanup_nl_ struct nl_sock *sb = nl_open(sandbox_netns_fd, e);
	if (!sb)
		return moat_error_prefix(e, "sandbox netns");
	_cleanup_nl_ struct nl_sock *host = nl_open(-1, e);
	if (!host)
		return -e->code;
	r = veth_create(host, l.host_ifname, sandbox_netns_fd, e);
	if (r < 0)
		return r;

	/* from here on, every failure deletes the veth (and with it the peer) */
	_cleanup_close_ int lock = -1;
	struct prefixes used = { 0 };
	r = nl_link_index(host, l.host_ifname, e);
	if (r < 0) {
		moat_error_prefix(e, "find %s", l.host_ifname);
		goto undo;
	}
	l.host_ifindex = r;
	r = nl_link_index(sb, NET_SANDBOX_IFNAME, e);
	if (r < 0) {
		moat_error_prefix(e, "find %s in the sandbox", NET_SANDBOX_IFNAME);
		goto undo;
	}
	l.sb_ifindex = r;
	r = host_sysctls(l.host_ifname, e);
	if (r < 0)
		goto undo;

	r = lock = wire_lock(e);
	if (r < 0)
		goto undo;
	r = collect_in_use(host, &used, e);
	if (r < 0)
		goto undo;
	r = pick_subnets(&used, pool, &l, e);
	if (r < 0)
		goto undo;
	r = addr_add(host, l.host_ifindex, l.host_ifname, AF_INET, &l.host4, l.prefix4, e);
	if (r < 0)
		goto undo;
	r = addr_add(host, l.host_ifindex, l.host_ifname, AF_INET6, &l.host6, l.prefix6, e);
	if (r < 0)
		goto undo;
	/* our subnets are now visible to the next moat's route/address dump */
	close(moat_steal_fd(&lock));

	char sbname[32];
	snprintf(sbname, sizeof(sbname), "%s (sandbox)", NET_SANDBOX_IFNAME);
	r = addr_add(sb, l.sb_ifindex, sbname, AF_INET, &l.sb4, l.prefix4, e);
	if (r < 0)
		goto undo;
	r = addr_add(sb, l.sb_ifindex, sbname, AF_INET6, &l.sb6, l.prefix6, e);
	if (r < 0)
		goto undo;
	r = nl_link_set_up(host, l.host_ifindex, true, e);
	if (r < 0) {
		moat_error_prefix(e, "set %s up", l.host_ifname);
		goto undo;
	}
	r = nl_link_set_up(sb, LOOPBACK_IFINDEX, true, e);
	if (r < 0) {
		moat_error_prefix(e, "set lo up in the sandbox");
		goto undo;
	}
	r = nl_link_set_up(sb, l.sb_ifindex, true, e);
	if (r < 0) {
		moat_error_prefix(e, "set %s up", sbname);
		goto undo;
	}
	r = default_route_add(sb, l.sb_ifindex, AF_INET, &l.host4, e);
	if (r < 0)
		goto undo;
	r = default_route_add(sb, l.sb_ifindex, AF_INET6, &l.host6, e);
	if (r < 0)
		goto undo;
	r = wait_running(host, l.host_ifindex, l.host_ifname, e);
	if (r < 0)
		goto undo;
	r = wait_running(sb, l.sb_ifindex, sbname, e);
	if (r < 0)
		goto undo;
	free(used.v);
	*out = l;
	return 0;

undo:
	free(used.v);
	{
		struct moat_error ue = { 0 };
		if (link_del(host, l.host_ifname, &ue) < 0 && ue.code != ENODEV)
			log_warn("undo: delete %s: %s", l.host_ifname, ue.msg);
	}
	return r;
}

int net_unwire(const char *host_ifname, struct moat_error *e)
{
	_cleanup_nl_ struct nl_sock *s = nl_open(-1, e);
	if (!s)
		return -e->code;
	int r = link_del(s, host_ifname, e);
	if (r == -ENODEV)
		return 0;
	if (r < 0)
		return moat_error_prefix(e, "delete %s", host_ifname);
	return 0;
}

/* ---- TPROXY policy routing ---- */

static int tproxy_rule(struct nl_sock *s, uint16_t cmd, int family, uint32_t mark,
		       uint32_t table, struct moat_error *e)
{
	struct nl_msg m;
	uint16_t flags = cmd == RTM_NEWRULE ? NLM_F_CREATE | NLM_F_EXCL : 0;
	struct fib_rule_hdr *h = nl_msg_init(&m, cmd, flags, sizeof(*h));
	h->family = (uint8_t)family;
	h->action = FR_ACT_TO_TBL;
	h->table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	nl_put_u32(&m, FRA_TABLE, table);
	nl_put_u32(&m, FRA_FWMARK, mark);
	nl_put_u32(&m, FRA_FWMASK, 0xffffffffu);
	nl_put_u32(&m, FRA_PRIORITY, NET_TPROXY_RULE_PRIO);
	int r = nl_request(s, &m, e);
	if (r < 0)
		moat_error_prefix(e, "%s %s rule fwmark 0x%x lookup %u",
				  cmd == RTM_NEWRULE ? "add" : "delete",
				  family == AF_INET ? "IPv4" : "IPv6", mark, table);
	return r;
}

static int tproxy_route(struct nl_sock *s, uint16_t cmd, int family, uint32_t table,
			struct moat_error *e)
{
	struct nl_msg m;
	uint16_t flags = cmd == RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_EXCL : 0;
	struct rtmsg *rtm = nl_msg_init(&m, cmd, flags, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_BOOT;
	rtm->rtm_scope = RT_SCOPE_HOST;
	rtm->rtm_type = RTN_LOCAL;
	nl_put_u32(&m, RTA_TABLE, table);
	nl_put_u32(&m, RTA_OIF, LOOPBACK_IFINDEX);
	int r = nl_request(s, &m, e);
	if (r < 0)
		moat_error_prefix(e, "%s route local %s dev lo table %u",
				  cmd == RTM_NEWROUTE ? "add" : "delete",
				  family == AF_INET ? "0.0.0.0/0" : "::/0", table);
	return r;
}

int net_tproxy_routing_add(uint32_t mark, uint32_t table, struct moat_error *e)
{
	_cleanup_nl_ struct nl_sock *s = nl_open(-1, e);
	if (!s)
		return -e->code;
	int r = nl_link_set_up(s, LOOPBACK_IFINDEX, true, e);
	if (r < 0)
		return moat_error_prefix(e, "set lo up");
	static const int fams[] = { AF_INET, AF_INET6 };
	for (size_t i = 0; i < ARRAY_SIZE(fams); i++) {
		r = tproxy_rule(s, RTM_NEWRULE, fams[i], mark, table, e);
		if (r < 0 && r != -EEXIST)
			return r;
		/* always re-added: lo going down deletes the v6 one for good */
		r = tproxy_route(s, RTM_NEWROUTE, fams[i], table, e);
		if (r < 0 && r != -EEXIST)
			return r;
	}
	if (e)
		memset(e, 0, sizeof(*e));
	return 0;
}

int net_tproxy_routing_del(uint32_t mark, uint32_t table, struct moat_error *e)
{
	_cleanup_nl_ struct nl_sock *s = nl_open(-1, e);
	if (!s)
		return -e->code;
	static const int fams[] = { AF_INET, AF_INET6 };
	for (size_t i = 0; i < ARRAY_SIZE(fams); i++) {
		int r = 0;
		/* someone may have added the same rule twice without EXCL */
		for (int k = 0; k < 16; k++) {
			r = tproxy_rule(s, RTM_DELRULE, fams[i], mark, table, e);
			if (r < 0)
				break;
		}
		if (r != -ENOENT)
			return r;
		r = tproxy_route(s, RTM_DELROUTE, fams[i], table, e);
		if (r < 0 && r != -ENOENT && r != -ESRCH)
			return r;
	}
	if (e)
		memset(e, 0, sizeof(*e));
	return 0;
}

/* ---- listings ---- */

struct links {
	struct net_link_info *v;
	size_t n, cap;
};

static int collect_moat_link(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	struct links *ls = data;
	if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
		return 0;
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*ifi)) {
		if (mnl_attr_get_type(a) != IFLA_IFNAME ||
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
			continue;
		const char *name = mnl_attr_get_str(a);
		if (strncmp(name, "moat-", 5) != 0 || strlen(name) >= IF_NAMESIZE)
			return 0;
		if (ls->n == ls->cap) {
			size_t cap = ls->cap ? ls->cap * 2 : 8;
			struct net_link_info *v = realloc(ls->v, cap * sizeof(*v));
			if (!v)
				return moat_error_errno(e, ENOMEM, "list links");
			ls->v = v;
			ls->cap = cap;
		}
		struct net_link_info *li = &ls->v[ls->n++];
		memset(li, 0, sizeof(*li));
		snprintf(li->ifname, sizeof(li->ifname), "%s", name);
		li->ifindex = ifi->ifi_index;
		return 0;
	}
	return 0;
}

static int fill_link_addr(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	struct links *ls = data;
	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg))
		return 0;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	size_t alen = addr_len(ifa->ifa_family);
	if (!alen || (ifa->ifa_family == AF_INET6 && ifa->ifa_scope != RT_SCOPE_UNIVERSE))
		return 0;
	struct net_link_info *li = NULL;
	for (size_t i = 0; i < ls->n && !li; i++)
		if (ls->v[i].ifindex == (int)ifa->ifa_index)
			li = &ls->v[i];
	if (!li)
		return 0;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*ifa)) {
		uint16_t t = mnl_attr_get_type(a);
		if (mnl_attr_get_payload_len(a) != alen)
			continue;
		if (ifa->ifa_family == AF_INET && t == IFA_LOCAL && !li->addr4.s_addr)
			memcpy(&li->addr4, mnl_attr_get_payload(a), 4);
		else if (ifa->ifa_family == AF_INET6 && t == IFA_ADDRESS &&
			 IN6_IS_ADDR_UNSPECIFIED(&li->addr6))
			memcpy(&li->addr6, mnl_attr_get_payload(a), 16);
	}
	return 0;
}

int net_list_moat_links(struct net_link_info **out, size_t *n, struct moat_error *e)
{
	_cleanup_nl_ struct nl_sock *s = nl_open(-1, e);
	if (!s)
		return -e->code;
	struct links ls = { 0 };
	struct nl_msg m;
	int r = -EAGAIN;
	for (int attempt = 0; attempt < DUMP_ATTEMPTS && r == -EAGAIN; attempt++) {
		ls.n = 0;
		struct ifinfomsg *ifi = nl_msg_init(&m, RTM_GETLINK, 0, sizeof(*ifi));
		ifi->ifi_family = AF_UNSPEC;
		r = nl_dump(s, &m, collect_moat_link, &ls, e);
		if (r < 0) {
			moat_error_prefix(e, "list links");
			continue;
		}
		struct ifaddrmsg *ifa = nl_msg_init(&m, RTM_GETADDR, 0, sizeof(*ifa));
		ifa->ifa_family = AF_UNSPEC;
		r = nl_dump(s, &m, fill_link_addr, &ls, e);
		if (r < 0)
			moat_error_prefix(e, "list addresses");
	}
	if (r < 0)
		goto fail;
	*out = ls.v;
	*n = ls.n;
	return 0;
fail:
	free(ls.v);
	return r;
}

struct addrs {
	struct sockaddr_storage *v;
	size_t n, cap;
};

static int collect_local_addr(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	struct addrs *as = data;
	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg))
		return 0;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	size_t alen = addr_len(ifa->ifa_family);
	if (!alen)
		return 0;
	/* IPv4's own address is IFA_LOCAL (IFA_ADDRESS is the peer on
	 * point-to-point links); IPv6 has only IFA_ADDRESS unless a peer is set. */
	const void *local = NULL, *address = NULL;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*ifa)) {
		if (mnl_attr_get_payload_len(a) != alen)
			continue;
		if (mnl_attr_get_type(a) == IFA_LOCAL)
			local = mnl_attr_get_payload(a);
		else if (mnl_attr_get_type(a) == IFA_ADDRESS)
			address = mnl_attr_get_payload(a);
	}
	const void *mine = local ? local : address;
	if (!mine)
		return 0;
	if (as->n == as->cap) {
		size_t cap = as->cap ? as->cap * 2 : 16;
		struct sockaddr_storage *v = realloc(as->v, cap * sizeof(*v));
		if (!v)
			return moat_error_errno(e, ENOMEM, "list addresses");
		as->v = v;
		as->cap = cap;
	}
	struct sockaddr_storage *ss = &as->v[as->n++];
	memset(ss, 0, sizeof(*ss));
	if (ifa->ifa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, mine, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, mine, 16);
		if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr))
			sin6->sin6_scope_id = ifa->ifa_index;
	}
	return 0;
}

int net_local_addrs(struct sockaddr_storage **out, size_t *n, struct moat_error *e)
{
	_cleanup_nl_ struct nl_sock *s = nl_open(-1, e);
	if (!s)
		return -e->code;
	struct addrs as = { 0 };
	struct nl_msg m;
	int r = -EAGAIN;
	for (int attempt = 0; attempt < DUMP_ATTEMPTS && r == -EAGAIN; attempt++) {
		as.n = 0;
		struct ifaddrmsg *ifa = nl_msg_init(&m, RTM_GETADDR, 0, sizeof(*ifa));
		ifa->ifa_family = AF_UNSPEC;
		r = nl_dump(s, &m, collect_local_addr, &as, e);
	}
	if (r < 0) {
		free(as.v);
		return moat_error_prefix(e, "list addresses");
	}
	*out = as.v;
	*n = as.n;
	return 0;
}

int net_open_netns(const char *path_or_null, pid_t pid, struct moat_error *e)
{
	char buf[64];
	const char *path = path_or_null;
	if (!path) {
		if (pid <= 0)
			return moat_error_set(e, EINVAL, "bad process id %d", (int)pid);
		snprintf(buf, sizeof(buf), "/proc/%d/ns/net", (int)pid);
		path = buf;
	}
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return moat_error_errno(e, errno, "open network namespace %s", path);
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type < 0 && errno != ENOTTY)
		return moat_error_set(e, EINVAL, "%s is not a namespace", path);
	if (type >= 0 && type != CLONE_NEWNET)
		return moat_error_set(e, EINVAL, "%s is not a network namespace", path);
	return moat_steal_fd(&fd);
}

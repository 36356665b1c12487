/* One sandbox's enforcement, assembled in the order that keeps it closed:
 * listeners first (so TPROXY finds a socket), then the table (rules match the
 * veth by name, so they hold before the veth exists), then the veth.
 * Teardown goes the other way round: the veth first, then the rules. */
#include "enforcer/enforcer.h"
#include "enforcer/nflog.h"
#include "enforcer/nft.h"
#include "enforcer/wire.h"

#include "common/audit.h"
#include "common/moat.h"
#include "profiles/profile.h"
#include "tproxy/dns.h"
#include "tproxy/learned.h"
#include "tproxy/tproxy.h"
#include "tools/capture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define NFLOG_GROUP_BASE 0x6d00         /* first NFLOG group tried */
/* The learned store keeps an answer at least 30 s for the proxy's
 * anti-fronting check (a client may connect a little after a 0-TTL answer);
 * the nftables UDP sets follow the DNS TTL itself, with only a few seconds of
 * floor, so an address stops being reachable over UDP when its answer expires. */
#define LEARNED_TTL_FLOOR_S 30
#define LEARNED_UDP_TTL_FLOOR_S 5
#define LEARNED_TTL_CAP_S 86400

struct enforcement {
	char id[ENFORCER_ID_LEN + 1];
	const struct policy *policy;
	struct audit *audit;
	struct learned *learned;
	struct tproxy *proxy;
	struct dnsf *dns;
	struct nflog *nflog;
	uint16_t nflog_group;
	struct sockaddr_storage *local_addrs;
	size_t n_local_addrs;
	struct capture *capture;
	bool routing, table, wired;
	struct sandbox_link link;
};

void enforcer_new_id(char id[ENFORCER_ID_LEN + 1])
{
	uint8_t r[ENFORCER_ID_LEN / 2];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		uint64_t t = moat_now_ns() ^ (uint64_t)getpid() << 32;
		memcpy(r, &t, sizeof(r));
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(id + 2 * i, 3, "%02x", r[i]);
}

bool enforcer_owner_alive(pid_t pid)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return false;
	/* a reused pid that is not a moat does not keep a table alive */
	char path[64], exe[4096];
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	if (n < 0)
		return true;    /* cannot tell: keep it */
	exe[n] = '\0';
	const char *base = strrchr(exe, '/');
	base = base ? base + 1 : exe;
	return strncmp(base, "moat", 4) == 0;
}

static const char *drop_reason(const char *prefix)
{
	/* "moat drop port" -> "port" */
	const char *p = prefix ? strrchr(prefix, ' ') : NULL;
	return p ? p + 1 : "drop";
}

static const char *proto_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP: return "tcp";
	case IPPROTO_UDP: return "udp";
	case IPPROTO_ICMP: return "icmp";
	case IPPROTO_ICMPV6: return "icmpv6";
	default: return NULL;
	}
}

static void on_drop(void *arg, const struct nflog_pkt *p)
{
	struct enforcement *en = arg;
	struct audit_rec r;
	audit_begin(&r, "drop", "deny", drop_reason(p->prefix));
	audit_addr(&r, "src", p->family, p->src);
	audit_addr(&r, "dst", p->family, p->dst);
	const char *pn = proto_name(p->proto);
	if (pn)
		audit_str(&r, "proto", pn);
	else
		audit_int(&r, "proto", p->proto);
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		audit_int(&r, "sport", p->sport);
		audit_int(&r, "dport", p->dport);
	} else if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6) {
		audit_int(&r, "icmp_type", p->icmp_type);
	}
	audit_int(&r, "len", (long long)p->len);
	audit_commit(en->audit, &r);
}

static void on_learned(void *arg, const char *name, int family, const void *addr, uint32_t ttl)
{
	struct enforcement *en = arg;
	struct moat_error e = { 0 };
	if (nft_learned_add(en->id, family, addr, ttl, &e) < 0)
		log_warn("sandbox %s: %s", en->id, e.msg);
}

/* 1: the sysctl file holds a non-zero value, 0: it holds 0, <0: -errno. */
static int sysctl_on(const char *path)
{
	char buf[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	if (n == 0)
		return -EINVAL;
	buf[n] = '\0';
	return strtol(buf, NULL, 10) != 0;
}

/* UDP to learned addresses is routed by the enforcement netns (the proxy only
 * takes TCP): without forwarding those packets would vanish without a word,
 * so a profile that allows UDP is refused at start-up instead.  The files in
 * /proc/sys/net are the current netns's. */
static int check_forwarding(struct moat_error *e)
{
	static const struct { const char *path, *sysctl; bool optional; } f[] = {
		{ "/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward", false },
		/* absent when the kernel has no IPv6 */
		{ "/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding", true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
		int r = sysctl_on(f[i].path);
		if (r == -ENOENT && f[i].optional)
			continue;
		if (r < 0)
			return moat_error_errno(e, -r, "allow_transport udp: reading %s", f[i].path);
		if (r == 0)
			return moat_error_set(e, EOPNOTSUPP,
					      "allow_transport udp needs IP forwarding in the "
					      "enforcement namespace: sysctl %s=1", f[i].sysctl);
	}
	return 0;
}

const struct sandbox_link *enforcement_link(const struct enforcement *en)
{
	return &en->link;
}

int enforcement_event_fd(const struct enforcement *en)
{
	return en->nflog ? nflog_fd(en->nflog) : -1;
}

void enforcement_process_events(struct enforcement *en)
{
	if (en->nflog)
		nflog_dispatch(en->nflog, on_drop, en);
}

static bool other_tables_exist(const char *own_id)
{
	struct nft_table_info *t = NULL;
	size_t n = 0;
	if (nft_list_tables(&t, &n, NULL) < 0)
		return true;    /* cannot tell: keep the routing */
	bool others = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].id, own_id) != 0)
			others = true;
	free(t);
	return others;
}

void enforcement_stop_capture(struct enforcement *en)
{
	if (!en || !en->capture)
		return;
	struct capture_stats st = { 0 };
	capture_stop(en->capture, &st);
	en->capture = NULL;
	struct audit_rec r;
	audit_begin(&r, "capture", NULL, NULL);
	audit_int(&r, "packets", (long long)st.packets);
	audit_int(&r, "bytes", (long long)st.bytes);
	audit_int(&r, "files", st.files);
	audit_int(&r, "ps_recv", st.ps_recv);
	audit_int(&r, "ps_drop", st.ps_drop);
	audit_int(&r, "ps_ifdrop", st.ps_ifdrop);
	audit_commit(en->audit, &r);
	if (st.ps_drop || st.ps_ifdrop)
		log_warn("capture: the kernel dropped %u packets (%u at the interface)", st.ps_drop,
			 st.ps_ifdrop);
	else
		log_info("capture: %llu packets, no drops", (unsigned long long)st.packets);
}

void enforcement_down(struct enforcement *en)
{
	if (!en)
		return;
	struct moat_error e = { 0 };
	enforcement_stop_capture(en);
	if (en->wired && net_unwire(en->link.host_ifname, &e) < 0)
		log_warn("%s", e.msg);
	if (en->table && nft_remove(en->id, &e) < 0)
		log_warn("%s", e.msg);
	if (en->routing && !other_tables_exist(en->id) &&
	    net_tproxy_routing_del(MOAT_FWMARK, MOAT_ROUTE_TABLE, &e) < 0)
		log_warn("%s", e.msg);
	if (en->proxy)
		tproxy_stop(en->proxy);
	if (en->dns)
		dnsf_stop(en->dns);
	if (en->nflog) {
		/* drops logged during teardown still reach the audit log */
		nflog_dispatch(en->nflog, on_drop, en);
		nflog_close(en->nflog);
	}
	learned_free(en->learned);
	free(en->local_addrs);
	if (en->audit) {
		struct audit_rec r;
		audit_begin(&r, "sandbox", NULL, NULL);
		audit_str(&r, "state", "stopped");
		audit_commit(en->audit, &r);
	}
	audit_close(en->audit);
	free(en);
}

static void audit_started(struct enforcement *en)
{
	struct audit_rec r;
	audit_begin(&r, "sandbox", NULL, NULL);
	audit_str(&r, "state", "started");
	audit_str(&r, "profile", en->policy->name);
	audit_str(&r, "interface", en->link.host_ifname);
	audit_addr(&r, "addr4", AF_INET, &en->link.sb4);
	audit_addr(&r, "addr6", AF_INET6, &en->link.sb6);
	audit_int(&r, "pid", getpid());
	audit_commit(en->audit, &r);
}

int enforcement_up(int netns_fd, const char *id, const struct enforcer_opts *o,
		   struct enforcement **out, struct moat_error *e)
{
	struct enforcement *en = calloc(1, sizeof(*en));
	struct port_set tcp = { 0 }, udp = { 0 };
	int r;
	if (!en)
		return moat_error_errno(e, ENOMEM, "enforcement");
	snprintf(en->id, sizeof(en->id), "%s", id);
	en->policy = o->policy;
	if (o->policy->udp) {
		r = check_forwarding(e);
		if (r < 0)
			goto fail;
	}

	if (o->audit_path) {
		en->audit = audit_open(o->audit_path, id, e);
		if (!en->audit) {
			r = -e->code;
			goto fail;
		}
	}
	en->learned = learned_new(LEARNED_TTL_FLOOR_S, LEARNED_TTL_CAP_S);
	if (!en->learned) {
		r = moat_error_errno(e, ENOMEM, "learned addresses");
		goto fail;
	}

	r = net_tproxy_routing_add(MOAT_FWMARK, MOAT_ROUTE_TABLE, e);
	if (r < 0)
		goto fail;
	en->routing = true;

	r = net_local_addrs(&en->local_addrs, &en->n_local_addrs, e);
	if (r < 0)
		goto fail;

	struct tproxy_config pc = {
		.policy = o->policy,
		.audit = en->audit,
		.learned = en->learned,
		.workers = o->workers,
		.resolve_fallback = true,
		.local_addrs = en->local_addrs,
		.n_local_addrs = en->n_local_addrs,
	};
	r = tproxy_start(&pc, &en->proxy, e);
	if (r < 0)
		goto fail;

	struct dnsf_config dc = {
		.policy = o->policy,
		.audit = en->audit,
		.learned = en->learned,
		.upstreams = o->upstreams,
		.n_upstreams = o->n_upstreams,
		.answer_https_svcb_empty = true,
	};
	/* the rules send UDP and TCP port 53 of a family to one port: take
	 * listeners again in the rare case the kernel could not give the same
	 * port to both */
	for (int attempt = 0;; attempt++) {
		r = dnsf_start(&dc, &en->dns, e);
		if (r < 0)
			goto fail;
		if (dnsf_port(en->dns, AF_INET, SOCK_DGRAM) == dnsf_port(en->dns, AF_INET, SOCK_STREAM) &&
		    dnsf_port(en->dns, AF_INET6, SOCK_DGRAM) == dnsf_port(en->dns, AF_INET6, SOCK_STREAM))
			break;
		dnsf_stop(en->dns);
		en->dns = NULL;
		if (attempt == 4) {
			r = moat_error_set(e, EADDRINUSE, "DNS filter: no port free for both UDP and TCP");
			goto fail;
		}
	}

	r = nflog_open(NFLOG_GROUP_BASE, &en->nflog, &en->nflog_group, e);
	if (r < 0)
		goto fail;

	r = policy_ports(o->policy, POLICY_TCP, &tcp);
	if (r < 0) {
		moat_error_errno(e, -r, "allowed TCP ports");
		goto fail;
	}
	if (o->policy->udp) {
		r = policy_ports(o->policy, POLICY_UDP, &udp);
		if (r < 0) {
			moat_error_errno(e, -r, "allowed UDP ports");
			goto fail;
		}
	}

	char ifname[IF_NAMESIZE];
	snprintf(ifname, sizeof(ifname), "moat-%s", id);
	struct nft_sandbox ns = {
		.id = id,
		.owner = getpid(),
		.profile = o->policy->name,
		.host_ifname = ifname,
		.tproxy_port4 = tproxy_port(en->proxy, AF_INET),
		.tproxy_port6 = tproxy_port(en->proxy, AF_INET6),
		.dns_port4 = dnsf_port(en->dns, AF_INET, SOCK_DGRAM),
		.dns_port6 = dnsf_port(en->dns, AF_INET6, SOCK_DGRAM),
		.mark = MOAT_FWMARK,
		.nflog_group = en->nflog_group,
		.tcp_ports = &tcp,
		.udp_ports = &udp,
		.udp = o->policy->udp,
	};
	r = nft_install(&ns, e);
	if (r < 0)
		goto fail;
	en->table = true;

	if (o->policy->udp) {
		learned_set_hook_floor(en->learned, LEARNED_UDP_TTL_FLOOR_S);
		learned_set_hook(en->learned, on_learned, en);
	}

	r = net_wire(netns_fd, id, &o->pool, &en->link, e);
	if (r < 0)
		goto fail;
	en->wired = true;
	if (strcmp(en->link.host_ifname, ifname) != 0) {
		r = moat_error_set(e, EINVAL, "veth %s does not match the rules' %s",
				   en->link.host_ifname, ifname);
		goto fail;
	}
	/* on the host end, before the workload's first instruction */
	if (o->pcap) {
		r = capture_start(ifname, o->pcap, &en->capture, e);
		if (r < 0)
			goto fail;
	}

	port_set_free(&tcp);
	port_set_free(&udp);
	audit_started(en);
	*out = en;
	return 0;
fail:
	port_set_free(&tcp);
	port_set_free(&udp);
	enforcement_down(en);
	return r < 0 ? r : -EINVAL;
}

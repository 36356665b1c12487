/* moat — wiring a sandbox netns to the enforcement netns (veth pair,
 * addresses, routes) and the TPROXY policy routing, all over rtnetlink.
 * See docs/wiring.md. */
#ifndef MOAT_ENFORCER_WIRE_H
#define MOAT_ENFORCER_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <net/if.h>

struct moat_error;

struct net_pool {
	struct in_addr v4;  uint8_t v4_prefix;     /* default 10.231.0.0/16, split into /30 links */
	struct in6_addr v6; uint8_t v6_prefix;     /* default fd6d:6f61:7400::/48, split into /64 links */
};
void net_pool_default(struct net_pool *p);
/* Either CIDR may be NULL (keeps the default).  Host bits must be zero; the
 * v4 prefix must be <= 30 and the v6 prefix <= 64. */
int net_pool_parse(const char *v4cidr, const char *v6cidr, struct net_pool *p,
		   struct moat_error *e);

#define NET_SANDBOX_IFNAME "eth0"
#define NET_ID_MAX 8
#define NET_WIRE_LOCK "/run/moat/wire.lock"

struct sandbox_link {
	char host_ifname[IF_NAMESIZE];     /* "moat-<id>" in the enforcement netns */
	int host_ifindex;
	int sb_ifindex;                    /* eth0's index inside the sandbox netns */
	struct in_addr host4, sb4;  uint8_t prefix4;     /* .1 host, .2 sandbox, /30 */
	struct in6_addr host6, sb6; uint8_t prefix6;     /* ::1 host, ::2 sandbox, /64 */
};

/* In the current (enforcement) netns: creates veth "moat-<id>" whose peer is
 * "eth0" inside sandbox_netns_fd, picks the first free /30 and /64 of pool
 * (no overlap with any route or address here, chosen under an flock on
 * NET_WIRE_LOCK), adds the addresses (IPv6 nodad), sets the host-side
 * sysctls, brings both ends and the sandbox's lo up and adds the sandbox's
 * default routes.  id: 1..8 characters of [A-Za-z0-9_-].  On failure
 * everything made is undone and e says which step failed and why. */
int net_wire(int sandbox_netns_fd, const char *id, const struct net_pool *pool,
	     struct sandbox_link *out, struct moat_error *e);
/* Deletes the host end (the kernel removes the peer). ENODEV is not an error. */
int net_unwire(const char *host_ifname, struct moat_error *e);

/* TPROXY local delivery in the current (enforcement) netns:
 *   rule  fwmark MARK/0xffffffff lookup TABLE  priority NET_TPROXY_RULE_PRIO  (v4, v6)
 *   route local 0.0.0.0/0 dev lo table TABLE ; local ::/0 dev lo table TABLE
 * Idempotent.  Also brings lo up and re-adds the v6 local route if lo going
 * down removed it. */
#define NET_TPROXY_RULE_PRIO 1000u
int net_tproxy_routing_add(uint32_t mark, uint32_t table, struct moat_error *e);
int net_tproxy_routing_del(uint32_t mark, uint32_t table, struct moat_error *e);  /* ENOENT is fine */
#define MOAT_FWMARK 0x4d4f0001u
#define MOAT_ROUTE_TABLE 19791u

/* Lists moat links in the current netns (names starting "moat-"), with their
 * first IPv4 and global IPv6 address (zero if none).  *out is malloc'ed. */
struct net_link_info {
	char ifname[IF_NAMESIZE];
	int ifindex;
	struct in_addr addr4;
	struct in6_addr addr6;
};
int net_list_moat_links(struct net_link_info **out, size_t *n, struct moat_error *e);
/* The current netns's own addresses, every family and scope (link-local ones
 * carry sin6_scope_id).  *out is malloc'ed. */
int net_local_addrs(struct sockaddr_storage **out, size_t *n, struct moat_error *e);
/* Opens /proc/PID/ns/net (path_or_null NULL), or a path like /run/netns/NAME,
 * and checks that it is a network namespace.  Returns the fd. */
int net_open_netns(const char *path_or_null, pid_t pid, struct moat_error *e);

#endif

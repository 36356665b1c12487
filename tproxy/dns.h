/* The DNS filter: the sandbox's DNS traffic (UDP and TCP port 53, to any
 * address) is TPROXY'd to these listeners in the enforcement netns.  Names
 * the profile does not allow get NXDOMAIN from moat and never leave it;
 * allowed queries go to the upstream resolvers, and the A/AAAA answers
 * relayed are recorded in the learned-address store (docs/dns.md). */
#ifndef MOAT_DNS_H
#define MOAT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct policy;
struct audit;
struct learned;
struct moat_error;

struct dns_upstream {
	struct sockaddr_storage addr;
	socklen_t len;
};

#define DNSF_MAX_UPSTREAMS 8

struct dnsf_config {
	const struct policy *policy;
	struct audit *audit;              /* may be NULL */
	struct learned *learned;          /* may be NULL */
	const struct dns_upstream *upstreams;  /* NULL/0: read /etc/resolv.conf of the current netns */
	size_t n_upstreams;
	unsigned timeout_ms;              /* per upstream attempt; 0 means 2000 */
	bool answer_https_svcb_empty;     /* HTTPS/SVCB queries get NOERROR, no answers; callers
					   * should set it (moat run does): a zeroed config
					   * forwards them */
};

struct dnsf;

/* Opens IP_TRANSPARENT listeners in the current network namespace (UDP and
 * TCP, IPv4 and IPv6; IPv6 is skipped when the netns has none) on a
 * kernel-chosen port, shared by all four when possible, and starts one thread
 * running the epoll loop.  Needs CAP_NET_ADMIN. */
int dnsf_start(const struct dnsf_config *cfg, struct dnsf **out, struct moat_error *e);
/* The listener's port, or 0 when there is none for that family/type. */
uint16_t dnsf_port(const struct dnsf *d, int family, int sotype /* SOCK_DGRAM/SOCK_STREAM */);
/* Stops the thread, closes everything, frees.  NULL is fine. */
void dnsf_stop(struct dnsf *d);
/* "ADDR", "ADDR:PORT", "[V6]:PORT" or a bare IPv6 address; port 53 by default. */
int dnsf_parse_upstream(const char *s, struct dns_upstream *out, struct moat_error *e);

#endif

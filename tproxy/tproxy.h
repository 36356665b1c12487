/* The transparent L7 proxy: accepts the sandbox's TCP connections that
 * nftables TPROXY'd to it, judges each by the TLS SNI or the HTTP Host against
 * the policy, checks that the destination is an address the name resolves to,
 * and relays allowed connections upstream with splice(). */
#ifndef MOAT_TPROXY_H
#define MOAT_TPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct policy;
struct audit;
struct learned;
struct moat_error;

struct tproxy_config {
	const struct policy *policy;
	struct audit *audit;              /* may be NULL */
	struct learned *learned;          /* DNS answers relayed to this sandbox; may be NULL */
	unsigned workers;                 /* 0: one per online CPU */
	unsigned first_bytes_timeout_ms;  /* 0: 10000; deadline for the ClientHello / request head */
	unsigned connect_timeout_ms;      /* 0: 10000 */
	unsigned idle_timeout_ms;         /* 0: 300000 */
	unsigned max_conns;               /* per sandbox; 0: 4096 */
	/* Anti-fronting: when the DNS filter relayed no answer for the name,
	 * resolve it ourselves (forward lookups only, never reverse DNS). */
	bool resolve_fallback;
	/* The enforcement host's own addresses: always denied ("host-address"). */
	const struct sockaddr_storage *local_addrs;
	size_t n_local_addrs;
};

struct tproxy;

/* Opens the listeners in the current network namespace and starts the
 * workers.  Each worker owns SO_REUSEPORT + IP_TRANSPARENT listeners for IPv4
 * (0.0.0.0) and IPv6 (:: with IPV6_V6ONLY) on one kernel-chosen port. */
int tproxy_start(const struct tproxy_config *cfg, struct tproxy **out, struct moat_error *e);
/* The listening port for AF_INET or AF_INET6 (0 if that family is not served). */
uint16_t tproxy_port(const struct tproxy *t, int family);
/* Closes the listeners, ends the workers, closes every connection (writing
 * its close event) and frees t. */
void tproxy_stop(struct tproxy *t);

struct tproxy_stats {
	uint64_t accepted, allowed, denied, active;
};
void tproxy_stats(const struct tproxy *t, struct tproxy_stats *s);

#endif

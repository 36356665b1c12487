/* The enforcement of one sandbox, assembled: audit log, learned addresses,
 * TPROXY policy routing, the L7 proxy and the DNS filter (listeners in the
 * current, enforcement, netns), the NFLOG drop reader, the nftables table and
 * the veth wiring.  Used by `moat run` and `moat enforce`. */
#ifndef MOAT_ENFORCER_H
#define MOAT_ENFORCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "enforcer/wire.h"

struct moat_error;
struct policy;
struct dns_upstream;
struct capture_opts;

#define ENFORCER_ID_LEN 8

struct enforcer_opts {
	const struct policy *policy;
	const char *audit_path;                 /* NULL: no audit log */
	struct net_pool pool;                   /* addresses for the veth link */
	const struct dns_upstream *upstreams;   /* NULL: the enforcement netns's resolv.conf */
	size_t n_upstreams;
	unsigned workers;                       /* proxy workers, 0: one per CPU */
	const struct capture_opts *pcap;        /* NULL: no capture */
};

struct enforcement;

/* Makes a fresh random sandbox id ([0-9a-f]{8}). */
void enforcer_new_id(char id[ENFORCER_ID_LEN + 1]);

/* Confines the network namespace netns_fd.  The rules are in place before the
 * veth exists, so the namespace never has an unfiltered path.  On failure
 * every step already made is undone. */
int enforcement_up(int netns_fd, const char *id, const struct enforcer_opts *o,
		   struct enforcement **out, struct moat_error *e);
/* Stops the capture (if any) once the workload's last packet has passed:
 * drains what the kernel still holds, closes the file, and logs the kernel's
 * drop counts.  enforcement_down does it too; call it earlier when the
 * workload exits, before its namespace goes. */
void enforcement_stop_capture(struct enforcement *en);
/* Removes everything enforcement_up made, veth first, so no packet slips
 * through between the two. */
void enforcement_down(struct enforcement *en);

const struct sandbox_link *enforcement_link(const struct enforcement *en);
/* Poll this fd for readable: kernel drop logs to turn into audit events. */
int enforcement_event_fd(const struct enforcement *en);
void enforcement_process_events(struct enforcement *en);

/* `moat cleanup` / `moat status` work: tables whose owner is dead. */
bool enforcer_owner_alive(pid_t pid);

#endif

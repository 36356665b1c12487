/* moat run's options, shared by the embedded sandbox and the container path. */
#ifndef MOAT_RUN_H
#define MOAT_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "enforcer/enforcer.h"
#include "tools/capture.h"
#include "tproxy/dns.h"

struct moat_error;
struct policy;
struct enforcer_opts;
struct sandbox_link;

struct run_volume {
	char src[4096];
	char dst[4096];
	bool ro;
};

struct run_opts {
	const char *profile;
	const char *audit_log;
	const char *user;
	const char *pool4, *pool6;
	const char *hostname;
	struct dns_upstream upstreams[8];
	size_t n_upstreams;
	unsigned workers;
	char **argv;                    /* the command; may be empty with --engine */
	char id[ENFORCER_ID_LEN + 1];   /* the sandbox id (its table, veth, audit events) */
	struct capture_opts pcap;       /* --pcap...; pcap.path NULL: no capture */
	const char *learn;              /* --learn OUT.json: write the learned profile there */
	bool learn_wildcards;
	/* containers */
	const char *engine;             /* "podman", "docker" or NULL (embedded) */
	const char *engine_socket;
	const char *image;
	char *env[65];                  /* NAME=VALUE, NULL-terminated */
	size_t n_env;
	struct run_volume volumes[32];
	size_t n_volumes;
	bool keep;
};

/* The enforcement options of o (pool, upstreams, workers, audit log, capture). */
int run_enforcer_opts(const struct run_opts *o, const struct policy *pol, struct enforcer_opts *eo,
		      struct moat_error *e);
/* The workload's /etc/resolv.conf: the gateway of link l, both families. */
void run_resolv_conf(const struct sandbox_link *l, char *buf, size_t cap);

/* "SRC:DST[:ro|:rw]" with absolute paths. */
int run_parse_volume(const char *s, struct run_volume *v, struct moat_error *e);

/* The container path of moat run: prepares the container (network
 * namespace, no network), confines it, starts the command, forwards signals,
 * waits; returns the exit status (125 on moat's own failure).  *started is
 * set once the command has started (so its audit events may be learned from). */
int run_container(const struct run_opts *o, const struct policy *pol, bool *started);

#endif

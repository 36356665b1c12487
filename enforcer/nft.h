/* nftables: one table "inet moat_<id>" per sandbox, installed and removed in
 * one atomic batch (libnftnl + libmnl).  The ruleset is documented in
 * docs/rules.md, in the text `nft list table inet moat_<id>` prints. */
#ifndef MOAT_NFT_H
#define MOAT_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct moat_error;
struct port_set;        /* profiles/profile.h: sorted merged ranges {lo, hi} */

#define NFT_ID_MAX 16   /* id is [a-z0-9]{1,16} */

struct nft_sandbox {
	const char *id;              /* table name is "moat_<id>" */
	pid_t owner;                 /* recorded in the table comment for `moat cleanup` */
	const char *profile;         /* recorded too */
	const char *host_ifname;     /* host end of the sandbox veth: every rule matches on it */
	uint16_t tproxy_port4, tproxy_port6;   /* TCP TPROXY listeners */
	uint16_t dns_port4, dns_port6;         /* DNS listeners (same port for UDP and TCP) */
	uint32_t mark;               /* fwmark set on TPROXY'd packets (policy routing) */
	uint16_t nflog_group;
	const struct port_set *tcp_ports;      /* TCP ports diverted to the proxy */
	const struct port_set *udp_ports;      /* UDP ports allowed to learned addresses */
	bool udp;                               /* allow_transport includes udp */
};

/* Installs the table in one batch: all of it or nothing.  An error names the
 * object the kernel refused ("add table inet moat_x: File exists"). */
int nft_install(const struct nft_sandbox *s, struct moat_error *e);
/* Removes the table; a table that does not exist is not an error. */
int nft_remove(const char *id, struct moat_error *e);

struct nft_table_info {
	char id[32];
	pid_t owner;                 /* 0 when the comment is missing or unreadable */
	char profile[64];
	char ifname[16];
};
/* moat_* tables of family inet in the current netns (caller frees *out). */
int nft_list_tables(struct nft_table_info **out, size_t *n, struct moat_error *e);

struct nft_counter {
	char name[32];
	uint64_t packets, bytes;
};
/* The named counters of a table (caller frees *out); -ENOENT without the table. */
int nft_counters(const char *id, struct nft_counter **out, size_t *n, struct moat_error *e);

/* Adds addr (AF_INET: 4 bytes, AF_INET6: 16) to learned4/learned6 with a
 * timeout in seconds.  An address already there is not an error: its expiry
 * restarts at timeout_s (kernels 6.10 on; older ones keep the first expiry). */
int nft_learned_add(const char *id, int family, const void *addr, uint32_t timeout_s,
		    struct moat_error *e);

/* Parses a table comment "moat pid=<pid> profile=<name> if=<ifname>". */
int nft_parse_comment(const char *comment, struct nft_table_info *info);

#endif

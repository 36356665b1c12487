/* Private to profiles/: name and address syntax shared by the loader and the
 * matcher, and the compiled lookup structure behind struct policy.index. */
#ifndef MOAT_PROFILES_INTERNAL_H
#define MOAT_PROFILES_INTERNAL_H

#include "profiles/profile.h"

/* One hash table slot: a normalized name and the first host rule with it
 * (further rules with the same key follow through policy_index.next). */
struct name_slot {
	const char *key;                /* NULL: empty slot */
	size_t klen;
	int first;
};

struct policy_index {
	struct name_slot *exact;        /* "api.example.com" */
	size_t exact_cap;               /* power of two */
	struct name_slot *wild;         /* ".example.com": keyed by "example.com" */
	size_t wild_cap;
	int *next;                      /* per host rule: next rule with the same key, -1 */
	char **warnings;
	size_t n_warnings;
};

/* Checks that s[0..len) is a DNS name that moat can match: ASCII letters,
 * digits, '-' and '.', labels of 1..63 bytes not starting or ending with '-',
 * at most 253 bytes without the one trailing dot allowed, last label not
 * starting with a digit (numeric forms are IP literals, never names).
 * Writes the lower-cased name without trailing dot to out (>= 254 bytes) and
 * returns its length, or returns -EINVAL with *why set to a short reason. */
int name_normalize(const char *s, size_t len, char *out, const char **why);

/* Strict IP literal: canonical dotted quad (inet_pton) or any IPv6 form.
 * Returns AF_INET / AF_INET6, or 0 when s is not an address. */
int ip_literal(const char *s, size_t len, uint8_t addr[16]);

/* Whether addr (of family) lies in the rule's network; v4-mapped IPv6
 * addresses are compared as IPv4. */
bool addr_rule_covers(const struct addr_rule *r, int family, const uint8_t *addr);

/* Maps ::ffff:a.b.c.d to AF_INET a.b.c.d; copies other addresses as they are. */
int addr_unmap(int family, const void *addr, uint8_t out[16]);

/* Sizes the hash tables for up to n host rules. */
int policy_index_init(struct policy_index *idx, size_t n);
/* Adds p->hosts[k] to the tables.  Returns the index of an identical earlier
 * rule (same name, scope and ports) without adding k, or -1 when added. */
int policy_index_add(const struct policy *p, struct policy_index *idx, size_t k);
void policy_index_free(struct policy_index *idx);

/* Adds a port range to a set, keeping it sorted and merged. */
int port_set_add(struct port_set *s, uint16_t lo, uint16_t hi);
int port_set_merge(struct port_set *dst, const struct port_set *src);

/* The loader (load.c, load_host.c): its state while one profile is parsed,
 * and the message helpers and key handlers the two files share. */
struct cJSON;

struct ctx {
	const char *label;              /* file name for messages */
	struct moat_error *e;
	struct policy *p;
	struct policy_index *idx;
};

/* Stops the load with "label: field: message (value)"; v may be NULL. */
__attribute__((format(printf, 4, 5)))
int load_fail(struct ctx *c, const char *field, const struct cJSON *v, const char *fmt, ...);
/* Adds a warning in the same form; fails only when out of memory. */
__attribute__((format(printf, 4, 5)))
int load_warn(struct ctx *c, const char *field, const struct cJSON *v, const char *fmt, ...);
int load_nomem(struct ctx *c);

/* network.outbound.allow_host, allow_port and allow_private (load_host.c). */
int load_k_allow_host(struct ctx *c, const char *field, const struct cJSON *v);
int load_k_allow_port(struct ctx *c, const char *field, const struct cJSON *v);
int load_k_allow_private(struct ctx *c, const char *field, const struct cJSON *v);

#endif

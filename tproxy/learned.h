/* Addresses learned from DNS answers relayed to a sandbox, per name, with
 * their TTL.  The DNS filter writes them; the L7 proxy's anti-fronting check
 * and the UDP allow-set read them.  Thread-safe. */
#ifndef MOAT_LEARNED_H
#define MOAT_LEARNED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct learned;

/* ttl_floor_s: shortest time an answer is kept (a 0-TTL answer is still
 * usable for the connection that follows it); ttl_cap_s: longest. */
struct learned *learned_new(uint32_t ttl_floor_s, uint32_t ttl_cap_s);
void learned_free(struct learned *l);

/* name: any case, trailing dot ignored. family AF_INET/AF_INET6. */
void learned_add(struct learned *l, const char *name, size_t len, int family, const void *addr,
		 uint32_t ttl_s);
/* True when addr was relayed for name and has not expired. */
bool learned_has(struct learned *l, const char *name, size_t len, int family, const void *addr);

/* Called (outside the lock) for every address added: the enforcer mirrors
 * UDP-allowed addresses into an nftables set.  ttl_s is how long the address
 * stays valid for the hook: the answer's TTL clamped to [hook floor, cap], and
 * never less than what an earlier answer for the same name and address still
 * has left (so a caller that refreshes an expiry with it never shortens it).
 * The hook floor is the store's floor unless learned_set_hook_floor() sets
 * another one. */
typedef void (*learned_hook)(void *arg, const char *name, int family, const void *addr,
			     uint32_t ttl_s);
void learned_set_hook(struct learned *l, learned_hook fn, void *arg);
/* A floor for the hook's TTL only (e.g. a few seconds, so the nftables set
 * follows the DNS TTL closely while the store keeps its own longer floor). */
void learned_set_hook_floor(struct learned *l, uint32_t floor_s);

#endif

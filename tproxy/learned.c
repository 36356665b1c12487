#include "tproxy/learned.h"
#include "common/moat.h"

#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

/* Bounded: a name keeps its LEARNED_PER_NAME freshest addresses, the store its
 * LEARNED_MAX_NAMES most recently answered names.  What falls out is only
 * "not learned": the proxy then denies, it never allows more. */
#define LEARNED_PER_NAME  32
#define LEARNED_MAX_NAMES 4096
#define LEARNED_BUCKETS   1024
#define LEARNED_NAME_MAX  253

struct learned_addr {
	int family;
	uint8_t addr[16];
	uint64_t expiry_ms;
	uint64_t hook_expiry_ms;        /* the same with the hook's floor */
};

struct learned_name {
	struct learned_name *next;              /* hash chain */
	struct learned_name *older, *newer;     /* recency list */
	uint64_t hash;
	size_t len;
	char name[LEARNED_NAME_MAX + 1];
	size_t n;
	struct learned_addr a[LEARNED_PER_NAME];
};

struct learned {
	pthread_mutex_t lock;
	uint32_t floor_s, cap_s, hook_floor_s;
	struct learned_name *bucket[LEARNED_BUCKETS];
	struct learned_name *oldest, *newest;
	size_t n_names;
	learned_hook hook;
	void *hook_arg;
};

struct learned *learned_new(uint32_t ttl_floor_s, uint32_t ttl_cap_s)
{
	struct learned *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	pthread_mutex_init(&l->lock, NULL);
	l->floor_s = ttl_floor_s;
	l->hook_floor_s = ttl_floor_s;
	l->cap_s = ttl_cap_s < ttl_floor_s ? ttl_floor_s : ttl_cap_s;
	return l;
}

void learned_free(struct learned *l)
{
	if (!l)
		return;
	struct learned_name *n = l->oldest;
	while (n) {
		struct learned_name *next = n->newer;
		free(n);
		n = next;
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void learned_set_hook(struct learned *l, learned_hook fn, void *arg)
{
	pthread_mutex_lock(&l->lock);
	l->hook = fn;
	l->hook_arg = arg;
	pthread_mutex_unlock(&l->lock);
}

void learned_set_hook_floor(struct learned *l, uint32_t floor_s)
{
	pthread_mutex_lock(&l->lock);
	l->hook_floor_s = floor_s < l->cap_s ? floor_s : l->cap_s;
	pthread_mutex_unlock(&l->lock);
}

/* Lower case, one trailing dot dropped; false for an empty or too long name. */
static bool normalize(const char *name, size_t len, char *out, size_t *olen, uint64_t *hash)
{
	if (len && name[len - 1] == '.')
		len--;
	if (len == 0 || len > LEARNED_NAME_MAX)
		return false;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[i] = c;
		h = (h ^ (uint8_t)c) * 1099511628211ull;
	}
	out[len] = '\0';
	*olen = len;
	*hash = h;
	return true;
}

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
}

static struct learned_name *lookup(struct learned *l, const char *name, size_t len, uint64_t h)
{
	for (struct learned_name *n = l->bucket[h % LEARNED_BUCKETS]; n; n = n->next)
		if (n->hash == h && n->len == len && memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

static void list_unlink(struct learned *l, struct learned_name *n)
{
	if (n->older)
		n->older->newer = n->newer;
	else
		l->oldest = n->newer;
	if (n->newer)
		n->newer->older = n->older;
	else
		l->newest = n->older;
	n->older = n->newer = NULL;
}

static void list_push_newest(struct learned *l, struct learned_name *n)
{
	n->older = l->newest;
	n->newer = NULL;
	if (l->newest)
		l->newest->newer = n;
	else
		l->oldest = n;
	l->newest = n;
}

static void evict_oldest(struct learned *l)
{
	struct learned_name *n = l->oldest;
	if (!n)
		return;
	list_unlink(l, n);
	struct learned_name **pp = &l->bucket[n->hash % LEARNED_BUCKETS];
	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	l->n_names--;
	free(n);
}

void learned_add(struct learned *l, const char *name, size_t len, int family, const void *addr,
		 uint32_t ttl_s)
{
	char norm[LEARNED_NAME_MAX + 1];
	size_t nlen, alen = addr_len(family);
	uint64_t h;

	if (!l || !alen || !normalize(name, len, norm, &nlen, &h))
		return;
	uint64_t now = moat_now_ms();

	pthread_mutex_lock(&l->lock);
	uint32_t capped = ttl_s > l->cap_s ? l->cap_s : ttl_s;
	uint32_t ttl = capped < l->floor_s ? l->floor_s : capped;
	uint32_t hook_ttl = capped < l->hook_floor_s ? l->hook_floor_s : capped;
	uint64_t expiry = now + (uint64_t)ttl * 1000;
	uint64_t hook_expiry = now + (uint64_t)hook_ttl * 1000;
	struct learned_name *n = lookup(l, norm, nlen, h);
	if (!n) {
		if (l->n_names >= LEARNED_MAX_NAMES)
			evict_oldest(l);
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&l->lock);
			return;
		}
		n->hash = h;
		n->len = nlen;
		memcpy(n->name, norm, nlen + 1);
		n->next = l->bucket[h % LEARNED_BUCKETS];
		l->bucket[h % LEARNED_BUCKETS] = n;
		l->n_names++;
	} else {
		list_unlink(l, n);
	}
	list_push_newest(l, n);

	struct learned_addr *slot = NULL;
	for (size_t i = 0; i < n->n; i++) {
		if (n->a[i].family == family && memcmp(n->a[i].addr, addr, alen) == 0) {
			slot = &n->a[i];
			break;
		}
	}
	if (!slot) {
		if (n->n < LEARNED_PER_NAME) {
			slot = &n->a[n->n++];
		} else {
			/* replace the one that expires first (expired ones included) */
			slot = &n->a[0];
			for (size_t i = 1; i < n->n; i++)
				if (n->a[i].expiry_ms < slot->expiry_ms)
					slot = &n->a[i];
		}
		memset(slot, 0, sizeof(*slot));
		slot->family = family;
		memcpy(slot->addr, addr, alen);
	}
	if (expiry > slot->expiry_ms)
		slot->expiry_ms = expiry;
	if (hook_expiry > slot->hook_expiry_ms)
		slot->hook_expiry_ms = hook_expiry;
	/* what is left of the longest answer, rounded up to whole seconds */
	hook_ttl = (uint32_t)((slot->hook_expiry_ms - now + 999) / 1000);
	learned_hook hook = l->hook;
	void *hook_arg = l->hook_arg;
	pthread_mutex_unlock(&l->lock);

	if (hook)
		hook(hook_arg, norm, family, addr, hook_ttl);
}

bool learned_has(struct learned *l, const char *name, size_t len, int family, const void *addr)
{
	char norm[LEARNED_NAME_MAX + 1];
	size_t nlen, alen = addr_len(family);
	uint64_t h;
	bool found = false;

	if (!l || !alen || !normalize(name, len, norm, &nlen, &h))
		return false;
	uint64_t now = moat_now_ms();
	pthread_mutex_lock(&l->lock);
	struct learned_name *n = lookup(l, norm, nlen, h);
	for (size_t i = 0; n && i < n->n; i++) {
		if (n->a[i].family == family && memcmp(n->a[i].addr, addr, alen) == 0) {
			found = n->a[i].expiry_ms > now;
			break;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return found;
}

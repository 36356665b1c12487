/* Forward resolution for the anti-fronting check when the DNS filter relayed
 * no answer for a name: getaddrinfo() in a few threads of the enforcement
 * netns, results cached RESOLVER_TTL_MS and handed back to the workers
 * through their eventfds.  Never reverse DNS. */
#include "tproxy/proxy_internal.h"
#include "common/moat.h"

#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#define RESOLVER_MAX_ENTRIES 4096

struct rentry {
	struct rentry *next;            /* cache list */
	struct rentry *qnext;           /* resolution queue */
	unsigned refs;                  /* workers holding it, +1 while queued */
	bool done;
	uint64_t expires_ms;
	struct resolved res;
	size_t len;
	char name[256];
};

struct resolver {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct rentry *cache;
	size_t n_cache;
	struct rentry *qhead, *qtail;
	pthread_t *threads;
	unsigned n_threads;
	int *fds;
	size_t n_fds;
};

static void entry_unref(struct resolver *r, struct rentry *en)
{
	if (--en->refs == 0 && en->done && en->expires_ms <= moat_now_ms()) {
		struct rentry **pp = &r->cache;
		while (*pp && *pp != en)
			pp = &(*pp)->next;
		if (*pp) {
			*pp = en->next;
			r->n_cache--;
		}
		free(en);
	}
}

static void lookup(const char *name, struct resolved *out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	out->n = 0;
	if (getaddrinfo(name, NULL, &hints, &res) != 0)
		return;
	for (struct addrinfo *ai = res; ai && out->n < RESOLVED_MAX; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
			const struct sockaddr_in *s = (const struct sockaddr_in *)ai->ai_addr;
			out->a[out->n].family = AF_INET;
			memcpy(out->a[out->n].addr, &s->sin_addr, 4);
			out->n++;
		} else if (ai->ai_family == AF_INET6 &&
			   ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
			const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ai->ai_addr;
			out->a[out->n].family = AF_INET6;
			memcpy(out->a[out->n].addr, &s->sin6_addr, 16);
			out->n++;
		}
	}
	freeaddrinfo(res);
}

static void *resolver_thread(void *arg)
{
	struct resolver *r = arg;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->stop && !r->qhead)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop)
			break;
		struct rentry *en = r->qhead;
		r->qhead = en->qnext;
		if (!r->qhead)
			r->qtail = NULL;
		char name[256];
		memcpy(name, en->name, en->len + 1);
		pthread_mutex_unlock(&r->lock);

		struct resolved res;
		lookup(name, &res);

		pthread_mutex_lock(&r->lock);
		en->res = res;
		en->done = true;
		en->expires_ms = moat_now_ms() + RESOLVER_TTL_MS;
		entry_unref(r, en);
		for (size_t i = 0; i < r->n_fds; i++) {
			uint64_t one = 1;
			ssize_t w = write(r->fds[i], &one, sizeof(one));
			(void)w;        /* a full eventfd counter already wakes the worker */
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct resolver *resolver_new(unsigned threads, const int *notify_fds, size_t n_fds,
			      struct moat_error *e)
{
	struct resolver *r = calloc(1, sizeof(*r));
	if (!r)
		goto nomem;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->fds = calloc(n_fds ? n_fds : 1, sizeof(int));
	r->threads = calloc(threads ? threads : 1, sizeof(pthread_t));
	if (!r->fds || !r->threads) {
		resolver_free(r);
		goto nomem;
	}
	memcpy(r->fds, notify_fds, n_fds * sizeof(int));
	r->n_fds = n_fds;
	for (unsigned i = 0; i < threads; i++) {
		int rc = pthread_create(&r->threads[i], NULL, resolver_thread, r);
		if (rc) {
			resolver_free(r);
			moat_error_errno(e, rc, "resolver thread");
			return NULL;
		}
		r->n_threads++;
	}
	return r;
nomem:
	moat_error_errno(e, ENOMEM, "resolver");
	return NULL;
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	/* a lookup in progress is waited for: getaddrinfo has its own timeouts */
	for (unsigned i = 0; i < r->n_threads; i++)
		pthread_join(r->threads[i], NULL);
	struct rentry *en = r->cache;
	while (en) {
		struct rentry *n = en->next;
		free(en);
		en = n;
	}
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r->threads);
	free(r->fds);
	free(r);
}

/* Drops unreferenced stale entries; called with the lock held. */
static void evict(struct resolver *r, uint64_t now)
{
	struct rentry **pp = &r->cache;
	while (*pp) {
		struct rentry *en = *pp;
		if (en->refs == 0 && en->done && en->expires_ms <= now) {
			*pp = en->next;
			r->n_cache--;
			free(en);
		} else {
			pp = &en->next;
		}
	}
}

struct rentry *resolver_get(struct resolver *r, const char *name, size_t len)
{
	while (len && name[len - 1] == '.')
		len--;
	if (!len || len > 253)
		return NULL;
	uint64_t now = moat_now_ms();
	pthread_mutex_lock(&r->lock);
	struct rentry *en;
	for (en = r->cache; en; en = en->next)
		if (en->len == len && strncasecmp(en->name, name, len) == 0 &&
		    (!en->done || en->expires_ms > now))
			break;
	if (!en) {
		if (r->n_cache >= RESOLVER_MAX_ENTRIES)
			evict(r, now);
		en = calloc(1, sizeof(*en));
		if (!en) {
			pthread_mutex_unlock(&r->lock);
			return NULL;
		}
		for (size_t i = 0; i < len; i++) {
			char ch = name[i];
			en->name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
		}
		en->len = len;
		en->refs = 1;           /* the queue's reference */
		en->next = r->cache;
		r->cache = en;
		r->n_cache++;
		if (r->qtail)
			r->qtail->qnext = en;
		else
			r->qhead = en;
		r->qtail = en;
		pthread_cond_signal(&r->cond);
	}
	en->refs++;
	pthread_mutex_unlock(&r->lock);
	return en;
}

bool resolver_done(struct resolver *r, struct rentry *en, struct resolved *out)
{
	pthread_mutex_lock(&r->lock);
	bool done = en->done;
	if (done)
		*out = en->res;
	pthread_mutex_unlock(&r->lock);
	return done;
}

void resolver_put(struct resolver *r, struct rentry *en)
{
	if (!en)
		return;
	pthread_mutex_lock(&r->lock);
	entry_unref(r, en);
	pthread_mutex_unlock(&r->lock);
}

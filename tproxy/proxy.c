/* The proxy's workers: listeners, the epoll loop, deadlines and the pipe
 * pool.  Each worker is one thread with its own SO_REUSEPORT listeners, so
 * connections never move between threads and need no locks.
 *
 * Deadlines: a connection sits in the list of its state; every state has
 * one fixed timeout, so appending at the tail keeps each list in deadline
 * order and the loop only looks at the heads (no timer per connection). */
#include "tproxy/proxy_internal.h"
#include "common/moat.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#define TAG_LISTEN4 1
#define TAG_LISTEN6 2
#define TAG_EVENT 3
#define PIPE_POOL_MAX 32
#define ACCEPT_BACKOFF_MS 100

void conn_list_move(struct conn *c, enum conn_state s, uint64_t deadline)
{
	struct worker *w = c->w;
	struct clist *old = &w->lists[c->state];
	if (c->prev)
		c->prev->next = c->next;
	else if (old->head == c)
		old->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (old->tail == c)
		old->tail = c->prev;
	c->prev = c->next = NULL;
	c->state = (uint8_t)s;
	c->deadline = deadline;
	struct clist *l = &w->lists[s];
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

/* which: 0 client, 1 upstream.  An fd with nothing to wait for leaves the
 * epoll set, so a hung-up socket cannot wake the loop in vain. */
void conn_set_events(struct conn *c, int which, uint32_t ev)
{
	int fd = which ? c->ufd : c->cfd;
	uint32_t *cur = which ? &c->uev : &c->cev;
	if (fd < 0 || *cur == ev)
		return;
	struct epoll_event e = { .events = ev, .data.u64 = (uint64_t)(uintptr_t)c | (unsigned)which };
	int op = !*cur ? EPOLL_CTL_ADD : ev ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
	if (epoll_ctl(c->w->ep, op, fd, &e) < 0 && op != EPOLL_CTL_DEL) {
		log_warn("tproxy: epoll_ctl: %s", strerror(errno));
		return;
	}
	*cur = ev;
}

struct pipe_buf *pipe_get(struct worker *w)
{
	struct pipe_buf *p = w->pool;
	if (p) {
		w->pool = p->next;
		w->pool_n--;
		p->next = NULL;
		return p;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(p);
		return NULL;
	}
	/* fewer splice calls per MiB; pages are only taken while bytes are in flight */
	fcntl(p->fd[1], F_SETPIPE_SZ, PIPE_BYTES);
	return p;
}

/* A pipe that still holds bytes is closed, never reused. */
void pipe_put(struct worker *w, struct pipe_buf *p)
{
	if (!p)
		return;
	if (p->pending || w->pool_n >= PIPE_POOL_MAX) {
		close(p->fd[0]);
		close(p->fd[1]);
		free(p);
		return;
	}
	p->next = w->pool;
	w->pool = p;
	w->pool_n++;
}

static void listeners_enable(struct worker *w, bool on)
{
	for (int i = 0; i < 2; i++) {
		if (w->lfd[i] < 0)
			continue;
		struct epoll_event e = { .events = EPOLLIN,
					 .data.u64 = i ? TAG_LISTEN6 : TAG_LISTEN4 };
		epoll_ctl(w->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, w->lfd[i], &e);
	}
	w->lpaused = !on;
}

static void on_listener(struct worker *w, int fd)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int cfd = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				log_warn("tproxy: accept: %s; pausing", strerror(errno));
				listeners_enable(w, false);
				w->lresume = moat_now_ms() + ACCEPT_BACKOFF_MS;
			}
			return;         /* EAGAIN, or a connection that died in the queue */
		}
		atomic_fetch_add(&w->t->accepted, 1);
		conn_accepted(w, cfd, &peer);
	}
}

static void on_event_fd(struct worker *w)
{
	uint64_t v;
	ssize_t r = read(w->evfd, &v, sizeof(v));
	(void)r;
	struct conn *c = w->rwait;
	while (c) {
		struct conn *next = c->rnext;
		conn_resolved(c);       /* may unlink or free c */
		c = next;
	}
}

static int next_timeout(struct worker *w, uint64_t now)
{
	uint64_t min = UINT64_MAX;
	for (int s = 0; s < CS_NSTATES; s++)
		if (w->lists[s].head && w->lists[s].head->deadline < min)
			min = w->lists[s].head->deadline;
	if (w->lpaused && w->lresume < min)
		min = w->lresume;
	if (min == UINT64_MAX)
		return -1;
	if (min <= now)
		return 0;
	return min - now > 60000 ? 60000 : (int)(min - now);
}

static void run_deadlines(struct worker *w, uint64_t now)
{
	for (int s = 0; s < CS_NSTATES; s++) {
		struct conn *c;
		while ((c = w->lists[s].head) && c->deadline <= now)
			conn_on_deadline(c);    /* moves or frees c */
	}
	if (w->lpaused && w->lresume <= now)
		listeners_enable(w, true);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[64];
	while (!atomic_load(&w->t->stop)) {
		int n = epoll_wait(w->ep, evs, ARRAY_SIZE(evs), next_timeout(w, moat_now_ms()));
		if (n < 0 && errno != EINTR) {
			log_error("tproxy: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag == TAG_LISTEN4 || tag == TAG_LISTEN6)
				on_listener(w, w->lfd[tag == TAG_LISTEN6]);
			else if (tag == TAG_EVENT)
				on_event_fd(w);
			else if (tag & 1)
				conn_on_upstream((struct conn *)(uintptr_t)(tag & ~(uint64_t)1),
						 evs[i].events);
			else
				conn_on_client((struct conn *)(uintptr_t)tag, evs[i].events);
		}
		run_deadlines(w, moat_now_ms());
		conn_reap(w);
	}
	for (int s = 0; s < CS_NSTATES; s++)
		while (w->lists[s].head)
			conn_close(w->lists[s].head, "shutdown", false);
	conn_reap(w);
	return NULL;
}

static int open_listener(int family, uint16_t port, struct moat_error *e)
{
	_cleanup_close_ int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return moat_error_errno(e, errno, "tproxy: socket");
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		return moat_error_errno(e, errno, "tproxy: SO_REUSEPORT");
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		sl = sizeof(*s);
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0)
			return moat_error_errno(e, errno, "tproxy: IP_TRANSPARENT");
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		sl = sizeof(*s);
		if (setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0)
			return moat_error_errno(e, errno, "tproxy: IPV6_TRANSPARENT");
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
		return moat_error_errno(e, errno, "tproxy: bind port %u", port);
	if (listen(fd, 1024) < 0)
		return moat_error_errno(e, errno, "tproxy: listen");
	return moat_steal_fd(&fd);
}

static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void worker_free(struct worker *w)
{
	if (!w)
		return;
	for (int i = 0; i < 2; i++)
		if (w->lfd[i] >= 0)
			close(w->lfd[i]);
	if (w->ep >= 0)
		close(w->ep);
	if (w->evfd >= 0)
		close(w->evfd);
	while (w->pool) {
		struct pipe_buf *p = w->pool;
		w->pool = p->next;
		close(p->fd[0]);
		close(p->fd[1]);
		free(p);
	}
	free(w);
}

static int worker_new(struct tproxy *t, struct worker **out, struct moat_error *e)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return moat_error_errno(e, ENOMEM, "tproxy");
	w->t = t;
	w->lfd[0] = w->lfd[1] = -1;
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->ep < 0 || w->evfd < 0) {
		int err = errno;
		worker_free(w);
		return moat_error_errno(e, err, "tproxy: epoll");
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_EVENT };
	epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ev);

	int fd = open_listener(AF_INET, t->port4, e);
	if (fd < 0) {
		worker_free(w);
		return fd;
	}
	w->lfd[0] = fd;
	if (!t->port4)
		t->port4 = bound_port(fd);
	if (t->port6 || t->n_workers == 0) {
		struct moat_error e6 = { 0 };
		fd = open_listener(AF_INET6, t->port4, &e6);
		if (fd >= 0) {
			w->lfd[1] = fd;
			t->port6 = t->port4;
		} else if (t->port6) {
			worker_free(w);
			*e = e6;
			return fd;
		} else {
			log_warn("%s (IPv6 not proxied)", e6.msg);
		}
	}
	listeners_enable(w, true);
	*out = w;
	return 0;
}

static void set_defaults(struct tproxy_config *c)
{
	if (!c->first_bytes_timeout_ms)
		c->first_bytes_timeout_ms = 10000;
	if (!c->connect_timeout_ms)
		c->connect_timeout_ms = 10000;
	if (!c->idle_timeout_ms)
		c->idle_timeout_ms = 300000;
	if (!c->max_conns)
		c->max_conns = 4096;
	if (c->workers > 64)
		c->workers = 64;
	if (!c->workers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n > 0 ? (unsigned)(n > 64 ? 64 : n) : 1;
	}
}

int tproxy_start(const struct tproxy_config *cfg, struct tproxy **out, struct moat_error *e)
{
	if (!cfg || !cfg->policy)
		return moat_error_set(e, EINVAL, "tproxy: no policy");
	struct tproxy *t = calloc(1, sizeof(*t));
	if (!t)
		return moat_error_errno(e, ENOMEM, "tproxy");
	t->cfg = *cfg;
	set_defaults(&t->cfg);
	int r = -ENOMEM;
	if (cfg->n_local_addrs) {
		t->local_addrs = calloc(cfg->n_local_addrs, sizeof(*t->local_addrs));
		if (!t->local_addrs)
			goto nomem;
		memcpy(t->local_addrs, cfg->local_addrs, cfg->n_local_addrs * sizeof(*t->local_addrs));
	}
	t->cfg.local_addrs = t->local_addrs;
	t->workers = calloc(t->cfg.workers, sizeof(*t->workers));
	if (!t->workers)
		goto nomem;
	for (unsigned i = 0; i < t->cfg.workers; i++) {
		r = worker_new(t, &t->workers[i], e);
		if (r < 0)
			goto fail;
		t->n_workers++;
	}
	if (t->cfg.resolve_fallback) {
		int fds[64];
		for (unsigned i = 0; i < t->n_workers; i++)
			fds[i] = t->workers[i]->evfd;
		t->res = resolver_new(2, fds, t->n_workers, e);
		if (!t->res) {
			r = -(e && e->code ? e->code : ENOMEM);
			goto fail;
		}
	}
	for (unsigned i = 0; i < t->n_workers; i++) {
		int rc = pthread_create(&t->workers[i]->thread, NULL, worker_main, t->workers[i]);
		if (rc) {
			r = moat_error_errno(e, rc, "tproxy: worker thread");
			goto fail;
		}
		t->workers[i]->started = true;
	}
	*out = t;
	return 0;
nomem:
	r = moat_error_errno(e, ENOMEM, "tproxy");
fail:
	tproxy_stop(t);
	return r;
}

uint16_t tproxy_port(const struct tproxy *t, int family)
{
	return family == AF_INET6 ? t->port6 : t->port4;
}

void tproxy_stop(struct tproxy *t)
{
	if (!t)
		return;
	atomic_store(&t->stop, true);
	for (unsigned i = 0; i < t->n_workers; i++) {
		uint64_t one = 1;
		ssize_t w = write(t->workers[i]->evfd, &one, sizeof(one));
		(void)w;
	}
	for (unsigned i = 0; i < t->n_workers; i++)
		if (t->workers[i]->started)
			pthread_join(t->workers[i]->thread, NULL);
	/* connections hold resolver entries: workers are done before it goes */
	resolver_free(t->res);
	for (unsigned i = 0; i < t->n_workers; i++)
		worker_free(t->workers[i]);
	free(t->workers);
	free(t->local_addrs);
	free(t);
}

void tproxy_stats(const struct tproxy *t, struct tproxy_stats *s)
{
	s->accepted = atomic_load(&t->accepted);
	s->allowed = atomic_load(&t->allowed);
	s->denied = atomic_load(&t->denied);
	s->active = atomic_load(&t->active);
}

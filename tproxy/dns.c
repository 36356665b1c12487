#include "tproxy/dns.h"
#include "tproxy/dns_internal.h"
#include "common/moat.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* One thread, one epoll loop: listeners, TCP clients, upstream sockets and a
 * stop eventfd.  Nothing blocks; deadlines are checked after every wakeup,
 * and epoll_wait sleeps at most until the earliest one. */

/* ---- small helpers ---- */

void dnsf_sa_addr(const struct sockaddr_storage *ss, int *family, const void **addr,
		  uint16_t *port)
{
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		*family = AF_INET6;
		*addr = &s6->sin6_addr;
		*port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
		*family = AF_INET;
		*addr = &s4->sin_addr;
		*port = ntohs(s4->sin_port);
	}
}

socklen_t dnsf_sa_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

int dnsf_ep_add(struct dnsf *d, struct ev *ev, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = ev };
	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, ev->fd, &ee);
}

void dnsf_ep_mod(struct dnsf *d, struct ev *ev, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = ev };
	epoll_ctl(d->epfd, EPOLL_CTL_MOD, ev->fd, &ee);
}

void dnsf_ev_close(struct dnsf *d, struct ev *ev)
{
	if (ev->fd >= 0) {
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
		close(ev->fd);
		ev->fd = -1;
	}
}

/* ---- listeners and clients ---- */

static void on_udp_listen(struct dnsf *d, struct listener *l)
{
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage client = { 0 }, dst = { 0 };
		char cbuf[256];
		struct iovec iov = { d->scratch, sizeof(d->scratch) };
		struct msghdr mh = {
			.msg_name = &client, .msg_namelen = sizeof(client),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
		};
		ssize_t n = recvmsg(l->ev.fd, &mh, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		bool have_dst = false;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			if ((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_ORIGDSTADDR &&
			     cm->cmsg_len >= CMSG_LEN(sizeof(struct sockaddr_in))) ||
			    (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_ORIGDSTADDR &&
			     cm->cmsg_len >= CMSG_LEN(sizeof(struct sockaddr_in6)))) {
				memcpy(&dst, CMSG_DATA(cm), cm->cmsg_len - CMSG_LEN(0));
				have_dst = true;
			}
		}
		if (!have_dst || (mh.msg_flags & MSG_TRUNC))
			continue;
		dnsf_handle_query(d, false, NULL, &client, &dst, d->scratch, (size_t)n);
	}
}

static void on_tcp_listen(struct dnsf *d, struct listener *l)
{
	for (int i = 0; i < 16; i++) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		int fd = accept4(l->ev.fd, (struct sockaddr *)&peer, &pl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct tconn *c = NULL;
		if (d->n_conns >= DNSF_MAX_TCP || !(c = calloc(1, sizeof(*c))) ||
		    !(c->in = malloc(2 + DNS_MSG_MAX))) {
			if (c)
				free(c);
			close(fd);
			continue;
		}
		socklen_t ll = sizeof(c->local);
		getsockname(fd, (struct sockaddr *)&c->local, &ll);
		c->peer = peer;
		c->ev.kind = EV_TCP_CLIENT;
		c->ev.fd = fd;
		c->deadline = moat_now_ms() + DNSF_TCP_IDLE_MS;
		if (dnsf_ep_add(d, &c->ev, EPOLLIN) < 0) {
			free(c->in);
			free(c);
			close(fd);
			continue;
		}
		c->next = d->conns;
		d->conns = c;
		d->n_conns++;
	}
}

/* Answers the complete frames in the input buffer, one at a time. */
static void conn_process(struct dnsf *d, struct tconn *c)
{
	while (!c->ev.dead && !c->busy && c->out_off >= c->out_len) {
		const uint8_t *msg;
		size_t mlen;
		enum parse_result r = dns_tcp_frame(c->in, c->in_len, &msg, &mlen);
		if (r == PARSE_NEED_MORE)
			break;
		if (r == PARSE_INVALID) {
			dnsf_conn_close(d, c);
			return;
		}
		uint8_t *copy = malloc(mlen);
		if (!copy) {
			dnsf_conn_close(d, c);
			return;
		}
		memcpy(copy, msg, mlen);
		c->in_len -= 2 + mlen;
		memmove(c->in, c->in + 2 + mlen, c->in_len);
		dnsf_handle_query(d, true, c, &c->peer, &c->local, copy, mlen);
		free(copy);
	}
	if (!c->ev.dead)
		dnsf_conn_update(d, c);
}

static void on_tcp_client(struct dnsf *d, struct tconn *c, uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP)) {
		dnsf_conn_close(d, c);
		return;
	}
	if (events & EPOLLOUT) {
		dnsf_conn_flush(d, c);
		if (c->ev.dead)
			return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->busy &&
	    c->out_off >= c->out_len) {
		ssize_t n = read(c->ev.fd, c->in + c->in_len, 2 + DNS_MSG_MAX - c->in_len);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			dnsf_conn_close(d, c);
			return;
		}
		if (n > 0)
			c->in_len += (size_t)n;
	}
	conn_process(d, c);
}

/* ---- the loop ---- */

static void sweep(struct dnsf *d)
{
	for (struct tconn **pp = &d->conns; *pp;) {
		struct tconn *c = *pp;
		if (!c->ev.dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		d->n_conns--;
		free(c->in);
		free(c->out);
		free(c);
	}
	for (struct dq **pp = &d->dqs; *pp;) {
		struct dq *dq = *pp;
		if (!dq->ev.dead) {
			pp = &dq->next;
			continue;
		}
		*pp = dq->next;
		d->n_dqs--;
		free(dq->query);
		free(dq->rbuf);
		free(dq);
	}
}

static void check_deadlines(struct dnsf *d, uint64_t now)
{
	for (struct dq *dq = d->dqs; dq; dq = dq->next) {
		if (dq->ev.dead)
			continue;
		if (now >= dq->deadline)
			dnsf_dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
		else if (now >= dq->attempt_deadline)
			dnsf_dq_next_upstream(d, dq);
	}
	for (struct tconn *c = d->conns; c; c = c->next)
		if (!c->ev.dead && !c->busy && now >= c->deadline)
			dnsf_conn_close(d, c);
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++)
		if (d->rs[i].ev.fd >= 0 && now >= d->rs[i].last_used + DNSF_REPLY_IDLE_MS)
			dnsf_rsock_close(d, &d->rs[i]);
}

static int next_timeout(struct dnsf *d, uint64_t now)
{
	uint64_t t = now + 60000;
	for (struct dq *dq = d->dqs; dq; dq = dq->next)
		if (!dq->ev.dead && dq->attempt_deadline < t)
			t = dq->attempt_deadline;
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++)
		if (d->rs[i].ev.fd >= 0 && d->rs[i].last_used + DNSF_REPLY_IDLE_MS < t)
			t = d->rs[i].last_used + DNSF_REPLY_IDLE_MS;
	for (struct tconn *c = d->conns; c; c = c->next) {
		if (c->ev.dead)
			continue;
		if (c->kick)
			return 0;
		if (c->deadline < t)
			t = c->deadline;
	}
	return t <= now ? 0 : (int)(t - now);
}

static void *loop(void *arg)
{
	struct dnsf *d = arg;
	struct epoll_event evs[64];

	for (;;) {
		int n = epoll_wait(d->epfd, evs, ARRAY_SIZE(evs), next_timeout(d, moat_now_ms()));
		if (n < 0 && errno != EINTR) {
			log_error("dns: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct ev *ev = evs[i].data.ptr;
			if (ev->dead)
				continue;
			switch (ev->kind) {
			case EV_STOP:
				return NULL;
			case EV_UDP_LISTEN:
				on_udp_listen(d, (struct listener *)ev);
				break;
			case EV_UDP_REPLY: {
				struct rsock *rs = (struct rsock *)ev;
				struct sockaddr_storage addr = rs->addr;
				dnsf_rsock_drain(d, rs->ev.fd, &addr);
				break;
			}
			case EV_TCP_LISTEN:
				on_tcp_listen(d, (struct listener *)ev);
				break;
			case EV_TCP_CLIENT:
				on_tcp_client(d, (struct tconn *)ev, evs[i].events);
				break;
			case EV_UPSTREAM: {
				struct dq *dq = (struct dq *)ev;
				if (dq->tcp)
					dnsf_dq_on_tcp(d, dq, evs[i].events);
				else
					dnsf_dq_on_udp(d, dq);
				break;
			}
			}
		}
		check_deadlines(d, moat_now_ms());
		for (struct tconn *c = d->conns; c; c = c->next) {
			if (!c->ev.dead && c->kick) {
				c->kick = false;
				conn_process(d, c);
			}
		}
		sweep(d);
	}
	return NULL;
}

/* ---- setup ---- */

static int open_listener(struct dnsf *d, int family, int sotype, uint16_t port,
			 struct moat_error *e)
{
	_cleanup_close_ int fd = socket(family, sotype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_storage ss = { 0 };

	if (fd < 0)
		return moat_error_errno(e, errno, "DNS listener socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return moat_error_errno(e, errno, "SO_REUSEADDR");
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons(port);
		if (setsockopt(fd, SOL_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) < 0 ||
		    (sotype == SOCK_DGRAM &&
		     setsockopt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, &one, sizeof(one)) < 0))
			return moat_error_errno(e, errno, "DNS listener (IPv6) options");
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
		s4->sin_port = htons(port);
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
		    (sotype == SOCK_DGRAM &&
		     setsockopt(fd, SOL_IP, IP_RECVORIGDSTADDR, &one, sizeof(one)) < 0))
			return moat_error_errno(e, errno, "DNS listener options");
	}
	if (bind(fd, (struct sockaddr *)&ss, dnsf_sa_len(&ss)) < 0)
		return moat_error_errno(e, errno, "DNS listener bind port %u", port);
	if (sotype == SOCK_STREAM && listen(fd, 128) < 0)
		return moat_error_errno(e, errno, "DNS listener listen");
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return moat_error_errno(e, errno, "DNS listener getsockname");
	int fam;
	const void *a;
	uint16_t bound;
	dnsf_sa_addr(&ss, &fam, &a, &bound);

	struct listener *l = &d->lis[d->n_lis];
	l->ev.kind = sotype == SOCK_DGRAM ? EV_UDP_LISTEN : EV_TCP_LISTEN;
	l->ev.fd = fd;
	l->family = family;
	l->sotype = sotype;
	l->port = bound;
	if (dnsf_ep_add(d, &l->ev, EPOLLIN) < 0) {
		l->ev.fd = -1;
		return moat_error_errno(e, errno, "epoll_ctl");
	}
	moat_steal_fd(&fd);
	d->n_lis++;
	return 0;
}

static void dnsf_free(struct dnsf *d)
{
	for (struct tconn *c = d->conns; c; c = c->next)
		dnsf_conn_close(d, c);
	for (struct dq *dq = d->dqs; dq; dq = dq->next) {
		dq->conn = NULL;
		dnsf_ev_close(d, &dq->ev);
		dq->ev.dead = true;
	}
	sweep(d);
	for (size_t i = 0; i < d->n_lis; i++)
		dnsf_ev_close(d, &d->lis[i].ev);
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++)
		dnsf_ev_close(d, &d->rs[i].ev);
	dnsf_ev_close(d, &d->stop);
	if (d->epfd >= 0)
		close(d->epfd);
	free(d);
}

int dnsf_start(const struct dnsf_config *cfg, struct dnsf **out, struct moat_error *e)
{
	struct dnsf *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return moat_error_errno(e, ENOMEM, "DNS filter");
	d->epfd = -1;
	d->stop.fd = -1;
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++)
		d->rs[i].ev.fd = -1;
	d->stop.kind = EV_STOP;
	d->policy = cfg->policy;
	d->audit = cfg->audit;
	d->learned = cfg->learned;
	d->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
	d->https_empty = cfg->answer_https_svcb_empty;
	if (!d->policy) {
		r = moat_error_set(e, EINVAL, "DNS filter: no policy");
		goto fail;
	}
	if (cfg->upstreams && cfg->n_upstreams) {
		for (size_t i = 0; i < cfg->n_upstreams && i < DNSF_MAX_UPSTREAMS; i++)
			d->up[d->n_up++] = cfg->upstreams[i];
	} else if ((r = dnsf_read_resolv_conf(d, e)) < 0) {
		goto fail;
	}

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->stop.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->epfd < 0 || d->stop.fd < 0 || dnsf_ep_add(d, &d->stop, EPOLLIN) < 0) {
		r = moat_error_errno(e, errno, "DNS filter: epoll");
		goto fail;
	}

	/* one port for all four when the kernel lets us */
	static const struct { int family, sotype; } kinds[] = {
		{ AF_INET, SOCK_DGRAM }, { AF_INET, SOCK_STREAM },
		{ AF_INET6, SOCK_DGRAM }, { AF_INET6, SOCK_STREAM },
	};
	uint16_t port = 0;
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
		r = open_listener(d, kinds[i].family, kinds[i].sotype, port, e);
		if (r < 0 && port) {
			log_debug("dns: port %u: %s; taking another", port, e ? e->msg : "");
			r = open_listener(d, kinds[i].family, kinds[i].sotype, 0, e);
		}
		if (r < 0 && kinds[i].family == AF_INET6 &&
		    (r == -EAFNOSUPPORT || r == -EADDRNOTAVAIL)) {
			log_debug("dns: no IPv6 listener: %s", e ? e->msg : "");
			continue;
		}
		if (r < 0) {
			moat_error_prefix(e, "DNS filter");
			goto fail;
		}
		if (!port)
			port = d->lis[d->n_lis - 1].port;
	}
	if (e)
		e->code = 0;

	r = -pthread_create(&d->thread, NULL, loop, d);
	if (r < 0) {
		moat_error_errno(e, -r, "DNS filter thread");
		goto fail;
	}
	d->running = true;
	*out = d;
	return 0;
fail:
	dnsf_free(d);
	return r;
}

uint16_t dnsf_port(const struct dnsf *d, int family, int sotype)
{
	for (size_t i = 0; d && i < d->n_lis; i++)
		if (d->lis[i].family == family && d->lis[i].sotype == sotype)
			return d->lis[i].port;
	return 0;
}

void dnsf_stop(struct dnsf *d)
{
	if (!d)
		return;
	if (d->running) {
		uint64_t one = 1;
		if (write(d->stop.fd, &one, sizeof(one)) < 0)
			log_warn("dns: stop: %s", strerror(errno));
		pthread_join(d->thread, NULL);
	}
	dnsf_free(d);
}

#include "tproxy/dns.h"
#include "tproxy/dns_msg.h"
#include "tproxy/learned.h"
#include "common/audit.h"
#include "common/moat.h"
#include "profiles/profile.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>

/* One thread, one epoll loop: listeners, TCP clients, upstream sockets and a
 * stop eventfd.  Nothing blocks; deadlines are checked after every wakeup,
 * and epoll_wait sleeps at most until the earliest one. */

#define DNSF_MAX_INFLIGHT   256
#define DNSF_MAX_TCP        64
#define DNSF_TCP_IDLE_MS    10000
#define DNSF_TOTAL_MAX_MS   10000
#define DNSF_ANSWERS_JSON   1024

enum ev_kind { EV_UDP_LISTEN, EV_UDP_REPLY, EV_TCP_LISTEN, EV_TCP_CLIENT, EV_UPSTREAM,
	       EV_STOP };

struct ev {
	enum ev_kind kind;
	int fd;
	bool dead;              /* freed after the current batch of events */
};

struct listener {
	struct ev ev;
	int family, sotype;
	uint16_t port;
};

/* A transparent UDP socket bound to the address a client sent its query to
 * (under TPROXY a resolver's address and port 53) and connected to that
 * client: the replies come from it.  Connected, it can only ever receive
 * datagrams from that one client, never another sandbox's (another moat may
 * hold a socket bound to the same resolver address); what it receives are
 * that client's next queries, which the kernel now delivers here rather than
 * to the listener, so it is read like a listener too. */
struct rsock {
	struct ev ev;
	struct sockaddr_storage addr, peer;
	uint64_t last_used;
};

#define DNSF_REPLY_SOCKS   32
#define DNSF_REPLY_IDLE_MS 5000

struct dq;

struct tconn {
	struct ev ev;
	struct tconn *next;
	struct sockaddr_storage peer, local;
	uint8_t *in;            /* 2 + DNS_MSG_MAX */
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_off;
	struct dq *busy;        /* the query being answered */
	bool kick;              /* buffered queries to look at after this batch */
	uint64_t deadline;
};

struct dq {
	struct ev ev;           /* the upstream socket */
	struct dq *next;
	bool client_tcp;
	struct sockaddr_storage client, dst;
	struct tconn *conn;     /* TCP client; NULL once it went away */
	struct dns_query q;
	uint8_t *query;
	size_t qlen;
	uint8_t up[2 + DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4 + 11];  /* length prefix + query */
	size_t uplen;
	uint16_t up_id;
	size_t ui;
	bool tcp, tcp_connected;
	size_t woff;
	uint8_t *rbuf;          /* TCP reply: 2 + DNS_MSG_MAX */
	size_t rlen;
	uint64_t attempt_deadline, deadline;
};

struct dnsf {
	const struct policy *policy;
	struct audit *audit;
	struct learned *learned;
	struct dns_upstream up[DNSF_MAX_UPSTREAMS];
	size_t n_up;
	unsigned timeout_ms;
	bool https_empty;

	int epfd;
	struct ev stop;
	struct listener lis[4];
	struct rsock rs[DNSF_REPLY_SOCKS];
	size_t n_lis;
	struct tconn *conns;
	size_t n_conns;
	struct dq *dqs;
	size_t n_dqs;
	pthread_t thread;
	bool running;
	uint8_t scratch[DNS_MSG_MAX + 1];
	uint8_t drain_buf[DNS_MSG_MAX + 1];   /* rsock_drain's own: it runs inside replies */
	bool draining;
};

/* ---- small helpers ---- */

static void sa_addr(const struct sockaddr_storage *ss, int *family, const void **addr,
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

static socklen_t sa_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static void audit_sa(struct audit_rec *r, const char *key, const struct sockaddr_storage *ss)
{
	int family;
	const void *addr;
	uint16_t port;
	sa_addr(ss, &family, &addr, &port);
	audit_addr(r, key, family, addr);
}

static uint16_t random_id(void)
{
	uint16_t id;
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint16_t)(moat_now_ns() ^ (uintptr_t)&id);
	return id;
}

static int ep_add(struct dnsf *d, struct ev *ev, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = ev };
	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, ev->fd, &ee);
}

static void ep_mod(struct dnsf *d, struct ev *ev, uint32_t events)
{
	struct epoll_event ee = { .events = events, .data.ptr = ev };
	epoll_ctl(d->epfd, EPOLL_CTL_MOD, ev->fd, &ee);
}

static void ev_close(struct dnsf *d, struct ev *ev)
{
	if (ev->fd >= 0) {
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, ev->fd, NULL);
		close(ev->fd);
		ev->fd = -1;
	}
}

/* ---- audit ---- */

struct verdict {
	const char *verdict, *reason;
	int rcode;
	char answers[DNSF_ANSWERS_JSON];
	size_t alen;
	bool has_answers;
	bool tc;                /* relayed truncated: the client retries over TCP */
	unsigned omitted;       /* addresses that did not fit in the audit line */
};

static void audit_query(struct dnsf *d, const struct dns_query *q, bool parsed, bool tcp,
			const struct sockaddr_storage *client, const struct sockaddr_storage *dst,
			struct verdict *v)
{
	struct audit_rec r;
	char tb[16], rb[16];

	if (!d->audit)
		return;
	audit_begin(&r, "dns", v->verdict, v->reason);
	if (parsed || q->qname_len)
		audit_strn(&r, "qname", q->qname, q->qname_len);
	if (parsed)
		audit_str(&r, "qtype", dns_type_name(q->qtype, tb, sizeof(tb)));
	if (v->rcode >= 0)
		audit_str(&r, "rcode", dns_rcode_name(v->rcode, rb, sizeof(rb)));
	audit_sa(&r, "src", client);
	audit_sa(&r, "dst", dst);
	audit_str(&r, "proto", tcp ? "tcp" : "udp");
	if (v->has_answers) {
		if (v->alen + 2 <= sizeof(v->answers)) {
			v->answers[v->alen++] = ']';
			v->answers[v->alen] = '\0';
		}
		audit_raw(&r, "answers", v->answers);
		if (v->omitted)
			audit_int(&r, "answers_omitted", v->omitted);
		if (v->tc)
			audit_bool(&r, "truncated", true);
	}
	audit_commit(d->audit, &r);
}

/* ---- replies to clients ---- */

static bool sa_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
	return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

static void handle_query(struct dnsf *d, bool tcp, struct tconn *c,
			 const struct sockaddr_storage *client, const struct sockaddr_storage *dst,
			 const uint8_t *buf, size_t len);

/* Queries that reached a reply socket are queries to its address. */
static void rsock_drain(struct dnsf *d, int fd, const struct sockaddr_storage *addr)
{
	if (d->draining)
		return;         /* a socket evicted while draining another: rare, dropped */
	d->draining = true;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage client = { 0 };
		socklen_t cl = sizeof(client);
		ssize_t n = recvfrom(fd, d->drain_buf, sizeof(d->drain_buf),
				     MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&client, &cl);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if ((size_t)n > DNS_MSG_MAX)
			continue;
		handle_query(d, false, NULL, &client, addr, d->drain_buf, (size_t)n);
	}
	d->draining = false;
}

static void rsock_close(struct dnsf *d, struct rsock *rs)
{
	if (rs->ev.fd < 0)
		return;
	/* out of the table first: replies made while draining get a new socket */
	int fd = rs->ev.fd;
	struct sockaddr_storage addr = rs->addr;
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
	rs->ev.fd = -1;
	rsock_drain(d, fd, &addr);
	close(fd);
}

static struct rsock *rsock_get(struct dnsf *d, const struct sockaddr_storage *dst,
			       const struct sockaddr_storage *client)
{
	struct rsock *lru = NULL;
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++) {
		struct rsock *rs = &d->rs[i];
		if (rs->ev.fd >= 0 && sa_equal(&rs->addr, dst) && sa_equal(&rs->peer, client))
			return rs;
		if (!lru || (lru->ev.fd >= 0 && (rs->ev.fd < 0 || rs->last_used < lru->last_used)))
			lru = rs;
	}
	rsock_close(d, lru);
	if (lru->ev.fd >= 0)
		return NULL;    /* taken while draining; rare, the reply is dropped */

	int family = dst->ss_family, one = 1;
	_cleanup_close_ int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return NULL;
	if (family == AF_INET6)
		setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
	else
		setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)dst, sa_len(dst)) < 0 ||
	    connect(fd, (const struct sockaddr *)client, sa_len(client)) < 0) {
		log_debug("dns: cannot reply from the original destination: %s", strerror(errno));
		return NULL;
	}
	lru->ev.kind = EV_UDP_REPLY;
	lru->ev.fd = fd;
	lru->ev.dead = false;
	lru->addr = *dst;
	lru->peer = *client;
	if (ep_add(d, &lru->ev, EPOLLIN) < 0) {
		lru->ev.fd = -1;
		return NULL;
	}
	moat_steal_fd(&fd);
	return lru;
}

/* The reply must come from the address the client sent to, which under
 * TPROXY is not ours: a transparent socket bound to it sends it. */
static void udp_reply(struct dnsf *d, const struct sockaddr_storage *dst,
		      const struct sockaddr_storage *client, const uint8_t *msg, size_t len)
{
	struct rsock *rs = rsock_get(d, dst, client);
	if (!rs)
		return;
	rs->last_used = moat_now_ms();
	if (send(rs->ev.fd, msg, len, 0) < 0)
		log_debug("dns: reply: %s", strerror(errno));
}

static void conn_update(struct dnsf *d, struct tconn *c)
{
	uint32_t ev = 0;
	if (c->out_off < c->out_len)
		ev |= EPOLLOUT;
	else if (!c->busy)
		ev |= EPOLLIN;
	ep_mod(d, &c->ev, ev);
}

static void conn_close(struct dnsf *d, struct tconn *c)
{
	if (c->busy)
		c->busy->conn = NULL;
	c->busy = NULL;
	ev_close(d, &c->ev);
	c->ev.dead = true;
}

static void conn_flush(struct dnsf *d, struct tconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->ev.fd, c->out + c->out_off, c->out_len - c->out_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_close(d, c);
			break;
		}
		c->out_off += (size_t)w;
	}
}

static void conn_send(struct dnsf *d, struct tconn *c, const uint8_t *msg, size_t len)
{
	uint8_t *o = malloc(len + 2);
	if (!o) {
		conn_close(d, c);
		return;
	}
	o[0] = (uint8_t)(len >> 8);
	o[1] = (uint8_t)len;
	memcpy(o + 2, msg, len);
	free(c->out);
	c->out = o;
	c->out_len = len + 2;
	c->out_off = 0;
	c->deadline = moat_now_ms() + DNSF_TCP_IDLE_MS;
	conn_flush(d, c);
}

static void reply(struct dnsf *d, bool tcp, struct tconn *c, const struct sockaddr_storage *dst,
		  const struct sockaddr_storage *client, const uint8_t *msg, size_t len)
{
	if (!len)
		return;
	if (tcp) {
		if (c)
			conn_send(d, c, msg, len);
	} else {
		udp_reply(d, dst, client, msg, len);
	}
}

/* ---- upstream queries ---- */

static void dq_finish(struct dnsf *d, struct dq *dq)
{
	if (dq->conn) {
		/* the next buffered query is answered after this batch of events,
		 * not from here: no recursion through the query path */
		dq->conn->busy = NULL;
		dq->conn->kick = true;
		dq->conn = NULL;
	}
	ev_close(d, &dq->ev);
	dq->ev.dead = true;
}

static void dq_local_reply(struct dnsf *d, struct dq *dq, int rcode, const char *reason)
{
	uint8_t out[DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4 + 11];
	struct verdict v = { .verdict = "allow", .reason = reason, .rcode = rcode };
	size_t n = dns_build_response(out, sizeof(out), dq->query, dq->qlen, &dq->q, rcode, false);
	reply(d, dq->client_tcp, dq->conn, &dq->dst, &dq->client, out, n);
	audit_query(d, &dq->q, true, dq->client_tcp, &dq->client, &dq->dst, &v);
	dq_finish(d, dq);
}

struct learn_ctx {
	struct dnsf *d;
	struct verdict *v;
	bool learn;             /* false when the client is not sent the records */
};

static void on_answer(void *arg, const struct dns_answer *a)
{
	struct learn_ctx *lc = arg;
	struct verdict *v = lc->v;
	char txt[INET6_ADDRSTRLEN];

	if (!lc->learn)
		return;
	if (lc->d->learned)
		learned_add(lc->d->learned, a->name, a->name_len, a->family, a->addr, a->ttl);
	if (!inet_ntop(a->family, a->addr, txt, sizeof(txt)))
		return;
	size_t tl = strlen(txt);
	/* room for ",\"...\"" and the closing "]" */
	if (v->alen + tl + 5 > sizeof(v->answers)) {
		v->omitted++;
		return;
	}
	if (v->alen > 1)
		v->answers[v->alen++] = ',';
	v->answers[v->alen++] = '"';
	memcpy(v->answers + v->alen, txt, tl);
	v->alen += tl;
	v->answers[v->alen++] = '"';
}

static void dq_deliver(struct dnsf *d, struct dq *dq, uint8_t *msg, size_t len)
{
	struct verdict v = {
		.verdict = "allow",
		.reason = d->policy->allow_all ? "allow-all" : "allow-host",
		.has_answers = true,
	};
	/* too big for the client's UDP: an empty truncated reply sends it to TCP */
	bool truncate = !dq->client_tcp && len > dns_client_udp_size(&dq->q);
	struct learn_ctx lc = { d, &v, !truncate };
	v.tc = truncate;
	struct dns_reply_info info;
	struct dns_query uq = dq->q;

	v.answers[0] = '[';
	v.alen = 1;
	uq.id = dq->up_id;
	if (dns_parse_answers(msg, len, &uq, &info, on_answer, &lc) != PARSE_OK) {
		dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
		return;
	}
	v.rcode = info.rcode;
	msg[0] = (uint8_t)(dq->q.id >> 8);
	msg[1] = (uint8_t)dq->q.id;
	if (truncate) {
		uint8_t out[DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4 + 11];
		size_t n = dns_build_response(out, sizeof(out), dq->query, dq->qlen, &dq->q,
					      info.rcode, false);
		if (n)
			out[2] |= 0x02;
		reply(d, false, NULL, &dq->dst, &dq->client, out, n);
	} else {
		reply(d, dq->client_tcp, dq->conn, &dq->dst, &dq->client, msg, len);
	}
	audit_query(d, &dq->q, true, dq->client_tcp, &dq->client, &dq->dst, &v);
	dq_finish(d, dq);
}

static int dq_send_tcp(struct dnsf *d, struct dq *dq);

/* Starts the next attempt: the current upstream over TCP when tcp is set,
 * else the next upstream over UDP.  Ends the query when none is left. */
static void dq_attempt(struct dnsf *d, struct dq *dq, bool tcp)
{
	uint64_t now = moat_now_ms();

	ev_close(d, &dq->ev);
	dq->tcp = tcp;
	dq->tcp_connected = false;
	dq->woff = 0;
	dq->rlen = 0;
	for (; dq->ui < d->n_up && now < dq->deadline; dq->ui++, tcp = false, dq->tcp = false) {
		const struct dns_upstream *u = &d->up[dq->ui];
		dq->up_id = random_id();
		size_t n = dns_build_query(dq->up + 2, sizeof(dq->up) - 2, dq->query, dq->qlen,
					   &dq->q, dq->up_id);
		if (!n)
			break;
		dq->uplen = n;
		dq->up[0] = (uint8_t)(n >> 8);
		dq->up[1] = (uint8_t)n;
		int fd = socket(u->addr.ss_family,
				(tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		dq->ev.fd = fd;
		dq->attempt_deadline = now + d->timeout_ms;
		if (dq->attempt_deadline > dq->deadline)
			dq->attempt_deadline = dq->deadline;
		if (connect(fd, (const struct sockaddr *)&u->addr, u->len) < 0 &&
		    !(tcp && errno == EINPROGRESS)) {
			ev_close(d, &dq->ev);
			continue;
		}
		if (tcp) {
			if (ep_add(d, &dq->ev, EPOLLOUT) < 0) {
				ev_close(d, &dq->ev);
				continue;
			}
			return;
		}
		if (send(fd, dq->up + 2, n, 0) < 0 || ep_add(d, &dq->ev, EPOLLIN) < 0) {
			ev_close(d, &dq->ev);
			continue;
		}
		return;
	}
	dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
}

static void dq_next_upstream(struct dnsf *d, struct dq *dq)
{
	dq->ui++;
	dq_attempt(d, dq, false);
}

/* What a reply on the UDP socket means: relay it, retry over TCP, try the
 * next upstream, or ignore it (wrong id or question: keep waiting). */
static void dq_on_udp(struct dnsf *d, struct dq *dq)
{
	for (int i = 0; i < 16 && !dq->ev.dead; i++) {
		ssize_t n = recv(dq->ev.fd, d->scratch, sizeof(d->scratch), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				dq_next_upstream(d, dq);   /* ICMP unreachable and friends */
			return;
		}
		struct dns_reply_info info;
		struct dns_query uq = dq->q;
		uq.id = dq->up_id;
		enum parse_result r = dns_parse_answers(d->scratch, (size_t)n, &uq, &info, NULL, NULL);
		if (info.id != dq->up_id || n < DNS_HDR_LEN || !(d->scratch[2] & 0x80))
			continue;
		if (info.tc) {
			dq_attempt(d, dq, true);
			return;
		}
		if (r != PARSE_OK)
			continue;
		if ((info.rcode == DNS_RCODE_SERVFAIL || info.rcode == DNS_RCODE_REFUSED) &&
		    dq->ui + 1 < d->n_up) {
			dq_next_upstream(d, dq);
			return;
		}
		dq_deliver(d, dq, d->scratch, (size_t)n);
		return;
	}
}

static int dq_send_tcp(struct dnsf *d, struct dq *dq)
{
	while (dq->woff < dq->uplen + 2) {
		ssize_t w = write(dq->ev.fd, dq->up + dq->woff, dq->uplen + 2 - dq->woff);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		dq->woff += (size_t)w;
	}
	ep_mod(d, &dq->ev, EPOLLIN);
	return 0;
}

static void dq_on_tcp(struct dnsf *d, struct dq *dq, uint32_t events)
{
	if (!dq->tcp_connected) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(dq->ev.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			dq_next_upstream(d, dq);
			return;
		}
		dq->tcp_connected = true;
	}
	if (dq->woff < dq->uplen + 2) {
		if (dq_send_tcp(d, dq) < 0)
			dq_next_upstream(d, dq);
		return;
	}
	if (!dq->rbuf && !(dq->rbuf = malloc(2 + DNS_MSG_MAX))) {
		dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
		return;
	}
	for (;;) {
		ssize_t n = read(dq->ev.fd, dq->rbuf + dq->rlen, 2 + DNS_MSG_MAX - dq->rlen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				dq_next_upstream(d, dq);
			return;
		}
		if (n == 0) {
			dq_next_upstream(d, dq);
			return;
		}
		dq->rlen += (size_t)n;
		const uint8_t *msg;
		size_t mlen;
		enum parse_result r = dns_tcp_frame(dq->rbuf, dq->rlen, &msg, &mlen);
		if (r == PARSE_NEED_MORE)
			continue;
		if (r == PARSE_INVALID) {
			dq_next_upstream(d, dq);
			return;
		}
		dq_deliver(d, dq, dq->rbuf + 2, mlen);
		return;
	}
}

/* ---- the policy ---- */

static void handle_query(struct dnsf *d, bool tcp, struct tconn *c,
			 const struct sockaddr_storage *client, const struct sockaddr_storage *dst,
			 const uint8_t *buf, size_t len)
{
	struct dns_query q;
	uint8_t out[DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4 + 11];
	struct verdict v = { .verdict = "deny", .rcode = -1 };
	size_t n = 0;

	enum parse_result pr = dns_parse_query(buf, len, &q);
	if (pr != PARSE_OK) {
		v.reason = q.rcode_hint == DNS_RCODE_NOTIMP ? "opcode-not-query" : "malformed";
		v.rcode = q.rcode_hint;
		n = dns_build_response(out, sizeof(out), buf, len, &q, q.rcode_hint, false);
		if (!n)
			v.rcode = -1;   /* dropped */
		goto local;
	}
	if (q.rcode_hint) {
		v.reason = q.rcode_hint == DNS_RCODE_BADVERS ? "edns-version" : "class-not-in";
		v.rcode = q.rcode_hint;
		goto build;
	}
	if (q.qtype == DNS_TYPE_ANY) {
		v.reason = "qtype-any";
		v.rcode = DNS_RCODE_REFUSED;
		goto build;
	}
	if (!d->policy->allow_all) {
		if (q.name_has_odd_chars ||
		    !policy_name_resolvable(d->policy, q.qname, q.qname_len)) {
			v.reason = "host-not-allowed";
			v.rcode = DNS_RCODE_NXDOMAIN;
			goto build;
		}
		if (d->https_empty && (q.qtype == DNS_TYPE_HTTPS || q.qtype == DNS_TYPE_SVCB)) {
			v.verdict = "allow";
			v.reason = "https-svcb-empty";
			v.rcode = DNS_RCODE_NOERROR;
			goto build;
		}
	}
	if (d->n_dqs >= DNSF_MAX_INFLIGHT) {
		v.verdict = "allow";
		v.reason = "overloaded";
		v.rcode = DNS_RCODE_SERVFAIL;
		goto build;
	}

	struct dq *dq = calloc(1, sizeof(*dq));
	uint8_t *copy = malloc(len);
	if (!dq || !copy) {
		free(dq);
		free(copy);
		v.verdict = "allow";
		v.reason = "upstream-failed";
		v.rcode = DNS_RCODE_SERVFAIL;
		goto build;
	}
	memcpy(copy, buf, len);
	dq->ev.kind = EV_UPSTREAM;
	dq->ev.fd = -1;
	dq->client_tcp = tcp;
	dq->client = *client;
	dq->dst = *dst;
	dq->conn = c;
	dq->q = q;
	dq->query = copy;
	dq->qlen = len;
	uint64_t total = (uint64_t)d->timeout_ms * (d->n_up + 1);
	dq->deadline = moat_now_ms() + (total > DNSF_TOTAL_MAX_MS ? DNSF_TOTAL_MAX_MS : total);
	dq->next = d->dqs;
	d->dqs = dq;
	d->n_dqs++;
	if (c)
		c->busy = dq;
	dq_attempt(d, dq, false);
	return;

build:
	n = dns_build_response(out, sizeof(out), buf, len, &q, v.rcode, false);
local:
	reply(d, tcp, c, dst, client, out, n);
	audit_query(d, &q, pr == PARSE_OK, tcp, client, dst, &v);
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
		handle_query(d, false, NULL, &client, &dst, d->scratch, (size_t)n);
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
		if (ep_add(d, &c->ev, EPOLLIN) < 0) {
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
			conn_close(d, c);
			return;
		}
		uint8_t *copy = malloc(mlen);
		if (!copy) {
			conn_close(d, c);
			return;
		}
		memcpy(copy, msg, mlen);
		c->in_len -= 2 + mlen;
		memmove(c->in, c->in + 2 + mlen, c->in_len);
		handle_query(d, true, c, &c->peer, &c->local, copy, mlen);
		free(copy);
	}
	if (!c->ev.dead)
		conn_update(d, c);
}

static void on_tcp_client(struct dnsf *d, struct tconn *c, uint32_t events)
{
	if (events & (EPOLLERR | EPOLLHUP)) {
		conn_close(d, c);
		return;
	}
	if (events & EPOLLOUT) {
		conn_flush(d, c);
		if (c->ev.dead)
			return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->busy &&
	    c->out_off >= c->out_len) {
		ssize_t n = read(c->ev.fd, c->in + c->in_len, 2 + DNS_MSG_MAX - c->in_len);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_close(d, c);
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
			dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
		else if (now >= dq->attempt_deadline)
			dq_next_upstream(d, dq);
	}
	for (struct tconn *c = d->conns; c; c = c->next)
		if (!c->ev.dead && !c->busy && now >= c->deadline)
			conn_close(d, c);
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++)
		if (d->rs[i].ev.fd >= 0 && now >= d->rs[i].last_used + DNSF_REPLY_IDLE_MS)
			rsock_close(d, &d->rs[i]);
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
				rsock_drain(d, rs->ev.fd, &addr);
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
					dq_on_tcp(d, dq, evs[i].events);
				else
					dq_on_udp(d, dq);
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

int dnsf_parse_upstream(const char *s, struct dns_upstream *out, struct moat_error *e)
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *port = NULL;
	unsigned long long p = 53;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || (size_t)(rb - s - 1) >= sizeof(host))
			goto bad;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1])
			goto bad;
	} else {
		const char *colon = strchr(s, ':');
		size_t hl = strlen(s);
		if (colon && !strchr(colon + 1, ':')) {
			hl = (size_t)(colon - s);
			port = colon + 1;
		}
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	if (port && moat_parse_uint(port, 1, 65535, &p) < 0)
		goto bad;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
	if (s[0] != '[' && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		out->len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		out->len = sizeof(*s6);
		return 0;
	}
bad:
	return moat_error_set(e, EINVAL, "bad DNS upstream \"%s\" (want ADDR, ADDR:PORT or [V6]:PORT)",
			      s);
}

static int read_resolv_conf(struct dnsf *d, struct moat_error *e)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = moat_read_file("/etc/resolv.conf", 1 << 20, &text, &len, e);
	if (r < 0)
		return r;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line && d->n_up < DNSF_MAX_UPSTREAMS;
	     line = strtok_r(NULL, "\n", &save)) {
		char addr[128];
		if (sscanf(line, " nameserver %127s", addr) != 1)
			continue;
		char *pct = strchr(addr, '%');
		if (pct)
			*pct = '\0';     /* a scope id: link-local resolvers are not supported */
		if (dnsf_parse_upstream(addr, &d->up[d->n_up], NULL) == 0)
			d->n_up++;
	}
	if (!d->n_up)
		return moat_error_set(e, ENOENT, "/etc/resolv.conf: no usable nameserver");
	return 0;
}

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
	if (bind(fd, (struct sockaddr *)&ss, sa_len(&ss)) < 0)
		return moat_error_errno(e, errno, "DNS listener bind port %u", port);
	if (sotype == SOCK_STREAM && listen(fd, 128) < 0)
		return moat_error_errno(e, errno, "DNS listener listen");
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		return moat_error_errno(e, errno, "DNS listener getsockname");
	int fam;
	const void *a;
	uint16_t bound;
	sa_addr(&ss, &fam, &a, &bound);

	struct listener *l = &d->lis[d->n_lis];
	l->ev.kind = sotype == SOCK_DGRAM ? EV_UDP_LISTEN : EV_TCP_LISTEN;
	l->ev.fd = fd;
	l->family = family;
	l->sotype = sotype;
	l->port = bound;
	if (ep_add(d, &l->ev, EPOLLIN) < 0) {
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
		conn_close(d, c);
	for (struct dq *dq = d->dqs; dq; dq = dq->next) {
		dq->conn = NULL;
		ev_close(d, &dq->ev);
		dq->ev.dead = true;
	}
	sweep(d);
	for (size_t i = 0; i < d->n_lis; i++)
		ev_close(d, &d->lis[i].ev);
	for (size_t i = 0; i < DNSF_REPLY_SOCKS; i++)
		ev_close(d, &d->rs[i].ev);
	ev_close(d, &d->stop);
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
	} else if ((r = read_resolv_conf(d, e)) < 0) {
		goto fail;
	}

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->stop.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->epfd < 0 || d->stop.fd < 0 || ep_add(d, &d->stop, EPOLLIN) < 0) {
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

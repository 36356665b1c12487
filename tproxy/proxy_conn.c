/* A connection from accept to the first decision: reading the ClientHello
 * or request head under the first-bytes deadline, judging it, waiting for a
 * forward lookup when anti-fronting needs one, connecting upstream, and
 * answering denials (TLS alert, HTTP 403, or a reset). */
#include "tproxy/proxy_internal.h"
#include "common/audit.h"
#include "common/moat.h"
#include "profiles/profile.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>

#define LINGER_MS 2000
#define SNIFF_MIN 8             /* bytes needed before calling a stream neither TLS nor HTTP */
#define TARGET_LOG_MAX 256

static void set_addr(const struct sockaddr_storage *ss, uint8_t *addr, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		memcpy(addr, &s->sin_addr, 4);
		*port = ntohs(s->sin_port);
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		memcpy(addr, &s->sin6_addr, 16);
		*port = ntohs(s->sin6_port);
	}
}

static void audit_endpoints(struct audit_rec *r, const struct conn *c)
{
	audit_addr(r, "src", c->family, c->src);
	audit_int(r, "sport", c->sport);
	audit_addr(r, "dst", c->family, c->dst);
	audit_int(r, "dport", c->dport);
	audit_str(r, "proto", "tcp");
}

void conn_audit_decision(struct conn *c, const struct decision *d, enum seen seen,
			 const struct tls_hello *tls, const struct http_request *req)
{
	struct tproxy *t = c->w->t;
	bool http = seen == SEEN_HTTP || seen == SEEN_BAD_HTTP;
	atomic_fetch_add(d->verdict == VERDICT_ALLOW ? &t->allowed : &t->denied, 1);
	if (!t->cfg.audit)
		return;
	struct audit_rec r;
	audit_begin(&r, http ? "http" : "tcp", d->verdict == VERDICT_ALLOW ? "allow" : "deny",
		    d->reason);
	audit_endpoints(&r, c);
	if (d->name)
		audit_strn(&r, http ? "host" : "sni", d->name, d->name_len);
	if (d->rule)
		audit_str(&r, "rule", d->rule);
	if (seen == SEEN_TLS && tls) {
		if (tls->has_alpn) {
			const char *alpn = tls->alpn_h2 && tls->alpn_http11 ? "h2,http/1.1"
					   : tls->alpn_h2 ? "h2"
					   : tls->alpn_http11 ? "http/1.1" : "other";
			audit_str(&r, "alpn", alpn);
		}
		audit_bool(&r, "ech", tls->ech);
	}
	if (seen == SEEN_HTTP && req) {
		audit_strn(&r, "method", req->method, req->method_len);
		audit_strn(&r, "target", req->target,
			   req->target_len > TARGET_LOG_MAX ? TARGET_LOG_MAX : req->target_len);
	}
	audit_commit(t->cfg.audit, &r);
}

static void audit_close_event(struct conn *c, const char *reason)
{
	struct audit *a = c->w->t->cfg.audit;
	if (!a)
		return;
	struct audit_rec r;
	audit_begin(&r, "close", "allow", reason);
	audit_endpoints(&r, c);
	if (c->name)
		audit_strn(&r, c->is_http ? "host" : "sni", c->name, c->name_len);
	audit_int(&r, "bytes_up", (long long)c->bytes_up);
	audit_int(&r, "bytes_down", (long long)c->bytes_down);
	audit_int(&r, "duration_ms", (long long)(moat_now_ms() - c->start_ms));
	audit_commit(a, &r);
}

static void rwait_unlink(struct conn *c)
{
	if (!c->waiting)
		return;
	if (c->rprev)
		c->rprev->rnext = c->rnext;
	else
		c->w->rwait = c->rnext;
	if (c->rnext)
		c->rnext->rprev = c->rprev;
	c->rprev = c->rnext = NULL;
	c->waiting = false;
}

void set_reset(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

void conn_close(struct conn *c, const char *reason, bool reset)
{
	struct worker *w = c->w;
	if (c->relayed)
		audit_close_event(c, reason);
	/* unlink from the state list */
	struct clist *l = &w->lists[c->state];
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	rwait_unlink(c);
	resolver_put(w->t->res, c->rentry);
	conn_set_events(c, 0, 0);
	conn_set_events(c, 1, 0);
	if (reset)
		set_reset(c->cfd);
	close(c->cfd);
	if (c->ufd >= 0)
		close(c->ufd);
	pipe_put(w, c->up.p);
	pipe_put(w, c->down.p);
	free(c->buf);
	free(c->tail);
	free(c->name);
	c->buf = NULL;
	c->tail = NULL;
	c->name = NULL;
	c->cfd = c->ufd = -1;
	c->state = CS_CLOSED;
	atomic_fetch_sub(&w->t->active, 1);
	c->next = w->dead;
	w->dead = c;
}

void conn_reap(struct worker *w)
{
	while (w->dead) {
		struct conn *c = w->dead;
		w->dead = c->next;
		free(c);
	}
}

void conn_accepted(struct worker *w, int fd, const struct sockaddr_storage *peer)
{
	struct tproxy *t = w->t;
	uint64_t active = atomic_fetch_add(&t->active, 1) + 1;
	struct sockaddr_storage dst;
	socklen_t dl = sizeof(dst);
	struct conn *c = NULL;
	if (getsockname(fd, (struct sockaddr *)&dst, &dl) < 0 || dst.ss_family != peer->ss_family ||
	    (dst.ss_family != AF_INET && dst.ss_family != AF_INET6) ||
	    !(c = calloc(1, sizeof(*c)))) {
		set_reset(fd);
		close(fd);
		atomic_fetch_sub(&t->active, 1);
		return;
	}
	c->w = w;
	c->cfd = fd;
	c->ufd = -1;
	c->family = (uint8_t)dst.ss_family;
	set_addr(peer, c->src, &c->sport);
	set_addr(&dst, c->dst, &c->dport);
	c->start_ms = moat_now_ms();
	conn_list_move(c, CS_HEAD, c->start_ms + t->cfg.first_bytes_timeout_ms);
	if (active > t->cfg.max_conns) {
		struct decision d = { .verdict = VERDICT_DENY, .reason = "conn-limit" };
		conn_audit_decision(c, &d, SEEN_OTHER, NULL, NULL);
		conn_close(c, "conn-limit", true);
		return;
	}
	conn_set_events(c, 0, EPOLLIN);
}

void linger_start(struct conn *c)
{
	shutdown(c->cfd, SHUT_WR);
	if (c->ufd >= 0) {
		conn_set_events(c, 1, 0);
		close(c->ufd);
		c->ufd = -1;
	}
	conn_list_move(c, CS_LINGER, moat_now_ms() + LINGER_MS);
	conn_set_events(c, 0, EPOLLIN);
}

/* Writes a short answer on a socket that has no data queued; best effort. */
static void send_small(int fd, const void *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)n;
}

static void deny_first(struct conn *c, enum seen seen, const struct decision *d)
{
	if (seen == SEEN_TLS || (c->is_tls && seen != SEEN_OTHER)) {
		uint8_t alert[16];
		size_t n = tls_build_alert_access_denied(alert, sizeof(alert), c->tls_version);
		send_small(c->cfd, alert, n);
		linger_start(c);
	} else if (seen == SEEN_HTTP || c->is_http) {
		char resp[1024];
		size_t n = http_build_forbidden(resp, sizeof(resp), d->reason, d->name,
						d->name ? d->name_len : 0);
		send_small(c->cfd, resp, n);
		linger_start(c);
	} else {
		conn_close(c, d->reason, true);
	}
}

static void connect_failed(struct conn *c, int err)
{
	char reason[96];
	if (err == ETIMEDOUT)
		snprintf(reason, sizeof(reason), "connect-timeout");
	else
		snprintf(reason, sizeof(reason), "connect-failed: %s", strerror(err));
	conn_close(c, reason, true);
}

static void connect_upstream(struct conn *c)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (c->family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(c->dport);
		memcpy(&s->sin_addr, c->dst, 4);
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(c->dport);
		memcpy(&s->sin6_addr, c->dst, 16);
		sl = sizeof(*s);
	}
	c->relayed = true;
	c->ufd = socket(c->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->ufd < 0) {
		connect_failed(c, errno);
		return;
	}
	conn_set_events(c, 0, 0);
	if (connect(c->ufd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		connect_failed(c, errno);
		return;
	}
	conn_list_move(c, CS_CONNECT, moat_now_ms() + c->w->t->cfg.connect_timeout_ms);
	conn_set_events(c, 1, EPOLLOUT);
}

/* What the buffer holds; -1 while it is an incomplete prefix. */
static int sniff(struct conn *c, struct tls_hello *th, struct http_request *hr)
{
	const uint8_t *b = c->buf;
	size_t len = c->len;
	if (len == 0)
		return -1;
	if (c->is_tls || (!c->is_http && tls_looks_like(b, len))) {
		c->is_tls = true;
		enum parse_result r = tls_parse_client_hello(b, len, c->w->scratch,
							     sizeof(c->w->scratch), th);
		if (r == PARSE_OK) {
			c->tls_version = th->legacy_version;
			return SEEN_TLS;
		}
		if (r == PARSE_INVALID || len >= TLS_HELLO_MAX)
			return SEEN_BAD_TLS;
		return -1;
	}
	if (c->is_http || http_looks_like(b, len)) {
		c->is_http = true;
		enum parse_result r = http_parse_request((const char *)b, len, hr);
		if (r == PARSE_OK)
			return SEEN_HTTP;
		if (r == PARSE_INVALID || len >= HTTP_HEAD_MAX)
			return SEEN_BAD_HTTP;
		return -1;
	}
	return len >= SNIFF_MIN ? SEEN_OTHER : -1;
}

/* Judges what the buffer holds.  first: the connection's opening decision;
 * otherwise a later request on a relayed HTTP connection.  force: SEEN_TIMEOUT
 * or SEEN_CLOSED, or -1.  Returns 1 allowed, 0 denied (c may be gone), 2
 * waiting for a lookup, -1 needs more bytes. */
int conn_judge_seen(struct conn *c, bool first, int force)
{
	struct tproxy *t = c->w->t;
	struct tls_hello th;
	struct http_request hr;
	memset(&th, 0, sizeof(th));
	memset(&hr, 0, sizeof(hr));
	int seen = sniff(c, &th, &hr);
	if (seen < 0) {
		if (force < 0)
			return -1;
		seen = force;
	}
	struct resolved res;
	bool have_res = c->rentry && resolver_done(t->res, c->rentry, &res);
	struct decide_in in = {
		.policy = t->cfg.policy,
		.family = c->family,
		.dst = c->dst,
		.dport = c->dport,
		.local_addrs = t->cfg.local_addrs,
		.n_local_addrs = t->cfg.n_local_addrs,
		.seen = (enum seen)seen,
		.tls = &th,
		.http = &hr,
		.learned = t->cfg.learned,
		.resolve_fallback = t->cfg.resolve_fallback && t->res,
		.resolved = have_res ? &res : NULL,
	};
	struct decision d;
	tproxy_decide(&in, &d);
	if (d.verdict == VERDICT_RESOLVE) {
		if (!c->rentry)
			c->rentry = resolver_get(t->res, d.name, d.name_len);
		if (!c->rentry) {
			d.verdict = VERDICT_DENY;
			d.reason = seen == SEEN_TLS ? "sni-ip-mismatch" : "host-ip-mismatch";
		} else if (resolver_done(t->res, c->rentry, &res)) {
			return conn_judge_seen(c, first, force);
		} else {
			if (!c->waiting) {
				c->waiting = true;
				c->rprev = NULL;
				c->rnext = c->w->rwait;
				if (c->rnext)
					c->rnext->rprev = c;
				c->w->rwait = c;
			}
			conn_set_events(c, 0, 0);
			if (first)
				conn_list_move(c, CS_RESOLVE,
					       moat_now_ms() + t->cfg.connect_timeout_ms);
			return 2;
		}
	}
	rwait_unlink(c);
	resolver_put(t->res, c->rentry);
	c->rentry = NULL;
	conn_audit_decision(c, &d, (enum seen)seen, &th, &hr);

	if (d.verdict != VERDICT_ALLOW) {
		if (first) {
			deny_first(c, (enum seen)seen, &d);
		} else {
			char resp[1024];
			size_t n = http_build_forbidden(resp, sizeof(resp), d.reason, d.name,
							d.name ? d.name_len : 0);
			c->tail = malloc(n ? n : 1);
			if (c->tail) {
				memcpy(c->tail, resp, n);
				c->tail_len = (uint16_t)n;
			}
			c->up_mode = UP_HTTP_DENIED;
		}
		return 0;
	}
	if (first && d.name && !c->name) {
		c->name = malloc(d.name_len);
		if (c->name) {
			memcpy(c->name, d.name, d.name_len);
			c->name_len = (uint16_t)d.name_len;
		}
	}
	if (seen == SEEN_HTTP) {
		c->fwd = (uint32_t)hr.head_len;
		http_body_init(&c->body, &hr);
		c->up_mode = UP_HTTP_BODY;
		c->upgrade_after_body = hr.upgrade;
	} else {
		/* TLS (encrypted), raw, or unparsable HTTP allowed by an address rule */
		c->fwd = c->len;
		c->up_mode = UP_BLIND;
	}
	if (first)
		connect_upstream(c);
	return 1;
}

static void read_head(struct conn *c)
{
	for (;;) {
		size_t max = c->is_http ? HTTP_HEAD_MAX : TLS_HELLO_MAX;
		if (c->len >= max) {
			conn_judge_seen(c, true, c->is_http ? SEEN_BAD_HTTP : SEEN_BAD_TLS);
			return;
		}
		if (buf_reserve(c, c->len + 2048, max) < 0) {
			conn_close(c, "no-memory", true);
			return;
		}
		ssize_t n = recv(c->cfd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_close(c, "client-error", true);
			return;
		}
		if (n == 0) {
			conn_judge_seen(c, true, SEEN_CLOSED);
			return;
		}
		c->len += (uint32_t)n;
		if (conn_judge_seen(c, true, -1) >= 0)
			return;
	}
}

void conn_resolved(struct conn *c)
{
	struct resolved res;
	if (!c->rentry || !resolver_done(c->w->t->res, c->rentry, &res))
		return;
	if (c->state == CS_RESOLVE) {
		conn_judge_seen(c, true, -1);
	} else if (c->up_mode == UP_HTTP_RESOLVE) {
		c->up_mode = UP_HTTP_HEAD;
		relay_pump(c, RELAY_BOTH);
	}
}

static void linger_read(struct conn *c)
{
	char junk[4096];
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(c->cfd, junk, sizeof(junk), 0);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_close(c, "denied", false);
		return;
	}
}

void conn_on_client(struct conn *c, uint32_t ev)
{
	switch (c->state) {
	case CS_HEAD:
		read_head(c);
		break;
	case CS_RELAY:
		if (ev & EPOLLERR)
			conn_close(c, "client-reset", true);
		else
			relay_pump(c, relay_dirs(false, ev));
		break;
	case CS_LINGER:
		linger_read(c);
		break;
	default:
		break;
	}
}

void conn_on_upstream(struct conn *c, uint32_t ev)
{
	if (c->state == CS_CONNECT) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err) {
			connect_failed(c, err);
			return;
		}
		relay_start(c);
		return;
	}
	if (c->state != CS_RELAY)
		return;
	if (ev & EPOLLERR) {
		set_reset(c->cfd);
		conn_close(c, "upstream-reset", true);
		return;
	}
	relay_pump(c, relay_dirs(true, ev));
}

void conn_on_deadline(struct conn *c)
{
	switch (c->state) {
	case CS_HEAD:
		/* leaves CS_HEAD: connecting, resolving, lingering or closed */
		conn_judge_seen(c, true, SEEN_TIMEOUT);
		break;
	case CS_RESOLVE: {
		struct decision d = { .verdict = VERDICT_DENY, .reason = "resolve-timeout" };
		conn_audit_decision(c, &d, c->is_http ? SEEN_HTTP : SEEN_TLS, NULL, NULL);
		conn_close(c, "resolve-timeout", true);
		break;
	}
	case CS_CONNECT:
		connect_failed(c, ETIMEDOUT);
		break;
	case CS_RELAY:
		if (c->tail && c->tail_sent < c->tail_len)
			send_small(c->cfd, c->tail + c->tail_sent, c->tail_len - c->tail_sent);
		conn_close(c, "idle-timeout", false);
		break;
	default:
		conn_close(c, "denied", false);
		break;
	}
}

#include "tproxy/dns_internal.h"
#include "common/audit.h"
#include "common/moat.h"
#include "profiles/profile.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>

/* The answers moat gives itself (policy verdicts, malformed queries) and the
 * way every answer goes back to its client: a reply socket for UDP, the
 * connection for TCP.  Each one leaves an audit line. */

/* ---- audit ---- */

static void audit_sa(struct audit_rec *r, const char *key, const struct sockaddr_storage *ss)
{
	int family;
	const void *addr;
	uint16_t port;
	dnsf_sa_addr(ss, &family, &addr, &port);
	audit_addr(r, key, family, addr);
}

void dnsf_audit_query(struct dnsf *d, const struct dns_query *q, bool parsed, bool tcp,
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

/* Queries that reached a reply socket are queries to its address. */
void dnsf_rsock_drain(struct dnsf *d, int fd, const struct sockaddr_storage *addr)
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
		dnsf_handle_query(d, false, NULL, &client, addr, d->drain_buf, (size_t)n);
	}
	d->draining = false;
}

void dnsf_rsock_close(struct dnsf *d, struct rsock *rs)
{
	if (rs->ev.fd < 0)
		return;
	/* out of the table first: replies made while draining get a new socket */
	int fd = rs->ev.fd;
	struct sockaddr_storage addr = rs->addr;
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
	rs->ev.fd = -1;
	dnsf_rsock_drain(d, fd, &addr);
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
	dnsf_rsock_close(d, lru);
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
	if (bind(fd, (const struct sockaddr *)dst, dnsf_sa_len(dst)) < 0 ||
	    connect(fd, (const struct sockaddr *)client, dnsf_sa_len(client)) < 0) {
		log_debug("dns: cannot reply from the original destination: %s", strerror(errno));
		return NULL;
	}
	lru->ev.kind = EV_UDP_REPLY;
	lru->ev.fd = fd;
	lru->ev.dead = false;
	lru->addr = *dst;
	lru->peer = *client;
	if (dnsf_ep_add(d, &lru->ev, EPOLLIN) < 0) {
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

void dnsf_conn_update(struct dnsf *d, struct tconn *c)
{
	uint32_t ev = 0;
	if (c->out_off < c->out_len)
		ev |= EPOLLOUT;
	else if (!c->busy)
		ev |= EPOLLIN;
	dnsf_ep_mod(d, &c->ev, ev);
}

void dnsf_conn_close(struct dnsf *d, struct tconn *c)
{
	if (c->busy)
		c->busy->conn = NULL;
	c->busy = NULL;
	dnsf_ev_close(d, &c->ev);
	c->ev.dead = true;
}

void dnsf_conn_flush(struct dnsf *d, struct tconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->ev.fd, c->out + c->out_off, c->out_len - c->out_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				dnsf_conn_close(d, c);
			break;
		}
		c->out_off += (size_t)w;
	}
}

static void conn_send(struct dnsf *d, struct tconn *c, const uint8_t *msg, size_t len)
{
	uint8_t *o = malloc(len + 2);
	if (!o) {
		dnsf_conn_close(d, c);
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
	dnsf_conn_flush(d, c);
}

void dnsf_reply(struct dnsf *d, bool tcp, struct tconn *c, const struct sockaddr_storage *dst,
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

/* ---- the policy ---- */

void dnsf_handle_query(struct dnsf *d, bool tcp, struct tconn *c,
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
	dnsf_dq_attempt(d, dq, false);
	return;

build:
	n = dns_build_response(out, sizeof(out), buf, len, &q, v.rcode, false);
local:
	dnsf_reply(d, tcp, c, dst, client, out, n);
	dnsf_audit_query(d, &q, pr == PARSE_OK, tcp, client, dst, &v);
}

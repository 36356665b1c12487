#include "tproxy/dns.h"
#include "tproxy/dns_internal.h"
#include "tproxy/learned.h"
#include "common/moat.h"
#include "profiles/profile.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>

/* ---- upstream queries ---- */

static uint16_t random_id(void)
{
	uint16_t id;
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint16_t)(moat_now_ns() ^ (uintptr_t)&id);
	return id;
}

static void dq_finish(struct dnsf *d, struct dq *dq)
{
	if (dq->conn) {
		/* the next buffered query is answered after this batch of events,
		 * not from here: no recursion through the query path */
		dq->conn->busy = NULL;
		dq->conn->kick = true;
		dq->conn = NULL;
	}
	dnsf_ev_close(d, &dq->ev);
	dq->ev.dead = true;
}

void dnsf_dq_local_reply(struct dnsf *d, struct dq *dq, int rcode, const char *reason)
{
	uint8_t out[DNS_HDR_LEN + DNS_WIRE_NAME_MAX + 4 + 11];
	struct verdict v = { .verdict = "allow", .reason = reason, .rcode = rcode };
	size_t n = dns_build_response(out, sizeof(out), dq->query, dq->qlen, &dq->q, rcode, false);
	dnsf_reply(d, dq->client_tcp, dq->conn, &dq->dst, &dq->client, out, n);
	dnsf_audit_query(d, &dq->q, true, dq->client_tcp, &dq->client, &dq->dst, &v);
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
		dnsf_dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
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
		dnsf_reply(d, false, NULL, &dq->dst, &dq->client, out, n);
	} else {
		dnsf_reply(d, dq->client_tcp, dq->conn, &dq->dst, &dq->client, msg, len);
	}
	dnsf_audit_query(d, &dq->q, true, dq->client_tcp, &dq->client, &dq->dst, &v);
	dq_finish(d, dq);
}

static int dq_send_tcp(struct dnsf *d, struct dq *dq);

/* Starts the next attempt: the current upstream over TCP when tcp is set,
 * else the next upstream over UDP.  Ends the query when none is left. */
void dnsf_dq_attempt(struct dnsf *d, struct dq *dq, bool tcp)
{
	uint64_t now = moat_now_ms();

	dnsf_ev_close(d, &dq->ev);
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
			dnsf_ev_close(d, &dq->ev);
			continue;
		}
		if (tcp) {
			if (dnsf_ep_add(d, &dq->ev, EPOLLOUT) < 0) {
				dnsf_ev_close(d, &dq->ev);
				continue;
			}
			return;
		}
		if (send(fd, dq->up + 2, n, 0) < 0 || dnsf_ep_add(d, &dq->ev, EPOLLIN) < 0) {
			dnsf_ev_close(d, &dq->ev);
			continue;
		}
		return;
	}
	dnsf_dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
}

void dnsf_dq_next_upstream(struct dnsf *d, struct dq *dq)
{
	dq->ui++;
	dnsf_dq_attempt(d, dq, false);
}

/* What a reply on the UDP socket means: relay it, retry over TCP, try the
 * next upstream, or ignore it (wrong id or question: keep waiting). */
void dnsf_dq_on_udp(struct dnsf *d, struct dq *dq)
{
	for (int i = 0; i < 16 && !dq->ev.dead; i++) {
		ssize_t n = recv(dq->ev.fd, d->scratch, sizeof(d->scratch), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				dnsf_dq_next_upstream(d, dq);   /* ICMP unreachable and friends */
			return;
		}
		struct dns_reply_info info;
		struct dns_query uq = dq->q;
		uq.id = dq->up_id;
		enum parse_result r = dns_parse_answers(d->scratch, (size_t)n, &uq, &info, NULL, NULL);
		if (info.id != dq->up_id || n < DNS_HDR_LEN || !(d->scratch[2] & 0x80))
			continue;
		if (info.tc) {
			dnsf_dq_attempt(d, dq, true);
			return;
		}
		if (r != PARSE_OK)
			continue;
		if ((info.rcode == DNS_RCODE_SERVFAIL || info.rcode == DNS_RCODE_REFUSED) &&
		    dq->ui + 1 < d->n_up) {
			dnsf_dq_next_upstream(d, dq);
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
	dnsf_ep_mod(d, &dq->ev, EPOLLIN);
	return 0;
}

void dnsf_dq_on_tcp(struct dnsf *d, struct dq *dq, uint32_t events)
{
	if (!dq->tcp_connected) {
		int err = 0;
		socklen_t el = sizeof(err);
		if (getsockopt(dq->ev.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			dnsf_dq_next_upstream(d, dq);
			return;
		}
		dq->tcp_connected = true;
	}
	if (dq->woff < dq->uplen + 2) {
		if (dq_send_tcp(d, dq) < 0)
			dnsf_dq_next_upstream(d, dq);
		return;
	}
	if (!dq->rbuf && !(dq->rbuf = malloc(2 + DNS_MSG_MAX))) {
		dnsf_dq_local_reply(d, dq, DNS_RCODE_SERVFAIL, "upstream-failed");
		return;
	}
	for (;;) {
		ssize_t n = read(dq->ev.fd, dq->rbuf + dq->rlen, 2 + DNS_MSG_MAX - dq->rlen);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				dnsf_dq_next_upstream(d, dq);
			return;
		}
		if (n == 0) {
			dnsf_dq_next_upstream(d, dq);
			return;
		}
		dq->rlen += (size_t)n;
		const uint8_t *msg;
		size_t mlen;
		enum parse_result r = dns_tcp_frame(dq->rbuf, dq->rlen, &msg, &mlen);
		if (r == PARSE_NEED_MORE)
			continue;
		if (r == PARSE_INVALID) {
			dnsf_dq_next_upstream(d, dq);
			return;
		}
		dq_deliver(d, dq, dq->rbuf + 2, mlen);
		return;
	}
}

/* ---- upstreams from the configuration ---- */

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

int dnsf_read_resolv_conf(struct dnsf *d, struct moat_error *e)
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

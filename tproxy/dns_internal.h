/* Private to tproxy/dns*.c: the DNS filter's state and the functions its
 * files share.  dns.c runs the loop, the listeners, TCP clients and setup;
 * dns_reply.c holds the policy, the replies to clients and the audit lines;
 * dns_upstream.c forwards allowed queries to the upstream resolvers. */
#ifndef MOAT_TPROXY_DNS_INTERNAL_H
#define MOAT_TPROXY_DNS_INTERNAL_H

#include "tproxy/dns.h"
#include "tproxy/dns_msg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

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

struct verdict {
	const char *verdict, *reason;
	int rcode;
	char answers[DNSF_ANSWERS_JSON];
	size_t alen;
	bool has_answers;
	bool tc;                /* relayed truncated: the client retries over TCP */
	unsigned omitted;       /* addresses that did not fit in the audit line */
};

/* dns.c */
void dnsf_sa_addr(const struct sockaddr_storage *ss, int *family, const void **addr,
		  uint16_t *port);
socklen_t dnsf_sa_len(const struct sockaddr_storage *ss);
int dnsf_ep_add(struct dnsf *d, struct ev *ev, uint32_t events);
void dnsf_ep_mod(struct dnsf *d, struct ev *ev, uint32_t events);
void dnsf_ev_close(struct dnsf *d, struct ev *ev);

/* dns_reply.c */
void dnsf_audit_query(struct dnsf *d, const struct dns_query *q, bool parsed, bool tcp,
		      const struct sockaddr_storage *client, const struct sockaddr_storage *dst,
		      struct verdict *v);
void dnsf_rsock_drain(struct dnsf *d, int fd, const struct sockaddr_storage *addr);
void dnsf_rsock_close(struct dnsf *d, struct rsock *rs);
void dnsf_conn_update(struct dnsf *d, struct tconn *c);
void dnsf_conn_close(struct dnsf *d, struct tconn *c);
void dnsf_conn_flush(struct dnsf *d, struct tconn *c);
void dnsf_reply(struct dnsf *d, bool tcp, struct tconn *c, const struct sockaddr_storage *dst,
		const struct sockaddr_storage *client, const uint8_t *msg, size_t len);
void dnsf_handle_query(struct dnsf *d, bool tcp, struct tconn *c,
		       const struct sockaddr_storage *client, const struct sockaddr_storage *dst,
		       const uint8_t *buf, size_t len);

/* dns_upstream.c */
void dnsf_dq_local_reply(struct dnsf *d, struct dq *dq, int rcode, const char *reason);
void dnsf_dq_attempt(struct dnsf *d, struct dq *dq, bool tcp);
void dnsf_dq_next_upstream(struct dnsf *d, struct dq *dq);
void dnsf_dq_on_udp(struct dnsf *d, struct dq *dq);
void dnsf_dq_on_tcp(struct dnsf *d, struct dq *dq, uint32_t events);
int dnsf_read_resolv_conf(struct dnsf *d, struct moat_error *e);

#endif

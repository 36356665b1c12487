/* Private to the L7 proxy: the pure decision, the resolver cache and the
 * per-worker connection state. */
#ifndef MOAT_TPROXY_INTERNAL_H
#define MOAT_TPROXY_INTERNAL_H

#include "tproxy/tproxy.h"
#include "tproxy/http.h"
#include "tproxy/tls.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- the decision (decide.c), a pure function over what was seen ---- */

enum seen {
	SEEN_TLS,               /* a complete, valid ClientHello */
	SEEN_HTTP,              /* a complete, valid HTTP/1.x request head */
	SEEN_BAD_TLS,           /* looked like TLS, did not parse */
	SEEN_BAD_HTTP,          /* looked like HTTP, did not parse */
	SEEN_OTHER,             /* neither TLS nor HTTP */
	SEEN_TIMEOUT,           /* nothing complete before the first-bytes deadline */
	SEEN_CLOSED,            /* the client closed before sending a complete head */
};

#define RESOLVED_MAX 16

struct resolved {
	size_t n;
	struct {
		int family;
		uint8_t addr[16];
	} a[RESOLVED_MAX];
};

struct decide_in {
	const struct policy *policy;
	int family;                     /* AF_INET / AF_INET6 (v4-mapped is treated as v4) */
	const void *dst;                /* 4 or 16 bytes */
	uint16_t dport;
	const struct sockaddr_storage *local_addrs;
	size_t n_local_addrs;
	enum seen seen;
	const struct tls_hello *tls;    /* SEEN_TLS */
	const struct http_request *http; /* SEEN_HTTP */
	struct learned *learned;        /* may be NULL */
	bool resolve_fallback;
	const struct resolved *resolved; /* moat's own resolution of the name; NULL: none yet */
};

enum verdict { VERDICT_DENY = 0, VERDICT_ALLOW, VERDICT_RESOLVE };

struct decision {
	enum verdict verdict;
	const char *reason;             /* static string */
	const char *rule;               /* the rule's source text, or NULL */
	const char *name;               /* SNI or Host (points into the input), or NULL */
	size_t name_len;
	bool by_name;                   /* allowed by a name rule (anti-fronting applies) */
	bool fronting_checked;          /* the destination was checked against the name */
};

void tproxy_decide(const struct decide_in *in, struct decision *d);

/* ---- forward resolution for anti-fronting (resolve.c) ---- */

struct resolver;
struct rentry;

/* Results are kept RESOLVER_TTL_MS; every completion writes 1 to each notify fd. */
#define RESOLVER_TTL_MS 30000
struct resolver *resolver_new(unsigned threads, const int *notify_fds, size_t n_fds,
			      struct moat_error *e);
void resolver_free(struct resolver *r);
/* A referenced cache entry for name, resolving it if it is new or stale. */
struct rentry *resolver_get(struct resolver *r, const char *name, size_t len);
/* Copies the answer when the lookup has finished. */
bool resolver_done(struct resolver *r, struct rentry *en, struct resolved *out);
void resolver_put(struct resolver *r, struct rentry *en);

/* ---- workers and connections (proxy.c, proxy_conn.c, relay.c) ---- */

struct worker;

#define PIPE_BYTES (256 * 1024)

struct pipe_buf {
	int fd[2];
	size_t pending;                 /* bytes in the pipe */
	struct pipe_buf *next;          /* in the worker's pool */
};

/* One direction of the relay. */
struct dir {
	struct pipe_buf *p;             /* held only while data is in flight */
	bool eof;                       /* the source reached EOF */
	bool shut;                      /* SHUT_WR sent to the sink */
};

enum conn_state { CS_HEAD, CS_RESOLVE, CS_CONNECT, CS_RELAY, CS_LINGER, CS_NSTATES,
		  CS_CLOSED = CS_NSTATES };   /* closed, freed after the current epoll batch */

/* How the client -> server direction is treated once relaying. */
enum up_mode {
	UP_BLIND,                       /* TLS, raw, or HTTP after an Upgrade: splice */
	UP_HTTP_HEAD,                   /* reading the next request head */
	UP_HTTP_BODY,                   /* forwarding the body of an allowed request */
	UP_HTTP_RESOLVE,                /* a later request waits for name resolution */
	UP_HTTP_DENIED,                 /* a later request was denied: 403 once the server is done */
};

struct conn {
	struct worker *w;
	struct conn *prev, *next;       /* the timer list of its state (FIFO = deadline order) */
	struct conn *rprev, *rnext;     /* the worker's list of connections awaiting a resolution */
	uint64_t deadline;
	uint64_t start_ms;
	uint64_t bytes_up, bytes_down;
	int cfd, ufd;
	uint32_t cev, uev;              /* events registered (0: not in epoll) */
	uint8_t state;
	uint8_t up_mode;
	uint8_t family;
	bool is_tls, is_http, relayed, waiting;
	bool upgrade_after_body;        /* an allowed Upgrade request: blind after its body */
	bool up_more;                   /* client -> server stopped at the budget with work left */
	uint16_t sport, dport;
	uint16_t tls_version;
	uint8_t src[16], dst[16];
	/* client -> server bytes read by the proxy: [0, fwd) judged, [0, sent) written */
	uint8_t *buf;
	uint32_t len, cap, fwd, sent;
	struct http_body body;
	struct dir up, down;
	char *tail;                     /* the 403 owed to the client after a denied request */
	uint16_t tail_len, tail_sent;
	char *name;                     /* SNI or Host of the first decision, for the close event */
	uint16_t name_len;
	struct rentry *rentry;
};

struct clist {
	struct conn *head, *tail;
};

struct worker {
	struct tproxy *t;
	pthread_t thread;
	bool started;
	int ep, evfd;
	int lfd[2];                     /* v4, v6 listeners (-1 if absent) */
	bool lpaused;
	uint64_t lresume;
	struct clist lists[CS_NSTATES];
	struct conn *rwait;             /* awaiting a resolution */
	struct conn *dead;              /* closed during this epoll batch (linked by next) */
	struct pipe_buf *pool;
	unsigned pool_n;
	uint8_t scratch[TLS_HELLO_MAX];
};

struct tproxy {
	struct tproxy_config cfg;
	struct sockaddr_storage *local_addrs;
	unsigned n_workers;
	struct worker **workers;
	uint16_t port4, port6;
	struct resolver *res;
	atomic_bool stop;
	atomic_uint_fast64_t accepted, allowed, denied, active;
};

/* proxy.c */
void conn_list_move(struct conn *c, enum conn_state s, uint64_t deadline);
void conn_set_events(struct conn *c, int which, uint32_t ev);
struct pipe_buf *pipe_get(struct worker *w);
void pipe_put(struct worker *w, struct pipe_buf *p);

/* proxy_conn.c */
void conn_accepted(struct worker *w, int fd, const struct sockaddr_storage *peer);
void conn_on_client(struct conn *c, uint32_t ev);
void conn_on_upstream(struct conn *c, uint32_t ev);
void conn_on_deadline(struct conn *c);
void conn_resolved(struct conn *c);
void conn_close(struct conn *c, const char *reason, bool reset);
/* Frees the connections closed since the last call: an epoll batch may hold
 * events for both sides of one connection, so none is freed mid-batch. */
void conn_reap(struct worker *w);
int conn_judge_seen(struct conn *c, bool first, int force);
void linger_start(struct conn *c);
void set_reset(int fd);
void conn_audit_decision(struct conn *c, const struct decision *d, enum seen seen,
			 const struct tls_hello *tls, const struct http_request *req);

/* relay.c */
void relay_start(struct conn *c);
/* RELAY_UP: client -> server, RELAY_DOWN: server -> client; *_HUP: that
 * direction's source has shut (EPOLLRDHUP), read on to its EOF */
enum { RELAY_UP = 1, RELAY_DOWN = 2, RELAY_BOTH = 3, RELAY_UP_HUP = 4, RELAY_DOWN_HUP = 8 };
void relay_pump(struct conn *c, unsigned dirs);
unsigned relay_dirs(bool upstream, uint32_t ev);
void relay_update_events(struct conn *c);
int buf_reserve(struct conn *c, size_t want, size_t max);

#endif

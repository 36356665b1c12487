/* holdconns: open N TLS connections, finish every handshake, hold them all open.
 *
 *   holdconns ADDR PORT SNI N [INFLIGHT]
 *
 * Connects to ADDR:PORT (IPv4 or IPv6) N times with at most INFLIGHT (default 200)
 * handshakes under way at once, nonblocking, on one epoll loop; the certificate is not
 * checked (the benchmark measures the path, not the PKI).  When every connection has
 * finished its handshake or failed, prints "held OK FAILED" on stdout and keeps the
 * connections open until SIGTERM or SIGINT arrives; then closes them and exits 0 (1 on
 * usage or set-up errors).
 *
 * Build: cc -O2 -o holdconns bench/holdconns.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HANDSHAKE, ST_DONE, ST_FAILED };

struct hc {
	int fd;
	int state;
	SSL *ssl;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int start_one(int ep, struct hc *h, const struct sockaddr_storage *sa, socklen_t salen,
		     SSL_CTX *ctx, const char *sni, long idx)
{
	h->fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
		return -errno;
	if (connect(h->fd, (const struct sockaddr *)sa, salen) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(h->fd);
		h->fd = -1;
		return -e;
	}
	h->ssl = SSL_new(ctx);
	if (!h->ssl)
		return -ENOMEM;
	SSL_set_fd(h->ssl, h->fd);
	SSL_set_tlsext_host_name(h->ssl, sni);
	SSL_set_connect_state(h->ssl);
	h->state = ST_CONNECTING;
	struct epoll_event e = { .events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)idx };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &e) < 0)
		return -errno;
	return 0;
}

/* 1 when the connection left the in-flight set (done or failed) */
static int step(int ep, struct hc *h, uint64_t idx)
{
	if (h->state == ST_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			h->state = ST_FAILED;
			goto gone;
		}
		h->state = ST_HANDSHAKE;
	}
	if (h->state != ST_HANDSHAKE)
		return 0;
	int r = SSL_do_handshake(h->ssl);
	if (r == 1) {
		h->state = ST_DONE;
		epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
		return 1;
	}
	int e = SSL_get_error(h->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		struct epoll_event ev = { .data.u64 = idx,
					  .events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT };
		epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &ev);
		return 0;
	}
	h->state = ST_FAILED;
gone:
	epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
	SSL_free(h->ssl);
	h->ssl = NULL;
	close(h->fd);
	h->fd = -1;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: holdconns ADDR PORT SNI N [INFLIGHT]\n");
		return 1;
	}
	long n = strtol(argv[4], NULL, 10);
	long inflight_max = argc > 5 ? strtol(argv[5], NULL, 10) : 200;
	if (n <= 0 || inflight_max <= 0) {
		fprintf(stderr, "holdconns: bad N or INFLIGHT\n");
		return 1;
	}
	struct sockaddr_storage sa = { 0 };
	socklen_t salen;
	int port = atoi(argv[2]);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
	if (inet_pton(AF_INET, argv[1], &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		salen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, argv[1], &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		salen = sizeof(*s6);
	} else {
		fprintf(stderr, "holdconns: bad address %s\n", argv[1]);
		return 1;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		fprintf(stderr, "holdconns: SSL_CTX_new failed\n");
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* one session each: no resumption, every handshake is a full one */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	struct hc *hs = calloc((size_t)n, sizeof(*hs));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!hs || ep < 0) {
		fprintf(stderr, "holdconns: out of memory\n");
		return 1;
	}
	long next = 0, inflight = 0, ok = 0, failed = 0;
	struct epoll_event evs[256];
	while (!stop && (next < n || inflight > 0)) {
		while (next < n && inflight < inflight_max) {
			int r = start_one(ep, &hs[next], &sa, salen, ctx, argv[3], next);
			if (r < 0) {
				hs[next].state = ST_FAILED;
				failed++;
				if (r == -EMFILE || r == -ENFILE) {
					fprintf(stderr, "holdconns: %s after %ld\n", strerror(-r), next);
					failed += n - next - 1;
					next = n;
					break;
				}
			} else {
				inflight++;
			}
			next++;
		}
		int k = epoll_wait(ep, evs, 256, 10000);
		if (k == 0) {
			fprintf(stderr, "holdconns: no progress for 10 s, %ld in flight\n", inflight);
			break;
		}
		for (int i = 0; i < k; i++) {
			struct hc *h = &hs[evs[i].data.u64];
			if (step(ep, h, evs[i].data.u64)) {
				inflight--;
				if (h->state == ST_DONE)
					ok++;
				else
					failed++;
			}
		}
	}
	failed += inflight;
	printf("held %ld %ld\n", ok, failed);
	fflush(stdout);

	sigset_t none, term;
	sigemptyset(&none);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	sigprocmask(SIG_BLOCK, &term, NULL);
	while (!stop)
		sigsuspend(&none);
	for (long i = 0; i < n; i++) {
		if (hs[i].ssl)
			SSL_free(hs[i].ssl);
		if (hs[i].fd > 0)
			close(hs[i].fd);
	}
	free(hs);
	SSL_CTX_free(ctx);
	return 0;
}

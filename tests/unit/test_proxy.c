/* The L7 proxy in the kernel path.  The test unshares its own network and
 * mount namespaces, makes a "sandbox" netns joined by a veth pair, puts the
 * simulated internet (198.18.1.1, 198.18.1.2) on a dummy interface with tiny
 * servers, and TPROXYs the sandbox's TCP to the proxy with one nft rule.
 * Name resolution for the anti-fronting fallback comes from an /etc/hosts
 * bind-mounted in the private mount namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/audit.h"
#include "common/moat.h"
#include "profiles/profile.h"
#include "tproxy/tproxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define UP_HTTP "198.18.1.1"            /* HTTP server; allowed.test resolves here */
#define UP_RAW "198.18.1.2"             /* raw servers; an IP rule allows it */
#define RAW_PORT 9000                   /* proxied */
#define DIRECT_PORT 9001                /* not proxied: the baseline */
#define BIG (64ull << 20)

static const char policy_json[] =
	"{\"network\":{\"outbound\":{\"allow_host\":[\"allowed.test\",\"fronted.test\","
	"\"" UP_RAW "\"],\"allow_port\":[80,443,9000,9001]}}}";

static char nsname[64], audit_path[128], hosts_path[128];
static int sandbox_ns = -1, test_ns = -1;
static struct policy *pol;
static struct audit *audit_log;
static struct tproxy *proxy;

/* ---- what the servers saw ---- */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned http_conns, http_reqs;
static char last_target[256];
static uint64_t last_body_len, last_body_sum;
static char all_targets[4096];
static uint64_t raw_rx_len, raw_rx_hash;
static unsigned raw_done;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	if (st != 0)
		print_error("command failed (%d): %s\n", st, cmd);
	return st;
}

static uint64_t xs_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill_pattern(uint8_t *b, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(xs_next(s) >> 24);
}

static uint64_t fnv(uint64_t h, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}
#define FNV0 0xcbf29ce484222325ull

/* ---- servers ---- */

static int listen_on(const char *addr, uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *http_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static __thread char buf[1 << 20];
	size_t len = 0;
	for (;;) {
		char *end = memmem(buf, len, "\r\n\r\n", 4);
		if (end) {
			size_t head = (size_t)(end - buf) + 4;
			uint64_t clen = 0;
			char *cl = memmem(buf, head, "Content-Length: ", 16);
			if (cl)
				clen = strtoull(cl + 16, NULL, 10);
			if (len >= head + clen) {
				char target[256] = "";
				sscanf(buf, "%*s %255s", target);
				pthread_mutex_lock(&seen_lock);
				http_reqs++;
				snprintf(last_target, sizeof(last_target), "%s", target);
				last_body_len = clen;
				last_body_sum = fnv(FNV0, (uint8_t *)buf + head, clen);
				strncat(all_targets, target,
					sizeof(all_targets) - strlen(all_targets) - 2);
				strcat(all_targets, " ");
				pthread_mutex_unlock(&seen_lock);
				char resp[128];
				int n = snprintf(resp, sizeof(resp),
						 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s\n",
						 strlen(target) + 1, target);
				if (write(fd, resp, (size_t)n) != n)
					break;
				memmove(buf, buf + head + clen, len - head - clen);
				len -= head + clen;
				continue;
			}
		}
		if (len == sizeof(buf))
			break;
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	return NULL;
}

struct raw_tx {
	int fd;
	uint64_t n, seed;
};

static void *raw_writer(void *arg)
{
	struct raw_tx *t = arg;
	static __thread uint8_t b[1 << 16];
	uint64_t s = t->seed, left = t->n;
	while (left) {
		size_t k = left < sizeof(b) ? (size_t)left : sizeof(b);
		if (t->seed)
			fill_pattern(b, k, &s);     /* seed 0: throughput runs send zeros */
		size_t off = 0;
		while (off < k) {
			ssize_t w = write(t->fd, b + off, k - off);
			if (w <= 0)
				return NULL;
			off += (size_t)w;
		}
		left -= k;
	}
	shutdown(t->fd, SHUT_WR);
	return NULL;
}

/* Reads until EOF; returns the byte count, *hash the FNV of all of it. */
static uint64_t read_all(int fd, uint64_t *hash, bool do_hash)
{
	static __thread uint8_t b[1 << 16];
	uint64_t n = 0, h = FNV0;
	for (;;) {
		ssize_t r = read(fd, b, sizeof(b));
		if (r <= 0)
			break;
		if (do_hash)
			h = fnv(h, b, (size_t)r);
		n += (uint64_t)r;
	}
	*hash = h;
	return n;
}

/* Raw protocol: 'Z', 8 bytes of how much to send back, then the upload to EOF. */
static void *raw_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t hdr[9];
	size_t got = 0;
	while (got < sizeof(hdr)) {
		ssize_t r = read(fd, hdr + got, sizeof(hdr) - got);
		if (r <= 0) {
			close(fd);
			return NULL;
		}
		got += (size_t)r;
	}
	struct raw_tx tx = { .fd = fd, .seed = hdr[0] == 'Z' ? 0x5eed2 : 0 };
	memcpy(&tx.n, hdr + 1, 8);
	pthread_t wt;
	pthread_create(&wt, NULL, raw_writer, &tx);
	uint64_t h;
	bool do_hash = hdr[0] == 'Z';
	uint64_t n = read_all(fd, &h, do_hash);
	pthread_join(wt, NULL);
	pthread_mutex_lock(&seen_lock);
	raw_rx_len = n;
	raw_rx_hash = h;
	raw_done++;
	pthread_mutex_unlock(&seen_lock);
	close(fd);
	return NULL;
}

struct server {
	int fd;
	void *(*fn)(void *);
	bool http;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	for (;;) {
		int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			return NULL;
		if (s->http) {
			pthread_mutex_lock(&seen_lock);
			http_conns++;
			pthread_mutex_unlock(&seen_lock);
		}
		pthread_t t;
		pthread_create(&t, NULL, s->fn, (void *)(intptr_t)c);
		pthread_detach(t);
	}
}

static struct server servers[3];

/* ---- the sandbox side ---- */

static int sandbox_connect(const char *addr, uint16_t port)
{
	assert_int_equal(setns(sandbox_ns, CLONE_NEWNET), 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(setns(test_ns, CLONE_NEWNET), 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, addr, &sin.sin_addr);
	struct timeval tv = { .tv_sec = 20 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void send_all(int fd, const void *b, size_t n)
{
	size_t off = 0;
	while (off < n) {
		ssize_t w = send(fd, (const char *)b + off, n - off, MSG_NOSIGNAL);
		assert_true(w > 0);
		off += (size_t)w;
	}
}

/* Reads until EOF (or error), NUL-terminated. */
static size_t recv_until_eof(int fd, char *b, size_t cap)
{
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t r = recv(fd, b + len, cap - 1 - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	b[len] = 0;
	return len;
}

/* Reads until buf holds n occurrences of needle. */
static size_t recv_until(int fd, char *b, size_t cap, const char *needle, int n)
{
	size_t len = 0;
	for (;;) {
		b[len] = 0;
		int k = 0;
		for (char *p = b; (p = strstr(p, needle)); p++)
			k++;
		if (k >= n || len + 1 >= cap)
			return len;
		ssize_t r = recv(fd, b + len, cap - 1 - len, 0);
		if (r <= 0)
			return len;
		len += (size_t)r;
	}
}

static void snapshot(unsigned *conns, unsigned *reqs)
{
	pthread_mutex_lock(&seen_lock);
	*conns = http_conns;
	*reqs = http_reqs;
	pthread_mutex_unlock(&seen_lock);
}

static bool audit_has(const char *needle)
{
	char *buf = NULL;
	size_t len;
	if (moat_read_file(audit_path, 16 << 20, &buf, &len, NULL) < 0)
		return false;
	bool found = strstr(buf, needle) != NULL;
	free(buf);
	return found;
}

/* ---- setup ---- */

static int teardown(void **state);

static int setup_once(void)
{
	if (geteuid() != 0) {
		print_error("needs root\n");
		return -1;
	}
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
		print_error("unshare: %s\n", strerror(errno));
		return -1;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -1;
	snprintf(hosts_path, sizeof(hosts_path), "/tmp/moat-test-proxy-hosts.%d", getpid());
	FILE *f = fopen(hosts_path, "w");
	if (!f)
		return -1;
	fprintf(f, "%s allowed.test\n198.18.1.9 fronted.test\n", UP_HTTP);
	fclose(f);
	if (mount(hosts_path, "/etc/hosts", NULL, MS_BIND, NULL) < 0) {
		print_error("bind /etc/hosts: %s\n", strerror(errno));
		return -1;
	}
	test_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	snprintf(nsname, sizeof(nsname), "moat-tproxy-%d", getpid());
	if (run("ip link set lo up") || run("ip netns add %s", nsname) ||
	    run("ip link add mtp0 type veth peer name mtp1 netns %s", nsname) ||
	    run("ip addr add 198.19.255.1/24 dev mtp0 && ip link set mtp0 up") ||
	    run("ip -n %s addr add 198.19.255.2/24 dev mtp1 && ip -n %s link set mtp1 up && "
		"ip -n %s link set lo up && ip -n %s route add default via 198.19.255.1",
		nsname, nsname, nsname, nsname) ||
	    run("ip addr add %s/32 dev lo && ip addr add %s/32 dev lo", UP_HTTP, UP_RAW) ||
	    run("ip rule add fwmark 1 lookup 100 && ip route add local 0.0.0.0/0 dev lo table 100"))
		return -1;
	char path[128];
	snprintf(path, sizeof(path), "/run/netns/%s", nsname);
	sandbox_ns = open(path, O_RDONLY | O_CLOEXEC);
	if (sandbox_ns < 0 || test_ns < 0)
		return -1;

	servers[0] = (struct server){ listen_on(UP_HTTP, 80), http_conn, true };
	servers[1] = (struct server){ listen_on(UP_RAW, RAW_PORT), raw_conn, false };
	servers[2] = (struct server){ listen_on(UP_RAW, DIRECT_PORT), raw_conn, false };
	for (int i = 0; i < 3; i++) {
		if (servers[i].fd < 0)
			return -1;
		pthread_t t;
		pthread_create(&t, NULL, server_main, &servers[i]);
		pthread_detach(t);
	}

	struct moat_error e = { 0 };
	if (policy_load_buffer(policy_json, strlen(policy_json), "test", &pol, &e) < 0) {
		print_error("%s\n", e.msg);
		return -1;
	}
	snprintf(audit_path, sizeof(audit_path), "/tmp/moat-test-proxy-audit.%d", getpid());
	unlink(audit_path);
	audit_log = audit_open(audit_path, "t", &e);
	if (!audit_log)
		return -1;
	struct tproxy_config cfg = {
		.policy = pol,
		.audit = audit_log,
		.workers = 2,
		.first_bytes_timeout_ms = 300,
		.resolve_fallback = true,
	};
	if (tproxy_start(&cfg, &proxy, &e) < 0) {
		print_error("tproxy_start: %s\n", e.msg);
		return -1;
	}
	if (run("nft -f - <<'E'\ntable inet t { chain p { type filter hook prerouting "
		"priority mangle; iifname \"mtp0\" tcp dport != %d meta mark set 1 "
		"tproxy ip to :%u accept\n}\n}\nE", DIRECT_PORT, tproxy_port(proxy, AF_INET)))
		return -1;
	return 0;
}

static int setup(void **state)
{
	if (setup_once() == 0)
		return 0;
	teardown(state);
	return -1;
}

static int teardown(void **state)
{
	if (proxy)
		tproxy_stop(proxy);
	proxy = NULL;
	audit_close(audit_log);
	audit_log = NULL;
	policy_free(pol);
	pol = NULL;
	if (nsname[0])
		run("ip netns del %s", nsname);
	nsname[0] = 0;
	umount("/etc/hosts");
	unlink(hosts_path);
	if (getenv("MOAT_KEEP_AUDIT"))
		print_message("audit log kept at %s\n", audit_path);
	else
		unlink(audit_path);
	return 0;
}

/* ---- tests ---- */

static void test_http_allowed_keepalive(void **state)
{
	unsigned c0, r0, c1, r1;
	snapshot(&c0, &r0);
	int fd = sandbox_connect(UP_HTTP, 80);
	static uint8_t body[100000];
	uint64_t s = 42;
	fill_pattern(body, sizeof(body), &s);
	char head[256];
	int n = snprintf(head, sizeof(head), "POST /upload HTTP/1.1\r\nHost: allowed.test\r\n"
			 "Content-Length: %zu\r\n\r\n", sizeof(body));
	send_all(fd, head, (size_t)n);
	send_all(fd, body, sizeof(body));
	char resp[4096];
	recv_until(fd, resp, sizeof(resp), "/upload\n", 1);
	assert_non_null(strstr(resp, "HTTP/1.1 200 OK"));
	pthread_mutex_lock(&seen_lock);
	assert_string_equal(last_target, "/upload");
	assert_int_equal(last_body_len, sizeof(body));
	assert_int_equal(last_body_sum, fnv(FNV0, body, sizeof(body)));
	pthread_mutex_unlock(&seen_lock);

	/* the same connection: a second request, judged again */
	const char *second = "GET /second HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
	send_all(fd, second, strlen(second));
	recv_until(fd, resp, sizeof(resp), "/second\n", 1);
	assert_non_null(strstr(resp, "/second"));
	close(fd);
	snapshot(&c1, &r1);
	assert_int_equal(c1 - c0, 1);
	assert_int_equal(r1 - r0, 2);
	usleep(100000);
	assert_true(audit_has("\"event\":\"http\",\"verdict\":\"allow\",\"reason\":\"allow-host\""));
	assert_true(audit_has("\"target\":\"/second\""));
}

static void test_http_denied(void **state)
{
	unsigned c0, r0, c1, r1;
	snapshot(&c0, &r0);
	int fd = sandbox_connect(UP_HTTP, 80);
	const char *req = "GET /secret HTTP/1.1\r\nHost: evil.test\r\n\r\n";
	send_all(fd, req, strlen(req));
	char resp[4096];
	recv_until_eof(fd, resp, sizeof(resp));
	close(fd);
	assert_memory_equal(resp, "HTTP/1.1 403", 12);
	assert_non_null(strstr(resp, "host-not-allowed"));
	snapshot(&c1, &r1);
	assert_int_equal(c1, c0);       /* the server never saw a connection */
	assert_int_equal(r1, r0);
	assert_true(audit_has("\"reason\":\"host-not-allowed\""));
}

static void test_http_pipelined_denied(void **state)
{
	unsigned c0, r0, c1, r1;
	snapshot(&c0, &r0);
	int fd = sandbox_connect(UP_HTTP, 80);
	const char *reqs = "GET /first HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
			   "GET /smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n"
			   "GET /third HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
	send_all(fd, reqs, strlen(reqs));
	char resp[8192];
	recv_until_eof(fd, resp, sizeof(resp));
	close(fd);
	char *ok = strstr(resp, "HTTP/1.1 200 OK");
	char *forbidden = strstr(resp, "HTTP/1.1 403");
	assert_non_null(ok);
	assert_non_null(strstr(resp, "/first\n"));
	assert_non_null(forbidden);
	assert_true(ok < forbidden);    /* in order: the answer, then the denial */
	usleep(100000);
	snapshot(&c1, &r1);
	assert_int_equal(r1 - r0, 1);
	pthread_mutex_lock(&seen_lock);
	assert_null(strstr(all_targets, "/smuggled"));
	assert_null(strstr(all_targets, "/third"));
	pthread_mutex_unlock(&seen_lock);
}

static void test_http_fronting(void **state)
{
	unsigned c0, r0, c1, r1;
	snapshot(&c0, &r0);
	/* fronted.test is allowed but resolves to 198.18.1.9, not here */
	int fd = sandbox_connect(UP_HTTP, 80);
	const char *req = "GET / HTTP/1.1\r\nHost: fronted.test\r\n\r\n";
	send_all(fd, req, strlen(req));
	char resp[4096];
	recv_until_eof(fd, resp, sizeof(resp));
	close(fd);
	assert_memory_equal(resp, "HTTP/1.1 403", 12);
	snapshot(&c1, &r1);
	assert_int_equal(c1, c0);
	assert_true(audit_has("\"reason\":\"host-ip-mismatch\""));
}

/* A minimal TLS 1.2-style ClientHello with one server_name. */
static size_t client_hello(uint8_t *out, const char *sni)
{
	size_t nl = strlen(sni), p = 0;
	uint8_t body[512];
	body[p++] = 3, body[p++] = 3;
	memset(body + p, 0xab, 32), p += 32;
	body[p++] = 0;                                  /* session id */
	body[p++] = 0, body[p++] = 4;                   /* cipher suites */
	body[p++] = 0x13, body[p++] = 0x01, body[p++] = 0xc0, body[p++] = 0x2f;
	body[p++] = 1, body[p++] = 0;                   /* compression */
	size_t ext_len = 4 + 2 + 3 + nl;
	body[p++] = (uint8_t)(ext_len >> 8), body[p++] = (uint8_t)ext_len;
	body[p++] = 0, body[p++] = 0;                   /* server_name */
	body[p++] = (uint8_t)((nl + 5) >> 8), body[p++] = (uint8_t)(nl + 5);
	body[p++] = (uint8_t)((nl + 3) >> 8), body[p++] = (uint8_t)(nl + 3);
	body[p++] = 0;
	body[p++] = (uint8_t)(nl >> 8), body[p++] = (uint8_t)nl;
	memcpy(body + p, sni, nl), p += nl;
	size_t q = 0;
	out[q++] = 0x16, out[q++] = 3, out[q++] = 1;
	out[q++] = (uint8_t)((p + 4) >> 8), out[q++] = (uint8_t)(p + 4);
	out[q++] = 1, out[q++] = 0;
	out[q++] = (uint8_t)(p >> 8), out[q++] = (uint8_t)p;
	memcpy(out + q, body, p);
	return q + p;
}

static void test_tls_denied_sni(void **state)
{
	int fd = sandbox_connect(UP_HTTP, 443);
	uint8_t hello[600];
	size_t n = client_hello(hello, "evil.test");
	send_all(fd, hello, n);
	uint8_t resp[64];
	size_t len = recv_until_eof(fd, (char *)resp, sizeof(resp));
	close(fd);
	assert_int_equal(len, 7);
	assert_int_equal(resp[0], 0x15);
	assert_int_equal(resp[1], 0x03);
	assert_true(resp[2] <= 0x03);
	assert_int_equal(resp[3], 0x00);
	assert_int_equal(resp[4], 0x02);
	assert_int_equal(resp[5], 0x02);
	assert_int_equal(resp[6], 0x31);
	assert_true(audit_has("\"event\":\"tcp\",\"verdict\":\"deny\",\"reason\":"
			      "\"host-not-allowed\",\"src\":\"198.19.255.2\""));
	assert_true(audit_has("\"sni\":\"evil.test\""));
}

static void test_tls_fronting(void **state)
{
	/* allowed.test, but to the raw server's address */
	int fd = sandbox_connect(UP_RAW, 443);
	uint8_t hello[600];
	send_all(fd, hello, client_hello(hello, "allowed.test"));
	uint8_t resp[64];
	size_t len = recv_until_eof(fd, (char *)resp, sizeof(resp));
	close(fd);
	/* 198.18.1.2 is allowed by an IP rule: the name does not matter there (and nothing
	 * listens on 443, so the client gets a reset, not an alert) */
	assert_int_equal(len, 0);
	assert_true(audit_has("\"reason\":\"connect-failed: Connection refused\""));
	fd = sandbox_connect("198.18.1.3", 443);
	send_all(fd, hello, client_hello(hello, "allowed.test"));
	len = recv_until_eof(fd, (char *)resp, sizeof(resp));
	close(fd);
	assert_int_equal(len, 7);
	assert_int_equal(resp[0], 0x15);
	assert_true(audit_has("\"reason\":\"sni-ip-mismatch\""));
}

static void test_silent_client(void **state)
{
	unsigned c0, r0, c1, r1;
	snapshot(&c0, &r0);
	int fd = sandbox_connect(UP_HTTP, 80);
	uint64_t t0 = moat_now_ms();
	char b[16];
	ssize_t r = recv(fd, b, sizeof(b), 0);
	uint64_t dt = moat_now_ms() - t0;
	close(fd);
	assert_true(r <= 0);
	assert_true(dt >= 250 && dt < 3000);
	snapshot(&c1, &r1);
	assert_int_equal(c1, c0);
	assert_true(audit_has("\"reason\":\"first-bytes-timeout\""));
}

struct client_tx {
	struct raw_tx tx;
	uint8_t mode;
	uint64_t want_back;
};

static void *client_writer(void *arg)
{
	struct client_tx *c = arg;
	uint8_t hdr[9] = { c->mode };
	memcpy(hdr + 1, &c->want_back, 8);
	send_all(c->tx.fd, hdr, sizeof(hdr));
	return raw_writer(&c->tx);
}

/* Moves up bytes up and down bytes down; returns elapsed ns. */
static uint64_t raw_transfer(uint16_t port, uint64_t up, uint64_t down, bool check)
{
	unsigned done0;
	pthread_mutex_lock(&seen_lock);
	done0 = raw_done;
	pthread_mutex_unlock(&seen_lock);
	int fd = sandbox_connect(UP_RAW, port);
	uint64_t t0 = moat_now_ns();
	struct client_tx c = { .tx = { .fd = fd, .n = up, .seed = check ? 0x5eed1 : 0 },
			       .mode = check ? 'Z' : 'Y', .want_back = down };
	pthread_t wt;
	pthread_create(&wt, NULL, client_writer, &c);
	uint64_t h;
	uint64_t got = read_all(fd, &h, check);
	pthread_join(wt, NULL);
	close(fd);
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&seen_lock);
		bool done = raw_done != done0;
		pthread_mutex_unlock(&seen_lock);
		if (done)
			break;
		usleep(10000);
	}
	uint64_t dt = moat_now_ns() - t0;
	assert_int_equal(got, down);
	pthread_mutex_lock(&seen_lock);
	assert_int_equal(raw_done, done0 + 1);
	assert_int_equal(raw_rx_len, up);
	uint64_t rx_hash = raw_rx_hash;
	pthread_mutex_unlock(&seen_lock);
	if (check) {
		/* what each side sent, hashed the same way */
		static uint8_t b[1 << 16];
		uint64_t s1 = 0x5eed1, s2 = 0x5eed2, h1 = FNV0, h2 = FNV0;
		for (uint64_t left = up; left; ) {
			size_t k = left < sizeof(b) ? (size_t)left : sizeof(b);
			fill_pattern(b, k, &s1);
			h1 = fnv(h1, b, k);
			left -= k;
		}
		for (uint64_t left = down; left; ) {
			size_t k = left < sizeof(b) ? (size_t)left : sizeof(b);
			fill_pattern(b, k, &s2);
			h2 = fnv(h2, b, k);
			left -= k;
		}
		assert_int_equal(rx_hash, h1);
		assert_int_equal(h, h2);
	}
	return dt;
}

static void test_large_both_ways(void **state)
{
	raw_transfer(RAW_PORT, BIG, BIG, true);
	usleep(100000);
	assert_true(audit_has("\"event\":\"close\",\"verdict\":\"allow\",\"reason\":\"closed\""));
	assert_true(audit_has("\"bytes_up\":67108873,\"bytes_down\":67108864"));
}

static void test_throughput(void **state)
{
	const uint64_t n = 1ull << 30;
	uint64_t direct = raw_transfer(DIRECT_PORT, n, 0, false);
	uint64_t proxied = raw_transfer(RAW_PORT, n, 0, false);
	double mb = (double)n / (1 << 20);
	double d = mb / ((double)direct / 1e9), p = mb / ((double)proxied / 1e9);
	print_message("throughput 1 GiB upload: direct %.0f MiB/s, through the proxy %.0f MiB/s, "
		      "ratio %.2f\n", d, p, p / d);
	assert_true(p / d > 0.2);
	struct tproxy_stats st;
	tproxy_stats(proxy, &st);
	print_message("stats: accepted %llu allowed %llu denied %llu active %llu\n",
		      (unsigned long long)st.accepted, (unsigned long long)st.allowed,
		      (unsigned long long)st.denied, (unsigned long long)st.active);
	assert_true(st.accepted >= 8);
	assert_true(st.denied >= 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_allowed_keepalive),
		cmocka_unit_test(test_http_denied),
		cmocka_unit_test(test_http_pipelined_denied),
		cmocka_unit_test(test_http_fronting),
		cmocka_unit_test(test_tls_denied_sni),
		cmocka_unit_test(test_tls_fronting),
		cmocka_unit_test(test_silent_client),
		cmocka_unit_test(test_large_both_ways),
		cmocka_unit_test(test_throughput),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

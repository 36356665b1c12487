/* The DNS filter with real sockets in a private network namespace: a fake
 * upstream on 127.0.0.2:5353 answers from a table and counts what it sees;
 * queries go straight to the filter's listener ports (no TPROXY needed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/audit.h"
#include "common/moat.h"
#include "profiles/profile.h"
#include "tproxy/dns.h"
#include "tproxy/dns_msg.h"
#include "tproxy/learned.h"

#define UP_ADDR     "127.0.0.2"  /* the fake upstream */
#define DEAD_ADDR   "127.0.0.3"  /* nothing listens: ICMP port unreachable */
#define SILENT_ADDR "127.0.0.4"  /* a socket that never answers */
#define UP_PORT     5353
#define BIG_N       40           /* A records in big.allowed.test: over 512 bytes */

static const char profile_json[] =
	"{ \"network\": { \"outbound\": { \"insecure_allow_all\": false,"
	" \"allow_host\": [\".allowed.test\", \"exact.test\"], \"allow_port\": [443] } } }";

static struct {
	bool skip;
	struct policy *policy;
	struct learned *learned;
	struct audit *audit;
	char audit_path[64];
	struct dnsf *main, *failover, *down;
	pthread_t up_thread;
	int up_udp, up_tcp, silent, stop_pipe[2];
	atomic_int up_udp_seen, up_tcp_seen;
} g;

/* ---- the fake upstream ---- */

static size_t put_a(uint8_t *p, uint32_t ttl, const uint8_t addr[4])
{
	uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, (uint8_t)(ttl >> 24), (uint8_t)(ttl >> 16),
			 (uint8_t)(ttl >> 8), (uint8_t)ttl, 0, 4, addr[0], addr[1], addr[2],
			 addr[3] };
	memcpy(p, rr, sizeof(rr));
	return sizeof(rr);
}

/* Answers a query: A records from a small table, TC=1 over UDP for
 * big.allowed.test, NXDOMAIN for names it does not know. */
static size_t fake_answer(const uint8_t *in, size_t len, bool tcp, uint8_t *out)
{
	struct dns_query q;
	if (dns_parse_query(in, len, &q) != PARSE_OK)
		return 0;
	size_t n = 12 + q.question_len;
	memcpy(out, in, n);
	out[2] = 0x81;
	out[3] = 0x80;
	out[11] = 0;
	uint16_t an = 0;
	bool known = strstr(q.qname, ".allowed.test") || strcmp(q.qname, "exact.test") == 0;
	if (!known) {
		out[3] |= DNS_RCODE_NXDOMAIN;
	} else if (q.qtype != DNS_TYPE_A) {
		/* NODATA */
	} else if (strcmp(q.qname, "big.allowed.test") == 0) {
		if (!tcp) {
			out[2] |= 0x02;
		} else {
			for (int i = 0; i < BIG_N; i++) {
				uint8_t a[4] = { 198, 18, 1, (uint8_t)i };
				n += put_a(out + n, 300, a);
			}
			an = BIG_N;
		}
	} else if (strcmp(q.qname, "cname.allowed.test") == 0) {
		/* cname.allowed.test CNAME edge.cdn.test; edge.cdn.test A 198.18.0.30 */
		uint8_t cname[] = { 0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 60, 0, 15,
				    4, 'e', 'd', 'g', 'e', 3, 'c', 'd', 'n', 4, 't', 'e', 's', 't', 0 };
		size_t target = n + 12;
		memcpy(out + n, cname, sizeof(cname));
		n += sizeof(cname);
		uint8_t a[4] = { 198, 18, 0, 30 };
		size_t at = n;
		n += put_a(out + n, 300, a);
		out[at] = (uint8_t)(0xc0 | (target >> 8));
		out[at + 1] = (uint8_t)target;
		an = 2;
	} else {
		uint8_t a[4] = { 198, 18, 0, 10 };
		n += put_a(out + n, 300, a);
		an = 1;
	}
	out[6] = (uint8_t)(an >> 8);
	out[7] = (uint8_t)an;
	return n;
}

static void fake_tcp_client(int fd)
{
	static uint8_t in[2 + 65535], out[65535];
	size_t have = 0;
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t r = read(fd, in + have, sizeof(in) - have);
		if (r <= 0)
			return;
		have += (size_t)r;
		const uint8_t *msg;
		size_t ml;
		if (dns_tcp_frame(in, have, &msg, &ml) != PARSE_OK)
			continue;
		atomic_fetch_add(&g.up_tcp_seen, 1);
		size_t n = fake_answer(msg, ml, true, out + 2);
		if (!n)
			return;
		uint8_t hdr[2] = { (uint8_t)(n >> 8), (uint8_t)n };
		if (write(fd, hdr, 2) != 2 || write(fd, out + 2, n) != (ssize_t)n)
			return;
		return;
	}
}

static void *fake_upstream(void *arg)
{
	static uint8_t in[65536], out[65536];
	struct pollfd p[3] = {
		{ .fd = g.up_udp, .events = POLLIN },
		{ .fd = g.up_tcp, .events = POLLIN },
		{ .fd = g.stop_pipe[0], .events = POLLIN },
	};
	for (;;) {
		if (poll(p, 3, -1) < 0)
			continue;
		if (p[2].revents)
			return NULL;
		if (p[0].revents) {
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			ssize_t r = recvfrom(g.up_udp, in, sizeof(in), 0, (struct sockaddr *)&from,
					     &fl);
			if (r > 0) {
				atomic_fetch_add(&g.up_udp_seen, 1);
				size_t n = fake_answer(in, (size_t)r, false, out);
				if (n)
					sendto(g.up_udp, out, n, 0, (struct sockaddr *)&from, fl);
			}
		}
		if (p[1].revents) {
			int fd = accept(g.up_tcp, NULL, NULL);
			if (fd >= 0) {
				fake_tcp_client(fd);
				close(fd);
			}
		}
	}
}

static int bound_socket(int type, const char *addr, uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	inet_pton(AF_INET, addr, &sin.sin_addr);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	if (type == SOCK_STREAM)
		assert_int_equal(listen(fd, 16), 0);
	return fd;
}

static void upstream(struct dns_upstream *u, const char *s)
{
	assert_int_equal(dnsf_parse_upstream(s, u, NULL), 0);
}

static int lo_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (r == 0) {
		ifr.ifr_flags |= IFF_UP;
		r = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return r;
}

static int setup(void **state)
{
	struct moat_error e = { 0 };
	if (unshare(CLONE_NEWNET) < 0 || lo_up() < 0) {
		g.skip = true;
		return 0;
	}
	assert_int_equal(policy_load_buffer(profile_json, strlen(profile_json), "test.json",
					    &g.policy, &e), 0);
	g.learned = learned_new(5, 3600);
	snprintf(g.audit_path, sizeof(g.audit_path), "/tmp/moat-dns-audit-XXXXXX");
	int afd = mkstemp(g.audit_path);
	assert_true(afd >= 0);
	close(afd);
	g.audit = audit_open(g.audit_path, "t1", &e);
	assert_non_null(g.audit);

	g.up_udp = bound_socket(SOCK_DGRAM, UP_ADDR, UP_PORT);
	g.up_tcp = bound_socket(SOCK_STREAM, UP_ADDR, UP_PORT);
	g.silent = bound_socket(SOCK_DGRAM, SILENT_ADDR, UP_PORT);
	assert_int_equal(pipe(g.stop_pipe), 0);
	assert_int_equal(pthread_create(&g.up_thread, NULL, fake_upstream, NULL), 0);

	struct dns_upstream ups[2];
	upstream(&ups[0], UP_ADDR ":5353");
	struct dnsf_config cfg = {
		.policy = g.policy, .audit = g.audit, .learned = g.learned,
		.upstreams = ups, .n_upstreams = 1, .timeout_ms = 300,
		.answer_https_svcb_empty = true,
	};
	if (dnsf_start(&cfg, &g.main, &e) < 0)
		fail_msg("dnsf_start: %s", e.msg);

	upstream(&ups[0], SILENT_ADDR ":5353");
	upstream(&ups[1], UP_ADDR ":5353");
	cfg.audit = NULL;
	cfg.n_upstreams = 2;
	if (dnsf_start(&cfg, &g.failover, &e) < 0)
		fail_msg("dnsf_start: %s", e.msg);

	upstream(&ups[0], DEAD_ADDR ":5353");
	upstream(&ups[1], SILENT_ADDR ":5353");
	if (dnsf_start(&cfg, &g.down, &e) < 0)
		fail_msg("dnsf_start: %s", e.msg);
	return 0;
}

static int teardown(void **state)
{
	if (g.skip)
		return 0;
	dnsf_stop(g.main);
	dnsf_stop(g.failover);
	dnsf_stop(g.down);
	if (write(g.stop_pipe[1], "x", 1) == 1)
		pthread_join(g.up_thread, NULL);
	close(g.up_udp);
	close(g.up_tcp);
	close(g.silent);
	audit_close(g.audit);
	if (!getenv("KEEP_AUDIT"))
		unlink(g.audit_path);
	learned_free(g.learned);
	policy_free(g.policy);
	return 0;
}

/* ---- clients ---- */

static size_t make_query(uint8_t *buf, uint16_t id, const char *name, uint16_t type,
			 uint16_t edns_size)
{
	size_t n = 12;
	memset(buf, 0, 12);
	buf[0] = (uint8_t)(id >> 8);
	buf[1] = (uint8_t)id;
	buf[2] = 0x01;
	buf[5] = 1;
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		buf[n++] = (uint8_t)l;
		memcpy(buf + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	buf[n++] = 0;
	buf[n++] = (uint8_t)(type >> 8);
	buf[n++] = (uint8_t)type;
	buf[n++] = 0;
	buf[n++] = 1;
	if (edns_size) {
		uint8_t opt[] = { 0, 0, 41, (uint8_t)(edns_size >> 8), (uint8_t)edns_size,
				  0, 0, 0, 0, 0, 0 };
		memcpy(buf + n, opt, sizeof(opt));
		n += sizeof(opt);
		buf[11] = 1;
	}
	return n;
}

static void loopback(int family, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
	}
}

/* Sends over UDP and waits for one reply from the listener's address;
 * returns its length, or -1 after timeout_ms. */
static ssize_t ask_udp(struct dnsf *d, int family, const uint8_t *q, size_t qn, uint8_t *out,
		       size_t cap, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	loopback(family, dnsf_port(d, family, SOCK_DGRAM), &ss, &sl);
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
	assert_int_equal(send(fd, q, qn, 0), (ssize_t)qn);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t r = -1;
	if (poll(&p, 1, timeout_ms) == 1)
		r = recv(fd, out, cap, 0);
	close(fd);
	return r;
}

static ssize_t read_full(int fd, uint8_t *buf, size_t n)
{
	size_t have = 0;
	while (have < n) {
		ssize_t r = read(fd, buf + have, n - have);
		if (r <= 0)
			return -1;
		have += (size_t)r;
	}
	return (ssize_t)have;
}

/* Sends each query over one TCP connection and reads the replies in order. */
static ssize_t ask_tcp(struct dnsf *d, const uint8_t *q, size_t qn, uint8_t *out, size_t cap,
		       int count)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	loopback(AF_INET, dnsf_port(d, AF_INET, SOCK_STREAM), &ss, &sl);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 3 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
	uint8_t frame[2 + 512];
	frame[0] = (uint8_t)(qn >> 8);
	frame[1] = (uint8_t)qn;
	memcpy(frame + 2, q, qn);
	for (int i = 0; i < count; i++)
		assert_int_equal(write(fd, frame, qn + 2), (ssize_t)qn + 2);
	ssize_t r = -1;
	for (int i = 0; i < count; i++) {
		uint8_t hdr[2];
		if (read_full(fd, hdr, 2) < 0)
			break;
		size_t n = (size_t)((hdr[0] << 8) | hdr[1]);
		if (n > cap || read_full(fd, out, n) < 0)
			break;
		r = (ssize_t)n;
	}
	close(fd);
	return r;
}

struct got {
	unsigned n;
	char first[64];
};

static void collect(void *arg, const struct dns_answer *a)
{
	struct got *g2 = arg;
	if (g2->n++ == 0)
		inet_ntop(a->family, a->addr, g2->first, sizeof(g2->first));
}

/* ---- the table ---- */

enum proto { UDP4, UDP6, TCP4 };

struct scase {
	const char *desc;
	const char *name;
	uint16_t type;
	enum proto proto;
	uint16_t edns;
	int rcode;
	unsigned answers;
	const char *first;      /* first address, when answers */
	bool tc;
	int up_udp, up_tcp;     /* queries the upstream must have seen */
};

static const struct scase scases[] = {
	{ "allowed name is relayed", "www.allowed.test", DNS_TYPE_A, UDP4, 0,
	  DNS_RCODE_NOERROR, 1, "198.18.0.10", false, 1, 0 },
	{ "exact rule, upper case", "EXACT.test", DNS_TYPE_A, UDP4, 0,
	  DNS_RCODE_NOERROR, 1, "198.18.0.10", false, 1, 0 },
	{ "denied name: NXDOMAIN, never upstream", "www.denied.test", DNS_TYPE_A, UDP4, 0,
	  DNS_RCODE_NXDOMAIN, 0, NULL, false, 0, 0 },
	{ "sub of an exact rule is denied", "a.exact.test", DNS_TYPE_A, UDP4, 0,
	  DNS_RCODE_NXDOMAIN, 0, NULL, false, 0, 0 },
	{ "odd character in an allowed suffix", "a b.allowed.test", DNS_TYPE_A, UDP4, 0,
	  DNS_RCODE_NXDOMAIN, 0, NULL, false, 0, 0 },
	{ "ANY is refused even when allowed", "www.allowed.test", DNS_TYPE_ANY, UDP4, 0,
	  DNS_RCODE_REFUSED, 0, NULL, false, 0, 0 },
	{ "HTTPS gets an empty NOERROR", "www.allowed.test", DNS_TYPE_HTTPS, UDP4, 1232,
	  DNS_RCODE_NOERROR, 0, NULL, false, 0, 0 },
	{ "SVCB gets an empty NOERROR", "www.allowed.test", DNS_TYPE_SVCB, UDP4, 0,
	  DNS_RCODE_NOERROR, 0, NULL, false, 0, 0 },
	{ "TXT for an allowed name is forwarded", "www.allowed.test", DNS_TYPE_TXT, UDP4, 0,
	  DNS_RCODE_NOERROR, 0, NULL, false, 1, 0 },
	{ "reverse lookups are names like any other", "10.0.18.198.in-addr.arpa", DNS_TYPE_PTR,
	  UDP4, 0, DNS_RCODE_NXDOMAIN, 0, NULL, false, 0, 0 },
	{ "CNAME chain", "cname.allowed.test", DNS_TYPE_A, UDP4, 0,
	  DNS_RCODE_NOERROR, 1, "198.18.0.30", false, 1, 0 },
	{ "IPv6 listener", "www.allowed.test", DNS_TYPE_A, UDP6, 0,
	  DNS_RCODE_NOERROR, 1, "198.18.0.10", false, 1, 0 },
	{ "TCP client", "www.allowed.test", DNS_TYPE_A, TCP4, 0,
	  DNS_RCODE_NOERROR, 1, "198.18.0.10", false, 1, 0 },
	{ "TCP client, denied", "www.denied.test", DNS_TYPE_A, TCP4, 0,
	  DNS_RCODE_NXDOMAIN, 0, NULL, false, 0, 0 },
	{ "TC from upstream: retried over TCP, too big for 512: TC to the client",
	  "big.allowed.test", DNS_TYPE_A, UDP4, 0, DNS_RCODE_NOERROR, 0, NULL, true, 1, 1 },
	{ "TC from upstream: retried over TCP, fits the client's EDNS size",
	  "big.allowed.test", DNS_TYPE_A, UDP4, 4096, DNS_RCODE_NOERROR, BIG_N, "198.18.1.0",
	  false, 1, 1 },
	{ "TCP client gets the big answer whole", "big.allowed.test", DNS_TYPE_A, TCP4, 0,
	  DNS_RCODE_NOERROR, BIG_N, "198.18.1.0", false, 1, 1 },
};

static void test_server_table(void **state)
{
	if (g.skip)
		skip();
	for (size_t i = 0; i < ARRAY_SIZE(scases); i++) {
		const struct scase *c = &scases[i];
		uint8_t q[512], out[65536];
		struct dns_query pq;
		struct dns_reply_info info;
		struct got got = { 0 };
		print_message("%s\n", c->desc);
		if (c->proto == UDP6 && !dnsf_port(g.main, AF_INET6, SOCK_DGRAM)) {
			print_message("  (no IPv6 in this namespace)\n");
			continue;
		}
		int udp0 = atomic_load(&g.up_udp_seen), tcp0 = atomic_load(&g.up_tcp_seen);
		size_t qn = make_query(q, (uint16_t)(0x7000 + i), c->name, c->type, c->edns);
		assert_int_equal(dns_parse_query(q, qn, &pq), PARSE_OK);
		ssize_t n = c->proto == TCP4 ? ask_tcp(g.main, q, qn, out, sizeof(out), 1)
			: ask_udp(g.main, c->proto == UDP6 ? AF_INET6 : AF_INET, q, qn, out,
				  sizeof(out), 2000);
		assert_true(n > 0);
		assert_int_equal(dns_parse_answers(out, (size_t)n, &pq, &info, collect, &got),
				 PARSE_OK);
		assert_int_equal(info.rcode, c->rcode);
		assert_int_equal(info.tc, c->tc);
		assert_int_equal(got.n, c->answers);
		if (c->first)
			assert_string_equal(got.first, c->first);
		assert_int_equal(atomic_load(&g.up_udp_seen) - udp0, c->up_udp);
		assert_int_equal(atomic_load(&g.up_tcp_seen) - tcp0, c->up_tcp);
		if (c->proto != TCP4 && !c->edns)
			assert_true(n <= 512);
	}
}

static void test_learned_from_answers(void **state)
{
	if (g.skip)
		skip();
	uint8_t a[4] = { 198, 18, 0, 10 }, c[4] = { 198, 18, 0, 30 }, x[4] = { 198, 18, 9, 9 };
	assert_true(learned_has(g.learned, "www.allowed.test", 16, AF_INET, a));
	assert_true(learned_has(g.learned, "exact.test", 10, AF_INET, a));
	/* learned under the name the client asked, not the CNAME target */
	assert_true(learned_has(g.learned, "cname.allowed.test", 18, AF_INET, c));
	assert_false(learned_has(g.learned, "edge.cdn.test", 13, AF_INET, c));
	assert_false(learned_has(g.learned, "www.denied.test", 15, AF_INET, a));
	assert_false(learned_has(g.learned, "www.allowed.test", 16, AF_INET, x));
}

static void test_malformed_then_valid(void **state)
{
	if (g.skip)
		skip();
	static const struct {
		const char *desc;
		uint8_t msg[40];
		size_t len;
		int rcode;              /* -1: no answer */
	} m[] = {
		{ "two bytes", { 0x12, 0x34 }, 2, -1 },
		{ "a response", { 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1 },
		  17, -1 },
		{ "qdcount 2, header only", { 0x12, 0x34, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0 }, 12,
		  DNS_RCODE_FORMERR },
		{ "pointer loop", { 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1 },
		  18, DNS_RCODE_FORMERR },
		{ "opcode UPDATE", { 0x12, 0x34, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1 }, 17,
		  DNS_RCODE_NOTIMP },
	};
	for (size_t i = 0; i < ARRAY_SIZE(m); i++) {
		uint8_t out[512], q[512];
		print_message("%s\n", m[i].desc);
		ssize_t n = ask_udp(g.main, AF_INET, m[i].msg, m[i].len, out, sizeof(out),
				    m[i].rcode < 0 ? 300 : 2000);
		if (m[i].rcode < 0) {
			assert_int_equal(n, -1);
		} else {
			assert_int_equal(n, 12);
			assert_int_equal(out[0], 0x12);
			assert_int_equal(out[1], 0x34);
			assert_int_equal(out[2] & 0x80, 0x80);
			assert_int_equal(out[3] & 0x0f, m[i].rcode);
		}
		/* and the next valid query is still answered */
		size_t qn = make_query(q, 0x4444, "www.allowed.test", DNS_TYPE_A, 0);
		n = ask_udp(g.main, AF_INET, q, qn, out, sizeof(out), 2000);
		assert_true(n > 12);
		assert_int_equal(out[3] & 0x0f, DNS_RCODE_NOERROR);
	}
}

/* A client that asks again from the same port reaches the socket its first
 * reply came from (the kernel prefers the connected reply socket): it must
 * be answered all the same. */
static void test_udp_same_port_again(void **state)
{
	if (g.skip)
		skip();
	struct sockaddr_storage ss;
	socklen_t sl;
	uint8_t q[512], out[4096];
	loopback(AF_INET, dnsf_port(g.main, AF_INET, SOCK_DGRAM), &ss, &sl);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, sl), 0);
	static const char *const names[] = { "www.allowed.test", "www.denied.test",
					     "exact.test", "www.allowed.test" };
	static const int rcodes[] = { DNS_RCODE_NOERROR, DNS_RCODE_NXDOMAIN, DNS_RCODE_NOERROR,
				      DNS_RCODE_NOERROR };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		size_t qn = make_query(q, (uint16_t)(0x3000 + i), names[i], DNS_TYPE_A, 0);
		assert_int_equal(send(fd, q, qn, 0), (ssize_t)qn);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		assert_int_equal(poll(&p, 1, 2000), 1);
		ssize_t n = recv(fd, out, sizeof(out), 0);
		assert_true(n >= 12);
		assert_int_equal((out[0] << 8) | out[1], 0x3000 + i);
		assert_int_equal(out[3] & 0x0f, rcodes[i]);
	}
	close(fd);
}

static void test_tcp_several_queries(void **state)
{
	if (g.skip)
		skip();
	uint8_t q[512], out[4096];
	struct dns_query pq;
	struct dns_reply_info info;
	size_t qn = make_query(q, 0x5555, "www.allowed.test", DNS_TYPE_A, 0);
	assert_int_equal(dns_parse_query(q, qn, &pq), PARSE_OK);
	ssize_t n = ask_tcp(g.main, q, qn, out, sizeof(out), 3);
	assert_true(n > 0);
	assert_int_equal(dns_parse_answers(out, (size_t)n, &pq, &info, NULL, NULL), PARSE_OK);
	assert_int_equal(info.n_addrs, 1);
}

static void test_failover_and_down(void **state)
{
	if (g.skip)
		skip();
	uint8_t q[512], out[4096];
	size_t qn = make_query(q, 0x6666, "www.allowed.test", DNS_TYPE_A, 0);

	uint64_t t0 = moat_now_ms();
	ssize_t n = ask_udp(g.failover, AF_INET, q, qn, out, sizeof(out), 3000);
	uint64_t dt = moat_now_ms() - t0;
	assert_true(n > 12);
	assert_int_equal(out[3] & 0x0f, DNS_RCODE_NOERROR);
	assert_true(dt >= 250);         /* the silent first upstream timed out (300 ms) */

	t0 = moat_now_ms();
	n = ask_udp(g.down, AF_INET, q, qn, out, sizeof(out), 3000);
	dt = moat_now_ms() - t0;
	assert_true(n >= 12);
	assert_int_equal(out[3] & 0x0f, DNS_RCODE_SERVFAIL);
	assert_true(dt < 1500);
}

/* Audit lines: one dns event per query with the documented fields. */
static void test_audit_lines(void **state)
{
	if (g.skip)
		skip();
	char *text = NULL;
	size_t len;
	usleep(50 * 1000);
	assert_int_equal(moat_read_file(g.audit_path, 1 << 22, &text, &len, NULL), 0);
	bool saw_deny = false, saw_allow = false, saw_any = false, saw_https = false,
	     saw_malformed = false, saw_tcp = false;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *o = cJSON_Parse(line);
		assert_non_null(o);
		const char *ev = cJSON_GetStringValue(cJSON_GetObjectItem(o, "event"));
		const char *verdict = cJSON_GetStringValue(cJSON_GetObjectItem(o, "verdict"));
		const char *reason = cJSON_GetStringValue(cJSON_GetObjectItem(o, "reason"));
		const char *qname = cJSON_GetStringValue(cJSON_GetObjectItem(o, "qname"));
		const char *qtype = cJSON_GetStringValue(cJSON_GetObjectItem(o, "qtype"));
		const char *rcode = cJSON_GetStringValue(cJSON_GetObjectItem(o, "rcode"));
		const char *src = cJSON_GetStringValue(cJSON_GetObjectItem(o, "src"));
		const char *dst = cJSON_GetStringValue(cJSON_GetObjectItem(o, "dst"));
		const char *proto = cJSON_GetStringValue(cJSON_GetObjectItem(o, "proto"));
		cJSON *answers = cJSON_GetObjectItem(o, "answers");
		assert_string_equal(ev, "dns");
		assert_non_null(verdict);
		assert_non_null(reason);
		assert_non_null(src);
		assert_non_null(dst);
		assert_non_null(proto);
		assert_non_null(cJSON_GetObjectItem(o, "ts"));
		assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "sandbox")), "t1");
		if (qname && strcmp(qname, "www.denied.test") == 0 && strcmp(proto, "udp") == 0) {
			assert_string_equal(verdict, "deny");
			assert_string_equal(reason, "host-not-allowed");
			assert_string_equal(rcode, "NXDOMAIN");
			assert_string_equal(qtype, "A");
			assert_string_equal(src, "127.0.0.1");
			assert_string_equal(dst, "127.0.0.1");
			assert_null(answers);
			saw_deny = true;
		}
		if (qname && strcmp(qname, "www.allowed.test") == 0 && qtype &&
		    strcmp(qtype, "A") == 0 && strcmp(proto, "udp") == 0 &&
		    strcmp(src, "127.0.0.1") == 0) {
			assert_string_equal(verdict, "allow");
			assert_string_equal(reason, "allow-host");
			assert_string_equal(rcode, "NOERROR");
			assert_true(cJSON_IsArray(answers));
			assert_int_equal(cJSON_GetArraySize(answers), 1);
			assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(answers, 0)),
					    "198.18.0.10");
			saw_allow = true;
		}
		if (qtype && strcmp(qtype, "ANY") == 0) {
			assert_string_equal(reason, "qtype-any");
			assert_string_equal(rcode, "REFUSED");
			saw_any = true;
		}
		if (qtype && strcmp(qtype, "HTTPS") == 0) {
			assert_string_equal(verdict, "allow");
			assert_string_equal(reason, "https-svcb-empty");
			assert_string_equal(rcode, "NOERROR");
			saw_https = true;
		}
		if (strcmp(reason, "malformed") == 0)
			saw_malformed = true;
		if (strcmp(proto, "tcp") == 0)
			saw_tcp = true;
		cJSON_Delete(o);
	}
	free(text);
	assert_true(saw_deny && saw_allow && saw_any && saw_https && saw_malformed && saw_tcp);
}

static void test_parse_upstream(void **state)
{
	static const struct {
		const char *s;
		int ret, family;
		uint16_t port;
	} c[] = {
		{ "198.18.0.1", 0, AF_INET, 53 },
		{ "198.18.0.1:5353", 0, AF_INET, 5353 },
		{ "[2001:2::1]:5353", 0, AF_INET6, 5353 },
		{ "[2001:2::1]", 0, AF_INET6, 53 },
		{ "2001:2::1", 0, AF_INET6, 53 },
		{ "198.18.0.1:0", -EINVAL, 0, 0 },
		{ "198.18.0.1:65536", -EINVAL, 0, 0 },
		{ "example.com", -EINVAL, 0, 0 },
		{ "[198.18.0.1]:53", -EINVAL, 0, 0 },
		{ "[2001:2::1]x", -EINVAL, 0, 0 },
		{ "", -EINVAL, 0, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		struct dns_upstream u;
		struct moat_error e = { 0 };
		print_message("%s\n", c[i].s);
		assert_int_equal(dnsf_parse_upstream(c[i].s, &u, &e), c[i].ret);
		if (c[i].ret)
			continue;
		assert_int_equal(u.addr.ss_family, c[i].family);
		uint16_t port = c[i].family == AF_INET ?
			ntohs(((struct sockaddr_in *)&u.addr)->sin_port) :
			ntohs(((struct sockaddr_in6 *)&u.addr)->sin6_port);
		assert_int_equal(port, c[i].port);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_upstream),
		cmocka_unit_test(test_server_table),
		cmocka_unit_test(test_learned_from_answers),
		cmocka_unit_test(test_malformed_then_valid),
		cmocka_unit_test(test_udp_same_port_again),
		cmocka_unit_test(test_tcp_several_queries),
		cmocka_unit_test(test_failover_and_down),
		cmocka_unit_test(test_audit_lines),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

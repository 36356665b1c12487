/* pcap capture against the real kernel (root): the test process unshares its
 * network namespace and wires a veth pair to a second namespace made by a
 * helper thread; packets sent from there are captured on this side, and the
 * files are read back with moat's reader (and tshark when installed).
 * Without root only the option parsing cases run. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "common/moat.h"
#include "tools/capture.h"
#include "tools/flows.h"
#include "tools/pcapread.h"

#define HOST_IF "mcap0"
#define PEER_IF "mcap1"
#define HOST_IP "198.18.99.1"
#define PEER_IP "198.18.99.2"
#define DISCARD_PORT 9

static int peer_ns = -1;
static bool have_root_env;
static char dir[64];

/* ---- option parsing (no root needed) ---- */

struct rot_case {
	const char *s;
	int ok;
	uint64_t bytes;
	unsigned count;
	const char *err;
};

static const struct rot_case rot_cases[] = {
	{ "10M", 1, 10ull << 20, 0, NULL },
	{ "1G,5", 1, 1ull << 30, 5, NULL },
	{ "500k,2", 1, 500ull << 10, 2, NULL },
	{ "4096", 1, 4096, 0, NULL },
	{ "4095", 0, 0, 0, "at least 4096" },
	{ "10M,0", 0, 0, 0, "COUNT" },
	{ "10M,x", 0, 0, 0, "COUNT" },
	{ "10T", 0, 0, 0, "SIZE[,COUNT]" },
	{ "M", 0, 0, 0, "not a number" },
	{ "", 0, 0, 0, "empty" },
	{ "99999999999999G", 0, 0, 0, "too large" },
};

static void test_parse_rotate(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(rot_cases); i++) {
		const struct rot_case *c = &rot_cases[i];
		struct capture_opts o = { 0 };
		struct moat_error e = { 0 };
		int r = capture_parse_rotate(c->s, &o, &e);

		print_message("rotate '%s': %s\n", c->s, r < 0 ? e.msg : "ok");
		assert_int_equal(r == 0, c->ok);
		if (c->ok) {
			assert_int_equal(o.rotate_bytes, c->bytes);
			assert_int_equal(o.rotate_count, c->count);
		} else {
			assert_non_null(strstr(e.msg, c->err));
		}
	}
}

/* ---- the namespaces ---- */

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static pthread_barrier_t bar;
static pid_t peer_tid;

/* Runs in its own thread: a new network namespace for the peer end, kept by
 * peer_ns.  The main thread moves the veth end into it by the thread's id. */
static void *make_peer(void *arg)
{
	int *ok = arg;

	*ok = 0;
	if (unshare(CLONE_NEWNET) == 0)
		peer_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	peer_tid = gettid();
	pthread_barrier_wait(&bar);
	pthread_barrier_wait(&bar);     /* the main thread moved the interface */
	/* system() forks from this thread: the child is in the peer namespace */
	*ok = peer_ns >= 0 &&
	      sh("ip link set lo up && ip addr add " PEER_IP "/24 dev " PEER_IF " && "
		 "ip link set " PEER_IF " up && "
		 "ip neigh replace " HOST_IP " lladdr 02:00:00:00:99:01 dev " PEER_IF
		 " nud permanent") == 0;
	return NULL;
}

static int setup(void **state)
{
	pthread_t th;
	int ok = 0;

	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		print_message("SKIP: needs root to make network namespaces\n");
		return 0;
	}
	if (sh("ip link set lo up && ip link add " HOST_IF " address 02:00:00:00:99:01 type veth "
	       "peer name " PEER_IF " address 02:00:00:00:99:02") != 0)
		return -1;
	pthread_barrier_init(&bar, NULL, 2);
	if (pthread_create(&th, NULL, make_peer, &ok))
		return -1;
	pthread_barrier_wait(&bar);
	sh("ip link set " PEER_IF " netns %d", (int)peer_tid);
	pthread_barrier_wait(&bar);
	if (pthread_join(th, NULL) || !ok)
		return -1;
	if (sh("ip addr add " HOST_IP "/24 dev " HOST_IF " && ip link set " HOST_IF " up") != 0)
		return -1;
	snprintf(dir, sizeof(dir), "/tmp/moat-capture-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	have_root_env = true;
	return 0;
}

static int teardown(void **state)
{
	if (have_root_env)
		sh("rm -rf %s", dir);
	if (peer_ns >= 0)
		close(peer_ns);
	return 0;
}

struct send_args {
	unsigned n;
	size_t size;
	int ok;
};

/* Sends n numbered UDP datagrams from the peer namespace to the host side. */
static void *sender(void *arg)
{
	struct send_args *a = arg;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(DISCARD_PORT) };
	uint8_t buf[1500] = { 0 };
	int fd;

	a->ok = 0;
	if (setns(peer_ns, CLONE_NEWNET) < 0)
		return NULL;
	inet_pton(AF_INET, HOST_IP, &to.sin_addr);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	for (unsigned i = 0; i < a->n; i++) {
		memcpy(buf, &i, sizeof(i));
		if (sendto(fd, buf, a->size, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			close(fd);
			return NULL;
		}
	}
	close(fd);
	a->ok = 1;
	return NULL;
}

static void send_udp(unsigned n, size_t size)
{
	struct send_args a = { .n = n, .size = size };
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, sender, &a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(a.ok);
}

/* Reads one file with moat's reader: counts the numbered datagrams seen. */
static unsigned read_back(const char *path, uint8_t *seen, unsigned n, uint64_t *last_ts)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	struct moat_error e = { 0 };
	struct pcap_file f;
	struct pcap_rec rec;
	enum parse_result r;
	unsigned got = 0;

	assert_int_equal(moat_read_file(path, 1u << 30, &buf, &len, &e), 0);
	assert_int_equal(pcap_open_buf(&f, (uint8_t *)buf, len), PARSE_OK);
	assert_int_equal(f.linktype, PCAP_LINKTYPE_ETHERNET);
	while ((r = pcap_next_rec(&f, &rec)) == PARSE_OK) {
		struct pkt p;
		uint32_t i;

		assert_true(rec.ts_us >= *last_ts);
		*last_ts = rec.ts_us;
		if (pkt_decode(f.linktype, rec.data, rec.caplen, &p) != PARSE_OK ||
		    p.proto != PKT_PROTO_UDP || p.dport != DISCARD_PORT || p.payload_len < 4)
			continue;
		memcpy(&i, p.payload, 4);
		assert_true(i < n);
		if (!seen[i]++)
			got++;
	}
	assert_int_equal(r, PARSE_NEED_MORE);
	assert_true(pcap_at_end(&f));
	return got;
}

static void test_capture_drain(void **state)
{
	char path[128];
	struct capture_opts o = { .path = path, .filter = "udp" };
	struct capture *c = NULL;
	struct capture_stats st;
	struct moat_error e = { 0 };
	uint8_t seen[500] = { 0 };
	uint64_t ts = 0;
	struct stat sb;

	if (!have_root_env)
		skip();
	snprintf(path, sizeof(path), "%s/cap.pcap", dir);
	assert_int_equal(capture_start(HOST_IF, &o, &c, &e), 0);
	send_udp(500, 64);
	/* no pause: whatever is still queued must be drained by the stop */
	capture_stop(c, &st);
	print_message("packets %llu recv %u drop %u files %u\n", (unsigned long long)st.packets,
		      st.ps_recv, st.ps_drop, st.files);
	assert_int_equal(st.packets, 500);
	assert_int_equal(st.files, 1);
	assert_int_equal(read_back(path, seen, 500, &ts), 500);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	if (sh("command -v tshark >/dev/null 2>&1") == 0) {
		assert_int_equal(sh("tshark -r %s -c 1 >/dev/null 2>&1", path), 0);
		assert_int_equal(sh("test \"$(tshark -r %s 2>/dev/null | wc -l)\" -eq 500", path), 0);
	} else {
		print_message("tshark not installed: not checked\n");
	}
}

static void test_capture_rotation(void **state)
{
	char path[128];
	struct capture_opts o = { .path = path, .filter = "udp port 9", .rotate_bytes = 4096 };
	struct capture *c = NULL;
	struct capture_stats st;
	struct moat_error e = { 0 };
	uint8_t seen[300] = { 0 };
	uint64_t ts = 0;
	unsigned got = 0;
	char **paths = NULL;
	size_t np = 0;

	if (!have_root_env)
		skip();
	snprintf(path, sizeof(path), "%s/rot.pcap", dir);
	assert_int_equal(capture_start(HOST_IF, &o, &c, &e), 0);
	send_udp(300, 200);
	capture_stop(c, &st);
	print_message("rotation: %u files for %llu packets\n", st.files,
		      (unsigned long long)st.packets);
	assert_true(st.files >= 10);
	assert_int_equal(flows_pcap_set(path, &paths, &np, &e), 0);
	assert_int_equal(np, st.files);
	for (size_t i = 0; i < np; i++) {
		char want[160];
		struct stat sb;

		if (i == 0)
			snprintf(want, sizeof(want), "%s", path);
		else
			snprintf(want, sizeof(want), "%s.%zu", path, i);
		assert_string_equal(paths[i], want);
		assert_int_equal(stat(paths[i], &sb), 0);
		assert_true(sb.st_size <= 4096);
		got += read_back(paths[i], seen, 300, &ts);
	}
	assert_int_equal(got, 300);
	flows_free_paths(paths, np);

	/* at most 3 files kept: the newest ones */
	snprintf(path, sizeof(path), "%s/keep.pcap", dir);
	o.rotate_count = 3;
	assert_int_equal(capture_start(HOST_IF, &o, &c, &e), 0);
	send_udp(300, 200);
	capture_stop(c, &st);
	assert_int_equal(flows_pcap_set(path, &paths, &np, &e), 0);
	assert_int_equal(np, 3);
	{
		char want[160];

		snprintf(want, sizeof(want), "%s.%u", path, st.files - 1);
		assert_string_equal(paths[2], want);
	}
	flows_free_paths(paths, np);
}

static void test_capture_errors(void **state)
{
	char path[128];
	struct capture_opts o = { .path = path, .filter = "udp and and port" };
	struct capture *c = NULL;
	struct moat_error e = { 0 };

	if (!have_root_env)
		skip();
	snprintf(path, sizeof(path), "%s/bad.pcap", dir);
	assert_true(capture_start(HOST_IF, &o, &c, &e) < 0);
	print_message("%s\n", e.msg);
	assert_non_null(strstr(e.msg, "'udp and and port'"));
	assert_null(c);
	assert_int_equal(access(path, F_OK), -1);

	o.filter = NULL;
	assert_true(capture_start("nosuchif0", &o, &c, &e) < 0);
	print_message("%s\n", e.msg);
	assert_non_null(strstr(e.msg, "nosuchif0"));

	snprintf(path, sizeof(path), "%s/no/such/dir/x.pcap", dir);
	assert_true(capture_start(HOST_IF, &o, &c, &e) < 0);
	assert_non_null(strstr(e.msg, "x.pcap"));
	capture_stop(NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_rotate),
		cmocka_unit_test(test_capture_drain),
		cmocka_unit_test(test_capture_rotation),
		cmocka_unit_test(test_capture_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/* The embedded sandbox against the real kernel (root): namespaces, files, capabilities, exec
 * errors, exit statuses, signals and the hold before sandbox_start(). */
#include "common/moat.h"
#include "runner/sandbox.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define RESOLV "nameserver 10.231.0.1\noptions ndots:1\n"
#define HOSTS "127.0.0.1 localhost\n10.231.0.1 moat-gw\n"
#define HOSTNAME "moat-test1"

static char noexec_path[64];

struct result {
	int create_r, start_r, status;
	struct moat_error e;
	char out[8192];
};

/* Runs spec with the workload's stdout in a memfd; fills res. */
static void run_spec(const struct sandbox_spec *spec, struct result *res)
{
	struct sandbox sb;
	int out = memfd_create("out", MFD_CLOEXEC);
	int saved1 = dup(1);

	memset(res, 0, sizeof(*res));
	res->status = -1;
	assert_true(out >= 0 && saved1 >= 0);
	/* the init inherits fd 1 at clone time */
	dup2(out, 1);
	res->create_r = sandbox_create(spec, &sb, &res->e);
	dup2(saved1, 1);
	close(saved1);
	if (res->create_r == 0) {
		res->start_r = sandbox_start(&sb, &res->e);
		assert_int_equal(sandbox_wait(&sb, true, &res->status), 0);
		sandbox_destroy(&sb);
	}
	ssize_t n = pread(out, res->out, sizeof(res->out) - 1, 0);
	res->out[n > 0 ? n : 0] = '\0';
	close(out);
}

struct sh_case {
	const char *name;
	const char *argv[8];
	bool set_user;
	uid_t uid;
	gid_t gid;
	const char *cwd;
	bool own_env;
	int start_r;            /* what sandbox_start returns */
	int status;             /* exit status as a shell sees it */
	const char *out;        /* exact output, or NULL */
	const char *contains;   /* substring of the output or error message, or NULL */
};

#define SH(script) { "/bin/sh", "-c", script, NULL }

/* String literals are const under -Wwrite-strings; exec's argv is not. */
static char *const *av(const char *const *argv)
{
	union { const char *const *c; char *const *m; } u = { .c = argv };
	return u.m;
}

static const struct sh_case cases[] = {
	{ "exit code", SH("exit 7"), .status = 7, .out = "" },
	{ "absolute path missing", { "/nonexistent", NULL }, .start_r = -ENOENT, .status = 127,
	  .contains = "/nonexistent: No such file or directory" },
	{ "command not in PATH", { "moat-no-such-command", NULL }, .start_r = -ENOENT,
	  .status = 127, .contains = "moat-no-such-command: command not found" },
	{ "not executable", { noexec_path, NULL }, .start_r = -EACCES, .status = 126,
	  .contains = ": Permission denied" },
	{ "killed by SIGTERM", SH("kill -TERM $$"), .status = 143 },
	{ "killed by SIGKILL", SH("kill -KILL $$"), .status = 137 },
	{ "pid 2 under init pid 1", SH("echo $$ $PPID $(cut -d' ' -f1 /proc/self/stat)"),
	  .out = "2 1 3\n" },
	{ "only the init and the workload", SH("echo /proc/[0-9]*"), .out = "/proc/1 /proc/2\n" },
	{ "only lo in /sys/class/net", SH("ls /sys/class/net"), .out = "lo\n" },
	{ "only lo in /proc/net/dev", SH("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"),
	  .out = "lo\n" },
	{ "lo is up", SH("cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"),
	  .out = "unknown\n0x9\n" },
	{ "resolv.conf", SH("cat /etc/resolv.conf"), .out = RESOLV },
	{ "hosts", SH("cat /etc/hosts"), .out = HOSTS },
	{ "hostname", SH("cat /proc/sys/kernel/hostname"), .out = HOSTNAME "\n" },
	{ "net caps gone from every set",
	  SH("for f in CapInh CapPrm CapEff CapBnd CapAmb; do "
	     "v=$(grep \"^$f:\" /proc/self/status | cut -f2); echo $f $(( (0x$v >> 12) & 3 )); "
	     "done"),
	  .out = "CapInh 0\nCapPrm 0\nCapEff 0\nCapBnd 0\nCapAmb 0\n" },
	{ "root keeps its other caps (CAP_SYS_ADMIN, CAP_SETUID)",
	  SH("v=$(grep '^CapEff:' /proc/self/status | cut -f2); "
	     "echo $(( (0x$v >> 21) & 1 )) $(( (0x$v >> 7) & 1 ))"),
	  .out = "1 1\n" },
	{ "no_new_privs", SH("grep NoNewPrivs /proc/self/status"), .out = "NoNewPrivs:\t1\n" },
	{ "raw socket refused",
	  { "/usr/bin/python3", "-c",
	    "import socket\ntry:\n socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n"
	    " print('raw ok')\nexcept OSError as e:\n print('errno', e.errno)", NULL },
	  .out = "errno 1\n" },
	{ "ip link set lo down refused", SH("ip link set lo down 2>&1; echo rc=$?"),
	  .contains = "Operation not permitted\nrc=2\n" },
	{ "ip addr add refused", SH("ip addr add 198.18.0.9/24 dev lo 2>&1; echo rc=$?"),
	  .contains = "Operation not permitted\nrc=2\n" },
	{ "--user 65534:65534", SH("id -u; id -g; id -G"), .set_user = true, .uid = 65534,
	  .gid = 65534, .out = "65534\n65534\n65534\n" },
	{ "--user drops every capability", SH("grep -E '^Cap(Eff|Prm)' /proc/self/status"),
	  .set_user = true, .uid = 65534, .gid = 65534,
	  .out = "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n" },
	{ "cwd", SH("pwd"), .cwd = "/usr/share", .out = "/usr/share\n" },
	{ "bad cwd", SH("pwd"), .cwd = "/moat-no-such-dir", .start_r = -ENOENT, .status = 125,
	  .contains = "change directory: No such file or directory" },
	{ "environment", SH("echo \"$MOAT_T\" \"${HOME-unset}\""), .own_env = true,
	  .out = "x y unset\n" },
	{ "signals reset to default", SH("grep -E '^Sig(Ign|Blk)' /proc/self/status"),
	  .out = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n" },
	{ "no moat fd leaks into the workload", SH("ls /proc/self/fd | wc -l"), .out = "4\n" },
};

static void test_cases(void **state)
{
	const char *env[] = { "MOAT_T=x y", "PATH=/usr/bin:/bin", NULL };
	static struct result res;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct sh_case *c = &cases[i];
		struct sandbox_spec spec = {
			.argv = av(c->argv), .set_user = c->set_user, .uid = c->uid, .gid = c->gid,
			.hostname = HOSTNAME, .resolv_conf = RESOLV, .hosts = HOSTS,
			.cwd = c->cwd, .envp = c->own_env ? av(env) : NULL,
		};
		run_spec(&spec, &res);
		print_message("%-50s create=%d start=%d status=%d %s\n", c->name, res.create_r,
			      res.start_r, res.status, res.e.msg);
		assert_int_equal(res.create_r, 0);
		assert_int_equal(res.start_r, c->start_r);
		assert_int_equal(res.status, c->status);
		if (c->out)
			assert_string_equal(res.out, c->out);
		if (c->contains && !strstr(res.out, c->contains) && !strstr(res.e.msg, c->contains))
			fail_msg("%s: '%s' not in output '%s' nor message '%s'", c->name,
				 c->contains, res.out, res.e.msg);
	}
}

static void test_host_files_untouched(void **state)
{
	char *before_r = NULL, *before_h = NULL, *after_r = NULL, *after_h = NULL, host[65];
	size_t len;
	const char *argv[] = SH("echo changed >> /etc/resolv.conf; echo changed >> /etc/hosts; "
				 "cat /etc/resolv.conf");
	struct sandbox_spec spec = { .argv = av(argv), .hostname = "moat-other", .resolv_conf = RESOLV,
				     .hosts = HOSTS };
	static struct result res;

	assert_int_equal(moat_read_file("/etc/resolv.conf", 1 << 20, &before_r, &len, NULL), 0);
	assert_int_equal(moat_read_file("/etc/hosts", 1 << 20, &before_h, &len, NULL), 0);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	run_spec(&spec, &res);
	assert_int_equal(res.status, 0);
	assert_string_equal(res.out, RESOLV "changed\n");
	assert_int_equal(moat_read_file("/etc/resolv.conf", 1 << 20, &after_r, &len, NULL), 0);
	assert_int_equal(moat_read_file("/etc/hosts", 1 << 20, &after_h, &len, NULL), 0);
	assert_string_equal(before_r, after_r);
	assert_string_equal(before_h, after_h);
	assert_string_not_equal(after_r, RESOLV);
	char now[65];
	assert_int_equal(gethostname(now, sizeof(now)), 0);
	assert_string_equal(host, now);
	free(before_r);
	free(before_h);
	free(after_r);
	free(after_h);
}

static bool exists(const char *p)
{
	return access(p, F_OK) == 0;
}

static void test_held_until_start(void **state)
{
	char path[64], script[128];
	struct sandbox sb;
	struct moat_error e = { 0 };
	int status = -1;

	snprintf(path, sizeof(path), "/tmp/moat-sandbox-held-%d", (int)getpid());
	snprintf(script, sizeof(script), "echo ran > %s", path);
	unlink(path);
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	struct sandbox_spec spec = { .argv = av(argv) };

	assert_int_equal(sandbox_create(&spec, &sb, &e), 0);
	usleep(200 * 1000);
	assert_false(exists(path));
	/* still running and not reaped: the init is waiting */
	assert_int_equal(sandbox_wait(&sb, false, &status), -EAGAIN);
	assert_int_equal(sandbox_start(&sb, &e), 0);
	assert_int_equal(sandbox_wait(&sb, true, &status), 0);
	assert_int_equal(status, 0);
	assert_true(exists(path));
	unlink(path);
	sandbox_destroy(&sb);
}

/* Polls fd (a memfd the workload writes to) until it holds want. */
static bool wait_output(int fd, const char *want, int ms)
{
	char buf[512];

	for (int i = 0; i < ms / 10; i++) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		if (strstr(buf, want))
			return true;
		usleep(10 * 1000);
	}
	return false;
}

/* Starts argv with stdout in a fresh memfd (returned in *out) and waits for "ready". */
static void start_ready(char *const *argv, struct sandbox *sb, int *out)
{
	struct sandbox_spec spec = { .argv = argv };
	struct moat_error e = { 0 };
	int saved = dup(1);

	*out = memfd_create("out", MFD_CLOEXEC);
	assert_true(*out >= 0 && saved >= 0);
	dup2(*out, 1);
	int r = sandbox_create(&spec, sb, &e);
	dup2(saved, 1);
	close(saved);
	assert_int_equal(r, 0);
	assert_int_equal(sandbox_start(sb, &e), 0);
	assert_true(wait_output(*out, "ready", 5000));
}

/* Waits at most 5 s for the sandbox to end, so that a lost signal fails instead of hanging. */
static int wait_bounded(struct sandbox *sb, int *status)
{
	struct pollfd p = { .fd = sb->pidfd, .events = POLLIN };

	if (poll(&p, 1, 5000) != 1) {
		sandbox_destroy(sb);
		return -ETIMEDOUT;
	}
	return sandbox_wait(sb, false, status);
}

static void test_signal_forwarded(void **state)
{
	const char *argv[] = SH("trap 'echo got-term; exit 42' TERM; echo ready; "
				 "while :; do sleep 0.05; done");
	struct sandbox sb;
	int out, status = -1;

	start_ready(av(argv), &sb, &out);
	assert_int_equal(sandbox_signal(&sb, SIGTERM), 0);
	assert_int_equal(wait_bounded(&sb, &status), 0);
	assert_int_equal(status, 42);
	assert_true(wait_output(out, "got-term", 10));
	assert_int_equal(sandbox_signal(&sb, SIGTERM), -ESRCH);
	sandbox_destroy(&sb);
	close(out);
}

static void test_signal_kills_untrapped(void **state)
{
	const char *argv[] = SH("echo ready; exec sleep 100");
	struct sandbox sb;
	int out, status = -1;

	start_ready(av(argv), &sb, &out);
	assert_int_equal(sandbox_signal(&sb, SIGUSR1), 0);
	assert_int_equal(wait_bounded(&sb, &status), 0);
	assert_int_equal(status, 128 + SIGUSR1);
	sandbox_destroy(&sb);
	close(out);
}

static pid_t child_of(pid_t parent)
{
	char path[96], buf[64] = "";
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent, (int)parent);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return (pid_t)atoi(buf);
}

static void test_destroy_kills_everything(void **state)
{
	/* the workload leaves a grandchild behind too */
	const char *argv[] = SH("sleep 100 & echo ready; exec sleep 101");
	struct sandbox sb;
	int out;

	start_ready(av(argv), &sb, &out);
	pid_t init = sb.pid, w = child_of(init);
	assert_true(w > 0);
	assert_int_equal(kill(w, 0), 0);
	assert_int_equal(kill(init, 0), 0);
	sandbox_destroy(&sb);
	assert_int_equal(kill(w, 0), -1);
	assert_int_equal(errno, ESRCH);
	assert_int_equal(kill(init, 0), -1);
	assert_int_equal(sb.pidfd, -1);
	assert_int_equal(sb.netns_fd, -1);
	sandbox_destroy(&sb);   /* twice is harmless */
	close(out);
}

static void test_destroy_before_start(void **state)
{
	char path[64], script[128];
	struct sandbox sb;
	struct moat_error e = { 0 };

	snprintf(path, sizeof(path), "/tmp/moat-sandbox-never-%d", (int)getpid());
	snprintf(script, sizeof(script), "echo ran > %s", path);
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	struct sandbox_spec spec = { .argv = av(argv) };

	assert_int_equal(sandbox_create(&spec, &sb, &e), 0);
	pid_t init = sb.pid;
	sandbox_destroy(&sb);
	assert_int_equal(kill(init, 0), -1);
	usleep(50 * 1000);
	assert_false(exists(path));
	assert_int_equal(sandbox_start(&sb, &e), -EINVAL);
}

static void test_failed_create_leaves_nothing(void **state)
{
	/* /etc/hosts larger than the scratch tmpfs: the init fails during setup */
	size_t big = 2 << 20;
	char *hosts = malloc(big + 1);
	const char *argv[] = SH("true");
	struct sandbox sb;
	struct moat_error e = { 0 };

	assert_non_null(hosts);
	memset(hosts, '#', big);
	hosts[big] = '\0';
	struct sandbox_spec spec = { .argv = av(argv), .hosts = hosts };
	assert_int_equal(sandbox_create(&spec, &sb, &e), -ENOSPC);
	assert_non_null(strstr(e.msg, "/etc/hosts"));
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
	assert_int_equal(sb.pidfd, -1);
	sandbox_destroy(&sb);
	free(hosts);

	char long_name[80];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	struct sandbox_spec spec2 = { .argv = av(argv), .hostname = long_name };
	assert_int_equal(sandbox_create(&spec2, &sb, &e), -EINVAL);
	struct sandbox_spec spec3 = { .argv = NULL };
	assert_int_equal(sandbox_create(&spec3, &sb, &e), -EINVAL);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

static char netns_name[64];

static int netns_add(void **state)
{
	char cmd[128];
	snprintf(netns_name, sizeof(netns_name), "moat-sbx-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "ip netns add %s", netns_name);
	return system(cmd) == 0 ? 0 : -1;
}

static int netns_del(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ip netns del %s", netns_name);
	return system(cmd) == 0 ? 0 : -1;
}

/* Root inside keeps CAP_SYS_ADMIN: no nsfs mount (ip netns) may be left to setns() into. */
static void test_no_netns_mounts_inside(void **state)
{
	char path[96];
	const char *argv[] = SH("grep -c ' - nsfs ' /proc/self/mountinfo");
	struct sandbox_spec spec = { .argv = av(argv) };
	static struct result res;

	snprintf(path, sizeof(path), "/run/netns/%s", netns_name);
	assert_true(exists(path));
	run_spec(&spec, &res);
	assert_string_equal(res.out, "0\n");
	assert_true(exists(path));
}

static void test_exec_status_table(void **state)
{
	static const struct { int err, status; } t[] = {
		{ ENOENT, 127 }, { EACCES, 126 }, { ENOEXEC, 126 }, { EPERM, 126 },
		{ ENOTDIR, 126 }, { E2BIG, 126 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++)
		assert_int_equal(sandbox_exec_status(t[i].err), t[i].status);
}

static void test_should_forward_table(void **state)
{
	static const struct { int code; bool fwd; } t[] = {
		{ SI_USER, true }, { SI_QUEUE, true }, { SI_TKILL, true }, { SI_KERNEL, false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		siginfo_t si = { .si_code = t[i].code };
		assert_int_equal(sandbox_should_forward(&si), t[i].fwd);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* sandbox_create + sandbox_start + wait for `true`, 100 times; prints the median. */
static void test_startup_time(void **state)
{
	const char *argv[] = { "true", NULL };
	struct sandbox_spec spec = { .argv = av(argv), .hostname = HOSTNAME, .resolv_conf = RESOLV,
				     .hosts = HOSTS };
	uint64_t t[100];

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct sandbox sb;
		struct moat_error e = { 0 };
		int status = -1;
		uint64_t t0 = moat_now_ns();
		assert_int_equal(sandbox_create(&spec, &sb, &e), 0);
		assert_int_equal(sandbox_start(&sb, &e), 0);
		assert_int_equal(sandbox_wait(&sb, true, &status), 0);
		t[i] = moat_now_ns() - t0;
		sandbox_destroy(&sb);
		assert_int_equal(status, 0);
	}
	qsort(t, ARRAY_SIZE(t), sizeof(t[0]), cmp_u64);
	print_message("sandbox create+start+wait of `true`: median %.2f ms, min %.2f, max %.2f "
		      "(100 runs)\n", t[50] / 1e6, t[0] / 1e6, t[99] / 1e6);
}

static int setup_all(void **state)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_sandbox: needs root\n");
		return -1;
	}
	snprintf(noexec_path, sizeof(noexec_path), "/tmp/moat-sandbox-noexec-%d", (int)getpid());
	int fd = open(noexec_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write(fd, "#!/bin/sh\necho should not run\n", 30) != 30) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int teardown_all(void **state)
{
	unlink(noexec_path);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_status_table),
		cmocka_unit_test(test_should_forward_table),
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_host_files_untouched),
		cmocka_unit_test(test_held_until_start),
		cmocka_unit_test(test_signal_forwarded),
		cmocka_unit_test(test_signal_kills_untrapped),
		cmocka_unit_test(test_destroy_kills_everything),
		cmocka_unit_test(test_destroy_before_start),
		cmocka_unit_test(test_failed_create_leaves_nothing),
		cmocka_unit_test_setup_teardown(test_no_netns_mounts_inside, netns_add, netns_del),
		cmocka_unit_test(test_startup_time),
	};
	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}

/* The container engine client against a real, private podman service (root): ping and version,
 * the netns before start, output, exit codes, kill, removal, errors, stale cleanup; each
 * through the libpod path (ENGINE_PODMAN) and the compat path with a pause container
 * (ENGINE_DOCKER).  Skipped (77) when podman is not installed. */
#include "common/moat.h"
#include "runner/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define IMAGE "localhost/moat-test:latest"

static char dir[64], sock[128], pause_prog[256], mkdir_host[128];
static pid_t service_pid;

static char *const *av(const char *const *argv)
{
	union { const char *const *c; char *const *m; } u = { .c = argv };
	return u.m;
}

/* Runs the shell harness: private service + test image; reads back "PID PAUSE". */
static int start_service(void)
{
	char cmd[1024], line[512];
	snprintf(cmd, sizeof(cmd),
		 "bash -c '. tests/lib/podman.sh && . tests/lib/image.sh && podman_start %s >&2 && "
		 "image_build >&2 && echo $PODMAN_PID $(_image_helper pause tests/helpers/pause.c "
		 "\"\" ${MOAT_IMAGE_CACHE:-/var/tmp/moat-test-image})'", dir);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	int n = 0;
	int pid = 0;
	if (fgets(line, sizeof(line), p))
		n = sscanf(line, "%d %255s", &pid, pause_prog);
	pclose(p);
	service_pid = pid;
	snprintf(sock, sizeof(sock), "%s/podman.sock", dir);
	setenv("CONTAINERS_CONF", "", 1);
	return n == 2 ? 0 : -1;
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/moat-engine-%d", (int)getpid());
	snprintf(mkdir_host, sizeof(mkdir_host), "%s/mk", dir);
	if (start_service() < 0) {
		fprintf(stderr, "cannot start the podman service\n");
		return -1;
	}
	char conf[160];
	snprintf(conf, sizeof(conf), "%s/containers.conf", dir);
	setenv("CONTAINERS_CONF", conf, 1);
	snprintf(conf, sizeof(conf), "%s/storage.conf", dir);
	setenv("CONTAINERS_STORAGE_CONF", conf, 1);
	return 0;
}

static int teardown(void **state)
{
	if (service_pid > 0) {
		/* twice: a workload first, then the pause container it depends on */
		if (system("podman rm -af -t 0 >/dev/null 2>&1 || podman rm -af -t 0") != 0)
			fprintf(stderr, "podman rm failed\n");
		kill(service_pid, SIGTERM);
		for (int i = 0; i < 100 && kill(service_pid, 0) == 0; i++)
			usleep(50000);
		kill(service_pid, SIGKILL);
	}
	/* whatever of the private store is still mounted (a failed test's containers) */
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "for p in $(grep -lF %s /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do "
		 "[ $p = $$ ] || kill -KILL $p; done 2>/dev/null; sleep 0.2; "
		 "awk '$2 ~ \"^%s/\" {print $2}' /proc/mounts | sort -r | xargs -r umount -l; "
		 "rm -rf %s", dir, dir, dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
	return 0;
}

static int count_containers(void)
{
	FILE *p = popen("podman ps -aq | wc -l", "r");
	int n = -1;
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	return n;
}

static void test_open(void **state)
{
	struct moat_error e = { 0 };
	struct engine *en;

	for (int k = 0; k < 2; k++) {
		assert_int_equal(engine_open(k ? ENGINE_DOCKER : ENGINE_PODMAN, sock, &en, &e), 0);
		assert_string_equal(engine_api_version(en), "1.41");
		assert_true(strlen(engine_version(en)) > 0);
		engine_close(en);
	}
	/* unix:// prefix and the environment */
	char url[160];
	snprintf(url, sizeof(url), "unix://%s", sock);
	setenv("CONTAINER_HOST", url, 1);
	assert_int_equal(engine_open(ENGINE_PODMAN, NULL, &en, &e), 0);
	assert_string_equal(engine_socket(en), sock);
	engine_close(en);
	setenv("CONTAINER_HOST", "tcp://127.0.0.1:1", 1);
	assert_int_equal(engine_open(ENGINE_PODMAN, NULL, &en, &e), -ENOTSUP);
	unsetenv("CONTAINER_HOST");
}

struct err_case {
	enum engine_kind kind;
	const char *socket;
	int ret;
	const char *msg;
};

static void test_unreachable(void **state)
{
	static const struct err_case cases[] = {
		{ ENGINE_PODMAN, "/nonexistent/podman.sock", -ENOENT,
		  "cannot reach the podman API at /nonexistent/podman.sock: No such file or "
		  "directory (is 'podman system service' running?)" },
		{ ENGINE_DOCKER, "unix:///nonexistent/docker.sock", -ENOENT,
		  "cannot reach the docker API at /nonexistent/docker.sock: No such file or "
		  "directory (is the docker daemon running?)" },
		{ ENGINE_PODMAN, "/etc/passwd", -ECONNREFUSED,
		  "cannot reach the podman API at /etc/passwd: Connection refused" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct moat_error e = { 0 };
		struct engine *en = (struct engine *)1;
		assert_int_equal(engine_open(cases[i].kind, cases[i].socket, &en, &e), cases[i].ret);
		assert_null(en);
		if (!strstr(e.msg, cases[i].msg))
			fail_msg("got '%s'", e.msg);
	}
}

/* The interfaces of a netns, by entering it in a child. */
static void netns_ifaces(int fd, char *out, size_t size)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (setns(fd, CLONE_NEWNET) < 0)
			_exit(1);
		struct if_nameindex *ifs = if_nameindex();
		for (struct if_nameindex *i = ifs; i && i->if_name; i++)
			dprintf(p[1], "%s ", i->if_name);
		_exit(0);
	}
	close(p[1]);
	ssize_t n = read(p[0], out, size - 1);
	out[n > 0 ? n : 0] = '\0';
	close(p[0]);
	waitpid(pid, NULL, 0);
}

static void read_memfd(int fd, char *buf, size_t size)
{
	ssize_t n = pread(fd, buf, size - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
}

struct run_case {
	const char *name;
	const char *cmd[6];
	const char *env[3];
	const char *user;
	bool kill;              /* SIGKILL after start */
	int exec_r;             /* what prepare (podman) or start (docker) returns */
	int code;
	const char *out, *err;
	size_t out_len;         /* when out is NULL and this is set: the output's length */
};

#define SH(s) { "/bin/sh", "-c", s, NULL }

static const struct run_case run_cases[] = {
	{ "output and exit code", SH("echo out; echo err >&2; exit 7"), .code = 7, .out = "out\n",
	  .err = "err\n" },
	{ "marker written only after start, only lo",
	  SH("touch /mk/marker; ls /sys/class/net"), .code = 0, .out = "lo\n", .err = "" },
	{ "env and user", SH("echo $FOO $(id -u)"), { "FOO=bar baz", NULL }, "65534", .out =
	  "bar baz 65534\n" },
	{ "300000 bytes of output", SH("yes 0123456789 | head -c 300000"), .out_len = 300000 },
	{ "killed", SH("sleep 30"), .kill = true, .code = 137, .out = "" },
	{ "command not found", { "/nonexistent", NULL }, .exec_r = -ENOENT },
	{ "not executable", { "/etc/passwd", NULL }, .exec_r = -EACCES },
};

static void run_one(enum engine_kind kind, const struct run_case *rc, double *ms)
{
	struct moat_error e = { 0 };
	struct engine *en;
	struct container *c;
	struct stat self, ns;
	char marker[192], buf[64], *out = malloc(400000), err[4096];
	int netns = -1, code = -1;
	int ofd = memfd_create("out", MFD_CLOEXEC), efd = memfd_create("err", MFD_CLOEXEC);
	struct engine_mount m = { mkdir_host, "/mk", false };
	struct container_spec s = {
		.image = IMAGE, .cmd = av(rc->cmd), .env = rc->env[0] ? av(rc->env) : NULL,
		.mounts = &m, .n_mounts = 1, .user = rc->user, .name_hint = "moat-test-engine",
		.pause_program = pause_prog, .out_fd = ofd, .err_fd = efd,
	};

	assert_non_null(out);
	mkdir(mkdir_host, 0777);
	snprintf(marker, sizeof(marker), "%s/marker", mkdir_host);
	unlink(marker);
	assert_int_equal(engine_open(kind, sock, &en, &e), 0);
	uint64_t t0 = moat_now_ns();
	int r = container_prepare(en, &s, &c, &netns, &e);
	if (r < 0 && r == rc->exec_r) {
		fprintf(stderr, "  %s: %s\n", rc->name, e.msg);
		assert_null(c);
		goto out;
	}
	if (r < 0)
		fail_msg("%s: prepare: %s", rc->name, e.msg);
	/* its own netns, holding only lo, and nothing has run */
	assert_int_equal(stat("/proc/self/ns/net", &self), 0);
	assert_int_equal(fstat(netns, &ns), 0);
	assert_true(self.st_ino != ns.st_ino);
	netns_ifaces(netns, buf, sizeof(buf));
	assert_string_equal(buf, "lo ");
	assert_int_equal(access(marker, F_OK), -1);

	r = container_start(c, &e);
	if (ms)
		*ms = (double)(moat_now_ns() - t0) / 1e6;
	if (r != rc->exec_r)
		fail_msg("%s: start returned %d (%s), want %d", rc->name, r, e.msg, rc->exec_r);
	if (r == 0) {
		if (rc->kill)
			assert_int_equal(container_kill(c, SIGKILL, &e), 0);
		struct pollfd pfd = { .fd = container_wait_fd(c), .events = POLLIN };
		assert_int_equal(poll(&pfd, 1, 30000), 1);
		assert_int_equal(container_exit_code(c, &code, &e), 0);
		assert_int_equal(code, rc->code);
		if (rc->kill)
			assert_int_equal(container_kill(c, SIGTERM, &e), -ESRCH);
		read_memfd(ofd, out, 400000);
		read_memfd(efd, err, sizeof(err));
		if (rc->out)
			assert_string_equal(out, rc->out);
		if (rc->out_len)
			assert_int_equal(strlen(out), rc->out_len);
		if (rc->err)
			assert_string_equal(err, rc->err);
		if (strstr(rc->name, "marker"))
			assert_int_equal(access(marker, F_OK), 0);
	} else {
		fprintf(stderr, "  %s: %s\n", rc->name, e.msg);
	}
	container_remove(c, false);
	close(netns);
out:
	close(ofd);
	close(efd);
	free(out);
	engine_close(en);
	assert_int_equal(count_containers(), 0);
}

static void test_run_podman(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(run_cases); i++)
		run_one(ENGINE_PODMAN, &run_cases[i], NULL);
}

static void test_run_docker(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(run_cases); i++)
		run_one(ENGINE_DOCKER, &run_cases[i], NULL);
}

static void test_bad_image(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct moat_error e = { 0 };
		struct engine *en;
		struct container *c;
		int netns;
		struct container_spec s = { .image = "localhost/nope:latest",
					    .pause_program = pause_prog };
		assert_int_equal(engine_open(k ? ENGINE_DOCKER : ENGINE_PODMAN, sock, &en, &e), 0);
		int r = container_prepare(en, &s, &c, &netns, &e);
		fprintf(stderr, "  %s\n", e.msg);
		assert_true(r < 0);
		assert_null(c);
		assert_int_equal(netns, -1);
		assert_non_null(strstr(e.msg, "localhost/nope:latest"));
		assert_non_null(strstr(e.msg, k ? "docker: " : "podman: create: "));
		engine_close(en);
		assert_int_equal(count_containers(), 0);
	}
}

static bool dead(pid_t pid)
{
	return false;
}

static void test_cleanup_stale(void **state)
{
	for (int k = 0; k < 2; k++) {
		struct moat_error e = { 0 };
		struct engine *en;
		struct container *c;
		unsigned removed = 0;
		int netns;
		struct container_spec s = { .image = IMAGE, .pause_program = pause_prog };
		assert_int_equal(engine_open(k ? ENGINE_DOCKER : ENGINE_PODMAN, sock, &en, &e), 0);
		assert_int_equal(container_prepare(en, &s, &c, &netns, &e), 0);
		close(netns);
		assert_int_equal(count_containers(), k ? 2 : 1);
		assert_int_equal(engine_cleanup_stale(en, dead, &removed, &e), 0);
		assert_int_equal(removed, k ? 2 : 1);
		assert_int_equal(count_containers(), 0);
		container_remove(c, false);
		engine_close(en);
	}
}

/* Prepare-to-started against `podman run --network none IMAGE true`. */
static void test_timing(void **state)
{
	static const struct run_case t = { "true", { "/bin/true", NULL }, .out = "" };
	double ms[2];
	run_one(ENGINE_PODMAN, &t, &ms[0]);
	run_one(ENGINE_DOCKER, &t, &ms[1]);
	uint64_t t0 = moat_now_ns();
	assert_int_equal(system("podman run --rm --network none " IMAGE " true"), 0);
	double cli = (double)(moat_now_ns() - t0) / 1e6;
	printf("timing: prepare..start podman %.0f ms, docker-compat %.0f ms; "
	       "podman run --network none true end to end %.0f ms\n", ms[0], ms[1], cli);
}

int main(void)
{
	if (system("command -v podman >/dev/null 2>&1") != 0) {
		printf("SKIP: podman is not installed\n");
		return 77;
	}
	if (geteuid() != 0) {
		printf("SKIP: needs root\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_run_podman),
		cmocka_unit_test(test_run_docker),
		cmocka_unit_test(test_bad_image),
		cmocka_unit_test(test_cleanup_stale),
		cmocka_unit_test(test_timing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

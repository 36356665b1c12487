/* The sandbox's init (pid 1 of its pid namespace) and the workload's last steps before exec.
 *
 * This code runs in a copy of moat made by clone() without CLONE_VM, possibly from a threaded
 * process: it uses system calls only (no malloc, no stdio) and reports failures to moat as a
 * (stage, errno) record on the status pipe; moat turns them into messages. */
#include "runner/sandbox_internal.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <limits.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Signals the init passes on to the workload; SIGCHLD tells it the workload is gone. */
static const int forwarded[] = {
	SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
};

static void report(int fd, int stage, int err)
{
	struct sandbox_msg m = { .stage = stage, .err = err };
	ssize_t n;

	do
		n = write(fd, &m, sizeof(m));
	while (n < 0 && errno == EINTR);
}

static int write_all(const char *path, const char *s)
{
	size_t len = strlen(s), off = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, s + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;
			close(fd);
			return -err;
		}
		off += (size_t)n;
	}
	close(fd);
	return 0;
}

/* Closes every fd above stderr except keep[0] and keep[1]. */
static void close_other_fds(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;

	if (lo > 3)
		syscall(SYS_close_range, 3U, (unsigned)lo - 1, 0U);
	if (hi > lo + 1)
		syscall(SYS_close_range, (unsigned)lo + 1, (unsigned)hi - 1, 0U);
	syscall(SYS_close_range, (unsigned)hi + 1, ~0U, 0U);
}

/* Puts the contents over /etc/NAME, writing it first into the scratch tmpfs at /proc.
 * /etc/resolv.conf is often a symlink (systemd-resolved, resolvconf): the bind mount follows
 * it; when it dangles, a tmpfs over the target's directory (in this mount namespace only)
 * makes the file exist. */
static int place_file(const char *scratch, const char *target, const char *contents)
{
	char link[PATH_MAX], dir[PATH_MAX], file[PATH_MAX];
	struct stat st;
	ssize_t n;
	int r;

	r = write_all(scratch, contents);
	if (r < 0)
		return r;
	if (mount(scratch, target, NULL, MS_BIND, NULL) == 0)
		return 0;
	if (errno != ENOENT || lstat(target, &st) < 0 || !S_ISLNK(st.st_mode))
		return -errno;
	n = readlink(target, link, sizeof(link) - 1);
	if (n <= 0)
		return -ENOENT;
	link[n] = '\0';
	/* target is "/etc/NAME": a relative link is relative to /etc */
	size_t pre = link[0] == '/' ? 0 : 5;
	if (pre + (size_t)n + 1 > sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, "/etc/", pre);
	memcpy(dir + pre, link, (size_t)n + 1);
	memcpy(file, dir, pre + (size_t)n + 1);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return -ENOENT;
	*slash = '\0';
	if (mount("moat", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") < 0)
		return -errno;
	return write_all(file, contents);
}

/* Detaches nsfs mounts (ip netns, container runtimes) from this mount namespace, so that root
 * inside, which keeps CAP_SYS_ADMIN, finds no network namespace to setns() into. */
static char mountinfo[1 << 18];

static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

static void detach_nsfs(void)
{
	size_t len = 0;
	int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	while (len < sizeof(mountinfo) - 1) {
		ssize_t n = read(fd, mountinfo + len, sizeof(mountinfo) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	mountinfo[len] = '\0';

	/* "36 35 98:0 /root /mount/point rw,noatime master:1 - nsfs nsfs rw" */
	char *line = mountinfo;
	for (char *nl; (nl = strchr(line, '\n')); line = nl + 1) {
		*nl = '\0';
		char *sep = strstr(line, " - ");
		if (!sep || strncmp(sep + 3, "nsfs ", 5) != 0)
			continue;
		char *f = line;
		for (int i = 0; i < 4 && f; i++) {
			f = strchr(f, ' ');
			if (f)
				f++;
		}
		if (!f || f >= sep)
			continue;
		char *end = strchr(f, ' ');
		if (!end)
			continue;
		*end = '\0';
		unescape(f);
		umount2(f, MNT_DETACH);
	}
}

static int lo_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r = 0;

	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		r = -errno;
	} else {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			r = -errno;
	}
	close(fd);
	return r;
}

/* Removes CAP_NET_ADMIN and CAP_NET_RAW from the bounding, ambient, inheritable, permitted
 * and effective sets; later execs cannot get them back. */
static int drop_net_caps(int *stage)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];
	const uint32_t mask = (1U << CAP_NET_ADMIN) | (1U << CAP_NET_RAW);

	*stage = SB_ST_CAPBSET;
	if (prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0) < 0 ||
	    prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) < 0)
		return -errno;
	*stage = SB_ST_AMBIENT;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return -errno;
	*stage = SB_ST_CAPSET;
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	data[0].effective &= ~mask;
	data[0].permitted &= ~mask;
	data[0].inheritable &= ~mask;
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	*stage = SB_ST_NNP;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	return 0;
}

static int setup(const struct sandbox_spec *spec, int *stage)
{
	const unsigned long nodev = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	int r;

	*stage = SB_ST_PRIVATE;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;

	/* The old /proc shows the host's processes (and their namespaces): detach it, use its
	 * mount point as a scratch tmpfs for the files, then mount the new pid namespace's. */
	*stage = SB_ST_PROC;
	if (umount2("/proc", MNT_DETACH) < 0 && errno != EINVAL)
		return -errno;
	if (spec->resolv_conf || spec->hosts) {
		*stage = SB_ST_SCRATCH;
		if (mount("moat", "/proc", "tmpfs", nodev, "size=1m,mode=0755") < 0)
			return -errno;
		*stage = SB_ST_RESOLV;
		if (spec->resolv_conf &&
		    (r = place_file("/proc/resolv.conf", "/etc/resolv.conf", spec->resolv_conf)) < 0)
			return r;
		*stage = SB_ST_HOSTS;
		if (spec->hosts && (r = place_file("/proc/hosts", "/etc/hosts", spec->hosts)) < 0)
			return r;
		*stage = SB_ST_SCRATCH;
		if (umount2("/proc", MNT_DETACH) < 0)
			return -errno;
	}
	*stage = SB_ST_PROC;
	if (mount("proc", "/proc", "proc", nodev, NULL) < 0)
		return -errno;

	/* A sysfs mounted in the new network namespace lists its interfaces; the old one listed
	 * the host's. Not fatal: some kernels refuse it, and nothing here depends on it. */
	if (umount2("/sys", MNT_DETACH) == 0 || errno == EINVAL)
		(void)mount("sysfs", "/sys", "sysfs", nodev, NULL);

	detach_nsfs();

	*stage = SB_ST_HOSTNAME;
	if (spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) < 0)
		return -errno;
	*stage = SB_ST_LO;
	if ((r = lo_up()) < 0)
		return r;
	return drop_net_caps(stage);
}

static void handler_noop(int sig)
{
	(void)sig;
}

/* In the forked workload: becomes the requested user, enters cwd and execs. Never returns. */
static void exec_workload(const struct sandbox_child *c)
{
	const struct sandbox_spec *spec = c->spec;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;
	int stage;

	/* moat's own dispositions and mask (ignored SIGPIPE, signals blocked for a signalfd)
	 * are not the workload's business. */
	for (int sig = 1; sig < _NSIG; sig++)
		(void)sigaction(sig, &dfl, NULL);
	/* glibc refuses its own two real-time signals; the kernel does not, and
	 * an ignored one would survive exec */
	struct { void *handler; unsigned long flags; void *restorer; uint64_t mask; } kdfl = { 0 };
	for (int sig = 32; sig < SIGRTMIN; sig++)
		(void)syscall(SYS_rt_sigaction, sig, &kdfl, NULL, sizeof(kdfl.mask));
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	if (spec->set_user) {
		stage = SB_ST_GROUPS;
		if (setgroups(0, NULL) < 0)
			goto fail;
		stage = SB_ST_SETGID;
		if (setgid(spec->gid) < 0)
			goto fail;
		stage = SB_ST_SETUID;
		if (setuid(spec->uid) < 0)
			goto fail;
	}
	stage = SB_ST_CHDIR;
	if (spec->cwd && chdir(spec->cwd) < 0)
		goto fail;
	/* nothing of moat's but stdio and the status pipe (CLOEXEC) reaches the exec */
	syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
	execvpe(spec->argv[0], spec->argv, spec->envp ? spec->envp : environ);
	int err = errno;
	report(c->status_wr, SB_ST_EXEC, err);
	_exit(sandbox_exec_status(err));
fail:
	report(c->status_wr, stage, errno);
	_exit(MOAT_EXIT_FAILURE);
}

static int status_of(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return MOAT_EXIT_FAILURE;
}

int sandbox_child_main(void *arg)
{
	const struct sandbox_child *c = arg;
	struct sigaction sa = { .sa_handler = handler_noop };
	sigset_t set;
	int stage = SB_ST_PDEATHSIG, r;
	char go;
	ssize_t n;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
		report(c->status_wr, stage, errno);
		return MOAT_EXIT_FAILURE;
	}
	close_other_fds(c->go_rd, c->status_wr);

	/* pid 1 drops signals it has no handler for: catch them, keep them blocked, and take
	 * them with sigwaitinfo() once the workload runs. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
		sigaddset(&set, forwarded[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
		sigaction(forwarded[i], &sa, NULL);

	r = setup(c->spec, &stage);
	if (r < 0) {
		report(c->status_wr, stage, -r);
		return MOAT_EXIT_FAILURE;
	}
	report(c->status_wr, SB_ST_READY, 0);

	/* Blocked until sandbox_start(); EOF means moat gave up (or died): run nothing. */
	do
		n = read(c->go_rd, &go, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return MOAT_EXIT_FAILURE;
	close(c->go_rd);

	pid_t w = fork();
	if (w == 0)
		exec_workload(c);
	if (w < 0) {
		report(c->status_wr, SB_ST_FORK, errno);
		return MOAT_EXIT_FAILURE;
	}
	close(c->status_wr);

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&set, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			/* the terminal already sent it to the workload's process group */
			if (si.si_code != SI_KERNEL)
				kill(w, sig);
			continue;
		}
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			/* leaving kills whatever the workload left behind in the namespace */
			if (p == w)
				_exit(status_of(st));
		}
	}
}

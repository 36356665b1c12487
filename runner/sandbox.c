/* The embedded sandbox, moat's side: clone the init into new namespaces, hold it until the
 * network is confined, release it, forward signals, reap it. The init is sandbox_child.c. */
#include "runner/sandbox_internal.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define SANDBOX_STACK (256 * 1024)

static const char *const stage_names[SB_ST_COUNT] = {
	[SB_ST_READY] = "setup",
	[SB_ST_PDEATHSIG] = "set parent-death signal",
	[SB_ST_PRIVATE] = "make / a private mount",
	[SB_ST_PROC] = "mount /proc",
	[SB_ST_SCRATCH] = "mount scratch tmpfs",
	[SB_ST_RESOLV] = "put /etc/resolv.conf in place",
	[SB_ST_HOSTS] = "put /etc/hosts in place",
	[SB_ST_HOSTNAME] = "set hostname",
	[SB_ST_LO] = "bring up lo",
	[SB_ST_CAPBSET] = "drop CAP_NET_ADMIN/CAP_NET_RAW from the bounding set",
	[SB_ST_AMBIENT] = "clear ambient capabilities",
	[SB_ST_CAPSET] = "drop CAP_NET_ADMIN/CAP_NET_RAW",
	[SB_ST_NNP] = "set no_new_privs",
	[SB_ST_FORK] = "fork the workload",
	[SB_ST_GROUPS] = "clear supplementary groups",
	[SB_ST_SETGID] = "set group id",
	[SB_ST_SETUID] = "set user id",
	[SB_ST_CHDIR] = "change directory",
	[SB_ST_EXEC] = "exec",
};

int sandbox_exec_status(int err)
{
	return err == ENOENT ? MOAT_EXIT_NOTFOUND : MOAT_EXIT_NOEXEC;
}

bool sandbox_should_forward(const siginfo_t *si)
{
	return !si || si->si_code != SI_KERNEL;
}

/* Moves fd to 3 or above so that it can never be mistaken for stdio in the child. */
static int fd_above_stdio(int fd)
{
	if (fd > 2)
		return fd;
	int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	int err = errno;
	close(fd);
	errno = err;
	return n;
}

/* Reads one status record: 1 when read, 0 on EOF, negative errno on error. */
static int read_msg(int fd, struct sandbox_msg *m)
{
	ssize_t n;

	do
		n = read(fd, m, sizeof(*m));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return 0;
	if ((size_t)n != sizeof(*m) || m->stage < 0 || m->stage >= SB_ST_COUNT ||
	    (m->stage == SB_ST_READY) != (m->err == 0))
		return -EPROTO;
	return 1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int sandbox_create(const struct sandbox_spec *spec, struct sandbox *sb, struct moat_error *e)
{
	const int flags = CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
			  CLONE_PIDFD | SIGCHLD;
	int go[2] = { -1, -1 }, st[2] = { -1, -1 };
	struct sandbox_msg m;
	char path[64];
	int r;

	*sb = (struct sandbox){ .pid = -1, .netns_fd = -1, .pidfd = -1, .go_fd = -1,
				.status_fd = -1 };
	if (!spec || !spec->argv || !spec->argv[0] || !spec->argv[0][0])
		return moat_error_set(e, EINVAL, "sandbox: no command to run");
	if (spec->hostname && strlen(spec->hostname) > 64)
		return moat_error_set(e, EINVAL, "sandbox: hostname '%s' is longer than 64 bytes",
				      spec->hostname);

	/* go: a socket so that writing to a dead init gives EPIPE, not SIGPIPE */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) < 0)
		return moat_error_errno(e, errno, "sandbox: socketpair");
	if (pipe2(st, O_CLOEXEC) < 0) {
		r = moat_error_errno(e, errno, "sandbox: pipe");
		goto fail;
	}
	for (int i = 0; i < 2; i++) {
		if ((go[i] = fd_above_stdio(go[i])) < 0 || (st[i] = fd_above_stdio(st[i])) < 0) {
			r = moat_error_errno(e, errno, "sandbox: fcntl");
			goto fail;
		}
	}

	void *stack = mmap(NULL, SANDBOX_STACK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED) {
		r = moat_error_errno(e, errno, "sandbox: stack");
		goto fail;
	}
	struct sandbox_child child = { .spec = spec, .go_rd = go[0], .status_wr = st[1] };
	int pidfd = -1;
	pid_t pid = clone(sandbox_child_main, (char *)stack + SANDBOX_STACK, flags, &child,
			  &pidfd);
	int err = errno;
	munmap(stack, SANDBOX_STACK);
	if (pid < 0) {
		r = moat_error_errno(e, err, "sandbox: clone into new namespaces");
		goto fail;
	}
	sb->pid = pid;
	sb->cmd = strdup(spec->argv[0]);   /* for messages only: may stay NULL */
	sb->pidfd = pidfd;
	sb->go_fd = moat_steal_fd(&go[1]);
	sb->status_fd = moat_steal_fd(&st[0]);
	close_fd(&go[0]);
	close_fd(&st[1]);

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	sb->netns_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (sb->netns_fd < 0) {
		r = moat_error_errno(e, errno, "sandbox: open %s", path);
		goto fail;
	}

	r = read_msg(sb->status_fd, &m);
	if (r == 1 && m.stage == SB_ST_READY)
		return 0;
	if (r == 1)
		r = moat_error_errno(e, m.err, "sandbox: %s", stage_names[m.stage]);
	else if (r == 0)
		r = moat_error_set(e, EIO, "sandbox: init exited during setup");
	else
		r = moat_error_errno(e, -r, "sandbox: reading setup status");
fail:
	close_fd(&go[0]);
	close_fd(&go[1]);
	close_fd(&st[0]);
	close_fd(&st[1]);
	sandbox_destroy(sb);
	return r;
}

int sandbox_start(struct sandbox *sb, struct moat_error *e)
{
	const char *cmd = "command";
	struct sandbox_msg m;
	char go = 1;
	ssize_t n;
	int r;

	if (sb->pid <= 0 || sb->go_fd < 0 || sb->status_fd < 0)
		return moat_error_set(e, EINVAL, "sandbox: not created, or already started");
	do
		n = send(sb->go_fd, &go, 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	r = n == 1 ? 0 : -(n < 0 ? errno : EIO);
	close_fd(&sb->go_fd);
	if (r < 0) {
		close_fd(&sb->status_fd);
		return moat_error_errno(e, -r, "sandbox: init is gone");
	}

	/* EOF: the workload's copy of the CLOEXEC pipe went away with a successful exec */
	r = read_msg(sb->status_fd, &m);
	close_fd(&sb->status_fd);
	if (r == 0)
		return 0;
	if (r < 0)
		return moat_error_errno(e, -r, "sandbox: reading exec status");

	if (sb->cmd)
		cmd = sb->cmd;
	if (m.stage != SB_ST_EXEC)
		return moat_error_errno(e, m.err, "%s: %s", cmd, stage_names[m.stage]);
	if (m.err == ENOENT && !strchr(cmd, '/'))
		return moat_error_set(e, ENOENT, "%s: command not found", cmd);
	return moat_error_errno(e, m.err, "%s", cmd);
}

int sandbox_signal(struct sandbox *sb, int sig)
{
	if (sb->pid <= 0 || sb->reaped || sb->pidfd < 0)
		return -ESRCH;
	if (syscall(SYS_pidfd_send_signal, sb->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

int sandbox_wait(struct sandbox *sb, bool block, int *status)
{
	siginfo_t si;
	int r;

	if (sb->reaped)
		goto done;
	if (sb->pid <= 0 || sb->pidfd < 0)
		return -ECHILD;
	do {
		memset(&si, 0, sizeof(si));
		r = waitid(P_PIDFD, (id_t)sb->pidfd, &si, WEXITED | (block ? 0 : WNOHANG));
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (si.si_pid == 0)
		return -EAGAIN;
	sb->reaped = true;
	sb->exit_status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
done:
	if (status)
		*status = sb->exit_status;
	return 0;
}

void sandbox_destroy(struct sandbox *sb)
{
	if (sb->pid > 0 && !sb->reaped && sb->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
		sandbox_wait(sb, true, NULL);
	}
	close_fd(&sb->go_fd);
	close_fd(&sb->status_fd);
	close_fd(&sb->netns_fd);
	close_fd(&sb->pidfd);
	free(sb->cmd);
	sb->cmd = NULL;
}

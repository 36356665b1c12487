#include "runner/loop.h"
#include "common/moat.h"
#include "enforcer/enforcer.h"
#include "runner/engine.h"
#include "runner/sandbox.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>

/* After the first SIGINT/SIGTERM the workload gets this long to exit. */
#define GRACE_MS 10000

static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };

static void loop_sigset(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < ARRAY_SIZE(forwarded); i++)
		sigaddset(set, forwarded[i]);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGPIPE);
}

int loop_block_signals(struct moat_error *e)
{
	sigset_t set;
	loop_sigset(&set);
	int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (r != 0)
		return moat_error_errno(e, r, "block signals");
	return 0;
}

void loop_unblock_signals(void)
{
	sigset_t set;
	loop_sigset(&set);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static int open_signalfd(void)
{
	sigset_t set;
	loop_sigset(&set);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* What the loop needs of a workload, embedded or container. */
struct workload {
	const char *what;               /* for the grace-period message */
	int exit_fd;                    /* readable once it has exited */
	void (*signal)(void *arg, int sig);
	void *arg;
	/* a terminal's signals already reach it directly (it shares moat's
	 * process group), so they are not forwarded a second time */
	bool shares_terminal;
};

/* Forwards signals until the workload exits: 0 then, -1 when the loop
 * itself failed.  After the first SIGINT/SIGTERM it gets GRACE_MS, then
 * SIGKILL. */
static int loop_workload(const struct workload *w, struct enforcement *en)
{
	_cleanup_close_ int sfd = open_signalfd();
	if (sfd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return -1;
	}
	uint64_t kill_at = 0;
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = w->exit_fd, .events = POLLIN },
			{ .fd = enforcement_event_fd(en), .events = POLLIN },
		};
		int timeout = -1;
		if (kill_at) {
			uint64_t now = moat_now_ms();
			timeout = now >= kill_at ? 0 : (int)(kill_at - now);
		}
		int n = poll(p, 3, timeout);
		if (n < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			return -1;
		}
		if (kill_at && moat_now_ms() >= kill_at) {
			log_warn("the %s did not exit within %d s: killing it", w->what,
				 GRACE_MS / 1000);
			w->signal(w->arg, SIGKILL);
			kill_at = 0;
		}
		if (n <= 0)
			continue;
		if (p[2].revents & POLLIN)
			enforcement_process_events(en);
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				int sig = (int)si.ssi_signo;
				if (sig == SIGCHLD || sig == SIGPIPE)
					continue;
				if (!(w->shares_terminal && si.ssi_code == SI_KERNEL))
					w->signal(w->arg, sig);
				if ((sig == SIGINT || sig == SIGTERM) && !kill_at)
					kill_at = moat_now_ms() + GRACE_MS;
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			enforcement_process_events(en);
			return 0;
		}
	}
}

static void signal_sandbox(void *arg, int sig)
{
	sandbox_signal(arg, sig);
}

static void signal_container(void *arg, int sig)
{
	struct moat_error e = { 0 };
	if (container_kill(arg, sig, &e) < 0 && e.code != ESRCH)
		log_warn("%s", e.msg);
}

int loop_run(struct sandbox *sb, struct enforcement *en)
{
	struct workload w = { "command", sb->pidfd, signal_sandbox, sb, true };
	int status;
	if (loop_workload(&w, en) < 0 || sandbox_wait(sb, true, &status) < 0)
		return MOAT_EXIT_FAILURE;
	return status;
}

int loop_run_container(struct container *c, struct enforcement *en)
{
	struct workload w = { "container", container_wait_fd(c), signal_container, c, false };
	return loop_workload(&w, en);
}

int loop_until_signal(struct enforcement *en)
{
	_cleanup_close_ int sfd = open_signalfd();
	if (sfd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = enforcement_event_fd(en), .events = POLLIN },
		};
		int n = poll(p, 2, -1);
		if (n < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			return 1;
		}
		if (n <= 0)
			continue;
		if (p[1].revents & POLLIN)
			enforcement_process_events(en);
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				int sig = (int)si.ssi_signo;
				if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
					enforcement_process_events(en);
					return 0;
				}
			}
		}
	}
}

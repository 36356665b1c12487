/* The embedded sandbox: a workload in new net, pid, mount, uts and ipc namespaces.
 *
 * sandbox_create() makes the namespaces and the sandbox's init (pid 1 inside), which sets up
 * /proc, /sys, /etc/resolv.conf, /etc/hosts and the hostname, drops CAP_NET_ADMIN and CAP_NET_RAW
 * from every capability set, sets no_new_privs and then blocks: nothing of the workload runs
 * until sandbox_start().  In between, the caller wires and confines sb->netns_fd.
 *
 * Terminal signals: the init and the workload stay in moat's process group, so Ctrl-C (and the
 * other keyboard signals) reach the workload straight from the terminal.  The init does not
 * forward signals the kernel sent (si_code SI_KERNEL), and moat should not forward them either:
 * see sandbox_should_forward(). */
#ifndef MOAT_RUNNER_SANDBOX_H
#define MOAT_RUNNER_SANDBOX_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

struct moat_error;

struct sandbox_spec {
	char *const *argv;            /* workload command, argv[0] looked up in PATH */
	char *const *envp;            /* NULL: inherit moat's environment */
	bool set_user; uid_t uid; gid_t gid;   /* --user; groups cleared */
	const char *hostname;         /* uts name, e.g. "moat-<id>"; NULL: keep the host's */
	const char *resolv_conf;      /* contents for /etc/resolv.conf inside; NULL: untouched */
	const char *hosts;            /* contents for /etc/hosts inside; NULL: untouched */
	const char *cwd;              /* NULL: moat's cwd */
};

struct sandbox {
	pid_t pid;        /* the sandbox's init (pid 1 inside), a child of moat */
	int netns_fd;     /* open fd of its network namespace (for net_wire / nft) */
	int pidfd;        /* pidfd of pid, pollable: readable when it exits */
	/* private */
	int go_fd, status_fd;     /* go signal to the init; setup and exec status from it */
	bool reaped;
	int exit_status;
	char *cmd;                /* argv[0], for messages */
};

/* Creates the namespaces and the sandbox's init, which sets up mounts, hostname, resolv.conf and
 * hosts, drops capabilities, and then BLOCKS before exec until sandbox_start(). Nothing of the
 * workload runs before that. On failure, nothing is left (the child is killed and reaped) and
 * sandbox_destroy(sb) is a harmless no-op. */
int sandbox_create(const struct sandbox_spec *spec, struct sandbox *sb, struct moat_error *e);

/* Releases the workload; returns 0 once its exec succeeded, or a negative errno with a clear
 * message when exec failed ("CMD: command not found" -> -ENOENT; "CMD: Permission denied" ->
 * -EACCES). The workload then exits with sandbox_exec_status(errno) (125 when --user or the
 * working directory failed). */
int sandbox_start(struct sandbox *sb, struct moat_error *e);

/* Forwards a signal to the workload (through its init). 0, or -ESRCH when it is gone. */
int sandbox_signal(struct sandbox *sb, int sig);

/* True when moat should pass a signal it received on to the sandbox with sandbox_signal():
 * false for signals the kernel sent to moat's whole process group (terminal keys, hangup),
 * which the workload has received itself. */
bool sandbox_should_forward(const siginfo_t *si);

/* Reaps the sandbox's init (call when pidfd is readable, or with block) and stores the
 * workload's exit status as a shell would: code, or 128+signal. Returns 0 once reaped (again
 * on later calls), -EAGAIN when !block and it still runs, another negative errno on error. */
int sandbox_wait(struct sandbox *sb, bool block, int *status);

/* Kills everything in the sandbox (SIGKILL to init: the pid namespace dies with it), reaps,
 * closes fds. Safe to call twice and after a failed sandbox_create(). */
void sandbox_destroy(struct sandbox *sb);

/* Maps an exec errno to the exit status: ENOENT -> 127, EACCES/ENOEXEC/... -> 126. */
int sandbox_exec_status(int err);

#endif

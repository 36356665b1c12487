/* The foreground loop of `moat run` and `moat enforce`: signals, the
 * workload's exit and the kernel's drop logs. */
#ifndef MOAT_LOOP_H
#define MOAT_LOOP_H

struct moat_error;
struct sandbox;
struct enforcement;
struct container;

/* Blocks the signals the loop reads through a signalfd.  Call before any
 * thread is started, so every thread inherits the mask. */
int loop_block_signals(struct moat_error *e);
/* Restores the signal mask (for children that must not inherit it). */
void loop_unblock_signals(void);
/* Forwards signals to the workload until it exits; returns its exit status. */
int loop_run(struct sandbox *sb, struct enforcement *en);
/* The same for a container: every forwarded signal goes to it through the engine (it is
 * not in moat's process group).  Returns 0 once it has exited (its status:
 * container_exit_code), -1 when the loop itself failed. */
int loop_run_container(struct container *c, struct enforcement *en);
/* Waits for SIGINT, SIGTERM or SIGHUP; returns 0, or 1 on failure. */
int loop_until_signal(struct enforcement *en);

#endif

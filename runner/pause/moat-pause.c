/* moat-pause: holds a container's namespaces open.  moat run --engine docker starts it as the
 * entrypoint of a pause container whose network namespace the workload joins.  Blocks until
 * SIGTERM or SIGINT, reaping any children it inherits (it is pid 1).  Built static
 * ($(BUILD)/moat-pause), since the image it runs in may have no libc at all; installed to
 * $(PREFIX)/libexec/moat/. */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void on_child(int sig)
{
	(void)sig;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_stop };

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	while (!stop)
		pause();
	return 0;
}

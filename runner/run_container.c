/* moat run --engine podman|docker: the container path.  The order keeps the workload closed:
 *
 *   engine_open → container_prepare (the command held; a netns with only lo)
 *   → enforcement_up on that netns (listeners, rules, then the veth)
 *   → the workload's resolv.conf → container_start → loop → exit status
 *   → teardown: the capture (while the netns, held by moat, still has the veth), the
 *     container (removed, or stopped with --keep), then the veth and the rules.
 *
 * The resolver: with netns "none" the engines give the container no /etc/resolv.conf at all,
 * and the gateway's address is only known once the veth is wired, after the container is
 * created.  moat bind-mounts a file of its own, /run/moat/ID.PID.resolv.conf, read-only at
 * /etc/resolv.conf (the same way on both engines; a user mount there replaces the engine's),
 * and writes the gateway into it in place before the command starts.  Any other resolver the
 * workload picks is intercepted all the same.  The file goes at teardown; `moat cleanup`
 * removes those of dead moats. */
#include "common/moat.h"
#include "enforcer/enforcer.h"
#include "profiles/profile.h"
#include "runner/engine.h"
#include "runner/loop.h"
#include "runner/run.h"

#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#ifndef MOAT_LIBEXEC_DIR
#define MOAT_LIBEXEC_DIR "/usr/local/libexec/moat"
#endif
#define PAUSE_NAME "moat-pause"
#define RUN_DIR "/run/moat"

/* Splits "SRC:DST[:ro|:rw]"; with single, a lone "PATH" means PATH:PATH. */
static int parse_mount(const char *s, bool single, bool ro, struct run_volume *v,
		       struct moat_error *e)
{
	char buf[2 * PATH_MAX + 8];
	if (strlen(s) >= sizeof(buf))
		return moat_error_set(e, ENAMETOOLONG, "path too long");
	snprintf(buf, sizeof(buf), "%s", s);
	if (!strncmp(buf, "volume://", 9))
		return moat_error_set(e, ENOTSUP, "named volumes are not supported (%s)", s);

	char *src = buf, *dst = strchr(buf, ':'), *opt = NULL;
	if (dst) {
		*dst++ = '\0';
		opt = strchr(dst, ':');
		if (opt)
			*opt++ = '\0';
	} else if (single) {
		dst = src;
	} else {
		return moat_error_set(e, EINVAL, "expected SRC:DST[:ro|:rw] (%s)", s);
	}
	v->ro = ro;
	if (opt) {
		if (!strcmp(opt, "ro"))
			v->ro = true;
		else if (!strcmp(opt, "rw"))
			v->ro = false;
		else
			return moat_error_set(e, EINVAL, "unknown mount option '%s' (ro or rw) in %s",
					      opt, s);
	}
	if (src[0] != '/' || dst[0] != '/')
		return moat_error_set(e, EINVAL, "source and destination must be absolute paths "
				      "(%s)", s);
	if (strlen(src) >= sizeof(v->src) || strlen(dst) >= sizeof(v->dst))
		return moat_error_set(e, ENAMETOOLONG, "path too long (%s)", s);
	if (!strcmp(dst, "/"))
		return moat_error_set(e, EINVAL, "cannot mount over the container's root (%s)", s);
	snprintf(v->src, sizeof(v->src), "%s", src);
	snprintf(v->dst, sizeof(v->dst), "%s", dst);
	return 0;
}

int run_parse_volume(const char *s, struct run_volume *v, struct moat_error *e)
{
	*v = (struct run_volume){ 0 };
	if (parse_mount(s, false, false, v, e) < 0)
		return moat_error_prefix(e, "--volume");
	return 0;
}

/* The static pause program: next to moat's own binary, else in the libexec directory. */
static int find_pause(char *out, size_t cap, struct moat_error *e)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(out, cap, "%s/%s", exe, PAUSE_NAME);
			if (access(out, X_OK) == 0)
				return 0;
		}
	}
	snprintf(out, cap, "%s/%s", MOAT_LIBEXEC_DIR, PAUSE_NAME);
	if (access(out, X_OK) == 0)
		return 0;
	return moat_error_set(e, ENOENT, "--engine docker needs the static pause program %s, "
			      "found neither next to moat (%s) nor in %s (make install puts it "
			      "there)", PAUSE_NAME, n > 0 ? exe : "?", MOAT_LIBEXEC_DIR);
}

struct mounts {
	struct run_volume *v;           /* parsed declarations of the profile */
	struct engine_mount *m;
	size_t n;
};

static void mounts_free(struct mounts *ms)
{
	free(ms->v);
	free(ms->m);
}

/* --volume mounts, then the profile's read (read-only) and write lists, then the resolver. */
static int mounts_build(const struct run_opts *o, const struct policy *pol, const char *resolv,
			struct mounts *ms, struct moat_error *e)
{
	size_t np = pol->n_read + pol->n_write;
	ms->v = calloc(np ? np : 1, sizeof(*ms->v));
	ms->m = calloc(o->n_volumes + np + 1, sizeof(*ms->m));
	if (!ms->v || !ms->m)
		return moat_error_set(e, ENOMEM, "out of memory");
	for (size_t i = 0; i < o->n_volumes; i++)
		ms->m[ms->n++] = (struct engine_mount){ o->volumes[i].src, o->volumes[i].dst,
							o->volumes[i].ro };
	for (size_t i = 0; i < np; i++) {
		bool w = i >= pol->n_read;
		size_t k = w ? i - pol->n_read : i;
		const char *decl = w ? pol->write[k] : pol->read[k];
		if (parse_mount(decl, true, !w, &ms->v[i], e) < 0)
			return moat_error_prefix(e, "profile %s: %s[%zu]", pol->name,
						 w ? "write" : "read", k);
		ms->m[ms->n++] = (struct engine_mount){ ms->v[i].src, ms->v[i].dst, ms->v[i].ro };
	}
	/* a missing source would otherwise fail inside the runtime, looking like a missing
	 * command */
	for (size_t i = 0; i < ms->n; i++) {
		struct stat st;
		if (stat(ms->m[i].src, &st) < 0)
			return moat_error_errno(e, errno, "mount %s:%s: %s", ms->m[i].src,
						ms->m[i].dst, ms->m[i].src);
	}
	ms->m[ms->n++] = (struct engine_mount){ resolv, "/etc/resolv.conf", true };
	return 0;
}

static int resolv_create(const char *path, struct moat_error *e)
{
	if (mkdir(RUN_DIR, 0755) < 0 && errno != EEXIST)
		return moat_error_errno(e, errno, "%s", RUN_DIR);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
				      0644);
	if (fd < 0)
		return moat_error_errno(e, errno, "%s", path);
	static const char placeholder[] = "# written by moat\n";
	if (write(fd, placeholder, sizeof(placeholder) - 1) != (ssize_t)sizeof(placeholder) - 1)
		return moat_error_errno(e, errno ? errno : EIO, "%s", path);
	return 0;
}

/* In place: the engine has already bind-mounted this inode (podman, at init). */
static int resolv_write(const char *path, const struct sandbox_link *l, struct moat_error *e)
{
	char buf[512];
	run_resolv_conf(l, buf, sizeof(buf));
	_cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return moat_error_errno(e, errno, "%s", path);
	size_t len = strlen(buf);
	if (write(fd, buf, len) != (ssize_t)len)
		return moat_error_errno(e, errno ? errno : EIO, "%s", path);
	return 0;
}

int run_container(const struct run_opts *o, const struct policy *pol, bool *started_out)
{
	struct moat_error e = { 0 };
	struct engine *eng = NULL;
	struct container *c = NULL;
	struct enforcement *en = NULL;
	struct mounts ms = { 0 };
	_cleanup_close_ int netns = -1;
	const char *id = o->id;
	char name[32], resolv[64], pause[PATH_MAX + 32] = "";
	bool have_resolv = false, started = false, exited = false;
	int status = MOAT_EXIT_FAILURE, r;

	snprintf(name, sizeof(name), "moat-%s", id);
	snprintf(resolv, sizeof(resolv), RUN_DIR "/%s.%d.resolv.conf", id, (int)getpid());

	struct enforcer_opts eo;
	if (run_enforcer_opts(o, pol, &eo, &e) < 0)
		goto fail;
	bool docker = !strcmp(o->engine, "docker");
	if (docker && find_pause(pause, sizeof(pause), &e) < 0)
		goto fail;
	if (mounts_build(o, pol, resolv, &ms, &e) < 0)
		goto fail;
	/* before any thread (curl's, the proxy's): they all inherit the mask */
	if (loop_block_signals(&e) < 0)
		goto fail;
	if (engine_open(docker ? ENGINE_DOCKER : ENGINE_PODMAN, o->engine_socket, &eng, &e) < 0)
		goto fail;
	if (resolv_create(resolv, &e) < 0)
		goto fail;
	have_resolv = true;

	struct container_spec spec = {
		.image = o->image,
		.cmd = o->argv && o->argv[0] ? o->argv : NULL,
		.env = o->n_env ? o->env : NULL,
		.mounts = ms.m,
		.n_mounts = ms.n,
		.user = o->user,
		.name_hint = name,
		.sandbox_id = id,
		.pause_program = docker ? pause : NULL,
	};
	r = container_prepare(eng, &spec, &c, &netns, &e);
	if (r == -ENOENT || r == -EACCES) {
		fprintf(stderr, "moat run: %s\n", e.msg);
		status = r == -ENOENT ? MOAT_EXIT_NOTFOUND : MOAT_EXIT_NOEXEC;
		goto out;
	}
	if (r < 0)
		goto fail;
	/* netns stays open until the end: once the container exits, the namespace (and the
	 * veth in it) would otherwise vanish before the capture has drained */
	if (enforcement_up(netns, id, &eo, &en, &e) < 0)
		goto fail;
	if (resolv_write(resolv, enforcement_link(en), &e) < 0)
		goto fail;
	log_info("sandbox %s: profile %s, interface %s, %s container %.12s", id, pol->name,
		 enforcement_link(en)->host_ifname, engine_name(eng), container_id(c));

	r = container_start(c, &e);
	if (r == -ENOENT || r == -EACCES) {
		fprintf(stderr, "moat run: %s\n", e.msg);
		status = r == -ENOENT ? MOAT_EXIT_NOTFOUND : MOAT_EXIT_NOEXEC;
		goto out;
	}
	if (r < 0)
		goto fail;
	started = true;
	*started_out = true;
	if (loop_run_container(c, en) < 0)
		goto out;
	exited = true;
	if (container_exit_code(c, &status, &e) < 0)
		goto fail;
	goto out;

fail:
	fprintf(stderr, "moat run: %s\n", e.msg);
	status = MOAT_EXIT_FAILURE;
out:
	/* the capture ends first, while moat's netns fd still keeps the veth; then the workload
	 * goes (a failure part-way removes the container even with --keep), then the veth and
	 * the rules; the namespace, empty by then, goes with the fd */
	enforcement_stop_capture(en);
	container_remove(c, o->keep && started && exited);
	enforcement_down(en);
	engine_close(eng);
	if (have_resolv && unlink(resolv) < 0)
		log_warn("%s: %s", resolv, strerror(errno));
	mounts_free(&ms);
	return status;
}

/* The workload container's life cycle: create it held before its command with a network
 * namespace of its own (podman: init; docker: a pause container), start it with its output
 * attached, wait for it, kill it, remove it; and the removal of what a dead moat left. */
#include "common/moat.h"
#include "runner/engine_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#define PAUSE_TARGET "/.moat-pause"
#define LABEL_OWNER "dev.moat.owner"
#define LABEL_SANDBOX "dev.moat.sandbox"
#define LABEL_ROLE "dev.moat.role"


const char *container_id(const struct container *c)
{
	return c->id;
}

const char *container_pause_id(const struct container *c)
{
	return c->pause_id;
}

int container_wait_fd(const struct container *c)
{
	return c->wait_efd;
}

static bool name_valid(const char *s)
{
	size_t n = strnlen(s, 129);

	if (n == 0 || n > 128 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

static cJSON *string_array(char *const *v)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; a && v && v[i]; i++)
		if (!cJSON_AddItemToArray(a, cJSON_CreateString(v[i]))) {
			cJSON_Delete(a);
			return NULL;
		}
	return a;
}

static cJSON *labels(const struct container_spec *s, const char *role)
{
	char owner[24];
	cJSON *l = cJSON_CreateObject();
	const char *sb = s->sandbox_id ? s->sandbox_id : s->name_hint ? s->name_hint : "";

	snprintf(owner, sizeof(owner), "%d", (int)getpid());
	if (!cJSON_AddStringToObject(l, LABEL_OWNER, owner) ||
	    !cJSON_AddStringToObject(l, LABEL_SANDBOX, sb) ||
	    !cJSON_AddStringToObject(l, LABEL_ROLE, role)) {
		cJSON_Delete(l);
		return NULL;
	}
	return l;
}

/* Takes the new container's id from a create reply. */
static int created_id(struct engine *en, const struct engine_reply *r, char *id,
		      struct moat_error *e)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, "Id");

	if (!cJSON_IsString(v) || !engine_id_valid(v->valuestring))
		return moat_error_set(e, EPROTO, "%s: create: no valid container id in the reply",
				      engine_name(en));
	snprintf(id, ENGINE_ID_MAX, "%s", v->valuestring);
	return 0;
}

/* POST body to path; the id of what was created goes to id. */
static int create(struct engine *en, const char *path, cJSON *body, char *id, struct moat_error *e)
{
	struct engine_reply r;
	int ret;

	if (!body)
		return moat_error_set(e, ENOMEM, "out of memory");
	ret = engine_request(en, en->h, "POST", path, body, "create", &r, e);
	if (ret == 0)
		ret = created_id(en, &r, id, e);
	engine_reply_free(&r);
	return ret;
}

int container_simple_request(struct engine *en, const char *method, const char *what,
			     struct moat_error *e, const char *fmt, ...)
{
	_cleanup_free_ char *path = NULL;
	struct engine_reply r;
	va_list ap;

	va_start(ap, fmt);
	int n = vasprintf(&path, fmt, ap);
	va_end(ap);
	if (n < 0)
		return moat_error_set(e, ENOMEM, "out of memory");
	int ret = engine_request(en, en->h, method, path, NULL, what, &r, e);
	engine_reply_free(&r);
	return ret;
}

/* ENOENT or EACCES when the runtime's message says it could not exec the command, else 0. */
static int exec_errno_of(const char *msg)
{
	if (strstr(msg, "executable file not found") ||
	    strstr(msg, "no such file or directory") || strstr(msg, "command was not found"))
		return ENOENT;
	if (strstr(msg, "permission denied"))
		return EACCES;
	return 0;
}

int container_exec_errno(const struct moat_error *e)
{
	int x = exec_errno_of(e->msg);

	return x ? x : e->code ? e->code : EIO;
}

static int inspect_pid(struct engine *en, const char *prefix, const char *id, pid_t *pid,
		       struct moat_error *e)
{
	_cleanup_free_ char *path = NULL;
	struct engine_reply r;
	int ret;

	if (asprintf(&path, "%s/containers/%s/json", prefix, id) < 0)
		return moat_error_set(e, ENOMEM, "out of memory");
	ret = engine_request(en, en->h, "GET", path, NULL, "inspect", &r, e);
	if (ret == 0) {
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(r.json, "State");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(st, "Pid");
		if (!cJSON_IsNumber(p) || p->valuedouble < 1 || p->valuedouble > 4194304)
			ret = moat_error_set(e, EPROTO, "%s: inspect: container %.12s has no process",
					     engine_name(en), id);
		else
			*pid = (pid_t)p->valuedouble;
	}
	engine_reply_free(&r);
	return ret;
}

/* The network namespace of pid, checked to be alive and not moat's own. */
static int open_netns(struct engine *en, pid_t pid, int *out, struct moat_error *e)
{
	_cleanup_close_ int pidfd = -1, ns = -1;
	char path[64];
	struct stat self, st;

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return moat_error_errno(e, errno, "%s: container process %d", engine_name(en), pid);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		return moat_error_errno(e, errno, "%s", path);
	/* still the process the engine named: the ns is the one it runs in */
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	if (poll(&pfd, 1, 0) != 0)
		return moat_error_set(e, ESRCH, "%s: container process %d exited", engine_name(en),
				      pid);
	if (stat("/proc/self/ns/net", &self) < 0 || fstat(ns, &st) < 0)
		return moat_error_errno(e, errno, "stat network namespace");
	if (self.st_dev == st.st_dev && self.st_ino == st.st_ino)
		return moat_error_set(e, EPERM, "%s: the container shares moat's network namespace",
				      engine_name(en));
	*out = moat_steal_fd(&ns);
	return 0;
}

static int prepare_podman(struct container *c, const struct container_spec *s, pid_t *pid,
			  struct moat_error *e)
{
	struct engine *en = c->en;
	char path[128];
	cJSON *b = cJSON_CreateObject(), *env, *mounts, *ns;
	int ret;

	if (!b)
		return moat_error_set(e, ENOMEM, "out of memory");
	cJSON_AddStringToObject(b, "image", s->image);
	if (s->name_hint)
		cJSON_AddStringToObject(b, "name", s->name_hint);
	if (s->cmd)
		cJSON_AddItemToObject(b, "command", string_array(s->cmd));
	if (s->user)
		cJSON_AddStringToObject(b, "user", s->user);
	cJSON_AddItemToObject(b, "labels", labels(s, "workload"));
	cJSON_AddBoolToObject(b, "terminal", false);
	cJSON_AddBoolToObject(b, "stdin", false);
	env = cJSON_AddObjectToObject(b, "env");
	for (size_t i = 0; env && s->env && s->env[i]; i++) {
		const char *eq = strchr(s->env[i], '=');
		_cleanup_free_ char *k = eq ? strndup(s->env[i], (size_t)(eq - s->env[i])) : NULL;
		if (k)
			cJSON_AddStringToObject(env, k, eq + 1);
	}
	mounts = cJSON_AddArrayToObject(b, "mounts");
	for (size_t i = 0; mounts && i < s->n_mounts; i++) {
		cJSON *m = cJSON_CreateObject(), *o;
		cJSON_AddItemToArray(mounts, m);
		cJSON_AddStringToObject(m, "destination", s->mounts[i].dst);
		cJSON_AddStringToObject(m, "source", s->mounts[i].src);
		cJSON_AddStringToObject(m, "type", "bind");
		o = cJSON_AddArrayToObject(m, "options");
		cJSON_AddItemToArray(o, cJSON_CreateString("rbind"));
		cJSON_AddItemToArray(o, cJSON_CreateString(s->mounts[i].ro ? "ro" : "rw"));
	}
	ns = cJSON_AddObjectToObject(b, "netns");
	cJSON_AddStringToObject(ns, "nsmode", "none");

	snprintf(path, sizeof(path), "%s/containers/create", en->libpod);
	ret = create(en, path, b, c->id, e);
	cJSON_Delete(b);
	if (ret < 0)
		return ret;
	/* the runtime creates the namespaces and holds the command before exec */
	ret = container_simple_request(en, "POST", "init", e, "%s/containers/%s/init", en->libpod,
				       c->id);
	if (ret < 0) {
		/* the runtime looks the command up here */
		int x = e ? exec_errno_of(e->msg) : 0;
		if (x) {
			c->exec_failed = true;
			e->code = x;
			return -x;
		}
		return ret;
	}
	return inspect_pid(en, en->libpod, c->id, pid, e);
}

static cJSON *docker_mounts(const struct container_spec *s, bool pause)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; a && i < s->n_mounts + (pause ? 1 : 0); i++) {
		cJSON *m = cJSON_CreateObject();
		cJSON_AddItemToArray(a, m);
		cJSON_AddStringToObject(m, "Type", "bind");
		if (pause) {
			cJSON_AddStringToObject(m, "Source", s->pause_program);
			cJSON_AddStringToObject(m, "Target", PAUSE_TARGET);
			cJSON_AddBoolToObject(m, "ReadOnly", true);
			break;
		}
		cJSON_AddStringToObject(m, "Source", s->mounts[i].src);
		cJSON_AddStringToObject(m, "Target", s->mounts[i].dst);
		cJSON_AddBoolToObject(m, "ReadOnly", s->mounts[i].ro);
	}
	return a;
}

static int prepare_docker(struct container *c, const struct container_spec *s, pid_t *pid,
			  struct moat_error *e)
{
	struct engine *en = c->en;
	char path[256], mode[ENGINE_ID_MAX + 16];
	cJSON *b, *hc;
	int ret;

	if (!s->pause_program || access(s->pause_program, X_OK) < 0)
		return moat_error_set(e, EINVAL, "%s: needs the static pause program (%s)",
				      engine_name(en), s->pause_program ? s->pause_program
									 : "none given");
	b = cJSON_CreateObject();
	if (!b)
		return moat_error_set(e, ENOMEM, "out of memory");
	cJSON_AddStringToObject(b, "Image", s->image);
	cJSON *ep = cJSON_AddArrayToObject(b, "Entrypoint");
	cJSON_AddItemToArray(ep, cJSON_CreateString(PAUSE_TARGET));
	cJSON_AddItemToObject(b, "Cmd", cJSON_CreateArray());
	cJSON_AddItemToObject(b, "Labels", labels(s, "pause"));
	hc = cJSON_AddObjectToObject(b, "HostConfig");
	cJSON_AddStringToObject(hc, "NetworkMode", "none");
	cJSON_AddItemToObject(hc, "Mounts", docker_mounts(s, true));
	snprintf(path, sizeof(path), "%s/containers/create%s%s%s", en->compat,
		 s->name_hint ? "?name=" : "", s->name_hint ? s->name_hint : "",
		 s->name_hint ? "-pause" : "");
	ret = create(en, path, b, c->pause_id, e);
	cJSON_Delete(b);
	if (ret < 0)
		return moat_error_prefix(e, "pause container");
	ret = container_simple_request(en, "POST", "start", e, "%s/containers/%s/start",
				       en->compat, c->pause_id);
	if (ret < 0)
		return moat_error_prefix(e, "pause container");
	ret = inspect_pid(en, en->compat, c->pause_id, pid, e);
	if (ret < 0)
		return moat_error_prefix(e, "pause container");

	b = cJSON_CreateObject();
	if (!b)
		return moat_error_set(e, ENOMEM, "out of memory");
	cJSON_AddStringToObject(b, "Image", s->image);
	if (s->cmd)
		cJSON_AddItemToObject(b, "Cmd", string_array(s->cmd));
	if (s->env)
		cJSON_AddItemToObject(b, "Env", string_array(s->env));
	if (s->user)
		cJSON_AddStringToObject(b, "User", s->user);
	cJSON_AddItemToObject(b, "Labels", labels(s, "workload"));
	cJSON_AddBoolToObject(b, "AttachStdout", true);
	cJSON_AddBoolToObject(b, "AttachStderr", true);
	cJSON_AddBoolToObject(b, "Tty", false);
	cJSON_AddBoolToObject(b, "OpenStdin", false);
	hc = cJSON_AddObjectToObject(b, "HostConfig");
	snprintf(mode, sizeof(mode), "container:%s", c->pause_id);
	cJSON_AddStringToObject(hc, "NetworkMode", mode);
	cJSON_AddItemToObject(hc, "Mounts", docker_mounts(s, false));
	snprintf(path, sizeof(path), "%s/containers/create%s%s", en->compat,
		 s->name_hint ? "?name=" : "", s->name_hint ? s->name_hint : "");
	ret = create(en, path, b, c->id, e);
	cJSON_Delete(b);
	return ret;
}

static int spec_check(const struct container_spec *s, struct moat_error *e)
{
	if (!s->image || !s->image[0])
		return moat_error_set(e, EINVAL, "no container image given");
	if (s->name_hint && !name_valid(s->name_hint))
		return moat_error_set(e, EINVAL, "bad container name '%s'", s->name_hint);
	for (size_t i = 0; s->env && s->env[i]; i++)
		if (!strchr(s->env[i], '=') || s->env[i][0] == '=')
			return moat_error_set(e, EINVAL, "bad environment entry '%s' (want K=V)",
					      s->env[i]);
	for (size_t i = 0; i < s->n_mounts; i++)
		if (!s->mounts || !s->mounts[i].src || s->mounts[i].src[0] != '/' ||
		    !s->mounts[i].dst || s->mounts[i].dst[0] != '/')
			return moat_error_set(e, EINVAL, "mount %zu: source and target must be "
					      "absolute paths", i);
	return 0;
}

int container_prepare(struct engine *en, const struct container_spec *s, struct container **out,
		      int *netns_fd, struct moat_error *e)
{
	struct container *c;
	pid_t pid = 0;
	int ret;

	*out = NULL;
	*netns_fd = -1;
	ret = spec_check(s, e);
	if (ret < 0)
		return ret;
	c = calloc(1, sizeof(*c));
	if (!c)
		return moat_error_set(e, ENOMEM, "out of memory");
	c->en = en;
	c->out_fd = s->out_fd > 0 ? s->out_fd : 1;
	c->err_fd = s->err_fd > 0 ? s->err_fd : 2;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	c->wait_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wait_efd < 0) {
		ret = moat_error_errno(e, errno, "eventfd");
		goto fail;
	}
	ret = en->kind == ENGINE_PODMAN ? prepare_podman(c, s, &pid, e)
					: prepare_docker(c, s, &pid, e);
	if (ret < 0)
		goto fail;
	ret = open_netns(en, pid, netns_fd, e);
	if (ret < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	/* ENOENT and EACCES mean the command cannot be run (moat run: 127, 126); a missing
	 * image (404) or anything else is another failure */
	if ((ret == -ENOENT || ret == -EACCES) && !c->exec_failed) {
		ret = -EIO;
		if (e)
			e->code = EIO;
	}
	container_remove(c, false);
	return ret;
}

/* ---- moat cleanup ---- */

int engine_cleanup_stale(struct engine *en, bool (*alive)(pid_t), unsigned *removed,
			 struct moat_error *e)
{
	_cleanup_free_ char *path = NULL, *filters = NULL;
	struct engine_reply r;
	const cJSON *ct;
	int ret;

	*removed = 0;
	filters = curl_easy_escape(en->h, "{\"label\":[\"" LABEL_OWNER "\"]}", 0);
	if (!filters || asprintf(&path, "%s/containers/json?all=1&filters=%s", en->compat,
				 filters) < 0)
		return moat_error_set(e, ENOMEM, "out of memory");
	ret = engine_request(en, en->h, "GET", path, NULL, "list containers", &r, e);
	if (ret < 0)
		goto out;
	if (!cJSON_IsArray(r.json)) {
		ret = moat_error_set(e, EPROTO, "%s: list containers: not a list", engine_name(en));
		goto out;
	}
	/* workloads in the first pass, pause containers in the second */
	for (int pass = 0; pass < 2; pass++) {
		cJSON_ArrayForEach(ct, r.json) {
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(ct, "Id");
			const cJSON *l = cJSON_GetObjectItemCaseSensitive(ct, "Labels");
			const cJSON *own = cJSON_GetObjectItemCaseSensitive(l, LABEL_OWNER);
			const cJSON *role = cJSON_GetObjectItemCaseSensitive(l, LABEL_ROLE);
			unsigned long long pid;
			bool is_pause = cJSON_IsString(role) && !strcmp(role->valuestring, "pause");

			if (is_pause != (pass == 1) || !cJSON_IsString(id) ||
			    !engine_id_valid(id->valuestring) || !cJSON_IsString(own) ||
			    moat_parse_uint(own->valuestring, 1, 4194304, &pid) < 0 ||
			    alive((pid_t)pid))
				continue;
			struct moat_error e2 = { 0 };
			if (container_simple_request(en, "DELETE", "remove", &e2,
						     "%s/containers/%s?force=1&v=1", en->compat,
						     id->valuestring) == 0)
				(*removed)++;
			else if (e2.code != ENOENT)
				log_warn("%s", e2.msg);
		}
	}
out:
	engine_reply_free(&r);
	return ret;
}

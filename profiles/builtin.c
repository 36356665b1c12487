/* Finding profiles: a path, or a built-in name searched in
 * $MOAT_PROFILE_PATH, the install directory and the source tree. */
#include "common/moat.h"
#include "profiles/internal.h"

#include <string.h>
#include <sys/stat.h>

#ifndef MOAT_PROFILE_DIR
#define MOAT_PROFILE_DIR "/usr/local/share/moat/profiles"
#endif
#ifndef MOAT_SRC_PROFILE_DIR
#define MOAT_SRC_PROFILE_DIR "profiles/builtin"
#endif

#define PROFILE_MAX_BYTES (1u << 20)

static const char *const builtin_names[] = {
	"none", "network", "github", "npm", "pypi", "anthropic", "openai", NULL,
};

const char *const *policy_builtin_names(void)
{
	return builtin_names;
}

bool policy_is_builtin_name(const char *arg)
{
	size_t n = strlen(arg);
	return n > 0 && !strchr(arg, '/') && !(n >= 5 && strcmp(arg + n - 5, ".json") == 0);
}

static bool try_dir(const char *dir, size_t dlen, const char *name, char *path, size_t size)
{
	struct stat st;
	if (dlen == 0)
		return false;
	int n = snprintf(path, size, "%.*s/%s.json", (int)dlen, dir, name);
	return n > 0 && (size_t)n < size && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int policy_find_builtin(const char *name, char *path, size_t size)
{
	if (!policy_is_builtin_name(name) || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	const char *env = getenv("MOAT_PROFILE_PATH");
	for (const char *d = env; d && *d;) {
		const char *colon = strchr(d, ':');
		size_t dlen = colon ? (size_t)(colon - d) : strlen(d);
		if (try_dir(d, dlen, name, path, size))
			return 0;
		d = colon ? colon + 1 : d + dlen;
	}
	if (try_dir(MOAT_PROFILE_DIR, strlen(MOAT_PROFILE_DIR), name, path, size) ||
	    try_dir(MOAT_SRC_PROFILE_DIR, strlen(MOAT_SRC_PROFILE_DIR), name, path, size))
		return 0;
	return -ENOENT;
}

int policy_load_file(const char *path, struct policy **out, struct moat_error *e)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = moat_read_file(path, PROFILE_MAX_BYTES, &buf, &len, e);
	if (r < 0)
		return r;
	struct policy *p;
	r = policy_load_buffer(buf, len, path, &p, e);
	if (r < 0)
		return r;
	if (!(p->path = strdup(path))) {
		policy_free(p);
		return moat_error_errno(e, ENOMEM, "%s", path);
	}
	*out = p;
	return 0;
}

int policy_load(const char *arg, struct policy **out, struct moat_error *e)
{
	if (!policy_is_builtin_name(arg))
		return policy_load_file(arg, out, e);
	char path[4096];
	if (policy_find_builtin(arg, path, sizeof(path)) < 0) {
		char list[256] = "";
		size_t o = 0;
		for (const char *const *n = builtin_names; *n; n++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s",
					      o ? ", " : "", *n);
		return moat_error_set(e, ENOENT, "%s: unknown profile (built-ins: %s; "
				      "a file path needs a '/' or a .json suffix)", arg, list);
	}
	return policy_load_file(path, out, e);
}

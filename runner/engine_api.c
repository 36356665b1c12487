/* The Engine API client: HTTP/1.1 over the engine's unix socket (libcurl, opened on first
 * use), JSON (cJSON), the engine's errors turned into one line, and the stream frame
 * parser. */
#include "common/dlib.h"
#include "common/moat.h"
#include "runner/engine_internal.h"

#include <ctype.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The newest compat API version moat speaks; older engines get their own. */
#define ENGINE_API_MAX_MAJOR 1
#define ENGINE_API_MAX_MINOR 41
#define ENGINE_REQ_TIMEOUT_S 120L

struct curl_fns engine_curl;

static const struct dlib_sym curl_syms[] = {
#define CURL_SYM(f) DLIB_SYM(struct curl_fns, curl_, f),
	ENGINE_CURL_FNS(CURL_SYM)
#undef CURL_SYM
};
static struct dlib curl_lib = DLIB_INIT("libcurl.so.4", "libcurl4", curl_syms, &engine_curl);
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	if (dlib_load(&curl_lib) == 0)
		curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *engine_name(const struct engine *en)
{
	return en->kind == ENGINE_PODMAN ? "podman" : "docker";
}

const char *engine_socket(const struct engine *en)
{
	return en->socket;
}

const char *engine_version(const struct engine *en)
{
	return en->version;
}

const char *engine_api_version(const struct engine *en)
{
	return en->api_version;
}

bool engine_id_valid(const char *id)
{
	size_t n = strnlen(id, 65);

	if (n < 12 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)id[i]) && !(id[i] >= 'a' && id[i] <= 'f'))
			return false;
	return true;
}

CURL *engine_handle(const struct engine *en)
{
	CURL *h = curl_easy_init();

	if (!h)
		return NULL;
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, en->socket);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	/* no proxy from the environment for a unix socket */
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	return h;
}

struct sink {
	char *buf;
	size_t len, cap;
	bool too_big;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;

	if (n > ENGINE_REPLY_MAX - s->len) {
		s->too_big = true;
		return 0;
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n + 1)
			cap *= 2;
		char *b = realloc(s->buf, cap);
		if (!b)
			return 0;
		s->buf = b;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

void engine_reply_free(struct engine_reply *r)
{
	free(r->body);
	cJSON_Delete(r->json);
	memset(r, 0, sizeof(*r));
}

void engine_reply_message(const struct engine_reply *r, char *buf, size_t size)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(r->json, "message");

	if (!cJSON_IsString(m) || !m->valuestring[0])
		m = cJSON_GetObjectItemCaseSensitive(r->json, "cause");
	const char *src = cJSON_IsString(m) && m->valuestring[0] ? m->valuestring : r->body;
	size_t j = 0;
	if (src)
		for (size_t i = 0; src[i] && j + 1 < size && i < 300; i++) {
			unsigned char ch = (unsigned char)src[i];
			buf[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : ' ';
		}
	while (j > 0 && buf[j - 1] == ' ')
		j--;
	if (j == 0 && size > 16)
		j = (size_t)snprintf(buf, size, "empty reply");
	buf[j] = '\0';
}

/* Which errno a failed reply maps to. */
static int status_errno(long status)
{
	switch (status) {
	case 304: return EALREADY;
	case 400: return EINVAL;
	case 401: case 403: return EPERM;
	case 404: return ENOENT;
	case 409: return EBUSY;
	default: return EIO;
	}
}

/* curl only says "could not connect": ask the socket ourselves for the real reason. */
static int connect_errno(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int err = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		err = errno;
	close(fd);
	return err;
}

static int unreachable(struct engine *en, int err, const char *detail, struct moat_error *e)
{
	const char *hint = en->kind == ENGINE_PODMAN ? "is 'podman system service' running?"
						     : "is the docker daemon running?";
	if (err)
		return moat_error_set(e, err, "cannot reach the %s API at %s: %s (%s)",
				      engine_name(en), en->socket, strerror(err), hint);
	return moat_error_set(e, EIO, "cannot reach the %s API at %s: %s (%s)", engine_name(en),
			      en->socket, detail, hint);
}

/* Aborts a long request once *stop is set (polled about once a second by libcurl). */
static int stop_check(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		      curl_off_t ulnow)
{
	const int *stop = clientp;
	return __atomic_load_n(stop, __ATOMIC_ACQUIRE) ? 1 : 0;
}

int engine_request(struct engine *en, CURL *h, const char *method, const char *path,
		   const cJSON *body, const char *what, struct engine_reply *r,
		   struct moat_error *e)
{
	return engine_request_until(en, h, method, path, body, what, NULL, r, e);
}

int engine_request_until(struct engine *en, CURL *h, const char *method, const char *path,
			 const cJSON *body, const char *what, const int *stop,
			 struct engine_reply *r, struct moat_error *e)
{
	_cleanup_free_ char *url = NULL, *json = NULL;
	struct curl_slist *hdrs = NULL;
	struct sink s = { 0 };
	char errbuf[CURL_ERROR_SIZE] = "";
	int ret = 0;

	memset(r, 0, sizeof(*r));
	if (asprintf(&url, "http://localhost%s", path) < 0)
		return moat_error_set(e, ENOMEM, "out of memory");
	if (body) {
		json = cJSON_PrintUnformatted(body);
		if (!json)
			return moat_error_set(e, ENOMEM, "out of memory");
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	}
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, en->socket);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	if (stop) {
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, stop_check);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, stop);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	} else {
		curl_easy_setopt(h, CURLOPT_TIMEOUT, ENGINE_REQ_TIMEOUT_S);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	} else if (!strcmp(method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	}
	CURLcode cr = curl_easy_perform(h);
	curl_slist_free_all(hdrs);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	r->body = s.buf;
	r->len = s.len;
	if (s.too_big) {
		ret = moat_error_set(e, EMSGSIZE, "%s: %s: reply larger than %u bytes",
				     engine_name(en), what, ENGINE_REPLY_MAX);
		goto out;
	}
	if (cr == CURLE_COULDNT_CONNECT || cr == CURLE_COULDNT_RESOLVE_HOST) {
		ret = unreachable(en, connect_errno(en->socket), errbuf[0] ? errbuf :
				  curl_easy_strerror(cr), e);
		goto out;
	}
	if (cr == CURLE_ABORTED_BY_CALLBACK) {
		ret = moat_error_set(e, ECANCELED, "%s: %s: cancelled", engine_name(en), what);
		goto out;
	}
	if (cr != CURLE_OK) {
		ret = moat_error_set(e, EIO, "%s: %s: %s", engine_name(en), what,
				     errbuf[0] ? errbuf : curl_easy_strerror(cr));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->body && r->len)
		r->json = cJSON_ParseWithLength(r->body, r->len);
	if (r->status >= 400 || r->status < 200) {
		char msg[320];
		engine_reply_message(r, msg, sizeof(msg));
		ret = moat_error_set(e, status_errno(r->status), "%s: %s: %s (%ld)",
				     engine_name(en), what, msg, r->status);
	}
out:
	return ret;
}

/* "1.41" -> 1, 41; false unless exactly digits.digits */
static bool parse_api_version(const char *s, unsigned *major, unsigned *minor)
{
	unsigned long long a, b;
	char buf[16];
	const char *dot = strchr(s, '.');

	if (!dot || (size_t)(dot - s) >= sizeof(buf) || strlen(dot + 1) >= sizeof(buf))
		return false;
	memcpy(buf, s, (size_t)(dot - s));
	buf[dot - s] = '\0';
	if (moat_parse_uint(buf, 0, 99, &a) < 0 || moat_parse_uint(dot + 1, 0, 999, &b) < 0)
		return false;
	*major = (unsigned)a;
	*minor = (unsigned)b;
	return true;
}

static bool version_chars(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && s[i] != '.')
			return false;
	return true;
}

/* The API version to use, from the engine's own: at most ENGINE_API_MAX, at least 1.25. */
static int set_api_version(struct engine *en, unsigned major, unsigned minor, struct moat_error *e)
{
	if (major > ENGINE_API_MAX_MAJOR ||
	    (major == ENGINE_API_MAX_MAJOR && minor > ENGINE_API_MAX_MINOR)) {
		major = ENGINE_API_MAX_MAJOR;
		minor = ENGINE_API_MAX_MINOR;
	}
	if (major < 1 || (major == 1 && minor < 25))
		return moat_error_set(e, ENOTSUP, "%s: API version %u.%u is too old (moat needs 1.25)",
				      engine_name(en), major, minor);
	snprintf(en->api_version, sizeof(en->api_version), "%u.%u", major, minor);
	snprintf(en->compat, sizeof(en->compat), "/v%u.%u", major, minor);
	return 0;
}

/* A header of the last reply on h, or NULL. */
static const char *reply_header(CURL *h, const char *name)
{
	struct curl_header *hd;

	if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return NULL;
	return hd->value;
}

/* Both engines answer /_ping with Api-Version (and podman with Libpod-Api-Version, its own
 * version): enough, and /version costs podman 0.4-1 s.  false: not there, ask /version. */
static bool handshake_from_ping(struct engine *en, int *ret, struct moat_error *e)
{
	const char *api = reply_header(en->h, "Api-Version");
	const char *libpod = reply_header(en->h, "Libpod-Api-Version");
	const char *server = reply_header(en->h, "Server");
	unsigned major, minor;

	if (!api || !parse_api_version(api, &major, &minor))
		return false;
	if (libpod && !version_chars(libpod, 16))
		return false;
	*ret = set_api_version(en, major, minor, e);
	if (*ret < 0)
		return true;
	if (en->kind == ENGINE_PODMAN && !libpod) {
		*ret = moat_error_set(e, ENOTSUP, "the engine at %s is not podman (use --engine "
				      "docker)", en->socket);
		return true;
	}
	/* "Docker/24.0.7 (linux)" */
	const char *slash = server ? strchr(server, '/') : NULL;
	if (libpod)
		snprintf(en->version, sizeof(en->version), "%s", libpod);
	else if (slash && slash[1])
		snprintf(en->version, sizeof(en->version), "%.*s", (int)strcspn(slash + 1, " "),
			 slash + 1);
	else
		snprintf(en->version, sizeof(en->version), "unknown");
	snprintf(en->libpod, sizeof(en->libpod), "/v%s/libpod", libpod ? libpod : "4.0.0");
	return true;
}

/* /_ping, then (only when its headers do not say) /version: the API version to use and, for
 * podman, the libpod API version. */
static int engine_handshake(struct engine *en, struct moat_error *e)
{
	struct engine_reply r;
	int ret = engine_request(en, en->h, "GET", "/_ping", NULL, "ping", &r, e);

	engine_reply_free(&r);
	if (ret < 0)
		return ret;
	if (handshake_from_ping(en, &ret, e))
		return ret;
	ret = engine_request(en, en->h, "GET", "/version", NULL, "version", &r, e);
	if (ret < 0)
		goto out;
	const cJSON *api = cJSON_GetObjectItemCaseSensitive(r.json, "ApiVersion");
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(r.json, "Version");
	unsigned major, minor;
	if (!cJSON_IsString(api) || !parse_api_version(api->valuestring, &major, &minor)) {
		ret = moat_error_set(e, EPROTO, "%s: version: no usable ApiVersion in the reply",
				     engine_name(en));
		goto out;
	}
	ret = set_api_version(en, major, minor, e);
	if (ret < 0)
		goto out;
	snprintf(en->version, sizeof(en->version), "%s",
		 cJSON_IsString(ver) ? ver->valuestring : "unknown");

	/* Podman names itself among the components; its libpod API version is there. */
	const char *libpod = NULL;
	const cJSON *comps = cJSON_GetObjectItemCaseSensitive(r.json, "Components"), *c;
	if (!cJSON_IsArray(comps))
		comps = NULL;
	cJSON_ArrayForEach(c, comps) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "Name");
		const cJSON *det = cJSON_GetObjectItemCaseSensitive(c, "Details");
		const cJSON *lv = cJSON_GetObjectItemCaseSensitive(det, "APIVersion");
		if (cJSON_IsString(name) && !strcmp(name->valuestring, "Podman Engine")) {
			libpod = cJSON_IsString(lv) && version_chars(lv->valuestring, 16)
				 ? lv->valuestring : "4.0.0";
			break;
		}
	}
	if (en->kind == ENGINE_PODMAN && !libpod) {
		ret = moat_error_set(e, ENOTSUP, "the engine at %s is not podman (use --engine docker)",
				     en->socket);
		goto out;
	}
	snprintf(en->libpod, sizeof(en->libpod), "/v%s/libpod", libpod ? libpod : "4.0.0");
out:
	engine_reply_free(&r);
	return ret;
}

static const char *socket_from_env(const char *var)
{
	const char *v = getenv(var);

	return v && v[0] ? v : NULL;
}

int engine_open(enum engine_kind kind, const char *socket, struct engine **out,
		struct moat_error *e)
{
	const char *path = socket, *from = NULL;
	struct engine *en;
	int ret;

	*out = NULL;
	if (kind != ENGINE_PODMAN && kind != ENGINE_DOCKER)
		return moat_error_set(e, EINVAL, "unknown container engine");
	if (!path) {
		const char *a = kind == ENGINE_PODMAN ? "CONTAINER_HOST" : "DOCKER_HOST";
		const char *b = kind == ENGINE_PODMAN ? "DOCKER_HOST" : "CONTAINER_HOST";
		if ((path = socket_from_env(a)))
			from = a;
		else if ((path = socket_from_env(b)))
			from = b;
		else
			path = kind == ENGINE_PODMAN ? "/run/podman/podman.sock"
						     : "/var/run/docker.sock";
		if (from && strncmp(path, "unix://", 7) != 0)
			return moat_error_set(e, ENOTSUP, "%s=%s: only unix:// sockets are supported",
					      from, path);
	}
	if (!strncmp(path, "unix://", 7))
		path += 7;
	if (path[0] == '\0' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return moat_error_set(e, EINVAL, "bad engine socket path '%s'", path);
	pthread_once(&curl_once, curl_init);
	if (dlib_check(&curl_lib, e) < 0)
		return moat_error_prefix(e, "--engine %s",
					 kind == ENGINE_PODMAN ? "podman" : "docker");
	if (curl_init_result != CURLE_OK)
		return moat_error_set(e, EIO, "libcurl: %s", curl_easy_strerror(curl_init_result));

	en = calloc(1, sizeof(*en));
	if (!en)
		return moat_error_set(e, ENOMEM, "out of memory");
	en->kind = kind;
	en->socket = strdup(path);
	en->h = en->socket ? engine_handle(en) : NULL;
	if (!en->h) {
		engine_close(en);
		return moat_error_set(e, ENOMEM, "out of memory");
	}
	ret = engine_handshake(en, e);
	if (ret < 0) {
		engine_close(en);
		return ret;
	}
	*out = en;
	return 0;
}

void engine_close(struct engine *en)
{
	if (!en)
		return;
	if (en->h)
		curl_easy_cleanup(en->h);
	free(en->socket);
	free(en);
}

enum parse_result engine_frame_parse(const uint8_t *buf, size_t len, struct engine_frame *f)
{
	if (len < 1)
		return PARSE_NEED_MORE;
	if (buf[0] > 2)
		return PARSE_INVALID;
	for (size_t i = 1; i < 4 && i < len; i++)
		if (buf[i] != 0)
			return PARSE_INVALID;
	if (len < ENGINE_FRAME_HDR)
		return PARSE_NEED_MORE;
	uint32_t n = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 | (uint32_t)buf[6] << 8 |
		     buf[7];
	if (n > ENGINE_FRAME_MAX)
		return PARSE_INVALID;
	if (len - ENGINE_FRAME_HDR < n)
		return PARSE_NEED_MORE;
	f->stream = buf[0];
	f->payload = buf + ENGINE_FRAME_HDR;
	f->len = n;
	f->size = ENGINE_FRAME_HDR + (size_t)n;
	return PARSE_OK;
}

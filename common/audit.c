#include "common/audit.h"
#include "common/moat.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>

struct audit {
	int fd;
	bool own_fd;
	char sandbox[64];
};

struct audit *audit_open(const char *path, const char *sandbox, struct moat_error *e)
{
	struct audit *a = calloc(1, sizeof(*a));
	if (!a) {
		moat_error_errno(e, ENOMEM, "audit log");
		return NULL;
	}
	if (strcmp(path, "-") == 0) {
		a->fd = STDERR_FILENO;
	} else {
		a->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (a->fd < 0) {
			moat_error_errno(e, errno, "audit log %s", path);
			free(a);
			return NULL;
		}
		a->own_fd = true;
	}
	snprintf(a->sandbox, sizeof(a->sandbox), "%s", sandbox ? sandbox : "");
	return a;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	if (a->own_fd)
		close(a->fd);
	free(a);
}

const char *audit_sandbox(const struct audit *a)
{
	return a ? a->sandbox : "";
}

static void put(struct audit_rec *r, const char *s, size_t n)
{
	/* the body keeps room for the trailer fields; the trailer for "}\n" */
	if (r->overflow || r->len + n + r->reserve > sizeof(r->buf)) {
		r->overflow = true;
		return;
	}
	memcpy(r->buf + r->len, s, n);
	r->len += n;
}

static void put_s(struct audit_rec *r, const char *s)
{
	put(r, s, strlen(s));
}

static void put_escaped(struct audit_rec *r, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	put(r, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(r, esc, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			/* bytes, not code points: keep the line valid ASCII JSON */
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			put(r, esc, 6);
		} else {
			put(r, (const char *)&c, 1);
		}
	}
	put(r, "\"", 1);
}

static void put_key(struct audit_rec *r, const char *key)
{
	put(r, ",", 1);
	put_escaped(r, key, strlen(key));
	put(r, ":", 1);
}

void audit_begin(struct audit_rec *r, const char *event, const char *verdict, const char *reason)
{
	r->len = 0;
	r->overflow = false;
	r->reserve = 256;
	put_s(r, "{\"event\":");
	put_escaped(r, event, strlen(event));
	if (verdict)
		audit_str(r, "verdict", verdict);
	if (reason)
		audit_str(r, "reason", reason);
}

void audit_str(struct audit_rec *r, const char *key, const char *val)
{
	if (!val)
		return;
	audit_strn(r, key, val, strlen(val));
}

/* A field that does not fit is dropped whole, so the line stays valid JSON;
 * the record is then marked "truncated". */
static size_t field_start(struct audit_rec *r)
{
	return r->overflow ? (size_t)-1 : r->len;
}

static void field_end(struct audit_rec *r, size_t start)
{
	if (r->overflow && start != (size_t)-1)
		r->len = start;
}

void audit_strn(struct audit_rec *r, const char *key, const char *val, size_t len)
{
	size_t s = field_start(r);
	put_key(r, key);
	put_escaped(r, val, len);
	field_end(r, s);
}

void audit_int(struct audit_rec *r, const char *key, long long v)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%lld", v);
	size_t s = field_start(r);
	put_key(r, key);
	put(r, num, (size_t)n);
	field_end(r, s);
}

void audit_bool(struct audit_rec *r, const char *key, bool v)
{
	size_t s = field_start(r);
	put_key(r, key);
	put_s(r, v ? "true" : "false");
	field_end(r, s);
}

void audit_raw(struct audit_rec *r, const char *key, const char *json)
{
	size_t s = field_start(r);
	put_key(r, key);
	put_s(r, json);
	field_end(r, s);
}

void audit_addr(struct audit_rec *r, const char *key, int family, const void *addr)
{
	char buf[INET6_ADDRSTRLEN];
	if (!inet_ntop(family, addr, buf, sizeof(buf)))
		return;
	/* show v4-mapped v6 addresses as plain v4 */
	if (family == AF_INET6 && strncmp(buf, "::ffff:", 7) == 0 && strchr(buf + 7, '.'))
		audit_str(r, key, buf + 7);
	else
		audit_str(r, key, buf);
}

void audit_commit(struct audit *a, struct audit_rec *r)
{
	if (!a)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char tsbuf[80];
	snprintf(tsbuf, sizeof(tsbuf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(ts.tv_nsec / 1000) % 1000000);
	bool overflow = r->overflow;
	r->overflow = false;
	r->reserve = 2;
	audit_str(r, "ts", tsbuf);
	audit_str(r, "sandbox", a->sandbox);
	if (overflow)
		audit_bool(r, "truncated", true);
	/* put() always leaves room for these two bytes */
	r->buf[r->len++] = '}';
	r->buf[r->len++] = '\n';
	size_t off = 0;
	while (off < r->len) {
		ssize_t w = write(a->fd, r->buf + off, r->len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)w;
	}
}

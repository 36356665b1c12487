#include "common/moat.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int moat_log_level = MOAT_LOG_WARN;

static int error_vset(struct moat_error *e, int code, bool with_errno, const char *fmt, va_list ap)
{
	if (code < 0)
		code = -code;
	if (code == 0)
		code = EINVAL;
	if (!e)
		return -code;
	e->code = code;
	int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	if (with_errno && n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %s", strerror(code));
	return -code;
}

int moat_error_set(struct moat_error *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = error_vset(e, code, false, fmt, ap);
	va_end(ap);
	return r;
}

int moat_error_errno(struct moat_error *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = error_vset(e, code, true, fmt, ap);
	va_end(ap);
	return r;
}

int moat_error_prefix(struct moat_error *e, const char *fmt, ...)
{
	if (!e)
		return -EINVAL;
	char ctx[MOAT_ERR_MAX], old[MOAT_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	/* context first; what does not fit of the old message is cut */
	size_t n = strnlen(ctx, sizeof(ctx) - 1);
	memcpy(e->msg, ctx, n);
	if (n + 2 < sizeof(e->msg)) {
		e->msg[n++] = ':';
		e->msg[n++] = ' ';
		size_t m = strnlen(old, sizeof(old) - 1);
		if (m > sizeof(e->msg) - 1 - n)
			m = sizeof(e->msg) - 1 - n;
		memcpy(e->msg + n, old, m);
		n += m;
	}
	e->msg[n] = '\0';
	if (e->code == 0)
		e->code = EINVAL;
	return -e->code;
}

void moat_freep(void *p)
{
	free(*(void **)p);
}

void moat_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

void moat_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

void moat_log(int level, const char *fmt, ...)
{
	if (level > moat_log_level)
		return;
	static const char *const tag[] = { "error: ", "warning: ", "", "debug: " };
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(buf, sizeof(buf), "moat: %s", tag[level]);
	if (n < 0)
		n = 0;
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	/* one write(2) so lines from threads do not interleave */
	ssize_t w = write(STDERR_FILENO, buf, len);
	(void)w;
}

int moat_read_file(const char *path, size_t max, char **out, size_t *len, struct moat_error *e)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return moat_error_errno(e, errno, "%s", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return moat_error_errno(e, errno, "%s", path);
	if (S_ISDIR(st.st_mode))
		return moat_error_set(e, EISDIR, "%s: is a directory", path);
	size_t cap = 4096, n = 0;
	_cleanup_free_ char *buf = malloc(cap + 1);
	if (!buf)
		return moat_error_errno(e, ENOMEM, "%s", path);
	for (;;) {
		if (n == cap) {
			if (cap >= max)
				return moat_error_set(e, EFBIG, "%s: larger than %zu bytes", path, max);
			cap = cap * 2 > max ? max : cap * 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				return moat_error_errno(e, ENOMEM, "%s", path);
			buf = nb;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return moat_error_errno(e, errno, "%s", path);
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	*out = moat_steal_ptr(&buf);
	return 0;
}

uint64_t moat_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t moat_now_ms(void)
{
	return moat_now_ns() / 1000000ull;
}

int moat_parse_uint(const char *s, unsigned long long min, unsigned long long max,
		    unsigned long long *out)
{
	if (!s || !*s)
		return -EINVAL;
	unsigned long long v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*p - '0');
		if (v > (~0ull - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
		if (v > max)
			return -ERANGE;
	}
	if (v < min)
		return -ERANGE;
	*out = v;
	return 0;
}

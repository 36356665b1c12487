/* moat — shared conventions: the error object, cleanup helpers, logging.
 *
 * Functions that can fail return 0 (or a non-negative value) on success and a
 * negative errno on failure, after filling a struct moat_error with one
 * precise line for the user.  Callers add context with moat_error_prefix()
 * and the top level prints e.msg once.  Nothing below main() calls exit(). */
#ifndef MOAT_COMMON_H
#define MOAT_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MOAT_ERR_MAX 512

struct moat_error {
	int code;                 /* positive errno, 0 when unset */
	char msg[MOAT_ERR_MAX];
};

/* Sets e (if not NULL) and returns -code (code is a positive errno). */
int moat_error_set(struct moat_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like moat_error_set but appends ": strerror(code)". */
int moat_error_errno(struct moat_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an error already set; returns -e->code. */
int moat_error_prefix(struct moat_error *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Exit statuses of moat run (docker run's convention). */
enum {
	MOAT_EXIT_FAILURE = 125,
	MOAT_EXIT_NOEXEC = 126,
	MOAT_EXIT_NOTFOUND = 127,
};

/* ---- cleanup helpers (crun style) ---- */
void moat_freep(void *p);
void moat_closep(int *fd);
void moat_fclosep(FILE **f);
#define _cleanup_free_   __attribute__((cleanup(moat_freep)))
#define _cleanup_close_  __attribute__((cleanup(moat_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(moat_fclosep)))

static inline void *moat_steal_ptr(void *pp)
{
	void **p = pp, *r = *p;
	*p = NULL;
	return r;
}
static inline int moat_steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- logging to stderr, prefixed "moat: " ---- */
enum moat_log_level { MOAT_LOG_ERROR, MOAT_LOG_WARN, MOAT_LOG_INFO, MOAT_LOG_DEBUG };
extern int moat_log_level;         /* default MOAT_LOG_WARN; -v raises it */
void moat_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) moat_log(MOAT_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  moat_log(MOAT_LOG_WARN, __VA_ARGS__)
#define log_info(...)  moat_log(MOAT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) moat_log(MOAT_LOG_DEBUG, __VA_ARGS__)

/* ---- small helpers ---- */
/* Reads a whole file (up to max bytes) into a NUL-terminated buffer. */
int moat_read_file(const char *path, size_t max, char **out, size_t *len, struct moat_error *e);
/* Monotonic clock in milliseconds / nanoseconds. */
uint64_t moat_now_ms(void);
uint64_t moat_now_ns(void);
/* Parses a decimal unsigned integer in [min, max]; whole string must match. */
int moat_parse_uint(const char *s, unsigned long long min, unsigned long long max,
		    unsigned long long *out);

#endif

/* Audit log: JSON Lines, one object per event (schema: docs/audit-log.md).
 *
 *   struct audit_rec r;
 *   audit_begin(&r, "tcp", "deny", "sni-ip-mismatch");
 *   audit_str(&r, "sni", name);  audit_int(&r, "dport", 443);
 *   audit_commit(log, &r);
 *
 * Each record is written with one write(2) on an O_APPEND descriptor, so
 * threads and processes sharing a file never interleave lines, and a record
 * never waits on a lock.  A NULL log accepts records and drops them. */
#ifndef MOAT_AUDIT_H
#define MOAT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct moat_error;
struct audit;

#define AUDIT_REC_MAX 4096

struct audit_rec {
	size_t len;
	size_t reserve;
	bool overflow;
	char buf[AUDIT_REC_MAX];
};

/* path "-" writes to stderr. */
struct audit *audit_open(const char *path, const char *sandbox, struct moat_error *e);
void audit_close(struct audit *a);
const char *audit_sandbox(const struct audit *a);

void audit_begin(struct audit_rec *r, const char *event, const char *verdict, const char *reason);
void audit_str(struct audit_rec *r, const char *key, const char *val);
/* A string of known length that may hold any bytes: escaped as JSON. */
void audit_strn(struct audit_rec *r, const char *key, const char *val, size_t len);
void audit_int(struct audit_rec *r, const char *key, long long v);
void audit_bool(struct audit_rec *r, const char *key, bool v);
/* A raw JSON value (array/object) written as is; the caller guarantees it is valid. */
void audit_raw(struct audit_rec *r, const char *key, const char *json);
/* Adds "ts" and "sandbox", closes the object and writes the line. */
void audit_commit(struct audit *a, struct audit_rec *r);

/* Formats a socket address for "src"/"dst" (no port). */
void audit_addr(struct audit_rec *r, const char *key, int family, const void *addr);

#endif

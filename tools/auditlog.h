/* Reader of moat's audit log (JSON Lines, schema in docs/audit-log.md) for
 * `moat audit` and profile learning.  A bad line is reported with its number
 * and skipped; the rest of the log is still read. */
#ifndef MOAT_AUDITLOG_H
#define MOAT_AUDITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct moat_error;

#define AUDITLOG_FILE_MAX (1024u * 1024 * 1024)  /* 1 GiB */
#define AUDITLOG_WARN_KEEP 20                     /* warnings kept; the rest counted */

struct audit_event {
	unsigned line;                  /* 1-based line number in the log */
	int64_t ts_us;                  /* microseconds since the epoch (UTC) */
	char event[12];                 /* tcp http dns udp drop close sandbox (or other) */
	char verdict[8];                /* allow / deny / "" */
	char *reason, *sandbox, *rule;  /* NULL when absent */
	char *sni, *host, *qname, *qtype, *rcode;
	int family;                     /* of src/dst; 0 when neither is present */
	bool has_src, has_dst;
	uint8_t src[16], dst[16];
	int sport, dport;               /* -1 when absent */
	uint8_t proto;                  /* 6, 17, 1, 58; 0 when absent */
	char **answers;                 /* address strings as logged */
	size_t n_answers;
	int64_t bytes_up, bytes_down, duration_ms;   /* -1 when absent */
};

struct audit_log {
	struct audit_event *ev;
	size_t n, cap;
	unsigned bad_lines;
	char *warnings[AUDITLOG_WARN_KEEP];   /* "LABEL:LINE: what" */
	size_t n_warnings;
};

/* Parses a whole log held in memory; label names it in warnings.  Fails only
 * when memory runs out; bad lines become warnings. */
int auditlog_parse_buf(const char *buf, size_t len, const char *label, struct audit_log *out,
		       struct moat_error *e);
int auditlog_read_file(const char *path, struct audit_log *out, struct moat_error *e);
void auditlog_free(struct audit_log *l);

/* "2025-01-02T03:04:05.123456Z" (RFC 3339, UTC or with an offset, any number
 * of fraction digits) to microseconds since the epoch. */
int auditlog_parse_ts(const char *s, int64_t *us);
/* Formats microseconds since the epoch the way the audit log does. */
void auditlog_format_ts(int64_t us, char *buf, size_t cap);

/* "tcp" -> 6, "udp" -> 17, "icmp" -> 1, "icmpv6" -> 58, else 0. */
uint8_t auditlog_proto_num(const char *name);
const char *auditlog_proto_name(uint8_t proto);

#endif

/* The audit log reader: one cJSON parse per line, fields copied out. */
#include "tools/auditlog.h"
#include "common/moat.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <string.h>
#include <time.h>

uint8_t auditlog_proto_num(const char *name)
{
	if (!strcmp(name, "tcp"))
		return 6;
	if (!strcmp(name, "udp"))
		return 17;
	if (!strcmp(name, "icmp"))
		return 1;
	if (!strcmp(name, "icmpv6"))
		return 58;
	return 0;
}

const char *auditlog_proto_name(uint8_t proto)
{
	switch (proto) {
	case 6: return "tcp";
	case 17: return "udp";
	case 1: return "icmp";
	case 58: return "icmpv6";
	default: return NULL;
	}
}

static int digits(const char **s, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)**s))
			return -1;
		*v = *v * 10 + (**s - '0');
		(*s)++;
	}
	return 0;
}

int auditlog_parse_ts(const char *s, int64_t *us)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	int64_t frac = 0, scale = 100000;
	time_t t;

	if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
	    digits(&s, 2, &d) || (*s != 'T' && *s != 't' && *s != ' '))
		return -EINVAL;
	s++;
	if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) || *s++ != ':' ||
	    digits(&s, 2, &sec))
		return -EINVAL;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		while (isdigit((unsigned char)*s)) {
			frac += (*s - '0') * scale;
			scale /= 10;
			s++;
		}
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		sign = *s++ == '+' ? 1 : -1;
		if (digits(&s, 2, &oh) || *s++ != ':' || digits(&s, 2, &om))
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 ||
	    oh > 23 || om > 59)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	t -= sign * (oh * 3600 + om * 60);
	*us = (int64_t)t * 1000000 + frac;
	return 0;
}

void auditlog_format_ts(int64_t us, char *buf, size_t cap)
{
	time_t t = (time_t)(us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
	int64_t frac = us - (int64_t)t * 1000000;
	struct tm tm;

	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, cap, "-");
		return;
	}
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

__attribute__((format(printf, 4, 5)))
static int warn(struct audit_log *l, const char *label, unsigned line, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	l->bad_lines++;
	if (l->n_warnings >= AUDITLOG_WARN_KEEP)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (asprintf(&l->warnings[l->n_warnings], "%s:%u: %s", label, line, msg) < 0) {
		l->warnings[l->n_warnings] = NULL;
		return -ENOMEM;
	}
	l->n_warnings++;
	return 0;
}

static void event_free(struct audit_event *ev)
{
	free(ev->reason);
	free(ev->sandbox);
	free(ev->rule);
	free(ev->sni);
	free(ev->host);
	free(ev->qname);
	free(ev->qtype);
	free(ev->rcode);
	for (size_t i = 0; i < ev->n_answers; i++)
		free(ev->answers[i]);
	free(ev->answers);
}

void auditlog_free(struct audit_log *l)
{
	for (size_t i = 0; i < l->n; i++)
		event_free(&l->ev[i]);
	free(l->ev);
	for (size_t i = 0; i < l->n_warnings; i++)
		free(l->warnings[i]);
	memset(l, 0, sizeof(*l));
}

/* Field readers: 0 absent, 1 present, -1 wrong type (the line is rejected). */
static int get_str(const cJSON *o, const char *key, char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return -1;
	*out = strdup(v->valuestring);
	return *out ? 1 : -ENOMEM;
}

static int get_int(const cJSON *o, const char *key, int64_t min, int64_t max, int64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	double d;

	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v))
		return -1;
	d = v->valuedouble;
	if (!(d >= (double)min && d <= (double)max) || d != (double)(int64_t)d)
		return -1;
	*out = (int64_t)d;
	return 1;
}

static int get_addr(const cJSON *o, const char *key, int *family, uint8_t *addr)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return -1;
	if (inet_pton(AF_INET, v->valuestring, addr) == 1) {
		if (*family && *family != AF_INET)
			return -1;
		*family = AF_INET;
		return 1;
	}
	if (inet_pton(AF_INET6, v->valuestring, addr) == 1) {
		if (*family && *family != AF_INET6)
			return -1;
		*family = AF_INET6;
		return 1;
	}
	return -1;
}

/* Returns 0 and fills ev, 1 when the line is rejected (*why says why), -ENOMEM. */
static int parse_event(const cJSON *o, struct audit_event *ev, const char **why)
{
	const cJSON *v;
	int64_t n;
	int r;

	ev->sport = ev->dport = -1;
	ev->bytes_up = ev->bytes_down = ev->duration_ms = -1;
	if (!cJSON_IsObject(o))
		return *why = "not a JSON object", 1;
	v = cJSON_GetObjectItemCaseSensitive(o, "event");
	if (!cJSON_IsString(v))
		return *why = "missing field \"event\"", 1;
	if (strlen(v->valuestring) >= sizeof(ev->event))
		return *why = "unknown event", 1;
	strcpy(ev->event, v->valuestring);
	v = cJSON_GetObjectItemCaseSensitive(o, "ts");
	if (!cJSON_IsString(v))
		return *why = "missing field \"ts\"", 1;
	if (auditlog_parse_ts(v->valuestring, &ev->ts_us) < 0)
		return *why = "field \"ts\" is not an RFC 3339 time", 1;
	v = cJSON_GetObjectItemCaseSensitive(o, "verdict");
	if (v && !cJSON_IsNull(v)) {
		if (!cJSON_IsString(v) || (strcmp(v->valuestring, "allow") &&
					   strcmp(v->valuestring, "deny")))
			return *why = "field \"verdict\" is neither \"allow\" nor \"deny\"", 1;
		strcpy(ev->verdict, v->valuestring);
	}

#define STR(k, f) do { r = get_str(o, k, &ev->f); if (r < 0) goto bad_##f; } while (0)
	STR("reason", reason);
	STR("sandbox", sandbox);
	STR("rule", rule);
	STR("sni", sni);
	STR("host", host);
	STR("qname", qname);
	STR("qtype", qtype);
	STR("rcode", rcode);
#undef STR

	r = get_addr(o, "src", &ev->family, ev->src);
	if (r < 0)
		return *why = "field \"src\" is not an address of the family of \"dst\"", 1;
	ev->has_src = r > 0;
	r = get_addr(o, "dst", &ev->family, ev->dst);
	if (r < 0)
		return *why = "field \"dst\" is not an address of the family of \"src\"", 1;
	ev->has_dst = r > 0;
	if ((r = get_int(o, "sport", 0, 65535, &n)) < 0)
		return *why = "field \"sport\" is not a port", 1;
	if (r)
		ev->sport = (int)n;
	if ((r = get_int(o, "dport", 0, 65535, &n)) < 0)
		return *why = "field \"dport\" is not a port", 1;
	if (r)
		ev->dport = (int)n;
	v = cJSON_GetObjectItemCaseSensitive(o, "proto");
	if (cJSON_IsString(v))
		ev->proto = auditlog_proto_num(v->valuestring);
	else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 255)
		ev->proto = (uint8_t)v->valuedouble;
	else if (v && !cJSON_IsNull(v))
		return *why = "field \"proto\" is neither a name nor a number", 1;
	if (get_int(o, "bytes_up", 0, INT64_MAX / 2, &ev->bytes_up) < 0 ||
	    get_int(o, "bytes_down", 0, INT64_MAX / 2, &ev->bytes_down) < 0 ||
	    get_int(o, "duration_ms", 0, INT64_MAX / 2, &ev->duration_ms) < 0)
		return *why = "a byte count or duration is not a non-negative integer", 1;

	v = cJSON_GetObjectItemCaseSensitive(o, "answers");
	if (v && !cJSON_IsNull(v)) {
		const cJSON *a;
		int k = cJSON_GetArraySize(v);

		if (!cJSON_IsArray(v))
			return *why = "field \"answers\" is not an array", 1;
		ev->answers = calloc(k ? (size_t)k : 1, sizeof(char *));
		if (!ev->answers)
			return -ENOMEM;
		cJSON_ArrayForEach(a, v) {
			if (!cJSON_IsString(a))
				return *why = "field \"answers\" holds a non-string", 1;
			ev->answers[ev->n_answers] = strdup(a->valuestring);
			if (!ev->answers[ev->n_answers])
				return -ENOMEM;
			ev->n_answers++;
		}
	}
	return 0;

#define BAD(f) bad_##f: return r == -ENOMEM ? r : (*why = "field \"" #f "\" is not a string", 1)
	BAD(reason);
	BAD(sandbox);
	BAD(rule);
	BAD(sni);
	BAD(host);
	BAD(qname);
	BAD(qtype);
	BAD(rcode);
#undef BAD
}

static int push(struct audit_log *l, struct audit_event *ev)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct audit_event *n = realloc(l->ev, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		l->ev = n;
		l->cap = cap;
	}
	l->ev[l->n++] = *ev;
	return 0;
}

int auditlog_parse_buf(const char *buf, size_t len, const char *label, struct audit_log *out,
		       struct moat_error *e)
{
	size_t pos = 0;
	unsigned line = 0;

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len, n = end - pos;
		const char *s = buf + pos, *why = NULL, *ep;
		struct audit_event ev = { 0 };
		cJSON *o;
		int r;

		line++;
		pos = end + 1;
		if (n && s[n - 1] == '\r')
			n--;
		while (n && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		if (n == 0)
			continue;
		o = cJSON_ParseWithLengthOpts(s, n, &ep, false);
		if (!o) {
			ep = cJSON_GetErrorPtr();
			r = warn(out, label, line, "bad JSON near column %zu",
				 ep && ep >= s && ep <= s + n ? (size_t)(ep - s) + 1 : (size_t)1);
			if (r < 0)
				goto oom;
			continue;
		}
		while (ep < s + n && (*ep == ' ' || *ep == '\t'))
			ep++;
		if (ep != s + n) {
			cJSON_Delete(o);
			if (warn(out, label, line, "text after the JSON object at column %zu",
				 (size_t)(ep - s) + 1) < 0)
				goto oom;
			continue;
		}
		ev.line = line;
		r = parse_event(o, &ev, &why);
		cJSON_Delete(o);
		if (r == 0)
			r = push(out, &ev);
		if (r != 0)
			event_free(&ev);
		if (r < 0)
			goto oom;
		if (r == 1 && warn(out, label, line, "%s; line skipped", why) < 0)
			goto oom;
	}
	return 0;
oom:
	auditlog_free(out);
	return moat_error_errno(e, ENOMEM, "%s", label);
}

int auditlog_read_file(const char *path, struct audit_log *out, struct moat_error *e)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int r = moat_read_file(path, AUDITLOG_FILE_MAX, &buf, &len, e);

	if (r < 0)
		return r;
	return auditlog_parse_buf(buf, len, path, out, e);
}

/* moat audit: pcap files and the audit log joined into one row per flow, and
 * a profile suggested from the log. */
#include "common/moat.h"
#include "tools/auditlog.h"
#include "tools/flows.h"
#include "tools/learn.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <string.h>
#include <sys/socket.h>

const char audit_usage[] =
	"Usage: moat audit [--pcap FILE]... [--log AUDIT.jsonl] [--json]\n"
	"       moat audit --log AUDIT.jsonl --suggest-profile [--learn-wildcards]\n"
	"\n"
	"Prints one row per flow seen in the capture and/or the audit log: first time,\n"
	"protocol, source -> destination, packets/bytes each way, the TLS SNI, HTTP Host or\n"
	"DNS name seen, and the verdict and reason from the audit log ('dropped (L4)' for\n"
	"packets the kernel dropped, 'no answer' for flows that got no reply).\n"
	"\n"
	"  --pcap FILE        a classic pcap file (repeatable); a rotated set FILE, FILE.1,\n"
	"                     FILE.2, ... is read in that order\n"
	"  --log FILE         the audit log written with --audit-log\n"
	"  --json             one JSON object per flow and line\n"
	"  --suggest-profile  print the smallest profile that allows what the log shows\n"
	"                     as allowed (run once under insecure_allow_all to learn)\n"
	"  --learn-wildcards  group two or more sibling names as .parent\n"
	"\n"
	"Exit status: 0 success, 1 unreadable or malformed input (rows from the good part\n"
	"are still printed), 2 usage error.  docs/forensics.md has the details.\n";

static int usage_error(const char *msg)
{
	fprintf(stderr, "moat audit: %s (see 'moat audit --help')\n", msg);
	return 2;
}

static void endpoint(char *buf, size_t cap, int family, const uint8_t *a, uint16_t port,
		     bool ports)
{
	char s[INET6_ADDRSTRLEN] = "?";

	inet_ntop(family, a, s, sizeof(s));
	char p[8] = "*";

	/* port 0: not known (DNS events carry no source port) */
	if (port)
		snprintf(p, sizeof(p), "%u", port);
	if (!ports)
		snprintf(buf, cap, "%s", s);
	else if (family == AF_INET6)
		snprintf(buf, cap, "[%s]:%s", s, p);
	else
		snprintf(buf, cap, "%s:%s", s, p);
}

static bool has_ports(const struct flow *f)
{
	return (f->proto == 6 || f->proto == 17) && (f->aport || f->bport);
}

static const char *proto_text(uint8_t proto, char *buf, size_t cap)
{
	const char *n = auditlog_proto_name(proto);

	if (n)
		return n;
	snprintf(buf, cap, "%u", proto);
	return buf;
}

static const char *const kind_key[] = { NULL, "sni", "host", "qname" };

static void print_text(struct flow **rows, size_t n)
{
	printf("%-27s %-6s %-49s %-18s %-18s %-34s %-13s %s\n", "FIRST", "PROTO", "FLOW",
	       "UP pkts/bytes", "DOWN pkts/bytes", "NAME", "VERDICT", "REASON");
	for (size_t i = 0; i < n; i++) {
		const struct flow *f = rows[i];
		char ts[40], a[64], b[64], flow[136], up[32], down[32], name[300], pb[8];

		auditlog_format_ts(f->first_us, ts, sizeof(ts));
		endpoint(a, sizeof(a), f->family, f->a, f->aport, has_ports(f));
		endpoint(b, sizeof(b), f->family, f->b, f->bport, has_ports(f));
		snprintf(flow, sizeof(flow), "%s -> %s", a, b);
		snprintf(up, sizeof(up), "%llu/%llu", (unsigned long long)f->pkts[0],
			 (unsigned long long)f->bytes[0]);
		snprintf(down, sizeof(down), "%llu/%llu", (unsigned long long)f->pkts[1],
			 (unsigned long long)f->bytes[1]);
		if (f->name_kind)
			snprintf(name, sizeof(name), "%s=%s", kind_key[f->name_kind], f->name);
		else
			snprintf(name, sizeof(name), "-");
		printf("%-27s %-6s %-49s %-18s %-18s %-34s %-13s %s\n", ts,
		       proto_text(f->proto, pb, sizeof(pb)), flow, up, down, name,
		       flow_verdict(f), *flow_reason(f) ? flow_reason(f) : "-");
	}
}

static int print_json(struct flow **rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct flow *f = rows[i];
		char ts[40], a[INET6_ADDRSTRLEN] = "", b[INET6_ADDRSTRLEN] = "", pb[8];
		cJSON *o = cJSON_CreateObject();
		char *s;

		if (!o)
			return -ENOMEM;
		inet_ntop(f->family, f->a, a, sizeof(a));
		inet_ntop(f->family, f->b, b, sizeof(b));
		auditlog_format_ts(f->first_us, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "first", ts);
		auditlog_format_ts(f->last_us, ts, sizeof(ts));
		cJSON_AddStringToObject(o, "last", ts);
		cJSON_AddStringToObject(o, "proto", proto_text(f->proto, pb, sizeof(pb)));
		cJSON_AddStringToObject(o, "src", a);
		if (has_ports(f) && f->aport)
			cJSON_AddNumberToObject(o, "sport", f->aport);
		cJSON_AddStringToObject(o, "dst", b);
		if (has_ports(f))
			cJSON_AddNumberToObject(o, "dport", f->bport);
		cJSON_AddNumberToObject(o, "packets_up", (double)f->pkts[0]);
		cJSON_AddNumberToObject(o, "bytes_up", (double)f->bytes[0]);
		cJSON_AddNumberToObject(o, "packets_down", (double)f->pkts[1]);
		cJSON_AddNumberToObject(o, "bytes_down", (double)f->bytes[1]);
		if (f->name_kind)
			cJSON_AddStringToObject(o, kind_key[f->name_kind], f->name);
		cJSON_AddStringToObject(o, "verdict", flow_verdict(f));
		if (*flow_reason(f))
			cJSON_AddStringToObject(o, "reason", flow_reason(f));
		if (f->decision && f->decision->rule)
			cJSON_AddStringToObject(o, "rule", f->decision->rule);
		if (f->last_dns) {
			const struct audit_event *d = f->last_dns;

			if (d->qtype)
				cJSON_AddStringToObject(o, "qtype", d->qtype);
			if (d->rcode)
				cJSON_AddStringToObject(o, "rcode", d->rcode);
			if (d->n_answers)
				cJSON_AddItemToObject(o, "answers", cJSON_CreateStringArray(
					(const char *const *)d->answers, (int)d->n_answers));
		}
		cJSON_AddNumberToObject(o, "audit_events", f->n_events);
		if (f->l7_up >= 0)
			cJSON_AddNumberToObject(o, "l7_bytes_up", (double)f->l7_up);
		if (f->l7_down >= 0)
			cJSON_AddNumberToObject(o, "l7_bytes_down", (double)f->l7_down);
		if (f->duration_ms >= 0)
			cJSON_AddNumberToObject(o, "duration_ms", (double)f->duration_ms);
		s = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		if (!s)
			return -ENOMEM;
		puts(s);
		free(s);
	}
	return 0;
}

static void print_log_warnings(const struct audit_log *log, const char *path)
{
	for (size_t i = 0; i < log->n_warnings; i++)
		fprintf(stderr, "moat audit: warning: %s\n", log->warnings[i]);
	if (log->bad_lines > log->n_warnings)
		fprintf(stderr, "moat audit: warning: %s: %u more bad lines skipped\n", path,
			log->bad_lines - (unsigned)log->n_warnings);
}

static int read_pcaps(struct flow_table *t, char **pcaps, size_t n)
{
	int status = 0;

	for (size_t i = 0; i < n; i++) {
		struct moat_error e = { 0 };
		char **paths = NULL;
		size_t np = 0;

		if (flows_pcap_set(pcaps[i], &paths, &np, &e) < 0) {
			fprintf(stderr, "moat audit: %s\n", e.msg);
			status = 1;
			continue;
		}
		for (size_t k = 0; k < np; k++) {
			int r = flows_add_pcap_file(t, paths[k], &e);

			if (r == 1) {
				fprintf(stderr, "moat audit: warning: %s\n", e.msg);
			} else if (r < 0) {
				fprintf(stderr, "moat audit: %s\n", e.msg);
				status = 1;
			}
		}
		flows_free_paths(paths, np);
	}
	return status;
}

int audit_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pcap", required_argument, NULL, 'p' },
		{ "log", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "suggest-profile", no_argument, NULL, 's' },
		{ "learn-wildcards", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_free_ char **pcaps = calloc((size_t)argc + 1, sizeof(char *));
	size_t npcap = 0, nrows;
	const char *logpath = NULL;
	bool json = false, suggest = false, wild = false;
	struct audit_log log = { 0 };
	struct moat_error e = { 0 };
	struct flow_table *t = NULL;
	struct flow **rows;
	int c, status = 0;

	if (!pcaps)
		return 1;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': pcaps[npcap++] = optarg; break;
		case 'l':
			if (logpath)
				return usage_error("--log given twice");
			logpath = optarg;
			break;
		case 'j': json = true; break;
		case 's': suggest = true; break;
		case 'w': wild = true; break;
		case 'h': fputs(audit_usage, stdout); return 0;
		default: return usage_error("unknown option or missing argument");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument");
	if (wild && !suggest)
		return usage_error("--learn-wildcards goes with --suggest-profile");
	if (suggest) {
		_cleanup_free_ char *profile = NULL;

		if (!logpath)
			return usage_error("--suggest-profile needs --log");
		if (npcap || json)
			return usage_error("--suggest-profile reads only the log");
		if (auditlog_read_file(logpath, &log, &e) < 0) {
			fprintf(stderr, "moat audit: %s\n", e.msg);
			return 1;
		}
		print_log_warnings(&log, logpath);
		if (learn_profile_log(&log, wild, &profile, &e) < 0) {
			fprintf(stderr, "moat audit: %s\n", e.msg);
			status = 1;
		} else {
			puts(profile);
		}
		auditlog_free(&log);
		return status;
	}
	if (!npcap && !logpath)
		return usage_error("give --pcap FILE, --log FILE or both");

	t = flows_new();
	if (!t) {
		fprintf(stderr, "moat audit: out of memory\n");
		return 1;
	}
	status = read_pcaps(t, pcaps, npcap);
	if (logpath) {
		if (auditlog_read_file(logpath, &log, &e) < 0) {
			fprintf(stderr, "moat audit: %s\n", e.msg);
			status = 1;
		} else {
			print_log_warnings(&log, logpath);
			flows_join_audit(t, &log);
		}
	}
	rows = flows_sorted(t, &nrows);
	if (json) {
		if (print_json(rows, nrows) < 0) {
			fprintf(stderr, "moat audit: out of memory\n");
			status = 1;
		}
	} else {
		const struct flow_stats *st = flows_stats(t);

		print_text(rows, nrows);
		printf("%zu flows; %llu packets in %u files", nrows,
		       (unsigned long long)st->packets, st->files);
		if (st->not_ip + st->nd + st->malformed)
			printf(" (%llu not IP, %llu neighbour discovery, %llu malformed: not shown)",
			       (unsigned long long)st->not_ip, (unsigned long long)st->nd,
			       (unsigned long long)st->malformed);
		if (logpath)
			printf("; %zu audit events, %zu without packets", st->audit_events,
			       st->audit_unmatched);
		printf("\n");
	}
	flows_free(t);
	auditlog_free(&log);
	return status;
}

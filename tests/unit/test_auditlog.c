/* Audit-log reader: good lines, bad JSON and bad fields (reported with their
 * line number and skipped), and time stamps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "common/moat.h"
#include "tools/auditlog.h"

#define TS "\"ts\":\"2025-01-02T03:04:05.123456Z\""

struct line_case {
	const char *line;
	bool ok;
	const char *warning;            /* substring when rejected */
};

static const struct line_case line_cases[] = {
	{ "{" TS ",\"sandbox\":\"s1\",\"event\":\"tcp\",\"verdict\":\"allow\",\"reason\":\"allow-host\","
	  "\"src\":\"10.0.0.2\",\"sport\":40000,\"dst\":\"198.18.0.10\",\"dport\":443,"
	  "\"proto\":\"tcp\",\"sni\":\"api.example.com\",\"rule\":\"api.example.com\"}", true, NULL },
	{ "{" TS ",\"event\":\"dns\",\"verdict\":\"allow\",\"reason\":\"allow-host\",\"qname\":\"a.b\","
	  "\"qtype\":\"AAAA\",\"rcode\":\"NOERROR\",\"src\":\"2001:db8::2\",\"dst\":\"2001:2::53\","
	  "\"proto\":\"udp\",\"answers\":[\"2001:2::10\",\"2001:2::11\"]}", true, NULL },
	{ "{" TS ",\"event\":\"close\",\"verdict\":\"allow\",\"reason\":\"eof\",\"bytes_up\":10,"
	  "\"bytes_down\":2000,\"duration_ms\":35,\"src\":\"10.0.0.2\",\"dst\":\"198.18.0.10\"}",
	  true, NULL },
	{ "{" TS ",\"event\":\"sandbox\",\"state\":\"start\"}", true, NULL },
	{ "{" TS ",\"event\":\"drop\",\"verdict\":\"deny\",\"proto\":1,\"icmp_type\":8,"
	  "\"src\":\"10.0.0.2\",\"dst\":\"198.18.0.1\"}", true, NULL },
	{ "   ", true, NULL },                 /* blank: skipped silently */
	{ "{\"event\":\"tcp\"", false, "bad JSON near column" },
	{ "not json", false, "bad JSON" },
	{ "[1,2]", false, "not a JSON object" },
	{ "{" TS "}", false, "missing field \"event\"" },
	{ "{\"event\":\"tcp\"}", false, "missing field \"ts\"" },
	{ "{\"event\":\"tcp\",\"ts\":\"yesterday\"}", false, "not an RFC 3339 time" },
	{ "{" TS ",\"event\":\"tcp\",\"verdict\":\"maybe\"}", false, "\"verdict\"" },
	{ "{" TS ",\"event\":\"tcp\",\"dport\":70000}", false, "\"dport\" is not a port" },
	{ "{" TS ",\"event\":\"tcp\",\"dport\":\"443\"}", false, "\"dport\" is not a port" },
	{ "{" TS ",\"event\":\"tcp\",\"src\":\"10.0.0.2\",\"dst\":\"2001:2::1\"}", false,
	  "\"dst\"" },
	{ "{" TS ",\"event\":\"tcp\",\"src\":\"nowhere\"}", false, "\"src\"" },
	{ "{" TS ",\"event\":\"tcp\",\"sni\":5}", false, "\"sni\" is not a string" },
	{ "{" TS ",\"event\":\"dns\",\"answers\":\"1.2.3.4\"}", false, "not an array" },
	{ "{" TS ",\"event\":\"dns\",\"answers\":[1]}", false, "non-string" },
	{ "{" TS ",\"event\":\"close\",\"bytes_up\":-1}", false, "non-negative" },
	{ "{" TS ",\"event\":\"tcp\"} trailing", false, "text after the JSON object" },
};

static void test_lines(void **state)
{
	char *buf = NULL;
	size_t len = 0, good = 0, bad = 0;
	FILE *m = open_memstream(&buf, &len);
	struct audit_log log;
	struct moat_error e = { 0 };

	assert_non_null(m);
	for (size_t i = 0; i < ARRAY_SIZE(line_cases); i++) {
		fprintf(m, "%s\r\n", line_cases[i].line);
		if (line_cases[i].ok && strspn(line_cases[i].line, " ") != strlen(line_cases[i].line))
			good++;
		else if (!line_cases[i].ok)
			bad++;
	}
	fprintf(m, "{" TS ",\"event\":\"udp\",\"verdict\":\"allow\"}");    /* no final newline */
	good++;
	fclose(m);
	assert_int_equal(auditlog_parse_buf(buf, len, "audit.jsonl", &log, &e), 0);
	assert_int_equal(log.n, good);
	assert_int_equal(log.bad_lines, bad);
	for (size_t i = 0, w = 0; i < ARRAY_SIZE(line_cases); i++) {
		char want[32];

		if (line_cases[i].ok)
			continue;
		snprintf(want, sizeof(want), "audit.jsonl:%zu: ", i + 1);
		print_message("%s\n", log.warnings[w]);
		assert_true(w < log.n_warnings);
		assert_non_null(strstr(log.warnings[w], want));
		assert_non_null(strstr(log.warnings[w], line_cases[i].warning));
		w++;
	}

	/* the fields of the first two lines */
	const struct audit_event *t = &log.ev[0], *d = &log.ev[1];
	assert_int_equal(t->line, 1);
	assert_string_equal(t->event, "tcp");
	assert_string_equal(t->verdict, "allow");
	assert_string_equal(t->reason, "allow-host");
	assert_string_equal(t->sandbox, "s1");
	assert_string_equal(t->sni, "api.example.com");
	assert_int_equal(t->family, AF_INET);
	assert_true(t->has_src && t->has_dst);
	assert_int_equal(t->sport, 40000);
	assert_int_equal(t->dport, 443);
	assert_int_equal(t->proto, 6);
	assert_int_equal(t->bytes_up, -1);
	assert_null(t->host);
	assert_int_equal(d->family, AF_INET6);
	assert_int_equal(d->proto, 17);
	assert_int_equal(d->sport, -1);
	assert_int_equal(d->n_answers, 2);
	assert_string_equal(d->answers[1], "2001:2::11");
	assert_string_equal(d->qtype, "AAAA");
	assert_int_equal(log.ev[2].bytes_down, 2000);
	assert_int_equal(log.ev[2].duration_ms, 35);
	assert_int_equal(log.ev[4].proto, 1);
	assert_int_equal(log.ev[4].dport, -1);
	assert_string_equal(log.ev[log.n - 1].event, "udp");
	auditlog_free(&log);
	free(buf);
}

static void test_many_bad_lines(void **state)
{
	char buf[4096];
	size_t n = 0;
	struct audit_log log;
	struct moat_error e = { 0 };

	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{oops\n");
	assert_int_equal(auditlog_parse_buf(buf, n, "x", &log, &e), 0);
	assert_int_equal(log.n, 0);
	assert_int_equal(log.bad_lines, 50);
	assert_int_equal(log.n_warnings, AUDITLOG_WARN_KEEP);
	auditlog_free(&log);
}

struct ts_case {
	const char *s;
	int ok;
	int64_t us;
};

static const struct ts_case ts_cases[] = {
	{ "1970-01-01T00:00:00Z", 1, 0 },
	{ "2025-01-02T03:04:05.123456Z", 1, 1735787045123456LL },
	{ "2025-01-02T03:04:05.1Z", 1, 1735787045100000LL },
	{ "2025-01-02T04:04:05.123456+01:00", 1, 1735787045123456LL },
	{ "2025-01-02t03:04:05z", 1, 1735787045000000LL },
	{ "2025-01-02T03:04:05", 0, 0 },
	{ "2025-13-02T03:04:05Z", 0, 0 },
	{ "2025-01-02T03:04:05.Z", 0, 0 },
	{ "2025-01-02T03:04:05Zx", 0, 0 },
	{ "", 0, 0 },
};

static void test_ts(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(ts_cases); i++) {
		int64_t us = -1;
		int r = auditlog_parse_ts(ts_cases[i].s, &us);

		print_message("ts: %s\n", ts_cases[i].s);
		assert_int_equal(r == 0, ts_cases[i].ok);
		if (ts_cases[i].ok)
			assert_int_equal(us, ts_cases[i].us);
	}
	char buf[40];
	auditlog_format_ts(1735787045123456LL, buf, sizeof(buf));
	assert_string_equal(buf, "2025-01-02T03:04:05.123456Z");
}

static void test_file(void **state)
{
	char path[] = "/tmp/moat-auditlog-XXXXXX";
	int fd = mkstemp(path);
	struct audit_log log;
	struct moat_error e = { 0 };
	static const char line[] = "{" TS ",\"event\":\"tcp\",\"verdict\":\"deny\"}\n";

	assert_true(fd >= 0);
	assert_int_equal(write(fd, line, sizeof(line) - 1), sizeof(line) - 1);
	close(fd);
	assert_int_equal(auditlog_read_file(path, &log, &e), 0);
	assert_int_equal(log.n, 1);
	auditlog_free(&log);
	unlink(path);
	assert_true(auditlog_read_file(path, &log, &e) < 0);
	assert_non_null(strstr(e.msg, path));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_many_bad_lines),
		cmocka_unit_test(test_ts),
		cmocka_unit_test(test_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

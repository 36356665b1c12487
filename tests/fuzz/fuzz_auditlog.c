/* libFuzzer target for the audit-log reader, profile learning and the join:
 * whatever the log holds, a learned profile must load with the profile loader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/moat.h"
#include "profiles/profile.h"
#include "tools/auditlog.h"
#include "tools/flows.h"
#include "tools/learn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit_log log;
	struct moat_error e = { 0 };
	struct flow_table *t;

	if (auditlog_parse_buf((const char *)data, size, "fuzz", &log, &e) < 0)
		return 0;
	if (log.n_warnings > AUDITLOG_WARN_KEEP || log.bad_lines < log.n_warnings)
		abort();
	for (int w = 0; w < 2; w++) {
		char *json = NULL;
		struct policy *p = NULL;

		if (learn_profile_log(&log, w, &json, &e) < 0)
			continue;
		if (policy_load_buffer(json, strlen(json), "learned", &p, &e) < 0) {
			/* a learned profile that moat rejects */
			fprintf(stderr, "%s\n%s\n", e.msg, json);
			abort();
		}
		policy_free(p);
		free(json);
	}
	t = flows_new();
	if (t) {
		size_t n;

		flows_join_audit(t, &log);
		flows_sorted(t, &n);
		flows_free(t);
	}
	auditlog_free(&log);
	return 0;
}

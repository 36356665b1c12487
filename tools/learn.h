/* Profile learning: the smallest profile (ToolHive's format with moat's
 * extensions) that would have allowed what an audit log shows as allowed.
 * Rules in docs/forensics.md. */
#ifndef MOAT_LEARN_H
#define MOAT_LEARN_H

#include <stdbool.h>

struct moat_error;
struct audit_log;

/* Reads the log, learns, and returns the profile as pretty-printed JSON
 * (caller frees). */
int learn_profile(const char *audit_log_path, bool wildcards, char **json_out,
		  struct moat_error *e);
/* The same from a log already read. */
int learn_profile_log(const struct audit_log *log, bool wildcards, char **json_out,
		      struct moat_error *e);

/* Whether name (lower case, no trailing dot) is a TLD or on the built-in list
 * of public suffixes (co.uk, com.au, github.io, ...): never a wildcard parent. */
bool learn_is_public_suffix(const char *name);

#endif

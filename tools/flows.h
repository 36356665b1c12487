/* The flow table behind `moat audit`: packets from pcap files and events from
 * the audit log joined into one record per flow (5-tuple and time). */
#ifndef MOAT_FLOWS_H
#define MOAT_FLOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/auditlog.h"
#include "tools/pcapread.h"

struct moat_error;

enum flow_name_kind { FLOW_NAME_NONE, FLOW_NAME_SNI, FLOW_NAME_HOST, FLOW_NAME_QNAME };

#define FLOW_HEAD_MAX (16 * 1024)   /* client bytes kept per TCP flow to find a name */
#define FLOWS_MAX (4u * 1024 * 1024) /* flows kept; packets of further flows are counted only */

struct flow {
	struct flow *hnext;             /* hash chain (newest first) */
	int family;
	uint8_t proto;
	uint8_t a[16], b[16];           /* a: the side that opened the flow (the sandbox) */
	uint16_t aport, bport;
	int64_t first_us, last_us;
	uint64_t pkts[2], bytes[2];     /* [0] a -> b (up), [1] b -> a (down); frame bytes */
	bool ended;                     /* FIN or RST seen */
	enum flow_name_kind name_kind;
	char name[PKT_NAME_MAX + 1];    /* printable: odd bytes shown as '?' */
	/* first client bytes of a TCP stream, while a name may still be found in them */
	uint8_t *head;
	size_t head_len;
	uint32_t next_seq;
	bool head_started, head_done;
	/* from the audit log (events point into the log, which must outlive the table) */
	const struct audit_event *decision;  /* tcp/http/dns/udp/drop event that judged it */
	const struct audit_event *last_dns;  /* newest dns event, for qtype/rcode/answers */
	unsigned n_events;
	bool dropped, closed;
	int64_t l7_up, l7_down, duration_ms; /* from the close event; -1 when none */
};

struct flow_stats {
	uint64_t packets, not_ip, nd, malformed, cut, untracked;
	unsigned files;
	size_t audit_events, audit_unmatched;
};

struct flow_table;

struct flow_table *flows_new(void);
void flows_free(struct flow_table *t);

/* Adds every packet of a pcap file held in memory.  Returns 0; 1 when the file
 * ends inside a record (a killed writer): the complete records are used and e
 * holds the warning "LABEL: offset N: ..."; a negative errno when the file is
 * malformed ("LABEL: offset N: record length ... exceeds snaplen ...") -- the
 * records before the fault are kept. */
int flows_add_pcap_buf(struct flow_table *t, const uint8_t *buf, size_t len, const char *label,
		       struct moat_error *e);
/* The same for a file (mapped, not read). */
int flows_add_pcap_file(struct flow_table *t, const char *path, struct moat_error *e);

/* The files of a capture in time order: PATH itself (when it exists) and
 * PATH.1, PATH.2, ... as found in its directory (numeric order).  -ENOENT when
 * there are none.  Free with flows_free_paths(). */
int flows_pcap_set(const char *path, char ***paths, size_t *n, struct moat_error *e);
void flows_free_paths(char **paths, size_t n);

/* Joins the events of an audit log to the flows (creating flows for events no
 * packet matches, so a log alone gives one row per connection). */
void flows_join_audit(struct flow_table *t, const struct audit_log *log);

/* All flows sorted by first time (array owned by the table until the next call). */
struct flow **flows_sorted(struct flow_table *t, size_t *n);
const struct flow_stats *flows_stats(const struct flow_table *t);

/* What the report says of a flow: "allow", "deny", "dropped (L4)", "no answer", "-". */
const char *flow_verdict(const struct flow *f);
const char *flow_reason(const struct flow *f);

/* `moat audit` (tools/cmd_audit.c). */
int audit_main(int argc, char **argv);
extern const char audit_usage[];

#endif

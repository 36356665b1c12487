/* NFLOG reader: the kernel's copies of dropped packets (rules' "log group"),
 * turned into audit events by the caller. */
#ifndef MOAT_NFLOG_H
#define MOAT_NFLOG_H

#include <stddef.h>
#include <stdint.h>

struct moat_error;
struct nflog;

/* Binds the first free NFLOG group >= base (a group has one listener; the
 * kernel answers EPERM or EBUSY for a taken one, and the next is tried). */
int nflog_open(uint16_t base, struct nflog **out, uint16_t *group, struct moat_error *e);
int nflog_fd(const struct nflog *l);

struct nflog_pkt {
	const char *prefix;          /* the rule's log prefix, e.g. "moat drop port" */
	int family;                  /* AF_INET / AF_INET6 */
	uint8_t src[16], dst[16];
	uint8_t proto;               /* IPPROTO_* */
	uint16_t sport, dport;       /* 0 when not TCP/UDP */
	uint8_t icmp_type;
	size_t len;                  /* the packet's length per its IP header */
};

/* Reads what is queued (non-blocking) and calls fn per packet; malformed
 * payloads are skipped.  Returns the number of packets passed to fn. */
int nflog_dispatch(struct nflog *l, void (*fn)(void *arg, const struct nflog_pkt *p), void *arg);
void nflog_close(struct nflog *l);

/* Pure parser of a logged packet (network header first): PARSE_OK or
 * PARSE_INVALID.  prefix is left untouched. */
int nflog_parse_packet(const uint8_t *buf, size_t len, int family, struct nflog_pkt *p);

#endif

/* A classic pcap reader and packet decoder: pure functions over byte buffers,
 * for `moat audit` and the fuzzer.  Nothing here allocates or touches files.
 *
 *   struct pcap_file f;
 *   if (pcap_open_buf(&f, buf, len) != PARSE_OK) -> f.err
 *   while ((r = pcap_next_rec(&f, &rec)) == PARSE_OK) pkt_decode(f.linktype, ...)
 *   r == PARSE_NEED_MORE && !pcap_at_end(&f): the file ends inside a record (warning)
 *   r == PARSE_INVALID: f.err says what is wrong and at which byte offset */
#ifndef MOAT_PCAPREAD_H
#define MOAT_PCAPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tproxy/parse.h"

#define PCAP_GLOBAL_HDR_LEN 24
#define PCAP_REC_HDR_LEN 16
#define PCAP_SNAPLEN_MAX 262144        /* libpcap's MAXIMUM_SNAPLEN */

#define PCAP_LINKTYPE_ETHERNET 1
#define PCAP_LINKTYPE_RAW 101          /* raw IPv4/IPv6 */
#define PCAP_LINKTYPE_LINUX_SLL 113
#define PCAP_LINKTYPE_IPV4 228
#define PCAP_LINKTYPE_IPV6 229

struct pcap_file {
	const uint8_t *buf;
	size_t len;
	size_t off;                     /* next record header */
	bool swapped;                   /* written on a host of the other byte order */
	bool nsec;                      /* nanosecond time stamps (magic 0xa1b23c4d) */
	uint16_t version_major, version_minor;
	uint32_t snaplen;
	uint32_t linktype;
	char err[160];                  /* "offset N: what" when INVALID or truncated */
};

struct pcap_rec {
	uint64_t ts_us;                 /* microseconds since the epoch */
	uint32_t caplen, len;
	const uint8_t *data;            /* caplen bytes inside the file buffer */
	size_t offset;                  /* of the record header in the file */
};

/* Reads the 24-byte global header.  PARSE_NEED_MORE: fewer than 24 bytes;
 * PARSE_INVALID: bad magic, version or link type (f->err says which). */
enum parse_result pcap_open_buf(struct pcap_file *f, const uint8_t *buf, size_t len);

/* The next record.  PARSE_OK: *rec filled.  PARSE_NEED_MORE: no further whole
 * record: the clean end of the file when pcap_at_end(), else the file stops
 * inside a record (f->err tells where; the records before it are good).
 * PARSE_INVALID: a record header that no writer produces (caplen > snaplen,
 * caplen > len); f->err holds the offset. */
enum parse_result pcap_next_rec(struct pcap_file *f, struct pcap_rec *rec);
bool pcap_at_end(const struct pcap_file *f);

/* ---- packets ---- */

#define PKT_PROTO_ICMP 1
#define PKT_PROTO_TCP 6
#define PKT_PROTO_UDP 17
#define PKT_PROTO_ICMPV6 58

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

struct pkt {
	int family;                     /* AF_INET, AF_INET6, or 0: not IP (ARP, ...) */
	uint8_t src[16], dst[16];
	uint8_t proto;                  /* L4 protocol (after IPv6 extension headers) */
	bool fragment;                  /* a non-first fragment: no L4 header */
	uint16_t sport, dport;          /* TCP/UDP */
	uint8_t icmp_type, icmp_code;
	uint8_t tcp_flags;
	uint32_t tcp_seq;
	uint32_t ip_len;                /* IP packet length on the wire (header + payload) */
	const uint8_t *payload;         /* L4 payload as captured */
	size_t payload_len;             /* captured bytes of it */
	size_t payload_wire;            /* its length on the wire */
	const char *why;                /* static reason when not OK */
};

/* Decodes one captured frame of the given link type.  PARSE_OK: decoded (family 0
 * for frames that are not IP).  PARSE_NEED_MORE: the capture cut a header short
 * (snaplen); what was decoded so far is kept.  PARSE_INVALID: malformed headers
 * (IPv4 IHL < 5, TCP data offset < 5, lengths that contradict each other). */
enum parse_result pkt_decode(uint32_t linktype, const uint8_t *data, size_t caplen, struct pkt *p);

/* ---- names in payloads ---- */

#define PKT_NAME_MAX 253

/* The Host header of an HTTP/1.x request at the start of buf (request line, then
 * headers; at most the first 8 KiB are scanned).  PARSE_OK: *host and *hlen point at
 * the value inside buf, spaces trimmed.  PARSE_NEED_MORE: a request whose header
 * block has not ended yet.  PARSE_INVALID: not an HTTP request or no Host. */
enum parse_result http_find_host(const uint8_t *buf, size_t len, const char **host, size_t *hlen);

/* The first question of a DNS message (UDP payload, no TCP length prefix):
 * the name in dotted lower case (bytes outside [a-z0-9-_] shown as '?') into
 * out (cap >= PKT_NAME_MAX + 1), and its type.  Compression pointers must
 * point strictly backwards, at most 16 of them: loops are INVALID.
 * PARSE_NEED_MORE when the message is cut short. */
enum parse_result dns_question_name(const uint8_t *msg, size_t len, char *out, size_t cap,
				    uint16_t *qtype, bool *is_response);

#endif

/* Classic pcap files and the packets in them, decoded from a byte buffer. */
#include "tools/pcapread.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* ---- file format ----
 *
 * global header (24 bytes, in the writer's byte order):
 *   u32 magic      0xa1b2c3d4 (µs) or 0xa1b23c4d (ns); byte-swapped when the
 *                  writer's order differs from ours
 *   u16 version_major (2), u16 version_minor (4)
 *   i32 thiszone, u32 sigfigs (both 0 in practice, ignored)
 *   u32 snaplen
 *   u32 linktype   (upper bits: FCS info, masked off)
 * record header (16 bytes):
 *   u32 ts_sec, u32 ts_frac (µs or ns), u32 caplen, u32 len
 *   caplen bytes of packet data follow. */

static uint32_t rd32(const struct pcap_file *f, const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return f->swapped ? __builtin_bswap32(v) : v;
}

static uint16_t rd16(const struct pcap_file *f, const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return f->swapped ? __builtin_bswap16(v) : v;
}

enum parse_result pcap_open_buf(struct pcap_file *f, const uint8_t *buf, size_t len)
{
	uint32_t magic;

	memset(f, 0, sizeof(*f));
	f->buf = buf;
	f->len = len;
	if (len < PCAP_GLOBAL_HDR_LEN) {
		snprintf(f->err, sizeof(f->err), "offset 0: file header truncated (%zu of %d bytes)",
			 len, PCAP_GLOBAL_HDR_LEN);
		return PARSE_NEED_MORE;
	}
	memcpy(&magic, buf, 4);
	switch (magic) {
	case 0xa1b2c3d4: break;
	case 0xa1b23c4d: f->nsec = true; break;
	case 0xd4c3b2a1: f->swapped = true; break;
	case 0x4d3cb2a1: f->swapped = f->nsec = true; break;
	default:
		if (magic == 0x0a0d0d0a)
			snprintf(f->err, sizeof(f->err),
				 "offset 0: pcapng file; only classic pcap is read "
				 "(convert: editcap -F pcap IN OUT)");
		else
			snprintf(f->err, sizeof(f->err), "offset 0: bad magic 0x%08x: not a pcap file",
				 magic);
		return PARSE_INVALID;
	}
	f->version_major = rd16(f, buf + 4);
	f->version_minor = rd16(f, buf + 6);
	f->snaplen = rd32(f, buf + 16);
	f->linktype = rd32(f, buf + 20) & 0x0fffffff;
	if (f->version_major != 2) {
		snprintf(f->err, sizeof(f->err), "offset 4: unsupported pcap version %u.%u",
			 f->version_major, f->version_minor);
		return PARSE_INVALID;
	}
	f->off = PCAP_GLOBAL_HDR_LEN;
	return PARSE_OK;
}

bool pcap_at_end(const struct pcap_file *f)
{
	return f->off >= f->len;
}

enum parse_result pcap_next_rec(struct pcap_file *f, struct pcap_rec *rec)
{
	size_t left = f->len - f->off;
	const uint8_t *h = f->buf + f->off;
	uint32_t sec, frac, limit;

	if (left == 0)
		return PARSE_NEED_MORE;
	if (left < PCAP_REC_HDR_LEN) {
		snprintf(f->err, sizeof(f->err),
			 "offset %zu: file ends inside a record header (%zu of %d bytes)", f->off,
			 left, PCAP_REC_HDR_LEN);
		return PARSE_NEED_MORE;
	}
	sec = rd32(f, h);
	frac = rd32(f, h + 4);
	rec->caplen = rd32(f, h + 8);
	rec->len = rd32(f, h + 12);
	rec->offset = f->off;
	/* A snaplen of 0 or beyond libpcap's maximum is what some writers put; the
	 * maximum still bounds a record. */
	limit = f->snaplen && f->snaplen <= PCAP_SNAPLEN_MAX ? f->snaplen : PCAP_SNAPLEN_MAX;
	if (rec->caplen > limit) {
		snprintf(f->err, sizeof(f->err), "offset %zu: record length %u exceeds snaplen %u",
			 f->off, rec->caplen, limit);
		return PARSE_INVALID;
	}
	if (rec->caplen > rec->len) {
		snprintf(f->err, sizeof(f->err),
			 "offset %zu: captured length %u exceeds packet length %u", f->off,
			 rec->caplen, rec->len);
		return PARSE_INVALID;
	}
	if (f->nsec ? frac >= 1000000000u : frac >= 1000000u) {
		snprintf(f->err, sizeof(f->err), "offset %zu: time stamp fraction %u out of range",
			 f->off + 4, frac);
		return PARSE_INVALID;
	}
	if (left - PCAP_REC_HDR_LEN < rec->caplen) {
		snprintf(f->err, sizeof(f->err),
			 "offset %zu: file ends inside a record (%zu of %u data bytes)", f->off,
			 left - PCAP_REC_HDR_LEN, rec->caplen);
		return PARSE_NEED_MORE;
	}
	rec->ts_us = (uint64_t)sec * 1000000u + (f->nsec ? frac / 1000u : frac);
	rec->data = h + PCAP_REC_HDR_LEN;
	f->off += PCAP_REC_HDR_LEN + rec->caplen;
	return PARSE_OK;
}

/* ---- packets ---- */

static inline uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static enum parse_result fail(struct pkt *p, enum parse_result r, const char *why)
{
	p->why = why;
	return r;
}

/* The L4 header at buf: cap bytes captured, wire bytes on the wire (cap <= wire). */
static enum parse_result decode_l4(struct pkt *p, const uint8_t *buf, size_t cap, size_t wire)
{
	size_t hl;

	switch (p->proto) {
	case PKT_PROTO_TCP:
		if (wire < 20)
			return fail(p, PARSE_INVALID, "TCP header longer than the IP payload");
		if (cap < 20)
			return fail(p, PARSE_NEED_MORE, "TCP header cut by snaplen");
		hl = (size_t)(buf[12] >> 4) * 4;
		if (hl < 20)
			return fail(p, PARSE_INVALID, "TCP data offset < 5");
		if (hl > wire)
			return fail(p, PARSE_INVALID, "TCP data offset beyond the IP payload");
		p->sport = be16(buf);
		p->dport = be16(buf + 2);
		p->tcp_seq = be32(buf + 4);
		p->tcp_flags = buf[13];
		if (hl > cap)
			return fail(p, PARSE_NEED_MORE, "TCP options cut by snaplen");
		break;
	case PKT_PROTO_UDP:
		if (wire < 8)
			return fail(p, PARSE_INVALID, "UDP header longer than the IP payload");
		if (cap < 8)
			return fail(p, PARSE_NEED_MORE, "UDP header cut by snaplen");
		hl = 8;
		p->sport = be16(buf);
		p->dport = be16(buf + 2);
		/* The UDP length bounds the payload when it is sane. */
		if (be16(buf + 4) >= 8 && be16(buf + 4) < wire)
			wire = be16(buf + 4);
		if (cap > wire)
			cap = wire;
		break;
	case PKT_PROTO_ICMP:
	case PKT_PROTO_ICMPV6:
		if (wire < 4)
			return fail(p, PARSE_INVALID, "ICMP header longer than the IP payload");
		if (cap < 4)
			return fail(p, PARSE_NEED_MORE, "ICMP header cut by snaplen");
		p->icmp_type = buf[0];
		p->icmp_code = buf[1];
		hl = 4;
		break;
	default:
		hl = 0;
		break;
	}
	p->payload = buf + hl;
	p->payload_len = cap - hl;
	p->payload_wire = wire - hl;
	return PARSE_OK;
}

static enum parse_result decode_ipv4(struct pkt *p, const uint8_t *buf, size_t cap)
{
	size_t ihl, total;
	uint16_t frag;

	if (cap < 20)
		return fail(p, PARSE_NEED_MORE, "IPv4 header cut by snaplen");
	if (buf[0] >> 4 != 4)
		return fail(p, PARSE_INVALID, "IPv4 version field is not 4");
	ihl = (size_t)(buf[0] & 15) * 4;
	if (ihl < 20)
		return fail(p, PARSE_INVALID, "IPv4 header length (IHL) < 5");
	total = be16(buf + 2);
	if (total < ihl)
		return fail(p, PARSE_INVALID, "IPv4 total length shorter than its header");
	p->family = AF_INET;
	memcpy(p->src, buf + 12, 4);
	memcpy(p->dst, buf + 16, 4);
	p->proto = buf[9];
	p->ip_len = (uint32_t)total;
	if (ihl > cap)
		return fail(p, PARSE_NEED_MORE, "IPv4 options cut by snaplen");
	frag = be16(buf + 6);
	if (frag & 0x1fff) {
		p->fragment = true;
		p->payload = buf + ihl;
		p->payload_len = (cap < total ? cap : total) - ihl;
		p->payload_wire = total - ihl;
		return PARSE_OK;
	}
	if (cap > total)
		cap = total;       /* Ethernet padding */
	return decode_l4(p, buf + ihl, cap - ihl, total - ihl);
}

static enum parse_result decode_ipv6(struct pkt *p, const uint8_t *buf, size_t cap)
{
	size_t off = 40, wire;
	uint8_t nh;

	if (cap < 40)
		return fail(p, PARSE_NEED_MORE, "IPv6 header cut by snaplen");
	if (buf[0] >> 4 != 6)
		return fail(p, PARSE_INVALID, "IPv6 version field is not 6");
	p->family = AF_INET6;
	memcpy(p->src, buf + 8, 16);
	memcpy(p->dst, buf + 24, 16);
	wire = 40 + (size_t)be16(buf + 4);
	p->ip_len = (uint32_t)wire;
	if (cap > wire)
		cap = wire;
	nh = buf[6];
	/* Extension headers, a bounded number of them. */
	for (int i = 0; i < 8; i++) {
		size_t hl;

		if (nh != 0 && nh != 43 && nh != 60 && nh != 44 && nh != 51)
			break;
		if (off + 8 > wire)
			return fail(p, PARSE_INVALID, "IPv6 extension header beyond the payload");
		if (off + 8 > cap)
			return fail(p, PARSE_NEED_MORE, "IPv6 extension header cut by snaplen");
		if (nh == 44) {
			hl = 8;
			if (be16(buf + off + 2) & 0xfff8)
				p->fragment = true;
		} else if (nh == 51) {
			hl = ((size_t)buf[off + 1] + 2) * 4;
		} else {
			hl = ((size_t)buf[off + 1] + 1) * 8;
		}
		nh = buf[off];
		if (off + hl > wire)
			return fail(p, PARSE_INVALID, "IPv6 extension header beyond the payload");
		off += hl;
		if (p->fragment)
			break;
	}
	p->proto = nh;
	if (off > cap)
		return fail(p, PARSE_NEED_MORE, "IPv6 extension header cut by snaplen");
	if (p->fragment) {
		p->payload = buf + off;
		p->payload_len = cap - off;
		p->payload_wire = wire - off;
		return PARSE_OK;
	}
	return decode_l4(p, buf + off, cap - off, wire - off);
}

static enum parse_result decode_ip(struct pkt *p, const uint8_t *buf, size_t cap, unsigned ver)
{
	if (cap < 1)
		return fail(p, PARSE_NEED_MORE, "empty IP packet");
	if (ver == 0)
		ver = buf[0] >> 4;
	if (ver == 4)
		return decode_ipv4(p, buf, cap);
	if (ver == 6)
		return decode_ipv6(p, buf, cap);
	return fail(p, PARSE_INVALID, "IP version is neither 4 nor 6");
}

static enum parse_result decode_ethertype(struct pkt *p, uint16_t type, const uint8_t *buf,
					  size_t cap)
{
	if (type == 0x0800)
		return decode_ip(p, buf, cap, 4);
	if (type == 0x86dd)
		return decode_ip(p, buf, cap, 6);
	return PARSE_OK;        /* ARP and the rest: not IP */
}

/* Ethernet II: dst[6] src[6] type[2], with up to two 802.1Q/802.1ad tags
 * (type 0x8100/0x88a8, tci[2], type[2]) before the payload. */
static enum parse_result decode_ether(struct pkt *p, const uint8_t *buf, size_t cap)
{
	size_t off = 12;
	uint16_t type;

	if (cap < 14)
		return fail(p, PARSE_NEED_MORE, "Ethernet header cut by snaplen");
	type = be16(buf + off);
	off += 2;
	for (int i = 0; i < 2 && (type == 0x8100 || type == 0x88a8); i++) {
		if (off + 4 > cap)
			return fail(p, PARSE_NEED_MORE, "VLAN tag cut by snaplen");
		type = be16(buf + off + 2);
		off += 4;
	}
	return decode_ethertype(p, type, buf + off, cap - off);
}

/* Linux cooked capture v1: packet type[2] arphrd[2] addr len[2] addr[8] protocol[2]. */
static enum parse_result decode_sll(struct pkt *p, const uint8_t *buf, size_t cap)
{
	if (cap < 16)
		return fail(p, PARSE_NEED_MORE, "Linux cooked header cut by snaplen");
	return decode_ethertype(p, be16(buf + 14), buf + 16, cap - 16);
}

enum parse_result pkt_decode(uint32_t linktype, const uint8_t *data, size_t caplen, struct pkt *p)
{
	memset(p, 0, sizeof(*p));
	switch (linktype) {
	case PCAP_LINKTYPE_ETHERNET: return decode_ether(p, data, caplen);
	case PCAP_LINKTYPE_RAW: return decode_ip(p, data, caplen, 0);
	case PCAP_LINKTYPE_IPV4: return decode_ip(p, data, caplen, 4);
	case PCAP_LINKTYPE_IPV6: return decode_ip(p, data, caplen, 6);
	case PCAP_LINKTYPE_LINUX_SLL: return decode_sll(p, data, caplen);
	default: return fail(p, PARSE_INVALID, "unsupported link type");
	}
}

/* ---- HTTP Host ----
 *
 * request-line = method SP request-target SP HTTP-version CRLF
 * then header fields "name: value" CRLF, ended by an empty line.  A bare LF is
 * accepted as a line end here: this is a report, not the enforcement parser. */

#define HTTP_SCAN_MAX 8192

static bool is_tchar(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

enum parse_result http_find_host(const uint8_t *buf, size_t len, const char **host, size_t *hlen)
{
	size_t n = len < HTTP_SCAN_MAX ? len : HTTP_SCAN_MAX, i = 0, line;

	/* method: upper-case token then one space */
	while (i < n && buf[i] >= 'A' && buf[i] <= 'Z' && i < 16)
		i++;
	if (i == n)
		return i < 16 ? PARSE_NEED_MORE : PARSE_INVALID;
	if (i == 0 || buf[i] != ' ')
		return PARSE_INVALID;
	/* the rest of the request line must say HTTP/ before its end */
	line = i;
	while (i < n && buf[i] != '\n')
		i++;
	if (i == n)
		return len > n ? PARSE_INVALID : PARSE_NEED_MORE;
	if (!memmem(buf + line, i - line, " HTTP/", 6))
		return PARSE_INVALID;
	i++;
	for (;;) {
		size_t start = i, colon, end;

		while (i < n && buf[i] != '\n')
			i++;
		if (i == n)
			return len > n ? PARSE_INVALID : PARSE_NEED_MORE;
		end = i;
		if (end > start && buf[end - 1] == '\r')
			end--;
		i++;
		if (end == start)
			return PARSE_INVALID;   /* end of headers and no Host */
		colon = start;
		while (colon < end && is_tchar(buf[colon]))
			colon++;
		if (colon == end || buf[colon] != ':' || colon - start != 4 ||
		    strncasecmp((const char *)buf + start, "host", 4) != 0)
			continue;
		colon++;
		while (colon < end && (buf[colon] == ' ' || buf[colon] == '\t'))
			colon++;
		while (end > colon && (buf[end - 1] == ' ' || buf[end - 1] == '\t'))
			end--;
		if (end == colon)
			return PARSE_INVALID;
		*host = (const char *)buf + colon;
		*hlen = end - colon;
		return PARSE_OK;
	}
}

/* ---- DNS question ----
 *
 * header: id[2] flags[2] qdcount[2] ancount[2] nscount[2] arcount[2]
 * question: name (labels: len[1] bytes[len], ended by 0; or a pointer
 *           0b11xxxxxx xxxxxxxx to an earlier offset), qtype[2], qclass[2] */

enum parse_result dns_question_name(const uint8_t *msg, size_t len, char *out, size_t cap,
				    uint16_t *qtype, bool *is_response)
{
	size_t pos = 12, o = 0, after = 0, wire = 0;
	int jumps = 0;

	if (cap < PKT_NAME_MAX + 1)
		return PARSE_INVALID;
	out[0] = '\0';
	if (len < 12)
		return PARSE_NEED_MORE;
	if (is_response)
		*is_response = msg[2] & 0x80;
	if (be16(msg + 4) == 0)
		return PARSE_INVALID;
	for (;;) {
		uint8_t l;

		if (pos >= len)
			return PARSE_NEED_MORE;
		l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			size_t target;

			if (pos + 2 > len)
				return PARSE_NEED_MORE;
			target = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			/* strictly backwards, and into the message proper: no loops */
			if (target >= pos || target < 12 || ++jumps > 16)
				return PARSE_INVALID;
			if (!after)
				after = pos + 2;
			pos = target;
			continue;
		}
		if (l & 0xc0)
			return PARSE_INVALID;   /* 0x40/0x80: obsolete label types */
		pos++;
		if (l == 0)
			break;
		wire += (size_t)l + 1;
		if (wire > 254)
			return PARSE_INVALID;
		if (pos + l > len)
			return PARSE_NEED_MORE;
		if (o)
			out[o++] = '.';
		for (size_t k = 0; k < l; k++) {
			uint8_t c = msg[pos + k];

			if (c >= 'A' && c <= 'Z')
				c = (uint8_t)(c - 'A' + 'a');
			else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
				   c == '_'))
				c = '?';
			out[o++] = (char)c;
		}
		pos += l;
	}
	out[o] = '\0';
	if (!after)
		after = pos;
	if (after + 4 > len)
		return PARSE_NEED_MORE;
	if (qtype)
		*qtype = be16(msg + after);
	return PARSE_OK;
}

/* NFLOG over nfnetlink_log, with libmnl. */
#include <arpa/inet.h>
#include <string.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <linux/netfilter.h>
#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include "common/moat.h"
#include "enforcer/nflog.h"
#include "tproxy/parse.h"

#define NFLOG_COPY      256     /* bytes of each packet: headers are enough */
/* Groups tried from base: one per sandbox of the enforcement netns, so this bounds how
 * many run side by side (the default address pools hold 16384). */
#define NFLOG_GROUPS    16384
#define NFLOG_RECV_BUF  (64 * 1024)
#define NFLOG_EXT_MAX   8       /* IPv6 extension headers walked before giving up */

struct nflog {
	struct mnl_socket *nl;
	uint16_t group;
	uint32_t seq;
	char *buf;
};

/*
 * IPv4: version/IHL(1) tos(1) total length(2) id(2) flags+fragment offset(2)
 *       ttl(1) protocol(1) checksum(2) src(4) dst(4) options(IHL*4 - 20)
 * IPv6: version/class/flow(4) payload length(2) next header(1) hop limit(1)
 *       src(16) dst(16); extension headers: next(1) length(1) ...
 *       hop-by-hop(0), routing(43), destination options(60): (len + 1) * 8
 *       fragment(44): 8 bytes; AH(51): (len + 2) * 4
 * TCP/UDP: source port(2) destination port(2) ...  ICMP/ICMPv6: type(1) code(1) ...
 */
static void parse_l4(const uint8_t *l4, size_t len, uint8_t proto, struct nflog_pkt *p)
{
	p->proto = proto;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (len >= 4) {
			p->sport = (uint16_t)(l4[0] << 8 | l4[1]);
			p->dport = (uint16_t)(l4[2] << 8 | l4[3]);
		}
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (len >= 1)
			p->icmp_type = l4[0];
		break;
	default:
		break;
	}
}

static int parse_v4(const uint8_t *buf, size_t len, struct nflog_pkt *p)
{
	if (len < 20 || buf[0] >> 4 != 4)
		return PARSE_INVALID;
	size_t ihl = (size_t)(buf[0] & 0x0f) * 4;
	size_t total = (size_t)buf[2] << 8 | buf[3];
	if (ihl < 20 || ihl > len || total < ihl)
		return PARSE_INVALID;
	p->family = AF_INET;
	p->len = total;
	memcpy(p->src, buf + 12, 4);
	memcpy(p->dst, buf + 16, 4);
	size_t end = total < len ? total : len;   /* the copy may be shorter than the packet */
	bool later_fragment = ((buf[6] & 0x1f) << 8 | buf[7]) != 0;
	if (later_fragment)
		p->proto = buf[9];              /* no transport header in this fragment */
	else
		parse_l4(buf + ihl, end - ihl, buf[9], p);
	return PARSE_OK;
}

static int parse_v6(const uint8_t *buf, size_t len, struct nflog_pkt *p)
{
	if (len < 40 || buf[0] >> 4 != 6)
		return PARSE_INVALID;
	size_t payload = (size_t)buf[4] << 8 | buf[5];
	p->family = AF_INET6;
	p->len = 40 + payload;
	memcpy(p->src, buf + 8, 16);
	memcpy(p->dst, buf + 24, 16);
	size_t end = 40 + payload < len ? 40 + payload : len;
	size_t off = 40;
	uint8_t next = buf[6];
	for (int i = 0; i < NFLOG_EXT_MAX; i++) {
		size_t hlen;
		switch (next) {
		case 0:
		case 43:
		case 60:
			if (off + 2 > end)
				goto stop;
			hlen = ((size_t)buf[off + 1] + 1) * 8;
			break;
		case 44:
			if (off + 8 > end)
				goto stop;
			if (((buf[off + 2] << 8 | buf[off + 3]) & 0xfff8) != 0) {
				p->proto = buf[off];    /* later fragment: no transport header */
				return PARSE_OK;
			}
			hlen = 8;
			break;
		case 51:
			if (off + 2 > end)
				goto stop;
			hlen = ((size_t)buf[off + 1] + 2) * 4;
			break;
		default:
			parse_l4(buf + off, end - off, next, p);
			return PARSE_OK;
		}
		if (hlen > end - off)
			goto stop;
		next = buf[off];
		off += hlen;
	}
stop:
	/* Truncated or too many extension headers: addresses only. */
	p->proto = next;
	return PARSE_OK;
}

int nflog_parse_packet(const uint8_t *buf, size_t len, int family, struct nflog_pkt *p)
{
	const char *prefix = p->prefix;

	memset(p, 0, sizeof(*p));
	p->prefix = prefix;
	if (!buf)
		return PARSE_INVALID;
	if (family == AF_INET)
		return parse_v4(buf, len, p);
	if (family == AF_INET6)
		return parse_v6(buf, len, p);
	return PARSE_INVALID;
}

/* One config message with an ack; returns 0 or -errno from the kernel. */
static int nflog_config(struct nflog *l, uint16_t group, uint16_t attr, const void *data,
			size_t len)
{
	char buf[8192];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	uint32_t seq = ++l->seq;

	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(group);
	mnl_attr_put(nlh, attr, len, data);
	if (mnl_socket_sendto(l->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t r = mnl_socket_recvfrom(l->nl, buf, sizeof(buf));
		if (r < 0)
			return errno == EINTR ? -EINTR : -errno;
		int ret = mnl_cb_run(buf, (size_t)r, seq, mnl_socket_get_portid(l->nl), NULL, NULL);
		if (ret < 0)
			return -errno;
		if (ret == MNL_CB_STOP)
			return 0;
	}
}

int nflog_open(uint16_t base, struct nflog **out, uint16_t *group, struct moat_error *e)
{
	struct nflog *l = calloc(1, sizeof(*l));
	int ret;

	if (!l || !(l->buf = malloc(NFLOG_RECV_BUF))) {
		free(l);
		return moat_error_errno(e, ENOMEM, "nflog");
	}
	l->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!l->nl) {
		ret = moat_error_errno(e, errno, "nflog: netlink socket");
		goto fail;
	}
	if (mnl_socket_bind(l->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = moat_error_errno(e, errno, "nflog: netlink bind");
		goto fail;
	}
	/* Config replies are waited for; the socket is non-blocking only for
	 * dispatch, so a blocking wait is emulated by switching the flag. */
	int fd = mnl_socket_get_fd(l->nl);
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	ret = -EBUSY;
	for (uint32_t g = base; g < (uint32_t)base + NFLOG_GROUPS && g <= 0xffff; g++) {
		struct nfulnl_msg_config_cmd cmd = { .command = NFULNL_CFG_CMD_BIND };
		ret = nflog_config(l, (uint16_t)g, NFULA_CFG_CMD, &cmd, sizeof(cmd));
		/* Another listener's group: EPERM (EBUSY on older kernels). */
		if (ret == -EBUSY || ret == -EPERM)
			continue;
		if (ret < 0)
			break;
		l->group = (uint16_t)g;
		break;
	}
	if (ret < 0) {
		ret = moat_error_errno(e, -ret, "nflog: binding a group from %u", base);
		goto fail;
	}
	struct nfulnl_msg_config_mode mode = { .copy_range = htonl(NFLOG_COPY),
					       .copy_mode = NFULNL_COPY_PACKET };
	uint32_t qthresh = htonl(1);    /* deliver each packet at once */
	ret = nflog_config(l, l->group, NFULA_CFG_MODE, &mode, sizeof(mode));
	if (ret == 0)
		ret = nflog_config(l, l->group, NFULA_CFG_QTHRESH, &qthresh, sizeof(qthresh));
	if (ret < 0) {
		ret = moat_error_errno(e, -ret, "nflog: configuring group %u", l->group);
		goto fail;
	}
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	*group = l->group;
	*out = l;
	return 0;
fail:
	nflog_close(l);
	return ret;
}

int nflog_fd(const struct nflog *l)
{
	return mnl_socket_get_fd(l->nl);
}

struct nflog_attrs {
	const struct nlattr *prefix, *payload;
};

static int nflog_attr_cb(const struct nlattr *a, void *data)
{
	struct nflog_attrs *at = data;

	switch (mnl_attr_get_type(a)) {
	case NFULA_PREFIX:
		if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			at->prefix = a;
		break;
	case NFULA_PAYLOAD:
		at->payload = a;
		break;
	default:
		break;
	}
	return MNL_CB_OK;
}

int nflog_dispatch(struct nflog *l, void (*fn)(void *arg, const struct nflog_pkt *p), void *arg)
{
	int count = 0;

	for (;;) {
		ssize_t r = recv(nflog_fd(l), l->buf, NFLOG_RECV_BUF, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;       /* ENOBUFS: the kernel dropped some logs; go on */
			if (errno == EAGAIN)
				return count;
			return -errno;
		}
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)l->buf;
		int left = (int)r;
		for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nlh->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET))
				continue;
			if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct nfgenmsg))
				continue;
			const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
			struct nflog_attrs at = { 0 };
			if (mnl_attr_parse(nlh, sizeof(*nfg), nflog_attr_cb, &at) < 0 || !at.payload)
				continue;
			struct nflog_pkt p = { .prefix = at.prefix ? mnl_attr_get_str(at.prefix) : "" };
			int family = nfg->nfgen_family == NFPROTO_IPV6 ? AF_INET6 :
				     nfg->nfgen_family == NFPROTO_IPV4 ? AF_INET : -1;
			if (nflog_parse_packet(mnl_attr_get_payload(at.payload),
					       mnl_attr_get_payload_len(at.payload), family,
					       &p) != PARSE_OK)
				continue;
			fn(arg, &p);
			count++;
		}
	}
}

void nflog_close(struct nflog *l)
{
	if (!l)
		return;
	if (l->nl) {
		struct nfulnl_msg_config_cmd cmd = { .command = NFULNL_CFG_CMD_UNBIND };
		if (l->group) {
			int fd = mnl_socket_get_fd(l->nl);
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
			nflog_config(l, l->group, NFULA_CFG_CMD, &cmd, sizeof(cmd));
		}
		mnl_socket_close(l->nl);
	}
	free(l->buf);
	free(l);
}

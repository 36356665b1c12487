/* moat — rtnetlink request/ACK and dump helpers over libmnl (see netlink.h). */
#include "enforcer/netlink.h"
#include "common/moat.h"

#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

/* Large enough for any single message the kernel sends in a route or
 * address dump (the kernel fills up to this much per recvmsg). */
#define NL_RECV_SIZE 32768

struct nl_sock {
	struct mnl_socket *mnl;
	uint32_t portid;
	uint32_t seq;
	char *rbuf;
};

struct netns_open {
	int netns_fd;
	int fd;         /* the socket, or -1 */
	int err;        /* positive errno of the failed step */
	const char *step;
};

/* Runs in its own thread: setns() changes only the calling thread, and this
 * thread ends right after, so no caller ever runs in the wrong netns. */
static void *open_in_netns(void *arg)
{
	struct netns_open *o = arg;
	if (setns(o->netns_fd, CLONE_NEWNET) < 0) {
		o->err = errno;
		o->step = "enter network namespace";
		return NULL;
	}
	o->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (o->fd < 0) {
		o->err = errno;
		o->step = "open rtnetlink socket";
	}
	return NULL;
}

static int socket_in_netns(int netns_fd, struct moat_error *e)
{
	struct netns_open o = { .netns_fd = netns_fd, .fd = -1 };
	pthread_t t;
	int r = pthread_create(&t, NULL, open_in_netns, &o);
	if (r != 0)
		return moat_error_errno(e, r, "start thread to enter network namespace");
	pthread_join(t, NULL);
	if (o.fd < 0 && o.err == EINVAL && o.step[0] == 'e')
		return moat_error_set(e, EINVAL, "%s: fd %d is not a network namespace",
				      o.step, netns_fd);
	if (o.fd < 0)
		return moat_error_errno(e, o.err, "%s (fd %d)", o.step, netns_fd);
	return o.fd;
}

struct nl_sock *nl_open(int netns_fd, struct moat_error *e)
{
	_cleanup_close_ int fd = -1;
	if (netns_fd >= 0) {
		fd = socket_in_netns(netns_fd, e);
		if (fd < 0)
			return NULL;
	} else {
		fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
		if (fd < 0) {
			moat_error_errno(e, errno, "open rtnetlink socket");
			return NULL;
		}
	}
	struct nl_sock *s = calloc(1, sizeof(*s));
	if (!s || !(s->rbuf = malloc(NL_RECV_SIZE))) {
		free(s);
		moat_error_errno(e, ENOMEM, "rtnetlink socket");
		return NULL;
	}
	s->mnl = mnl_socket_fdopen(fd);
	if (!s->mnl) {
		moat_error_errno(e, errno ? errno : ENOMEM, "rtnetlink socket");
		goto fail;
	}
	fd = -1;        /* owned by s->mnl now */
	int one = 1;
	/* EXT_ACK gives the kernel's reason; CAP_ACK keeps our request out of
	 * error replies, so they always fit the buffer.  Both are best effort
	 * on old kernels. */
	mnl_socket_setsockopt(s->mnl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(s->mnl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (mnl_socket_bind(s->mnl, 0, MNL_SOCKET_AUTOPID) < 0) {
		moat_error_errno(e, errno, "bind rtnetlink socket");
		goto fail;
	}
	s->portid = mnl_socket_get_portid(s->mnl);
	s->seq = (uint32_t)moat_now_ns();
	return s;
fail:
	nl_close(s);
	return NULL;
}

void nl_close(struct nl_sock *s)
{
	if (!s)
		return;
	if (s->mnl)
		mnl_socket_close(s->mnl);
	free(s->rbuf);
	free(s);
}

void nl_closep(struct nl_sock **s)
{
	nl_close(*s);
}

/* ---- message building, every put size-checked ---- */

void *nl_msg_init(struct nl_msg *m, uint16_t type, uint16_t flags, size_t hdr_len)
{
	memset(&m->u, 0, sizeof(struct nlmsghdr));
	m->overflow = false;
	m->nlh = mnl_nlmsg_put_header(m->u.buf);
	m->nlh->nlmsg_type = type;
	m->nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	return nl_msg_put_extra(m, hdr_len);
}

void *nl_msg_put_extra(struct nl_msg *m, size_t len)
{
	if (m->overflow || MNL_ALIGN(len) > sizeof(m->u.buf) - m->nlh->nlmsg_len ||
	    len > sizeof(m->spare.buf)) {
		m->overflow = true;
		return memset(m->spare.buf, 0, sizeof(m->spare.buf));
	}
	return mnl_nlmsg_put_extra_header(m->nlh, len);
}

void nl_put(struct nl_msg *m, uint16_t type, size_t len, const void *data)
{
	if (m->overflow || !mnl_attr_put_check(m->nlh, sizeof(m->u.buf), type, len, data))
		m->overflow = true;
}

void nl_put_u8(struct nl_msg *m, uint16_t type, uint8_t v)
{
	nl_put(m, type, sizeof(v), &v);
}

void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v)
{
	nl_put(m, type, sizeof(v), &v);
}

void nl_put_str(struct nl_msg *m, uint16_t type, const char *s)
{
	nl_put(m, type, strlen(s) + 1, s);
}

struct nlattr *nl_nest_start(struct nl_msg *m, uint16_t type)
{
	if (m->overflow)
		return NULL;
	struct nlattr *n = mnl_attr_nest_start_check(m->nlh, sizeof(m->u.buf), type);
	if (!n)
		m->overflow = true;
	return n;
}

void nl_nest_end(struct nl_msg *m, struct nlattr *nest)
{
	if (!m->overflow && nest)
		mnl_attr_nest_end(m->nlh, nest);
}

/* ---- request / reply ---- */

static const char *ext_ack_msg(const struct nlmsghdr *nlh, const struct nlmsgerr *err)
{
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	size_t off = sizeof(*err);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (off > mnl_nlmsg_get_payload_len(nlh))
		return NULL;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, off) {
		if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(a);
	}
	return NULL;
}

static int kernel_error(const struct nlmsghdr *nlh, int code, struct moat_error *e)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	const char *msg = code && nlh->nlmsg_type == NLMSG_ERROR ? ext_ack_msg(nlh, err) : NULL;
	if (msg && *msg)
		return moat_error_set(e, code, "%s (kernel: %s)", strerror(code), msg);
	return moat_error_set(e, code, "%s", strerror(code));
}

int nl_talk(struct nl_sock *s, struct nl_msg *m, nl_cb cb, void *data, struct moat_error *e)
{
	if (m->overflow)
		return moat_error_set(e, EMSGSIZE, "netlink message larger than %d bytes",
				      NL_MSG_SIZE);
	uint32_t seq = ++s->seq;
	m->nlh->nlmsg_seq = seq;
	m->nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(s->mnl, m->nlh, m->nlh->nlmsg_len) < 0)
		return moat_error_errno(e, errno, "send netlink request");

	bool interrupted = false;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(s->mnl, s->rbuf, NL_RECV_SIZE);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return moat_error_errno(e, errno, "receive netlink reply");
		}
		int len = (int)n;
		for (const struct nlmsghdr *h = (const struct nlmsghdr *)s->rbuf;
		     mnl_nlmsg_ok(h, len); h = mnl_nlmsg_next(h, &len)) {
			if (h->nlmsg_seq != seq || (h->nlmsg_pid && h->nlmsg_pid != s->portid))
				continue;       /* a late reply to an earlier request */
			if (h->nlmsg_flags & NLM_F_DUMP_INTR)
				interrupted = true;
			switch (h->nlmsg_type) {
			case NLMSG_NOOP:
				continue;
			case NLMSG_OVERRUN:
				return moat_error_set(e, ENOBUFS, "netlink reply overrun");
			case NLMSG_ERROR: {
				if (mnl_nlmsg_get_payload_len(h) < sizeof(struct nlmsgerr))
					return moat_error_set(e, EBADMSG, "short netlink error");
				const struct nlmsgerr *err = mnl_nlmsg_get_payload(h);
				if (err->error < 0)
					return kernel_error(h, -err->error, e);
				if (err->error > 0)
					return moat_error_set(e, EBADMSG, "bad netlink error %d",
							      err->error);
				goto done;
			}
			case NLMSG_DONE: {
				int code = 0;
				if (mnl_nlmsg_get_payload_len(h) >= sizeof(int))
					memcpy(&code, mnl_nlmsg_get_payload(h), sizeof(int));
				if (code < 0)
					return kernel_error(h, -code, e);
				/* with NLM_F_ACK, an ACK follows a dump's DONE only on
				 * some kernels; the dump is complete either way */
				goto done;
			}
			default:
				if (cb) {
					int r = cb(h, data, e);
					if (r < 0)
						return r;
				}
			}
		}
	}
done:
	if (interrupted)
		return moat_error_set(e, EAGAIN, "netlink dump interrupted by a concurrent change");
	return 0;
}

int nl_request(struct nl_sock *s, struct nl_msg *m, struct moat_error *e)
{
	return nl_talk(s, m, NULL, NULL, e);
}

int nl_dump(struct nl_sock *s, struct nl_msg *m, nl_cb cb, void *data, struct moat_error *e)
{
	m->nlh->nlmsg_flags |= NLM_F_DUMP;
	int r = nl_talk(s, m, cb, data, e);
	/* A dump with NLM_F_ACK may be followed by an ACK on newer kernels;
	 * it carries our sequence number, so the next nl_talk skips it. */
	return r;
}

/* ---- links ---- */

static int link_index_cb(const struct nlmsghdr *nlh, void *data, struct moat_error *e)
{
	if (nlh->nlmsg_type != RTM_NEWLINK ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
		return moat_error_set(e, EBADMSG, "unexpected reply to RTM_GETLINK");
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	*(int *)data = ifi->ifi_index;
	return 0;
}

int nl_link_index(struct nl_sock *s, const char *name, struct moat_error *e)
{
	if (strlen(name) >= IF_NAMESIZE)
		return moat_error_set(e, EINVAL, "interface name '%s' too long", name);
	struct nl_msg m;
	nl_msg_init(&m, RTM_GETLINK, 0, sizeof(struct ifinfomsg));
	nl_put_str(&m, IFLA_IFNAME, name);
	int idx = 0;
	int r = nl_talk(s, &m, link_index_cb, &idx, e);
	if (r < 0)
		return r;
	if (idx <= 0)
		return moat_error_set(e, ENODEV, "%s", strerror(ENODEV));
	return idx;
}

int nl_link_set_up(struct nl_sock *s, int ifindex, bool up, struct moat_error *e)
{
	struct nl_msg m;
	struct ifinfomsg *ifi = nl_msg_init(&m, RTM_NEWLINK, 0, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	return nl_request(s, &m, e);
}

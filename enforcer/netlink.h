/* moat — small rtnetlink helpers over libmnl.
 *
 * A request is built in a struct nl_msg whose attribute puts are size-checked:
 * a put that does not fit marks the message as overflowed and nl_talk()
 * refuses to send it (EMSGSIZE), so callers build a whole message and check
 * once.  Every request asks for an ACK; kernel errors come back as a negative
 * errno with strerror and the extended-ACK text in e ("File exists (kernel:
 * ...)"), to which callers prepend what they were doing. */
#ifndef MOAT_ENFORCER_NETLINK_H
#define MOAT_ENFORCER_NETLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/netlink.h>

struct moat_error;
struct nlattr;
struct nl_sock;

#define NL_MSG_SIZE 2048

struct nl_msg {
	struct nlmsghdr *nlh;
	bool overflow;
	union {
		char buf[64];
		struct nlmsghdr align;
	} spare;        /* handed out by a put_extra that did not fit */
	union {
		char buf[NL_MSG_SIZE];
		struct nlmsghdr align;
	} u;
};

/* Opens a NETLINK_ROUTE socket with NETLINK_EXT_ACK and NETLINK_CAP_ACK.
 * netns_fd < 0: in the calling thread's netns; otherwise the socket is
 * created by a short-lived thread that entered netns_fd, so it stays bound to
 * that netns and the caller's own namespace is never touched. */
struct nl_sock *nl_open(int netns_fd, struct moat_error *e);
void nl_close(struct nl_sock *s);
void nl_closep(struct nl_sock **s);
#define _cleanup_nl_ __attribute__((cleanup(nl_closep)))

/* Starts a message: type, NLM_F_REQUEST | flags, then a zeroed family header
 * of hdr_len bytes (ifinfomsg, ifaddrmsg, rtmsg...), returned. */
void *nl_msg_init(struct nl_msg *m, uint16_t type, uint16_t flags, size_t hdr_len);
/* Appends len zeroed bytes (e.g. the ifinfomsg inside VETH_INFO_PEER). */
void *nl_msg_put_extra(struct nl_msg *m, size_t len);
void nl_put(struct nl_msg *m, uint16_t type, size_t len, const void *data);
void nl_put_u8(struct nl_msg *m, uint16_t type, uint8_t v);
void nl_put_u32(struct nl_msg *m, uint16_t type, uint32_t v);
void nl_put_str(struct nl_msg *m, uint16_t type, const char *s);   /* NUL included */
struct nlattr *nl_nest_start(struct nl_msg *m, uint16_t type);
void nl_nest_end(struct nl_msg *m, struct nlattr *nest);

/* Called for each non-control message of the reply; returns 0 to go on or a
 * negative errno (with e set) to stop. */
typedef int (*nl_cb)(const struct nlmsghdr *nlh, void *data, struct moat_error *e);

/* Sends m (NLM_F_ACK is added), passes every reply message to cb (may be NULL)
 * and returns when the ACK or NLMSG_DONE for its sequence number arrives:
 * 0, or the kernel's -errno with e = "strerror (kernel: ext-ack text)". */
int nl_talk(struct nl_sock *s, struct nl_msg *m, nl_cb cb, void *data, struct moat_error *e);
/* nl_talk without reply messages. */
int nl_request(struct nl_sock *s, struct nl_msg *m, struct moat_error *e);
/* Adds NLM_F_DUMP and runs nl_talk; -EAGAIN if the kernel flags the dump as
 * interrupted by a concurrent change (the caller may retry from scratch). */
int nl_dump(struct nl_sock *s, struct nl_msg *m, nl_cb cb, void *data, struct moat_error *e);

/* Interface index of name in s's netns (RTM_GETLINK); -ENODEV if absent. */
int nl_link_index(struct nl_sock *s, const char *name, struct moat_error *e);
/* Sets or clears IFF_UP on ifindex. */
int nl_link_set_up(struct nl_sock *s, int ifindex, bool up, struct moat_error *e);

#endif

/* nftables transport: atomic batches with per-message error mapping, and
 * dump requests.  The pattern follows nftables' mnl_batch_talk(): one
 * sendmsg() for BATCH_BEGIN .. BATCH_END, then every reply read back. */
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>

#include "common/moat.h"
#include "enforcer/nft_priv.h"

#define NFT_DESC_MAX   112
#define NFT_REPLY_WAIT 2000     /* ms without any reply before giving up */
#define NFT_RECV_BUF   (128 * 1024)

struct nft_msg {
	char desc[NFT_DESC_MAX];
	int error;              /* positive errno from the kernel, 0: acked or pending */
	bool answered;
	char extack[NFT_DESC_MAX];
};

struct nft_batch {
	char *buf;
	size_t len, cap;
	uint32_t seq0;          /* BATCH_BEGIN; message i has seq0 + 1 + i */
	struct nft_msg *msgs;
	size_t n, ncap;
	size_t open_reserve;    /* reserve of the message being built, 0: none */
	int err;
};

static uint32_t nft_next_seq(uint32_t count)
{
	static uint32_t seq;

	/* Distinct from other sockets' numbers; only this socket's replies are read anyway. */
	if (seq == 0)
		seq = (uint32_t)time(NULL) << 8;
	uint32_t r = __atomic_fetch_add(&seq, count, __ATOMIC_RELAXED);
	return r ? r : __atomic_fetch_add(&seq, count, __ATOMIC_RELAXED);
}

static int nft_batch_grow(struct nft_batch *b, size_t need)
{
	if (b->len + need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 16384;
	while (cap < b->len + need)
		cap *= 2;
	char *p = realloc(b->buf, cap);
	if (!p)
		return -ENOMEM;
	memset(p + b->cap, 0, cap - b->cap);
	b->buf = p;
	b->cap = cap;
	return 0;
}

int nft_batch_new(struct nft_batch **out)
{
	struct nft_batch *b = calloc(1, sizeof(*b));

	if (!b || nft_batch_grow(b, 16384) < 0) {
		free(b);
		return -ENOMEM;
	}
	/* Sequence numbers are handed out in blocks large enough for any batch. */
	b->seq0 = nft_next_seq(1u << 20);
	struct nlmsghdr *nlh = nftnl_batch_begin(b->buf, b->seq0);
	b->len = MNL_ALIGN(nlh->nlmsg_len);
	*out = b;
	return 0;
}

void nft_batch_free(struct nft_batch *b)
{
	if (!b)
		return;
	free(b->buf);
	free(b->msgs);
	free(b);
}

void nft_batch_freep(struct nft_batch **b)
{
	nft_batch_free(*b);
}

size_t nft_batch_count(const struct nft_batch *b)
{
	return b->n;
}

size_t nft_batch_size(const struct nft_batch *b)
{
	return b->len;
}

struct nlmsghdr *nft_batch_msg(struct nft_batch *b, uint16_t type, uint16_t flags,
			       size_t reserve)
{
	if (b->err)
		return NULL;
	if (b->n == b->ncap) {
		size_t ncap = b->ncap ? b->ncap * 2 : 32;
		struct nft_msg *m = realloc(b->msgs, ncap * sizeof(*m));
		if (!m) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->msgs = m;
		b->ncap = ncap;
	}
	if (b->n >= (1u << 20) - 2 || nft_batch_grow(b, reserve + 256) < 0) {
		b->err = -ENOMEM;
		return NULL;
	}
	b->open_reserve = reserve;
	return nftnl_nlmsg_build_hdr(b->buf + b->len, type, NFPROTO_INET, flags | NLM_F_ACK,
				     b->seq0 + 1 + (uint32_t)b->n);
}

void nft_batch_msg_end(struct nft_batch *b, struct nlmsghdr *nlh, const char *fmt, ...)
{
	if (b->err || !nlh)
		return;
	/* The reserve is generous by construction; overrunning it is a bug. */
	if (nlh->nlmsg_len > b->open_reserve + 256) {
		b->err = -EMSGSIZE;
		return;
	}
	struct nft_msg *m = &b->msgs[b->n++];
	memset(m, 0, sizeof(*m));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->desc, sizeof(m->desc), fmt, ap);
	va_end(ap);
	b->len += MNL_ALIGN(nlh->nlmsg_len);
	b->open_reserve = 0;
}

static int nft_socket(struct mnl_socket **out, struct moat_error *e)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	int one = 1;

	if (!nl)
		return moat_error_errno(e, errno, "nftables: netlink socket");
	/* Extended acks name the refused attribute; capped acks keep error
	 * replies small whatever the size of the message they answer. */
	mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one));
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int err = errno;
		mnl_socket_close(nl);
		return moat_error_errno(e, err, "nftables: netlink bind");
	}
	*out = nl;
	return 0;
}

/* The kernel's text for an error (NLMSGERR_ATTR_MSG), when it sent one. */
static void nft_extack(const struct nlmsghdr *nlh, const struct nlmsgerr *err, char *out,
		       size_t size)
{
	size_t off = sizeof(*err);
	const struct nlattr *a;

	out[0] = '\0';
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
		if (err->msg.nlmsg_len < sizeof(struct nlmsghdr))
			return;
		off += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
	}
	if (off > mnl_nlmsg_get_payload_len(nlh))
		return;
	mnl_attr_for_each(a, nlh, off) {
		if (mnl_attr_get_type(a) != NLMSGERR_ATTR_MSG)
			continue;
		if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0)
			return;
		snprintf(out, size, "%s", mnl_attr_get_str(a));
		return;
	}
}

/* Handles one datagram of replies; returns how many messages it answered,
 * or -errno when the whole batch was refused (error on BATCH_BEGIN). */
static int nft_batch_replies(struct nft_batch *b, const char *buf, size_t len, int *batch_err)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	int len_left = (int)len, answered = 0;

	for (; mnl_nlmsg_ok(nlh, len_left); nlh = mnl_nlmsg_next(nlh, &len_left)) {
		if (nlh->nlmsg_type != NLMSG_ERROR)
			continue;
		if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct nlmsgerr))
			continue;
		const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
		uint32_t seq = nlh->nlmsg_seq;
		if (seq == b->seq0) {
			*batch_err = err->error ? -err->error : EPROTO;
			return answered;
		}
		if (seq - b->seq0 - 1 >= b->n)
			continue;       /* not ours */
		struct nft_msg *m = &b->msgs[seq - b->seq0 - 1];
		if (m->answered)
			continue;
		m->answered = true;
		answered++;
		if (err->error < 0) {
			m->error = -err->error;
			nft_extack(nlh, err, m->extack, sizeof(m->extack));
		}
	}
	return answered;
}

int nft_batch_commit(struct nft_batch *b, int ok_errno, struct moat_error *e)
{
	struct mnl_socket *nl = NULL;
	_cleanup_free_ char *rbuf = NULL;
	int ret, batch_err = 0;
	size_t pending = b->n;

	if (b->err)
		return moat_error_errno(e, -b->err, "nftables: building the batch");
	if (nft_batch_grow(b, 64) < 0)
		return moat_error_errno(e, ENOMEM, "nftables: building the batch");
	struct nlmsghdr *end = nftnl_batch_end(b->buf + b->len, b->seq0 + 1 + (uint32_t)b->n);
	size_t total = b->len + MNL_ALIGN(end->nlmsg_len);

	rbuf = malloc(NFT_RECV_BUF);
	if (!rbuf)
		return moat_error_errno(e, ENOMEM, "nftables");
	ret = nft_socket(&nl, e);
	if (ret < 0)
		return ret;
	if (total > 128 * 1024) {
		/* The batch must fit one skb: the kernel applies it only whole. */
		int sz = (int)(total * 2);
		if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUFFORCE, &sz,
			       sizeof(sz)) < 0)
			setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	ssize_t sent = mnl_socket_sendto(nl, b->buf, total);
	if (sent < 0 || (size_t)sent != total) {
		ret = moat_error_errno(e, sent < 0 ? errno : EMSGSIZE,
				       "nftables: sending a batch of %zu bytes", total);
		goto out;
	}
	while (pending > 0 && !batch_err) {
		struct pollfd pfd = { .fd = mnl_socket_get_fd(nl), .events = POLLIN };
		int pr = poll(&pfd, 1, NFT_REPLY_WAIT);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			ret = moat_error_set(e, ETIMEDOUT, "nftables: no answer for %zu of %zu "
					     "messages", pending, b->n);
			goto out;
		}
		ssize_t r = recv(pfd.fd, rbuf, NFT_RECV_BUF, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			/* ENOBUFS: replies were lost; what arrived still names errors. */
			ret = moat_error_errno(e, errno, "nftables: reading replies");
			goto out;
		}
		int n = nft_batch_replies(b, rbuf, (size_t)r, &batch_err);
		pending -= (size_t)n <= pending ? (size_t)n : pending;
	}
	if (batch_err) {
		ret = moat_error_errno(e, batch_err, "nftables: batch refused");
		goto out;
	}
	/* The first refusal is the cause; later ones usually follow from it. */
	ret = 0;
	for (size_t i = 0; i < b->n; i++) {
		struct nft_msg *m = &b->msgs[i];
		if (!m->error || m->error == ok_errno)
			continue;
		if (m->extack[0])
			ret = moat_error_set(e, m->error, "nftables: %s: %s (%s)", m->desc,
					     strerror(m->error), m->extack);
		else
			ret = moat_error_set(e, m->error, "nftables: %s: %s", m->desc,
					     strerror(m->error));
		break;
	}
out:
	mnl_socket_close(nl);
	return ret;
}

int nft_dump(uint16_t type, void (*build)(struct nlmsghdr *nlh, void *arg),
	     int (*cb)(const struct nlmsghdr *nlh, void *arg), void *arg, struct moat_error *e)
{
	struct mnl_socket *nl = NULL;
	_cleanup_free_ char *buf = malloc(NFT_RECV_BUF);
	uint32_t seq = nft_next_seq(1);
	int ret;

	if (!buf)
		return moat_error_errno(e, ENOMEM, "nftables");
	ret = nft_socket(&nl, e);
	if (ret < 0)
		return ret;
	struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET,
						     NLM_F_DUMP, seq);
	if (build)
		build(nlh, arg);
	if (mnl_socket_sendto(nl, buf, nlh->nlmsg_len) < 0) {
		ret = moat_error_errno(e, errno, "nftables: dump request");
		goto out;
	}
	uint32_t portid = mnl_socket_get_portid(nl);
	for (;;) {
		ssize_t r = mnl_socket_recvfrom(nl, buf, NFT_RECV_BUF);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = moat_error_errno(e, errno, "nftables: reading dump");
			break;
		}
		ret = mnl_cb_run(buf, (size_t)r, seq, portid, cb, arg);
		if (ret < 0) {
			ret = moat_error_errno(e, errno, "nftables: dump");
			break;
		}
		if (ret == MNL_CB_STOP) {
			ret = 0;
			break;
		}
	}
out:
	mnl_socket_close(nl);
	return ret;
}

int nft_check_id(const char *id, struct moat_error *e)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > 16)
		return moat_error_set(e, EINVAL, "nftables: bad sandbox id \"%s\" "
				      "(want [a-z0-9]{1,16})", id ? id : "");
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
			return moat_error_set(e, EINVAL, "nftables: bad sandbox id \"%s\" "
					      "(want [a-z0-9]{1,16})", id);
	return 0;
}

/* Private to the nftables code: the batch that carries one atomic change.
 *
 * Every message gets its own sequence number and NLM_F_ACK, and a short
 * description; after sending, every reply is read and an error is reported
 * with the description of the message it answers.  BATCH_BEGIN and
 * BATCH_END carry no NLM_F_ACK (older kernels never answer them). */
#ifndef MOAT_NFT_PRIV_H
#define MOAT_NFT_PRIV_H

#include <stddef.h>
#include <stdint.h>
#include <linux/netlink.h>

struct moat_error;
struct nft_batch;

int nft_batch_new(struct nft_batch **out);
void nft_batch_free(struct nft_batch *b);
void nft_batch_freep(struct nft_batch **b);
#define _cleanup_batch_ __attribute__((cleanup(nft_batch_freep)))

/* Starts a message of type NFT_MSG_* (family inet) with room for reserve
 * payload bytes; the caller fills it with a nftnl_*_nlmsg_build_payload()
 * that must not write more than reserve bytes.  NULL on allocation failure
 * (remembered: nft_batch_commit() then fails with -ENOMEM). */
struct nlmsghdr *nft_batch_msg(struct nft_batch *b, uint16_t type, uint16_t flags,
			       size_t reserve);
/* Closes the message started last and names it for error reports. */
void nft_batch_msg_end(struct nft_batch *b, struct nlmsghdr *nlh, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
size_t nft_batch_count(const struct nft_batch *b);
size_t nft_batch_size(const struct nft_batch *b);

/* Sends the batch and reads every reply.  On failure the first refused
 * message is named: "add table inet moat_x: File exists".  The kernel's
 * error for a message with an ignore-mask (enoent_ok) is not an error. */
int nft_batch_commit(struct nft_batch *b, int ok_errno, struct moat_error *e);

/* A dump request (NLM_F_DUMP) of type NFT_MSG_GET*, family inet; build adds
 * payload (may be NULL); cb is called for each reply message. */
int nft_dump(uint16_t type, void (*build)(struct nlmsghdr *nlh, void *arg),
	     int (*cb)(const struct nlmsghdr *nlh, void *arg), void *arg, struct moat_error *e);

int nft_check_id(const char *id, struct moat_error *e);

#endif

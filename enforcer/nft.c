/* Table-level operations: remove, list, counters, learned addresses. */
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <libnftnl/object.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include "common/moat.h"
#include "enforcer/nft.h"
#include "enforcer/nft_priv.h"

int nft_remove(const char *id, struct moat_error *e)
{
	_cleanup_batch_ struct nft_batch *b = NULL;
	char name[32];
	int ret = nft_check_id(id, e);

	if (ret < 0)
		return ret;
	if (nft_batch_new(&b) < 0)
		return moat_error_errno(e, ENOMEM, "nftables");
	snprintf(name, sizeof(name), "moat_%s", id);
	struct nftnl_table *t = nftnl_table_alloc();
	if (!t)
		return moat_error_errno(e, ENOMEM, "nftables");
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	struct nlmsghdr *nlh = nft_batch_msg(b, NFT_MSG_DELTABLE, 0, 512);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		nft_batch_msg_end(b, nlh, "delete table inet %s", name);
	}
	nftnl_table_free(t);
	return nft_batch_commit(b, ENOENT, e);
}

/* "moat pid=<pid> profile=<name> if=<ifname>" */
int nft_parse_comment(const char *comment, struct nft_table_info *info)
{
	long pid;
	char profile[64], ifname[16];

	if (sscanf(comment, "moat pid=%ld profile=%63s if=%15s", &pid, profile, ifname) != 3 ||
	    pid < 0)
		return -EINVAL;
	info->owner = (pid_t)pid;
	snprintf(info->profile, sizeof(info->profile), "%s", profile);
	snprintf(info->ifname, sizeof(info->ifname), "%s", ifname);
	return 0;
}

struct table_list {
	struct nft_table_info *v;
	size_t n, cap;
	int err;
};

static int table_comment_cb(const struct nftnl_udata *attr, void *data)
{
	const char **comment = data;

	if (nftnl_udata_type(attr) != NFTNL_UDATA_TABLE_COMMENT)
		return 0;
	const char *v = nftnl_udata_get(attr);
	uint8_t len = nftnl_udata_len(attr);
	if (len == 0 || v[len - 1] != '\0')
		return -1;
	*comment = v;
	return 0;
}

static int table_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct table_list *l = arg;
	struct nftnl_table *t = nftnl_table_alloc();
	const char *comment = NULL;

	if (!t || nftnl_table_nlmsg_parse(nlh, t) < 0)
		goto out;
	const char *name = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
	if (!name || strncmp(name, "moat_", 5) != 0 || strlen(name + 5) >= 32)
		goto out;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct nft_table_info *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			l->err = -ENOMEM;
			goto out;
		}
		l->v = v;
		l->cap = cap;
	}
	struct nft_table_info *info = &l->v[l->n++];
	memset(info, 0, sizeof(*info));
	snprintf(info->id, sizeof(info->id), "%s", name + 5);
	uint32_t udlen = 0;
	const void *ud = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &udlen);
	if (ud && udlen)
		nftnl_udata_parse(ud, udlen, table_comment_cb, &comment);
	if (comment)
		nft_parse_comment(comment, info);
out:
	nftnl_table_free(t);
	return MNL_CB_OK;
}

int nft_list_tables(struct nft_table_info **out, size_t *n, struct moat_error *e)
{
	struct table_list l = { 0 };
	int ret = nft_dump(NFT_MSG_GETTABLE, NULL, table_cb, &l, e);

	if (ret == 0 && l.err)
		ret = moat_error_errno(e, -l.err, "nftables: listing tables");
	if (ret < 0) {
		free(l.v);
		return ret;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

struct counter_list {
	const char *table;
	struct nft_counter *v;
	size_t n, cap;
	int err;
};

static void counter_req(struct nlmsghdr *nlh, void *arg)
{
	struct counter_list *l = arg;
	struct nftnl_obj *o = nftnl_obj_alloc();

	if (!o)
		return;
	nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, l->table);
	nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
	nftnl_obj_nlmsg_build_payload(nlh, o);
	nftnl_obj_free(o);
}

static int counter_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct counter_list *l = arg;
	struct nftnl_obj *o = nftnl_obj_alloc();

	if (!o || nftnl_obj_nlmsg_parse(nlh, o) < 0)
		goto out;
	const char *table = nftnl_obj_get_str(o, NFTNL_OBJ_TABLE);
	const char *name = nftnl_obj_get_str(o, NFTNL_OBJ_NAME);
	if (!table || !name || strcmp(table, l->table) != 0 ||
	    nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE) != NFT_OBJECT_COUNTER)
		goto out;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct nft_counter *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			l->err = -ENOMEM;
			goto out;
		}
		l->v = v;
		l->cap = cap;
	}
	struct nft_counter *c = &l->v[l->n++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->packets = nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS);
	c->bytes = nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES);
out:
	nftnl_obj_free(o);
	return MNL_CB_OK;
}

int nft_counters(const char *id, struct nft_counter **out, size_t *n, struct moat_error *e)
{
	char table[32];
	struct counter_list l = { .table = table };
	int ret = nft_check_id(id, e);

	if (ret < 0)
		return ret;
	snprintf(table, sizeof(table), "moat_%s", id);
	ret = nft_dump(NFT_MSG_GETOBJ, counter_req, counter_cb, &l, e);
	if (ret == 0 && l.err)
		ret = moat_error_errno(e, -l.err, "nftables: listing counters");
	if (ret == 0 && l.n == 0)
		ret = moat_error_set(e, ENOENT, "nftables: no table inet %s", table);
	if (ret < 0) {
		free(l.v);
		return ret;
	}
	*out = l.v;
	*n = l.n;
	return 0;
}

int nft_learned_add(const char *id, int family, const void *addr, uint32_t timeout_s,
		    struct moat_error *e)
{
	_cleanup_batch_ struct nft_batch *b = NULL;
	char table[32];
	const char *set_name = family == AF_INET ? "learned4" : "learned6";
	uint32_t len = family == AF_INET ? 4 : 16;
	int ret = nft_check_id(id, e);

	if (ret < 0)
		return ret;
	if (family != AF_INET && family != AF_INET6)
		return moat_error_set(e, EAFNOSUPPORT, "nftables: learned address family %d",
				      family);
	if (timeout_s == 0)
		return moat_error_set(e, EINVAL, "nftables: learned address without timeout");
	snprintf(table, sizeof(table), "moat_%s", id);
	if (nft_batch_new(&b) < 0)
		return moat_error_errno(e, ENOMEM, "nftables");
	struct nftnl_set *s = nftnl_set_alloc();
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();
	if (!s || !el) {
		nftnl_set_free(s);
		nftnl_set_elem_free(el);
		return moat_error_errno(e, ENOMEM, "nftables");
	}
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
	nftnl_set_set_str(s, NFTNL_SET_NAME, set_name);
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, addr, len);
	nftnl_set_elem_set_u64(el, NFTNL_SET_ELEM_TIMEOUT, (uint64_t)timeout_s * 1000);
	/* an explicit expiration: adding an element that is already there then
	 * restarts its clock (kernels with element timeout updates, 6.10 on);
	 * with the timeout alone the kernel keeps the old expiry */
	nftnl_set_elem_set_u64(el, NFTNL_SET_ELEM_EXPIRATION, (uint64_t)timeout_s * 1000);
	nftnl_set_elem_add(s, el);
	struct nlmsghdr *nlh = nft_batch_msg(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, 512);
	if (nlh) {
		char text[INET6_ADDRSTRLEN];
		inet_ntop(family, addr, text, sizeof(text));
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		nft_batch_msg_end(b, nlh, "add element inet %s %s { %s timeout %us }", table,
				  set_name, text, timeout_s);
	}
	nftnl_set_free(s);
	return nft_batch_commit(b, 0, e);
}

/* The table of one sandbox, built as one batch (docs/rules.md shows it as
 * nft text).  Each rule below carries the text nft prints for it. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <string.h>
#include <net/if.h>
#include <netinet/in.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>

#include "common/moat.h"
#include "enforcer/nft.h"
#include "enforcer/nft_priv.h"
#include "profiles/profile.h"

/* nft's datatype numbers, so `nft list` prints "type inet_service" etc. */
enum {
	NFT_TYPE_IPADDR = 7,
	NFT_TYPE_IP6ADDR = 8,
	NFT_TYPE_INET_PROTOCOL = 12,
	NFT_TYPE_INET_SERVICE = 13,
	NFT_TYPE_ICMP6_TYPE = 29,
};

/* Hook priorities nft calls mangle, filter, srcnat; ct state bits. */
enum { NFT_PRIO_MANGLE = -150, NFT_PRIO_FILTER = 0, NFT_PRIO_SRCNAT = 100 };
enum { NFT_CT_ESTABLISHED = 1u << 1, NFT_CT_RELATED = 1u << 2 };

#define NFT_RULE_RESERVE  4096
#define NFT_ELEM_RESERVE  96          /* bytes per element, generous */
#define NFT_ELEM_CHUNK    512         /* port ranges per NEWSETELEM message */
#define NFT_LOG_RATE      20          /* log lines per second per rule; drops are not limited */
#define NFT_LOG_BURST     5

static const char *const nft_counter_names[] = {
	"drop_port", "drop_udp", "drop_icmp", "drop_host", "drop_other", "drop_fwd",
};

struct nft_build {
	struct nft_batch *b;
	const struct nft_sandbox *s;
	char table[32];
	char ifname[IFNAMSIZ];          /* zero padded: compared as 16 bytes */
	uint32_t set_id;
	struct nftnl_rule *r;           /* rule being built */
	int err;
};

/* ---- expressions ---- */

static void add_expr(struct nft_build *c, struct nftnl_expr *x)
{
	if (!x) {
		c->err = -ENOMEM;
		return;
	}
	nftnl_rule_add_expr(c->r, x);
}

static void e_meta_load(struct nft_build *c, uint32_t key)
{
	struct nftnl_expr *x = nftnl_expr_alloc("meta");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_DREG, NFT_REG_1);
	}
	add_expr(c, x);
}

static void e_cmp(struct nft_build *c, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *x = nftnl_expr_alloc("cmp");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_CMP_OP, op);
		nftnl_expr_set(x, NFTNL_EXPR_CMP_DATA, data, len);
	}
	add_expr(c, x);
}

static void e_cmp_u8(struct nft_build *c, uint8_t v)
{
	e_cmp(c, NFT_CMP_EQ, &v, 1);
}

static void e_payload(struct nft_build *c, uint32_t base, uint32_t off, uint32_t len)
{
	struct nftnl_expr *x = nftnl_expr_alloc("payload");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_OFFSET, off);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_LEN, len);
		nftnl_expr_set_u32(x, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	}
	add_expr(c, x);
}

static void e_lookup(struct nft_build *c, const char *set, uint32_t set_id)
{
	struct nftnl_expr *x = nftnl_expr_alloc("lookup");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
		nftnl_expr_set_str(x, NFTNL_EXPR_LOOKUP_SET, set);
		nftnl_expr_set_u32(x, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
	}
	add_expr(c, x);
}

static void e_imm(struct nft_build *c, const void *data, uint32_t len)
{
	struct nftnl_expr *x = nftnl_expr_alloc("immediate");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
		nftnl_expr_set(x, NFTNL_EXPR_IMM_DATA, data, len);
	}
	add_expr(c, x);
}

static void e_verdict(struct nft_build *c, uint32_t verdict)
{
	struct nftnl_expr *x = nftnl_expr_alloc("immediate");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(x, NFTNL_EXPR_IMM_VERDICT, verdict);
	}
	add_expr(c, x);
}

static void e_ifname(struct nft_build *c, uint32_t key, uint32_t op)
{
	e_meta_load(c, key);
	e_cmp(c, op, c->ifname, sizeof(c->ifname));
}

static void e_nfproto(struct nft_build *c, uint8_t proto)
{
	e_meta_load(c, NFT_META_NFPROTO);
	e_cmp_u8(c, proto);
}

/* meta mark set <mark> tproxy ip|ip6 to :<port> */
static void e_mark_tproxy(struct nft_build *c, int family, uint16_t port)
{
	uint32_t mark = c->s->mark;
	uint16_t nport = htons(port);

	e_imm(c, &mark, sizeof(mark));
	struct nftnl_expr *x = nftnl_expr_alloc("meta");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_KEY, NFT_META_MARK);
		nftnl_expr_set_u32(x, NFTNL_EXPR_META_SREG, NFT_REG_1);
	}
	add_expr(c, x);
	e_imm(c, &nport, sizeof(nport));
	x = nftnl_expr_alloc("tproxy");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_TPROXY_FAMILY, (uint32_t)family);
		nftnl_expr_set_u32(x, NFTNL_EXPR_TPROXY_REG_PORT, NFT_REG_1);
	}
	add_expr(c, x);
}

/* fib daddr type local */
static void e_fib_local(struct nft_build *c)
{
	uint32_t local = RTN_LOCAL;
	struct nftnl_expr *x = nftnl_expr_alloc("fib");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
		nftnl_expr_set_u32(x, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	}
	add_expr(c, x);
	e_cmp(c, NFT_CMP_EQ, &local, sizeof(local));
}

/* limit rate 20/second log group <g> prefix "<prefix>" */
static void e_limited_log(struct nft_build *c, const char *prefix)
{
	struct nftnl_expr *x = nftnl_expr_alloc("limit");
	if (x) {
		nftnl_expr_set_u64(x, NFTNL_EXPR_LIMIT_RATE, NFT_LOG_RATE);
		nftnl_expr_set_u64(x, NFTNL_EXPR_LIMIT_UNIT, 1);
		nftnl_expr_set_u32(x, NFTNL_EXPR_LIMIT_BURST, NFT_LOG_BURST);
		nftnl_expr_set_u32(x, NFTNL_EXPR_LIMIT_TYPE, NFT_LIMIT_PKTS);
	}
	add_expr(c, x);
	x = nftnl_expr_alloc("log");
	if (x) {
		nftnl_expr_set_u16(x, NFTNL_EXPR_LOG_GROUP, c->s->nflog_group);
		nftnl_expr_set_str(x, NFTNL_EXPR_LOG_PREFIX, prefix);
	}
	add_expr(c, x);
}

/* counter name <name> drop */
static void e_count_drop(struct nft_build *c, const char *counter)
{
	struct nftnl_expr *x = nftnl_expr_alloc("objref");
	if (x) {
		nftnl_expr_set_u32(x, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
		nftnl_expr_set_str(x, NFTNL_EXPR_OBJREF_IMM_NAME, counter);
	}
	add_expr(c, x);
	e_verdict(c, NF_DROP);
}

/* ---- objects ---- */

static void rule_begin(struct nft_build *c, const char *chain)
{
	c->r = nftnl_rule_alloc();
	if (!c->r) {
		c->err = -ENOMEM;
		return;
	}
	nftnl_rule_set_u32(c->r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	nftnl_rule_set_str(c->r, NFTNL_RULE_TABLE, c->table);
	nftnl_rule_set_str(c->r, NFTNL_RULE_CHAIN, chain);
}

static void rule_end(struct nft_build *c, const char *chain, const char *text)
{
	if (c->r && !c->err) {
		struct nlmsghdr *nlh = nft_batch_msg(c->b, NFT_MSG_NEWRULE,
						     NLM_F_CREATE | NLM_F_APPEND,
						     NFT_RULE_RESERVE);
		if (nlh) {
			nftnl_rule_nlmsg_build_payload(nlh, c->r);
			nft_batch_msg_end(c->b, nlh, "add rule inet %s %s: %s", c->table, chain, text);
		}
	}
	nftnl_rule_free(c->r);
	c->r = NULL;
}

static struct nftnl_set *set_new(struct nft_build *c, const char *name, uint32_t id)
{
	struct nftnl_set *set = nftnl_set_alloc();

	if (!set) {
		c->err = -ENOMEM;
		return NULL;
	}
	nftnl_set_set_u32(set, NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_str(set, NFTNL_SET_TABLE, c->table);
	nftnl_set_set_str(set, NFTNL_SET_NAME, name);
	nftnl_set_set_u32(set, NFTNL_SET_ID, id);
	return set;
}

static int elem_add(struct nftnl_set *set, const void *key, uint32_t len, uint32_t flags)
{
	struct nftnl_set_elem *el = nftnl_set_elem_alloc();

	if (!el)
		return -ENOMEM;
	nftnl_set_elem_set(el, NFTNL_SET_ELEM_KEY, key, len);
	if (flags)
		nftnl_set_elem_set_u32(el, NFTNL_SET_ELEM_FLAGS, flags);
	nftnl_set_elem_add(set, el);
	return 0;
}

static void elems_send(struct nft_build *c, struct nftnl_set *set, size_t n, const char *what)
{
	if (c->err)
		return;
	struct nlmsghdr *nlh = nft_batch_msg(c->b, NFT_MSG_NEWSETELEM, NLM_F_CREATE,
					     (n + 1) * NFT_ELEM_RESERVE);
	if (!nlh)
		return;
	nftnl_set_elems_nlmsg_build_payload(nlh, set);
	nft_batch_msg_end(c->b, nlh, "add element inet %s %s", c->table, what);
}

/* Declares a set; returns its batch id (lookups name it by name and id). */
static uint32_t set_add(struct nft_build *c, const char *name, uint32_t flags, uint32_t key_type,
			uint32_t key_len, uint32_t size)
{
	uint32_t id = ++c->set_id;
	struct nftnl_set *set = set_new(c, name, id);

	if (!set)
		return id;
	nftnl_set_set_u32(set, NFTNL_SET_FLAGS, flags);
	nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, key_type);
	nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, key_len);
	if (size)
		nftnl_set_set_u32(set, NFTNL_SET_DESC_SIZE, size);
	struct nlmsghdr *nlh = nft_batch_msg(c->b, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL,
					     1024);
	if (nlh) {
		nftnl_set_nlmsg_build_payload(nlh, set);
		nft_batch_msg_end(c->b, nlh, "add set inet %s %s", c->table,
				  strcmp(name, "__set%d") ? name : "(anonymous)");
	}
	nftnl_set_free(set);
	return id;
}

/* An anonymous constant set of 1-byte keys, as nft makes for "{ tcp, udp }". */
static uint32_t anon_set_u8(struct nft_build *c, uint32_t key_type, const uint8_t *keys,
			    size_t n, const char *text)
{
	uint32_t id = set_add(c, "__set%d", NFT_SET_ANONYMOUS | NFT_SET_CONSTANT, key_type, 1,
			      (uint32_t)n);
	struct nftnl_set *set = set_new(c, "__set%d", id);

	if (!set)
		return id;
	for (size_t i = 0; i < n && !c->err; i++)
		if (elem_add(set, &keys[i], 1, 0) < 0)
			c->err = -ENOMEM;
	elems_send(c, set, n, text);
	nftnl_set_free(set);
	return id;
}

/* A port set must be sorted and merged: the kernel's interval tree would
 * silently misread overlapping ranges. */
static int ports_check(const char *set, const struct port_set *p, struct moat_error *e)
{
	for (size_t i = 0; p && i < p->n; i++) {
		const struct port_range *r = &p->r[i];
		if (r->lo == 0 || r->lo > r->hi)
			return moat_error_set(e, EINVAL, "nftables: set %s element %zu (%u-%u): "
					      "not a port range", set, i, r->lo, r->hi);
		if (i > 0 && r->lo <= (uint32_t)p->r[i - 1].hi + 1)
			return moat_error_set(e, EINVAL, "nftables: set %s element %zu (%u-%u): "
					      "ranges not sorted and merged", set, i, r->lo,
					      r->hi);
	}
	return 0;
}

/* Interval elements the way nft writes them: an end marker at 0, then for
 * each range its start and (unless it runs to 65535) an end at hi + 1. */
static void ports_elems(struct nft_build *c, const char *name, uint32_t id,
			const struct port_set *p)
{
	size_t n = p ? p->n : 0;

	for (size_t start = 0; start < n || start == 0; start += NFT_ELEM_CHUNK) {
		struct nftnl_set *set = set_new(c, name, id);
		size_t end = start + NFT_ELEM_CHUNK < n ? start + NFT_ELEM_CHUNK : n;
		size_t count = 0;
		uint16_t zero = 0;
		char what[112];

		if (!set)
			return;
		if (start == 0 && elem_add(set, &zero, 2, NFT_SET_ELEM_INTERVAL_END) == 0)
			count++;
		for (size_t i = start; i < end; i++) {
			uint16_t lo = htons(p->r[i].lo), hi1 = htons((uint16_t)(p->r[i].hi + 1));
			if (elem_add(set, &lo, 2, 0) < 0)
				c->err = -ENOMEM;
			count++;
			if (p->r[i].hi == 65535)
				continue;
			if (elem_add(set, &hi1, 2, NFT_SET_ELEM_INTERVAL_END) < 0)
				c->err = -ENOMEM;
			count++;
		}
		if (end > start)
			snprintf(what, sizeof(what), "%s ranges %zu-%zu (%u-%u .. %u-%u)", name,
				 start, end - 1, p->r[start].lo, p->r[start].hi,
				 p->r[end - 1].lo, p->r[end - 1].hi);
		else
			snprintf(what, sizeof(what), "%s (empty)", name);
		elems_send(c, set, count, what);
		nftnl_set_free(set);
		if (n == 0)
			break;
	}
}

static void chain_add(struct nft_build *c, const char *name, const char *type, uint32_t hook,
		      int32_t prio)
{
	struct nftnl_chain *ch = nftnl_chain_alloc();

	if (!ch) {
		c->err = -ENOMEM;
		return;
	}
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, c->table);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, type);
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	struct nlmsghdr *nlh = nft_batch_msg(c->b, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL,
					     1024);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, ch);
		nft_batch_msg_end(c->b, nlh, "add chain inet %s %s", c->table, name);
	}
	nftnl_chain_free(ch);
}

static void table_add(struct nft_build *c)
{
	const struct nft_sandbox *s = c->s;
	struct nftnl_table *t = nftnl_table_alloc();
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN);
	char comment[160];

	if (!t || !ud) {
		c->err = -ENOMEM;
		goto out;
	}
	snprintf(comment, sizeof(comment), "moat pid=%ld profile=%s if=%s", (long)s->owner,
		 s->profile ? s->profile : "-", s->host_ifname);
	nftnl_udata_put_strz(ud, NFTNL_UDATA_TABLE_COMMENT, comment);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, c->table);
	nftnl_table_set_data(t, NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(ud),
			     nftnl_udata_buf_len(ud));
	struct nlmsghdr *nlh = nft_batch_msg(c->b, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL,
					     1024);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		nft_batch_msg_end(c->b, nlh, "add table inet %s", c->table);
	}
out:
	nftnl_udata_buf_free(ud);
	nftnl_table_free(t);
}

static void counter_add(struct nft_build *c, const char *name)
{
	struct nftnl_obj *o = nftnl_obj_alloc();

	if (!o) {
		c->err = -ENOMEM;
		return;
	}
	nftnl_obj_set_u32(o, NFTNL_OBJ_FAMILY, NFPROTO_INET);
	nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, c->table);
	nftnl_obj_set_str(o, NFTNL_OBJ_NAME, name);
	nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
	struct nlmsghdr *nlh = nft_batch_msg(c->b, NFT_MSG_NEWOBJ, NLM_F_CREATE | NLM_F_EXCL, 512);
	if (nlh) {
		nftnl_obj_nlmsg_build_payload(nlh, o);
		nft_batch_msg_end(c->b, nlh, "add counter inet %s %s", c->table, name);
	}
	nftnl_obj_free(o);
}

static const uint8_t nd_types[] = { 135, 136, 133 };   /* ns, na, rs */
static const uint8_t mld_types[] = { 130, 131, 132, 143 };  /* query, report, done, v2 report */
static const uint8_t tcp_udp[] = { IPPROTO_TCP, IPPROTO_UDP };
static const uint8_t icmps[] = { IPPROTO_ICMP, IPPROTO_ICMPV6 };

/* The prerouting chain: everything the sandbox sends passes here first. */
static void chain_pre(struct nft_build *c, uint32_t tcp_id, uint32_t udp_id, uint32_t l4_id,
		      uint32_t l6_id)
{
	const struct nft_sandbox *s = c->s;
	static const char *const pre = "pre";
	uint32_t id;

	rule_begin(c, pre);
	e_ifname(c, NFT_META_IIFNAME, NFT_CMP_NEQ);
	e_verdict(c, NF_ACCEPT);
	rule_end(c, pre, "iifname != <if> accept");

	/* Neighbour discovery, or the sandbox cannot reach its gateway. */
	id = anon_set_u8(c, NFT_TYPE_ICMP6_TYPE, nd_types, ARRAY_SIZE(nd_types),
			 "{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }");
	rule_begin(c, pre);
	e_nfproto(c, NFPROTO_IPV6);
	e_meta_load(c, NFT_META_L4PROTO);
	e_cmp_u8(c, IPPROTO_ICMPV6);
	e_payload(c, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
	e_lookup(c, "__set%d", id);
	e_verdict(c, NF_ACCEPT);
	rule_end(c, pre, "icmpv6 type { nd-* } accept");

	/* The sandbox's kernel announces its multicast groups (MLD) whenever a
	 * link comes up: dropped without a log line, as they are not the
	 * workload's doing. */
	id = anon_set_u8(c, NFT_TYPE_ICMP6_TYPE, mld_types, ARRAY_SIZE(mld_types),
			 "{ mld-listener-query, mld-listener-report, mld-listener-done, "
			 "mld2-listener-report }");
	rule_begin(c, pre);
	e_nfproto(c, NFPROTO_IPV6);
	e_meta_load(c, NFT_META_L4PROTO);
	e_cmp_u8(c, IPPROTO_ICMPV6);
	e_payload(c, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
	e_lookup(c, "__set%d", id);
	e_verdict(c, NF_DROP);
	rule_end(c, pre, "icmpv6 type { mld-* } drop");

	/* DNS to any address goes to moat's filter, before the host-address
	 * guard so that DNS sent to the gateway is caught too. */
	for (int v6 = 0; v6 <= 1; v6++) {
		id = anon_set_u8(c, NFT_TYPE_INET_PROTOCOL, tcp_udp, 2, "{ tcp, udp }");
		rule_begin(c, pre);
		e_nfproto(c, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
		e_meta_load(c, NFT_META_L4PROTO);
		e_lookup(c, "__set%d", id);
		uint16_t dns = htons(53);
		e_payload(c, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
		e_cmp(c, NFT_CMP_EQ, &dns, 2);
		e_mark_tproxy(c, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4, v6 ? s->dns_port6 : s->dns_port4);
		e_verdict(c, NF_ACCEPT);
		rule_end(c, pre, v6 ? "th dport 53 tproxy ip6" : "th dport 53 tproxy ip");
	}

	/* The host's own addresses: never diverted to the proxy. */
	rule_begin(c, pre);
	e_fib_local(c);
	e_limited_log(c, "moat drop host");
	rule_end(c, pre, "fib daddr type local log");
	rule_begin(c, pre);
	e_fib_local(c);
	e_count_drop(c, "drop_host");
	rule_end(c, pre, "fib daddr type local drop");

	for (int v6 = 0; v6 <= 1; v6++) {
		rule_begin(c, pre);
		e_nfproto(c, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
		e_meta_load(c, NFT_META_L4PROTO);
		e_cmp_u8(c, IPPROTO_TCP);
		e_payload(c, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
		e_lookup(c, "tcp_ports", tcp_id);
		e_mark_tproxy(c, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4,
			      v6 ? s->tproxy_port6 : s->tproxy_port4);
		e_verdict(c, NF_ACCEPT);
		rule_end(c, pre, v6 ? "tcp dport @tcp_ports tproxy ip6" :
			 "tcp dport @tcp_ports tproxy ip");
	}

	if (s->udp) {
		for (int v6 = 0; v6 <= 1; v6++) {
			rule_begin(c, pre);
			e_nfproto(c, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
			e_payload(c, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 24 : 16, v6 ? 16 : 4);
			e_lookup(c, v6 ? "learned6" : "learned4", v6 ? l6_id : l4_id);
			e_meta_load(c, NFT_META_L4PROTO);
			e_cmp_u8(c, IPPROTO_UDP);
			e_payload(c, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
			e_lookup(c, "udp_ports", udp_id);
			e_verdict(c, NF_ACCEPT);
			rule_end(c, pre, v6 ? "ip6 daddr @learned6 udp dport @udp_ports accept" :
				 "ip daddr @learned4 udp dport @udp_ports accept");
		}
	}

	/* What is left is dropped: a rate-limited log, then a counted drop, so
	 * that the limit only ever limits logging. */
	static const struct { uint8_t proto; const char *prefix, *counter; } drops[] = {
		{ IPPROTO_TCP, "moat drop port", "drop_port" },
		{ IPPROTO_UDP, "moat drop udp", "drop_udp" },
		{ 0, "moat drop icmp", "drop_icmp" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(drops); i++) {
		for (int pass = 0; pass < 2; pass++) {
			if (!drops[i].proto)
				id = anon_set_u8(c, NFT_TYPE_INET_PROTOCOL, icmps, 2,
						 "{ icmp, ipv6-icmp }");
			rule_begin(c, pre);
			e_meta_load(c, NFT_META_L4PROTO);
			if (drops[i].proto)
				e_cmp_u8(c, drops[i].proto);
			else
				e_lookup(c, "__set%d", id);
			if (pass == 0)
				e_limited_log(c, drops[i].prefix);
			else
				e_count_drop(c, drops[i].counter);
			rule_end(c, pre, drops[i].prefix);
		}
	}
	rule_begin(c, pre);
	e_limited_log(c, "moat drop other");
	rule_end(c, pre, "log moat drop other");
	rule_begin(c, pre);
	e_count_drop(c, "drop_other");
	rule_end(c, pre, "counter name drop_other drop");
}

/* Forwarding to or from the sandbox: only learned UDP and its replies,
 * whatever the host's ip_forward says. */
static void chain_forward(struct nft_build *c, uint32_t udp_id, uint32_t l4_id, uint32_t l6_id)
{
	static const char *const fwd = "forward";

	if (c->s->udp) {
		for (int v6 = 0; v6 <= 1; v6++) {
			rule_begin(c, fwd);
			e_ifname(c, NFT_META_IIFNAME, NFT_CMP_EQ);
			e_nfproto(c, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
			e_payload(c, NFT_PAYLOAD_NETWORK_HEADER, v6 ? 24 : 16, v6 ? 16 : 4);
			e_lookup(c, v6 ? "learned6" : "learned4", v6 ? l6_id : l4_id);
			e_meta_load(c, NFT_META_L4PROTO);
			e_cmp_u8(c, IPPROTO_UDP);
			e_payload(c, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
			e_lookup(c, "udp_ports", udp_id);
			e_verdict(c, NF_ACCEPT);
			rule_end(c, fwd, v6 ? "iifname <if> ip6 daddr @learned6 udp accept" :
				 "iifname <if> ip daddr @learned4 udp accept");
		}
		uint32_t state = NFT_CT_ESTABLISHED | NFT_CT_RELATED;
		uint32_t zero = 0;
		rule_begin(c, fwd);
		e_ifname(c, NFT_META_OIFNAME, NFT_CMP_EQ);
		struct nftnl_expr *x = nftnl_expr_alloc("ct");
		if (x) {
			nftnl_expr_set_u32(x, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
			nftnl_expr_set_u32(x, NFTNL_EXPR_CT_DREG, NFT_REG_1);
		}
		add_expr(c, x);
		x = nftnl_expr_alloc("bitwise");
		if (x) {
			nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
			nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
			nftnl_expr_set_u32(x, NFTNL_EXPR_BITWISE_LEN, 4);
			nftnl_expr_set(x, NFTNL_EXPR_BITWISE_MASK, &state, 4);
			nftnl_expr_set(x, NFTNL_EXPR_BITWISE_XOR, &zero, 4);
		}
		add_expr(c, x);
		e_cmp(c, NFT_CMP_NEQ, &zero, 4);
		e_verdict(c, NF_ACCEPT);
		rule_end(c, fwd, "oifname <if> ct state established,related accept");
	}
	rule_begin(c, fwd);
	e_ifname(c, NFT_META_IIFNAME, NFT_CMP_EQ);
	e_count_drop(c, "drop_fwd");
	rule_end(c, fwd, "iifname <if> counter name drop_fwd drop");
	rule_begin(c, fwd);
	e_ifname(c, NFT_META_OIFNAME, NFT_CMP_EQ);
	e_count_drop(c, "drop_fwd");
	rule_end(c, fwd, "oifname <if> counter name drop_fwd drop");
}

/* Forwarded UDP leaves with the host's address.  Current kernels'
 * ip_output()/ip6_output() pass the input device to postrouting, so
 * iifname matches forwarded packets there. */
static void chain_post(struct nft_build *c)
{
	static const char *const post = "post";

	rule_begin(c, post);
	e_ifname(c, NFT_META_OIFNAME, NFT_CMP_NEQ);
	e_ifname(c, NFT_META_IIFNAME, NFT_CMP_EQ);
	struct nftnl_expr *x = nftnl_expr_alloc("masq");
	add_expr(c, x);
	rule_end(c, post, "oifname != <if> iifname <if> masquerade");
}

static int nft_check_sandbox(const struct nft_sandbox *s, struct moat_error *e)
{
	int ret = nft_check_id(s->id, e);

	if (ret < 0)
		return ret;
	if (!s->host_ifname || !s->host_ifname[0] || strlen(s->host_ifname) >= IFNAMSIZ)
		return moat_error_set(e, EINVAL, "nftables: bad interface name \"%s\"",
				      s->host_ifname ? s->host_ifname : "");
	if (s->profile && (strlen(s->profile) > 63 || strpbrk(s->profile, " \"\\")))
		return moat_error_set(e, EINVAL, "nftables: profile name \"%s\" cannot be "
				      "recorded in the table comment", s->profile);
	if (!s->tproxy_port4 || !s->tproxy_port6 || !s->dns_port4 || !s->dns_port6)
		return moat_error_set(e, EINVAL, "nftables: a listener port is 0");
	ret = ports_check("tcp_ports", s->tcp_ports, e);
	if (ret < 0 || !s->udp)
		return ret;
	return ports_check("udp_ports", s->udp_ports, e);
}

int nft_install(const struct nft_sandbox *s, struct moat_error *e)
{
	_cleanup_batch_ struct nft_batch *b = NULL;
	struct nft_build c = { .s = s };
	uint32_t tcp_id, udp_id = 0, l4_id = 0, l6_id = 0;
	int ret;

	ret = nft_check_sandbox(s, e);
	if (ret < 0)
		return ret;
	if (nft_batch_new(&b) < 0)
		return moat_error_errno(e, ENOMEM, "nftables");
	c.b = b;
	snprintf(c.table, sizeof(c.table), "moat_%s", s->id);
	memcpy(c.ifname, s->host_ifname, strlen(s->host_ifname));

	table_add(&c);
	for (size_t i = 0; i < ARRAY_SIZE(nft_counter_names); i++)
		counter_add(&c, nft_counter_names[i]);
	tcp_id = set_add(&c, "tcp_ports", NFT_SET_INTERVAL, NFT_TYPE_INET_SERVICE, 2, 0);
	ports_elems(&c, "tcp_ports", tcp_id, s->tcp_ports);
	if (s->udp) {
		udp_id = set_add(&c, "udp_ports", NFT_SET_INTERVAL, NFT_TYPE_INET_SERVICE, 2, 0);
		ports_elems(&c, "udp_ports", udp_id, s->udp_ports);
		l4_id = set_add(&c, "learned4", NFT_SET_TIMEOUT, NFT_TYPE_IPADDR, 4, 0);
		l6_id = set_add(&c, "learned6", NFT_SET_TIMEOUT, NFT_TYPE_IP6ADDR, 16, 0);
	}
	chain_add(&c, "pre", "filter", NF_INET_PRE_ROUTING, NFT_PRIO_MANGLE);
	chain_add(&c, "forward", "filter", NF_INET_FORWARD, NFT_PRIO_FILTER);
	if (s->udp)
		chain_add(&c, "post", "nat", NF_INET_POST_ROUTING, NFT_PRIO_SRCNAT);
	chain_pre(&c, tcp_id, udp_id, l4_id, l6_id);
	chain_forward(&c, udp_id, l4_id, l6_id);
	if (s->udp)
		chain_post(&c);
	if (c.err)
		return moat_error_errno(e, -c.err, "nftables: building table %s", c.table);
	return nft_batch_commit(b, 0, e);
}

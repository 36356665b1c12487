/* The compiled matcher: every connection and every DNS question asks it.
 *
 * Names: two hash tables, exact names and wildcard suffixes.  A query walks
 * its own label suffixes ("a.b.example.com", "b.example.com", "example.com",
 * "com"), so a lookup costs O(labels) hash probes whatever the profile size.
 * Addresses: a linear scan over the few IP/CIDR rules. */
#include "common/moat.h"
#include "profiles/internal.h"

#include <arpa/inet.h>
#include <string.h>

/* ---- names ---- */

int name_normalize(const char *s, size_t len, char *out, const char **why)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0) {
		*why = "empty name";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)s[i] >= 0x80) {
			*why = "non-ASCII name: write it in punycode (xn--...)";
			return -EINVAL;
		}
	}
	if (len > POLICY_NAME_MAX) {
		*why = "name longer than 253 bytes";
		return -EINVAL;
	}
	size_t label = 0;               /* start of the current label */
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? s[i] : '.';
		if (c == '.') {
			size_t n = i - label;
			if (n == 0) {
				*why = "empty label";
				return -EINVAL;
			}
			if (n > 63) {
				*why = "label longer than 63 bytes";
				return -EINVAL;
			}
			if (s[label] == '-' || s[i - 1] == '-') {
				*why = "label starts or ends with '-'";
				return -EINVAL;
			}
			label = i + 1;
			if (i < len)
				out[i] = '.';
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
			*why = c == '*' ? "wildcard allowed only as a leading \"*.\""
					: "invalid character (letters, digits, '-' and '.' only)";
			return -EINVAL;
		}
		out[i] = c;
	}
	/* label now points past the end; find the last label's first byte */
	size_t last = len;
	while (last > 0 && out[last - 1] != '.')
		last--;
	if (out[last] >= '0' && out[last] <= '9') {
		*why = "numeric name: not a canonical IPv4 address";
		return -EINVAL;
	}
	out[len] = '\0';
	return (int)len;
}

/* ---- addresses ---- */

int ip_literal(const char *s, size_t len, uint8_t addr[16])
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1)
		return AF_INET;
	if (memchr(buf, ':', len) && inet_pton(AF_INET6, buf, addr) == 1)
		return AF_INET6;
	return 0;
}

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int addr_unmap(int family, const void *addr, uint8_t out[16])
{
	memset(out, 0, 16);
	if (family == AF_INET6 && memcmp(addr, v4mapped_prefix, 12) == 0) {
		memcpy(out, (const uint8_t *)addr + 12, 4);
		return AF_INET;
	}
	memcpy(out, addr, family == AF_INET ? 4 : 16);
	return family;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;
	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool addr_rule_covers(const struct addr_rule *r, int family, const uint8_t *addr)
{
	uint8_t a[16];
	int fam = addr_unmap(family, addr, a);
	return fam == r->family && prefix_eq(r->addr, a, r->prefix);
}

enum addr_class policy_addr_class(int family, const void *addr)
{
	uint8_t a[16];
	int fam = addr_unmap(family, addr, a);
	if (fam == AF_INET) {
		if (a[0] == 0 || a[0] >= 224)
			return ADDR_UNSPECIFIED;        /* this-net, multicast, reserved, broadcast */
		if (a[0] == 127)
			return ADDR_LOOPBACK;
		if (a[0] == 169 && a[1] == 254)
			return ADDR_LINK_LOCAL;
		if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
		    (a[0] == 192 && a[1] == 168))
			return ADDR_PRIVATE;
		if (a[0] == 100 && (a[1] & 0xc0) == 64)
			return ADDR_CGNAT;
		return ADDR_PUBLIC;
	}
	if (fam != AF_INET6)
		return ADDR_UNSPECIFIED;
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	if (memcmp(a, nat64, 12) == 0)          /* 64:ff9b::/96 reaches the embedded v4 */
		return policy_addr_class(AF_INET, a + 12);
	static const uint8_t zero[16];
	if (memcmp(a, zero, 15) == 0 && a[15] == 1)
		return ADDR_LOOPBACK;
	if (memcmp(a, zero, 12) == 0)           /* ::, and deprecated ::a.b.c.d */
		return ADDR_UNSPECIFIED;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return ADDR_LINK_LOCAL;
	if ((a[0] & 0xfe) == 0xfc)
		return ADDR_ULA;
	if (a[0] == 0xff)
		return ADDR_UNSPECIFIED;        /* multicast */
	return ADDR_PUBLIC;
}

const char *policy_addr_class_name(enum addr_class c)
{
	switch (c) {
	case ADDR_PUBLIC: return "public";
	case ADDR_LOOPBACK: return "loopback";
	case ADDR_LINK_LOCAL: return "link-local";
	case ADDR_PRIVATE: return "private";
	case ADDR_CGNAT: return "cgnat";
	case ADDR_ULA: return "ula";
	case ADDR_UNSPECIFIED: return "unspecified";
	}
	return "unspecified";
}

bool policy_private_allowed(const struct policy *p, int family, const void *addr)
{
	enum addr_class c = policy_addr_class(family, addr);
	if (c == ADDR_PUBLIC)
		return true;
	if (p->private_classes & (1u << c))
		return true;
	for (size_t i = 0; i < p->n_private_ok; i++)
		if (addr_rule_covers(&p->private_ok[i], family, addr))
			return true;
	return false;
}

/* ---- port sets ---- */

bool port_set_has(const struct port_set *s, uint16_t port)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (port < s->r[mid].lo)
			hi = mid;
		else if (port > s->r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

void port_set_free(struct port_set *s)
{
	free(s->r);
	s->r = NULL;
	s->n = 0;
}

int port_set_add(struct port_set *s, uint16_t lo, uint16_t hi)
{
	struct port_range *r = realloc(s->r, (s->n + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	s->r = r;
	/* insert sorted by lo, then merge overlapping or adjacent neighbours */
	size_t i = s->n;
	while (i > 0 && r[i - 1].lo > lo) {
		r[i] = r[i - 1];
		i--;
	}
	r[i] = (struct port_range){ lo, hi };
	s->n++;
	size_t w = 0;
	for (size_t k = 1; k < s->n; k++) {
		if ((unsigned)r[k].lo <= (unsigned)r[w].hi + 1) {
			if (r[k].hi > r[w].hi)
				r[w].hi = r[k].hi;
		} else {
			r[++w] = r[k];
		}
	}
	s->n = w + 1;
	return 0;
}

int port_set_merge(struct port_set *dst, const struct port_set *src)
{
	for (size_t i = 0; i < src->n; i++) {
		int r = port_set_add(dst, src->r[i].lo, src->r[i].hi);
		if (r < 0)
			return r;
	}
	return 0;
}

int policy_ports(const struct policy *p, enum policy_proto proto, struct port_set *out)
{
	out->r = NULL;
	out->n = 0;
	bool on = proto == POLICY_TCP ? (p->tcp || p->allow_all) : (p->udp || p->allow_all);
	if (!on)
		return 0;
	if (p->allow_all)
		return port_set_add(out, 1, 65535);
	bool global = false;
	int r = 0;
	for (size_t i = 0; i < p->n_hosts && r == 0; i++) {
		if (p->hosts[i].ports.n)
			r = port_set_merge(out, &p->hosts[i].ports);
		else
			global = true;
	}
	for (size_t i = 0; i < p->n_addrs && r == 0; i++) {
		if (p->addrs[i].ports.n)
			r = port_set_merge(out, &p->addrs[i].ports);
		else
			global = true;
	}
	if (r == 0 && global)
		r = port_set_merge(out, &p->ports);
	if (r < 0)
		port_set_free(out);
	return r;
}

/* ---- hash tables ---- */

static uint32_t hash_name(const char *s, size_t len)
{
	uint32_t h = 2166136261u;       /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 16777619u;
	}
	return h;
}

static struct name_slot *slot_find(struct name_slot *t, size_t cap, const char *key, size_t len)
{
	if (!t)
		return NULL;
	size_t i = hash_name(key, len) & (cap - 1);
	for (;;) {
		struct name_slot *s = &t[i];
		if (!s->key || (s->klen == len && memcmp(s->key, key, len) == 0))
			return s;
		i = (i + 1) & (cap - 1);
	}
}

static int table_alloc(struct name_slot **t, size_t *cap, size_t n)
{
	size_t c = 8;
	while (c < 2 * n)
		c *= 2;
	*t = calloc(c, sizeof(**t));
	if (!*t)
		return -ENOMEM;
	*cap = c;
	return 0;
}

int policy_index_init(struct policy_index *idx, size_t n)
{
	if (table_alloc(&idx->exact, &idx->exact_cap, n) < 0 ||
	    table_alloc(&idx->wild, &idx->wild_cap, n) < 0)
		return -ENOMEM;
	idx->next = malloc((n + 1) * sizeof(int));
	return idx->next ? 0 : -ENOMEM;
}

static bool same_ports(const struct port_set *a, const struct port_set *b)
{
	return a->n == b->n && (a->n == 0 || memcmp(a->r, b->r, a->n * sizeof(*a->r)) == 0);
}

int policy_index_add(const struct policy *p, struct policy_index *idx, size_t k)
{
	const struct host_rule *h = &p->hosts[k];
	size_t len = strlen(h->name);
	struct name_slot *s = h->subdomains ? slot_find(idx->wild, idx->wild_cap, h->name, len)
					    : slot_find(idx->exact, idx->exact_cap, h->name, len);
	idx->next[k] = -1;
	if (!s->key) {
		s->key = h->name;
		s->klen = len;
		s->first = (int)k;
		return -1;
	}
	/* append at the tail so a chain lists rules in profile order */
	int t = s->first;
	for (;;) {
		if (same_ports(&p->hosts[t].ports, &h->ports))
			return t;
		if (idx->next[t] < 0)
			break;
		t = idx->next[t];
	}
	idx->next[t] = (int)k;
	return -1;
}

void policy_index_free(struct policy_index *idx)
{
	if (!idx)
		return;
	free(idx->exact);
	free(idx->wild);
	free(idx->next);
	for (size_t i = 0; i < idx->n_warnings; i++)
		free(idx->warnings[i]);
	free(idx->warnings);
	free(idx);
}

/* ---- decisions ---- */

static void decide(struct policy_decision *d, bool allow, const char *reason, const char *rule)
{
	d->allow = allow;
	d->reason = reason;
	d->rule = rule;
}

static bool transport_ok(const struct policy *p, enum policy_proto proto)
{
	if (p->allow_all)
		return proto == POLICY_TCP || proto == POLICY_UDP;
	return (proto == POLICY_TCP && p->tcp) || (proto == POLICY_UDP && p->udp);
}

static bool ports_ok(const struct policy *p, const struct port_set *own, uint16_t port)
{
	return port_set_has(own->n ? own : &p->ports, port);
}

/* Calls back for every host rule covering name (exact rules first, then the
 * most specific wildcard suffix outward); stops when fn returns true. */
static bool walk_rules(const struct policy *p, const char *name, size_t len,
		       bool (*fn)(const struct host_rule *h, void *arg), void *arg)
{
	const struct policy_index *idx = p->index;
	if (!idx)
		return false;
	struct name_slot *s = slot_find(idx->exact, idx->exact_cap, name, len);
	for (int k = s && s->key ? s->first : -1; k >= 0; k = idx->next[k])
		if (fn(&p->hosts[k], arg))
			return true;
	for (size_t off = 0; off < len;) {
		s = slot_find(idx->wild, idx->wild_cap, name + off, len - off);
		for (int k = s && s->key ? s->first : -1; k >= 0; k = idx->next[k])
			if (fn(&p->hosts[k], arg))
				return true;
		const char *dot = memchr(name + off, '.', len - off);
		if (!dot)
			break;
		off = (size_t)(dot - name) + 1;
	}
	return false;
}

struct host_walk {
	const struct policy *p;
	uint16_t port;
	const struct host_rule *named;  /* first rule covering the name */
	const struct host_rule *allowed;
};

static bool host_walk_fn(const struct host_rule *h, void *arg)
{
	struct host_walk *w = arg;
	if (!w->named)
		w->named = h;
	if (ports_ok(w->p, &h->ports, w->port)) {
		w->allowed = h;
		return true;
	}
	return false;
}

void policy_match_host(const struct policy *p, const char *name, size_t len, uint16_t port,
		       enum policy_proto proto, struct policy_decision *d)
{
	char norm[POLICY_NAME_MAX + 2];
	const char *why;
	if (len > POLICY_NAME_MAX + 1 || name_normalize(name, len, norm, &why) < 0) {
		decide(d, false, "bad-name", NULL);
		return;
	}
	if (!transport_ok(p, proto)) {
		decide(d, false, "transport-not-allowed", NULL);
		return;
	}
	if (p->allow_all) {
		decide(d, true, "allow-all", NULL);
		return;
	}
	struct host_walk w = { .p = p, .port = port };
	walk_rules(p, norm, strlen(norm), host_walk_fn, &w);
	if (w.allowed)
		decide(d, true, "allow-host", w.allowed->source);
	else if (w.named)
		decide(d, false, "port-not-allowed", w.named->source);
	else
		decide(d, false, "host-not-allowed", NULL);
}

static bool any_rule_fn(const struct host_rule *h, void *arg)
{
	return true;
}

bool policy_name_resolvable(const struct policy *p, const char *name, size_t len)
{
	char norm[POLICY_NAME_MAX + 2];
	const char *why;
	if (len > POLICY_NAME_MAX + 1 || name_normalize(name, len, norm, &why) < 0)
		return false;
	if (p->allow_all)
		return true;
	return walk_rules(p, norm, strlen(norm), any_rule_fn, NULL);
}

void policy_match_addr(const struct policy *p, int family, const void *addr, uint16_t port,
		       enum policy_proto proto, struct policy_decision *d)
{
	if (family != AF_INET && family != AF_INET6) {
		decide(d, false, "addr-not-allowed", NULL);
		return;
	}
	if (!transport_ok(p, proto)) {
		decide(d, false, "transport-not-allowed", NULL);
		return;
	}
	if (p->allow_all) {
		decide(d, true, "allow-all", NULL);
		return;
	}
	const struct addr_rule *named = NULL;
	for (size_t i = 0; i < p->n_addrs; i++) {
		const struct addr_rule *r = &p->addrs[i];
		if (!addr_rule_covers(r, family, addr))
			continue;
		if (ports_ok(p, &r->ports, port)) {
			decide(d, true, "allow-addr", r->source);
			return;
		}
		if (!named)
			named = r;
	}
	if (named)
		decide(d, false, "port-not-allowed", named->source);
	else
		decide(d, false, "addr-not-allowed", NULL);
}

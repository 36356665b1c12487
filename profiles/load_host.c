/* The outbound address and port lists of a profile: allow_host entries
 * (names, wildcards, IP literals and CIDRs, each with an optional port or
 * range), allow_port and allow_private.  Messages and warnings go through
 * load.c's load_fail() and load_warn(). */
#include "common/moat.h"
#include "profiles/internal.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <string.h>

/* "N" or "LO-HI", decimal, 1..65535, LO <= HI. */
static const char *parse_port_spec(const char *s, uint16_t *lo, uint16_t *hi)
{
	char buf[16];
	size_t len = strlen(s);
	if (len == 0)
		return "empty port";
	if (len >= sizeof(buf))
		return "not a port or LO-HI range";
	memcpy(buf, s, len + 1);
	char *dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	unsigned long long a, b;
	int r = moat_parse_uint(buf, 1, 65535, &a);
	if (r == 0 && dash)
		r = moat_parse_uint(dash + 1, 1, 65535, &b);
	else
		b = a;
	if (r == -ERANGE)
		return "port out of range 1-65535";
	if (r < 0)
		return "not a port or LO-HI range";
	if (a > b)
		return "reversed port range";
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return NULL;
}

/* ---- network.outbound.allow_host ---- */

/* "ADDR" or "ADDR/LEN" for family-checked CIDRs; host bits must be clear. */
static int parse_cidr(struct ctx *c, const char *field, const cJSON *v, const char *s, size_t len,
		      bool want_v6, struct addr_rule *r)
{
	char buf[INET6_ADDRSTRLEN + 8];
	if (len >= sizeof(buf))
		return load_fail(c, field, v, "not an IP address or CIDR");
	memcpy(buf, s, len);
	buf[len] = '\0';
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	uint8_t a[16];
	int fam = ip_literal(buf, strlen(buf), a);
	if (!fam)
		return load_fail(c, field, v, "not a canonical IP address");
	if (want_v6 && fam != AF_INET6)
		return load_fail(c, field, v, "brackets hold an IPv6 address only");
	unsigned max = fam == AF_INET ? 32 : 128;
	unsigned long long prefix = max;
	if (slash && moat_parse_uint(slash + 1, 0, max, &prefix) < 0)
		return load_fail(c, field, v, "prefix length must be 0-%u", max);
	uint8_t net[16] = { 0 };
	for (unsigned i = 0; i < prefix; i++)
		net[i / 8] |= a[i / 8] & (uint8_t)(0x80 >> (i % 8));
	if (memcmp(net, a, 16) != 0) {
		char ns[INET6_ADDRSTRLEN];
		inet_ntop(fam, net, ns, sizeof(ns));
		return load_fail(c, field, v, "host bits set (the network is %s/%llu)", ns,
				 prefix);
	}
	/* ::ffff:a.b.c.d means the IPv4 address: keep one form for matching */
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
	if (fam == AF_INET6 && prefix >= 96 && memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		memset(a + 4, 0, 12);
		fam = AF_INET;
		prefix -= 96;
	}
	r->family = fam;
	memcpy(r->addr, a, 16);
	r->prefix = (uint8_t)prefix;
	return 0;
}

static bool same_addr_rule(const struct addr_rule *a, const struct addr_rule *b)
{
	return a->family == b->family && a->prefix == b->prefix && memcmp(a->addr, b->addr, 16) == 0 &&
	       a->ports.n == b->ports.n &&
	       (a->ports.n == 0 || memcmp(a->ports.r, b->ports.r, a->ports.n * sizeof(*a->ports.r)) == 0);
}

static int add_addr_rule(struct ctx *c, const char *field, const cJSON *v, struct addr_rule *r)
{
	struct policy *p = c->p;
	for (size_t i = 0; i < p->n_addrs; i++) {
		if (same_addr_rule(&p->addrs[i], r)) {
			port_set_free(&r->ports);
			return load_warn(c, field, v, "duplicate of allow_host[%d]",
					 p->addrs[i].index);
		}
	}
	struct addr_rule *a = realloc(p->addrs, (p->n_addrs + 1) * sizeof(*a));
	if (!a) {
		port_set_free(&r->ports);
		return load_nomem(c);
	}
	p->addrs = a;
	if (!(r->source = strdup(v->valuestring))) {
		port_set_free(&r->ports);
		return load_nomem(c);
	}
	a[p->n_addrs++] = *r;
	return 0;
}

static int host_name_rule(struct ctx *c, const char *field, const cJSON *v, const char *s,
			  size_t len, struct port_set *ports, int index)
{
	struct policy *p = c->p;
	if (len == 1 && s[0] == '*')
		return load_fail(c, field, v,
				 "\"*\" alone is not a host (use insecure_allow_all)");
	if (len == 1 && s[0] == '.')
		return load_fail(c, field, v, "\".\" alone is not a host");
	bool sub = false;
	if (len >= 2 && s[0] == '*' && s[1] == '.') {
		sub = true;
		s += 2;
		len -= 2;
	} else if (len >= 1 && s[0] == '.') {
		sub = true;
		s++;
		len--;
	}
	if (len == 0)
		return load_fail(c, field, v, "empty name after the wildcard");
	char norm[POLICY_NAME_MAX + 2];
	const char *why;
	if (len > POLICY_NAME_MAX + 1)
		return load_fail(c, field, v, "name longer than 253 bytes");
	if (name_normalize(s, len, norm, &why) < 0) {
		struct in_addr in;
		char buf[POLICY_NAME_MAX + 2];
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (!sub && strncmp(why, "numeric", 7) == 0 && inet_aton(buf, &in))
			return load_fail(c, field, v, "not a canonical IPv4 address (write %s)",
					 inet_ntoa(in));
		return load_fail(c, field, v, "%s", why);
	}
	size_t k = p->n_hosts;
	struct host_rule *h = &p->hosts[k];
	*h = (struct host_rule){ .subdomains = sub, .ports = *ports, .index = index };
	*ports = (struct port_set){ 0 };
	h->name = strdup(norm);
	h->source = strdup(v->valuestring);
	if (!h->name || !h->source) {
		free(h->name);
		free(h->source);
		port_set_free(&h->ports);
		return load_nomem(c);
	}
	int dup = policy_index_add(p, c->idx, k);
	if (dup >= 0) {
		free(h->name);
		free(h->source);
		port_set_free(&h->ports);
		return load_warn(c, field, v, "duplicate of allow_host[%d]", p->hosts[dup].index);
	}
	p->n_hosts++;
	return 0;
}

/* Entry forms: NAME, .NAME, *.NAME, IPV4, IPV4/LEN, IPV6, IPV6/LEN, each of
 * the first five optionally ":PORT" or ":LO-HI"; an IPv6 address with a port
 * is written in brackets: "[2001:2::1]:443", "[2001:2::/48]:443". */
static int host_entry(struct ctx *c, const char *field, const cJSON *v, int index)
{
	const char *s = v->valuestring;
	size_t len = strlen(s);
	const char *host = s, *port = NULL;
	size_t hlen = len;
	bool v6 = false;
	if (len == 0)
		return load_fail(c, field, v, "empty host");
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return load_fail(c, field, v, "missing ']' after an IPv6 address");
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			return load_fail(c, field, v, "expected ':PORT' after ']'");
		v6 = true;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':')) {
			v6 = true;      /* bare IPv6: no port (use brackets) */
		} else if (colon) {
			hlen = (size_t)(colon - s);
			port = colon + 1;
		}
	}
	struct port_set ports = { 0 };
	if (port) {
		uint16_t lo, hi;
		const char *why = parse_port_spec(port, &lo, &hi);
		if (why)
			return load_fail(c, field, v, "%s", why);
		if (port_set_add(&ports, lo, hi) < 0)
			return load_nomem(c);
	}
	uint8_t tmp[16];
	if (v6 || memchr(host, '/', hlen) || ip_literal(host, hlen, tmp) == AF_INET) {
		struct addr_rule r = { .ports = ports, .index = index };
		int ret = parse_cidr(c, field, v, host, hlen, v6, &r);
		if (ret < 0) {
			port_set_free(&r.ports);
			return ret;
		}
		return add_addr_rule(c, field, v, &r);
	}
	int r = host_name_rule(c, field, v, host, hlen, &ports, index);
	port_set_free(&ports);
	return r;
}

int load_k_allow_host(struct ctx *c, const char *field, const cJSON *v)
{
	if (!cJSON_IsArray(v))
		return load_fail(c, field, v, "expected an array of strings");
	size_t n = (size_t)cJSON_GetArraySize(v);
	struct policy *p = c->p;
	if (p->hosts)
		return load_fail(c, field, NULL, "duplicate key");
	p->hosts = calloc(n + 1, sizeof(*p->hosts));
	if (!p->hosts || policy_index_init(c->idx, n) < 0)
		return load_nomem(c);
	int i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		char sub[192];
		snprintf(sub, sizeof(sub), "%s[%d]", field, i);
		if (!cJSON_IsString(it))
			return load_fail(c, sub, it, "expected a string");
		int r = host_entry(c, sub, it, i);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- network.outbound.allow_port ---- */

int load_k_allow_port(struct ctx *c, const char *field, const cJSON *v)
{
	if (!cJSON_IsArray(v))
		return load_fail(c, field, v, "expected an array of ports");
	int i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		char sub[192];
		snprintf(sub, sizeof(sub), "%s[%d]", field, i);
		uint16_t lo, hi;
		if (cJSON_IsNumber(it)) {
			double d = it->valuedouble;
			if (d != (double)(long long)d)
				return load_fail(c, sub, it, "port must be an integer");
			if (d < 1 || d > 65535)
				return load_fail(c, sub, it, "port out of range 1-65535");
			lo = hi = (uint16_t)d;
		} else if (cJSON_IsString(it)) {
			const char *why = parse_port_spec(it->valuestring, &lo, &hi);
			if (why)
				return load_fail(c, sub, it, "%s", why);
		} else {
			return load_fail(c, sub, it,
					 "expected a port number or a \"LO-HI\" string");
		}
		if (port_set_has(&c->p->ports, lo) && port_set_has(&c->p->ports, hi)) {
			bool whole = true;
			for (unsigned q = lo; q <= hi && whole; q++)
				whole = port_set_has(&c->p->ports, (uint16_t)q);
			if (whole) {
				int r = load_warn(c, sub, it, "duplicate port");
				if (r < 0)
					return r;
				continue;
			}
		}
		if (port_set_add(&c->p->ports, lo, hi) < 0)
			return load_nomem(c);
	}
	return 0;
}

/* ---- network.outbound.allow_private ---- */

static const struct {
	const char *name;
	enum addr_class cls;
} private_keywords[] = {
	{ "loopback", ADDR_LOOPBACK }, { "link-local", ADDR_LINK_LOCAL },
	{ "private", ADDR_PRIVATE },   { "cgnat", ADDR_CGNAT },
	{ "ula", ADDR_ULA },
};

int load_k_allow_private(struct ctx *c, const char *field, const cJSON *v)
{
	if (!cJSON_IsArray(v))
		return load_fail(c, field, v, "expected an array of strings");
	struct policy *p = c->p;
	int i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		char sub[192];
		snprintf(sub, sizeof(sub), "%s[%d]", field, i);
		if (!cJSON_IsString(it))
			return load_fail(c, sub, it, "expected a keyword or a CIDR");
		const char *s = it->valuestring;
		size_t k = 0;
		while (k < ARRAY_SIZE(private_keywords) && strcmp(private_keywords[k].name, s) != 0)
			k++;
		if (k < ARRAY_SIZE(private_keywords)) {
			unsigned bit = 1u << private_keywords[k].cls;
			int r = (p->private_classes & bit) ?
				load_warn(c, sub, it, "duplicate entry") : 0;
			if (r < 0)
				return r;
			p->private_classes |= bit;
			continue;
		}
		struct addr_rule r = { .index = i };
		uint8_t tmp[16];
		if (!strchr(s, '/') && !ip_literal(s, strlen(s), tmp))
			return load_fail(c, sub, it, "expected loopback, link-local, private, "
					 "cgnat, ula or a CIDR");
		int ret = parse_cidr(c, sub, it, s, strlen(s), false, &r);
		if (ret < 0)
			return ret;
		bool dup = false;
		for (size_t j = 0; j < p->n_private_ok && !dup; j++)
			dup = same_addr_rule(&p->private_ok[j], &r);
		if (dup) {
			ret = load_warn(c, sub, it, "duplicate entry");
			if (ret < 0)
				return ret;
			continue;
		}
		if (policy_addr_class(r.family, r.addr) == ADDR_PUBLIC && r.prefix > 0) {
			ret = load_warn(c, sub, it,
					"a public network: allow_private changes nothing for it");
			if (ret < 0)
				return ret;
		}
		struct addr_rule *a = realloc(p->private_ok, (p->n_private_ok + 1) * sizeof(*a));
		if (!a)
			return load_nomem(c);
		p->private_ok = a;
		if (!(r.source = strdup(s)))
			return load_nomem(c);
		a[p->n_private_ok++] = r;
	}
	return 0;
}

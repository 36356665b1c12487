/* The proxy's decision for one connection or one HTTP request: a pure
 * function of the policy, the destination and what the client sent.
 *
 * Order (security model 3, 4, 6):
 *   1. destination class (loopback, link-local, RFC 1918, CGNAT, ULA,
 *      unspecified) unless the profile opens it, then the enforcement host's
 *      own addresses: these hold under insecure_allow_all too;
 *   2. insecure_allow_all: allow everything else (the event still says what);
 *   3. TLS: ECH -> "ech"; no SNI -> only an address rule can allow; else the
 *      SNI against the name rules;
 *      HTTP: CONNECT -> "connect", Upgrade: h2c -> "h2c", a Host port other
 *      than the destination port -> "host-port-mismatch", no Host -> only an
 *      address rule; else the Host against the name rules;
 *      anything else -> only an address rule;
 *   4. a destination that an address rule allows is allowed whatever the name
 *      (an IP-literal allowance: no anti-fronting needed);
 *   5. anti-fronting: an allowance by name needs the destination to be an
 *      address the name resolves to (relayed DNS answers, else moat's own
 *      forward lookup).  Never reverse DNS. */
#include "tproxy/proxy_internal.h"
#include "tproxy/learned.h"
#include "profiles/profile.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static const char *class_reason(enum addr_class c)
{
	switch (c) {
	case ADDR_LOOPBACK:
		return "dst-loopback";
	case ADDR_LINK_LOCAL:
		return "dst-link-local";
	case ADDR_PRIVATE:
		return "dst-private";
	case ADDR_CGNAT:
		return "dst-cgnat";
	case ADDR_ULA:
		return "dst-ula";
	case ADDR_UNSPECIFIED:
		return "dst-unspecified";
	case ADDR_PUBLIC:
		break;
	}
	return "dst-reserved";
}

static bool is_local(const struct decide_in *in, int family, const uint8_t *dst)
{
	for (size_t i = 0; i < in->n_local_addrs; i++) {
		const struct sockaddr_storage *ss = &in->local_addrs[i];
		if (ss->ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
			if (family == AF_INET && memcmp(&sin->sin_addr, dst, 4) == 0)
				return true;
		} else if (ss->ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
			const uint8_t *a = s6->sin6_addr.s6_addr;
			if (family == AF_INET6 && memcmp(a, dst, 16) == 0)
				return true;
			if (family == AF_INET && memcmp(a, v4mapped_prefix, 12) == 0 &&
			    memcmp(a + 12, dst, 4) == 0)
				return true;
		}
	}
	return false;
}

static bool in_resolved(const struct resolved *r, int family, const uint8_t *dst)
{
	size_t alen = family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < r->n && i < RESOLVED_MAX; i++)
		if (r->a[i].family == family && memcmp(r->a[i].addr, dst, alen) == 0)
			return true;
	return false;
}

static void set(struct decision *d, enum verdict v, const char *reason, const char *rule)
{
	d->verdict = v;
	d->reason = reason;
	d->rule = rule;
}

/* Only an address rule can allow this connection. */
static void by_addr(const struct decide_in *in, int family, const uint8_t *dst,
		    const char *deny_reason, struct decision *d)
{
	struct policy_decision pd = { 0 };
	policy_match_addr(in->policy, family, dst, in->dport, POLICY_TCP, &pd);
	if (pd.allow)
		set(d, VERDICT_ALLOW, pd.reason ? pd.reason : "allow-addr", pd.rule);
	else
		set(d, VERDICT_DENY, deny_reason, NULL);
}

/* A name: its rules, else an address rule, then anti-fronting. */
static void by_name(const struct decide_in *in, int family, const uint8_t *dst, bool tls,
		    struct decision *d)
{
	struct policy_decision pd = { 0 };
	policy_match_host(in->policy, d->name, d->name_len, in->dport, POLICY_TCP, &pd);
	if (!pd.allow) {
		struct policy_decision ad = { 0 };
		policy_match_addr(in->policy, family, dst, in->dport, POLICY_TCP, &ad);
		if (ad.allow)
			set(d, VERDICT_ALLOW, ad.reason ? ad.reason : "allow-addr", ad.rule);
		else
			set(d, VERDICT_DENY, pd.reason ? pd.reason : "host-not-allowed", pd.rule);
		return;
	}
	d->by_name = true;
	d->rule = pd.rule;
	if (!(in->learned && learned_has(in->learned, d->name, d->name_len, family, dst))) {
		/* an address rule allows the destination whatever the name: no lookup needed */
		struct policy_decision ad = { 0 };
		policy_match_addr(in->policy, family, dst, in->dport, POLICY_TCP, &ad);
		if (ad.allow) {
			d->by_name = false;
			set(d, VERDICT_ALLOW, ad.reason ? ad.reason : "allow-addr", ad.rule);
			return;
		}
	}
	const char *mismatch = tls ? "sni-ip-mismatch" : "host-ip-mismatch";
	if (in->learned && learned_has(in->learned, d->name, d->name_len, family, dst)) {
		d->fronting_checked = true;
		set(d, VERDICT_ALLOW, pd.reason ? pd.reason : "allow-host", pd.rule);
	} else if (in->resolved) {
		d->fronting_checked = true;
		if (in_resolved(in->resolved, family, dst))
			set(d, VERDICT_ALLOW, pd.reason ? pd.reason : "allow-host", pd.rule);
		else
			set(d, VERDICT_DENY, mismatch, pd.rule);
	} else if (in->resolve_fallback) {
		set(d, VERDICT_RESOLVE, "resolving", pd.rule);
	} else {
		d->fronting_checked = true;
		set(d, VERDICT_DENY, mismatch, pd.rule);
	}
}

void tproxy_decide(const struct decide_in *in, struct decision *d)
{
	memset(d, 0, sizeof(*d));
	int family = in->family;
	const uint8_t *dst = in->dst;
	if (family == AF_INET6 && memcmp(dst, v4mapped_prefix, 12) == 0) {
		family = AF_INET;
		dst += 12;
	}
	const struct policy *p = in->policy;

	if (in->seen == SEEN_TLS && in->tls && in->tls->has_sni && in->tls->sni_len) {
		d->name = in->tls->sni;
		d->name_len = in->tls->sni_len;
	} else if (in->seen == SEEN_HTTP && in->http && in->http->host && in->http->host_len) {
		d->name = in->http->host;
		d->name_len = in->http->host_len;
	}

	enum addr_class cls = policy_addr_class(family, dst);
	if (cls != ADDR_PUBLIC && !policy_private_allowed(p, family, dst)) {
		set(d, VERDICT_DENY, class_reason(cls), NULL);
		return;
	}
	if (is_local(in, family, dst)) {
		set(d, VERDICT_DENY, "host-address", NULL);
		return;
	}
	if (p->allow_all) {
		set(d, VERDICT_ALLOW, "allow-all", NULL);
		return;
	}

	switch (in->seen) {
	case SEEN_TLS:
		if (in->tls->ech) {
			set(d, VERDICT_DENY, "ech", NULL);
			return;
		}
		if (!d->name) {
			by_addr(in, family, dst, "no-sni", d);
			return;
		}
		by_name(in, family, dst, true, d);
		return;
	case SEEN_HTTP: {
		const struct http_request *r = in->http;
		if (r->connect) {
			set(d, VERDICT_DENY, "connect", NULL);
			return;
		}
		if (r->upgrade_h2c) {
			set(d, VERDICT_DENY, "h2c", NULL);
			return;
		}
		if (r->port && r->port != in->dport) {
			set(d, VERDICT_DENY, "host-port-mismatch", NULL);
			return;
		}
		if (!d->name) {
			by_addr(in, family, dst, "no-host", d);
			return;
		}
		by_name(in, family, dst, false, d);
		return;
	}
	case SEEN_BAD_TLS:
		by_addr(in, family, dst, "bad-tls", d);
		return;
	case SEEN_BAD_HTTP:
		by_addr(in, family, dst, "bad-http", d);
		return;
	case SEEN_OTHER:
		by_addr(in, family, dst, "not-tls-or-http", d);
		return;
	case SEEN_TIMEOUT:
		by_addr(in, family, dst, "first-bytes-timeout", d);
		return;
	case SEEN_CLOSED:
		set(d, VERDICT_DENY, "client-closed", NULL);
		return;
	}
	set(d, VERDICT_DENY, "internal", NULL);
}

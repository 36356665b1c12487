/* Learns a profile from an audit log: every allowed connection's name (SNI,
 * Host, or the name whose DNS answer gave a UDP destination) or, without a
 * name, its address, with the ports it used. */
#include "tools/learn.h"
#include "tools/auditlog.h"
#include "common/moat.h"
#include "profiles/profile.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <string.h>

struct entry {
	char *name;                     /* host name, ".parent", or IP literal text */
	bool ip, private_ip;
	uint16_t *ports;                /* sorted, unique */
	size_t n_ports;
	bool gone;                      /* folded into a wildcard */
};

struct learner {
	struct entry *e;
	size_t n, cap;
	bool tcp, udp;
};

/* Suffixes under which names belong to different owners.  A short built-in
 * list, not the Public Suffix List: see docs/forensics.md. */
static const char *const public_suffixes[] = {
	"co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "net.uk", "ltd.uk", "plc.uk",
	"com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "net.nz",
	"co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "co.kr", "or.kr", "co.in", "net.in",
	"org.in", "co.za", "org.za", "co.il", "com.br", "net.br", "org.br", "com.cn",
	"net.cn", "org.cn", "com.tw", "com.hk", "com.sg", "com.mx", "com.ar", "com.tr",
	"com.ua", "com.pl", "co.id", "com.my", "com.ph", "com.vn", "com.eg", "com.sa",
	/* shared hosting: every subdomain is someone else's site */
	"github.io", "githubusercontent.com", "gitlab.io", "herokuapp.com", "appspot.com",
	"cloudfront.net", "amazonaws.com", "azurewebsites.net", "blob.core.windows.net",
	"cloudapp.net", "vercel.app", "netlify.app", "pages.dev", "workers.dev",
	"blogspot.com", "firebaseapp.com", "web.app", "fly.dev", "onrender.com",
	"ngrok.io", "ngrok-free.app", "glitch.me", "repl.co", "r2.dev",
};

bool learn_is_public_suffix(const char *name)
{
	if (!strchr(name, '.'))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(public_suffixes); i++)
		if (!strcmp(name, public_suffixes[i]))
			return true;
	return false;
}

static void learner_free(struct learner *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->e[i].name);
		free(l->e[i].ports);
	}
	free(l->e);
}

static int add_port(struct entry *en, uint16_t port)
{
	size_t i = 0;
	uint16_t *np;

	while (i < en->n_ports && en->ports[i] < port)
		i++;
	if (i < en->n_ports && en->ports[i] == port)
		return 0;
	np = realloc(en->ports, (en->n_ports + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	en->ports = np;
	memmove(np + i + 1, np + i, (en->n_ports - i) * sizeof(*np));
	np[i] = port;
	en->n_ports++;
	return 0;
}

static int add_entry(struct learner *l, const char *name, bool ip, bool priv, uint16_t port)
{
	struct entry *en = NULL;

	for (size_t i = 0; i < l->n && !en; i++)
		if (!strcmp(l->e[i].name, name))
			en = &l->e[i];
	if (!en) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 16;
			struct entry *ne = realloc(l->e, cap * sizeof(*ne));

			if (!ne)
				return -ENOMEM;
			l->e = ne;
			l->cap = cap;
		}
		en = &l->e[l->n];
		memset(en, 0, sizeof(*en));
		if (!(en->name = strdup(name)))
			return -ENOMEM;
		en->ip = ip;
		en->private_ip = priv;
		l->n++;
	}
	return add_port(en, port);
}

/* Lower case, no trailing dot, and a name the profile loader accepts:
 * letters, digits and '-' (not at a label's ends), labels of 1-63 bytes, and
 * a last label that does not start with a digit (it would read as an
 * address).  False otherwise: the caller falls back to the address. */
static bool norm_name(const char *in, char *out, size_t cap)
{
	size_t n = strlen(in), start = 0;

	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n > POLICY_NAME_MAX || n >= cap)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? (char)tolower((unsigned char)in[i]) : '.';

		if (c == '.') {
			if (i == start || i - start > 63 || out[start] == '-' || out[i - 1] == '-')
				return false;
			if (i < n)
				out[i] = c;
			start = i + 1;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		out[i] = c;
	}
	out[n] = '\0';
	for (start = n; start > 0 && out[start - 1] != '.'; start--)
		;
	return !(out[start] >= '0' && out[start] <= '9');
}

/* An address as the profile writes it, and whether it is in a class closed
 * by default (then the profile must open it with allow_private). */
static bool addr_text(int family, const void *addr, char *out, size_t cap, bool *priv)
{
	if (!inet_ntop(family, addr, out, (socklen_t)cap))
		return false;
	*priv = policy_addr_class(family, addr) != ADDR_PUBLIC;
	return true;
}

/* The Host header may carry a port or be an IP literal. */
static void host_strip_port(char *h)
{
	char *c;

	if (h[0] == '[') {
		c = strchr(h, ']');
		if (c) {
			memmove(h, h + 1, (size_t)(c - h - 1));
			h[c - h - 1] = '\0';
		}
		return;
	}
	c = strrchr(h, ':');
	if (c && c == strchr(h, ':'))
		*c = '\0';
}

static int learn_addr(struct learner *l, int family, const void *addr, uint16_t port)
{
	char text[INET6_ADDRSTRLEN];
	bool priv;

	if (!addr_text(family, addr, text, sizeof(text), &priv))
		return 0;
	return add_entry(l, text, true, priv, port);
}

/* The name a DNS answer gave this address, if any allowed dns event did. */
static const char *dns_name_for(const struct audit_log *log, int family, const uint8_t *addr)
{
	for (size_t i = 0; i < log->n; i++) {
		const struct audit_event *ev = &log->ev[i];

		if (strcmp(ev->event, "dns") || strcmp(ev->verdict, "allow") || !ev->qname)
			continue;
		for (size_t k = 0; k < ev->n_answers; k++) {
			uint8_t a[16];

			if (inet_pton(family, ev->answers[k], a) == 1 &&
			    !memcmp(a, addr, family == AF_INET ? 4 : 16))
				return ev->qname;
		}
	}
	return NULL;
}

static int learn_event(struct learner *l, const struct audit_log *log,
		       const struct audit_event *ev)
{
	bool tcp = !strcmp(ev->event, "tcp") || !strcmp(ev->event, "http");
	bool udp = !strcmp(ev->event, "udp");
	char name[POLICY_NAME_MAX + 2], raw[POLICY_NAME_MAX + 8];
	const char *src = NULL;
	uint8_t a[16];
	uint16_t port;

	if (strcmp(ev->verdict, "allow") || (!tcp && !udp) || ev->dport < 1)
		return 0;
	port = (uint16_t)ev->dport;
	if (tcp) {
		l->tcp = true;
		src = ev->sni && *ev->sni ? ev->sni : ev->host && *ev->host ? ev->host : NULL;
	} else {
		l->udp = true;
		if (ev->has_dst)
			src = dns_name_for(log, ev->family, ev->dst);
	}
	if (src) {
		snprintf(raw, sizeof(raw), "%s", src);
		host_strip_port(raw);
		if (inet_pton(AF_INET, raw, a) == 1)
			return learn_addr(l, AF_INET, a, port);
		if (inet_pton(AF_INET6, raw, a) == 1)
			return learn_addr(l, AF_INET6, a, port);
		if (norm_name(raw, name, sizeof(name)))
			return add_entry(l, name, false, false, port);
		/* a name no profile can hold: fall back to the address */
	}
	if (ev->has_dst)
		return learn_addr(l, ev->family, ev->dst, port);
	return 0;
}

static bool same_ports(const struct entry *x, const struct entry *y)
{
	return x->n_ports == y->n_ports &&
	       !memcmp(x->ports, y->ports, x->n_ports * sizeof(*x->ports));
}

static const char *parent_of(const char *name)
{
	const char *d = strchr(name, '.');

	return d ? d + 1 : NULL;
}

/* Two or more names one label below the same parent, with the same ports,
 * become ".parent" (which also covers the parent itself). */
static int group_wildcards(struct learner *l)
{
	size_t n = l->n;

	for (size_t i = 0; i < n; i++) {
		struct entry *x = &l->e[i];
		const char *par = x->ip || x->gone ? NULL : parent_of(x->name);
		size_t count = 1;
		char *wild;

		if (!par || x->name[0] == '.' || learn_is_public_suffix(par))
			continue;
		for (size_t k = i + 1; k < n; k++) {
			const struct entry *y = &l->e[k];
			const char *pk = y->ip || y->gone ? NULL : parent_of(y->name);

			if (pk && !strcmp(pk, par) && same_ports(x, y))
				count++;
		}
		if (count < 2)
			continue;
		if (asprintf(&wild, ".%s", par) < 0)
			return -ENOMEM;
		for (size_t k = 0; k < n; k++) {
			struct entry *y = &l->e[k];
			const char *pk = y->ip || y->gone ? NULL : parent_of(y->name);

			if (k != i && !y->gone && !y->ip && same_ports(x, y) &&
			    ((pk && !strcmp(pk, par)) || !strcmp(y->name, par)))
				y->gone = true;
		}
		free(x->name);
		x->name = wild;
		/* re-scan this slot: the wildcard itself is not grouped again */
	}
	return 0;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

static int build_json(struct learner *l, char **out)
{
	const struct entry *first = NULL;
	bool uniform = true;
	char **hosts = NULL, **priv = NULL;
	size_t nh = 0, np = 0, cap = 0;
	cJSON *root = NULL, *net, *ob, *arr;
	int r = -ENOMEM;

	for (size_t i = 0; i < l->n; i++) {
		if (l->e[i].gone)
			continue;
		if (!first)
			first = &l->e[i];
		else if (!same_ports(first, &l->e[i]))
			uniform = false;
		cap += l->e[i].n_ports;
	}
	hosts = calloc(cap + 1, sizeof(*hosts));
	priv = calloc(l->n + 1, sizeof(*priv));
	if (!hosts || !priv)
		goto out;
	for (size_t i = 0; i < l->n; i++) {
		const struct entry *en = &l->e[i];
		bool v6 = en->ip && strchr(en->name, ':');

		if (en->gone)
			continue;
		if (en->private_ip && !(priv[np++] = strdup(en->name)))
			goto out;
		if (uniform) {
			if (!(hosts[nh++] = strdup(en->name)))
				goto out;
			continue;
		}
		for (size_t k = 0; k < en->n_ports; k++)
			if (asprintf(&hosts[nh++], v6 ? "[%s]:%u" : "%s:%u", en->name,
				     en->ports[k]) < 0) {
				hosts[--nh] = NULL;
				goto out;
			}
	}
	qsort(hosts, nh, sizeof(*hosts), cmp_str);
	qsort(priv, np, sizeof(*priv), cmp_str);

	root = cJSON_CreateObject();
	if (!root || !cJSON_AddStringToObject(root, "name", "learned") ||
	    !cJSON_AddArrayToObject(root, "read") || !cJSON_AddArrayToObject(root, "write") ||
	    !(net = cJSON_AddObjectToObject(root, "network")) ||
	    !(ob = cJSON_AddObjectToObject(net, "outbound")) ||
	    !cJSON_AddFalseToObject(ob, "insecure_allow_all") ||
	    !(arr = cJSON_CreateStringArray((const char *const *)hosts, (int)nh)))
		goto out;
	cJSON_AddItemToObject(ob, "allow_host", arr);
	if (!(arr = cJSON_AddArrayToObject(ob, "allow_port")))
		goto out;
	if (uniform && first)
		for (size_t k = 0; k < first->n_ports; k++)
			if (!cJSON_AddItemToArray(arr, cJSON_CreateNumber(first->ports[k])))
				goto out;
	if (!(arr = cJSON_AddArrayToObject(ob, "allow_transport")))
		goto out;
	if ((l->tcp || !l->udp) && !cJSON_AddItemToArray(arr, cJSON_CreateString("tcp")))
		goto out;
	if (l->udp && !cJSON_AddItemToArray(arr, cJSON_CreateString("udp")))
		goto out;
	if (np) {
		if (!(arr = cJSON_CreateStringArray((const char *const *)priv, (int)np)))
			goto out;
		cJSON_AddItemToObject(ob, "allow_private", arr);
	}
	if (!cJSON_AddFalseToObject(root, "privileged"))
		goto out;
	*out = cJSON_Print(root);
	r = *out ? 0 : -ENOMEM;
out:
	cJSON_Delete(root);
	for (size_t i = 0; hosts && i < nh; i++)
		free(hosts[i]);
	for (size_t i = 0; priv && i < np; i++)
		free(priv[i]);
	free(hosts);
	free(priv);
	return r;
}

int learn_profile_log(const struct audit_log *log, bool wildcards, char **json_out,
		      struct moat_error *e)
{
	struct learner l = { 0 };
	int r = 0;

	for (size_t i = 0; i < log->n && r == 0; i++)
		r = learn_event(&l, log, &log->ev[i]);
	if (r == 0 && wildcards)
		r = group_wildcards(&l);
	if (r == 0)
		r = build_json(&l, json_out);
	learner_free(&l);
	if (r < 0)
		return moat_error_errno(e, -r, "learning a profile");
	return 0;
}

int learn_profile(const char *audit_log_path, bool wildcards, char **json_out,
		  struct moat_error *e)
{
	struct audit_log log;
	int r = auditlog_read_file(audit_log_path, &log, e);

	if (r < 0)
		return r;
	for (size_t i = 0; i < log.n_warnings; i++)
		log_warn("%s", log.warnings[i]);
	if (log.bad_lines > log.n_warnings)
		log_warn("%s: %u more bad lines", audit_log_path, log.bad_lines -
			 (unsigned)log.n_warnings);
	r = learn_profile_log(&log, wildcards, json_out, e);
	auditlog_free(&log);
	return r;
}

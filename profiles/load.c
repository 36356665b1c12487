/* The profile loader: ToolHive's permission profile plus moat's extensions
 * (docs/profiles.md), parsed with cJSON into a struct policy.
 *
 * Every mistake stops the load with one line naming the file, the field
 * path and the value: "p.json: network.outbound.allow_port[1]: port out of
 * range 1-65535 (70000)".  Unknown keys are errors with the nearest known
 * key suggested, because a misspelt key silently ignored is a hole. */
#include "common/moat.h"
#include "profiles/internal.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <string.h>
#include <strings.h>

/* ---- messages ---- */

/* The offending value, short and printable: "\"api.*.com\"", "70000", "array". */
static void fmt_value(const cJSON *v, char *buf, size_t size)
{
	if (cJSON_IsString(v)) {
		size_t o = 0;
		const unsigned char *s = (const unsigned char *)v->valuestring;
		buf[o++] = '"';
		for (size_t i = 0; s[i] && o + 8 < size; i++) {
			if (i == 64) {
				o += (size_t)snprintf(buf + o, size - o, "...");
				break;
			}
			if (s[i] == '"' || s[i] == '\\')
				o += (size_t)snprintf(buf + o, size - o, "\\%c", s[i]);
			else if (s[i] < 0x20 || s[i] >= 0x7f)
				o += (size_t)snprintf(buf + o, size - o, "\\x%02x", s[i]);
			else
				buf[o++] = (char)s[i];
		}
		snprintf(buf + o, size - o, "\"");
	} else if (cJSON_IsNumber(v)) {
		snprintf(buf, size, "%.17g", v->valuedouble);
	} else if (cJSON_IsBool(v)) {
		snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "true" : "false");
	} else if (cJSON_IsNull(v)) {
		snprintf(buf, size, "null");
	} else if (cJSON_IsArray(v)) {
		snprintf(buf, size, "an array");
	} else if (cJSON_IsObject(v)) {
		snprintf(buf, size, "an object");
	} else {
		snprintf(buf, size, "?");
	}
}

static void vformat(char *buf, size_t size, const char *field, const cJSON *v, const char *fmt,
		    va_list ap)
{
	int n = snprintf(buf, size, "%s: ", field);
	if (n < 0 || (size_t)n >= size)
		return;
	int m = vsnprintf(buf + n, size - (size_t)n, fmt, ap);
	if (m < 0 || (size_t)(n + m) >= size || !v)
		return;
	char val[128];
	fmt_value(v, val, sizeof(val));
	snprintf(buf + n + m, size - (size_t)(n + m), " (%s)", val);
}

__attribute__((format(printf, 4, 5)))
int load_fail(struct ctx *c, const char *field, const cJSON *v, const char *fmt, ...)
{
	char msg[MOAT_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vformat(msg, sizeof(msg), field, v, fmt, ap);
	va_end(ap);
	return moat_error_set(c->e, EINVAL, "%s: %s", c->label, msg);
}

__attribute__((format(printf, 4, 5)))
int load_warn(struct ctx *c, const char *field, const cJSON *v, const char *fmt, ...)
{
	char msg[MOAT_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vformat(msg, sizeof(msg), field, v, fmt, ap);
	va_end(ap);
	char **w = realloc(c->idx->warnings, (c->idx->n_warnings + 1) * sizeof(*w));
	if (!w)
		return moat_error_errno(c->e, ENOMEM, "%s", c->label);
	c->idx->warnings = w;
	if (!(w[c->idx->n_warnings] = strdup(msg)))
		return moat_error_errno(c->e, ENOMEM, "%s", c->label);
	c->idx->n_warnings++;
	return 0;
}

int load_nomem(struct ctx *c)
{
	return moat_error_errno(c->e, ENOMEM, "%s", c->label);
}

/* ---- the schema ---- */

typedef int (*key_fn)(struct ctx *c, const char *field, const cJSON *v);

struct key {
	const char *name;
	key_fn fn;
};

/* Every key moat knows, for "did you mean" across levels. */
static const char *const known_paths[] = {
	"name", "read", "write", "privileged", "network", "network.mode", "network.outbound",
	"network.inbound", "network.outbound.insecure_allow_all", "network.outbound.allow_host",
	"network.outbound.allow_port", "network.outbound.allow_transport",
	"network.outbound.allow_private", "network.inbound.allow_host",
};

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strnlen(a, 64), lb = strnlen(b, 64);
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t sub = diag + (a[i - 1] != b[j - 1]);
			size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
			row[j] = sub < best ? sub : best;
			diag = up;
		}
	}
	return row[lb];
}

static int unknown_key(struct ctx *c, const char *field, const char *key, const struct key *keys,
		       size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1;
	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(key, keys[i].name);
		if (d < best_d) {
			best_d = d;
			best = keys[i].name;
		}
	}
	size_t klen = strlen(best ? best : "");
	if (best && best_d <= (klen / 3 > 2 ? klen / 3 : 2))
		return load_fail(c, field, NULL, "unknown key (did you mean \"%s\"?)", best);
	/* the right key at the wrong level */
	for (size_t i = 0; i < ARRAY_SIZE(known_paths); i++) {
		const char *dot = strrchr(known_paths[i], '.');
		if (strcasecmp(dot ? dot + 1 : known_paths[i], key) == 0)
			return load_fail(c, field, NULL, "unknown key here (did you mean \"%s\"?)",
					 known_paths[i]);
	}
	return load_fail(c, field, NULL, "unknown key");
}

static void join(char *out, size_t size, const char *parent, const char *key)
{
	char k[80];
	size_t o = 0;
	/* keys are user text: keep them printable in messages */
	for (size_t i = 0; key[i] && o + 5 < sizeof(k); i++) {
		unsigned char ch = (unsigned char)key[i];
		if (ch < 0x20 || ch >= 0x7f)
			o += (size_t)snprintf(k + o, sizeof(k) - o, "\\x%02x", ch);
		else
			k[o++] = (char)ch;
	}
	k[o] = '\0';
	snprintf(out, size, "%s%s%s", parent, *parent ? "." : "", k);
}

static int walk_object(struct ctx *c, const char *field, const cJSON *obj, const struct key *keys,
		       size_t n)
{
	if (!cJSON_IsObject(obj))
		return load_fail(c, *field ? field : "top level", obj, "expected an object");
	uint32_t seen = 0;
	for (const cJSON *it = obj->child; it; it = it->next) {
		char sub[160];
		join(sub, sizeof(sub), field, it->string ? it->string : "");
		size_t i = 0;
		while (i < n && strcmp(keys[i].name, it->string ? it->string : "") != 0)
			i++;
		if (i == n)
			return unknown_key(c, sub, it->string ? it->string : "", keys, n);
		if (seen & (1u << i))
			return load_fail(c, sub, NULL, "duplicate key");
		seen |= 1u << i;
		if (cJSON_IsNull(it))   /* Go's encoding/json treats null as absent */
			continue;
		int r = keys[i].fn(c, sub, it);
		if (r < 0)
			return r;
	}
	return 0;
}

static int want_bool(struct ctx *c, const char *field, const cJSON *v, bool *out)
{
	if (!cJSON_IsBool(v))
		return load_fail(c, field, v, "expected true or false");
	*out = cJSON_IsTrue(v);
	return 0;
}

static int want_string(struct ctx *c, const char *field, const cJSON *v, char **out)
{
	if (!cJSON_IsString(v))
		return load_fail(c, field, v, "expected a string");
	free(*out);
	*out = strdup(v->valuestring);
	return *out ? 0 : load_nomem(c);
}

static int want_strings(struct ctx *c, const char *field, const cJSON *v, char ***out, size_t *n)
{
	if (!cJSON_IsArray(v))
		return load_fail(c, field, v, "expected an array of strings");
	int size = cJSON_GetArraySize(v), i = 0;
	char **a = calloc((size_t)size + 1, sizeof(*a));
	if (!a)
		return load_nomem(c);
	*out = a;
	*n = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		if (!cJSON_IsString(it)) {
			char sub[192];
			snprintf(sub, sizeof(sub), "%s[%d]", field, i);
			return load_fail(c, sub, it, "expected a string");
		}
		if (!(a[i] = strdup(it->valuestring)))
			return load_nomem(c);
		(*n)++;
	}
	return 0;
}

/* ---- the other outbound keys ---- */

static int k_insecure_allow_all(struct ctx *c, const char *field, const cJSON *v)
{
	return want_bool(c, field, v, &c->p->allow_all);
}

static int k_allow_transport(struct ctx *c, const char *field, const cJSON *v)
{
	if (!cJSON_IsArray(v))
		return load_fail(c, field, v, "expected an array of \"tcp\" / \"udp\"");
	if (!v->child)
		return 0;       /* ToolHive writes []: the default, tcp */
	bool tcp = false, udp = false;
	int i = 0;
	for (const cJSON *it = v->child; it; it = it->next, i++) {
		char sub[192];
		snprintf(sub, sizeof(sub), "%s[%d]", field, i);
		bool *b;
		if (!cJSON_IsString(it))
			return load_fail(c, sub, it, "expected \"tcp\" or \"udp\"");
		if (strcasecmp(it->valuestring, "tcp") == 0)
			b = &tcp;
		else if (strcasecmp(it->valuestring, "udp") == 0)
			b = &udp;
		else
			return load_fail(c, sub, it,
					 "unknown transport (expected \"tcp\" or \"udp\")");
		if (*b) {
			int r = load_warn(c, sub, it, "duplicate transport");
			if (r < 0)
				return r;
		}
		*b = true;
	}
	c->p->tcp = tcp;
	c->p->udp = udp;
	return 0;
}


static const struct key outbound_keys[] = {
	{ "insecure_allow_all", k_insecure_allow_all },
	{ "allow_host", load_k_allow_host },
	{ "allow_port", load_k_allow_port },
	{ "allow_transport", k_allow_transport },
	{ "allow_private", load_k_allow_private },
};

static int k_outbound(struct ctx *c, const char *field, const cJSON *v)
{
	return walk_object(c, field, v, outbound_keys, ARRAY_SIZE(outbound_keys));
}

static int k_inbound_allow_host(struct ctx *c, const char *field, const cJSON *v)
{
	return want_strings(c, field, v, &c->p->inbound_hosts, &c->p->n_inbound_hosts);
}

static const struct key inbound_keys[] = {
	{ "allow_host", k_inbound_allow_host },
};

static int k_inbound(struct ctx *c, const char *field, const cJSON *v)
{
	return walk_object(c, field, v, inbound_keys, ARRAY_SIZE(inbound_keys));
}

static int k_mode(struct ctx *c, const char *field, const cJSON *v)
{
	return want_string(c, field, v, &c->p->mode);
}

static const struct key network_keys[] = {
	{ "mode", k_mode },
	{ "outbound", k_outbound },
	{ "inbound", k_inbound },
};

static int k_network(struct ctx *c, const char *field, const cJSON *v)
{
	return walk_object(c, field, v, network_keys, ARRAY_SIZE(network_keys));
}

static int k_name(struct ctx *c, const char *field, const cJSON *v)
{
	return want_string(c, field, v, &c->p->name);
}

static int k_read(struct ctx *c, const char *field, const cJSON *v)
{
	return want_strings(c, field, v, &c->p->read, &c->p->n_read);
}

static int k_write(struct ctx *c, const char *field, const cJSON *v)
{
	return want_strings(c, field, v, &c->p->write, &c->p->n_write);
}

static int k_privileged(struct ctx *c, const char *field, const cJSON *v)
{
	return want_bool(c, field, v, &c->p->privileged);
}

static const struct key top_keys[] = {
	{ "name", k_name },
	{ "read", k_read },
	{ "write", k_write },
	{ "privileged", k_privileged },
	{ "network", k_network },
};

/* ---- checks across keys ---- */

static int final_warnings(struct ctx *c)
{
	struct policy *p = c->p;
	int r = 0;
	if (p->allow_all && (p->n_hosts || p->n_addrs))
		r = load_warn(c, "network.outbound.allow_host", NULL,
			      "has no effect: insecure_allow_all allows every destination");
	for (size_t i = 0; i < p->n_hosts && r == 0 && !p->allow_all; i++) {
		const struct host_rule *h = &p->hosts[i];
		char f[96];
		snprintf(f, sizeof(f), "network.outbound.allow_host[%d]", h->index);
		if (!h->ports.n && !p->ports.n)
			r = load_warn(c, f, NULL, "\"%s\" is allowed on no port: allow_port is "
				      "empty and the entry has no \":PORT\"", h->source);
	}
	for (size_t i = 0; i < p->n_addrs && r == 0 && !p->allow_all; i++) {
		const struct addr_rule *a = &p->addrs[i];
		char f[96];
		snprintf(f, sizeof(f), "network.outbound.allow_host[%d]", a->index);
		if (!a->ports.n && !p->ports.n)
			r = load_warn(c, f, NULL, "\"%s\" is allowed on no port: allow_port is "
				      "empty and the entry has no \":PORT\"", a->source);
		if (r == 0 && !policy_private_allowed(p, a->family, a->addr))
			r = load_warn(c, f, NULL,
				      "\"%s\" is %s, closed unless allow_private opens it", a->source,
				      policy_addr_class_name(policy_addr_class(a->family, a->addr)));
	}
	return r;
}

/* ---- entry points ---- */

/* cJSON silently cuts a string at "\u0000" and stops at a raw NUL: refuse
 * both, or a rule could read differently from what the file says. */
static size_t find_nul(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\0')
			return i;
		if (buf[i] == '\\' && i + 1 < len) {
			if (buf[i + 1] == 'u' && i + 6 <= len && memcmp(buf + i + 2, "0000", 4) == 0)
				return i;
			i++;
		}
	}
	return len;
}

/* Whether the text ends inside a string, object or array: cJSON then points
 * at the last byte, which reads better as "unexpected end of file". */
static bool json_truncated(const char *buf, size_t len)
{
	size_t depth = 0;
	bool str = false;
	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];
		if (str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				str = false;
		} else if (ch == '"') {
			str = true;
		} else if (ch == '{' || ch == '[') {
			depth++;
		} else if ((ch == '}' || ch == ']') && depth > 0) {
			depth--;
		}
	}
	return str || depth > 0;
}

static int json_error(struct ctx *c, const char *buf, size_t len, size_t off, const char *what)
{
	unsigned line = 1, col = 1;
	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	char near[24] = "";
	size_t n = 0;
	for (size_t i = off; i < len && n < 12 && buf[i] != '\n'; i++)
		near[n++] = (buf[i] >= 0x20 && buf[i] < 0x7f) ? buf[i] : '?';
	near[n] = '\0';
	if (n)
		return moat_error_set(c->e, EINVAL, "%s:%u:%u: %s near '%s'", c->label, line, col,
				      what, near);
	return moat_error_set(c->e, EINVAL, "%s:%u:%u: %s", c->label, line, col, what);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->path);
	for (size_t i = 0; i < p->n_hosts; i++) {
		free(p->hosts[i].name);
		free(p->hosts[i].source);
		port_set_free(&p->hosts[i].ports);
	}
	free(p->hosts);
	for (size_t i = 0; i < p->n_addrs; i++) {
		free(p->addrs[i].source);
		port_set_free(&p->addrs[i].ports);
	}
	free(p->addrs);
	for (size_t i = 0; i < p->n_private_ok; i++)
		free(p->private_ok[i].source);
	free(p->private_ok);
	char **lists[] = { p->inbound_hosts, p->read, p->write };
	for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
		for (size_t i = 0; lists[k] && lists[k][i]; i++)
			free(lists[k][i]);
		free(lists[k]);
	}
	free(p->mode);
	port_set_free(&p->ports);
	policy_index_free(p->index);
	free(p);
}

static char *base_name(const char *label)
{
	const char *b = strrchr(label, '/');
	b = b ? b + 1 : label;
	size_t n = strlen(b);
	if (n > 5 && strcmp(b + n - 5, ".json") == 0)
		n -= 5;
	return strndup(b, n);
}

int policy_load_buffer(const char *buf, size_t len, const char *label, struct policy **out,
		       struct moat_error *e)
{
	struct policy *p = calloc(1, sizeof(*p));
	struct policy_index *idx = calloc(1, sizeof(*idx));
	struct ctx c = { .label = label ? label : "profile", .e = e, .p = p, .idx = idx };
	cJSON *root = NULL;
	int r;
	if (!p || !idx) {
		free(idx);
		r = load_nomem(&c);
		goto out;
	}
	p->index = idx;
	p->tcp = true;
	size_t nul = find_nul(buf, len);
	size_t start = 0;
	while (start < len && buf[start] && strchr(" \t\r\n", buf[start]))
		start++;
	if (start == len) {
		r = moat_error_set(e, EINVAL, "%s: empty file (expected a JSON object)", c.label);
		goto out;
	}
	if (nul < len) {
		r = json_error(&c, buf, len, nul, buf[nul] ? "\\u0000 (NUL) in a string is not allowed"
							   : "NUL byte in profile");
		goto out;
	}
	const char *end = NULL;
	root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
	if (!root) {
		size_t off = end && end >= buf ? (size_t)(end - buf) : len;
		if (off + 1 >= len && json_truncated(buf, len))
			r = json_error(&c, buf, len, len, "malformed JSON: unexpected end of file");
		else
			r = json_error(&c, buf, len, off, "malformed JSON");
		goto out;
	}
	size_t off = end ? (size_t)(end - buf) : len;
	while (off < len && buf[off] && strchr(" \t\r\n", buf[off]))
		off++;
	if (off < len) {
		r = json_error(&c, buf, len, off, "malformed JSON: text after the top-level value");
		goto out;
	}
	if ((r = walk_object(&c, "", root, top_keys, ARRAY_SIZE(top_keys))) < 0)
		goto out;
	if (!p->hosts && (r = policy_index_init(idx, 0)) < 0) {
		r = load_nomem(&c);
		goto out;
	}
	if ((r = final_warnings(&c)) < 0)
		goto out;
	if (!p->name && !(p->name = base_name(c.label))) {
		r = load_nomem(&c);
		goto out;
	}
	*out = moat_steal_ptr(&p);
	r = 0;
out:
	cJSON_Delete(root);
	policy_free(p);
	return r;
}

void policy_warnings(const struct policy *p, void (*fn)(void *arg, const char *msg), void *arg)
{
	const struct policy_index *idx = p->index;
	for (size_t i = 0; idx && i < idx->n_warnings; i++)
		fn(arg, idx->warnings[i]);
}

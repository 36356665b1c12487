/* moat profile: check, show, explain and list permission profiles. */
#include "common/moat.h"
#include "profiles/internal.h"
#include "runner/commands.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

const char profile_usage[] =
	"Usage: moat profile check FILE|NAME|DIR...\n"
	"       moat profile show FILE|NAME\n"
	"       moat profile explain FILE|NAME HOST[:PORT] [--udp]\n"
	"       moat profile list\n"
	"\n"
	"Permission profiles are ToolHive's JSON format plus moat's extensions\n"
	"(docs/profiles.md).  NAME is a built-in profile when it has no '/' and does\n"
	"not end in .json; built-ins are searched in $MOAT_PROFILE_PATH (colon-separated\n"
	"directories), then the install directory, then the source tree.\n"
	"\n"
	"  check    validate profiles; a directory checks every *.json in it.  Prints\n"
	"           'FILE: ok', 'FILE: warning: ...', or one error line per invalid\n"
	"           profile ('FILE: field.path[index]: what is wrong (value)').\n"
	"           Exit 0 when all are valid, 2 when any is not.\n"
	"  show     print the normalized profile as JSON.\n"
	"  explain  decide a connection as moat would: prints 'allow: ...' or 'deny: ...'\n"
	"           and the reason.  HOST is a name or an IP literal (IPv6 in brackets\n"
	"           with a port: [2001:2::1]:443); PORT defaults to 443; --udp asks about\n"
	"           UDP instead of TCP.  Exit 0 allow, 1 deny, 2 usage or profile error.\n"
	"  list     the built-in profiles and where each was found.\n";

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "moat profile: %s (see 'moat profile --help')\n", msg);
	return 2;
}

/* ---- check ---- */

struct label {
	const char *s;
};

static void print_warning(void *arg, const char *msg)
{
	const struct label *l = arg;
	printf("%s: warning: %s\n", l->s, msg);
}

static bool check_one(const char *arg)
{
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	if (policy_load(arg, &p, &e) < 0) {
		printf("%s\n", e.msg);
		return false;
	}
	struct label l = { p->path ? p->path : arg };
	policy_warnings(p, print_warning, &l);
	printf("%s: ok\n", l.s);
	policy_free(p);
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool check_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		printf("%s: %s\n", dir, strerror(errno));
		return false;
	}
	char **names = NULL;
	size_t n = 0;
	bool ok = true;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		char **nn = realloc(names, (n + 1) * sizeof(*nn));
		if (!nn) {
			ok = false;
			break;
		}
		names = nn;
		size_t dl = strlen(dir);
		if (asprintf(&names[n], "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/",
			     de->d_name) < 0) {
			ok = false;
			break;
		}
		n++;
	}
	closedir(d);
	if (names)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!check_one(names[i]))
			ok = false;
		free(names[i]);
	}
	free(names);
	if (n == 0 && ok)
		printf("%s: no *.json files\n", dir);
	return ok;
}

static int cmd_check(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "check needs at least one FILE, NAME or DIR");
	bool ok = true;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		bool is_dir = !policy_is_builtin_name(argv[i]) && stat(argv[i], &st) == 0 &&
			      S_ISDIR(st.st_mode);
		if (!(is_dir ? check_dir(argv[i]) : check_one(argv[i])))
			ok = false;
	}
	fflush(stdout);
	return ok ? 0 : 2;
}

/* ---- show ---- */

static int cmd_show(int argc, char **argv)
{
	if (argc != 2)
		return usage_error("%s", "show needs exactly one FILE or NAME");
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	if (policy_load(argv[1], &p, &e) < 0) {
		fprintf(stderr, "moat: %s\n", e.msg);
		return 2;
	}
	char *s = policy_to_json(p);
	policy_free(p);
	if (!s) {
		fprintf(stderr, "moat: out of memory\n");
		return 2;
	}
	printf("%s\n", s);
	free(s);
	return 0;
}

/* ---- explain ---- */

struct target {
	char host[POLICY_NAME_MAX + 2];
	uint16_t port;
	int family;                     /* 0: a name */
	uint8_t addr[16];
};

/* HOST, HOST:PORT, [V6], [V6]:PORT or a bare IPv6 address. */
static int parse_target(const char *s, struct target *t)
{
	const char *host = s, *port = NULL;
	size_t hlen = strlen(s);
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || (close[1] && close[1] != ':'))
			return -EINVAL;
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close[1] == ':')
			port = close + 2;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && !strchr(colon + 1, ':')) {
			hlen = (size_t)(colon - s);
			port = colon + 1;
		}
	}
	if (hlen == 0 || hlen >= sizeof(t->host))
		return -EINVAL;
	memcpy(t->host, host, hlen);
	t->host[hlen] = '\0';
	t->port = 443;
	if (port) {
		unsigned long long v;
		if (moat_parse_uint(port, 1, 65535, &v) < 0)
			return -EINVAL;
		t->port = (uint16_t)v;
	}
	t->family = ip_literal(t->host, hlen, t->addr);
	if (s[0] == '[' && t->family != AF_INET6)
		return -EINVAL;
	return 0;
}

static const char *rule_field(const struct policy *p, const char *rule, bool *own_ports)
{
	static char buf[64];
	*own_ports = false;
	for (size_t i = 0; i < p->n_hosts; i++) {
		if (p->hosts[i].source == rule) {
			*own_ports = p->hosts[i].ports.n > 0;
			snprintf(buf, sizeof(buf), "network.outbound.allow_host[%d]", p->hosts[i].index);
			return buf;
		}
	}
	for (size_t i = 0; i < p->n_addrs; i++) {
		if (p->addrs[i].source == rule) {
			*own_ports = p->addrs[i].ports.n > 0;
			snprintf(buf, sizeof(buf), "network.outbound.allow_host[%d]", p->addrs[i].index);
			return buf;
		}
	}
	return "network.outbound.allow_host";
}

static void explain_decision(const struct policy *p, const char *what, const char *proto,
			     const struct target *t, const struct policy_decision *d)
{
	bool own = false;
	const char *field = d->rule ? rule_field(p, d->rule, &own) : NULL;
	if (strcmp(d->reason, "allow-all") == 0)
		printf("allow: %s: insecure_allow_all allows every destination (%s)\n", what, proto);
	else if (strcmp(d->reason, "bad-name") == 0)
		printf("deny: %s: \"%s\" is not a valid DNS name\n", what, t->host);
	else if (strcmp(d->reason, "transport-not-allowed") == 0)
		printf("deny: %s: %s is not in network.outbound.allow_transport\n", what, proto);
	else if (d->allow)
		printf("allow: %s matches \"%s\" (%s) on port %u (%s)\n", what, d->rule, field,
		       t->port, own ? "the entry's own port" : "allow_port");
	else if (d->rule)
		printf("deny: %s matches \"%s\" (%s) but not on port %u (%s)\n", what, d->rule,
		       field, t->port, own ? "the entry's own port" : "allow_port");
	else
		printf("deny: %s matches no entry in network.outbound.allow_host\n", what);
	printf("reason: %s\n", d->reason);
}

static int cmd_explain(int argc, char **argv)
{
	bool udp = false;
	const char *args[2];
	int n = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--udp") == 0)
			udp = true;
		else if (argv[i][0] == '-' && argv[i][1])
			return usage_error("unknown option '%s'", argv[i]);
		else if (n < 2)
			args[n++] = argv[i];
		else
			return usage_error("unexpected argument '%s'", argv[i]);
	}
	if (n != 2)
		return usage_error("%s", "explain needs FILE|NAME and HOST[:PORT]");
	struct target t;
	if (parse_target(args[1], &t) < 0)
		return usage_error("bad HOST[:PORT] '%s'", args[1]);
	struct moat_error e = { 0 };
	struct policy *p = NULL;
	if (policy_load(args[0], &p, &e) < 0) {
		fprintf(stderr, "moat: %s\n", e.msg);
		return 2;
	}
	const char *proto = udp ? "udp" : "tcp";
	enum policy_proto pr = udp ? POLICY_UDP : POLICY_TCP;
	char what[POLICY_NAME_MAX + 48];
	if (t.family == AF_INET6)
		snprintf(what, sizeof(what), "[%s]:%u", t.host, t.port);
	else
		snprintf(what, sizeof(what), "%s:%u", t.host, t.port);
	struct policy_decision d;
	if (t.family && !policy_private_allowed(p, t.family, t.addr)) {
		const char *cls = policy_addr_class_name(policy_addr_class(t.family, t.addr));
		printf("deny: %s is a %s address, closed unless network.outbound.allow_private "
		       "opens it\nreason: %s\n", what, cls, cls);
		policy_free(p);
		return 1;
	}
	if (t.family)
		policy_match_addr(p, t.family, t.addr, t.port, pr, &d);
	else
		policy_match_host(p, t.host, strlen(t.host), t.port, pr, &d);
	explain_decision(p, what, proto, &t, &d);
	policy_free(p);
	return d.allow ? 0 : 1;
}

/* ---- list ---- */

static int cmd_list(int argc, char **argv)
{
	if (argc != 1)
		return usage_error("%s", "list takes no arguments");
	for (const char *const *n = policy_builtin_names(); *n; n++) {
		char path[4096];
		if (policy_find_builtin(*n, path, sizeof(path)) == 0)
			printf("%-10s %s\n", *n, path);
		else
			printf("%-10s (not found)\n", *n);
	}
	return 0;
}

int profile_main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("%s", "missing subcommand: check, show, explain or list");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		fputs(profile_usage, stdout);
		return 0;
	}
	if (strcmp(sub, "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(sub, "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	if (strcmp(sub, "explain") == 0)
		return cmd_explain(argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0)
		return cmd_list(argc - 1, argv + 1);
	return usage_error("unknown subcommand '%s'", sub);
}

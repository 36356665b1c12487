/* moat run: start a workload in a sandbox whose only network path goes
 * through moat's rules, and wait for it. */
#include "common/moat.h"
#include "enforcer/enforcer.h"
#include "profiles/profile.h"
#include "runner/commands.h"
#include "runner/loop.h"
#include "runner/run.h"
#include "runner/sandbox.h"
#include "tools/auditlog.h"
#include "tools/capture.h"
#include "tools/learn.h"
#include "tproxy/dns.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>

const char run_usage[] =
	"Usage: moat run [OPTIONS] [--] COMMAND [ARG...]\n"
	"\n"
	"Runs COMMAND in new network, pid, mount, uts and ipc namespaces whose only way\n"
	"out is through moat: TCP to allowed ports goes to moat's transparent proxy, which\n"
	"allows or denies by TLS SNI or HTTP Host; DNS is answered only for allowed names;\n"
	"everything else is dropped in the kernel. The command starts only after the rules\n"
	"are in place.\n"
	"\n"
	"Options:\n"
	"  -p, --profile FILE|NAME   permission profile (default: none = no network)\n"
	"  -a, --audit-log FILE      append JSON Lines audit events to FILE ('-' = stderr)\n"
	"  -u, --user UID[:GID]      run the command as this user (numeric or names)\n"
	"      --dns-upstream ADDR[:PORT]  resolver for allowed names (repeatable;\n"
	"                            default: this namespace's /etc/resolv.conf)\n"
	"      --pool4 CIDR          IPv4 pool for sandbox links (default 10.231.0.0/16)\n"
	"      --pool6 CIDR          IPv6 pool for sandbox links (default fd6d:6f61:7400::/48)\n"
	"      --workers N           proxy worker threads (default: one per CPU)\n"
	"      --hostname NAME       the sandbox's host name (default moat-ID)\n"
	"\n"
	"Forensics (docs/forensics.md):\n"
	CAPTURE_USAGE
	"      --learn OUT.json      run under the 'network' profile (everything allowed\n"
	"                            and audited), then write the smallest profile that\n"
	"                            allows what the command did to OUT.json\n"
	"      --learn-wildcards     with --learn: sibling names become '.parent'\n"
	"\n"
	"Containers (the command, if given, replaces the image's):\n"
	"      --engine podman|docker  run IMAGE in a container through the engine's API\n"
	"      --engine-socket PATH  the engine's API socket (default: $DOCKER_HOST,\n"
	"                            $CONTAINER_HOST, /run/podman/podman.sock,\n"
	"                            /var/run/docker.sock)\n"
	"      --image IMAGE         the container image\n"
	"  -e, --env NAME=VALUE      set an environment variable (repeatable)\n"
	"  -v, --volume SRC:DST[:ro] bind-mount a host path (repeatable); the profile's\n"
	"                            read (read-only) and write lists are mounted too\n"
	"      --keep                keep the container after it exits\n"
	"  -h, --help                this help\n"
	"\n"
	"Exit status: the command's own; 125 when moat fails (bad profile, setup error,\n"
	"--learn's profile not written); 126 when the command cannot be executed; 127 when\n"
	"it is not found.\n";


enum { OPT_DNS = 256, OPT_POOL4, OPT_POOL6, OPT_WORKERS, OPT_HOSTNAME, OPT_ENGINE, OPT_SOCKET,
       OPT_IMAGE, OPT_KEEP, OPT_LEARN, OPT_LEARN_WILDCARDS };

static int parse_user(const char *s, uid_t *uid, gid_t *gid, struct moat_error *e)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	char *colon = strchr(buf, ':');
	if (colon)
		*colon++ = '\0';
	unsigned long long v;
	struct passwd *pw = NULL;
	if (moat_parse_uint(buf, 0, 0xfffffffeULL, &v) == 0) {
		*uid = (uid_t)v;
		pw = getpwuid(*uid);
	} else {
		pw = getpwnam(buf);
		if (!pw)
			return moat_error_set(e, EINVAL, "--user %s: no such user", s);
		*uid = pw->pw_uid;
	}
	if (colon && *colon) {
		if (moat_parse_uint(colon, 0, 0xfffffffeULL, &v) == 0) {
			*gid = (gid_t)v;
		} else {
			struct group *gr = getgrnam(colon);
			if (!gr)
				return moat_error_set(e, EINVAL, "--user %s: no such group", s);
			*gid = gr->gr_gid;
		}
	} else if (pw) {
		*gid = pw->pw_gid;
	} else {
		*gid = (gid_t)*uid;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct run_opts *o, struct moat_error *e)
{
	static const struct option longopts[] = {
		{ "profile", required_argument, NULL, 'p' },
		{ "audit-log", required_argument, NULL, 'a' },
		{ "user", required_argument, NULL, 'u' },
		{ "dns-upstream", required_argument, NULL, OPT_DNS },
		{ "pool4", required_argument, NULL, OPT_POOL4 },
		{ "pool6", required_argument, NULL, OPT_POOL6 },
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "hostname", required_argument, NULL, OPT_HOSTNAME },
		{ "engine", required_argument, NULL, OPT_ENGINE },
		{ "engine-socket", required_argument, NULL, OPT_SOCKET },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "env", required_argument, NULL, 'e' },
		{ "volume", required_argument, NULL, 'v' },
		{ "keep", no_argument, NULL, OPT_KEEP },
		CAPTURE_LONGOPTS,
		{ "learn", required_argument, NULL, OPT_LEARN },
		{ "learn-wildcards", no_argument, NULL, OPT_LEARN_WILDCARDS },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	optind = 1;
	opterr = 0;
	int c, r;
	unsigned long long v;
	bool profile_given = false;
	while ((c = getopt_long(argc, argv, "+p:a:u:e:v:h", longopts, NULL)) != -1) {
		r = capture_opt(c, optarg, &o->pcap, e);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		switch (c) {
		case 'p': o->profile = optarg; profile_given = true; break;
		case 'a': o->audit_log = optarg; break;
		case 'u': o->user = optarg; break;
		case OPT_POOL4: o->pool4 = optarg; break;
		case OPT_POOL6: o->pool6 = optarg; break;
		case OPT_HOSTNAME: o->hostname = optarg; break;
		case OPT_SOCKET: o->engine_socket = optarg; break;
		case OPT_IMAGE: o->image = optarg; break;
		case OPT_KEEP: o->keep = true; break;
		case OPT_LEARN_WILDCARDS: o->learn_wildcards = true; break;
		case OPT_LEARN:
			if (!*optarg)
				return moat_error_set(e, EINVAL, "--learn: empty file name");
			o->learn = optarg;
			break;
		case OPT_ENGINE:
			if (strcmp(optarg, "podman") && strcmp(optarg, "docker") && strcmp(optarg, "embedded"))
				return moat_error_set(e, EINVAL, "--engine: expected podman, docker or "
						      "embedded (%s)", optarg);
			o->engine = strcmp(optarg, "embedded") ? optarg : NULL;
			break;
		case 'e':
			if (o->n_env == ARRAY_SIZE(o->env) - 1)
				return moat_error_set(e, EINVAL, "--env: at most %zu variables",
						      ARRAY_SIZE(o->env) - 1);
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return moat_error_set(e, EINVAL, "--env: expected NAME=VALUE (%s)", optarg);
			o->env[o->n_env++] = optarg;
			break;
		case 'v':
			if (o->n_volumes == ARRAY_SIZE(o->volumes))
				return moat_error_set(e, EINVAL, "--volume: at most %zu mounts",
						      ARRAY_SIZE(o->volumes));
			if (run_parse_volume(optarg, &o->volumes[o->n_volumes], e) < 0)
				return -e->code;
			o->n_volumes++;
			break;
		case OPT_DNS:
			if (o->n_upstreams == ARRAY_SIZE(o->upstreams))
				return moat_error_set(e, EINVAL, "--dns-upstream: at most %zu resolvers",
						      ARRAY_SIZE(o->upstreams));
			if (dnsf_parse_upstream(optarg, &o->upstreams[o->n_upstreams], e) < 0)
				return moat_error_prefix(e, "--dns-upstream");
			o->n_upstreams++;
			break;
		case OPT_WORKERS:
			if (moat_parse_uint(optarg, 1, 256, &v) < 0)
				return moat_error_set(e, EINVAL, "--workers: expected 1-256 (%s)", optarg);
			o->workers = (unsigned)v;
			break;
		case 'h':
			fputs(run_usage, stdout);
			return 1;
		case ':':
			return moat_error_set(e, EINVAL, "%s: missing argument", argv[optind - 1]);
		default:
			return moat_error_set(e, EINVAL, "unknown option '%s' (see 'moat run --help')",
					      argv[optind - 1]);
		}
	}
	if (o->engine && o->hostname)
		return moat_error_set(e, EINVAL, "--hostname is not supported with --engine");
	if (o->engine && !o->image)
		return moat_error_set(e, EINVAL, "--engine %s needs --image IMAGE", o->engine);
	if (!o->engine && (o->image || o->engine_socket || o->keep || o->n_volumes || o->n_env))
		return moat_error_set(e, EINVAL, "--image, --engine-socket, --env, --volume and "
				      "--keep need --engine podman|docker");
	if (optind >= argc && !o->engine)
		return moat_error_set(e, EINVAL, "no command given (see 'moat run --help')");
	if (capture_opts_check(&o->pcap, e) < 0)
		return -e->code;
	if (o->learn_wildcards && !o->learn)
		return moat_error_set(e, EINVAL, "--learn-wildcards needs --learn OUT.json");
	if (o->learn) {
		/* learning runs under allow-all: a profile would hide what is to be learned */
		if (profile_given)
			return moat_error_set(e, EINVAL, "--learn runs under the 'network' profile "
					      "(everything allowed and audited): drop --profile");
		if (o->audit_log && !strcmp(o->audit_log, "-"))
			return moat_error_set(e, EINVAL, "--learn reads the audit log back: give "
					      "--audit-log a file, not '-' (or leave it out)");
		o->profile = "network";
	}
	o->argv = argv + optind;
	return 0;
}

int run_enforcer_opts(const struct run_opts *o, const struct policy *pol, struct enforcer_opts *eo,
		      struct moat_error *e)
{
	*eo = (struct enforcer_opts){
		.policy = pol,
		.audit_path = o->audit_log,
		.upstreams = o->n_upstreams ? o->upstreams : NULL,
		.n_upstreams = o->n_upstreams,
		.workers = o->workers,
		.pcap = o->pcap.path ? &o->pcap : NULL,
	};
	net_pool_default(&eo->pool);
	if ((o->pool4 || o->pool6) && net_pool_parse(o->pool4, o->pool6, &eo->pool, e) < 0)
		return -e->code;
	return 0;
}

/* The sandbox's resolver is its gateway; any other address it picks is
 * intercepted all the same. */
void run_resolv_conf(const struct sandbox_link *l, char *buf, size_t cap)
{
	char a4[INET_ADDRSTRLEN], a6[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET, &l->host4, a4, sizeof(a4));
	inet_ntop(AF_INET6, &l->host6, a6, sizeof(a6));
	snprintf(buf, cap, "# written by moat: every DNS query is filtered by the profile\n"
			   "nameserver %s\nnameserver %s\noptions edns0\n", a4, a6);
}

/* The sandbox's files are reached through its root, in its own mount
 * namespace: the workload has not started yet, so nothing races with this. */
static int write_in_sandbox(const struct sandbox *sb, const char *path, const char *content,
			    struct moat_error *e)
{
	char p[256];
	snprintf(p, sizeof(p), "/proc/%d/root%s", (int)sb->pid, path);
	_cleanup_close_ int fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return moat_error_errno(e, errno, "sandbox %s", path);
	size_t len = strlen(content);
	if (write(fd, content, len) != (ssize_t)len)
		return moat_error_errno(e, errno ? errno : EIO, "sandbox %s", path);
	return 0;
}

/* --learn without --audit-log: a private file, removed once the profile is written. */
static int learn_temp_log(char *path, size_t cap, struct moat_error *e)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	if ((size_t)snprintf(path, cap, "%s/moat-learn-XXXXXX", dir) >= cap)
		return moat_error_set(e, ENAMETOOLONG, "--learn: TMPDIR too long");
	_cleanup_close_ int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return moat_error_errno(e, errno, "--learn: temporary audit log %s", path);
	return 0;
}

/* The number of allow_host entries of a learned profile. */
static int learned_hosts(const char *json)
{
	cJSON *root = cJSON_Parse(json);
	cJSON *hosts = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(root, "network"), "outbound"),
		"allow_host");
	int n = cJSON_IsArray(hosts) ? cJSON_GetArraySize(hosts) : 0;
	cJSON_Delete(root);
	return n;
}

/* Replaces path with content in one step: a reader sees the old file or the whole new one. */
static int write_atomic(const char *path, const char *content, struct moat_error *e)
{
	size_t len = strlen(content), cap = strlen(path) + 16;
	_cleanup_free_ char *tmp = malloc(cap);
	if (!tmp)
		return moat_error_errno(e, ENOMEM, "%s", path);
	snprintf(tmp, cap, "%s.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return moat_error_errno(e, errno, "%s", path);
	int err = 0;
	if (fchmod(fd, 0644) < 0)
		err = errno;
	for (size_t off = 0; !err && off < len;) {
		ssize_t n = write(fd, content + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			err = n < 0 ? errno : EIO;
		else
			off += (size_t)n;
	}
	if (!err && fsync(fd) < 0)
		err = errno;
	if (close(fd) < 0 && !err)
		err = errno;
	if (!err && rename(tmp, path) < 0)
		err = errno;
	if (err) {
		unlink(tmp);
		return moat_error_errno(e, err, "%s", path);
	}
	return 0;
}

/* Learns from this sandbox's events (an --audit-log file may hold earlier runs' too) and
 * writes the profile to o->learn. */
static int learn_write(const struct run_opts *o, struct moat_error *e)
{
	struct audit_log log = { 0 }, mine = { 0 };
	_cleanup_free_ char *json = NULL;
	int r = auditlog_read_file(o->audit_log, &log, e);
	if (r < 0)
		return moat_error_prefix(e, "--learn");
	mine.ev = calloc(log.n ? log.n : 1, sizeof(*mine.ev));
	if (!mine.ev) {
		r = moat_error_errno(e, ENOMEM, "--learn");
		goto out;
	}
	for (size_t i = 0; i < log.n; i++)
		if (log.ev[i].sandbox && !strcmp(log.ev[i].sandbox, o->id))
			mine.ev[mine.n++] = log.ev[i];
	mine.cap = mine.n;
	r = learn_profile_log(&mine, o->learn_wildcards, &json, e);
	if (r < 0) {
		moat_error_prefix(e, "--learn");
		goto out;
	}
	/* a text file ends with a newline */
	size_t jl = strlen(json);
	if (!jl || json[jl - 1] != '\n') {
		char *nl = realloc(json, jl + 2);
		if (!nl) {
			r = moat_error_errno(e, ENOMEM, "--learn");
			goto out;
		}
		json = nl;
		memcpy(json + jl, "\n", 2);
	}
	r = write_atomic(o->learn, json, e);
	if (r < 0) {
		moat_error_prefix(e, "--learn");
		goto out;
	}
	int n = learned_hosts(json);
	fprintf(stderr, "moat: learned profile written to %s (%d host%s)\n", o->learn, n,
		n == 1 ? "" : "s");
out:
	free(mine.ev);          /* the events themselves belong to log */
	auditlog_free(&log);
	return r;
}

/* The embedded sandbox: returns the exit status; *started once the command runs. */
static int run_embedded(const struct run_opts *o, const struct policy *pol, bool *started)
{
	struct moat_error e = { 0 };
	struct enforcement *en = NULL;
	struct sandbox sb = { .pid = -1, .netns_fd = -1, .pidfd = -1, .go_fd = -1, .status_fd = -1 };
	bool have_sb = false;
	int status = MOAT_EXIT_FAILURE, r;

	struct sandbox_spec spec = { .argv = o->argv };
	if (o->user && parse_user(o->user, &spec.uid, &spec.gid, &e) < 0)
		goto fail;
	spec.set_user = o->user != NULL;

	struct enforcer_opts eo;
	if (run_enforcer_opts(o, pol, &eo, &e) < 0)
		goto fail;

	char hostname[64];
	snprintf(hostname, sizeof(hostname), "moat-%s", o->id);
	spec.hostname = o->hostname ? o->hostname : hostname;
	spec.hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
	spec.resolv_conf = "# written by moat\n";

	if (sandbox_create(&spec, &sb, &e) < 0)
		goto fail;
	have_sb = true;
	/* after the sandbox (which must not inherit the mask), before any thread */
	if (loop_block_signals(&e) < 0)
		goto fail;
	/* the capture starts here, on the host end, before the command's first instruction */
	if (enforcement_up(sb.netns_fd, o->id, &eo, &en, &e) < 0)
		goto fail;

	char resolv[512];
	run_resolv_conf(enforcement_link(en), resolv, sizeof(resolv));
	if (write_in_sandbox(&sb, "/etc/resolv.conf", resolv, &e) < 0)
		goto fail;
	log_info("sandbox %s: profile %s, interface %s", o->id, pol->name,
		 enforcement_link(en)->host_ifname);

	r = sandbox_start(&sb, &e);
	if (r < 0) {
		fprintf(stderr, "moat run: %s\n", e.msg);
		status = sandbox_exec_status(-r);
		goto out;
	}
	*started = true;
	status = loop_run(&sb, en);
	goto out;

fail:
	fprintf(stderr, "moat run: %s\n", e.msg);
	status = MOAT_EXIT_FAILURE;
out:
	/* The capture ends once the workload has exited, while its namespace (held by
	 * sb.netns_fd) and so the veth still exist: everything it sent is drained.  Then the
	 * workload's namespace goes, then the veth, then the rules. */
	enforcement_stop_capture(en);
	if (have_sb)
		sandbox_destroy(&sb);
	enforcement_down(en);
	return status;
}

int run_main(int argc, char **argv)
{
	struct moat_error e = { 0 };
	struct run_opts o = { .profile = "none" };
	struct policy *pol = NULL;
	char learn_log[4096] = "";
	bool started = false;
	int status = MOAT_EXIT_FAILURE;

	int r = parse_args(argc, argv, &o, &e);
	if (r > 0)
		return 0;
	if (r < 0) {
		fprintf(stderr, "moat run: %s\n", e.msg);
		return MOAT_EXIT_FAILURE;
	}
	if (policy_load(o.profile, &pol, &e) < 0) {
		fprintf(stderr, "moat run: %s\n", e.msg);
		return MOAT_EXIT_FAILURE;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "moat run: needs root (namespaces, nftables and TPROXY sockets)\n");
		goto out;
	}
	if (o.learn && !o.audit_log) {
		if (learn_temp_log(learn_log, sizeof(learn_log), &e) < 0) {
			fprintf(stderr, "moat run: %s\n", e.msg);
			goto out;
		}
		o.audit_log = learn_log;
	}
	enforcer_new_id(o.id);
	if (o.engine)
		status = run_container(&o, pol, &started);
	else
		status = run_embedded(&o, pol, &started);

	/* the enforcement is down: the audit log is complete */
	if (o.learn && started && learn_write(&o, &e) < 0) {
		fprintf(stderr, "moat run: %s\n", e.msg);
		status = MOAT_EXIT_FAILURE;
	}
out:
	if (learn_log[0] && unlink(learn_log) < 0)
		log_warn("%s: %s", learn_log, strerror(errno));
	policy_free(pol);
	return status;
}

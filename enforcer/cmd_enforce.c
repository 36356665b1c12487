/* moat enforce: confine a network namespace made by another tool, in the
 * foreground, until SIGINT/SIGTERM; then remove everything installed. */
#include "common/moat.h"
#include "enforcer/enforcer.h"
#include "profiles/profile.h"
#include "runner/commands.h"
#include "runner/loop.h"
#include "tproxy/dns.h"
#include "tools/capture.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <string.h>

const char enforce_usage[] =
	"Usage: moat enforce (--netns PATH | --pid PID) [OPTIONS]\n"
	"\n"
	"Confines an existing network namespace: wires it to this namespace with a veth\n"
	"pair (the namespace gets eth0, addresses and a default route), installs the\n"
	"profile's rules, and runs the proxy and DNS filter in the foreground until\n"
	"SIGINT or SIGTERM, then removes everything it installed.\n"
	"\n"
	"Options:\n"
	"  -n, --netns PATH          the namespace, e.g. /run/netns/NAME\n"
	"      --pid PID             the namespace of process PID\n"
	"  -p, --profile FILE|NAME   permission profile (default: none = no network)\n"
	"  -a, --audit-log FILE      append JSON Lines audit events to FILE ('-' = stderr)\n"
	"      --dns-upstream ADDR[:PORT]  resolver for allowed names (repeatable)\n"
	"      --pool4 CIDR, --pool6 CIDR  address pools for the link\n"
	"      --workers N           proxy worker threads (default: one per CPU)\n"
	CAPTURE_USAGE
	"      --ready-file FILE     write the sandbox id and addresses to FILE once\n"
	"                            the namespace is confined\n"
	"  -h, --help                this help\n"
	"\n"
	"Exit status: 0 after a clean stop, 125 when set-up fails.\n";

enum { OPT_PID = 256, OPT_DNS, OPT_POOL4, OPT_POOL6, OPT_WORKERS, OPT_READY };

static int write_ready(const char *path, const char *id, const struct sandbox_link *l,
		       struct moat_error *e)
{
	char a4[INET_ADDRSTRLEN], h4[INET_ADDRSTRLEN], a6[INET6_ADDRSTRLEN], h6[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET, &l->sb4, a4, sizeof(a4));
	inet_ntop(AF_INET, &l->host4, h4, sizeof(h4));
	inet_ntop(AF_INET6, &l->sb6, a6, sizeof(a6));
	inet_ntop(AF_INET6, &l->host6, h6, sizeof(h6));
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return moat_error_errno(e, errno, "--ready-file %s", path);
	fprintf(f, "id=%s\ninterface=%s\naddr4=%s\ngateway4=%s\naddr6=%s\ngateway6=%s\n", id,
		l->host_ifname, a4, h4, a6, h6);
	if (fclose(f) != 0 || rename(tmp, path) < 0)
		return moat_error_errno(e, errno, "--ready-file %s", path);
	return 0;
}

int enforce_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "netns", required_argument, NULL, 'n' },
		{ "pid", required_argument, NULL, OPT_PID },
		{ "profile", required_argument, NULL, 'p' },
		{ "audit-log", required_argument, NULL, 'a' },
		{ "dns-upstream", required_argument, NULL, OPT_DNS },
		{ "pool4", required_argument, NULL, OPT_POOL4 },
		{ "pool6", required_argument, NULL, OPT_POOL6 },
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "ready-file", required_argument, NULL, OPT_READY },
		CAPTURE_LONGOPTS,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct moat_error e = { 0 };
	const char *netns = NULL, *profile = "none", *audit = NULL, *pool4 = NULL, *pool6 = NULL;
	const char *ready = NULL;
	pid_t pid = 0;
	unsigned workers = 0;
	struct capture_opts pcap = { 0 };
	struct dns_upstream ups[8];
	size_t n_ups = 0;
	unsigned long long v;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "n:p:a:h", longopts, NULL)) != -1) {
		int r = capture_opt(c, optarg, &pcap, &e);
		if (r < 0) {
			fprintf(stderr, "moat enforce: %s\n", e.msg);
			return MOAT_EXIT_FAILURE;
		}
		if (r > 0)
			continue;
		switch (c) {
		case 'n': netns = optarg; break;
		case 'p': profile = optarg; break;
		case 'a': audit = optarg; break;
		case OPT_POOL4: pool4 = optarg; break;
		case OPT_POOL6: pool6 = optarg; break;
		case OPT_READY: ready = optarg; break;
		case OPT_PID:
			if (moat_parse_uint(optarg, 1, 0x3fffffff, &v) < 0) {
				fprintf(stderr, "moat enforce: --pid: not a process id (%s)\n", optarg);
				return MOAT_EXIT_FAILURE;
			}
			pid = (pid_t)v;
			break;
		case OPT_WORKERS:
			if (moat_parse_uint(optarg, 1, 256, &v) < 0) {
				fprintf(stderr, "moat enforce: --workers: expected 1-256 (%s)\n", optarg);
				return MOAT_EXIT_FAILURE;
			}
			workers = (unsigned)v;
			break;
		case OPT_DNS:
			if (n_ups == ARRAY_SIZE(ups)) {
				fprintf(stderr, "moat enforce: --dns-upstream: at most %zu\n", ARRAY_SIZE(ups));
				return MOAT_EXIT_FAILURE;
			}
			if (dnsf_parse_upstream(optarg, &ups[n_ups], &e) < 0) {
				fprintf(stderr, "moat enforce: --dns-upstream: %s\n", e.msg);
				return MOAT_EXIT_FAILURE;
			}
			n_ups++;
			break;
		case 'h':
			fputs(enforce_usage, stdout);
			return 0;
		default:
			fprintf(stderr, "moat enforce: unknown option or missing argument '%s' "
					"(see 'moat enforce --help')\n", argv[optind - 1]);
			return MOAT_EXIT_FAILURE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moat enforce: unexpected argument '%s'\n", argv[optind]);
		return MOAT_EXIT_FAILURE;
	}
	if (capture_opts_check(&pcap, &e) < 0) {
		fprintf(stderr, "moat enforce: %s\n", e.msg);
		return MOAT_EXIT_FAILURE;
	}
	if (!netns == !pid) {
		fprintf(stderr, "moat enforce: give exactly one of --netns PATH or --pid PID\n");
		return MOAT_EXIT_FAILURE;
	}

	struct policy *pol = NULL;
	if (policy_load(profile, &pol, &e) < 0) {
		fprintf(stderr, "moat enforce: %s\n", e.msg);
		return MOAT_EXIT_FAILURE;
	}
	int status = MOAT_EXIT_FAILURE;
	struct enforcement *en = NULL;
	_cleanup_close_ int fd = net_open_netns(netns, pid, &e);
	if (fd < 0)
		goto fail;

	struct enforcer_opts eo = {
		.policy = pol,
		.audit_path = audit,
		.upstreams = n_ups ? ups : NULL,
		.n_upstreams = n_ups,
		.workers = workers,
		.pcap = pcap.path ? &pcap : NULL,
	};
	net_pool_default(&eo.pool);
	if ((pool4 || pool6) && net_pool_parse(pool4, pool6, &eo.pool, &e) < 0)
		goto fail;
	if (loop_block_signals(&e) < 0)
		goto fail;
	char id[ENFORCER_ID_LEN + 1];
	enforcer_new_id(id);
	if (enforcement_up(fd, id, &eo, &en, &e) < 0)
		goto fail;
	if (ready && write_ready(ready, id, enforcement_link(en), &e) < 0)
		goto fail;
	log_info("sandbox %s: profile %s, interface %s", id, pol->name,
		 enforcement_link(en)->host_ifname);
	status = loop_until_signal(en) == 0 ? 0 : MOAT_EXIT_FAILURE;
	goto out;
fail:
	fprintf(stderr, "moat enforce: %s\n", e.msg);
out:
	enforcement_down(en);
	if (ready)
		unlink(ready);
	policy_free(pol);
	return status;
}

/* moat cleanup and moat status: the sandboxes of this network namespace, as
 * recorded in their nftables tables (each names its owner's pid). */
#include "common/moat.h"
#include "enforcer/enforcer.h"
#include "enforcer/nft.h"
#include "enforcer/wire.h"
#include "runner/commands.h"
#include "runner/engine.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <getopt.h>
#include <string.h>

const char cleanup_usage[] =
	"Usage: moat cleanup [--dry-run] [--engine podman|docker] [--engine-socket PATH]\n"
	"\n"
	"Removes what a moat that died left: the containers it made (labelled\n"
	"dev.moat.owner=PID, kept ones too) when a container engine is reachable, then,\n"
	"in this network namespace, the tables (inet moat_ID) whose owner process is\n"
	"gone, their veth links, links with no table, and the TPROXY policy routing once\n"
	"no sandbox needs it; and its files in /run/moat. Never touches what a live moat\n"
	"owns. Without an engine reachable it carries on (moat -v says so).\n"
	"\n"
	"      --engine podman|docker  the engine's kind (default podman)\n"
	"      --engine-socket PATH  its API socket (default as for moat run)\n"
	"  -n, --dry-run             only list what would be removed (not containers)\n"
	"\n"
	"Exit status: 0 when everything left behind was removed, 1 otherwise (also when\n"
	"an engine given with --engine or --engine-socket cannot be reached).\n";

/* The containers of dead moats.  Returns 1 when an engine named explicitly failed. */
static int cleanup_containers(const char *kind, const char *socket, bool dry)
{
	struct moat_error e = { 0 };
	struct engine *en = NULL;
	bool explicit = kind || socket;
	bool docker = kind && !strcmp(kind, "docker");
	unsigned removed = 0;

	if (engine_open(docker ? ENGINE_DOCKER : ENGINE_PODMAN, socket, &en, &e) < 0) {
		if (explicit) {
			fprintf(stderr, "moat cleanup: containers not checked: %s\n", e.msg);
			return 1;
		}
		/* most hosts run no engine: say so only when asked (-v) */
		log_info("no container engine reachable, containers not checked (%s)", e.msg);
		return 0;
	}
	if (dry) {
		printf("containers of dead moats on %s (%s) are not listed in a dry run\n",
		       engine_name(en), engine_socket(en));
		engine_close(en);
		return 0;
	}
	int r = engine_cleanup_stale(en, enforcer_owner_alive, &removed, &e);
	if (r < 0)
		fprintf(stderr, "moat cleanup: %s\n", e.msg);
	else if (removed)
		printf("removed %u container%s of dead moats (%s, %s)\n", removed,
		       removed == 1 ? "" : "s", engine_name(en), engine_socket(en));
	engine_close(en);
	return r < 0 ? 1 : 0;
}

/* The resolver files of moat run --engine: /run/moat/ID.PID.resolv.conf. */
static int cleanup_files(bool dry)
{
	DIR *d = opendir("/run/moat");
	struct dirent *de;
	int failed = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char id[ENFORCER_ID_LEN + 1];
		unsigned long pid;
		int end = 0;
		if (sscanf(de->d_name, "%8[0-9a-f].%lu.resolv.conf%n", id, &pid, &end) != 2 ||
		    de->d_name[end] != '\0' || pid == 0 || pid > 4194304 ||
		    enforcer_owner_alive((pid_t)pid))
			continue;
		printf("%s /run/moat/%s\n", dry ? "stale  " : "removed", de->d_name);
		if (!dry && unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
			fprintf(stderr, "moat cleanup: /run/moat/%s: %s\n", de->d_name,
				strerror(errno));
			failed = 1;
		}
	}
	closedir(d);
	return failed;
}

const char status_usage[] =
	"Usage: moat status [--json]\n"
	"\n"
	"Lists the live sandboxes of this network namespace: id, owner pid, profile,\n"
	"interface, the sandbox's addresses and the drop counters.\n";

static const struct net_link_info *find_link(const struct net_link_info *l, size_t n,
					     const char *ifname)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(l[i].ifname, ifname) == 0)
			return &l[i];
	return NULL;
}

static bool table_for_link(const struct nft_table_info *t, size_t n, const char *ifname)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].ifname, ifname) == 0)
			return true;
	return false;
}

int cleanup_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "engine", required_argument, NULL, 'E' },
		{ "engine-socket", required_argument, NULL, 'S' },
		{ 0 },
	};
	const char *kind = NULL, *socket = NULL;
	bool dry = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': dry = true; break;
		case 'S': socket = optarg; break;
		case 'E':
			if (strcmp(optarg, "podman") && strcmp(optarg, "docker")) {
				fprintf(stderr, "moat cleanup: --engine: expected podman or docker "
					"(%s)\n", optarg);
				return 2;
			}
			kind = optarg;
			break;
		case ':':
			fprintf(stderr, "moat cleanup: %s: missing argument\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "moat cleanup: unknown argument '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moat cleanup: unknown argument '%s'\n", argv[optind]);
		return 2;
	}
	struct moat_error e = { 0 };
	_cleanup_free_ struct nft_table_info *t = NULL;
	_cleanup_free_ struct net_link_info *l = NULL;
	size_t nt = 0, nl = 0, kept = 0;
	/* the workloads first, as in a normal teardown */
	int failed = cleanup_containers(kind, socket, dry);

	if (nft_list_tables(&t, &nt, &e) < 0 || net_list_moat_links(&l, &nl, &e) < 0) {
		fprintf(stderr, "moat cleanup: %s\n", e.msg);
		return 1;
	}
	for (size_t i = 0; i < nt; i++) {
		if (enforcer_owner_alive(t[i].owner)) {
			printf("kept    moat_%s (owner pid %d is alive)\n", t[i].id, (int)t[i].owner);
			kept++;
			continue;
		}
		printf("%s moat_%s (owner pid %d, profile %s, interface %s)\n",
		       dry ? "stale  " : "removed", t[i].id, (int)t[i].owner, t[i].profile, t[i].ifname);
		if (dry)
			continue;
		/* the veth goes before the rules, as in a normal teardown */
		if (t[i].ifname[0] && net_unwire(t[i].ifname, &e) < 0) {
			fprintf(stderr, "moat cleanup: %s\n", e.msg);
			failed++;
			continue;
		}
		if (nft_remove(t[i].id, &e) < 0) {
			fprintf(stderr, "moat cleanup: %s\n", e.msg);
			failed++;
		}
	}
	for (size_t i = 0; i < nl; i++) {
		if (table_for_link(t, nt, l[i].ifname))
			continue;
		printf("%s %s (no table)\n", dry ? "stale  " : "removed", l[i].ifname);
		if (!dry && net_unwire(l[i].ifname, &e) < 0) {
			fprintf(stderr, "moat cleanup: %s\n", e.msg);
			failed++;
		}
	}
	if (!dry && kept == 0 && net_tproxy_routing_del(MOAT_FWMARK, MOAT_ROUTE_TABLE, &e) < 0) {
		fprintf(stderr, "moat cleanup: %s\n", e.msg);
		failed++;
	}
	failed += cleanup_files(dry);
	return failed ? 1 : 0;
}

/* A profile's name is the user's text: quoted as a JSON string. */
static void print_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

int status_main(int argc, char **argv)
{
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else {
			fprintf(stderr, "moat status: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	struct moat_error e = { 0 };
	_cleanup_free_ struct nft_table_info *t = NULL;
	_cleanup_free_ struct net_link_info *l = NULL;
	size_t nt = 0, nl = 0, shown = 0;
	if (nft_list_tables(&t, &nt, &e) < 0 || net_list_moat_links(&l, &nl, &e) < 0) {
		fprintf(stderr, "moat status: %s\n", e.msg);
		return 1;
	}
	if (json)
		printf("[");
	else
		printf("%-10s %-8s %-12s %-14s %-16s %s\n", "SANDBOX", "PID", "PROFILE", "INTERFACE",
		       "ADDRESS", "DROPS");
	for (size_t i = 0; i < nt; i++) {
		bool alive = enforcer_owner_alive(t[i].owner);
		const struct net_link_info *li = find_link(l, nl, t[i].ifname);
		char a4[INET_ADDRSTRLEN] = "-", a6[INET6_ADDRSTRLEN] = "-";
		/* the host end holds .1; the sandbox's address is the next one */
		if (li) {
			struct in_addr s4 = li->addr4;
			s4.s_addr = htonl(ntohl(s4.s_addr) + 1);
			struct in6_addr s6 = li->addr6;
			s6.s6_addr[15]++;
			inet_ntop(AF_INET, &s4, a4, sizeof(a4));
			inet_ntop(AF_INET6, &s6, a6, sizeof(a6));
		}
		_cleanup_free_ struct nft_counter *c = NULL;
		size_t nc = 0;
		uint64_t drops = 0;
		if (nft_counters(t[i].id, &c, &nc, &e) == 0)
			for (size_t k = 0; k < nc; k++)
				drops += c[k].packets;
		if (json) {
			printf("%s{\"sandbox\":\"%s\",\"pid\":%d,\"alive\":%s,\"profile\":",
			       shown ? "," : "", t[i].id, (int)t[i].owner, alive ? "true" : "false");
			print_json_str(t[i].profile);
			printf(",\"interface\":\"%s\",\"addr4\":\"%s\",\"addr6\":\"%s\",\"counters\":{",
			       t[i].ifname, a4, a6);
			for (size_t k = 0; k < nc; k++)
				printf("%s\"%s\":{\"packets\":%llu,\"bytes\":%llu}", k ? "," : "",
				       c[k].name, (unsigned long long)c[k].packets,
				       (unsigned long long)c[k].bytes);
			printf("}}");
		} else {
			printf("%-10s %-8d %-12s %-14s %-16s %llu%s\n", t[i].id, (int)t[i].owner,
			       t[i].profile, t[i].ifname, a4, (unsigned long long)drops,
			       alive ? "" : "  (owner dead: run moat cleanup)");
			for (size_t k = 0; k < nc; k++)
				if (c[k].packets)
					printf("%-10s   %s: %llu packets\n", "", c[k].name,
					       (unsigned long long)c[k].packets);
		}
		shown++;
	}
	if (json)
		printf("]\n");
	return 0;
}

/* moat cleanup and moat status: the sandboxes of this network namespace, as
 * recorded in their nftables tables (each names its owner's pid). */
#include "common/moat.h"
#include "enforcer/enforcer.h"
#include "enforcer/nft.h"
#include "enforcer/wire.h"
#include "runner/commands.h"

#include <arpa/inet.h>
#include <string.h>

const char cleanup_usage[] =
	"Usage: moat cleanup [--dry-run]\n"
	"\n"
	"Removes what a moat that died left in this network namespace: the tables\n"
	"(inet moat_ID) whose owner process is gone, their veth links, links with no\n"
	"table, and the TPROXY policy routing once no sandbox needs it. Never touches\n"
	"what a live moat owns.\n"
	"\n"
	"Exit status: 0 when everything left behind was removed, 1 otherwise.\n";

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
	bool dry = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0) {
			dry = true;
		} else {
			fprintf(stderr, "moat cleanup: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	struct moat_error e = { 0 };
	_cleanup_free_ struct nft_table_info *t = NULL;
	_cleanup_free_ struct net_link_info *l = NULL;
	size_t nt = 0, nl = 0, kept = 0;
	int failed = 0;

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
	return failed ? 1 : 0;
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
			printf("%s{\"sandbox\":\"%s\",\"pid\":%d,\"alive\":%s,\"profile\":\"%s\","
			       "\"interface\":\"%s\",\"addr4\":\"%s\",\"addr6\":\"%s\",\"counters\":{",
			       shown ? "," : "", t[i].id, (int)t[i].owner, alive ? "true" : "false",
			       t[i].profile, t[i].ifname, a4, a6);
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

/* moat: one binary, a small table of subcommands. */
#include "common/moat.h"
#include "runner/commands.h"

#include <string.h>

static int version_main(int argc, char **argv);
static int help_main(int argc, char **argv);

static const char version_usage[] = "Usage: moat version\n\nPrints moat's version.\n";
static const char help_usage[] = "Usage: moat help [COMMAND]\n\nShows help for moat or for COMMAND.\n";

static const struct moat_command commands[] = {
	{ "run", run_main, "run a command or container with its network confined to a profile", run_usage },
	{ "enforce", enforce_main, "confine an existing network namespace until interrupted", enforce_usage },
	{ "profile", profile_main, "check, show and explain permission profiles", profile_usage },
	{ "audit", audit_main, "one row per flow from pcap files and the audit log; learn a profile", audit_usage },
	{ "status", status_main, "list live sandboxes with their profile, addresses and counters", status_usage },
	{ "cleanup", cleanup_main, "remove what a dead moat left behind", cleanup_usage },
	{ "version", version_main, "print the version", version_usage },
	{ "help", help_main, "show help for a command", help_usage },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: moat [-v] COMMAND [ARG...]\n\n"
		   "moat runs a process or a container with its network confined to what a\n"
		   "JSON permission profile allows, enforced from outside the workload with\n"
		   "nftables and a transparent proxy.\n\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'moat help COMMAND' or 'moat COMMAND --help' for a command's options.\n"
		   "See moat(1).\n");
}

static const struct moat_command *find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int version_main(int argc, char **argv)
{
	printf("moat %s\n", MOAT_VERSION);
	return 0;
}

static int help_main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stdout);
		return 0;
	}
	const struct moat_command *c = find(argv[1]);
	if (!c) {
		fprintf(stderr, "moat: unknown command '%s' (see 'moat --help')\n", argv[1]);
		return 2;
	}
	fputs(c->usage, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0) {
			return version_main(0, NULL);
		} else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
			if (moat_log_level < MOAT_LOG_DEBUG)
				moat_log_level++;
		} else {
			fprintf(stderr, "moat: unknown option '%s' (see 'moat --help')\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	const struct moat_command *c = find(argv[i]);
	if (!c) {
		fprintf(stderr, "moat: unknown command '%s' (see 'moat --help')\n", argv[i]);
		return 2;
	}
	/* every command answers a leading --help the same way */
	if (i + 1 < argc && (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0)) {
		fputs(c->usage, stdout);
		return 0;
	}
	return c->main(argc - i, argv + i);
}

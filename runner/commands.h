/* Subcommands of the moat binary: each returns the process exit status. */
#ifndef MOAT_COMMANDS_H
#define MOAT_COMMANDS_H

struct moat_command {
	const char *name;
	int (*main)(int argc, char **argv);   /* argv[0] is the command name */
	const char *summary;
	const char *usage;                    /* full help text */
};

int run_main(int argc, char **argv);
int enforce_main(int argc, char **argv);
int profile_main(int argc, char **argv);
int cleanup_main(int argc, char **argv);
int status_main(int argc, char **argv);
int audit_main(int argc, char **argv);

extern const char run_usage[];
extern const char enforce_usage[];
extern const char profile_usage[];
extern const char cleanup_usage[];
extern const char status_usage[];
extern const char audit_usage[];

#endif

/* Shared between runner/sandbox.c (moat's side) and runner/sandbox_child.c (the init's). */
#ifndef MOAT_RUNNER_SANDBOX_INTERNAL_H
#define MOAT_RUNNER_SANDBOX_INTERNAL_H

#include "common/moat.h"
#include "runner/sandbox.h"

#include <stdint.h>

/* The step that failed, sent with its errno on the status pipe. */
enum sandbox_stage {
	SB_ST_READY,        /* setup done, waiting for the go signal */
	SB_ST_PDEATHSIG,
	SB_ST_PRIVATE,
	SB_ST_PROC,
	SB_ST_SCRATCH,
	SB_ST_RESOLV,
	SB_ST_HOSTS,
	SB_ST_HOSTNAME,
	SB_ST_LO,
	SB_ST_CAPBSET,
	SB_ST_AMBIENT,
	SB_ST_CAPSET,
	SB_ST_NNP,
	SB_ST_FORK,
	SB_ST_GROUPS,
	SB_ST_SETGID,
	SB_ST_SETUID,
	SB_ST_CHDIR,
	SB_ST_EXEC,
	SB_ST_COUNT,
};

struct sandbox_msg {
	int32_t stage;
	int32_t err;        /* positive errno */
};

/* What the init gets from moat through clone()'s copy of its memory. */
struct sandbox_child {
	const struct sandbox_spec *spec;
	int go_rd;          /* read end of the go signal */
	int status_wr;      /* write end of the status pipe (CLOEXEC) */
};

int sandbox_child_main(void *arg);

#endif

/* Container engines (Podman, Docker) through the Docker-compatible Engine API over a unix socket.
 *
 *   engine_open(ENGINE_PODMAN, NULL, &en, &e);
 *   container_prepare(en, &spec, &c, &netns_fd, &e);  // created, command NOT started
 *   ... wire and confine netns_fd ...
 *   container_start(c, &e);                           // output streams to spec.out_fd/err_fd
 *   poll(container_wait_fd(c)) ... container_exit_code(c, &code, &e);
 *   container_remove(c, false);
 *
 * Network: the workload never sees any network but lo until the caller wires one in.
 *   podman: the workload is created with netns "none" and initialised (POST .../init), so its
 *           processes exist, in their own netns, while the command is still held by the runtime.
 *   docker: a pause container (the image given, with the static pause program bind-mounted
 *           read-only as its entrypoint) runs with NetworkMode "none"; the workload is created
 *           with NetworkMode "container:<pause>" and joins that netns when it starts.
 * Only non-tty, non-interactive containers: stdin is not attached. See docs/containers.md. */
#ifndef MOAT_RUNNER_ENGINE_H
#define MOAT_RUNNER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tproxy/parse.h"

struct moat_error;

enum engine_kind { ENGINE_PODMAN, ENGINE_DOCKER };

struct engine;

/* The socket: socket (a path or unix://path) if not NULL; else CONTAINER_HOST then DOCKER_HOST
 * (podman) or DOCKER_HOST then CONTAINER_HOST (docker), which must be unix://; else
 * /run/podman/podman.sock or /var/run/docker.sock.  Checks /_ping and /version and keeps the
 * API version to use (the engine's, at most 1.41).  ENGINE_PODMAN needs a Podman engine (it uses
 * the libpod endpoints); ENGINE_DOCKER works with Docker and with Podman's compat API. */
int engine_open(enum engine_kind kind, const char *socket, struct engine **out,
		struct moat_error *e);
void engine_close(struct engine *en);
/* "podman" or "docker" (as used in messages), the socket path, the engine's version string. */
const char *engine_name(const struct engine *en);
const char *engine_socket(const struct engine *en);
const char *engine_version(const struct engine *en);
const char *engine_api_version(const struct engine *en);

struct engine_mount {
	const char *src, *dst;
	bool ro;
};

struct container_spec {
	const char *image;
	char *const *cmd;             /* NULL: the image's default (entrypoint is always kept) */
	char *const *env;             /* "K=V", NULL-terminated; NULL: none */
	const struct engine_mount *mounts;
	size_t n_mounts;
	const char *user;             /* NULL: the image's default */
	const char *name_hint;        /* container name, [A-Za-z0-9_.-]; NULL: engine picks */
	const char *sandbox_id;       /* label dev.moat.sandbox; NULL: name_hint */
	const char *pause_program;    /* ENGINE_DOCKER: host path of the static pause program */
	int out_fd, err_fd;           /* where the output goes; 0 means 1 and 2 */
};

struct container;

/* Creates the workload (and, for docker, the running pause container) and returns in *netns_fd
 * an O_CLOEXEC fd of the network namespace the workload will run in, which holds only lo and is
 * never moat's own.  The workload's command has not started.  On failure everything created is
 * removed and *out is NULL; -ENOENT / -EACCES only when the runtime could not find / execute
 * the command (podman looks it up at init), never for a missing image. */
int container_prepare(struct engine *en, const struct container_spec *s, struct container **out,
		      int *netns_fd, struct moat_error *e);

/* Attaches to the workload's output (a thread writes stdout and stderr to out_fd/err_fd), then
 * starts its command and a thread waiting for its exit.  -ENOENT when the command was not found,
 * -EACCES when it is not executable (moat run exits 127/126), another negative errno otherwise. */
int container_start(struct container *c, struct moat_error *e);

/* An fd that becomes readable once the workload has exited (or waiting for it failed). */
int container_wait_fd(const struct container *c);

/* Blocks until the workload has exited and its output is written; *code is its exit status
 * (128+signal when killed, as docker reports it). */
int container_exit_code(struct container *c, int *code, struct moat_error *e);

/* Sends a signal to the workload.  -ESRCH when it is not running. */
int container_kill(struct container *c, int sig, struct moat_error *e);

/* The workload's (and pause container's) id. */
const char *container_id(const struct container *c);
const char *container_pause_id(const struct container *c);

/* Removes the workload and pause containers (force: they are killed), or with keep only stops
 * them; stops the threads, closes fds and frees c.  Safe with NULL and after any failure. */
void container_remove(struct container *c, bool keep);

/* For moat cleanup: removes the containers labelled dev.moat.owner=<pid> whose pid is not
 * alive(pid); *removed counts them. */
int engine_cleanup_stale(struct engine *en, bool (*alive)(pid_t), unsigned *removed,
			 struct moat_error *e);

/* ---- the multiplexed attach/logs stream (non-tty) ----
 *
 *   byte 0     stream: 0 stdin, 1 stdout, 2 stderr
 *   bytes 1-3  zero
 *   bytes 4-7  payload length, big-endian
 *   payload
 *
 * engine_frame_parse() looks at one frame at buf: PARSE_OK with the whole frame in buf
 * (f->size bytes consumed), PARSE_NEED_MORE while it is incomplete, PARSE_INVALID for a bad
 * header or a payload over ENGINE_FRAME_MAX. */
#define ENGINE_FRAME_HDR 8
#define ENGINE_FRAME_MAX (1u << 20)

struct engine_frame {
	uint8_t stream;
	const uint8_t *payload;
	size_t len;          /* payload length */
	size_t size;         /* header + payload */
};

enum parse_result engine_frame_parse(const uint8_t *buf, size_t len, struct engine_frame *f);

#endif

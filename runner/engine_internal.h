/* Private to runner/engine_api.c, runner/container.c and runner/container_run.c. */
#ifndef MOAT_RUNNER_ENGINE_INTERNAL_H
#define MOAT_RUNNER_ENGINE_INTERNAL_H

#include <curl/curl.h>
#include <cjson/cJSON.h>

#include "runner/engine.h"

/* libcurl is opened on first use (engine_open), so that only commands with an engine map it
 * and the libraries it pulls in.  The names below call through this table, whose types come
 * from <curl/curl.h>; a curl function missing here fails to link, as moat is not linked
 * with libcurl.  The table is valid once engine_open() has succeeded. */
#define ENGINE_CURL_FNS(X) \
	X(global_init) X(easy_init) X(easy_cleanup) X(easy_reset) X(easy_setopt) \
	X(easy_perform) X(easy_getinfo) X(easy_header) X(easy_strerror) X(easy_escape) \
	X(slist_append) X(slist_free_all)
struct curl_fns {
#define ENGINE_CURL_FN(f) __typeof__(curl_##f) *f;
	ENGINE_CURL_FNS(ENGINE_CURL_FN)
#undef ENGINE_CURL_FN
};
extern struct curl_fns engine_curl;

/* curl's type-checking macros for these two give way to the plain call */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init engine_curl.global_init
#define curl_easy_init engine_curl.easy_init
#define curl_easy_cleanup engine_curl.easy_cleanup
#define curl_easy_reset engine_curl.easy_reset
#define curl_easy_setopt engine_curl.easy_setopt
#define curl_easy_perform engine_curl.easy_perform
#define curl_easy_getinfo engine_curl.easy_getinfo
#define curl_easy_header engine_curl.easy_header
#define curl_easy_strerror engine_curl.easy_strerror
#define curl_easy_escape engine_curl.easy_escape
#define curl_slist_append engine_curl.slist_append
#define curl_slist_free_all engine_curl.slist_free_all

/* Replies larger than this are refused (inspect of a big container is ~10 KiB). */
#define ENGINE_REPLY_MAX (4u << 20)
#define ENGINE_ID_MAX 128
/* Output of the attach stream kept while a frame is incomplete. */
#define ENGINE_STREAM_BUF (ENGINE_FRAME_HDR + ENGINE_FRAME_MAX)

struct engine {
	enum engine_kind kind;
	char *socket;
	char compat[24];          /* "/v1.41" */
	char libpod[40];          /* "/v4.3.1/libpod" */
	char api_version[16];
	char version[64];
	CURL *h;                  /* for requests from the calling thread */
};

struct engine_reply {
	long status;
	char *body;
	size_t len;
	cJSON *json;              /* body parsed, or NULL */
};

/* A fresh easy handle talking to en's socket. */
CURL *engine_handle(const struct engine *en);

/* METHOD path (already prefixed, e.g. en->compat) with an optional JSON body.  A reply with
 * status >= 400 is an error "NAME: what: <engine's message> (STATUS)"; r is still filled.
 * r must be freed with engine_reply_free() in every case. */
int engine_request(struct engine *en, CURL *h, const char *method, const char *path,
		   const cJSON *body, const char *what, struct engine_reply *r,
		   struct moat_error *e);
/* The same without a time limit, aborted (-ECANCELED) once *stop becomes non-zero. */
int engine_request_until(struct engine *en, CURL *h, const char *method, const char *path,
			 const cJSON *body, const char *what, const int *stop,
			 struct engine_reply *r, struct moat_error *e);
void engine_reply_free(struct engine_reply *r);

/* The engine's message for a failed reply ("message", else "cause", else the body). */
void engine_reply_message(const struct engine_reply *r, char *buf, size_t size);

/* A container id as the engine returned it: 12 to 64 lowercase hex digits. */
bool engine_id_valid(const char *id);

#include <pthread.h>

/* One workload container (and the pause container that holds its netns for docker). */
struct container {
	struct engine *en;
	char id[ENGINE_ID_MAX];
	char pause_id[ENGINE_ID_MAX];
	int out_fd, err_fd;
	int wait_efd;
	int stop;                         /* set: threads abort their requests */
	bool exec_failed;                 /* prepare failed: the command cannot be run */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* attach thread */
	pthread_t attach_thr;
	CURL *attach_thr_h;
	bool attach_running, attach_done;
	int attach_state;                 /* 0 connecting, 1 streaming, <0 failed */
	long attach_status;
	struct moat_error attach_err;
	char errbody[512];
	size_t errbody_len;
	uint8_t *sbuf;
	size_t slen;
	/* wait thread */
	pthread_t wait_thr;
	CURL *wait_h;
	bool wait_running, wait_joined;
	int wait_r, exit_code;
	struct moat_error wait_err;
};

/* A request with no body whose reply is only checked; path from fmt. */
int container_simple_request(struct engine *en, const char *method, const char *what,
			     struct moat_error *e, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The errno for a failure of the runtime to exec the command: ENOENT (not found), EACCES
 * (not executable), else e->code. */
int container_exec_errno(const struct moat_error *e);
/* Waits up to ms for the output thread to finish, then stops it and joins it. */
void container_attach_drain(struct container *c, int ms);

#endif

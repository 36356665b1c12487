/* A prepared container at work: its output attached and demultiplexed onto moat's fds, its
 * command started, a thread waiting for its exit, signals, and the wait for its exit status. */
#include "common/moat.h"
#include "runner/engine_internal.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

/* How long the output may trail the exit before the stream is cut. */
#define STREAM_DRAIN_MS 5000
#define ATTACH_READY_MS 15000

/* ---- output: the attach stream, demultiplexed ---- */

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			poll(&pfd, 1, 1000);
			continue;
		}
		if (w <= 0)
			return;          /* reader gone: drop the output, keep draining */
		p += w;
		n -= (size_t)w;
	}
}

static void attach_set_state(struct container *c, int state)
{
	pthread_mutex_lock(&c->mu);
	c->attach_state = state;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static size_t attach_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct container *c = userdata;
	size_t n = size * nitems;
	long status = 0;

	if (n > 2 || (n == 2 && buf[0] != '\r') || (n == 1 && buf[0] != '\n'))
		return n;
	/* end of a header block */
	curl_easy_getinfo(c->attach_thr_h, CURLINFO_RESPONSE_CODE, &status);
	if (status == 100)
		return n;
	c->attach_status = status;
	if (status == 200 || status == 101)
		attach_set_state(c, 1);
	return n;
}

static size_t attach_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct container *c = userdata;
	size_t n = size * nmemb, off = 0;

	if (c->attach_state != 1) {
		/* an error reply: keep its start for the message */
		size_t k = n < sizeof(c->errbody) - 1 - c->errbody_len ?
			   n : sizeof(c->errbody) - 1 - c->errbody_len;
		memcpy(c->errbody + c->errbody_len, ptr, k);
		c->errbody_len += k;
		c->errbody[c->errbody_len] = '\0';
		return n;
	}
	while (off < n) {
		size_t k = n - off;
		if (k > ENGINE_STREAM_BUF - c->slen)
			k = ENGINE_STREAM_BUF - c->slen;
		memcpy(c->sbuf + c->slen, ptr + off, k);
		c->slen += k;
		off += k;

		size_t pos = 0;
		struct engine_frame f;
		enum parse_result pr;
		while ((pr = engine_frame_parse(c->sbuf + pos, c->slen - pos, &f)) == PARSE_OK) {
			if (f.stream == 1)
				write_all(c->out_fd, f.payload, f.len);
			else if (f.stream == 2)
				write_all(c->err_fd, f.payload, f.len);
			pos += f.size;
		}
		if (pr == PARSE_INVALID) {
			moat_error_set(&c->attach_err, EPROTO,
				       "%s: attach: malformed output stream", engine_name(c->en));
			return 0;
		}
		memmove(c->sbuf, c->sbuf + pos, c->slen - pos);
		c->slen -= pos;
	}
	return n;
}

static int attach_stop_check(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			     curl_off_t ultotal, curl_off_t ulnow)
{
	struct container *c = clientp;
	return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) ? 1 : 0;
}

static void *attach_main(void *arg)
{
	struct container *c = arg;
	char url[ENGINE_ID_MAX + 128];
	CURL *h = c->attach_thr_h;

	snprintf(url, sizeof(url),
		 "http://localhost%s/containers/%s/attach?stream=1&stdout=1&stderr=1",
		 c->en->compat, c->id);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, attach_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, attach_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, attach_stop_check);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	CURLcode cr = curl_easy_perform(h);

	if (c->attach_state != 1) {
		if (cr == CURLE_OK || cr == CURLE_WRITE_ERROR) {
			struct engine_reply r = { .status = c->attach_status, .body = c->errbody,
						  .len = c->errbody_len };
			char msg[320];
			r.json = cJSON_ParseWithLength(c->errbody, c->errbody_len);
			engine_reply_message(&r, msg, sizeof(msg));
			cJSON_Delete(r.json);
			moat_error_set(&c->attach_err, EIO, "%s: attach: %s (%ld)",
				       engine_name(c->en), msg, c->attach_status);
		} else if (cr == CURLE_COULDNT_CONNECT) {
			moat_error_set(&c->attach_err, EIO, "cannot reach the %s API at %s",
				       engine_name(c->en), c->en->socket);
		} else {
			moat_error_set(&c->attach_err, EIO, "%s: attach: %s", engine_name(c->en),
				       curl_easy_strerror(cr));
		}
		attach_set_state(c, -EIO);
	} else if (cr != CURLE_OK && cr != CURLE_ABORTED_BY_CALLBACK && !c->attach_err.code) {
		moat_error_set(&c->attach_err, EIO, "%s: attach: %s", engine_name(c->en),
			       curl_easy_strerror(cr));
	}
	if (c->attach_state == 1 && c->slen > 0 && !c->attach_err.code)
		moat_error_set(&c->attach_err, EPROTO, "%s: attach: output stream cut in a frame",
			       engine_name(c->en));
	pthread_mutex_lock(&c->mu);
	c->attach_done = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---- wait ---- */

static void *wait_main(void *arg)
{
	struct container *c = arg;
	char path[ENGINE_ID_MAX + 96];
	struct engine_reply r;
	uint64_t one = 1;

	/* podman's compat wait polls the state every 250 ms or so; its own takes an interval
	 * and answers the bare exit status */
	if (c->en->kind == ENGINE_PODMAN)
		snprintf(path, sizeof(path), "%s/containers/%s/wait?interval=20ms", c->en->libpod,
			 c->id);
	else
		snprintf(path, sizeof(path), "%s/containers/%s/wait", c->en->compat, c->id);
	c->wait_r = engine_request_until(c->en, c->wait_h, "POST", path, NULL, "wait", &c->stop, &r,
					 &c->wait_err);
	if (c->wait_r == 0) {
		const cJSON *code = c->en->kind == ENGINE_PODMAN ? r.json :
				    cJSON_GetObjectItemCaseSensitive(r.json, "StatusCode");
		if (cJSON_IsNumber(code) && code->valuedouble >= 0 && code->valuedouble <= 255)
			c->exit_code = (int)code->valuedouble;
		else
			c->wait_r = moat_error_set(&c->wait_err, EPROTO,
						   "%s: wait: no exit status in the reply",
						   engine_name(c->en));
	}
	engine_reply_free(&r);
	if (write(c->wait_efd, &one, sizeof(one)) < 0)
		log_warn("eventfd: %s", strerror(errno));
	return NULL;
}

/* Threads of moat take no signals: those are for moat's loop. */
static int spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}


int container_start(struct container *c, struct moat_error *e)
{
	struct engine *en = c->en;
	struct timespec dl;
	int ret;

	if (c->attach_running || c->wait_running)
		return moat_error_set(e, EALREADY, "container already started");
	c->sbuf = malloc(ENGINE_STREAM_BUF);
	c->attach_thr_h = engine_handle(en);
	c->wait_h = engine_handle(en);
	if (!c->sbuf || !c->attach_thr_h || !c->wait_h)
		return moat_error_set(e, ENOMEM, "out of memory");
	ret = spawn(&c->attach_thr, attach_main, c);
	if (ret < 0)
		return moat_error_errno(e, -ret, "pthread_create");
	c->attach_running = true;

	/* the output is attached before the command starts, so none is lost */
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ATTACH_READY_MS / 1000;
	pthread_mutex_lock(&c->mu);
	while (c->attach_state == 0 && ret == 0)
		ret = -pthread_cond_timedwait(&c->cv, &c->mu, &dl);
	int state = c->attach_state;
	pthread_mutex_unlock(&c->mu);
	if (state < 0) {
		/* podman readies the container for attach: a bad command fails here */
		int code = container_exec_errno(&c->attach_err);
		if (e) {
			*e = c->attach_err;
			e->code = code;
		}
		c->attach_err.code = 0;         /* reported: not again at removal */
		return -code;
	}
	if (state == 0)
		return moat_error_set(e, ETIMEDOUT, "%s: attach: no answer within %d s",
				      engine_name(en), ATTACH_READY_MS / 1000);

	struct moat_error le = { 0 };
	ret = container_simple_request(en, "POST", "start", &le, "%s/containers/%s/start",
				       en->compat, c->id);
	if (ret < 0) {
		le.code = container_exec_errno(&le);
		if (e)
			*e = le;
		return -le.code;
	}
	ret = spawn(&c->wait_thr, wait_main, c);
	if (ret < 0)
		return moat_error_errno(e, -ret, "pthread_create");
	c->wait_running = true;
	return 0;
}

/* Waits for the attach thread to have written everything, at most ms. */
void container_attach_drain(struct container *c, int ms)
{
	struct timespec dl;
	int r = 0;

	if (!c->attach_running)
		return;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	while (!c->attach_done && r == 0)
		r = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
	pthread_mutex_unlock(&c->mu);
	if (!c->attach_done)
		__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	pthread_join(c->attach_thr, NULL);
	c->attach_running = false;
	if (c->attach_err.code)
		log_warn("%s", c->attach_err.msg);
}

int container_exit_code(struct container *c, int *code, struct moat_error *e)
{
	if (!c->wait_running && !c->wait_joined)
		return moat_error_set(e, EINVAL, "container not started");
	if (c->wait_running) {
		pthread_join(c->wait_thr, NULL);
		c->wait_running = false;
		c->wait_joined = true;
	}
	container_attach_drain(c, STREAM_DRAIN_MS);
	if (c->wait_r < 0) {
		if (e)
			*e = c->wait_err;
		return c->wait_r;
	}
	*code = c->exit_code;
	return 0;
}

int container_kill(struct container *c, int sig, struct moat_error *e)
{
	struct moat_error le = { 0 };
	int ret = container_simple_request(c->en, "POST", "kill", &le,
					   "%s/containers/%s/kill?signal=%d", c->en->compat, c->id,
					   sig);

	if (ret < 0 && (ret == -EBUSY || strstr(le.msg, "state improper") ||
			strstr(le.msg, "not running")))
		return moat_error_set(e, ESRCH, "%s: kill: container %.12s is not running",
				      engine_name(c->en), c->id);
	if (ret < 0 && e)
		*e = le;
	return ret;
}

static void stop_one(struct engine *en, const char *id)
{
	struct moat_error e = { 0 };

	if (!id[0])
		return;
	/* 304: it had stopped already */
	if (container_simple_request(en, "POST", "stop", &e, "%s/containers/%s/stop?t=0",
				     en->compat, id) < 0 &&
	    e.code != EALREADY && e.code != ENOENT)
		log_warn("%s", e.msg);
}

static void remove_one(struct engine *en, const char *id)
{
	struct moat_error e = { 0 };

	if (!id[0])
		return;
	if (container_simple_request(en, "DELETE", "remove", &e, "%s/containers/%s?force=1&v=1",
				     en->compat, id) < 0 &&
	    e.code != ENOENT)
		log_warn("%s", e.msg);
}

void container_remove(struct container *c, bool keep)
{
	if (!c)
		return;
	/* the workload first: it depends on the pause container's netns */
	if (!keep) {
		remove_one(c->en, c->id);
		remove_one(c->en, c->pause_id);
	} else {
		stop_one(c->en, c->id);
		stop_one(c->en, c->pause_id);
	}
	__atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
	if (c->wait_running)
		pthread_join(c->wait_thr, NULL);
	container_attach_drain(c, 0);
	if (c->attach_thr_h)
		curl_easy_cleanup(c->attach_thr_h);
	if (c->wait_h)
		curl_easy_cleanup(c->wait_h);
	if (c->wait_efd >= 0)
		close(c->wait_efd);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c->sbuf);
	free(c);
}


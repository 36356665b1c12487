/* The relay of an allowed connection: splice() through a pipe per
 * direction, taken from the worker's pool only while bytes are in flight.
 *
 * server -> client is always spliced blindly.  client -> server is blind for
 * TLS and raw streams; for plain HTTP every request is judged: the head is
 * read into the buffer and judged, then exactly its body is forwarded
 * (Content-Length bodies by splice, chunked bodies through the buffer), then
 * the next head is judged.  A denied later request never reaches the server:
 * the bytes judged before it are flushed, the upstream write side is shut,
 * the server finishes the responses already asked for, and only then does
 * the client get the 403, in order, before the connection closes.
 *
 * Epoll is level-triggered; a direction that stops short of EAGAIN (the
 * per-wakeup budget, or a short read) is simply polled again.  A wake-up
 * pumps only the direction(s) its event concerns, so readiness on one side
 * does not cost a failing splice() on the other. */
#include "tproxy/proxy_internal.h"
#include "common/moat.h"

#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define SPLICE_CHUNK PIPE_BYTES
#define PUMP_BUDGET 32

enum { P_AGAIN = 0, P_MORE = 1, P_EOF = 2, P_SHORT = 3, P_ERR = -1 };

int buf_reserve(struct conn *c, size_t want, size_t max)
{
	if (want > max)
		want = max;
	if (c->buf && c->cap >= want)
		return 0;
	size_t ncap = c->cap ? c->cap : 2048;
	while (ncap < want)
		ncap *= 2;
	if (ncap > max)
		ncap = max;
	uint8_t *nb = realloc(c->buf, ncap);
	if (!nb)
		return -ENOMEM;
	c->buf = nb;
	c->cap = (uint32_t)ncap;
	return 0;
}

static void buf_drop(struct conn *c)
{
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = c->fwd = c->sent = 0;
}

static bool pending(const struct dir *d)
{
	return d->p && d->p->pending;
}

/* Pipe -> sink.  P_MORE when the pipe emptied, P_AGAIN when the sink is full. */
static int drain(struct conn *c, struct dir *d, int to, uint64_t *count)
{
	while (d->p->pending) {
		ssize_t n = splice(d->p->fd[0], NULL, to, NULL, d->p->pending,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return P_AGAIN;
			return P_ERR;
		}
		d->p->pending -= (size_t)n;
		*count += (uint64_t)n;
	}
	return P_MORE;
}

/* Source -> pipe, at most limit bytes; the pipe is returned to the pool
 * when nothing was read.  P_SHORT: at most half of what was asked was read,
 * so the source is most likely empty for now (a read near the size asked
 * more likely ran out of pipe slots).  Unless the peer is known to have
 * shut its side (EPOLLRDHUP: one more splice finds the EOF), the caller
 * drains and ends its turn rather than splice again only to see EAGAIN.
 * That is safe because epoll is level-triggered: a source that still (or
 * again) holds bytes, or has reached EOF, wakes us at once while its
 * EPOLLIN is asked for; a wrong guess costs one epoll_wait, never a byte. */
static int fill(struct conn *c, struct dir *d, int from, uint64_t limit, uint64_t *moved)
{
	if (!d->p && !(d->p = pipe_get(c->w)))
		return P_ERR;
	size_t want = limit < SPLICE_CHUNK ? (size_t)limit : SPLICE_CHUNK;
	ssize_t n = splice(from, NULL, d->p->fd[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n <= 0) {
		int err = errno;
		pipe_put(c->w, d->p);
		d->p = NULL;
		if (n == 0)
			return P_EOF;
		return err == EAGAIN || err == EINTR ? P_AGAIN : P_ERR;
	}
	d->p->pending += (size_t)n;
	*moved = (uint64_t)n;
	return (size_t)n <= want / 2 ? P_SHORT : P_MORE;
}

static int recv_more(struct conn *c, size_t max)
{
	if (c->len >= max)
		return P_ERR;
	if (buf_reserve(c, c->len + 2048, max) < 0)
		return P_ERR;
	ssize_t n = recv(c->cfd, c->buf + c->len, c->cap - c->len, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? P_AGAIN : P_ERR;
	if (n == 0)
		return P_EOF;
	c->len += (uint32_t)n;
	return P_MORE;
}

static bool body_done(const struct http_body *b)
{
	return b->kind == HTTP_BODY_NONE || (b->kind == HTTP_BODY_LENGTH && b->remaining == 0);
}

static void body_finished(struct conn *c)
{
	c->up_mode = c->upgrade_after_body ? UP_BLIND : UP_HTTP_HEAD;
	if (c->up_mode == UP_BLIND)
		c->fwd = c->len;        /* after an Upgrade the stream is no longer HTTP */
}

/* client -> server.  Returns P_AGAIN (waiting), P_MORE (budget spent, work
 * left), P_ERR (c must be closed). */
static int pump_up(struct conn *c, bool hup)
{
	/* idle: a fill came up short, stop before the next one.  A turn that
	 * starts with bytes in c->buf is for them; a read after them is mostly
	 * in vain (a client that sent its ClientHello waits for the answer),
	 * and a level-triggered EPOLLIN brings us back if there is more. */
	bool idle = c->len > 0;
	for (int i = 0; i < PUMP_BUDGET; i++) {
		int r;
		uint64_t moved = 0;
		if (pending(&c->up)) {
			r = drain(c, &c->up, c->ufd, &c->bytes_up);
			if (r != P_MORE)
				return r;
		}
		if (c->sent < c->fwd) {
			ssize_t n = send(c->ufd, c->buf + c->sent, c->fwd - c->sent, MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? P_AGAIN : P_ERR;
			c->sent += (uint32_t)n;
			c->bytes_up += (uint64_t)n;
			continue;
		}
		if (c->fwd) {
			memmove(c->buf, c->buf + c->fwd, c->len - c->fwd);
			c->len -= c->fwd;
			c->fwd = c->sent = 0;
		}
		if (c->len == 0 && c->buf)
			buf_drop(c);    /* an idle connection keeps no buffer */
		if (c->up.eof) {
			if (!c->up.shut) {
				shutdown(c->ufd, SHUT_WR);
				c->up.shut = true;
			}
			return P_AGAIN;
		}
		switch (c->up_mode) {
		case UP_BLIND:
			if (idle)
				return P_AGAIN;
			r = fill(c, &c->up, c->cfd, UINT64_MAX, &moved);
			break;
		case UP_HTTP_BODY:
			if (body_done(&c->body)) {
				body_finished(c);
				continue;
			}
			if (c->len) {
				size_t used = 0;
				enum parse_result pr = http_body_consume(&c->body, c->buf, c->len,
									 &used);
				if (pr == PARSE_INVALID || used > c->len)
					return P_ERR;
				c->fwd = (uint32_t)used;
				if (pr == PARSE_OK) {
					body_finished(c);
					continue;
				}
				if (used)
					continue;
			}
			if (c->body.kind == HTTP_BODY_LENGTH && c->len == 0) {
				if (idle)
					return P_AGAIN;
				r = fill(c, &c->up, c->cfd, c->body.remaining, &moved);
				if (moved)
					http_body_skip(&c->body, moved);
			} else {
				r = recv_more(c, HTTP_HEAD_MAX);
			}
			break;
		case UP_HTTP_HEAD:
			if (c->len) {
				r = conn_judge_seen(c, false, c->len >= HTTP_HEAD_MAX ? SEEN_BAD_HTTP : -1);
				if (r == 2) {
					c->up_mode = UP_HTTP_RESOLVE;
					return P_AGAIN;
				}
				if (r >= 0)
					continue;       /* allowed: BODY; denied: DENIED */
			}
			r = recv_more(c, HTTP_HEAD_MAX);
			break;
		case UP_HTTP_DENIED:
			if (!c->up.shut) {
				shutdown(c->ufd, SHUT_WR);
				c->up.shut = true;
			}
			return P_AGAIN;
		default:
			return P_AGAIN;
		}
		if (r == P_EOF)
			c->up.eof = true;
		else if (r == P_SHORT)
			idle = !hup;
		else if (r != P_MORE)
			return r;
	}
	/* the budget ran out: what is left may sit in c->buf, where no socket
	 * event will announce it (relay_update_events asks for another turn) */
	return P_MORE;
}

/* server -> client.  Returns P_AGAIN, P_ERR, or P_EOF when c went to linger. */
static int pump_down(struct conn *c, bool hup)
{
	bool idle = false;      /* a fill came up short: stop after draining it */
	for (int i = 0; i < PUMP_BUDGET; i++) {
		int r;
		uint64_t moved = 0;
		if (pending(&c->down)) {
			r = drain(c, &c->down, c->cfd, &c->bytes_down);
			if (r != P_MORE)
				return r;
		}
		if (c->down.eof || idle)
			break;
		r = fill(c, &c->down, c->ufd, UINT64_MAX, &moved);
		if (r == P_EOF)
			c->down.eof = true;
		else if (r == P_SHORT)
			idle = !hup;
		else if (r != P_MORE)
			return r;
	}
	if (!c->down.eof || pending(&c->down))
		return P_AGAIN;
	if (c->tail) {
		while (c->tail_sent < c->tail_len) {
			ssize_t n = send(c->cfd, c->tail + c->tail_sent, c->tail_len - c->tail_sent,
					 MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN || errno == EINTR ? P_AGAIN : P_ERR;
			c->tail_sent += (uint16_t)n;
			c->bytes_down += (uint64_t)n;
		}
		linger_start(c);
		return P_EOF;
	}
	if (!c->down.shut) {
		shutdown(c->cfd, SHUT_WR);
		c->down.shut = true;
	}
	return P_AGAIN;
}

void relay_update_events(struct conn *c)
{
	uint32_t cev = 0, uev = 0;
	bool up_reading = !c->up.eof && !pending(&c->up) && c->sent >= c->fwd &&
			  c->up_mode != UP_HTTP_RESOLVE && c->up_mode != UP_HTTP_DENIED;
	if (up_reading)
		cev |= EPOLLIN | EPOLLRDHUP;
	if (pending(&c->down) || (c->tail && c->down.eof))
		cev |= EPOLLOUT;
	if (!c->down.eof && !pending(&c->down))
		uev |= EPOLLIN | EPOLLRDHUP;
	if (pending(&c->up) || c->sent < c->fwd || c->up_more)
		uev |= EPOLLOUT;        /* up_more: a writable upstream wakes us at once */
	conn_set_events(c, 0, cev);
	conn_set_events(c, 1, uev);
}

static void abort_both(struct conn *c, const char *reason)
{
	if (c->ufd >= 0)
		set_reset(c->ufd);
	conn_close(c, reason, true);
}

void relay_pump(struct conn *c, unsigned dirs)
{
	if (c->state != CS_RELAY)
		return;
	conn_list_move(c, CS_RELAY, moat_now_ms() + c->w->t->cfg.idle_timeout_ms);
	int r;
	if (dirs & RELAY_UP) {
		r = pump_up(c, dirs & RELAY_UP_HUP);
		c->up_more = r == P_MORE;
		if (r == P_ERR) {
			abort_both(c, c->up_mode == UP_HTTP_BODY ? "bad-http-body" : "reset");
			return;
		}
		if (c->state != CS_RELAY)
			return; /* a later request was judged and the connection closed */
	}
	r = dirs & RELAY_DOWN ? pump_down(c, dirs & RELAY_DOWN_HUP) : P_AGAIN;
	if (r == P_ERR) {
		abort_both(c, "reset");
		return;
	}
	if (r == P_EOF)
		return;         /* lingering after the 403 */
	if (c->up.shut && c->down.shut) {
		conn_close(c, "closed", false);
		return;
	}
	relay_update_events(c);
}

void relay_start(struct conn *c)
{
	conn_list_move(c, CS_RELAY, moat_now_ms() + c->w->t->cfg.idle_timeout_ms);
	/* the server has had no time to answer: its EPOLLIN will say when */
	relay_pump(c, RELAY_UP);
}

/* Which directions a readiness event on one side concerns, and whether
 * the side read from has shut.  Bytes judged but not yet sent (c->buf) have
 * no socket event of their own: they wait for the upstream's EPOLLOUT
 * (relay_update_events asks for it), which pumps client -> server. */
unsigned relay_dirs(bool upstream, uint32_t ev)
{
	if (ev & (EPOLLHUP | EPOLLERR) || !(ev & (EPOLLIN | EPOLLOUT | EPOLLRDHUP)))
		return RELAY_BOTH | RELAY_UP_HUP | RELAY_DOWN_HUP;
	unsigned reading = upstream ? RELAY_DOWN : RELAY_UP;
	unsigned writing = upstream ? RELAY_UP : RELAY_DOWN;
	unsigned hup = upstream ? RELAY_DOWN_HUP : RELAY_UP_HUP;
	return (ev & (EPOLLIN | EPOLLRDHUP) ? reading : 0) | (ev & EPOLLOUT ? writing : 0) |
	       (ev & EPOLLRDHUP ? hup : 0);
}

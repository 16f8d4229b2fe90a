/* The client connection: its socket, buffers and timer; reading, writing, replying, keep-alive and close. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "worker/h1.h"
#include "worker/http.h"
#include "worker/llm.h"
#include "worker/worker.h"

#define LINGER_MS	2000	/* how long a closing connection may drain its input */

static void	client_timeout(struct ev_loop *, struct ev_timer *);
static void	client_io(struct ev_loop *, struct ev_io *, uint32_t);
static void	client_body_timer(struct client *);
static void	client_finish(struct client *);

void
client_accept(struct worker *w, int fd, const struct sockaddr_storage *ss)
{
	struct client	*c;
	int		 one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	exchange_reset(c);
	c->io.fd = fd;
	c->io.cb = client_io;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    c->ip, sizeof(c->ip));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
		    c->ip, sizeof(c->ip));
	else
		strlcpy(c->ip, "unix", sizeof(c->ip));
	llhttp_init(&c->parser, HTTP_REQUEST, &w->req_settings);
	c->parser.data = c;
	ev_timer_init(&c->timer, client_timeout);
	if (ev_add(&w->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) == -1) {
		log_warn("client_accept: epoll_ctl");
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&w->clients, c, entry);
	w->nclients++;
	atomic_store_explicit(&w->shm->workers[w->index].conns, w->nclients,
	    memory_order_relaxed);
	c->phase = CP_IDLE;
	c->wr_ready = 1;
	c->rd_ready = 1;	/* data may already be queued: try a read at once */
	ev_timer_after(&w->loop, &c->timer, w->conf->timeout.client_idle_ms);
	client_drive(c);
}

static void
client_release_bufs(struct client *c)
{
	if (c->in.data != NULL && buf_len(&c->in) == 0) {
		worker_buf_put(c->w, c->in.data);
		memset(&c->in, 0, sizeof(c->in));
	}
	if (c->out.data != NULL && buf_len(&c->out) == 0)
		worker_buf_release(c->w, &c->out);
	hold_free_fwd(c);
}

void
client_close(struct client *c)
{
	struct worker	*w = c->w;

	if (c->closed)
		return;
	c->closed = 1;
	if (c->x.t_start != 0 && c->phase != CP_IDLE && c->phase != CP_LINGER &&
	    !c->x.resp_done)
		accesslog_request(c);	/* ended early: status says how far it got */
	exchange_unqueue(c);
	c->x.retry_wait = 0;
	if (c->up != NULL)
		upstream_release(c->up, 0);
	ev_timer_stop(&w->loop, &c->timer);
	ev_del(&w->loop, &c->io);
	close(c->io.fd);
	if (c->in.data)
		worker_buf_put(w, c->in.data);
	worker_buf_release(w, &c->out);
	hold_free_fwd(c);
	llm_free(c);
	c->in.data = NULL;
	TAILQ_REMOVE(&w->clients, c, entry);
	w->nclients--;
	atomic_store_explicit(&w->shm->workers[w->index].conns, w->nclients,
	    memory_order_relaxed);
	/* freed after the current batch of events, which may still name it */
	TAILQ_INSERT_TAIL(&w->czombies, c, entry);
}

/* Stop sending, keep reading (and dropping) for a while so our last reply is not reset away. */
static void
client_linger(struct client *c)
{
	if (c->phase == CP_LINGER)
		return;
	c->phase = CP_LINGER;
	shutdown(c->io.fd, SHUT_WR);
	if (c->in.data)
		buf_reset(&c->in);
	ev_timer_after(&c->w->loop, &c->timer, LINGER_MS);
}

/*
 * Reply with our own status (an error, or 503 when no backend can take
 * it).  Nothing of a response may have been sent yet; if something was,
 * the connection is cut instead.  After the reply the connection closes
 * unless the request was read whole and both sides allow keep-alive.
 */
void
client_reply(struct client *c, int status, const char *msg)
{
	client_reply_x(c, status, msg, NULL);
}

void
client_reply_x(struct client *c, int status, const char *msg,
    const struct reply_extra *x)
{
	int	close_it;

	exchange_unqueue(c);
	c->x.retry_wait = 0;
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if (c->x.head_sent || c->x.resp_started) {
		client_close(c);
		return;
	}
	c->x.head_held = 0;	/* out is ours again: a held head is dropped below */
	close_it = !c->x.msg_done || c->x.close_after || c->w->draining ||
	    status == 400 || status == 408 || status == 413 || status == 414 ||
	    status == 431 || status == 417 || status == 501 || status == 505 ||
	    status == 405;
	if (c->out.data == NULL && (c->out.data = worker_buf_get(c->w)) == NULL) {
		client_close(c);
		return;
	}
	c->out.cap = WORKER_BUFSZ;
	buf_reset(&c->out);
	if (c->x.rid[0] == '\0')
		request_make_id(c);		/* refused before its head was whole */
	if (reply_build(&c->out, status, msg, close_it, c->x.rid, x) == -1) {
		client_close(c);
		return;
	}
	c->x.status = status;
	c->x.head_sent = 1;
	c->x.resp_done = 1;
	c->x.resp_close = close_it;
	c->phase = CP_REPLY;
	ev_timer_after(&c->w->loop, &c->timer, c->w->conf->timeout.client_idle_ms);
	client_drive(c);
}

/*
 * The backend failed after the response head went to the client.  What is
 * buffered still goes out (the bytes are the backend's own), then the
 * connection closes; the framing tells the client the answer is short: a
 * Content-Length not reached, a chunked body without its last chunk.  A
 * close-delimited answer (HTTP/1.0) has no such tell: it is cut at once.
 */
void
client_cut(struct client *c)
{
	exchange_unqueue(c);
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if ((c->x.resp_body == BODY_EOF && !c->x.err_event) || c->out.data == NULL ||
	    buf_len(&c->out) == 0) {
		client_close(c);
		return;
	}
	c->x.cut = 1;
	c->x.resp_done = 1;
	c->x.resp_close = 1;
	if (!c->x.msg_done)
		c->phase = CP_REPLY;	/* the rest of the upload is not read: linger, then close */
	ev_timer_after(&c->w->loop, &c->timer, c->w->conf->timeout.client_idle_ms);
	client_drive(c);
}

const char *
client_status_msg(int status)
{
	switch (status) {
	case 400: return "bad request";
	case 404: return "no route for this path";
	case 405: return "method not allowed";
	case 408: return "request timed out";
	case 413: return "request body too large";
	case 414: return "request target too long";
	case 417: return "unsupported expectation";
	case 431: return "request header fields too large";
	case 501: return "transfer coding not implemented";
	case 503: return "no buffer free for the request, try again";
	case 505: return "HTTP version not supported";
	default: return reply_reason(status);
	}
}

/*
 * The request body's timer: the sooner of timeout.client_idle from now and
 * the body's deadline, timeout.client_header after the head ended plus a
 * second for every BODY_MIN_RATE bytes received.  A body that trickles in
 * is answered 408 like a trickled head (DESIGN: a total, not an idle
 * timer); one that flows at any sane rate, however large, is never cut.
 */
#define BODY_MIN_RATE	1024	/* bytes per second */

static void
client_body_timer(struct client *c)
{
	struct worker	*w = c->w;
	uint64_t	 now = w->loop.now, at, idle;

	idle = now + (uint64_t)w->conf->timeout.client_idle_ms;
	at = c->x.t_body + (uint64_t)w->conf->timeout.client_header_ms +
	    c->x.body_rx * 1000 / BODY_MIN_RATE;
	if (at > idle)
		at = idle;
	ev_timer_after(&w->loop, &c->timer, at > now ? at - now : 0);
}

/* The head is complete: the body (if any) starts now. */
void
client_body_begin(struct client *c)
{
	c->phase = CP_BODY;
	c->x.t_body = c->w->loop.now;
	c->x.body_rx = 0;
	if (c->x.req_body != BODY_NONE)
		client_body_timer(c);
}

/*
 * Back from a wait of ours (the queue, a retry's delay): the body, if it
 * is still coming, gets a fresh allowance, for the wait was not the client's.
 */
void
client_body_resume(struct client *c)
{
	c->phase = c->x.msg_done ? CP_SENT : CP_BODY;
	if (c->phase == CP_BODY) {
		c->x.t_body = c->w->loop.now;
		c->x.body_rx = 0;
	}
	ev_timer_after(&c->w->loop, &c->timer, c->w->conf->timeout.client_idle_ms);
}

/*
 * Client bytes we have not parsed yet: we stopped reading because the
 * backend is slow to take the body, so the client is not the one stalling.
 */
static int
client_body_backed_up(const struct client *c)
{
	return c->in.data != NULL && buf_len(&c->in) > 0;
}

/* Reads what the socket has into in.  1 progress, 0 none, -1 closed. */
static int
client_read(struct client *c)
{
	ssize_t	n;
	size_t	room;

	if (c->in.data == NULL) {
		if ((c->in.data = worker_buf_get(c->w)) == NULL)
			return 0;
		c->in.cap = WORKER_BUFSZ;
		buf_reset(&c->in);
	}
	if (c->phase == CP_LINGER)
		buf_reset(&c->in);
	if (buf_room(&c->in) == 0 && c->phase != CP_HEAD && c->phase != CP_IDLE)
		buf_compact(&c->in);
	room = buf_room(&c->in);
	if (room == 0) {
		if (c->phase == CP_HEAD || c->phase == CP_IDLE) {
			/* a head that does not fit our buffer */
			client_reply(c, 431, client_status_msg(431));
			return -1;
		}
		return 0;
	}
	n = read(c->io.fd, c->in.data + c->in.wpos, room);
	if (n > 0) {
		c->in.wpos += (size_t)n;
		/* drained: the next edge tells us more -- unless the peer hung up, when no edge will come */
		if ((size_t)n < room && !c->hup)
			c->rd_ready = 0;
		if (c->phase == CP_IDLE) {
			c->phase = CP_HEAD;
			c->x.t_start = c->w->loop.now;
			ev_timer_after(&c->w->loop, &c->timer,
			    c->w->conf->timeout.client_header_ms);
		} else if (c->phase == CP_BODY) {
			c->x.body_rx += (uint64_t)n;
			client_body_timer(c);
		}
		return 1;
	}
	if (n == 0) {
		c->eof = 1;
		c->rd_ready = 0;
		return 1;
	}
	if (errno == EAGAIN || errno == EINTR) {
		c->rd_ready = 0;
		return 0;
	}
	/* a reset, not a half-close: nothing we send can arrive any more */
	client_close(c);
	return -1;
}

/* Bytes in out the client may be sent now (not a held head, nor what follows it). */
static size_t
client_out_pending(const struct client *c)
{
	if (c->out.data == NULL)
		return 0;
	if (c->x.head_held)
		return c->x.hold_mark > c->out.rpos ? c->x.hold_mark - c->out.rpos : 0;
	return buf_len(&c->out);
}

static int
client_write(struct client *c)
{
	ssize_t	n;

	/* a held head (llm.hold_headers) and what follows it wait; what is before it goes */
	size_t	want = client_out_pending(c);

	if (want == 0)
		return 0;
	n = write(c->io.fd, c->out.data + c->out.rpos, want);
	if (n > 0) {
		c->out.rpos += (size_t)n;
		c->x.bytes_out += (size_t)n;
		if (c->out.rpos == c->out.wpos)
			buf_reset(&c->out);
		else if ((size_t)n < want)
			c->wr_ready = 0;
		return 1;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
		c->wr_ready = 0;
		return 0;
	}
	/* the client went away */
	client_close(c);
	return -1;
}

/*
 * The response went out whole (or our reply did): account, then either
 * wait for the next request on this connection or close it.
 */
static void
client_finish(struct client *c)
{
	struct worker	*w = c->w;
	int		 keep;

	accesslog_request(c);
	if (c->phase == CP_REPLY)
		keep = !c->x.resp_close;
	else
		keep = c->x.msg_done && !c->x.resp_close && !c->x.close_after && !c->eof;
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if (!keep) {
		/* unread input (a body we refused, pipelined requests) would turn close into a reset */
		if (c->eof || (c->x.msg_done && (c->in.data == NULL || buf_len(&c->in) == 0)))
			client_close(c);
		else
			client_linger(c);
		return;
	}
	/* ready for the next request on this connection */
	c->phase = CP_IDLE;
	buf_compact(&c->in);
	client_release_bufs(c);
	exchange_reset(c);
	ev_timer_after(&w->loop, &c->timer, w->conf->timeout.client_idle_ms);
	if (c->in.data != NULL && buf_len(&c->in) > 0) {
		c->phase = CP_HEAD;
		c->x.t_start = w->loop.now;
		ev_timer_after(&w->loop, &c->timer, w->conf->timeout.client_header_ms);
	}
}

/*
 * Moves the exchange forward as far as the sockets allow: write what is
 * pending to the client, let the upstream move, read and parse client
 * bytes.  Called on every event of either side.
 */
void
client_drive(struct client *c)
{
	int	progress, r;

	do {
		progress = 0;
		if (c->closed)
			return;
		if (c->out.data != NULL && buf_len(&c->out) > 0 && c->wr_ready) {
			if ((r = client_write(c)) == -1)
				return;
			progress |= r;
		}
		if (c->x.resp_done && (c->out.data == NULL || buf_len(&c->out) == 0) &&
		    c->phase != CP_LINGER) {
			client_finish(c);
			if (c->closed)
				return;
			progress = 1;
		}
		if (c->up != NULL) {
			if ((r = upstream_drive(c->up)) == -1 || c->closed)
				return;
			progress |= r;
		}
		if (c->rd_ready && !c->eof) {
			if ((r = client_read(c)) == -1)
				return;
			progress |= r;
		}
		if (c->phase == CP_LINGER) {
			if (c->eof) {
				client_close(c);
				return;
			}
			if (c->in.data)
				buf_reset(&c->in);
			continue;
		}
		if (c->in.data != NULL && buf_len(&c->in) > 0) {
			if ((r = request_parse(c)) == -1)
				return;
			progress |= r;
		}
		if (c->eof && !c->closed && c->phase != CP_REPLY) {
			if (c->phase == CP_IDLE || (c->phase == CP_HEAD &&
			    (c->in.data == NULL || buf_len(&c->in) == 0) && c->h.bytes == 0)) {
				client_close(c);
				return;
			}
			if (!c->x.msg_done) {
				/* the client gave up in the middle of its request */
				if (c->phase == CP_HEAD && !c->x.head_sent) {
					client_reply(c, 400, "incomplete request");
					return;
				}
				client_close(c);
				return;
			}
			/* a half-close after a whole request: answer it, then close */
			c->x.close_after = 1;
		}
	} while (progress);

	/* a slow reader holds our response: that is what the idle timer is for */
	if (client_out_pending(c) && c->phase == CP_SENT)
		ev_timer_after(&c->w->loop, &c->timer, c->w->conf->timeout.client_idle_ms);
}

static void
client_io(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct client	*c = (struct client *)io;

	if (c->closed)
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->rd_ready = 1;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->hup = 1;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->wr_ready = 1;
	client_drive(c);
}

static void
client_timeout(struct ev_loop *l, struct ev_timer *t)
{
	struct client	*c = (struct client *)((char *)t - offsetof(struct client, timer));

	if (c->closed)
		return;
	switch (c->phase) {
	case CP_IDLE:
	case CP_LINGER:
	case CP_REPLY:
		client_close(c);
		break;
	case CP_HEAD:
		client_reply(c, 408, client_status_msg(408));
		break;
	case CP_BODY:
		if (client_body_backed_up(c)) {
			/* the backend's side has its own timer (upstream_response) */
			ev_timer_after(l, &c->timer, c->w->conf->timeout.client_idle_ms);
			break;
		}
		if (!c->x.head_sent && !c->x.resp_started) {
			client_reply(c, 408, client_status_msg(408));
			break;
		}
		client_close(c);
		break;
	case CP_SENT:
		/* only armed while the client does not read our response */
		if (client_out_pending(c))
			client_close(c);
		break;
	case CP_WAIT:
		if (c->x.retry_wait) {
			/* retries.delay is over: the same backend, once more */
			c->x.retry_wait = 0;
			client_body_resume(c);
			c->fwd.rpos = 0;
			if (upstream_attach(c) == 0)
				client_drive(c);
			else
				client_reply(c, 502, "no backend could be reached");
			break;
		}
		if (c->x.deadline != 0 && c->w->loop.now >= c->x.deadline) {
			shm_ctr_add(&exchange_poolq(c)->dropped, 1);
			flow_dropped(c);
			client_reply(c, 503, "the request's deadline (X-Request-Deadline) "
			    "passed while it waited for a backend");
			break;
		}
		shm_ctr_add(&exchange_poolq(c)->timeouts, 1);
		flow_dropped(c);
		client_reply(c, 503, "timed out waiting for a backend");
		break;
	}
}


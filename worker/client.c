/* The client side of a proxied exchange: read, validate and re-frame requests, write responses. */
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
#include "worker/worker.h"

#define FWD_MARGIN	64	/* room kept in fwd for chunk framing of a parse step */
#define LINGER_MS	2000	/* how long a closing connection may drain its input */

static void	client_timeout(struct ev_loop *, struct ev_timer *);
static void	client_io(struct ev_loop *, struct ev_io *, uint32_t);
static void	client_start(struct client *);
static void	client_body_begin(struct client *);
static void	client_body_timer(struct client *);
static void	client_body_resume(struct client *);
static void	client_finish(struct client *);
static void	client_unqueue(struct client *);

static struct client *
client_of_parser(llhttp_t *p)
{
	return p->data;
}

/* Error status chosen inside a parser callback, read after llhttp_execute() fails. */
static int
client_fail(struct client *c, int status)
{
	c->status = status;
	return -1;
}

static int
req_on_message_begin(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	head_reset(&c->h);
	c->phase = CP_HEAD;
	return 0;
}

static int
req_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	if (c->h.first.len == 0)
		c->h.first.off = (uint32_t)(at - c->in.data);
	c->h.first.len += (uint32_t)len;
	c->h.bytes += len;
	if (c->h.first.len > c->w->conf->limits.uri)
		return client_fail(c, 414);
	return 0;
}

static int
req_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	if (c->trailers) {
		/* trailer fields are dropped, but must still be well formed */
		return http_is_token(at, len) ? 0 : client_fail(c, 400);
	}

	if (head_field(&c->h, c->in.data, at, len,
	    c->w->conf->limits.header_count) == -1)
		return client_fail(c, 431);
	if (c->h.bytes > c->w->conf->limits.header_size)
		return client_fail(c, 431);
	return 0;
}

static int
req_on_header_field_complete(llhttp_t *p)
{
	head_field_done(&client_of_parser(p)->h);
	return 0;
}

static int
req_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	if (c->trailers) {
		if (memchr(at, '\r', len) || memchr(at, '\n', len) || memchr(at, '\0', len))
			return client_fail(c, 400);
		return 0;
	}

	head_value(&c->h, c->in.data, at, len);
	if (c->h.bytes > c->w->conf->limits.header_size)
		return client_fail(c, 431);
	return 0;
}

static int
req_on_header_value_complete(llhttp_t *p)
{
	/* a field with an empty value gets no value callback */
	client_of_parser(p)->h.in_value = 1;
	return 0;
}

/*
 * A client's request id we pass on, log and echo: visible ASCII without
 * the characters that would need quoting in a log line or a header
 * (space, quotes, backslash, comma, semicolon, brackets).
 */
static int
req_rid_ok(const char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!isalnum(c) && (c == '\0' || strchr("!#$%&'*+-./:=?@^_`|~", c) == NULL))
			return 0;
	}
	return 1;
}

/* A request id: 128 random bits in hex, from the worker's generator. */
static void
req_make_id(struct client *c)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t	a = balance_rand(&c->w->view), b = balance_rand(&c->w->view);
	int		i;

	for (i = 0; i < 16; i++) {
		c->rid[i] = hex[(a >> (i * 4)) & 0xf];
		c->rid[16 + i] = hex[(b >> (i * 4)) & 0xf];
	}
	c->rid[WORKER_RID_LEN] = '\0';
}

/* Longest matching route prefix (host-specific routes first); -1 if none matches. */
static int
req_route(struct client *c, const char *path, size_t plen, struct span host)
{
	const struct conf	*cf = c->w->conf;
	size_t			 i, best = 0;
	int			 pool = -1, best_host = 0;

	if (cf->nroutes == 0)
		return 0;
	for (i = 0; i < cf->nroutes; i++) {
		const struct conf_route	*r = &cf->routes[i];
		size_t			 n = strlen(r->prefix);
		int			 hm = 0;

		if (r->host[0] != '\0') {
			size_t	hl = strlen(r->host);

			if (host.len < hl || strncasecmp(c->in.data + host.off,
			    r->host, hl) != 0 || (host.len > hl &&
			    c->in.data[host.off + hl] != ':'))
				continue;
			hm = 1;
		}
		if (n > plen || memcmp(path, r->prefix, n) != 0)
			continue;
		if (pool == -1 || hm > best_host || (hm == best_host && n > best)) {
			pool = r->pool;
			best = n;
			best_host = hm;
		}
	}
	return pool;
}

/* The request line for the access log: the head's bytes are reused later. */
static void
req_log_line(struct client *c, const llhttp_t *p)
{
	size_t		 ml, ul = c->h.first.len;
	const char	*mn = llhttp_method_name((llhttp_method_t)p->method);

	ml = strlen(mn);
	if (ml + 1 + ul >= sizeof(c->logreq))
		ul = sizeof(c->logreq) - ml - 2;
	memcpy(c->logreq, mn, ml);
	c->logreq[ml] = ' ';
	memcpy(c->logreq + ml + 1, c->in.data + c->h.first.off, ul);
	c->logreq[ml + 1 + ul] = '\0';
	/* quotes and controls would break the line's fields */
	for (ml = 0; c->logreq[ml]; ml++)
		if (c->logreq[ml] == '"' || (unsigned char)c->logreq[ml] < 0x20)
			c->logreq[ml] = '?';
}

/*
 * The request head is complete: validate it against DESIGN.md's table,
 * choose the pool and write the upstream head into fwd.  Returns 0 to
 * pause the parser (the caller attaches a backend), -1 with c->status set.
 */
static int
req_on_headers_complete(llhttp_t *p)
{
	struct client		*c = client_of_parser(p);
	const char		*base = c->in.data, *path;
	struct conn_tokens	 ct;
	struct h1_req		 r;
	struct span		 v;
	size_t			 plen;
	int			 st;

	if (c->w->alog_fd != -1)
		req_log_line(c, p);
	st = h1_request_check(p, base, c->in.wpos, &c->h, c->w->conf->limits.body, &r);
	c->http10 = r.http10;
	c->is_head = r.is_head;
	c->idempotent = r.idempotent;
	if (st != 0)
		return client_fail(c, st);
	c->req_body = r.body;
	c->expect_100 = r.expect_100;
	path = base + r.path.off;
	plen = r.path.len;

	/* the pool; no route is answered once the request is read (keep-alive stays) */
	if (r.abs_slash) {
		char	rp[CONF_PATH_MAX];
		size_t	rl = plen < sizeof(rp) - 1 ? plen : sizeof(rp) - 2;

		rp[0] = '/';
		memcpy(rp + 1, path, rl);
		c->pool = req_route(c, rp, rl + 1, r.host);
	} else
		c->pool = req_route(c, path, plen, r.host);

	/* X-Request-Id: keep a sane one (UUIDs, base64, URNs), else make ours */
	c->rid[0] = '\0';
	if (h1_find(base, &c->h, "x-request-id", &v) == 1 && v.len > 0 &&
	    v.len < sizeof(c->rid) && req_rid_ok(base + v.off, v.len)) {
		memcpy(c->rid, base + v.off, v.len);
		c->rid[v.len] = '\0';
	}
	if (c->rid[0] == '\0')
		req_make_id(c);

	/* the upstream head */
	http_conn_tokens(base, &c->h, &ct);
	if (ct.overflow)
		return client_fail(c, 400);
	if (c->fwd.data == NULL)
		c->fwd.data = worker_fwd_get(c->w);
	if (c->fwd.data == NULL)
		return client_fail(c, 503);
	c->fwd.cap = c->w->fwdsz;
	buf_reset(&c->fwd);
	if (h1_request_head(&c->fwd, base, &c->h, &r, &ct, c->ip, c->rid) == -1)
		return client_fail(c, 431);
	c->fwd_head = (uint32_t)c->fwd.wpos;
	c->local_models = p->method == HTTP_GET && plen >= 10 &&
	    memcmp(path, "/v1/models", 10) == 0 && (plen == 10 || path[10] == '?') &&
	    models_declared(c->w);
	c->fwd_whole = 1;
	c->body_len = 0;
	c->close_after = ct.close || (c->http10 && !ct.keepalive) ||
	    !llhttp_should_keep_alive(p);
	client_body_begin(c);
	if (c->req_body != BODY_NONE)
		hold_begin(c, r.content_length);
	/* no body: let llhttp reach message_complete in this same call */
	return c->req_body == BODY_NONE ? 0 : HPE_PAUSED;
}

static int
req_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	c->body_len += len;
	if (c->w->conf->limits.body && c->body_len > c->w->conf->limits.body)
		return client_fail(c, 413);
	buf_put(&c->fwd, at, len);
	return 0;
}

static int
req_on_chunk_extension_name(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	if (!http_is_token(at, len))
		return client_fail(c, 400);
	c->ext_len += (uint32_t)len;
	return 0;
}

static int
req_on_chunk_extension_name_complete(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	if (c->ext_len == 0)
		return client_fail(c, 400);	/* ";=value": an extension without a name */
	c->ext_len = 0;
	return 0;
}

static int
req_on_chunk_header(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	if (p->content_length == 0 && !c->trailers) {
		/*
		 * The last chunk: stop here, so that the trailer section's bytes
		 * (which llhttp 8 parses leniently) can be checked as they come.
		 */
		c->trailers = 1;
		c->trailer_prev = '\n';	/* "0\r\n" ended a line */
		return HPE_PAUSED;
	}
	if (p->content_length > 0) {
		c->fwd.wpos += http_chunk_header(c->fwd.data + c->fwd.wpos,
		    p->content_length);
		c->chunk_open = 1;
	}
	return 0;
}

static int
req_on_chunk_complete(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	/* the zero-size last chunk is written in message_complete */
	if (c->chunk_open) {
		buf_put(&c->fwd, "\r\n", 2);
		c->chunk_open = 0;
	}
	return 0;
}

static int
req_on_message_complete(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	if (c->req_body == BODY_CHUNKED)
		buf_puts(&c->fwd, "0\r\n\r\n");
	c->msg_done = 1;
	if (c->phase == CP_BODY)
		c->phase = CP_SENT;
	return HPE_PAUSED;
}

void
client_settings(llhttp_settings_t *s)
{
	llhttp_settings_init(s);
	s->on_message_begin = req_on_message_begin;
	s->on_url = req_on_url;
	s->on_header_field = req_on_header_field;
	s->on_header_field_complete = req_on_header_field_complete;
	s->on_header_value = req_on_header_value;
	s->on_header_value_complete = req_on_header_value_complete;
	s->on_headers_complete = req_on_headers_complete;
	s->on_body = req_on_body;
	s->on_chunk_header = req_on_chunk_header;
	s->on_chunk_extension_name = req_on_chunk_extension_name;
	s->on_chunk_extension_name_complete = req_on_chunk_extension_name_complete;
	s->on_chunk_complete = req_on_chunk_complete;
	s->on_message_complete = req_on_message_complete;
}

/* Status for a parser error that no callback chose. */
static int
client_parse_status(struct client *c, llhttp_errno_t err)
{
	if (c->status)
		return c->status;
	switch (err) {
	case HPE_INVALID_TRANSFER_ENCODING:
		return 400;
	case HPE_INVALID_METHOD:
		return 400;
	case HPE_INVALID_VERSION:
		return 400;
	default:
		return 400;
	}
}

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
	c->fail_slot = -1;
	c->io.fd = fd;
	c->io.cb = client_io;
	c->slot = -1;
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
	if (c->t_start != 0 && c->phase != CP_IDLE && c->phase != CP_LINGER &&
	    !c->resp_done)
		accesslog_request(c);	/* ended early: status says how far it got */
	client_unqueue(c);
	c->retry_wait = 0;
	if (c->up != NULL)
		upstream_release(c->up, 0);
	ev_timer_stop(&w->loop, &c->timer);
	ev_del(&w->loop, &c->io);
	close(c->io.fd);
	if (c->in.data)
		worker_buf_put(w, c->in.data);
	worker_buf_release(w, &c->out);
	hold_free_fwd(c);
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
	int	close_it;

	client_unqueue(c);
	c->retry_wait = 0;
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if (c->head_sent || c->resp_started) {
		client_close(c);
		return;
	}
	close_it = !c->msg_done || c->close_after || c->w->draining ||
	    status == 400 || status == 408 || status == 413 || status == 414 ||
	    status == 431 || status == 417 || status == 501 || status == 505 ||
	    status == 405;
	if (c->out.data == NULL && (c->out.data = worker_buf_get(c->w)) == NULL) {
		client_close(c);
		return;
	}
	c->out.cap = WORKER_BUFSZ;
	buf_reset(&c->out);
	if (c->rid[0] == '\0')
		req_make_id(c);		/* refused before its head was whole */
	if (reply_build(&c->out, status, msg, close_it, c->rid) == -1) {
		client_close(c);
		return;
	}
	c->status = status;
	c->head_sent = 1;
	c->resp_done = 1;
	c->resp_close = close_it;
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
	client_unqueue(c);
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if (c->resp_body == BODY_EOF || c->out.data == NULL || buf_len(&c->out) == 0) {
		client_close(c);
		return;
	}
	c->cut = 1;
	c->resp_done = 1;
	c->resp_close = 1;
	ev_timer_after(&c->w->loop, &c->timer, c->w->conf->timeout.client_idle_ms);
	client_drive(c);
}

static const char *
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
 * The trailer section's bytes, which llhttp 8 parses leniently: a CR not
 * followed by LF, an LF not preceded by CR, or a line that starts with
 * SP/HTAB (obs-fold) makes the request bad.  The last byte is carried
 * over, since the section may come in several reads.
 */
static int
req_trailer_bad(struct client *c, const char *p, size_t n)
{
	char	prev = c->trailer_prev;
	size_t	i;

	for (i = 0; i < n; i++) {
		char b = p[i];

		if ((b == '\n' && prev != '\r') || (prev == '\r' && b != '\n') ||
		    (prev == '\n' && (b == ' ' || b == '\t')))
			return 1;
		prev = b;
	}
	c->trailer_prev = prev;
	return 0;
}

/* Feed buffered request bytes to llhttp.  Returns 1 on progress, 0 on none, -1 if c was closed. */
static int
client_parse(struct client *c)
{
	const char	*p;
	size_t		 n;
	llhttp_errno_t	 err;
	int		 trailers;

	if (c->msg_done || c->phase >= CP_REPLY || c->phase == CP_WAIT ||
	    buf_len(&c->in) == 0)
		return 0;
	n = buf_len(&c->in);
	if (c->phase == CP_BODY) {
		/* body: never produce more than fwd can take */
		if (c->expect_100) {
			/* the client waits for our go-ahead: it is sent when a backend is ours */
			if (c->up == NULL)
				return 0;
		}
		if (c->fwd.wpos + FWD_MARGIN >= c->fwd.cap && c->holding &&
		    hold_grow(c, c->fwd.cap + 1) == -1) {
			/* past limits.hold or the hold memory: the body streams from here */
			c->holding = 0;
			if (!c->started) {
				c->started = 1;
				client_start(c);
				return c->closed ? -1 : 1;
			}
		}
		if (c->fwd.wpos + FWD_MARGIN >= c->fwd.cap) {
			if (c->fwd.rpos == 0)
				return 0;
			buf_compact(&c->fwd);
			c->fwd_whole = 0;
			if (c->fwd.wpos + FWD_MARGIN >= c->fwd.cap)
				return 0;
		}
		if (n > c->fwd.cap - c->fwd.wpos - FWD_MARGIN)
			n = c->fwd.cap - c->fwd.wpos - FWD_MARGIN;
	}
	p = c->in.data + c->in.rpos;
	trailers = c->trailers;
	err = llhttp_execute(&c->parser, p, n);
	if (err == HPE_OK || err == HPE_PAUSED) {
		size_t used = err == HPE_OK ? n :
		    (size_t)(llhttp_get_error_pos(&c->parser) - p);

		/* the trailer section: bare CR or LF, which llhttp 8 lets through */
		if (trailers && used > 0 && req_trailer_bad(c, p, used)) {
			c->msg_done = 0;
			client_reply(c, 400, client_status_msg(400));
			return c->closed ? -1 : 1;
		}
		/* "GET /x" alone on a line: HTTP/0.9, which we do not speak */
		if (c->phase == CP_HEAD && c->parser.http_major == 0 &&
		    c->parser.http_minor == 9) {
			client_reply(c, 400, "HTTP/0.9 is not supported");
			return c->closed ? -1 : 1;
		}
		c->in.rpos += used;
		if (err == HPE_PAUSED)
			llhttp_resume(&c->parser);
	} else {
		int st = client_parse_status(c, err);

		log_debug("client %s: %s (%s)", c->ip, llhttp_errno_name(err),
		    llhttp_get_error_reason(&c->parser));
		c->msg_done = 0;
		client_reply(c, st, client_status_msg(st));
		return c->closed ? -1 : 1;
	}
	if ((c->phase == CP_BODY || c->phase == CP_SENT) && !c->started &&
	    (c->msg_done || !c->holding)) {
		c->started = 1;
		client_start(c);
	} else if (!c->started && c->expect_100 && c->phase == CP_BODY &&
	    c->holding) {
		/* a held body is read before a backend is chosen: the client may send it now */
		if (c->out.data == NULL && (c->out.data = worker_buf_get(c->w)) == NULL) {
			client_close(c);
			return -1;
		}
		c->out.cap = WORKER_BUFSZ;
		buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		c->expect_100 = 0;
	}
	if (c->closed)
		return -1;
	/* the head buffer may be recycled once the head is converted */
	if (c->phase >= CP_BODY && c->in.rpos == c->in.wpos)
		buf_reset(&c->in);
	return 1;
}

/* Requests waiting in every worker's queue, from the table. */
static uint64_t
client_queued_total(struct worker *w)
{
	uint64_t	n = 0;
	uint32_t	i;

	for (i = 0; i < w->shm->max_workers; i++)
		n += atomic_load_explicit(&w->shm->workers[i].queued,
		    memory_order_relaxed);
	return n;
}

static void
client_queue_publish(struct worker *w)
{
	atomic_store_explicit(&w->shm->workers[w->index].queued, w->nwait,
	    memory_order_relaxed);
}

static struct shm_poolq *
client_poolq(struct client *c)
{
	return &c->w->shm->poolq[c->w->index][balance_view_qid(&c->w->view,
	    c->pool)];
}

static void
client_unqueue(struct client *c)
{
	struct worker	*w = c->w;
	struct shm_poolq *q = client_poolq(c);

	if (!c->queued)
		return;
	c->queued = 0;
	TAILQ_REMOVE(&w->waitq, c, qentry);
	w->nwait--;
	atomic_store_explicit(&q->queued,
	    atomic_load_explicit(&q->queued, memory_order_relaxed) - 1,
	    memory_order_relaxed);
	client_queue_publish(w);
	if (w->nwait == 0)
		ev_timer_stop(&w->loop, &w->queue_timer);
}

/*
 * The only backend left is the one that just failed: try it once more
 * after retries.delay (a restarting backend, a full accept queue), the
 * way HAProxy retries a server before giving up.  0 if scheduled, -1 if
 * there is nothing to wait for.
 */
int
client_retry_later(struct client *c, uint32_t slot)
{
	struct worker	*w = c->w;
	size_t		 i;

	if (w->conf->retries.delay_ms <= 0 || c->attempts > w->conf->retries.max ||
	    c->retried_same || !balance_eligible(&w->view, slot))
		return -1;
	c->retried_same = 1;
	for (i = 0; i < c->breq.nexclude; i++)
		if (c->breq.exclude[i] == slot) {
			c->breq.exclude[i] = c->breq.exclude[--c->breq.nexclude];
			break;
		}
	c->retry_wait = 1;
	c->phase = CP_WAIT;
	ev_timer_after(&w->loop, &c->timer, (uint64_t)w->conf->retries.delay_ms);
	return 0;
}

/* A backend is ours: the 100 Continue a client waits for, before its body. */
static int
client_attached(struct client *c)
{
	if (c->expect_100) {
		if (c->out.data == NULL &&
		    (c->out.data = worker_buf_get(c->w)) == NULL) {
			client_close(c);
			return -1;
		}
		c->out.cap = WORKER_BUFSZ;
		buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		c->expect_100 = 0;
	}
	return 0;
}

/*
 * Every worker's queue runs in FIFO order whenever a slot may have freed:
 * after one of our requests finished at a backend, and every 20 ms while
 * anything waits (slots also free in other workers).
 */
void
client_queue_run(struct worker *w)
{
	struct client	*c, *next;

	for (c = TAILQ_FIRST(&w->waitq); c != NULL; c = next) {
		next = TAILQ_NEXT(c, qentry);
		if (upstream_attach(c) == -1)
			continue;
		{
			struct shm_poolq *q = client_poolq(c);

			shm_ctr_add(&q->waits, 1);
			shm_ctr_add(&q->wait_ms, w->loop.now - c->t_queued);
		}
		client_unqueue(c);
		client_body_resume(c);
		if (client_attached(c) == 0)
			client_drive(c);
	}
}

/*
 * No backend can take the request now.  If that is only because every
 * eligible one is at max_conns, wait for a slot (up to queue.timeout,
 * and only while the queue of every worker together has room); otherwise,
 * or when the queue is full, answer 503 at once.
 */
static void
client_no_backend(struct client *c)
{
	struct worker	*w = c->w;
	int		 full_only;

	if (c->attempts > 0) {
		client_reply(c, 502, "no backend could be reached");
		return;
	}
	c->breq.ignore_full = 1;
	full_only = balance_pick(&w->view, (uint32_t)c->pool, &c->breq) != -1;
	c->breq.ignore_full = 0;
	if (!full_only) {
		client_reply(c, 503, "no backend available");
		return;
	}
	if (w->conf->queue.size <= 0 ||
	    client_queued_total(w) >= (uint64_t)w->conf->queue.size) {
		shm_ctr_add(&client_poolq(c)->rejected, 1);
		client_reply(c, 503, "every backend is at its connection limit and the queue is full");
		return;
	}
	c->phase = CP_WAIT;
	c->queued = 1;
	c->t_queued = w->loop.now;
	TAILQ_INSERT_TAIL(&w->waitq, c, qentry);
	w->nwait++;
	{
		struct shm_poolq *q = client_poolq(c);

		atomic_store_explicit(&q->queued,
		    atomic_load_explicit(&q->queued, memory_order_relaxed) + 1,
		    memory_order_relaxed);
	}
	client_queue_publish(w);
	ev_timer_after(&w->loop, &c->timer, w->conf->queue.timeout_ms);
	if (!ev_timer_armed(&w->queue_timer))
		ev_timer_after(&w->loop, &w->queue_timer, 20);
}

/* The head is parsed: pick a backend and attach a connection. */
static void
client_start(struct client *c)
{
	struct worker	*w = c->w;

	c->t_start = w->loop.now;
	c->breq.nexclude = 0;
	c->breq.model = -1;
	c->attempts = 0;
	c->status = 0;
	ev_timer_after(&w->loop, &c->timer, w->conf->timeout.client_idle_ms);
	if (c->local_models) {
		models_list(c);
		return;
	}
	if (c->pool == -1) {
		client_reply(c, 404, client_status_msg(404));
		return;
	}
	if (models_wanted(c) && models_route(c) == -1)
		return;
	if (upstream_attach(c) == -1) {
		client_no_backend(c);
		return;
	}
	if (!c->closed)
		client_attached(c);
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
	at = c->t_body + (uint64_t)w->conf->timeout.client_header_ms +
	    c->body_rx * 1000 / BODY_MIN_RATE;
	if (at > idle)
		at = idle;
	ev_timer_after(&w->loop, &c->timer, at > now ? at - now : 0);
}

/* The head is complete: the body (if any) starts now. */
static void
client_body_begin(struct client *c)
{
	c->phase = CP_BODY;
	c->t_body = c->w->loop.now;
	c->body_rx = 0;
	if (c->req_body != BODY_NONE)
		client_body_timer(c);
}

/*
 * Back from a wait of ours (the queue, a retry's delay): the body, if it
 * is still coming, gets a fresh allowance, for the wait was not the client's.
 */
static void
client_body_resume(struct client *c)
{
	c->phase = c->msg_done ? CP_SENT : CP_BODY;
	if (c->phase == CP_BODY) {
		c->t_body = c->w->loop.now;
		c->body_rx = 0;
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
			c->t_start = c->w->loop.now;
			ev_timer_after(&c->w->loop, &c->timer,
			    c->w->conf->timeout.client_header_ms);
		} else if (c->phase == CP_BODY) {
			c->body_rx += (uint64_t)n;
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

static int
client_write(struct client *c)
{
	ssize_t	n;

	n = write(c->io.fd, c->out.data + c->out.rpos, buf_len(&c->out));
	if (n > 0) {
		c->out.rpos += (size_t)n;
		c->bytes_out += (size_t)n;
		if (c->out.rpos == c->out.wpos)
			buf_reset(&c->out);
		else
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
		keep = !c->resp_close;
	else
		keep = c->msg_done && !c->resp_close && !c->close_after && !c->eof;
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if (!keep) {
		/* unread input (a body we refused, pipelined requests) would turn close into a reset */
		if (c->eof || (c->msg_done && (c->in.data == NULL || buf_len(&c->in) == 0)))
			client_close(c);
		else
			client_linger(c);
		return;
	}
	/* ready for the next request on this connection */
	c->phase = CP_IDLE;
	c->msg_done = c->resp_started = c->resp_done = c->head_sent = 0;
	c->started = c->chunk_open = c->trailers = 0;
	c->fail_slot = -1;
	c->on_backup_pool = c->retried_same = 0;
	c->trailer_prev = '\n';
	c->ext_len = 0;
	c->resp_close = c->close_after = c->expect_100 = c->cut = 0;
	c->slot = -1;
	c->attempts = 0;
	c->status = 0;
	c->t_start = 0;
	c->bytes_out = 0;
	c->logreq[0] = '\0';
	c->rid[0] = '\0';		/* the next request's own, or a new one */
	c->req_body = BODY_NONE;
	buf_compact(&c->in);
	client_release_bufs(c);
	ev_timer_after(&w->loop, &c->timer, w->conf->timeout.client_idle_ms);
	if (c->in.data != NULL && buf_len(&c->in) > 0) {
		c->phase = CP_HEAD;
		c->t_start = w->loop.now;
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
		if (c->resp_done && (c->out.data == NULL || buf_len(&c->out) == 0) &&
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
			if ((r = client_parse(c)) == -1)
				return;
			progress |= r;
		}
		if (c->eof && !c->closed && c->phase != CP_REPLY) {
			if (c->phase == CP_IDLE || (c->phase == CP_HEAD &&
			    (c->in.data == NULL || buf_len(&c->in) == 0) && c->h.bytes == 0)) {
				client_close(c);
				return;
			}
			if (!c->msg_done) {
				/* the client gave up in the middle of its request */
				if (c->phase == CP_HEAD && !c->head_sent) {
					client_reply(c, 400, "incomplete request");
					return;
				}
				client_close(c);
				return;
			}
			/* a half-close after a whole request: answer it, then close */
			c->close_after = 1;
		}
	} while (progress);

	/* a slow reader holds our response: that is what the idle timer is for */
	if (c->out.data != NULL && buf_len(&c->out) > 0 && c->phase == CP_SENT)
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
		if (!c->head_sent && !c->resp_started) {
			client_reply(c, 408, client_status_msg(408));
			break;
		}
		client_close(c);
		break;
	case CP_SENT:
		/* only armed while the client does not read our response */
		if (c->out.data != NULL && buf_len(&c->out) > 0)
			client_close(c);
		break;
	case CP_WAIT:
		if (c->retry_wait) {
			/* retries.delay is over: the same backend, once more */
			c->retry_wait = 0;
			client_body_resume(c);
			c->fwd.rpos = 0;
			if (upstream_attach(c) == 0)
				client_drive(c);
			else
				client_reply(c, 502, "no backend could be reached");
			break;
		}
		shm_ctr_add(&client_poolq(c)->timeouts, 1);
		client_reply(c, 503, "timed out waiting for a backend");
		break;
	}
}


/* The request side of the HTTP/1 codec on a client connection: llhttp's callbacks, routing, the request id, the body's re-framing. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "worker/h1.h"
#include "worker/http.h"
#include "worker/worker.h"


static struct client *
client_of_parser(llhttp_t *p)
{
	return p->data;
}

/* Error status chosen inside a parser callback, read after llhttp_execute() fails. */
static int
client_fail(struct client *c, int status)
{
	c->x.status = status;
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

	if (c->x.trailers) {
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

	if (c->x.trailers) {
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

/*
 * The OpenAI inference endpoints, whose POSTs generate and change nothing:
 * what llm.hold_headers may replay until its answer shows.
 */
static int
req_infer_path(const char *path, size_t plen)
{
	static const char *const infer[] = { "/v1/chat/completions", "/v1/completions" };
	size_t	i, n;

	for (i = 0; i < sizeof(infer) / sizeof(infer[0]); i++) {
		n = strlen(infer[i]);
		if (plen >= n && memcmp(path, infer[i], n) == 0 &&
		    (plen == n || path[n] == '?'))
			return 1;
	}
	return 0;
}

/* A request id: 128 random bits in hex, from the worker's generator. */
void
request_make_id(struct client *c)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t	a = balance_rand(&c->w->view), b = balance_rand(&c->w->view);
	int		i;

	for (i = 0; i < 16; i++) {
		c->x.rid[i] = hex[(a >> (i * 4)) & 0xf];
		c->x.rid[16 + i] = hex[(b >> (i * 4)) & 0xf];
	}
	c->x.rid[WORKER_RID_LEN] = '\0';
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
	if (ml + 1 + ul >= sizeof(c->x.logreq))
		ul = sizeof(c->x.logreq) - ml - 2;
	memcpy(c->x.logreq, mn, ml);
	c->x.logreq[ml] = ' ';
	memcpy(c->x.logreq + ml + 1, c->in.data + c->h.first.off, ul);
	c->x.logreq[ml + 1 + ul] = '\0';
	/* quotes and controls would break the line's fields */
	for (ml = 0; c->x.logreq[ml]; ml++)
		if (c->x.logreq[ml] == '"' || (unsigned char)c->x.logreq[ml] < 0x20)
			c->x.logreq[ml] = '?';
}

/*
 * The request head is complete: validate it against DESIGN.md's table,
 * choose the pool and write the upstream head into fwd.  Returns 0 to
 * pause the parser (the caller attaches a backend), -1 with c->x.status set.
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
	c->x.http10 = r.http10;
	c->x.is_head = r.is_head;
	c->x.idempotent = r.idempotent;
	if (st != 0)
		return client_fail(c, st);
	c->x.req_body = r.body;
	c->x.method = r.method;
	c->x.expect_100 = r.expect_100;
	path = base + r.path.off;
	plen = r.path.len;

	/* the pool; no route is answered once the request is read (keep-alive stays) */
	if (r.abs_slash) {
		char	rp[CONF_PATH_MAX];
		size_t	rl = plen < sizeof(rp) - 1 ? plen : sizeof(rp) - 2;

		rp[0] = '/';
		memcpy(rp + 1, path, rl);
		c->x.pool = req_route(c, rp, rl + 1, r.host);
	} else
		c->x.pool = req_route(c, path, plen, r.host);

	/* X-Request-Id: keep a sane one (UUIDs, base64, URNs), else make ours */
	c->x.rid[0] = '\0';
	if (h1_find(base, &c->h, "x-request-id", &v) == 1 && v.len > 0 &&
	    v.len < sizeof(c->x.rid) && req_rid_ok(base + v.off, v.len)) {
		memcpy(c->x.rid, base + v.off, v.len);
		c->x.rid[v.len] = '\0';
	}
	if (c->x.rid[0] == '\0')
		request_make_id(c);
	/* its tenant, band and deadline (flow control) */
	if ((st = flow_head(c, base)) != 0)
		return client_fail(c, st);

	/*
	 * X-Router-Strategy: whether the pool allows it is for
	 * exchange_start(); a name we do not know is only counted, and the
	 * field goes to the backend as it came, like any other.
	 */
	c->x.ask_strategy = 0;
	if ((st = h1_find(base, &c->h, "x-router-strategy", &v)) != 0) {
		char	name[32];
		int	s = -1;

		if (st == 1 && v.len > 0 && v.len < sizeof(name)) {
			memcpy(name, base + v.off, v.len);
			name[v.len] = '\0';
			s = conf_strategy_from_name(name);
		}
		c->x.ask_strategy = s >= 0 ? 1 + s : -1;
	}

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
	if (h1_request_head(&c->fwd, base, &c->h, &r, &ct, c->ip, c->x.rid) == -1)
		return client_fail(c, 431);
	c->x.fwd_head = (uint32_t)c->fwd.wpos;
	/* the body goes on as it came (Content-Length) or in normalized chunks */
	c->x.fr.out = &c->fwd;
	c->x.fr.to = r.body == BODY_CHUNKED ? BODY_CHUNKED : BODY_LENGTH;
	c->x.fr.from_eof = c->x.fr.chunk_open = 0;
	c->x.infer = p->method == HTTP_POST && req_infer_path(path, plen);
	c->x.local_models = p->method == HTTP_GET && plen >= 10 &&
	    memcmp(path, "/v1/models", 10) == 0 && (plen == 10 || path[10] == '?') &&
	    models_declared(c->w);
	c->x.fwd_whole = 1;
	c->x.body_len = 0;
	c->x.close_after = ct.close || (c->x.http10 && !ct.keepalive) ||
	    !llhttp_should_keep_alive(p);
	client_body_begin(c);
	if (c->x.req_body != BODY_NONE)
		hold_begin(c, r.content_length);
	/* no body: let llhttp reach message_complete in this same call */
	return c->x.req_body == BODY_NONE ? 0 : HPE_PAUSED;
}

static int
req_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	c->x.body_len += len;
	if (c->w->conf->limits.body && c->x.body_len > c->w->conf->limits.body)
		return client_fail(c, 413);
	if (h1_frame_data(&c->x.fr, at, len) == -1) {
		/* request_parse() bounds its input by the room: a bug, not input */
		log_warnx("request: body of %zu bytes for %zu bytes of room", len,
		    buf_room(&c->fwd));
		return client_fail(c, 500);
	}
	if (c->x.holding && c->x.body_len > c->w->conf->limits.hold)
		c->x.hold_over = 1;	/* request_parse() lets it stream from here */
	return 0;
}

static int
req_on_chunk_extension_name(llhttp_t *p, const char *at, size_t len)
{
	struct client	*c = client_of_parser(p);

	if (!http_is_token(at, len))
		return client_fail(c, 400);
	c->x.ext_len += (uint32_t)len;
	return 0;
}

static int
req_on_chunk_extension_name_complete(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	if (c->x.ext_len == 0)
		return client_fail(c, 400);	/* ";=value": an extension without a name */
	c->x.ext_len = 0;
	return 0;
}

static int
req_on_chunk_header(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	if (p->content_length == 0 && !c->x.trailers) {
		/*
		 * The last chunk: stop here, so that the trailer section's bytes
		 * (which llhttp 8 parses leniently) can be checked as they come.
		 */
		c->x.trailers = 1;
		c->x.trailer_prev = '\n';	/* "0\r\n" ended a line */
		return HPE_PAUSED;
	}
	return h1_frame_chunk(&c->x.fr, p->content_length) == -1 ?
	    client_fail(c, 500) : 0;
}

static int
req_on_chunk_complete(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	/* the zero-size last chunk is written in message_complete */
	return h1_frame_chunk_end(&c->x.fr) == -1 ? client_fail(c, 500) : 0;
}

static int
req_on_message_complete(llhttp_t *p)
{
	struct client	*c = client_of_parser(p);

	if (h1_frame_end(&c->x.fr) == -1)
		return client_fail(c, 500);
	c->x.msg_done = 1;
	if (c->phase == CP_BODY)
		c->phase = CP_SENT;
	return HPE_PAUSED;
}

void
request_settings(llhttp_settings_t *s)
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
	if (c->x.status)
		return c->x.status;
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

/*
 * The trailer section's bytes, which llhttp 8 parses leniently: a CR not
 * followed by LF, an LF not preceded by CR, or a line that starts with
 * SP/HTAB (obs-fold) makes the request bad.  The last byte is carried
 * over, since the section may come in several reads.
 */
static int
req_trailer_bad(struct client *c, const char *p, size_t n)
{
	return h1_lines_bad(&c->x.trailer_prev, p, n);
}

/* Feed buffered request bytes to llhttp.  Returns 1 on progress, 0 on none, -1 if c was closed. */
int
request_parse(struct client *c)
{
	const char	*p;
	size_t		 n;
	llhttp_errno_t	 err;
	int		 trailers;

	if (c->x.msg_done || c->phase >= CP_REPLY || c->phase == CP_WAIT ||
	    buf_len(&c->in) == 0)
		return 0;
	n = buf_len(&c->in);
	if (c->phase == CP_BODY) {
		/* body: never produce more than fwd can take */
		if (c->x.expect_100) {
			/* the client waits for our go-ahead: it is sent when a backend is ours */
			if (c->up == NULL)
				return 0;
		}
		if (c->x.holding && (c->x.hold_over ||
		    (c->fwd.wpos + H1_FRAME_MARGIN >= c->fwd.cap &&
		    hold_grow(c, c->fwd.cap + 1) == -1))) {
			/* past limits.hold or the hold memory: the body streams from here */
			c->x.holding = 0;
			if (!c->x.started) {
				c->x.started = 1;
				exchange_start(c);
				return c->closed ? -1 : 1;
			}
		}
		if (c->fwd.wpos + H1_FRAME_MARGIN >= c->fwd.cap) {
			if (c->fwd.rpos == 0)
				return 0;
			buf_compact(&c->fwd);
			c->x.fwd_whole = 0;
			if (c->fwd.wpos + H1_FRAME_MARGIN >= c->fwd.cap)
				return 0;
		}
		if (n > c->fwd.cap - c->fwd.wpos - H1_FRAME_MARGIN)
			n = c->fwd.cap - c->fwd.wpos - H1_FRAME_MARGIN;
	}
	p = c->in.data + c->in.rpos;
	trailers = c->x.trailers;
	err = llhttp_execute(&c->parser, p, n);
	if (err == HPE_OK || err == HPE_PAUSED) {
		size_t used = err == HPE_OK ? n :
		    (size_t)(llhttp_get_error_pos(&c->parser) - p);

		/* the trailer section: bare CR or LF, which llhttp 8 lets through */
		if (trailers && used > 0 && req_trailer_bad(c, p, used)) {
			c->x.msg_done = 0;
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
		c->x.msg_done = 0;
		client_reply(c, st, client_status_msg(st));
		return c->closed ? -1 : 1;
	}
	if ((c->phase == CP_BODY || c->phase == CP_SENT) && !c->x.started &&
	    (c->x.msg_done || !c->x.holding)) {
		c->x.started = 1;
		exchange_start(c);
	} else if (!c->x.started && c->x.expect_100 && c->phase == CP_BODY &&
	    c->x.holding) {
		/* a held body is read before a backend is chosen: the client may send it now */
		if (c->out.data == NULL && (c->out.data = worker_buf_get(c->w)) == NULL) {
			client_close(c);
			return -1;
		}
		c->out.cap = WORKER_BUFSZ;
		buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		c->x.expect_100 = 0;
	}
	if (c->closed)
		return -1;
	/* the head buffer may be recycled once the head is converted */
	if (c->phase >= CP_BODY && c->in.rpos == c->in.wpos)
		buf_reset(&c->in);
	return 1;
}

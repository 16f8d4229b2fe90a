/* The admin listener's connections: their own llhttp parser, bounded buffers, keep-alive and timers. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "llhttp.h"

#include "lib/log.h"
#include "worker/admin.h"
#include "worker/h1.h"
#include "worker/http.h"
#include "worker/worker.h"

/*
 * Nothing here touches the proxy's state machine (client.c): an admin
 * request is read whole (head up to limits.header_size, body up to
 * ADMINCONN_BODY_MAX), handed to admin_handle(), and its answer written
 * before the next request of the connection is parsed.
 */

#define ADMINCONN_INBUF		(16 * 1024)	/* socket reads; the head is copied out */
#define ADMINCONN_LINGER_MS	2000
#define ADMINCONN_FIELD_MAX	32		/* field name bytes we keep to recognise it */
#define ADMINCONN_MAX		256		/* open admin connections per worker */

enum acphase {
	AC_IDLE = 0,		/* keep-alive: waiting for a first byte */
	AC_HEAD,		/* reading the head: timeout.client_header, a total */
	AC_BODY,		/* reading the body: timeout.client_idle between reads */
	AC_WAIT,		/* admin_handle() answers later (drill, master) */
	AC_WRITE,		/* sending the answer */
	AC_LINGER		/* shut for writing, draining input before close */
};

struct adminconn {
	struct ev_io		 io;
	struct worker		*w;
	TAILQ_ENTRY(adminconn)	 entry;
	llhttp_t		 parser;
	struct ev_timer		 timer;
	enum acphase		 phase;
	struct buf		 in, out;
	/* the request being read: each a malloc'd NUL-terminated copy */
	char			*target, *auth, *body;
	size_t			 target_len, auth_len, body_len, body_cap;
	size_t			 head_bytes;
	int			 nfields, nhost, status;
	char			 fname[ADMINCONN_FIELD_MAX + 1];
	size_t			 fname_len;
	int			 fkind;		/* the field being read: enum below */
	int			 in_value;
	int			 has_te, te_chunked_last, te_count, expect_100, expect_bad;
	char			 te_last[16];
	size_t			 te_last_len;
	char			 prev;		/* last head/trailer byte: CRLF and obs-fold checks */
	int			 trailers, msg_done, keepalive, closing, closed;
	uint64_t		 t_start;
};

enum { F_OTHER = 0, F_AUTH, F_HOST, F_TE, F_EXPECT };

TAILQ_HEAD(adminconnq, adminconn);
static struct adminconnq	acs = TAILQ_HEAD_INITIALIZER(acs);
static struct adminconnq	aczombies = TAILQ_HEAD_INITIALIZER(aczombies);
static size_t			nacs;
static llhttp_settings_t	ac_settings;
static int			ac_settings_done;

static void	adminconn_io(struct ev_loop *, struct ev_io *, uint32_t);
static void	adminconn_drive(struct adminconn *);
static void	adminconn_timeout(struct ev_loop *, struct ev_timer *);

static struct adminconn *
ac_of(llhttp_t *p)
{
	return p->data;
}

static int
ac_fail(struct adminconn *ac, int status)
{
	ac->status = status;
	return -1;
}

/* Append len bytes at at to *dst (a NUL-terminated malloc'd string), refusing past max. */
static int
ac_append(char **dst, size_t *dlen, const char *at, size_t len, size_t max)
{
	char	*n;

	if (*dlen + len > max)
		return -1;
	if ((n = realloc(*dst, *dlen + len + 1)) == NULL)
		return -1;
	memcpy(n + *dlen, at, len);
	*dlen += len;
	n[*dlen] = '\0';
	*dst = n;
	return 0;
}

static void
ac_req_reset(struct adminconn *ac)
{
	free(ac->target);
	free(ac->auth);
	free(ac->body);
	ac->target = ac->auth = ac->body = NULL;
	ac->target_len = ac->auth_len = ac->body_len = ac->body_cap = 0;
	ac->head_bytes = 0;
	ac->nfields = ac->nhost = ac->status = 0;
	ac->fname_len = 0;
	ac->fkind = F_OTHER;
	ac->in_value = 0;
	ac->has_te = ac->te_chunked_last = ac->te_count = 0;
	ac->expect_100 = ac->expect_bad = 0;
	ac->te_last_len = 0;
	ac->prev = '\n';
	ac->trailers = ac->msg_done = 0;
}

static int
ac_on_message_begin(llhttp_t *p)
{
	struct adminconn *ac = ac_of(p);

	ac->phase = AC_HEAD;
	return 0;
}

static int
ac_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct adminconn *ac = ac_of(p);

	ac->head_bytes += len;
	if (ac->target_len + len > ac->w->conf->limits.uri)
		return ac_fail(ac, 414);
	if (ac_append(&ac->target, &ac->target_len, at, len,
	    ac->w->conf->limits.uri) == -1)
		return ac_fail(ac, 500);
	return 0;
}

static int
ac_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct adminconn *ac = ac_of(p);

	if (ac->trailers)
		return http_is_token(at, len) ? 0 : ac_fail(ac, 400);
	if (ac->in_value || ac->fname_len == 0) {
		if (ac->in_value || ac->nfields == 0) {
			ac->nfields++;
			ac->fname_len = 0;
		}
		ac->in_value = 0;
	}
	if (ac->nfields > ac->w->conf->limits.header_count)
		return ac_fail(ac, 431);
	ac->head_bytes += len;
	if (ac->head_bytes > ac->w->conf->limits.header_size)
		return ac_fail(ac, 431);
	if (!http_is_token(at, len))
		return ac_fail(ac, 400);
	if (ac->fname_len + len <= ADMINCONN_FIELD_MAX)
		memcpy(ac->fname + ac->fname_len, at, len);
	ac->fname_len += len;
	return 0;
}

static int
ac_on_header_field_complete(llhttp_t *p)
{
	struct adminconn *ac = ac_of(p);
	size_t		  n = ac->fname_len;

	ac->fkind = F_OTHER;
	if (n > ADMINCONN_FIELD_MAX)
		return 0;
	ac->fname[n] = '\0';
	if (strcasecmp(ac->fname, "authorization") == 0) {
		ac->fkind = F_AUTH;
		free(ac->auth);
		ac->auth = NULL;
		ac->auth_len = 0;
		if (ac_append(&ac->auth, &ac->auth_len, "", 0, 1) == -1)
			return ac_fail(ac, 500);
	} else if (strcasecmp(ac->fname, "host") == 0) {
		ac->fkind = F_HOST;
		ac->nhost++;
	} else if (strcasecmp(ac->fname, "transfer-encoding") == 0) {
		ac->fkind = F_TE;
		ac->has_te = 1;
	} else if (strcasecmp(ac->fname, "expect") == 0)
		ac->fkind = F_EXPECT;
	return 0;
}

static int
ac_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct adminconn *ac = ac_of(p);
	size_t		  i;

	if (ac->trailers)
		return 0;
	ac->in_value = 1;
	ac->head_bytes += len;
	if (ac->head_bytes > ac->w->conf->limits.header_size)
		return ac_fail(ac, 431);
	if (memchr(at, '\0', len) != NULL)
		return ac_fail(ac, 400);
	switch (ac->fkind) {
	case F_AUTH:
		if (ac_append(&ac->auth, &ac->auth_len, at, len,
		    ac->w->conf->limits.header_size) == -1)
			return ac_fail(ac, 431);
		break;
	case F_TE:
		/* remember the last coding listed, across fields and pieces */
		for (i = 0; i < len; i++) {
			char c = at[i];

			if (c == ',') {
				ac->te_count++;
				ac->te_last_len = 0;
			} else if (c != ' ' && c != '\t') {
				if (ac->te_last_len == 0)
					ac->te_count++;
				if (ac->te_last_len < sizeof(ac->te_last) - 1)
					ac->te_last[ac->te_last_len] = c;
				ac->te_last_len++;
			}
		}
		break;
	case F_EXPECT:
		if (len != 12 || strncasecmp(at, "100-continue", 12) != 0)
			ac->expect_bad = 1;
		else
			ac->expect_100 = 1;
		break;
	default:
		break;
	}
	return 0;
}

static int
ac_on_header_value_complete(llhttp_t *p)
{
	struct adminconn *ac = ac_of(p);

	ac->in_value = 1;
	if (ac->fkind == F_TE) {
		/* a field ended: the next one starts a new coding */
		ac->te_chunked_last = ac->te_last_len == 7 &&
		    strncasecmp(ac->te_last, "chunked", 7) == 0;
		ac->te_last_len = 0;
	}
	return 0;
}

static int
ac_on_headers_complete(llhttp_t *p)
{
	struct adminconn *ac = ac_of(p);

	if (p->http_major != 1)
		return ac_fail(ac, 400);
	if (p->method == HTTP_CONNECT)
		return ac_fail(ac, 405);
	if (p->http_minor == 1 && ac->nhost != 1)
		return ac_fail(ac, 400);
	if (ac->nhost > 1)
		return ac_fail(ac, 400);
	if (ac->has_te) {
		if (p->http_minor == 0)
			return ac_fail(ac, 400);
		if (!ac->te_chunked_last)
			return ac_fail(ac, 400);
		/* llhttp refuses "chunked" twice and CL with TE in strict mode */
	}
	if (ac->target == NULL || ac->target[0] != '/')
		return ac_fail(ac, 400);
	if (ac->expect_bad)
		return ac_fail(ac, 417);
	if (p->content_length != ULLONG_MAX && p->content_length > 0 &&
	    p->content_length > ADMINCONN_BODY_MAX)
		return ac_fail(ac, 413);
	ac->keepalive = llhttp_should_keep_alive(p);
	if (ac->expect_100 && p->http_minor == 1 &&
	    (ac->has_te || (p->content_length > 0 && p->content_length != ULLONG_MAX))) {
		if (buf_room(&ac->out) < 25 && worker_buf_grow(&ac->out, 25) == -1)
			return ac_fail(ac, 500);
		buf_puts(&ac->out, "HTTP/1.1 100 Continue\r\n\r\n");
	}
	ac->phase = AC_BODY;
	ev_timer_after(&ac->w->loop, &ac->timer, ac->w->conf->timeout.client_idle_ms);
	/*
	 * With a body, stop at the head's end so the head's bytes alone are
	 * checked for bare CR/LF; without, run on to message_complete.
	 */
	return ac->has_te || (p->content_length > 0 &&
	    p->content_length != ULLONG_MAX) ? HPE_PAUSED : 0;
}

static int
ac_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct adminconn *ac = ac_of(p);

	if (ac->body_len + len > ADMINCONN_BODY_MAX)
		return ac_fail(ac, 413);
	if (ac_append(&ac->body, &ac->body_len, at, len, ADMINCONN_BODY_MAX) == -1)
		return ac_fail(ac, 500);
	return 0;
}

static int
ac_on_chunk_extension_name(llhttp_t *p, const char *at, size_t len)
{
	return http_is_token(at, len) ? 0 : ac_fail(ac_of(p), 400);
}

static int
ac_on_chunk_header(llhttp_t *p)
{
	struct adminconn *ac = ac_of(p);

	if (p->content_length == 0 && !ac->trailers) {
		/* the last chunk: the trailer section is checked as it comes */
		ac->trailers = 1;
		ac->prev = '\n';	/* "0\r\n" ended a line */
		return HPE_PAUSED;
	}
	return 0;
}

static int
ac_on_message_complete(llhttp_t *p)
{
	ac_of(p)->msg_done = 1;
	return HPE_PAUSED;
}

/*
 * Bytes of the head or of the trailer section, which llhttp 8 lets
 * through leniently in places: a CR not followed by LF, an LF without
 * its CR, or a line starting with SP/HTAB (obs-fold) is a 400.  The last
 * byte carries over between reads.
 */
static int
ac_crlf_bad(struct adminconn *ac, const char *p, size_t n)
{
	return h1_lines_bad(&ac->prev, p, n);
}

static void
ac_settings_init(void)
{
	llhttp_settings_t *s = &ac_settings;

	if (ac_settings_done)
		return;
	llhttp_settings_init(s);
	s->on_message_begin = ac_on_message_begin;
	s->on_url = ac_on_url;
	s->on_header_field = ac_on_header_field;
	s->on_header_field_complete = ac_on_header_field_complete;
	s->on_header_value = ac_on_header_value;
	s->on_header_value_complete = ac_on_header_value_complete;
	s->on_headers_complete = ac_on_headers_complete;
	s->on_body = ac_on_body;
	s->on_chunk_header = ac_on_chunk_header;
	s->on_chunk_extension_name = ac_on_chunk_extension_name;
	s->on_message_complete = ac_on_message_complete;
	ac_settings_done = 1;
}

void
adminconn_accept(struct worker *w, int fd)
{
	struct adminconn	*ac;
	int			 one = 1;

	ac_settings_init();
	if (nacs >= ADMINCONN_MAX) {
		/* each may hold ~100 KiB: an admin tool needs far fewer */
		log_debug("adminconn: %zu connections open; refusing one", nacs);
		close(fd);
		return;
	}
	if ((ac = calloc(1, sizeof(*ac))) == NULL ||
	    (ac->in.data = malloc(ADMINCONN_INBUF)) == NULL) {
		free(ac);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ac->in.cap = ADMINCONN_INBUF;
	ac->w = w;
	ac->io.fd = fd;
	ac->io.cb = adminconn_io;
	llhttp_init(&ac->parser, HTTP_REQUEST, &ac_settings);
	ac->parser.data = ac;
	ev_timer_init(&ac->timer, adminconn_timeout);
	ac_req_reset(ac);
	if (ev_add(&w->loop, &ac->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) == -1) {
		log_warn("adminconn: epoll_ctl");
		free(ac->in.data);
		free(ac);
		close(fd);
		return;
	}
	TAILQ_INSERT_TAIL(&acs, ac, entry);
	nacs++;
	ac->phase = AC_IDLE;
	ev_timer_after(&w->loop, &ac->timer, w->conf->timeout.client_idle_ms);
	adminconn_drive(ac);
}

static void
adminconn_close(struct adminconn *ac)
{
	struct worker	*w = ac->w;

	if (ac->closed)
		return;
	ac->closed = 1;
	if (ac->phase == AC_WAIT)
		admin_abort(ac);
	ev_timer_stop(&w->loop, &ac->timer);
	ev_del(&w->loop, &ac->io);
	close(ac->io.fd);
	ac_req_reset(ac);
	free(ac->in.data);
	free(ac->out.data);
	ac->in.data = ac->out.data = NULL;
	TAILQ_REMOVE(&acs, ac, entry);
	nacs--;
	/* freed after the current batch of events, which may still name it */
	TAILQ_INSERT_TAIL(&aczombies, ac, entry);
}

void
adminconn_free_zombies(void)
{
	struct adminconn *ac;

	while ((ac = TAILQ_FIRST(&aczombies)) != NULL) {
		TAILQ_REMOVE(&aczombies, ac, entry);
		free(ac);
	}
}

size_t
adminconn_count(void)
{
	return nacs;
}

/* An error answer of our own, then close (lingering so the client reads it). */
static void
ac_error(struct adminconn *ac, int status)
{
	struct admin_resp	 r;

	memset(&r, 0, sizeof(r));
	admin_error(&r, status, "%s", reply_reason(status));
	ac->closing = 1;
	buf_reset(&ac->out);
	if (admin_write(&ac->out, &r, 0, 1) == -1) {
		adminconn_close(ac);
		return;
	}
	ac->phase = AC_WRITE;
	ev_timer_after(&ac->w->loop, &ac->timer, ac->w->conf->timeout.client_idle_ms);
}

/* A whole request is in: answer it. */
static void
ac_dispatch(struct adminconn *ac)
{
	struct admin_req	 q;
	char			*qm;
	int			 rc;

	memset(&q, 0, sizeof(q));
	q.method = llhttp_method_name((llhttp_method_t)ac->parser.method);
	if ((qm = strchr(ac->target, '?')) != NULL) {
		*qm = '\0';
		q.query = qm + 1;
	} else
		q.query = "";
	q.path = ac->target;
	q.auth = ac->auth;
	q.body = ac->body;
	q.bodylen = ac->body_len;
	if (!ac->keepalive || ac->w->draining)
		ac->closing = 1;
	ac->phase = AC_WAIT;
	rc = admin_handle(ac->w, ac, &q, &ac->out);
	if (rc == 1)
		return;		/* adminconn_done() comes later */
	ac->phase = AC_WRITE;
	ev_timer_after(&ac->w->loop, &ac->timer, ac->w->conf->timeout.client_idle_ms);
}

struct buf *
adminconn_out(struct adminconn *ac)
{
	return &ac->out;
}

int
adminconn_closing(const struct adminconn *ac)
{
	return ac->closing;
}

void
adminconn_done(struct adminconn *ac)
{
	if (ac->closed || ac->phase != AC_WAIT)
		return;
	ac->phase = AC_WRITE;
	ev_timer_after(&ac->w->loop, &ac->timer, ac->w->conf->timeout.client_idle_ms);
	adminconn_drive(ac);
}

/* Parse what is buffered.  Returns 1 on progress, 0 when more input is needed, -1 if closed. */
static int
ac_parse(struct adminconn *ac)
{
	const char	*p = ac->in.data + ac->in.rpos;
	size_t		 n = buf_len(&ac->in), used;
	llhttp_errno_t	 err;
	int		 head = ac->phase == AC_IDLE || ac->phase == AC_HEAD;
	int		 trailers = ac->trailers;

	if (n == 0)
		return 0;
	if (ac->phase == AC_IDLE) {
		ac->phase = AC_HEAD;
		ac->t_start = ac->w->loop.now;
		ev_timer_after(&ac->w->loop, &ac->timer,
		    ac->w->conf->timeout.client_header_ms);
	}
	err = llhttp_execute(&ac->parser, p, n);
	if (err != HPE_OK && err != HPE_PAUSED) {
		log_debug("adminconn: %s (%s)", llhttp_errno_name(err),
		    llhttp_get_error_reason(&ac->parser));
		ac_error(ac, ac->status ? ac->status : 400);
		return 1;
	}
	used = err == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&ac->parser) - p);
	/* the head's bytes (and the trailer section's) are checked for bare CR/LF */
	if ((head || trailers) && used > 0 && ac_crlf_bad(ac, p, used)) {
		ac_error(ac, 400);
		return 1;
	}
	if (ac->phase == AC_HEAD && ac->parser.http_major == 0 &&
	    ac->parser.http_minor == 9) {
		ac_error(ac, 400);
		return 1;
	}
	ac->in.rpos += used;
	if (err == HPE_PAUSED)
		llhttp_resume(&ac->parser);
	if (ac->msg_done) {
		ac_dispatch(ac);
		return 1;
	}
	if (ac->phase == AC_BODY)
		ev_timer_after(&ac->w->loop, &ac->timer,
		    ac->w->conf->timeout.client_idle_ms);
	return used > 0;
}

/* Read, parse, write until nothing moves. */
static void
adminconn_drive(struct adminconn *ac)
{
	ssize_t	 r;
	int	 loops;

	for (loops = 0; loops < 1024 && !ac->closed; loops++) {
		int progress = 0;

		/* write what is queued */
		while (buf_len(&ac->out) > 0) {
			r = send(ac->io.fd, ac->out.data + ac->out.rpos,
			    buf_len(&ac->out), MSG_NOSIGNAL);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == -1 && errno == EAGAIN)
				break;
			if (r <= 0) {
				adminconn_close(ac);
				return;
			}
			ac->out.rpos += (size_t)r;
			progress = 1;
		}
		if (buf_len(&ac->out) > 0)
			return;		/* EPOLLOUT brings us back */
		buf_reset(&ac->out);
		if (ac->phase == AC_WRITE) {
			if (ac->closing) {
				ac->phase = AC_LINGER;
				shutdown(ac->io.fd, SHUT_WR);
				ev_timer_after(&ac->w->loop, &ac->timer,
				    ADMINCONN_LINGER_MS);
			} else {
				ac_req_reset(ac);
				ac->phase = AC_IDLE;
				ev_timer_after(&ac->w->loop, &ac->timer,
				    ac->w->conf->timeout.client_idle_ms);
			}
			progress = 1;
		}
		if (ac->phase == AC_LINGER) {
			char	drop[4096];

			while ((r = read(ac->io.fd, drop, sizeof(drop))) > 0)
				;
			if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR))
				adminconn_close(ac);
			return;
		}
		/* parse what we have, then read more if the request is not whole */
		if (ac->phase == AC_IDLE || ac->phase == AC_HEAD || ac->phase == AC_BODY) {
			int pr = ac_parse(ac);

			if (ac->closed)
				return;
			if (pr > 0)
				progress = 1;
		}
		if (ac->phase == AC_IDLE || ac->phase == AC_HEAD || ac->phase == AC_BODY) {
			buf_compact(&ac->in);
			if (buf_room(&ac->in) > 0) {
				r = read(ac->io.fd, ac->in.data + ac->in.wpos,
				    buf_room(&ac->in));
				if (r > 0) {
					ac->in.wpos += (size_t)r;
					progress = 1;
				} else if (r == 0) {
					/* the client is gone, or half-closed before a whole request */
					adminconn_close(ac);
					return;
				} else if (errno != EAGAIN && errno != EINTR) {
					adminconn_close(ac);
					return;
				}
			}
		}
		if (!progress)
			return;
	}
	/* a client that keeps us turning this long is not an admin tool */
	if (!ac->closed)
		adminconn_close(ac);
}

static void
adminconn_io(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct adminconn *ac = (struct adminconn *)io;

	if (ac->closed)
		return;
	/* a reset while an answer is pending (a drill): give it up */
	if ((events & (EPOLLERR | EPOLLHUP)) && (ac->phase == AC_WAIT ||
	    !(events & EPOLLIN))) {
		adminconn_close(ac);
		return;
	}
	adminconn_drive(ac);
}

static void
adminconn_timeout(struct ev_loop *l, struct ev_timer *t)
{
	struct adminconn *ac = (struct adminconn *)((char *)t -
	    offsetof(struct adminconn, timer));

	if (ac->closed)
		return;
	switch (ac->phase) {
	case AC_HEAD:
	case AC_BODY:
		ac_error(ac, 408);
		adminconn_drive(ac);
		return;
	case AC_WAIT:
		return;		/* the handler owns the deadline (drill, master forward) */
	case AC_WRITE:
	case AC_IDLE:
	case AC_LINGER:
	default:
		if (ac->phase == AC_WRITE && buf_len(&ac->out) == 0) {
			adminconn_drive(ac);
			return;
		}
		adminconn_close(ac);
		return;
	}
}

/* Drain: an idle connection is closed now; busy ones close after their answer. */
void
adminconn_drain(struct worker *w)
{
	struct adminconn *ac, *next;

	for (ac = TAILQ_FIRST(&acs); ac != NULL; ac = next) {
		next = TAILQ_NEXT(ac, entry);
		if (ac->phase == AC_IDLE && buf_len(&ac->in) == 0)
			adminconn_close(ac);
		else
			ac->closing = 1;
	}
}

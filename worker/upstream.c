/* The backend side of a proxied exchange: idle pools, connects, failover, response re-framing. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "worker/h1.h"
#include "worker/http.h"
#include "worker/retry.h"
#include "worker/llm.h"
#include "worker/worker.h"



static void	upstream_io(struct ev_loop *, struct ev_io *, uint32_t);
static void	upstream_timeout(struct ev_loop *, struct ev_timer *);
static void	upstream_fail(struct upconn *, enum up_err);
static struct shm_counters *up_ctr(struct upconn *);

/*
 * The answer's head counts at its backend: its status, its latency (the
 * live figure least_latency ranks by), the breaker's input, and the
 * failover it ended.  A held head counts when it is released: a backend
 * that sends heads and then fails is not a success.
 */
static void
up_head_count(struct upconn *u, int status)
{
	struct client		*c = u->cl;
	struct worker		*w = u->w;
	struct shm_counters	*k = up_ctr(u);
	uint64_t		 lat;

	if (c->x.fail_slot >= 0) {
		/* a failover that worked: counted at the backend that failed first */
		struct shm_counters *fk = shm_ctr(w->shm, w->index,
		    (uint32_t)c->x.fail_slot);

		shm_ctr_add(&fk->failover_ok, 1);
		shm_ctr_add(&fk->failover_us, (w->loop.now - c->x.t_fail) * 1000);
		atomic_store_explicit(&fk->last_failover_ms, shm_now_ms(),
		    memory_order_relaxed);
		c->x.fail_slot = -1;
	}
	lat = (w->loop.now - c->x.t_start) * 1000;
	shm_ctr_add(&k->status[status / 100 <= 5 ? status / 100 : 0], 1);
	shm_ctr_add(&k->lat_sum_us, lat);
	shm_ctr_add(&k->lat_hist[shm_lat_bucket(lat)], 1);
	{
		/* live latency for least_latency: an EWMA, 1/8 per answer */
		uint64_t old = atomic_load_explicit(&k->live_lat_us,
		    memory_order_relaxed);

		atomic_store_explicit(&k->live_lat_us, old ? (old * 7 + lat) / 8 :
		    lat, memory_order_relaxed);
		atomic_store_explicit(&k->live_lat_ms, shm_now_ms(),
		    memory_order_relaxed);
	}
	/* the breaker's input: 5xx is a failed request, anything else a success */
	if (status >= 500) {
		shm_ctr_add(&k->fails, 1);
		shm_ctr_add(&k->consec_fails, 1);
	} else
		atomic_store_explicit(&k->consec_fails, 0, memory_order_relaxed);
}

/*
 * A held head (llm.hold_headers) goes to the client: the attempt's first
 * event came, or the whole answer did, or the first event is too big to
 * wait for in the buffer.  From here on the answer is the client's.
 */
static void
up_hold_release(struct client *c)
{
	if (!c->x.head_held)
		return;
	c->x.head_held = 0;
	c->x.head_sent = 1;
	up_head_count(c->up, c->x.status);
}

/* Compact the client's out; a held head moves with it. */
static void
up_out_compact(struct client *c)
{
	if (c->x.head_held)
		c->x.hold_mark -= (uint32_t)c->out.rpos;
	buf_compact(&c->out);
}

/*
 * The attempt moved: its timer again.  A stream (an LLM request that
 * asked for one) has two of its own: timeout.first_token once the request
 * is sent, a deadline that nothing but the first body byte lifts, then
 * timeout.stream_idle between reads.  Everything else has
 * timeout.upstream_response from its last progress.
 */
static void
up_timer(struct upconn *u)
{
	struct worker		*w = u->w;
	const struct llm_req	*lr = u->cl->x.llm;

	if (lr != NULL && lr->stream) {
		if (lr->t_first_us != 0) {
			ev_timer_after(&w->loop, &u->timer,
			    (uint64_t)w->conf->timeout.stream_idle_ms);
			return;
		}
		if (u->t_sent != 0) {
			if (!u->ft_armed) {
				u->ft_armed = 1;
				ev_timer_after(&w->loop, &u->timer,
				    (uint64_t)w->conf->timeout.first_token_ms);
			}
			return;
		}
	}
	ev_timer_after(&w->loop, &u->timer, (uint64_t)w->conf->timeout.upstream_response_ms);
}

static struct shm_counters *
up_ctr(struct upconn *u)
{
	return shm_ctr(u->w->shm, u->w->index, u->slot);
}

static struct upconn *
up_of_parser(llhttp_t *p)
{
	return p->data;
}

static int
resp_on_message_begin(llhttp_t *p)
{
	struct upconn	*u = up_of_parser(p);

	head_reset(&u->h);
	u->head_done = 0;
	return 0;
}

static int
resp_on_status(llhttp_t *p, const char *at, size_t len)
{
	struct upconn	*u = up_of_parser(p);

	if (u->h.first.len == 0)
		u->h.first.off = (uint32_t)(at - u->in.data);
	u->h.first.len += (uint32_t)len;
	u->h.bytes += len;
	return 0;
}

static int
resp_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct upconn	*u = up_of_parser(p);

	if (head_field(&u->h, u->in.data, at, len, WORKER_HDR_MAX) == -1)
		return -1;
	return 0;
}

static int
resp_on_header_field_complete(llhttp_t *p)
{
	head_field_done(&up_of_parser(p)->h);
	return 0;
}

static int
resp_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct upconn	*u = up_of_parser(p);

	head_value(&u->h, u->in.data, at, len);
	return 0;
}

static int
resp_on_header_value_complete(llhttp_t *p)
{
	up_of_parser(p)->h.in_value = 1;
	return 0;
}


/*
 * The response head is complete.  Interim (1xx) heads are dropped: we
 * answer Expect ourselves and never upgrade.  A final head is rewritten
 * into the client's out buffer with hop-by-hop fields removed and the
 * framing chosen for the client.  Returns 1 for HEAD (no body), 0 to go on,
 * -1 for a head we refuse to forward.
 */
static int
resp_on_headers_complete(llhttp_t *p)
{
	struct upconn		*u = up_of_parser(p);
	struct client		*c = u->cl;
	const char		*base = u->in.data;
	struct conn_tokens	 ct;
	struct h1_resp		 hr;
	int			 status = p->status_code, keep, nobody;

	u->head_done = 1;
	if (status < 100 || status > 599)
		return -1;		/* not a status code: the response is broken */
	if (status < 200) {
		u->interim = 1;
		return status == 101 ? -1 : 0;
	}
	if (retry_status_wanted(c->w->retry_status, status, &(struct retry_facts){
	    .err = UPE_STATUS, .idempotent = exchange_replay_ok(c), .held = c->x.fwd_whole,
	    .answered = c->x.resp_started || c->x.head_sent, .complete = c->x.msg_done,
	    /* any 5xx, when another backend can take it: else this one's own error goes out */
	    .llm = c->x.llm_replay && status >= 500 && exchange_can_move(c) },
	    c->x.attempts, c->w->conf->retries.max) && exchange_can_move(c) &&
	    flow_retry_take(c)) {
		/*
		 * Not forwarded: another backend may answer it (upstream_fail
		 * decides); the retry budget counted it.  With no backend
		 * left to try, or refused by the budget, this answer goes to
		 * the client as it came.
		 */
		c->x.budget_taken = 1;
		u->retry_status = 1;
		c->x.status = status;
		return -1;
	}
	if (h1_response_check(p, base, &u->h) == -1)
		return -1;

	/* RFC 9112 6.3: no body follows these, whatever Content-Length says */
	nobody = c->x.is_head || status == 204 || status == 304;
	if (nobody)
		c->x.resp_body = BODY_NONE;
	else if (p->flags & F_CHUNKED)
		c->x.resp_body = c->x.http10 ? BODY_EOF : BODY_CHUNKED;
	else if (p->flags & F_CONTENT_LENGTH)
		c->x.resp_body = BODY_LENGTH;
	else
		c->x.resp_body = c->x.http10 ? BODY_EOF : BODY_CHUNKED;
	u->parser_eof_body = !nobody && !(p->flags & (F_CHUNKED | F_CONTENT_LENGTH));
	u->fr.out = &c->out;
	u->fr.to = c->x.resp_body;
	u->fr.from_eof = u->parser_eof_body;
	u->fr.chunk_open = 0;
	/* decided now: llhttp resets its flags once the message completes */
	u->keepalive = llhttp_should_keep_alive(p) && !u->parser_eof_body;

	/* keep the client connection when the request is in and both sides allow it */
	keep = !c->x.close_after && !c->w->draining && c->x.resp_body != BODY_EOF;
	c->x.resp_close = !keep;

	http_conn_tokens(base, &u->h, &ct);
	if (ct.overflow)
		return -1;
	hr.status = status;
	hr.body = c->x.resp_body;
	hr.nobody = nobody;
	hr.close = c->x.resp_close;
	hr.http10 = c->x.http10;
	/* a head that does not fit the client's buffer, with room left for the body's framing */
	{
		size_t	start = c->out.wpos;
		char	rl[FLOW_HEADERS_MAX];

		/* the tenant's rate limits, as OpenAI reports them with every answer */
		hr.extra = flow_headers(c, rl, sizeof(rl));

		if (h1_response_head(&c->out, base, &u->h, &hr, &ct) == -1)
			return -1;
		if (buf_room(&c->out) < H1_FRAME_MARGIN * 2) {
			c->out.wpos = start;
			return -1;
		}
		/*
		 * A stream of a pool that holds heads: the client sees this
		 * head with the first event, so that an attempt that breaks
		 * or stalls before it can still move on unseen.
		 */
		if (c->x.llm_replay && c->x.llm->stream) {
			c->x.head_held = 1;
			c->x.hold_mark = (uint32_t)start;
		} else
			c->x.head_sent = 1;
	}

	c->x.status = status;
	if (!c->x.head_held)
		up_head_count(u, status);
	/*
	 * No body: tell llhttp so (1), or it would wait for the Content-Length
	 * bytes a 204 or 304 never has.  A body: pause, so that up_parse()
	 * feeds it no more than the room the head left in the client's out.
	 */
	return nobody ? 1 : HPE_PAUSED;
}

static int
resp_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct upconn	*u = up_of_parser(p);

	if (u->interim)
		return 0;		/* never forward a body of an interim response */
	llm_resp_data(u, at, len);
	if (h1_frame_data(&u->fr, at, len) == -1) {
		/* up_parse() bounds its input by the room: this is a bug, not input */
		log_warnx("upstream: body of %zu bytes for %zu bytes of room", len,
		    buf_room(u->fr.out));
		return -1;
	}
	/* a held head goes with the first whole event (or any byte of what is not a stream) */
	if (u->cl->x.head_held && (u->cl->x.llm->events > 0 || !u->cl->x.llm->sse))
		up_hold_release(u->cl);
	return 0;
}

static int
resp_on_chunk_header(llhttp_t *p)
{
	struct upconn	*u = up_of_parser(p);

	if (u->interim)
		return 0;		/* an interim response's body is never forwarded */
	return h1_frame_chunk(&u->fr, p->content_length);
}

static int
resp_on_chunk_complete(llhttp_t *p)
{
	struct upconn	*u = up_of_parser(p);

	return u->interim ? 0 : h1_frame_chunk_end(&u->fr);
}

static int
resp_on_message_complete(llhttp_t *p)
{
	struct upconn	*u = up_of_parser(p);
	struct client	*c = u->cl;

	if (u->interim) {
		u->interim = 0;
		return 0;
	}
	if (h1_frame_end(&u->fr) == -1)
		return -1;
	up_hold_release(c);
	c->x.resp_done = 1;
	return HPE_PAUSED;
}

void
upstream_settings(llhttp_settings_t *s)
{
	llhttp_settings_init(s);
	s->on_message_begin = resp_on_message_begin;
	s->on_status = resp_on_status;
	s->on_header_field = resp_on_header_field;
	s->on_header_field_complete = resp_on_header_field_complete;
	s->on_header_value = resp_on_header_value;
	s->on_header_value_complete = resp_on_header_value_complete;
	s->on_headers_complete = resp_on_headers_complete;
	s->on_body = resp_on_body;
	s->on_chunk_header = resp_on_chunk_header;
	s->on_chunk_complete = resp_on_chunk_complete;
	s->on_message_complete = resp_on_message_complete;
}

static void
up_free_in(struct upconn *u)
{
	if (u->in.data != NULL) {
		worker_buf_put(u->w, u->in.data);
		memset(&u->in, 0, sizeof(u->in));
	}
}

/* Close a connection for good; the struct is freed after this batch of events. */
static void
up_close(struct upconn *u)
{
	struct worker	*w = u->w;

	if (u->closed)
		return;
	u->closed = 1;
	if (u->phase == UP_IDLE) {
		TAILQ_REMOVE(&w->wb[u->slot].idle, u, entry);
		w->wb[u->slot].nidle--;
	}
	ev_timer_stop(&w->loop, &u->timer);
	ev_del(&w->loop, &u->io);
	close(u->io.fd);
	up_free_in(u);
	TAILQ_INSERT_TAIL(&w->uzombies, u, entry);
}

/*
 * Detach u from its client: count the attempt as finished and either park
 * the connection in its backend's idle pool or close it.
 */
void
upstream_release(struct upconn *u, int reuse)
{
	struct worker	*w = u->w;
	struct client	*c = u->cl;
	struct wbackend	*b = &w->wb[u->slot];

	if (c != NULL) {
		shm_inflight_add(w->shm, w->index, u->slot, -1);
		llm_attempt(u, -1);
		c->up = NULL;
		u->cl = NULL;
		exchange_slot_freed(w, c->x.pool);
	}
	/* hup: the backend's FIN came with its answer; no edge will say so again */
	if (!reuse || u->no_reuse || u->closed || u->hup || u->addr_gen != b->addr_gen ||
	    w->draining || buf_len(&u->in) != 0 || !w->view.be[u->slot].inuse) {
		up_close(u);
		return;
	}
	up_free_in(u);
	u->phase = UP_IDLE;
	u->got_bytes = 0;
	u->head_done = 0;
	u->interim = 0;
	u->t_sent = 0;
	llhttp_reset(&u->parser);
	TAILQ_INSERT_HEAD(&b->idle, u, entry);
	b->nidle++;
	ev_timer_after(&w->loop, &u->timer, (uint64_t)w->conf->timeout.upstream_idle_ms);
}

void
upstream_close_idle(struct worker *w, uint32_t slot)
{
	struct upconn	*u;

	while ((u = TAILQ_FIRST(&w->wb[slot].idle)) != NULL)
		up_close(u);
}

/* A new non-blocking connection to slot; NULL with errno on failure. */
static struct upconn *
up_connect(struct worker *w, uint32_t slot)
{
	struct wbackend	*b = &w->wb[slot];
	struct upconn	*u;
	int		 fd, one = 1;

	fd = socket(b->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	u->w = w;
	u->io.fd = fd;
	u->io.cb = upstream_io;
	u->slot = slot;
	u->addr_gen = b->addr_gen;
	u->phase = UP_CONNECTING;
	llhttp_init(&u->parser, HTTP_RESPONSE, &w->resp_settings);
	u->parser.data = u;
	ev_timer_init(&u->timer, upstream_timeout);
	if (connect(fd, (struct sockaddr *)&b->sa, b->salen) == 0) {
		u->phase = UP_BUSY;
	} else if (errno != EINPROGRESS) {
		int	saved = errno;

		close(fd);
		free(u);
		errno = saved;
		return NULL;
	}
	if (ev_add(&w->loop, &u->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) == -1) {
		close(fd);
		free(u);
		return NULL;
	}
	u->wr_ready = u->phase == UP_BUSY;
	shm_ctr_add(&shm_ctr(w->shm, w->index, slot)->conns, 1);
	return u;
}

static void
up_note_fail(struct worker *w, uint32_t slot)
{
	struct shm_counters	*k = shm_ctr(w->shm, w->index, slot);

	shm_ctr_add(&k->fails, 1);
	shm_ctr_add(&k->consec_fails, 1);
}

/*
 * Give the client's request a backend connection: an idle one of the
 * chosen backend, or a new one.  A backend that refuses at once is
 * skipped for the next eligible one.  Returns 0, or -1 when none is left
 * (c->x.attempts tells whether any was tried).
 */
int
upstream_attach(struct client *c)
{
	struct worker	*w = c->w;
	struct upconn	*u = NULL;
	int		 slot;

	/* an operator's change (disable, weight, new backend) counts from the very next pick */
	if (shm_gen(w->shm) != w->gen)
		worker_refresh(w);
	while (c->x.attempts <= w->conf->retries.max) {
		struct wbackend *b;

		slot = balance_pick(&w->view, (uint32_t)c->x.pool, &c->x.breq);
		if (slot == -1 && !c->x.on_backup_pool && c->x.pool >= 0 &&
		    (size_t)c->x.pool < w->conf->npools && w->backup_pool[c->x.pool] >= 0) {
			/* nothing here can take it: the pool's backup pool does (once) */
			c->x.pool = w->backup_pool[c->x.pool];
			c->x.on_backup_pool = 1;
			/* X-Router-Strategy holds there only if that pool allows it too */
			if (c->x.breq.override > 0 && !(w->conf->pools[c->x.pool].allow_strategies &
			    (1u << (c->x.breq.override - 1))))
				c->x.breq.override = 0;
			continue;
		}
		if (slot == -1)
			return -1;
		b = &w->wb[slot];
		if (atomic_load_explicit(&shm_slot(w->shm, (uint32_t)slot)->breaker,
		    memory_order_relaxed) == SHM_BREAKER_HALF_OPEN &&
		    !shm_trial_take(shm_slot(w->shm, (uint32_t)slot))) {
			/* another worker took the last trial: not this one, not an attempt */
			if (c->x.breq.nexclude < BAL_EXCLUDE_MAX) {
				c->x.breq.exclude[c->x.breq.nexclude++] = (uint32_t)slot;
				continue;
			}
			return -1;
		}
		while ((u = TAILQ_FIRST(&b->idle)) != NULL) {
			TAILQ_REMOVE(&b->idle, u, entry);
			b->nidle--;
			/* moved, or idle past timeout.upstream_idle (timers run after I/O) */
			if (u->addr_gen != b->addr_gen ||
			    (u->timer.deadline != 0 && u->timer.deadline <= w->loop.now)) {
				u->phase = UP_BUSY;
				up_close(u);
				continue;
			}
			u->phase = UP_BUSY;
			u->reused = 1;
			break;
		}
		if (u == NULL)
			u = up_connect(w, (uint32_t)slot);
		c->x.attempts++;
		if (c->x.breq.nexclude < BAL_EXCLUDE_MAX)
			c->x.breq.exclude[c->x.breq.nexclude++] = (uint32_t)slot;
		if (u != NULL)
			break;
		log_debug("upstream: %s: connect: %s", b->name, strerror(errno));
		up_note_fail(w, (uint32_t)slot);
	}
	if (u == NULL)
		return -1;
	u->cl = c;
	c->up = u;
	c->x.slot = u->slot;
	u->nreq++;
	u->ft_armed = 0;
	c->x.timed_out = 0;
	if (!ev_timer_armed(&w->down_timer)) {
		/* the sweep slept: what is down now is not news to it */
		upstream_down_seen(w);
		ev_timer_after(&w->loop, &w->down_timer, UPSTREAM_DOWN_TICK_MS);
	}
	if (u->in.data == NULL) {
		if ((u->in.data = worker_buf_get(w)) == NULL) {
			c->up = NULL;
			u->cl = NULL;
			up_close(u);
			return -1;
		}
		u->in.cap = WORKER_BUFSZ;
		buf_reset(&u->in);
	}
	if (c->out.data == NULL) {
		if ((c->out.data = worker_buf_get(w)) == NULL) {
			c->up = NULL;
			u->cl = NULL;
			up_close(u);
			return -1;
		}
		c->out.cap = WORKER_BUFSZ;
		buf_reset(&c->out);
	}
	{
		struct shm_counters *k = up_ctr(u);

		shm_ctr_add(&k->requests, 1);
		if (c->x.attempts > 1)
			shm_ctr_add(&k->retries, 1);
		shm_inflight_add(u->w->shm, u->w->index, u->slot, 1);
		llm_attempt(u, 1);
	}
	ev_timer_after(&w->loop, &u->timer, u->phase == UP_CONNECTING ?
	    (uint64_t)w->conf->timeout.connect_ms :
	    (uint64_t)w->conf->timeout.upstream_response_ms);
	return 0;
}

/* Feed response bytes to llhttp, never more than the client's out can take. */
static int
up_parse(struct upconn *u)
{
	struct client	*c = u->cl;
	const char	*p;
	size_t		 n, step;
	llhttp_errno_t	 err;

	if (buf_len(&u->in) == 0 || c->x.resp_done)
		return 0;
	if ((step = h1_frame_step(&c->out)) == 0) {
		if (c->x.head_held) {
			/* a first event bigger than the buffer: the head cannot wait for it */
			up_hold_release(c);
			return 1;	/* the client may take the bytes now */
		}
		if (c->out.rpos == 0)
			return 0;
		up_out_compact(c);
		if ((step = h1_frame_step(&c->out)) == 0)
			return 0;
	}
	n = buf_len(&u->in);
	if (u->head_done && n > step)
		n = step;	/* body: no more than the framer has room for */
	p = u->in.data + u->in.rpos;
	err = llhttp_execute(&u->parser, p, n);
	if (err == HPE_OK) {
		u->in.rpos += n;
	} else if (err == HPE_PAUSED) {
		u->in.rpos += (size_t)(llhttp_get_error_pos(&u->parser) - p);
		llhttp_resume(&u->parser);
		if (u->head_done && !c->x.resp_done && buf_len(&u->in) == 0) {
			/*
			 * Paused at the end of the head with no byte after it:
			 * step past the head now, so that an empty body completes
			 * and a close-delimited one can be finished at EOF.
			 */
			err = llhttp_execute(&u->parser, u->in.data + u->in.rpos, 0);
			if (err == HPE_PAUSED)
				llhttp_resume(&u->parser);
			else if (err != HPE_OK) {
				upstream_fail(u, UPE_BAD);
				return -1;
			}
		}
		if (c->x.resp_done && buf_len(&u->in) != 0)
			u->no_reuse = 1;	/* bytes after the response: not HTTP we trust */
	} else if (u->retry_status) {
		upstream_fail(u, UPE_STATUS);
		return -1;
	} else {
		log_debug("upstream %s: bad response: %s (%s)", u->w->wb[u->slot].name,
		    llhttp_errno_name(err), llhttp_get_error_reason(&u->parser));
		upstream_fail(u, UPE_BAD);
		return -1;
	}
	if (u->head_done && buf_len(&u->in) == 0)
		buf_reset(&u->in);
	else if (!u->head_done && u->in.wpos == u->in.cap && u->in.rpos == u->in.wpos) {
		/* a head larger than our buffer */
		upstream_fail(u, UPE_BAD);
		return -1;
	}
	if (u->head_done && !c->x.resp_started && !c->x.head_held) {
		c->x.resp_started = 1;
		c->phase = c->x.msg_done ? CP_SENT : c->phase;
	}
	return 1;
}

/*
 * Moves the upstream half: finish connecting, send the request bytes held
 * in the client's fwd buffer, read and re-frame the response into the
 * client's out buffer.  Returns 1 on progress, 0 on none, -1 if the
 * client was closed or detached meanwhile.
 */
int
upstream_drive(struct upconn *u)
{
	struct client	*c = u->cl;
	struct worker	*w = u->w;
	int		 progress = 0;
	ssize_t		 n;

	if (u->phase == UP_CONNECTING) {
		int		err = 0;
		socklen_t	len = sizeof(err);

		if (!u->wr_ready)
			return 0;
		if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			errno = err;
			upstream_fail(u, UPE_CONNECT);
			return c->closed || c->up == NULL ? -1 : 1;
		}
		u->phase = UP_BUSY;
		ev_timer_after(&w->loop, &u->timer, w->conf->timeout.upstream_response_ms);
		progress = 1;
	}

	/* request bytes */
	while (c->fwd.data != NULL && buf_len(&c->fwd) > 0 && u->wr_ready) {
		n = send(u->io.fd, c->fwd.data + c->fwd.rpos, buf_len(&c->fwd),
		    MSG_NOSIGNAL);
		if (n > 0) {
			c->fwd.rpos += (size_t)n;
			shm_ctr_add(&up_ctr(u)->bytes_out, (uint64_t)n);
			progress = 1;
			if (!c->x.fwd_whole && c->fwd.rpos == c->fwd.wpos)
				buf_reset(&c->fwd);
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			u->wr_ready = 0;
			break;
		}
		if (u->got_bytes) {
			/* the backend answered early and stopped reading: keep its answer */
			u->no_reuse = 1;
			c->fwd.rpos = c->fwd.wpos;
			break;
		}
		upstream_fail(u, UPE_SEND);
		return -1;
	}
	if (c->x.msg_done && c->fwd.data != NULL && buf_len(&c->fwd) == 0 && u->t_sent == 0)
		u->t_sent = w->loop.now;

	/* response bytes */
	while (u->rd_ready && !u->eof && !c->x.resp_done && buf_room(&u->in) > 0) {
		size_t room = buf_room(&u->in);

		n = read(u->io.fd, u->in.data + u->in.wpos, room);
		if (n > 0) {
			u->in.wpos += (size_t)n;
			u->got_bytes = 1;
			shm_ctr_add(&up_ctr(u)->bytes_in, (uint64_t)n);
			progress = 1;
			if ((size_t)n < room && !u->hup)
				u->rd_ready = 0;
			break;
		}
		if (n == 0) {
			u->eof = 1;
			progress = 1;
			break;
		}
		if (errno == EAGAIN || errno == EINTR) {
			u->rd_ready = 0;
			break;
		}
		if (!u->got_bytes) {
			upstream_fail(u, UPE_EMPTY);
			return -1;
		}
		u->eof = 1;
		u->no_reuse = 1;
		progress = 1;
		break;
	}
	if (progress && u->phase == UP_BUSY && !c->x.resp_done)
		up_timer(u);
	if (buf_len(&u->in) > 0) {
		int first = c->x.llm != NULL && c->x.llm->t_first_us == 0;
		int r = up_parse(u);

		if (r == -1)
			return -1;
		progress |= r;
		/* the first body byte lifts timeout.first_token: timeout.stream_idle from here */
		if (first && c->x.llm->t_first_us != 0 && !c->x.resp_done)
			up_timer(u);
	}
	if (u->eof && buf_len(&u->in) == 0 && !c->x.resp_done) {
		if (!u->got_bytes) {
			upstream_fail(u, UPE_EMPTY);
			return -1;
		}
		if (u->head_done && u->parser_eof_body) {
			/* the close ends the body: on_message_complete runs (and pauses) */
			llhttp_errno_t err;

			if (buf_room(&c->out) < H1_FRAME_MARGIN) {
				/* the last chunk needs room: after the client took some */
				if (c->out.rpos == 0) {
					if (!c->x.head_held)
						return progress;
					up_hold_release(c);
					return 1;
				}
				up_out_compact(c);
			}
			err = llhttp_finish(&u->parser);

			u->no_reuse = 1;
			if (!((err == HPE_OK || err == HPE_PAUSED) && c->x.resp_done)) {
				upstream_fail(u, UPE_TRUNCATED);
				return -1;
			}
		} else {
			upstream_fail(u, UPE_TRUNCATED);
			return -1;
		}
	}
	if (c->x.resp_done && c->up == u) {
		/* the whole response is ours: the connection can serve another request if the request went out whole */
		int reuse = c->x.msg_done && buf_len(&c->fwd) == 0 && !u->eof &&
		    u->keepalive;

		if (!c->x.msg_done)
			c->x.close_after = 1, c->x.resp_close = 1;
		llm_attempt_done(u, 1);
		upstream_release(u, reuse);
		return 1;
	}
	return progress;
}

/*
 * An attempt failed.  Before any response byte reached the client the
 * request moves to another backend when replay is safe; otherwise the
 * client gets 502/504, or its connection is cut if a response had begun.
 */
static void
upstream_fail(struct upconn *u, enum up_err e)
{
	struct client	*c = u->cl;
	struct worker	*w = u->w;
	uint32_t	 slot = u->slot;
	int		 reused = u->reused;

	if (e != UPE_STATUS)
		up_note_fail(w, slot);	/* a 5xx was counted with its head */
	if (c->x.head_held) {
		/* nothing of this answer reached the client: take its head back */
		c->out.wpos = c->x.hold_mark;
		if (c->out.rpos == c->out.wpos)
			buf_reset(&c->out);
		c->x.head_held = 0;
		c->x.status = 0;
		if (e != UPE_TIMEOUT && e != UPE_STATUS)
			e = UPE_HELD;
		shm_ctr_add(&up_ctr(u)->held_fails, 1);
	}
	c->x.mid_chunk = u->fr.chunk_open;
	log_debug("upstream %s: attempt failed (%d)", w->wb[slot].name, (int)e);
	llm_attempt_done(u, 0);
	upstream_release(u, 0);
	exchange_failed(c, slot, e, reused);
}

static void
upstream_io(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct upconn	*u = (struct upconn *)io;

	if (u->closed)
		return;
	if (u->phase == UP_IDLE) {
		/* an idle connection has nothing to say: data or close ends it */
		if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			up_close(u);
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rd_ready = 1;
	if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->hup = 1;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		u->wr_ready = 1;
	if (u->cl != NULL)
		client_drive(u->cl);
}

static void
upstream_timeout(struct ev_loop *l, struct ev_timer *t)
{
	struct upconn	*u = (struct upconn *)((char *)t - offsetof(struct upconn, timer));

	if (u->closed)
		return;
	if (u->phase == UP_IDLE || u->cl == NULL) {
		up_close(u);
		return;
	}
	if (u->phase == UP_CONNECTING) {
		errno = ETIMEDOUT;
		upstream_fail(u, UPE_CONNECT);
		return;
	}
	if (u->head_done && !u->cl->x.head_held && u->cl->phase == CP_SENT &&
	    h1_frame_step(&u->cl->out) == 0) {
		/*
		 * We stopped reading: the client, whose request is in, has not
		 * taken what we have.  Its own timer is for that (a client
		 * still uploading has none: its timer defers to this one).
		 */
		up_timer(u);
		return;
	}
	u->cl->x.timed_out = 1;
	upstream_fail(u, u->got_bytes && !u->cl->x.head_held ? UPE_TRUNCATED : UPE_TIMEOUT);
}

/* The prober has slot's backend down (a slot not in use is not). */
static int
up_slot_down(struct worker *w, uint32_t slot)
{
	return w->view.be[slot].inuse && atomic_load_explicit(&shm_slot(w->shm,
	    slot)->health, memory_order_relaxed) == SHM_HEALTH_DOWN;
}

/* The sweep starts again: what is down now is not news to it. */
void
upstream_down_seen(struct worker *w)
{
	uint32_t	slot;

	for (slot = 0; slot < w->shm->max_backends; slot++)
		w->wb[slot].down = up_slot_down(w, slot);
}

/*
 * Every UPSTREAM_DOWN_TICK_MS while this worker has attempts out: a
 * backend the prober has just marked down releases the attempts still
 * waiting there for their first byte (or, with the head held, for their
 * first event) that may safely move on; they go to another backend.  The
 * others wait on their own timers: the backend may still answer them.
 */
void
upstream_down_sweep(struct worker *w)
{
	struct client	*c, *next;
	uint32_t	 slot;
	int		 busy = 0, gone = 0;

	/* armed first: the attempts released below attach elsewhere, which would refresh the marks */
	ev_timer_after(&w->loop, &w->down_timer, UPSTREAM_DOWN_TICK_MS);
	for (slot = 0; slot < w->shm->max_backends; slot++) {
		if (!w->view.be[slot].inuse) {
			w->wb[slot].down = 0;
			continue;
		}
		if (atomic_load_explicit(&shm_ctr(w->shm, w->index, slot)->inflight,
		    memory_order_relaxed) > 0)
			busy = 1;
		if (!up_slot_down(w, slot))
			w->wb[slot].down = 0;
		else if (w->wb[slot].down == 0) {
			w->wb[slot].down = 2;	/* newly down: swept below */
			gone = 1;
		}
	}
	if (gone) {
		for (c = TAILQ_FIRST(&w->clients); c != NULL; c = next) {
			struct upconn *u = c->up;

			next = TAILQ_NEXT(c, entry);
			if (c->closed || u == NULL || u->closed || w->wb[u->slot].down != 2 ||
			    (u->got_bytes && !c->x.head_held) || !c->x.msg_done ||
			    !c->x.fwd_whole || !exchange_replay_ok(c))
				continue;
			/* with nowhere else to go, the backend may still answer it */
			if (!exchange_can_move(c))
				continue;
			log_debug("upstream %s: down: a waiting attempt moves on",
			    w->wb[u->slot].name);
			shm_ctr_add(&up_ctr(u)->down_released, 1);
			upstream_fail(u, u->phase == UP_CONNECTING ? UPE_CONNECT : UPE_TIMEOUT);
		}
		for (slot = 0; slot < w->shm->max_backends; slot++)
			if (w->wb[slot].down == 2)
				w->wb[slot].down = 1;
	}
	if (!busy)
		ev_timer_stop(&w->loop, &w->down_timer);
}

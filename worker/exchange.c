/* One request's life on its connection: the exchange's start, the wait queue, retries later, and its reset. */
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "worker/h1.h"
#include "worker/http.h"
#include "worker/retry.h"
#include "worker/llm.h"
#include "worker/worker.h"

/* Requests waiting in every worker's queue, from the table. */
static uint64_t
exchange_queued_total(struct worker *w)
{
	uint64_t	n = 0;
	uint32_t	i;

	for (i = 0; i < w->shm->max_workers; i++)
		n += atomic_load_explicit(&w->shm->workers[i].queued,
		    memory_order_relaxed);
	return n;
}

static void
exchange_queue_publish(struct worker *w)
{
	atomic_store_explicit(&w->shm->workers[w->index].queued, w->nwait,
	    memory_order_relaxed);
}

struct shm_poolq *
exchange_poolq(struct client *c)
{
	return &c->w->shm->poolq[c->w->index][balance_view_qid(&c->w->view,
	    c->x.pool)];
}

void
exchange_unqueue(struct client *c)
{
	struct worker	*w = c->w;
	struct shm_poolq *q = exchange_poolq(c);

	if (!c->x.queued)
		return;
	c->x.queued = 0;
	TAILQ_REMOVE(&w->waitq, c, qentry);
	w->nwait--;
	atomic_store_explicit(&q->queued,
	    atomic_load_explicit(&q->queued, memory_order_relaxed) - 1,
	    memory_order_relaxed);
	exchange_queue_publish(w);
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
exchange_retry_later(struct client *c, uint32_t slot)
{
	struct worker	*w = c->w;
	size_t		 i;

	if (w->conf->retries.delay_ms <= 0 || c->x.attempts > w->conf->retries.max ||
	    c->x.retried_same || !balance_eligible(&w->view, slot))
		return -1;
	c->x.retried_same = 1;
	for (i = 0; i < c->x.breq.nexclude; i++)
		if (c->x.breq.exclude[i] == slot) {
			c->x.breq.exclude[i] = c->x.breq.exclude[--c->x.breq.nexclude];
			break;
		}
	c->x.retry_wait = 1;
	c->phase = CP_WAIT;
	ev_timer_after(&w->loop, &c->timer, (uint64_t)w->conf->retries.delay_ms);
	return 0;
}

/* A backend is ours: the 100 Continue a client waits for, before its body. */
static int
exchange_attached(struct client *c)
{
	if (c->x.expect_100) {
		if (c->out.data == NULL &&
		    (c->out.data = worker_buf_get(c->w)) == NULL) {
			client_close(c);
			return -1;
		}
		c->out.cap = WORKER_BUFSZ;
		buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		c->x.expect_100 = 0;
	}
	return 0;
}

/*
 * Every worker's queue runs in FIFO order whenever a slot may have freed:
 * after one of our requests finished at a backend, and every 20 ms while
 * anything waits (slots also free in other workers).
 */
void
exchange_queue_run(struct worker *w)
{
	struct client	*c, *next;

	for (c = TAILQ_FIRST(&w->waitq); c != NULL; c = next) {
		next = TAILQ_NEXT(c, qentry);
		if (upstream_attach(c) == -1)
			continue;
		{
			struct shm_poolq *q = exchange_poolq(c);

			shm_ctr_add(&q->waits, 1);
			shm_ctr_add(&q->wait_ms, w->loop.now - c->x.t_queued);
		}
		exchange_unqueue(c);
		client_body_resume(c);
		if (exchange_attached(c) == 0)
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
exchange_no_backend(struct client *c)
{
	struct worker	*w = c->w;
	int		 full_only;

	if (c->x.attempts > 0) {
		client_reply(c, 502, "no backend could be reached");
		return;
	}
	c->x.breq.ignore_full = 1;
	full_only = balance_pick(&w->view, (uint32_t)c->x.pool, &c->x.breq) != -1;
	c->x.breq.ignore_full = 0;
	if (!full_only) {
		client_reply(c, 503, "no backend available");
		return;
	}
	if (w->conf->queue.size <= 0 ||
	    exchange_queued_total(w) >= (uint64_t)w->conf->queue.size) {
		shm_ctr_add(&exchange_poolq(c)->rejected, 1);
		client_reply(c, 503, "every backend is at its connection limit and the queue is full");
		return;
	}
	c->phase = CP_WAIT;
	c->x.queued = 1;
	c->x.t_queued = w->loop.now;
	TAILQ_INSERT_TAIL(&w->waitq, c, qentry);
	w->nwait++;
	{
		struct shm_poolq *q = exchange_poolq(c);

		atomic_store_explicit(&q->queued,
		    atomic_load_explicit(&q->queued, memory_order_relaxed) + 1,
		    memory_order_relaxed);
	}
	exchange_queue_publish(w);
	ev_timer_after(&w->loop, &c->timer, w->conf->queue.timeout_ms);
	if (!ev_timer_armed(&w->queue_timer))
		ev_timer_after(&w->loop, &w->queue_timer, 20);
}

/*
 * The request asked for a strategy (X-Router-Strategy): it gets it when
 * its pool lists it in allow_strategies; else it is routed by the pool's
 * own, as if it had not asked.  Either way it is counted in the pool's
 * row, never refused: a client cannot break routing.
 */
static void
exchange_ask_strategy(struct client *c)
{
	struct shm_poolq	*q = exchange_poolq(c);
	const struct conf_pool	*p = &c->w->conf->pools[c->x.pool];
	int			 s = c->x.ask_strategy - 1;

	if (c->x.ask_strategy > 0 && s < 32 && (p->allow_strategies & (1u << s))) {
		c->x.breq.override = s + 1;
		shm_ctr_add(&q->override_used, 1);
	} else
		shm_ctr_add(&q->override_ignored, 1);
}

/* The head is parsed: pick a backend and attach a connection. */
void
exchange_start(struct client *c)
{
	struct worker	*w = c->w;

	c->x.t_start = w->loop.now;
	c->x.breq.nexclude = 0;
	c->x.breq.model = -1;
	c->x.breq.override = 0;
	c->x.breq.blocks = NULL;
	c->x.breq.nblocks = 0;
	c->x.breq.prompt_tokens = 0;
	c->x.breq.output_tokens = 0;
	c->x.breq.rid = c->x.rid;
	c->x.attempts = 0;
	c->x.status = 0;
	ev_timer_after(&w->loop, &c->timer, w->conf->timeout.client_idle_ms);
	if (c->x.local_models) {
		models_list(c);
		return;
	}
	if (c->x.pool == -1) {
		client_reply(c, 404, client_status_msg(404));
		return;
	}
	if (c->x.ask_strategy != 0)
		exchange_ask_strategy(c);
	if (models_route(c) == -1)
		return;
	/* an inference has no side effect to repeat: until its answer shows, it may move on */
	c->x.llm_replay = c->x.infer && c->x.llm != NULL && w->conf->llm.hold_headers;
	if (upstream_attach(c) == -1) {
		exchange_no_backend(c);
		return;
	}
	if (!c->closed)
		exchange_attached(c);
}

/*
 * Ready for the next request on the connection: the exchange is wiped
 * whole.  Its held body must have been given back (hold_free_fwd()) and
 * it must not be queued.
 */
void
exchange_reset(struct client *c)
{
	llm_free(c);
	memset(&c->x, 0, sizeof(c->x));
	c->x.pool = -1;
	c->x.slot = -1;
	c->x.fail_slot = -1;
	c->x.trailer_prev = '\n';
	c->x.req_body = BODY_NONE;
}

/*
 * May this request be replayed as if idempotent?  By its method, or because
 * the operator said that POST, PATCH and the like may run twice
 * (retries.non_idempotent), or because it is an LLM request of a pool
 * that holds heads (llm.hold_headers): nothing of its answer has shown.
 */
int
exchange_replay_ok(const struct client *c)
{
	return c->x.idempotent || c->w->conf->retries.non_idempotent || c->x.llm_replay;
}

/*
 * An inference that is not streamed sends nothing until it is done: one
 * past upstream_response may still be generating there, and running it
 * again elsewhere would double a long generation.  Not replayed for
 * that alone (unless replay is allowed on other grounds).
 */
static int
exchange_still_running(const struct client *c, enum up_err e)
{
	return e == UPE_TIMEOUT && c->x.llm_replay && !c->x.llm->stream &&
	    !c->x.idempotent && !c->w->conf->retries.non_idempotent;
}

/*
 * Could another backend take this request now, were its attempt given up?
 * Retries left, and an eligible member, serving its model, of its pool
 * or of the pool's backup pool.
 */
int
exchange_can_move(struct client *c)
{
	struct worker	*w = c->w;
	int		 bp;

	if (c->x.attempts > w->conf->retries.max || c->x.pool < 0)
		return 0;
	if (balance_any_eligible(&w->view, (uint32_t)c->x.pool, &c->x.breq))
		return 1;
	bp = !c->x.on_backup_pool && (size_t)c->x.pool < w->conf->npools ?
	    w->backup_pool[c->x.pool] : -1;
	return bp >= 0 && balance_any_eligible(&w->view, (uint32_t)bp, &c->x.breq);
}

/*
 * An attempt on slot failed with e, and its connection is released
 * (reused: it was a pooled one).  Before any response byte reached the
 * client the request moves to another backend when replay is safe;
 * otherwise the client gets 502/504, or its connection is cut if a
 * response had begun.
 */
void
exchange_failed(struct client *c, uint32_t slot, enum up_err e, int reused)
{
	struct worker	*w = c->w;
	int		 replay;

	/*
	 * Replay only what is safe: the whole request is still in fwd, and
	 * the backend never got it (connect), or it is idempotent and failed
	 * before any response byte (reset, close, timeout), or it answered
	 * with a retryable status (only asked for idempotent requests).
	 */
	replay = retry_replayable(&(struct retry_facts){ .err = e,
	    .idempotent = exchange_replay_ok(c) && !exchange_still_running(c, e),
	    .held = c->x.fwd_whole,
	    .answered = c->x.resp_started || c->x.head_sent, .complete = c->x.msg_done });
	if ((e == UPE_EMPTY || e == UPE_SEND) && reused && replay) {
		/*
		 * A pooled connection the backend had already closed: not the
		 * backend's fault, so it is neither an attempt nor excluded.
		 */
		c->x.attempts--;
		if (c->x.breq.nexclude > 0 &&
		    c->x.breq.exclude[c->x.breq.nexclude - 1] == slot)
			c->x.breq.nexclude--;
	}
	if (replay && c->x.fail_slot < 0 && e != UPE_EMPTY && e != UPE_SEND) {
		c->x.fail_slot = (int)slot;
		c->x.t_fail = w->loop.now;
		shm_ctr_add(&shm_ctr(w->shm, w->index, slot)->failovers, 1);
	}
	if (replay) {
		c->fwd.rpos = 0;
		if (upstream_attach(c) == 0) {
			client_drive(c);
			return;
		}
		/* only a backend that never got the request is worth waiting for */
		if (e == UPE_CONNECT && exchange_retry_later(c, slot) == 0)
			return;
	}
	if (c->x.head_sent || c->x.resp_started) {
		const char *why = e == UPE_BAD ? "it sent invalid framing" :
		    !c->x.timed_out ? "it closed the connection" :
		    c->x.llm != NULL && c->x.llm->t_first_us == 0 ?
		    "no first event within timeout.first_token" :
		    "no event within timeout.stream_idle";

		if (llm_stream_end(c, why)) {
			c->x.err_event = 1;
			shm_ctr_add(&shm_ctr(w->shm, w->index, slot)->streams_broken, 1);
		}
		client_cut(c);
		return;
	}
	switch (e) {
	case UPE_STATUS:
		client_reply(c, c->x.status, "no backend could answer");
		break;
	case UPE_TIMEOUT:
		client_reply(c, 504, "backend timed out");
		break;
	case UPE_BAD:
		client_reply(c, 502, "backend sent an invalid response");
		break;
	case UPE_SEND:
	case UPE_EMPTY:
		client_reply(c, 502, "backend closed the connection without answering");
		break;
	case UPE_TRUNCATED:
		client_reply(c, 502, "backend stopped in the middle of its answer");
		break;
	case UPE_HELD:
		client_reply(c, 502, "backend failed before its first event");
		break;
	default:
		client_reply(c, 502, "backend could not be reached");
		break;
	}
}

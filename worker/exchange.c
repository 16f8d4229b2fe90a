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

#define LD(p)		atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v)	atomic_store_explicit((p), (v), memory_order_relaxed)

/*
 * The first request of pool qid waiting here, for the other workers to
 * see (DESIGN "Flow control": the table decides who is next): its order
 * key and the epoch at which it last found no backend.
 */
static void
exchange_head_publish(struct worker *w, uint32_t qid)
{
	struct shm_poolq	*q = &w->shm->poolq[w->index][qid];
	struct client		*c;

	TAILQ_FOREACH(c, &w->waitq, qentry)
		if (c->x.qid == qid) {
			ST(&q->stuck, c->x.qstuck);
			atomic_store_explicit(&q->head, c->x.qkey, memory_order_release);
			return;
		}
	atomic_store_explicit(&q->head, 0, memory_order_release);
}

/*
 * Does a request of pool qid in another worker come before key (its key
 * if so, else 0)?  Only
 * one that has not found the pool full since its last release: the
 * others would not take the slot either (another model, say), so they
 * do not hold the queue back.  Ties go to the lower worker.
 */
static uint64_t
exchange_defer(struct worker *w, uint32_t qid, uint64_t key, uint64_t epoch)
{
	struct shm_hdr	*shm = w->shm;
	uint32_t	 j;
	uint64_t	 h;

	for (j = 0; j < shm->max_workers; j++) {
		const struct shm_poolq *q = &shm->poolq[j][qid];

		if (j == w->index)
			continue;
		h = atomic_load_explicit(&q->head, memory_order_acquire);
		if (h == 0 || h > key || (h == key && j > w->index))
			continue;
		if (LD(&shm->workers[j].state) == 0 || LD(&q->stuck) == epoch)
			continue;
		return h;
	}
	return 0;
}

/* Out of the queue: served (a backend took it) or not (answered, gone). */
static void
exchange_dequeue(struct client *c, int served)
{
	struct worker		*w = c->w;
	struct shm_poolq	*q = &w->shm->poolq[w->index][c->x.qid];

	if (!c->x.queued)
		return;
	c->x.queued = 0;
	TAILQ_REMOVE(&w->waitq, c, qentry);
	w->nwait--;
	/* ours first, the host-wide count last: a death between leaves it high, never below zero */
	ST(&q->queued, LD(&q->queued) - 1);
	ST(&q->band_queued[c->x.band], LD(&q->band_queued[c->x.band]) - 1);
	atomic_fetch_sub_explicit(&w->shm->qpool[c->x.qid].queued, 1,
	    memory_order_relaxed);
	if (served) {
		uint64_t us = (w->loop.now - c->x.t_queued) * 1000;

		shm_ctr_add(&q->waits, 1);
		shm_ctr_add(&q->wait_ms, w->loop.now - c->x.t_queued);
		shm_ctr_add(&q->band_admitted[c->x.band], 1);
		shm_ctr_add(&q->wait_hist[shm_lat_bucket(us)], 1);
	}
	flow_dequeue(c, served);
	exchange_queue_publish(w);
	exchange_head_publish(w, c->x.qid);
	if (w->nwait == 0)
		ev_timer_stop(&w->loop, &w->queue_timer);
}

void
exchange_unqueue(struct client *c)
{
	exchange_dequeue(c, 0);
}

void
exchange_slot_freed(struct worker *w, int pool)
{
	uint32_t	qid;

	if (pool < 0)
		return;
	qid = balance_view_qid(&w->view, pool);
	if (LD(&w->shm->qpool[qid].queued) == 0)
		return;
	atomic_fetch_add_explicit(&w->shm->qpool[qid].epoch, 1, memory_order_relaxed);
	if (w->nwait > 0)
		w->queue_kick = 1;	/* the queue runs after this event */
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
 * The queue runs in its order (band, then fair share) whenever a slot
 * may have freed: after one of our requests finished at a backend (that
 * event's end), and every EXCHANGE_QUEUE_TICK_MS while anything waits
 * here (slots free in other workers, load signals change).  A request
 * goes when no other worker holds an earlier one for its pool; one that
 * finds no backend is passed over for the next (another model may have
 * room), up to a few per pool and run.
 */
void
exchange_queue_run(struct worker *w)
{
	struct client	*c, *next;
	uint64_t	 deferred = 0, touched = 0, waited = 0, epoch, h;
	struct {
		uint32_t qid;
		int	 model;
	}		 failed[EXCHANGE_QUEUE_FAILS];
	size_t		 nfailed = 0, i;
	uint32_t	 qid;

	for (c = TAILQ_FIRST(&w->waitq); c != NULL; c = next) {
		next = TAILQ_NEXT(c, qentry);
		qid = c->x.qid;
		if (deferred & (1ULL << qid))
			continue;
		/* one that found nothing for its model speaks for the others of that model */
		for (i = 0; i < nfailed; i++)
			if (failed[i].qid == qid && failed[i].model == c->x.breq.model)
				break;
		if (i < nfailed)
			continue;
		epoch = LD(&w->shm->qpool[qid].epoch);
		if ((h = exchange_defer(w, qid, c->x.qkey, epoch)) != 0) {
			waited |= 1ULL << qid;
			/*
			 * Another worker's request comes first, and its worker
			 * takes it at its next tick.  One it has not taken
			 * within two ticks (waiting all along) is not waited
			 * for any more: it may need what no release frees.
			 */
			if (w->defer_key[qid] != h) {
				w->defer_key[qid] = h;
				w->defer_ms[qid] = w->loop.now;
			}
			if (w->loop.now - w->defer_ms[qid] <= 2 * EXCHANGE_QUEUE_TICK_MS) {
				deferred |= 1ULL << qid;
				continue;
			}
		}
		if (upstream_attach(c) == -1) {
			c->x.qstuck = epoch;
			touched |= 1ULL << qid;
			if (nfailed == EXCHANGE_QUEUE_FAILS) {
				deferred |= 1ULL << qid;	/* enough tries for one run */
				continue;
			}
			failed[nfailed].qid = qid;
			failed[nfailed++].model = c->x.breq.model;
			continue;
		}
		exchange_dequeue(c, 1);
		client_body_resume(c);
		if (exchange_attached(c) == 0)
			client_drive(c);
	}
	for (qid = 0; qid < SHM_POOLS_MAX; qid++)
		if (!(waited & (1ULL << qid)))
			w->defer_key[qid] = 0;	/* the next wait is timed from its start */
	for (qid = 0; touched != 0; qid++, touched >>= 1)
		if (touched & 1)
			exchange_head_publish(w, qid);
}

/* Into the queue, in its order, if the queue of every worker together has room. */
static void
exchange_wait(struct client *c)
{
	struct worker		*w = c->w;
	struct shm_poolq	*q;
	struct client		*o;
	uint64_t		 t;

	if (w->conf->queue.size <= 0 ||
	    exchange_queued_total(w) >= (uint64_t)w->conf->queue.size) {
		/* no room to wait behind the others: a free backend may take it still */
		if (c->x.attempts == 0 && upstream_attach(c) == 0) {
			if (!c->closed)
				exchange_attached(c);
			return;
		}
		shm_ctr_add(&exchange_poolq(c)->rejected, 1);
		client_reply(c, 503, "every backend is busy and the queue is full");
		return;
	}
	c->phase = CP_WAIT;
	c->x.queued = 1;
	c->x.t_queued = w->loop.now;
	c->x.qid = balance_view_qid(&w->view, c->x.pool);
	c->x.qstuck = LD(&w->shm->qpool[c->x.qid].epoch);
	c->x.qkey = flow_enqueue(c);
	TAILQ_FOREACH_REVERSE(o, &w->waitq, clientq, qentry)
		if (o->x.qkey <= c->x.qkey)
			break;
	if (o != NULL)
		TAILQ_INSERT_AFTER(&w->waitq, o, c, qentry);
	else
		TAILQ_INSERT_HEAD(&w->waitq, c, qentry);
	w->nwait++;
	q = &w->shm->poolq[w->index][c->x.qid];
	/* the host-wide count first (see exchange_dequeue()) */
	atomic_fetch_add_explicit(&w->shm->qpool[c->x.qid].queued, 1,
	    memory_order_relaxed);
	ST(&q->queued, LD(&q->queued) + 1);
	ST(&q->band_queued[c->x.band], LD(&q->band_queued[c->x.band]) + 1);
	exchange_queue_publish(w);
	exchange_head_publish(w, c->x.qid);
	t = (uint64_t)w->conf->queue.timeout_ms;
	if (c->x.deadline != 0 && (c->x.deadline <= w->loop.now ||
	    c->x.deadline - w->loop.now < t))
		t = c->x.deadline > w->loop.now ? c->x.deadline - w->loop.now : 0;
	ev_timer_after(&w->loop, &c->timer, t);
	if (!ev_timer_armed(&w->queue_timer))
		ev_timer_after(&w->loop, &w->queue_timer, EXCHANGE_QUEUE_TICK_MS);
}

/*
 * No backend can take the request now.  If that is only because every
 * eligible one is at max_conns (or over its load signals, queue.saturation),
 * wait for one (up to queue.timeout or the request's deadline); otherwise,
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
	exchange_wait(c);
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
	if (flow_admit(c) == -1)
		return;
	c->x.breq.gate = w->conf->queue.saturation && w->conf->queue.size > 0;
	if (w->conf->queue.size > 0 && LD(&w->shm->qpool[balance_view_qid(&w->view,
	    c->x.pool)].queued) > 0) {
		/* others wait for this pool: it takes its place among them */
		exchange_no_backend(c);
		if (c->x.queued)
			exchange_queue_run(w);
		return;
	}
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
		 * backend's fault, so it is neither an attempt nor excluded,
		 * nor a retry the budget counts.
		 */
		c->x.attempts--;
		if (c->x.breq.nexclude > 0 &&
		    c->x.breq.exclude[c->x.breq.nexclude - 1] == slot)
			c->x.breq.nexclude--;
	} else if (replay && e != UPE_CONNECT && !c->x.budget_taken &&
	    exchange_can_move(c) && !flow_retry_take(c))
		/*
		 * The retry budget is spent: the client gets this failure.  A
		 * connect that failed is not counted: the request never
		 * reached a backend, and moving it on costs the fleet nothing.
		 */
		replay = 0;
	c->x.budget_taken = 0;
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

/* Held request bodies: a request's fwd buffer grown within limits.hold and the worker's limits.hold_memory. */
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "worker/worker.h"

#define HOLD_SLACK	128	/* room past the body: chunk framing of a parse step, the last chunk */

/*
 * What limits.hold_memory counts: the memory holding adds, that is a fwd
 * buffer grown past the block every request has anyway (w->fwdsz, which
 * also carries a streamed body).  A body that fits that block costs
 * nothing more to hold, so it is always held; limits.connections bounds
 * those blocks.
 */
static void
hold_publish(struct worker *w)
{
	atomic_store_explicit(&w->shm->workers[w->index].hold_bytes, w->hold_used,
	    memory_order_relaxed);
}

/*
 * Starts holding c's body if limits.hold and the worker's hold memory
 * allow it.  want is the body's size when known (Content-Length), 0 when
 * it is not (chunked: the buffer grows as the body comes).  Returns 1 if
 * the body is held, 0 if it must stream.
 */
int
hold_begin(struct client *c, uint64_t want)
{
	struct worker	*w = c->w;
	size_t		 hold = w->conf->limits.hold;

	c->x.holding = c->x.hold_nomem = c->x.hold_over = 0;
	if (hold == 0 || want > hold)
		return 0;
	c->x.holding = 1;
	if (want > 0 && hold_grow(c, c->x.fwd_head + want + HOLD_SLACK) == -1) {
		c->x.holding = 0;
		return 0;
	}
	return 1;
}

/*
 * Makes fwd hold at least need bytes (0 if it already does), within
 * limits.hold past the head and the worker's hold memory; -1 when either
 * says no (the body then streams).  A chunked body is held in its
 * normalized chunks: its buffer may take twice limits.hold for their
 * framing, and limits.hold itself is held to the decoded bytes
 * (request.c's hold_over).
 */
int
hold_grow(struct client *c, size_t need)
{
	struct worker	*w = c->w;
	size_t		 hold = w->conf->limits.hold, max, ncap;
	char		*nd;

	if (!c->x.holding)
		return -1;
	if (need <= c->fwd.cap)
		return 0;
	max = c->x.fwd_head + (c->x.req_body == BODY_CHUNKED ? 2 * hold : hold) + HOLD_SLACK;
	if (need > max)
		return -1;
	/* a body of known size gets just that; a chunked one grows by doubling */
	if (c->x.req_body == BODY_LENGTH)
		ncap = need;
	else
		for (ncap = c->fwd.cap; ncap < need; ncap *= 2)
			;
	if (ncap > max)
		ncap = max;
	if (w->hold_used - c->x.hold_acct + ncap > w->conf->limits.hold_memory) {
		shm_ctr_add(&w->shm->workers[w->index].hold_refused, 1);
		c->x.hold_nomem = 1;
		return -1;
	}
	if (c->fwd.cap == w->fwdsz) {
		/* the pooled block stays the pool's: copy out of it */
		if ((nd = malloc(ncap)) == NULL)
			return -1;
		memcpy(nd, c->fwd.data, c->fwd.wpos);
		worker_fwd_put(w, c->fwd.data);
	} else if ((nd = realloc(c->fwd.data, ncap)) == NULL)
		return -1;
	c->fwd.data = nd;
	w->hold_used += ncap - c->x.hold_acct;
	c->x.hold_acct = ncap;
	c->fwd.cap = ncap;
	hold_publish(w);
	return 0;
}

/* The body's grown buffer no longer counts (the request is over). */
void
hold_end(struct client *c)
{
	if (c->x.hold_acct != 0) {
		c->w->hold_used -= c->x.hold_acct;
		c->x.hold_acct = 0;
		hold_publish(c->w);
	}
	c->x.holding = 0;
}

/* Gives c's fwd buffer back: to the pool if it is a pooled block, else to malloc. */
void
hold_free_fwd(struct client *c)
{
	hold_end(c);
	if (c->fwd.data == NULL)
		return;
	if (c->fwd.cap == c->w->fwdsz || c->fwd.cap == 0)
		worker_fwd_put(c->w, c->fwd.data);
	else
		free(c->fwd.data);
	memset(&c->fwd, 0, sizeof(c->fwd));
}

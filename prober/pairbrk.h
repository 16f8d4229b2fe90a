/* The (backend, model) pair's breaker: a pure state machine over the workers' summed pair counters. */
#ifndef PROBER_PAIRBRK_H
#define PROBER_PAIRBRK_H

#include <stdint.h>

#include "prober/breaker.h"

/*
 * What one poll reads of a pair, summed over every worker's stripe
 * (shm_pair_sum()): attempts that ended with a whole response, attempts
 * that failed, and the failed runs (each worker's run of failures on the
 * pair, reset by its next success).
 */
struct pairbrk_in {
	uint64_t	 done;
	uint64_t	 fails;
	uint64_t	 consec;
	uint64_t	 now;		/* monotonic ms */
};

/*
 * Simpler than the backend's breaker (prober/breaker.h), on purpose: a
 * pair that fails while its backend answers other models is a model
 * that is broken there (not loaded, out of memory, a bad revision), a
 * slow, persistent condition; no error ratio, no trial tickets, no
 * operator orders.
 *
 * closed: opens when the runs grew by `threshold` past base.  base is
 * the sum of runs when the pair last closed, lowered whenever the sum
 * falls below it: a run a worker left from before (the sum does not
 * forget it until that worker succeeds on the pair) is not held against
 * the pair twice, and with one worker base is 0.
 *
 * open: the bit is set in models_open, the workers send the pair no
 * requests; after timeout_ms it half-opens.
 *
 * half-open: the bit is clear again, so the next requests are the
 * trials (any number: a worker takes no ticket for a pair).  More whole
 * responses than failures since half-opening means some attempt
 * succeeded: closed.  Otherwise, a failure since half-opening: open
 * again for another timeout_ms.  Counting by totals is what the
 * counters allow (there is no per-attempt log) and errs towards
 * reopening: a failure and a success in the same poll count as the
 * failure unless another success came too.
 */
struct pairbrk {
	uint32_t	 state;		/* enum shm_breaker */
	uint64_t	 since;		/* monotonic ms of the last transition */
	uint64_t	 base;		/* closed: runs not held against the pair */
	uint64_t	 done0, fails0;	/* half-open: the totals when it half-opened */
};

/* Start closed (or, isopen != 0, open since in->now), taking in as the baseline. */
void	 pairbrk_init(struct pairbrk *, const struct pairbrk_in *in, int isopen);

/*
 * One poll.  Returns 1 when the state changed (b->state is the new one),
 * 0 otherwise; *why (may be NULL) gets a short reason for the log line.
 */
int	 pairbrk_step(struct pairbrk *, const struct breaker_conf *,
	    const struct pairbrk_in *in, const char **why);

#endif

/* The circuit breaker's state machine: pure functions of counter snapshots and time, no I/O. */
#ifndef PROBER_BREAKER_H
#define PROBER_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"

#define BREAKER_POLL_MS		10	/* the prober reads the counters this often */

/*
 * The error-ratio rule, beside the consecutive-failure rule: a closed
 * breaker also opens when at least BREAKER_RATIO_PCT % of at least
 * BREAKER_RATIO_MIN attempts failed within the last BREAKER_WINDOW_MS.
 * It catches a backend that fails every other request, which never
 * reaches a run of `threshold` failures.  The window is kept as one
 * cumulative sample per BREAKER_WINDOW_MS / BREAKER_WINDOW_SLOTS.
 */
#define BREAKER_RATIO_PCT	50
#define BREAKER_RATIO_MIN	20
#define BREAKER_WINDOW_MS	10000
#define BREAKER_WINDOW_SLOTS	10

/*
 * Half-open, every ticket taken, nothing in flight and no outcome for this
 * long: the trial was lost (its client went away, its worker died), so
 * the tickets are issued again rather than leaving the breaker stuck.
 */
#define BREAKER_LOST_MS		1000

struct breaker_conf {
	uint32_t	 threshold;	/* consecutive failed attempts that open */
	uint64_t	 timeout_ms;	/* open -> half-open */
	uint32_t	 half_open;	/* trial tickets when half-opening */
};

/*
 * One worker's counter stripe for one backend as the prober read it:
 * attempts, failed attempts, its run of failures, and responses that
 * reset that run (1xx-4xx heads: status[1] + ... + status[4]).
 */
struct breaker_stripe {
	uint64_t	 requests;
	uint64_t	 fails;
	uint64_t	 consec;
	uint64_t	 oks;
};

/* Everything one step looks at, read once per poll. */
struct breaker_in {
	const struct breaker_stripe *stripes;	/* [nstripes] */
	uint32_t	 nstripes;		/* <= SHM_WORKERS_MAX */
	int64_t		 inflight;		/* summed over the stripes */
	uint32_t	 tickets;		/* trial tickets left in the table */
	uint32_t	 force;			/* SHM_FORCE_* */
	uint32_t	 force_seq;
	uint64_t	 now;			/* monotonic ms */
};

enum breaker_why {
	BREAKER_WHY_NONE = 0,
	BREAKER_WHY_CONSEC,		/* n consecutive failed requests */
	BREAKER_WHY_RATIO,		/* n of `of` requests failed in the window */
	BREAKER_WHY_TIMEOUT,		/* open long enough: half-open */
	BREAKER_WHY_TRIAL_OK,
	BREAKER_WHY_TRIAL_FAIL,
	BREAKER_WHY_TRIAL_LOST,		/* tickets issued again */
	BREAKER_WHY_FORCE_OPEN,
	BREAKER_WHY_FORCE_CLOSE,
	BREAKER_WHY_RELEASE		/* the operator let go of a forced open */
};

/* What a step decided; the caller publishes it in the table and logs it. */
struct breaker_out {
	int		 changed;	/* state differs from before the step */
	uint32_t	 state;		/* enum shm_breaker, after the step */
	int		 set_tickets;	/* store tickets in the table */
	uint32_t	 tickets;
	int		 opened;	/* a transition into open: count it */
	enum breaker_why why;		/* BREAKER_WHY_NONE: nothing to log */
	uint64_t	 n, of;		/* figures for the log line */
};

/* Private state of one backend's breaker; the table only sees its results. */
struct breaker {
	uint32_t	 state;		/* enum shm_breaker */
	int		 held;		/* an operator's open order is in force */
	uint32_t	 seq;		/* last operator order seen (force_seq) */
	uint64_t	 since;		/* monotonic ms of the last transition */
	uint64_t	 lost_since;	/* half-open: trial looks lost since (0: not) */
	struct breaker_stripe base[SHM_WORKERS_MAX];	/* stripes at the last rebase */
	uint64_t	 win_req[BREAKER_WINDOW_SLOTS];	/* cumulative samples, a ring */
	uint64_t	 win_fail[BREAKER_WINDOW_SLOTS];
	uint64_t	 win_at;	/* when the newest sample was taken */
	unsigned	 win_pos, win_n;
};

/*
 * breaker_init() starts (or restarts) a breaker in state, entered at
 * since (monotonic ms).  forgive != 0 takes the counters of in as the
 * baseline, so what happened before is not held against the backend (a
 * slot that held another backend, a breaker that is not closed);
 * forgive == 0 counts the runs in the stripes as they are (a prober that
 * starts, or restarts, beside workers that already count).  The
 * error-ratio window starts now either way.  It keeps b->seq, so zero
 * the struct before the first call: an operator order seen before stays
 * seen, one given since is applied by the next breaker_step().
 */
void	 breaker_init(struct breaker *b, uint32_t state, uint64_t since,
	    const struct breaker_in *in, int forgive);

/*
 * breaker_step() advances the machine by one poll: operator orders first
 * (a new force_seq), then closed -> open on `threshold` consecutive
 * failures or the error ratio, open -> half-open after timeout_ms (unless
 * held), half-open -> closed on a trial success, -> open on a trial
 * failure.  At most one transition per step.  Fills out and returns
 * out->changed.
 */
int	 breaker_step(struct breaker *b, const struct breaker_conf *conf,
	    const struct breaker_in *in, struct breaker_out *out);

/* The consecutive failures counted since the baseline, summed over stripes. */
uint64_t breaker_consec(const struct breaker *b, const struct breaker_in *in);

/* "closed", "open", "half-open". */
const char *breaker_state_name(uint32_t state);

/*
 * breaker_describe() writes the log line's reason for out ("5 consecutive
 * failed requests") into buf; returns buf.
 */
const char *breaker_describe(const struct breaker_out *out,
	    const struct breaker_conf *conf, char *buf, size_t len);

#endif

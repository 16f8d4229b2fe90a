/* Unit tests of the circuit breaker's state machine (prober/breaker.c): every transition and operator order. */
#include <string.h>

#include <criterion/criterion.h>

#include "prober/breaker.h"

/*
 * A little world: two workers' stripes for one backend, a clock, the
 * table's ticket and order words, and the breaker under test.  The
 * helpers act like workers do: every attempt counts in requests, a
 * failure in fails and in the run, a response head below 500 in oks and
 * ends the run.
 */
#define NW	2

static struct breaker_stripe	st[NW];
static struct breaker		br;
static struct breaker_conf	bc = { .threshold = 5, .timeout_ms = 1000, .half_open = 1 };
static struct breaker_in	in;
static struct breaker_out	out;
static uint64_t			now;
static uint32_t			tickets, force, fseq;

static void
setup(void)
{
	memset(st, 0, sizeof(st));
	memset(&br, 0, sizeof(br));
	memset(&out, 0, sizeof(out));
	bc.threshold = 5;
	bc.timeout_ms = 1000;
	bc.half_open = 1;
	now = 100000;
	tickets = force = fseq = 0;
	in.stripes = st;
	in.nstripes = NW;
	in.inflight = 0;
	in.now = now;
	breaker_init(&br, SHM_BREAKER_CLOSED, now, &in, 1);
}

static void
fail(int w, int n)
{
	while (n-- > 0) {
		st[w].requests++;
		st[w].fails++;
		st[w].consec++;
	}
}

static void
ok(int w, int n)
{
	while (n-- > 0) {
		st[w].requests++;
		st[w].oks++;
		st[w].consec = 0;
	}
}

/* One poll, at now + ms; applies what the prober would publish. */
static int
step(uint64_t ms)
{
	int	changed;

	now += ms;
	in.now = now;
	in.tickets = tickets;
	in.force = force;
	in.force_seq = fseq;
	changed = breaker_step(&br, &bc, &in, &out);
	if (out.set_tickets)
		tickets = out.tickets;
	return changed;
}

static void
order(uint32_t f)
{
	force = f;
	fseq++;
}

/* Drive a fresh breaker to open by consecutive failures. */
static void
to_open(void)
{
	fail(0, 5);
	cr_assert(step(10));
	cr_assert_eq(br.state, SHM_BREAKER_OPEN);
}

static void
to_half_open(void)
{
	to_open();
	cr_assert(step(1000));
	cr_assert_eq(br.state, SHM_BREAKER_HALF_OPEN);
}

TestSuite(breaker, .init = setup);

Test(breaker, closed_below_threshold)
{
	fail(0, 4);
	cr_assert_not(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_CLOSED);
	cr_assert_eq(out.why, BREAKER_WHY_NONE);
	cr_assert_eq(breaker_consec(&br, &in), 4);
}

Test(breaker, opens_at_threshold)
{
	fail(0, 5);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
	cr_assert(out.opened);
	cr_assert_eq(out.why, BREAKER_WHY_CONSEC);
	cr_assert_eq(out.n, 5);
}

Test(breaker, runs_of_workers_add_up)
{
	fail(0, 3);
	fail(1, 2);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
	cr_assert_eq(out.n, 5);
}

Test(breaker, success_ends_the_run)
{
	fail(0, 4);
	ok(0, 1);
	fail(0, 4);
	cr_assert_not(step(10));
	cr_assert_eq(breaker_consec(&br, &in), 4);
	fail(0, 1);
	cr_assert(step(10));
}

Test(breaker, history_before_init_is_forgiven)
{
	fail(0, 4);
	fail(1, 4);
	in.now = now;
	breaker_init(&br, SHM_BREAKER_CLOSED, now, &in, 1);
	fail(0, 4);
	cr_assert_not(step(10));
	cr_assert_eq(breaker_consec(&br, &in), 4);
	/* a worker that reset after the baseline counts its whole new run */
	ok(1, 1);
	fail(1, 1);
	cr_assert(step(10));
	cr_assert_eq(out.n, 5);
}

Test(breaker, start_counts_runs_already_there)
{
	int	i;

	/* a prober that starts after the workers counted: their runs count */
	fail(0, 3);
	fail(1, 1);
	in.now = now;
	breaker_init(&br, SHM_BREAKER_CLOSED, now, &in, 0);
	cr_assert_not(step(10));
	cr_assert_eq(breaker_consec(&br, &in), 4);
	fail(1, 1);
	cr_assert(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_CONSEC);

	/* but old history does not feed the error ratio */
	setup();
	bc.threshold = 1000;
	for (i = 0; i < 20; i++) {
		fail(0, 1);
		ok(0, 1);
	}
	in.now = now;
	breaker_init(&br, SHM_BREAKER_CLOSED, now, &in, 0);
	cr_assert_not(step(10));
	fail(0, 10);
	ok(0, 9);
	cr_assert_not(step(10));	/* 10 of 19 since the start */
	fail(0, 1);
	cr_assert(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_RATIO);
}

Test(breaker, open_waits_for_timeout)
{
	to_open();
	cr_assert_not(step(999));
	cr_assert_eq(br.state, SHM_BREAKER_OPEN);
	cr_assert_eq(out.why, BREAKER_WHY_NONE);
	cr_assert(step(1));
	cr_assert_eq(out.state, SHM_BREAKER_HALF_OPEN);
	cr_assert_eq(out.why, BREAKER_WHY_TIMEOUT);
	cr_assert(out.set_tickets);
	cr_assert_eq(out.tickets, 1);
	cr_assert_not(out.opened);
}

Test(breaker, half_open_tickets_follow_config)
{
	bc.half_open = 3;
	to_half_open();
	cr_assert_eq(tickets, 3);
}

Test(breaker, failures_while_open_are_ignored)
{
	to_open();
	fail(1, 50);		/* requests that were in flight when it opened */
	cr_assert_not(step(500));
	cr_assert(step(500));
	cr_assert_eq(br.state, SHM_BREAKER_HALF_OPEN);
	cr_assert_not(step(10));
	cr_assert_eq(br.state, SHM_BREAKER_HALF_OPEN);
}

Test(breaker, trial_success_closes)
{
	to_half_open();
	tickets = 0;		/* a worker took it */
	ok(1, 1);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_CLOSED);
	cr_assert_eq(out.why, BREAKER_WHY_TRIAL_OK);
	cr_assert(out.set_tickets);
	cr_assert_eq(out.tickets, 0);
	/* stripe 0 still holds the run that opened it: not held against it */
	cr_assert_eq(st[0].consec, 5);
	cr_assert_not(step(10));
	cr_assert_eq(breaker_consec(&br, &in), 0);
	fail(0, 4);
	cr_assert_not(step(10));
	fail(0, 1);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
}

Test(breaker, trial_failure_reopens)
{
	to_half_open();
	tickets = 0;
	fail(1, 1);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
	cr_assert_eq(out.why, BREAKER_WHY_TRIAL_FAIL);
	cr_assert(out.opened);
	cr_assert(out.set_tickets);
	cr_assert_eq(tickets, 0);
	/* another whole timeout */
	cr_assert_not(step(999));
	cr_assert(step(1));
	cr_assert_eq(out.state, SHM_BREAKER_HALF_OPEN);
}

Test(breaker, trial_failure_wins_over_success_in_one_poll)
{
	bc.half_open = 2;
	to_half_open();
	tickets = 0;
	ok(0, 1);
	fail(1, 1);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
}

Test(breaker, trial_failure_after_success_on_one_stripe)
{
	/* the stripe ended its run, then failed again: a failure all the same */
	to_half_open();
	ok(0, 1);
	fail(0, 1);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
}

Test(breaker, half_open_waits_for_a_trial)
{
	to_half_open();
	cr_assert_not(step(10000));
	cr_assert_eq(br.state, SHM_BREAKER_HALF_OPEN);
	cr_assert_eq(out.why, BREAKER_WHY_NONE);
	cr_assert_eq(tickets, 1);
}

Test(breaker, lost_trial_gets_new_tickets)
{
	to_half_open();
	tickets = 0;
	in.inflight = 0;
	cr_assert_not(step(10));
	cr_assert_not(out.set_tickets);
	cr_assert_not(step(BREAKER_LOST_MS - 1));
	cr_assert_not(out.set_tickets);
	cr_assert_not(step(1));
	cr_assert(out.set_tickets);
	cr_assert_eq(out.why, BREAKER_WHY_TRIAL_LOST);
	cr_assert_eq(tickets, 1);
	cr_assert_eq(br.state, SHM_BREAKER_HALF_OPEN);
}

Test(breaker, trial_in_flight_is_not_lost)
{
	to_half_open();
	tickets = 0;
	in.inflight = 1;
	cr_assert_not(step(10));
	cr_assert_not(step(10 * BREAKER_LOST_MS));
	cr_assert_not(out.set_tickets);
	cr_assert_eq(tickets, 0);
}

Test(breaker, ratio_opens)
{
	int	i;

	bc.threshold = 1000;
	for (i = 0; i < 10; i++) {
		fail(0, 1);
		ok(0, 1);
	}
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
	cr_assert_eq(out.why, BREAKER_WHY_RATIO);
	cr_assert_eq(out.n, 10);
	cr_assert_eq(out.of, 20);
}

Test(breaker, ratio_needs_enough_requests)
{
	int	i;

	bc.threshold = 1000;
	for (i = 0; i < 9; i++) {
		fail(0, 1);
		ok(0, 1);
	}
	fail(0, 1);
	cr_assert_not(step(10));	/* 10 of 19 */
}

Test(breaker, ratio_below_half_stays_closed)
{
	int	i;

	bc.threshold = 1000;
	for (i = 0; i < 9; i++)
		fail(0, 1);
	ok(0, 11);
	cr_assert_not(step(10));	/* 9 of 20 */
}

Test(breaker, ratio_window_slides)
{
	int	i;

	bc.threshold = 1000;
	cr_assert_not(step(10));	/* first sample */
	fail(0, 9);
	ok(0, 1);
	/* ten seconds of quiet, one sample a second */
	for (i = 0; i < 11; i++)
		cr_assert_not(step(1000));
	fail(0, 5);
	ok(0, 6);
	cr_assert_not(step(10));	/* 5 of 11 in the window, 14 of 21 in all */
}

Test(breaker, force_open_holds)
{
	order(SHM_FORCE_OPEN);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
	cr_assert_eq(out.why, BREAKER_WHY_FORCE_OPEN);
	cr_assert(out.opened);
	cr_assert_not(step(5000));
	cr_assert_eq(br.state, SHM_BREAKER_OPEN);
	/* released: the timer has run out long ago, so half-open next */
	order(SHM_FORCE_NONE);
	cr_assert_not(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_RELEASE);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_HALF_OPEN);
}

Test(breaker, force_open_while_open_is_no_new_open)
{
	to_open();
	order(SHM_FORCE_OPEN);
	cr_assert_not(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_FORCE_OPEN);
	cr_assert_not(out.opened);
	cr_assert_not(step(5000));
	cr_assert_eq(br.state, SHM_BREAKER_OPEN);
}

Test(breaker, force_open_from_half_open_takes_tickets_back)
{
	to_half_open();
	order(SHM_FORCE_OPEN);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
	cr_assert(out.set_tickets);
	cr_assert_eq(tickets, 0);
}

Test(breaker, release_of_a_short_hold_waits_out_the_timer)
{
	to_open();
	order(SHM_FORCE_OPEN);
	step(10);
	order(SHM_FORCE_NONE);
	cr_assert_not(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_RELEASE);
	cr_assert_not(step(900));
	cr_assert(step(100));
	cr_assert_eq(out.state, SHM_BREAKER_HALF_OPEN);
}

Test(breaker, release_without_hold_is_silent)
{
	order(SHM_FORCE_NONE);
	cr_assert_not(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_NONE);
}

Test(breaker, force_close_from_open)
{
	to_open();
	order(SHM_FORCE_CLOSE);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_CLOSED);
	cr_assert_eq(out.why, BREAKER_WHY_FORCE_CLOSE);
	/* then it follows traffic, the old run forgiven */
	cr_assert_not(step(10));
	fail(0, 4);
	cr_assert_not(step(10));
	fail(0, 1);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_OPEN);
}

Test(breaker, force_close_from_half_open)
{
	to_half_open();
	order(SHM_FORCE_CLOSE);
	cr_assert(step(10));
	cr_assert_eq(out.state, SHM_BREAKER_CLOSED);
	cr_assert(out.set_tickets);
	cr_assert_eq(tickets, 0);
}

Test(breaker, force_close_when_closed_forgives)
{
	fail(0, 4);
	order(SHM_FORCE_CLOSE);
	cr_assert_not(step(10));
	cr_assert_eq(out.why, BREAKER_WHY_FORCE_CLOSE);
	fail(0, 4);
	cr_assert_not(step(10));
}

Test(breaker, force_close_releases_a_hold)
{
	order(SHM_FORCE_OPEN);
	step(10);
	order(SHM_FORCE_CLOSE);
	cr_assert(step(10));
	cr_assert_eq(br.state, SHM_BREAKER_CLOSED);
	cr_assert_not(br.held);
}

Test(breaker, an_order_is_applied_once)
{
	order(SHM_FORCE_CLOSE);
	step(10);
	fail(0, 5);
	cr_assert(step(10));		/* the standing close order is not re-applied */
	cr_assert_eq(br.state, SHM_BREAKER_OPEN);
	order(SHM_FORCE_CLOSE);		/* the same order again: a new seq */
	cr_assert(step(10));
	cr_assert_eq(br.state, SHM_BREAKER_CLOSED);
}

Test(breaker, standing_order_applies_after_restart)
{
	force = SHM_FORCE_OPEN;
	fseq = 7;
	cr_assert(step(10));
	cr_assert(br.held);
	/* a restarted prober starts from zero: the standing order is seen again */
	memset(&br, 0, sizeof(br));
	in.now = now;
	breaker_init(&br, SHM_BREAKER_OPEN, now, &in, 1);
	cr_assert_not(step(10));
	cr_assert_not(out.opened);
	cr_assert(br.held);
	cr_assert_not(step(5000));
	cr_assert_eq(br.state, SHM_BREAKER_OPEN);
}

Test(breaker, new_backend_in_slot_drops_the_hold)
{
	/* breaker_init() keeps seq: an order already seen is not replayed */
	order(SHM_FORCE_OPEN);
	step(10);
	in.now = now;
	breaker_init(&br, SHM_BREAKER_CLOSED, now, &in, 1);
	cr_assert_not(br.held);
	cr_assert_not(step(5000));
	cr_assert_eq(br.state, SHM_BREAKER_CLOSED);
}

Test(breaker, describe)
{
	char	buf[128];

	fail(0, 5);
	step(10);
	cr_assert_str_eq(breaker_describe(&out, &bc, buf, sizeof(buf)),
	    "5 consecutive failed requests");
	step(1000);
	cr_assert_str_eq(breaker_describe(&out, &bc, buf, sizeof(buf)),
	    "1 trial request after 1000 ms open");
	cr_assert_str_eq(breaker_state_name(SHM_BREAKER_HALF_OPEN), "half-open");
	cr_assert_str_eq(breaker_state_name(SHM_BREAKER_OPEN), "open");
	cr_assert_str_eq(breaker_state_name(SHM_BREAKER_CLOSED), "closed");
}

/* The circuit breaker's state machine of prober/breaker.h, kept free of I/O so it can be tested alone. */
#include <stdio.h>
#include <string.h>

#include "prober/breaker.h"

static uint64_t
breaker_delta(uint64_t now, uint64_t then)
{
	/* counters only grow; a smaller value is a stripe that started over */
	return now > then ? now - then : 0;
}

static void
breaker_sums(const struct breaker *b, const struct breaker_in *in,
    uint64_t *req, uint64_t *fails, uint64_t *oks)
{
	uint32_t	i;

	*req = *fails = *oks = 0;
	for (i = 0; i < in->nstripes && i < SHM_WORKERS_MAX; i++) {
		*req += breaker_delta(in->stripes[i].requests, b->base[i].requests);
		*fails += breaker_delta(in->stripes[i].fails, b->base[i].fails);
		*oks += breaker_delta(in->stripes[i].oks, b->base[i].oks);
	}
}

/* Restart the error-ratio window at what the counters say now. */
static void
breaker_window_reset(struct breaker *b, const struct breaker_in *in)
{
	uint64_t	req, fails, oks;

	breaker_sums(b, in, &req, &fails, &oks);
	b->win_req[0] = req;
	b->win_fail[0] = fails;
	b->win_n = 1;
	b->win_pos = 1;
	b->win_at = in->now;
}

/* Take the counters of in as the new baseline. */
static void
breaker_rebase(struct breaker *b, const struct breaker_in *in)
{
	uint32_t	i;

	memset(b->base, 0, sizeof(b->base));
	for (i = 0; i < in->nstripes && i < SHM_WORKERS_MAX; i++)
		b->base[i] = in->stripes[i];
	breaker_window_reset(b, in);
	b->lost_since = 0;
}

void
breaker_init(struct breaker *b, uint32_t state, uint64_t since,
    const struct breaker_in *in, int forgive)
{
	b->state = state;
	b->held = 0;
	b->since = since;
	if (forgive)
		breaker_rebase(b, in);
	else {
		memset(b->base, 0, sizeof(b->base));
		breaker_window_reset(b, in);
		b->lost_since = 0;
	}
}

/*
 * A stripe's run of failures only counts from the baseline on: a stripe
 * that saw a success since (oks moved) was reset by its worker, so all of
 * its run is new; otherwise only what it added is.  This is what lets a
 * closed breaker forget the failures that opened it.
 */
uint64_t
breaker_consec(const struct breaker *b, const struct breaker_in *in)
{
	uint64_t	sum = 0;
	uint32_t	i;

	for (i = 0; i < in->nstripes && i < SHM_WORKERS_MAX; i++) {
		const struct breaker_stripe *s = &in->stripes[i];

		if (s->oks != b->base[i].oks)
			sum += s->consec;
		else
			sum += breaker_delta(s->consec, b->base[i].consec);
	}
	return sum;
}

static void
breaker_go(struct breaker *b, const struct breaker_in *in,
    struct breaker_out *out, uint32_t state, enum breaker_why why)
{
	out->changed = state != b->state;
	out->opened = out->changed && state == SHM_BREAKER_OPEN;
	out->why = why;
	if (b->state == SHM_BREAKER_HALF_OPEN || state == SHM_BREAKER_HALF_OPEN)
		out->set_tickets = 1;
	if (out->changed)
		b->since = in->now;
	b->state = state;
	out->state = state;
}

/* Slide the error-ratio window; 1 if the ratio rule says open. */
static int
breaker_ratio(struct breaker *b, const struct breaker_in *in,
    struct breaker_out *out)
{
	uint64_t	req, fails, oks, dreq, dfail;
	unsigned	oldest;

	breaker_sums(b, in, &req, &fails, &oks);
	if (in->now - b->win_at >= BREAKER_WINDOW_MS / BREAKER_WINDOW_SLOTS) {
		b->win_req[b->win_pos] = req;
		b->win_fail[b->win_pos] = fails;
		b->win_pos = (b->win_pos + 1) % BREAKER_WINDOW_SLOTS;
		if (b->win_n < BREAKER_WINDOW_SLOTS)
			b->win_n++;
		b->win_at = in->now;
	}
	oldest = (b->win_pos + BREAKER_WINDOW_SLOTS - b->win_n) %
	    BREAKER_WINDOW_SLOTS;
	dreq = breaker_delta(req, b->win_req[oldest]);
	dfail = breaker_delta(fails, b->win_fail[oldest]);
	if (dreq < BREAKER_RATIO_MIN || dfail * 100 < dreq * BREAKER_RATIO_PCT)
		return 0;
	out->n = dfail;
	out->of = dreq;
	return 1;
}

/* A new operator order: applied at once, whatever the traffic says. */
static void
breaker_order(struct breaker *b, const struct breaker_in *in,
    struct breaker_out *out)
{
	b->seq = in->force_seq;
	switch (in->force) {
	case SHM_FORCE_OPEN:
		b->held = 1;
		breaker_go(b, in, out, SHM_BREAKER_OPEN, BREAKER_WHY_FORCE_OPEN);
		break;
	case SHM_FORCE_CLOSE:
		/* "close now": the failures that led here are forgiven too */
		b->held = 0;
		breaker_go(b, in, out, SHM_BREAKER_CLOSED, BREAKER_WHY_FORCE_CLOSE);
		breaker_rebase(b, in);
		break;
	default:
		/*
		 * Released: follow traffic from here.  An open breaker keeps
		 * its timer, so one held longer than the timeout half-opens
		 * on the next step.
		 */
		if (b->held) {
			b->held = 0;
			out->why = BREAKER_WHY_RELEASE;
		}
		break;
	}
}

int
breaker_step(struct breaker *b, const struct breaker_conf *conf,
    const struct breaker_in *in, struct breaker_out *out)
{
	uint64_t	req, fails, oks, run;

	memset(out, 0, sizeof(*out));
	out->state = b->state;
	out->tickets = 0;

	if (in->force_seq != b->seq) {
		breaker_order(b, in, out);
		return out->changed;
	}

	switch (b->state) {
	case SHM_BREAKER_CLOSED:
		run = breaker_consec(b, in);
		if (run >= conf->threshold) {
			out->n = run;
			breaker_go(b, in, out, SHM_BREAKER_OPEN, BREAKER_WHY_CONSEC);
		} else if (breaker_ratio(b, in, out))
			breaker_go(b, in, out, SHM_BREAKER_OPEN, BREAKER_WHY_RATIO);
		break;
	case SHM_BREAKER_OPEN:
		if (b->held || in->now - b->since < conf->timeout_ms)
			break;
		out->n = in->now - b->since;
		breaker_go(b, in, out, SHM_BREAKER_HALF_OPEN, BREAKER_WHY_TIMEOUT);
		out->tickets = conf->half_open;
		/* trials are judged on what happens from now on */
		breaker_rebase(b, in);
		break;
	case SHM_BREAKER_HALF_OPEN:
		breaker_sums(b, in, &req, &fails, &oks);
		if (fails > 0 || breaker_consec(b, in) > 0) {
			/* a failure weighs more than a success seen in the same poll */
			breaker_go(b, in, out, SHM_BREAKER_OPEN, BREAKER_WHY_TRIAL_FAIL);
		} else if (oks > 0) {
			breaker_go(b, in, out, SHM_BREAKER_CLOSED, BREAKER_WHY_TRIAL_OK);
			breaker_rebase(b, in);
		} else if (in->tickets == 0 && in->inflight <= 0) {
			if (b->lost_since == 0)
				b->lost_since = in->now;
			else if (in->now - b->lost_since >= BREAKER_LOST_MS) {
				b->lost_since = 0;
				out->set_tickets = 1;
				out->tickets = conf->half_open;
				out->why = BREAKER_WHY_TRIAL_LOST;
			}
		} else
			b->lost_since = 0;
		break;
	}
	return out->changed;
}

const char *
breaker_state_name(uint32_t state)
{
	switch (state) {
	case SHM_BREAKER_CLOSED:
		return "closed";
	case SHM_BREAKER_OPEN:
		return "open";
	case SHM_BREAKER_HALF_OPEN:
		return "half-open";
	}
	return "?";
}

const char *
breaker_describe(const struct breaker_out *out, const struct breaker_conf *conf,
    char *buf, size_t len)
{
	switch (out->why) {
	case BREAKER_WHY_NONE:
		snprintf(buf, len, "no change");
		break;
	case BREAKER_WHY_CONSEC:
		snprintf(buf, len, "%llu consecutive failed requests",
		    (unsigned long long)out->n);
		break;
	case BREAKER_WHY_RATIO:
		snprintf(buf, len, "%llu of %llu requests failed within %d s",
		    (unsigned long long)out->n, (unsigned long long)out->of,
		    BREAKER_WINDOW_MS / 1000);
		break;
	case BREAKER_WHY_TIMEOUT:
		snprintf(buf, len, "%u trial request%s after %llu ms open",
		    conf->half_open, conf->half_open == 1 ? "" : "s",
		    (unsigned long long)out->n);
		break;
	case BREAKER_WHY_TRIAL_OK:
		snprintf(buf, len, "trial request succeeded");
		break;
	case BREAKER_WHY_TRIAL_FAIL:
		snprintf(buf, len, "trial request failed");
		break;
	case BREAKER_WHY_TRIAL_LOST:
		snprintf(buf, len, "trial request lost, tickets issued again");
		break;
	case BREAKER_WHY_FORCE_OPEN:
		snprintf(buf, len, "forced open by the operator");
		break;
	case BREAKER_WHY_FORCE_CLOSE:
		snprintf(buf, len, "closed by the operator");
		break;
	case BREAKER_WHY_RELEASE:
		snprintf(buf, len, "released by the operator");
		break;
	}
	return buf;
}

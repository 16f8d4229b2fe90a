/* The admin API's failover and circuit-breaker drills, run on live traffic inside one worker. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>
#include <jansson.h>

#include "lib/log.h"
#include "worker/admin.h"
#include "worker/mctl.h"
#include "worker/worker.h"

/*
 * What a drill does.  The breaker is the prober's and orders for it are
 * the master's (DESIGN "One control plane"), so the drill asks the
 * master, over this worker's control link, to force the drilled
 * backends' breakers open ("breaker open NAME"); the prober applies the
 * order within its 10 ms poll and every worker stops picking them.
 * After duration_ms the drill puts each breaker back as it found it
 * ("breaker close" if it was closed, "breaker release" otherwise; one
 * an operator held open stays held) and measures what really happened:
 *
 *   failover_time_ms   from sending the order to the table showing the
 *                      breaker open (what every worker's balancer reads);
 *   requests_*         every worker's counter stripes, from then to the
 *                      end of the window: attempts to the pool, to the
 *                      drilled backends (0 when the failover held), and
 *                      failures (5xx or no answer) in the pool;
 *   recovery_*         successful: the breaker is no longer open and
 *                      the balancer may pick the backend again; time:
 *                      from the restore order to the first request any
 *                      worker sends it (polled every 10 ms), null when
 *                      none came within the recovery window;
 *   breaker states     read from the table (the real breaker).
 *
 * The worker never waits for the master: each order is a callback on
 * the loop, with mctl's timeout.  A drill that would leave the pool
 * without any eligible backend is not run (live requests would get 503).
 * If the drill's client goes away, the breakers are put back at once.
 */

#define DRILL_TICK_MS		50
#define DRILL_RECOVER_TICK_MS	10
#define DRILL_OPEN_TICK_MS	2
#define DRILL_OPEN_WAIT_MS	2000	/* the prober applies an order within ~10 ms */
#define DRILL_DEFAULT_MS	1000
#define DRILL_MAX_MS		60000

enum drill_kind { DRILL_FAILOVER, DRILL_BREAKER };
enum drill_phase { DP_IDLE = 0, DP_ORDER, DP_OPENING, DP_WINDOW, DP_RESTORE,
	DP_RECOVER };

struct drill_x {
	uint32_t	 slot;
	char		 name[SHM_NAME_MAX];
	uint32_t	 breaker0;	/* the table's breaker when we started */
	uint32_t	 force0;	/* the operator's order then (SHM_FORCE_*) */
};

static struct drill {
	enum drill_phase phase;
	enum drill_kind	 kind;
	struct worker	*w;
	struct adminconn	*c;
	struct ev_timer	 timer;
	char		 target[SHM_NAME_MAX];
	int		 is_pool, simulate;
	uint32_t	 pool;
	struct drill_x	*x;
	size_t		 nx;
	uint32_t	*mem;		/* pool members at the start */
	uint64_t	*req0, *bad0;	/* our stripe at the start, per member */
	size_t		 nmem;
	uint64_t	 duration_ms, recover_ms, deadline;
	uint64_t	 t0_us, trestore_us;
	int		 backup;
	double		 failover_ms;
	int		 saw_open, reapplied;
	uint64_t	 reqs, to_x, bad;	/* measured over the window */
	uint64_t	 xreq_restore;
	int		 eligible_after, recovered;
	double		 recovery_ms;
	int		 replies;	/* master answers still awaited */
	int		 order_failed;
	char		 order_error[256];
	int		 order_status;	/* 503/504 when the master did not answer */
	int		 opened;	/* every drilled breaker was seen open */
} dr;

static double
round3(double x)
{
	return (double)(long long)(x * 1000.0 + 0.5) / 1000.0;
}

int
drill_busy(void)
{
	return dr.phase != DP_IDLE;
}

static void	drill_put_back(void);
static void	drill_restored(void);

static void
drill_free(void)
{
	free(dr.x);
	free(dr.mem);
	free(dr.req0);
	free(dr.bad0);
	memset(&dr, 0, sizeof(dr));
}

static int
drill_same(struct worker *w, const struct drill_x *x)
{
	return w->view.be[x->slot].inuse &&
	    strcmp(w->wb[x->slot].name, x->name) == 0;
}

/*
 * For the balancer's pick with the drilled backends out, before any order
 * is sent: mark them disabled in this worker's view for one pick, then
 * put the view back as the table has it.
 */
static void
drill_view_out(int out)
{
	struct shm_desc	 d;
	size_t		 i;

	for (i = 0; i < dr.nx; i++) {
		struct wbe *b = &dr.w->view.be[dr.x[i].slot];

		if (!drill_same(dr.w, &dr.x[i]))
			continue;
		if (out)
			b->flags |= SHM_F_DISABLED;
		else {
			shm_desc_read(shm_slot(dr.w->shm, dr.x[i].slot), &d);
			b->flags = (b->flags & ~(uint32_t)SHM_F_DISABLED) |
			    (d.flags & SHM_F_DISABLED);
		}
		balance_slot_changed(&dr.w->view, dr.x[i].slot);
	}
}

static uint32_t
drill_breaker_of(uint32_t slot)
{
	return atomic_load_explicit(&shm_slot(dr.w->shm, slot)->breaker,
	    memory_order_relaxed);
}

static uint32_t
drill_force_of(uint32_t slot)
{
	return atomic_load_explicit(&shm_slot(dr.w->shm, slot)->force_breaker,
	    memory_order_relaxed);
}

/* Every worker's stripes: the breaker is shared, so is the drill's scope. */
static uint64_t
stripe_req(uint32_t slot)
{
	uint64_t	s = 0;
	uint32_t	k;

	for (k = 0; k < dr.w->shm->max_workers; k++)
		s += atomic_load_explicit(&shm_ctr(dr.w->shm, k, slot)->requests,
		    memory_order_relaxed);
	return s;
}

static uint64_t
stripe_bad(uint32_t slot)
{
	/* a worker counts a 5xx answer and an unanswered attempt as a fail */
	uint64_t	s = 0;
	uint32_t	k;

	for (k = 0; k < dr.w->shm->max_workers; k++)
		s += atomic_load_explicit(&shm_ctr(dr.w->shm, k, slot)->fails,
		    memory_order_relaxed);
	return s;
}

static uint64_t
drill_xreq(void)
{
	uint64_t	 s = 0;
	size_t		 i;

	for (i = 0; i < dr.nx; i++)
		s += stripe_req(dr.x[i].slot);
	return s;
}

/*
 * One state for the drilled set: the backend's, or "mixed" for a pool that
 * disagrees.
 */
static json_t *
drill_state_json(int initial)
{
	uint32_t	 s0, s;
	size_t		 i;

	if (dr.nx == 0)
		return json_null();
	s0 = initial ? dr.x[0].breaker0 : drill_breaker_of(dr.x[0].slot);
	for (i = 1; i < dr.nx; i++) {
		s = initial ? dr.x[i].breaker0 : drill_breaker_of(dr.x[i].slot);
		if (s != s0)
			return json_string("mixed");
	}
	return json_string(admin_breaker_name(s0));
}

static json_t *
drill_count(uint64_t v, int measured)
{
	return measured ? json_integer((json_int_t)v) : json_null();
}

/* The answer of the drill in dr, as measured. */
static json_t *
drill_answer(void)
{
	struct worker	*w = dr.w;
	json_t		*root, *o, *names;
	int		 ran = dr.simulate && dr.backup >= 0;
	double		 total_ms, window_ms;
	const char	*bname = dr.backup >= 0 ? w->wb[dr.backup].name : NULL;
	size_t		 i;

	total_ms = round3((double)((shm_mono_ns() / 1000) - dr.t0_us) / 1000.0);
	window_ms = dr.trestore_us > dr.t0_us ?
	    round3((double)(dr.trestore_us - dr.t0_us) / 1000.0) : 0.0;
	root = json_object();
	o = json_object();
	if (dr.kind == DRILL_FAILOVER) {
		json_object_set_new(root, "failover_test", o);
		json_object_set_new(o, "primary_backend", json_string(dr.target));
		json_object_set_new(o, "backup_backend",
		    bname ? json_string(bname) : json_null());
		json_object_set_new(o, "backup_is_standby", dr.backup >= 0 ?
		    json_boolean(w->view.be[dr.backup].flags & SHM_F_BACKUP) :
		    json_null());
		json_object_set_new(o, "failure_simulation",
		    json_boolean(dr.simulate));
		json_object_set_new(o, "failover_triggered",
		    json_boolean(ran && dr.opened));
		json_object_set_new(o, "failover_time_ms", dr.backup >= 0 ?
		    json_real(round3(dr.failover_ms)) : json_null());
		json_object_set_new(o, "requests_during_failover",
		    drill_count(dr.reqs, ran));
		json_object_set_new(o, "requests_to_primary",
		    drill_count(dr.to_x, ran));
		json_object_set_new(o, "requests_lost", drill_count(dr.bad, ran));
		json_object_set_new(o, "recovery_successful", ran ?
		    json_boolean(dr.eligible_after) : json_null());
		json_object_set_new(o, "recovery_time_ms", ran && dr.recovered ?
		    json_real(round3(dr.recovery_ms)) : json_null());
		json_object_set_new(o, "total_downtime_ms", ran ?
		    json_real(round3(dr.failover_ms)) : json_null());
		json_object_set_new(o, "primary_breaker_state",
		    drill_state_json(0));
	} else {
		json_object_set_new(root, "circuit_breaker_test", o);
		json_object_set_new(o, "backend", json_string(dr.target));
		if (dr.is_pool) {
			names = json_array();
			for (i = 0; i < dr.nx; i++)
				json_array_append_new(names,
				    json_string(dr.x[i].name));
			json_object_set_new(o, "backends", names);
		}
		json_object_set_new(o, "test_type", json_string(dr.simulate ?
		    "failure_simulation" : "state_check"));
		json_object_set_new(o, "initial_state", drill_state_json(1));
		json_object_set_new(o, "failure_threshold",
		    json_integer(w->conf->breaker.threshold));
		json_object_set_new(o, "simulated_failures", json_null());
		json_object_set_new(o, "drill_state", ran && dr.opened ?
		    json_string("open") : json_null());
		json_object_set_new(o, "circuit_breaker_triggered",
		    json_boolean(dr.saw_open));
		json_object_set_new(o, "new_state", drill_state_json(0));
		json_object_set_new(o, "failover_activated",
		    json_boolean(ran && dr.to_x == 0));
		json_object_set_new(o, "backup_backend",
		    bname ? json_string(bname) : json_null());
		json_object_set_new(o, "failover_time_ms", dr.backup >= 0 ?
		    json_real(round3(dr.failover_ms)) : json_null());
		json_object_set_new(o, "requests_during_test",
		    drill_count(dr.reqs, ran));
		json_object_set_new(o, "requests_to_backend",
		    drill_count(dr.to_x, ran));
		json_object_set_new(o, "requests_failed", drill_count(dr.bad, ran));
		json_object_set_new(o, "recovery_successful", ran ?
		    json_boolean(dr.eligible_after) : json_null());
		json_object_set_new(o, "recovery_time_ms", ran && dr.recovered ?
		    json_real(round3(dr.recovery_ms)) : json_null());
		json_object_set_new(o, "breaker_timeout_ms",
		    json_integer(w->conf->breaker.timeout_ms));
	}
	json_object_set_new(o, "test_duration_ms", json_real(total_ms));
	json_object_set_new(o, "drill_window_ms", json_real(ran ? window_ms : 0.0));
	json_object_set_new(o, "scope", json_string("router"));
	json_object_set_new(o, "worker", json_integer(w->index));
	json_object_set_new(o, "ordered_by", json_string("master"));
	if (!dr.simulate)
		json_object_set_new(o, "note", json_string(
		    "simulate_failure is false: nothing was taken out; "
		    "backup_backend is the balancer's pick with it out"));
	else if (dr.backup < 0)
		json_object_set_new(o, "note", json_string(
		    "no other backend of the pool is eligible: the drill was "
		    "not run, live requests would have been refused"));
	else if (!dr.opened)
		json_object_set_new(o, "note", json_string(
		    "the breaker was not seen open in time: nothing was "
		    "measured, the breakers were put back"));
	else if (dr.kind == DRILL_FAILOVER)
		json_object_set_new(o, "note", json_string(
		    "the primary's real breaker was forced open through the "
		    "master for the window, so no worker picked it; "
		    "failover_time_ms is from the order to the breaker open in "
		    "the table; requests are every worker's attempts in the pool "
		    "during the window; requests_lost counts 5xx and unanswered "
		    "attempts; recovery_time_ms is the time from putting the "
		    "breaker back to the primary's first request, null if none "
		    "came within the recovery window (no traffic); "
		    "total_downtime_ms is the time with no backend picked"));
	else
		json_object_set_new(o, "note", json_string(
		    "the real breaker was forced open through the master (the "
		    "prober applies orders and stays its only writer) for the "
		    "window, then put back as it was; no failure was injected, "
		    "so simulated_failures is null; requests are every worker's "
		    "attempts during the window; recovery_time_ms is the time "
		    "to the backend's first request after the window (null: no "
		    "traffic came)"));
	return root;
}

static void
drill_finish(void)
{
	struct admin_resp	 r;
	struct adminconn	*c = dr.c;

	ev_timer_stop(&dr.w->loop, &dr.timer);
	mctl_cancel(&dr);
	memset(&r, 0, sizeof(r));
	if (dr.order_failed && !dr.opened) {
		/* the master refused or did not answer: say so, as a write would */
		json_t *rep = dr.order_status == 0 ? json_pack("{s:b, s:s}", "ok", 0,
		    "error", dr.order_error) : NULL;

		(void)admin_master_error(rep, dr.order_status, &r);
		json_decref(rep);
	} else {
		r.status = 200;
		r.json = drill_answer();
	}
	log_info("admin: drill on %s done", dr.target);
	if (c != NULL) {
		int cl = adminconn_closing(c);

		if (admin_write(adminconn_out(c), &r, 0, cl) == -1) {
			memset(&r, 0, sizeof(r));
			admin_error(&r, 500, "answer too large for memory");
			(void)admin_write(adminconn_out(c), &r, 0, cl);
		}
	}
	json_decref(r.json);
	drill_free();
	if (c != NULL)
		adminconn_done(c);
}

/* One answer of the master to one of our orders. */
static void
drill_reply(void *arg, json_t *reply, int status)
{
	const char	*e;

	if (reply == NULL || !json_is_true(json_object_get(reply, "ok"))) {
		dr.order_failed = 1;
		dr.order_status = reply == NULL ? status : 0;
		e = reply != NULL ? json_string_value(json_object_get(reply,
		    "error")) : NULL;
		strlcpy(dr.order_error, e != NULL ? e : "order refused",
		    sizeof(dr.order_error));
	}
	if (--dr.replies > 0)
		return;
	if (dr.phase == DP_ORDER) {
		if (dr.order_failed) {
			drill_put_back();
			return;
		}
		dr.phase = DP_OPENING;
		dr.deadline = dr.w->loop.now + DRILL_OPEN_WAIT_MS;
		ev_timer_after(&dr.w->loop, &dr.timer, 0);
	} else if (dr.phase == DP_RESTORE)
		drill_restored();
}

/* Send one order per drilled backend; drill_reply() counts the answers. */
static void
drill_orders(int restore)
{
	const char	*words[3];
	size_t		 i;

	dr.replies = 0;
	for (i = 0; i < dr.nx; i++) {
		words[0] = "breaker";
		if (!restore)
			words[1] = "open";
		else if (dr.x[i].force0 == SHM_FORCE_OPEN)
			continue;	/* an operator holds it open: it stays so */
		else if (dr.x[i].breaker0 == SHM_BREAKER_CLOSED)
			words[1] = "close";
		else
			words[1] = "release";
		words[2] = dr.x[i].name;
		if (mctl_send(words, 3, drill_reply, &dr) == -1) {
			dr.order_failed = 1;
			dr.order_status = 503;
			continue;
		}
		dr.replies++;
	}
}

/* The window is over (or the client left, or an order failed): put the breakers back. */
static void
drill_put_back(void)
{
	size_t	 i;

	ev_timer_stop(&dr.w->loop, &dr.timer);
	if (dr.phase == DP_WINDOW) {
		for (i = 0; i < dr.nmem; i++) {
			uint32_t	s = dr.mem[i];
			uint64_t	rq = stripe_req(s) - dr.req0[i];
			size_t		k;

			dr.reqs += rq;
			dr.bad += stripe_bad(s) - dr.bad0[i];
			for (k = 0; k < dr.nx; k++)
				if (dr.x[k].slot == s)
					dr.to_x += rq;
		}
	}
	dr.phase = DP_RESTORE;
	dr.trestore_us = (shm_mono_ns() / 1000);
	dr.xreq_restore = drill_xreq();
	drill_orders(1);
	if (dr.replies == 0)
		drill_restored();
}

/* The master took the restore orders: watch for the first request again. */
static void
drill_restored(void)
{
	if (dr.c == NULL || !dr.opened) {
		drill_finish();
		return;
	}
	dr.phase = DP_RECOVER;
	dr.deadline = dr.w->loop.now + dr.recover_ms;
	ev_timer_after(&dr.w->loop, &dr.timer, DRILL_RECOVER_TICK_MS);
}

/* Every drilled backend is eligible again (its breaker no longer open). */
static int
drill_back(void)
{
	size_t	i;

	for (i = 0; i < dr.nx; i++)
		if (!drill_same(dr.w, &dr.x[i]) ||
		    drill_breaker_of(dr.x[i].slot) == SHM_BREAKER_OPEN ||
		    !balance_eligible(&dr.w->view, dr.x[i].slot))
			return 0;
	return 1;
}

static void
drill_tick(struct ev_loop *l, struct ev_timer *t)
{
	size_t	i;
	int	all = 1;

	switch (dr.phase) {
	case DP_OPENING:
		for (i = 0; i < dr.nx; i++)
			if (drill_breaker_of(dr.x[i].slot) != SHM_BREAKER_OPEN)
				all = 0;
		if (!all) {
			if (l->now >= dr.deadline) {
				drill_put_back();
				return;
			}
			ev_timer_after(l, t, DRILL_OPEN_TICK_MS);
			return;
		}
		/* open in the table: no worker picks them from now on */
		dr.opened = dr.saw_open = 1;
		dr.failover_ms = (double)((shm_mono_ns() / 1000) - dr.t0_us) / 1000.0;
		for (i = 0; i < dr.nmem; i++) {
			dr.req0[i] = stripe_req(dr.mem[i]);
			dr.bad0[i] = stripe_bad(dr.mem[i]);
		}
		dr.phase = DP_WINDOW;
		dr.deadline = l->now + dr.duration_ms;
		ev_timer_after(l, t, dr.duration_ms < DRILL_TICK_MS ?
		    dr.duration_ms : DRILL_TICK_MS);
		return;
	case DP_WINDOW:
		if (l->now < dr.deadline) {
			ev_timer_after(l, t, dr.deadline - l->now < DRILL_TICK_MS ?
			    dr.deadline - l->now : DRILL_TICK_MS);
			return;
		}
		drill_put_back();
		return;
	case DP_RECOVER:
		if (!dr.eligible_after && drill_back())
			dr.eligible_after = 1;
		if (dr.eligible_after && drill_xreq() > dr.xreq_restore) {
			dr.recovered = 1;
			dr.recovery_ms = (double)((shm_mono_ns() / 1000) -
			    dr.trestore_us) / 1000.0;
			drill_finish();
			return;
		}
		if (l->now >= dr.deadline) {
			drill_finish();
			return;
		}
		ev_timer_after(l, t, DRILL_RECOVER_TICK_MS);
		return;
	default:
		return;
	}
}

/* The slot of the named backend in this worker's view, or -1. */
static int
drill_find(struct worker *w, const char *name)
{
	uint32_t	i;

	for (i = 0; i < w->shm->max_backends; i++)
		if (w->view.be[i].inuse && strcmp(w->wb[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int
drill_add_x(uint32_t slot)
{
	struct drill_x	*nx;

	if ((nx = reallocarray(dr.x, dr.nx + 1, sizeof(*dr.x))) == NULL)
		return -1;
	dr.x = nx;
	memset(&dr.x[dr.nx], 0, sizeof(dr.x[dr.nx]));
	dr.x[dr.nx].slot = slot;
	strlcpy(dr.x[dr.nx].name, dr.w->wb[slot].name, sizeof(dr.x[dr.nx].name));
	dr.x[dr.nx].breaker0 = drill_breaker_of(slot);
	dr.x[dr.nx].force0 = drill_force_of(slot);
	dr.nx++;
	return 0;
}

/*
 * Common start of both drills: body fields name (a backend, or for the
 * breaker drill a pool), simulate_failure and duration_ms.  Returns 0
 * with r filled (an error, or an answer that needs no window) or 1 with
 * the drill running.
 */
static int
drill_start(struct worker *w, struct adminconn *c, enum drill_kind kind,
    json_t *body, const char *field, struct admin_resp *r)
{
	json_t		*jn, *js, *jd;
	const char	*name;
	int		 slot, p;
	size_t		 i;
	static const struct bal_req any = { .nexclude = 0, .model = -1 };

	jn = json_object_get(body, field);
	if (jn == NULL || !json_is_string(jn) || json_string_length(jn) == 0) {
		admin_error(r, 400, "\"%s\" must be a backend name", field);
		return 0;
	}
	name = json_string_value(jn);
	js = json_object_get(body, "simulate_failure");
	if (js != NULL && !json_is_boolean(js)) {
		admin_error(r, 400, "\"simulate_failure\" must be true or false");
		return 0;
	}
	jd = json_object_get(body, "duration_ms");
	if (jd != NULL && (!json_is_integer(jd) || json_integer_value(jd) < 0 ||
	    json_integer_value(jd) > DRILL_MAX_MS)) {
		admin_error(r, 400, "\"duration_ms\" must be an integer from 0 to %d",
		    DRILL_MAX_MS);
		return 0;
	}
	if (drill_busy()) {
		admin_error(r, 409, "a drill (on %s) is already running in this worker",
		    dr.target);
		return 0;
	}

	memset(&dr, 0, sizeof(dr));
	dr.kind = kind;
	dr.w = w;
	dr.simulate = js == NULL || json_is_true(js);
	dr.duration_ms = jd != NULL ? (uint64_t)json_integer_value(jd) :
	    DRILL_DEFAULT_MS;
	dr.recover_ms = dr.duration_ms < 1000 ? 1000 :
	    dr.duration_ms > 10000 ? 10000 : dr.duration_ms;
	dr.backup = -1;
	strlcpy(dr.target, name, sizeof(dr.target));
	ev_timer_init(&dr.timer, drill_tick);

	if ((slot = drill_find(w, name)) >= 0) {
		dr.pool = w->view.be[slot].pool;
		if (drill_add_x((uint32_t)slot) == -1)
			goto nomem;
	} else if (kind == DRILL_BREAKER && (p = shm_pool_find(w->shm, name)) >= 0 &&
	    (p = (int)balance_view_pool_of(&w->view, (uint32_t)p)) >= 0 &&
	    (size_t)p < w->view.npools) {
		struct wpool *wp = &w->view.pools[p];

		dr.is_pool = 1;
		dr.pool = (uint32_t)p;
		for (i = 0; i < wp->n; i++)
			if (!(w->view.be[wp->idx[i]].flags & SHM_F_BACKUP) &&
			    drill_add_x(wp->idx[i]) == -1)
				goto nomem;
		if (dr.nx == 0) {
			drill_free();
			admin_error(r, 400, "pool %.64s has no primary backend", name);
			return 0;
		}
	} else {
		drill_free();
		admin_error(r, 404, "no backend%s named \"%.64s\"",
		    kind == DRILL_BREAKER ? " or pool" : "", name);
		return 0;
	}
	if (dr.pool >= w->view.npools) {
		drill_free();
		admin_error(r, 400, "backend %.64s is in no pool this worker knows",
		    name);
		return 0;
	}

	/* the pool's members and our stripe's counters before the drill */
	{
		struct wpool *wp = &w->view.pools[dr.pool];

		dr.nmem = wp->n;
		dr.mem = calloc(wp->n ? wp->n : 1, sizeof(*dr.mem));
		dr.req0 = calloc(wp->n ? wp->n : 1, sizeof(*dr.req0));
		dr.bad0 = calloc(wp->n ? wp->n : 1, sizeof(*dr.bad0));
		if (dr.mem == NULL || dr.req0 == NULL || dr.bad0 == NULL)
			goto nomem;
		for (i = 0; i < wp->n; i++) {
			dr.mem[i] = wp->idx[i];
			dr.req0[i] = stripe_req(wp->idx[i]);
			dr.bad0[i] = stripe_bad(wp->idx[i]);
		}
	}

	/* the balancer's pick with them out, in this worker's view, before any order */
	dr.t0_us = (shm_mono_ns() / 1000);
	drill_view_out(1);
	dr.backup = balance_pick(&w->view, dr.pool, &any);
	drill_view_out(0);
	dr.failover_ms = (double)((shm_mono_ns() / 1000) - dr.t0_us) / 1000.0;

	if (!dr.simulate || dr.backup < 0) {
		/* nothing to watch: answer now, nothing was ordered */
		dr.trestore_us = dr.t0_us;
		r->status = 200;
		r->json = drill_answer();
		drill_free();
		return 0;
	}
	dr.c = c;
	dr.phase = DP_ORDER;
	dr.t0_us = (shm_mono_ns() / 1000);
	drill_orders(0);
	if (dr.replies == 0) {
		admin_master_error(NULL, dr.order_status ? dr.order_status : 503, r);
		drill_free();
		return 0;
	}
	log_info("admin: drill: asking the master to hold %s's breaker open for "
	    "%llu ms", dr.target, (unsigned long long)dr.duration_ms);
	return 1;

nomem:
	drill_free();
	admin_error(r, 500, "out of memory");
	return 0;
}

int
drill_failover(struct worker *w, struct adminconn *c, json_t *body,
    struct admin_resp *r)
{
	return drill_start(w, c, DRILL_FAILOVER, body, "primary_backend", r);
}

int
drill_breaker(struct worker *w, struct adminconn *c, json_t *body,
    struct admin_resp *r)
{
	return drill_start(w, c, DRILL_BREAKER, body, "backend", r);
}

void
drill_abort(struct adminconn *c)
{
	if (!drill_busy() || dr.c != c)
		return;
	dr.c = NULL;
	log_info("admin: drill on %s abandoned by its client; putting it back",
	    dr.target);
	switch (dr.phase) {
	case DP_ORDER:
		/* the open orders' answers come first; drill_reply() goes on */
		dr.order_failed = 1;
		strlcpy(dr.order_error, "abandoned", sizeof(dr.order_error));
		break;
	case DP_OPENING:
	case DP_WINDOW:
		drill_put_back();
		break;
	case DP_RECOVER:
		drill_finish();
		break;
	default:
		break;		/* DP_RESTORE: drill_restored() finishes it */
	}
}

/* The admin API's read side: consistent copies of the table and the JSON of health, metrics and services. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <bsd/string.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "lib/log.h"
#include "worker/admin.h"
#include "worker/worker.h"

/*
 * What the numbers mean (the answers' "notes" say it again):
 * - an attempt is one request sent to one backend (a retry is a second
 *   attempt); total_requests counts attempts;
 * - a success is an attempt answered with a status below 500: 4xx are the
 *   client's errors, delivered as the backend meant them;
 * - a failure is an attempt answered 5xx or that got no answer at all
 *   (connect error, reset, timeout, bad response): the counters' fails,
 *   which the worker bumps for both.
 */

#define ADMIN_RATE_WINDOW_MS	10000

/*
 * Per worker process: the requests-per-second sampler, started by the first
 * admin request.
 */
static struct {
	struct admin_rate	 rate;
	struct ev_timer		 tick;
	struct worker		*w;
	int			 started;
} admin_st;

const char *
admin_health_name(uint32_t h)
{
	switch (h) {
	case SHM_HEALTH_UP:
		return "healthy";
	case SHM_HEALTH_DOWN:
		return "unhealthy";
	default:
		return "unknown";
	}
}

const char *
admin_breaker_name(uint32_t b)
{
	switch (b) {
	case SHM_BREAKER_CLOSED:
		return "closed";
	case SHM_BREAKER_OPEN:
		return "open";
	case SHM_BREAKER_HALF_OPEN:
		return "half_open";
	default:
		return "unknown";
	}
}

const char *
admin_pool_name(struct worker *w, uint32_t p, char *buf, size_t len)
{
	if (shm_pool_name(w->shm, p, buf, len) == 0)
		return buf;
	snprintf(buf, len, "pool%u", p);
	return buf;
}

json_t *
admin_time(uint64_t ms)
{
	struct tm	 tm;
	time_t		 t;
	char		 s[48], out[64];

	if (ms == 0)
		return json_null();
	t = (time_t)(ms / 1000);
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return json_null();
	snprintf(out, sizeof(out), "%s.%03uZ", s, (unsigned)(ms % 1000));
	return json_string(out);
}

double
admin_round2(double x)
{
	/* json_real() refuses NaN and infinities: never hand it one */
	if (x != x || x > 1e300 || x < -1e300)
		return 0.0;
	return (double)(long long)(x * 100.0 + (x < 0 ? -0.5 : 0.5)) / 100.0;
}

struct admin_be *
admin_snapshot(struct worker *w, size_t *np)
{
	struct shm_hdr	*h = w->shm;
	struct admin_be	*v;
	uint32_t	 nslots, i, k;
	size_t		 n = 0;

	*np = 0;
	nslots = atomic_load_explicit(&h->nslots, memory_order_acquire);
	if (nslots > h->max_backends)
		nslots = h->max_backends;
	if (nslots == 0 || (v = calloc(nslots, sizeof(*v))) == NULL)
		return NULL;
	for (i = 0; i < nslots; i++) {
		struct shm_slot	*s = shm_slot(h, i);
		struct admin_be	*b = &v[n];

		shm_desc_read(s, &b->d);
		if (!(b->d.flags & SHM_F_INUSE))
			continue;
		b->d.name[sizeof(b->d.name) - 1] = '\0';
		b->d.addr[sizeof(b->d.addr) - 1] = '\0';
		b->slot = i;
		shm_totals(h, i, &b->t);
		for (k = 0; k < h->max_workers; k++)
			b->consec_fails += atomic_load_explicit(
			    &shm_ctr(h, k, i)->consec_fails, memory_order_relaxed);
		b->health = atomic_load_explicit(&s->health, memory_order_relaxed);
		b->breaker = atomic_load_explicit(&s->breaker, memory_order_relaxed);
		b->lat_ewma_us = atomic_load_explicit(&s->lat_ewma_us,
		    memory_order_relaxed);
		b->breaker_opens = atomic_load_explicit(&s->breaker_opens,
		    memory_order_relaxed);
		b->last_check_ms = atomic_load_explicit(&s->last_check_ms,
		    memory_order_relaxed);
		b->breaker_change_ms = atomic_load_explicit(&s->breaker_change_ms,
		    memory_order_relaxed);
		/* by id: the table names a newer generation's pools too */
		(void)shm_pool_name(h, b->d.pool, b->pool, sizeof(b->pool));
		n++;
	}
	*np = n;
	return v;
}

/*
 * The pool the top-level answers speak for: "default" if there is one, else the
 * first.
 */
uint32_t
admin_default_pool(struct worker *w)
{
	int	 p;

	if ((p = conf_pool_find(w->conf, "default")) < 0)
		p = 0;
	/* the table's id of that pool of our config */
	return balance_view_qid(&w->view, p);
}

static const char *
be_pool(const struct admin_be *b)
{
	return b->pool[0] != '\0' ? b->pool : "(unknown)";
}

/*
 * Attempts of every slot over every stripe: the sampler's and the rate's common
 * base.
 */
static uint64_t
admin_total_attempts(struct worker *w)
{
	struct shm_hdr	*h = w->shm;
	uint32_t	 nslots, i, k;
	uint64_t	 sum = 0;

	nslots = atomic_load_explicit(&h->nslots, memory_order_acquire);
	if (nslots > h->max_backends)
		nslots = h->max_backends;
	for (i = 0; i < nslots; i++)
		for (k = 0; k < h->max_workers; k++)
			sum += atomic_load_explicit(&shm_ctr(h, k, i)->requests,
			    memory_order_relaxed);
	return sum;
}

void
admin_rate_add(struct admin_rate *r, uint64_t t_ms, uint64_t v)
{
	r->t_ms[r->head] = t_ms;
	r->v[r->head] = v;
	r->head = (r->head + 1) % ADMIN_RATE_SAMPLES;
	if (r->n < ADMIN_RATE_SAMPLES)
		r->n++;
}

double
admin_rate_get(const struct admin_rate *r, uint64_t t_ms, uint64_t v,
    uint64_t *window_ms)
{
	size_t		 i, k;
	uint64_t	 bt = 0, bv = 0;
	int		 found = 0;

	*window_ms = 0;
	/* the oldest sample inside the window, at least a second old */
	for (i = 0; i < r->n; i++) {
		k = (r->head + ADMIN_RATE_SAMPLES - r->n + i) % ADMIN_RATE_SAMPLES;
		if (r->t_ms[k] > t_ms || t_ms - r->t_ms[k] > ADMIN_RATE_WINDOW_MS)
			continue;
		if (t_ms - r->t_ms[k] < 1000)
			break;
		bt = r->t_ms[k];
		bv = r->v[k];
		found = 1;
		break;
	}
	if (!found)
		return -1.0;
	*window_ms = t_ms - bt;
	return v >= bv ? (double)(v - bv) * 1000.0 / (double)(t_ms - bt) : 0.0;
}

static void
admin_tick(struct ev_loop *l, struct ev_timer *t)
{
	admin_rate_add(&admin_st.rate, shm_mono_ms(),
	    admin_total_attempts(admin_st.w));
	ev_timer_after(l, t, 1000);
}

void
admin_sampler_start(struct worker *w)
{
	if (admin_st.started)
		return;
	admin_st.started = 1;
	admin_st.w = w;
	ev_timer_init(&admin_st.tick, admin_tick);
	admin_rate_add(&admin_st.rate, shm_mono_ms(), admin_total_attempts(w));
	ev_timer_after(&w->loop, &admin_st.tick, 1000);
}

json_t *
admin_health_json(struct worker *w)
{
	struct admin_be	*v;
	size_t		 n, i, up = 0, down = 0, unknown = 0;
	json_t		*root, *hs, *pool, *e;
	const char	*overall;

	v = admin_snapshot(w, &n);
	if ((root = json_object()) == NULL || (hs = json_object()) == NULL) {
		json_decref(root);
		free(v);
		return NULL;
	}
	json_object_set_new(root, "health_status", hs);
	for (i = 0; i < n; i++) {
		struct admin_be *b = &v[i];

		if ((pool = json_object_get(hs, be_pool(b))) == NULL) {
			pool = json_object();
			json_object_set_new(hs, be_pool(b), pool);
		}
		e = json_object();
		json_object_set_new(e, "status",
		    json_string(admin_health_name(b->health)));
		/* the prober's EWMA; null until a check has measured one */
		json_object_set_new(e, "response_time_ms", b->last_check_ms ?
		    json_real(admin_round2(b->lat_ewma_us / 1000.0)) : json_null());
		json_object_set_new(e, "last_check", admin_time(b->last_check_ms));
		json_object_set_new(e, "breaker",
		    json_string(admin_breaker_name(b->breaker)));
		json_object_set_new(e, "enabled",
		    json_boolean(!(b->d.flags & SHM_F_DISABLED)));
		json_object_set_new(e, "draining",
		    json_boolean(b->d.flags & SHM_F_DRAINING));
		json_object_set_new(e, "backup",
		    json_boolean(b->d.flags & SHM_F_BACKUP));
		json_object_set_new(pool, b->d.name, e);
		if (b->health == SHM_HEALTH_UP)
			up++;
		else if (b->health == SHM_HEALTH_DOWN)
			down++;
		else
			unknown++;
	}
	/*
	 * healthy: every backend passed its checks; degraded: some are down
	 * but one can still serve; unhealthy: none can; unknown: none is
	 * down but some were never checked (health.type none, or early).
	 */
	if (n == 0 || up + unknown == 0)
		overall = "unhealthy";
	else if (down > 0)
		overall = "degraded";
	else if (unknown > 0)
		overall = "unknown";
	else
		overall = "healthy";
	json_object_set_new(root, "overall_health", json_string(overall));
	json_object_set_new(root, "total_backends", json_integer((json_int_t)n));
	json_object_set_new(root, "healthy_backends", json_integer((json_int_t)up));
	json_object_set_new(root, "unhealthy_backends",
	    json_integer((json_int_t)down));
	json_object_set_new(root, "unknown_backends",
	    json_integer((json_int_t)unknown));
	json_object_set_new(root, "registry", admin_registry_json(w, v, n));
	json_object_set_new(root, "health_check_type",
	    json_string(conf_health_type_name(w->conf->health.type)));
	json_object_set_new(root, "timestamp", admin_time(shm_now_ms()));
	free(v);
	return root;
}

json_t *
admin_metrics_json(struct worker *w, uint64_t now_ms)
{
	struct admin_be	*v;
	size_t		 n, i;
	uint64_t	 attempts = 0, ok = 0, failed = 0, answered = 0, lat = 0;
	uint64_t	 retries = 0, window_ms = 0, now_total;
	uint64_t	 fo_n = 0, fo_ok = 0, fo_us = 0, fo_last = 0;
	double		 rps, mean = 0.0, var = 0.0;
	json_t		*root, *rm, *lb, *dist, *cb, *fo, *notes, *e;
	uint32_t	 dp;
	char		 pbuf[16];

	v = admin_snapshot(w, &n);
	root = json_object();
	rm = json_object();
	lb = json_object();
	dist = json_object();
	cb = json_object();
	fo = json_object();
	notes = json_object();
	if (root == NULL || rm == NULL || lb == NULL || dist == NULL ||
	    cb == NULL || fo == NULL || notes == NULL) {
		json_decref(root);
		json_decref(rm);
		json_decref(lb);
		json_decref(dist);
		json_decref(cb);
		json_decref(fo);
		json_decref(notes);
		free(v);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		const struct shm_totals *t = &v[i].t;

		attempts += t->requests;
		ok += t->status[1] + t->status[2] + t->status[3] + t->status[4];
		failed += t->fails;	/* 5xx answers are counted there too */
		answered += t->status[0] + t->status[1] + t->status[2] +
		    t->status[3] + t->status[4] + t->status[5];
		lat += t->lat_sum_us;
		retries += t->retries;
		fo_n += t->failovers;
		fo_ok += t->failover_ok;
		fo_us += t->failover_us;
		if (t->last_failover_ms > fo_last)
			fo_last = t->last_failover_ms;
	}

	json_object_set_new(root, "routing_metrics", rm);
	json_object_set_new(rm, "total_requests", json_integer((json_int_t)attempts));
	json_object_set_new(rm, "successful_requests", json_integer((json_int_t)ok));
	json_object_set_new(rm, "failed_requests", json_integer((json_int_t)failed));
	json_object_set_new(rm, "success_rate", ok + failed ?
	    json_real(admin_round2(100.0 * (double)ok / (double)(ok + failed))) :
	    json_null());
	json_object_set_new(rm, "avg_response_time_ms", answered ?
	    json_real(admin_round2((double)lat / (double)answered / 1000.0)) :
	    json_null());
	now_total = admin_total_attempts(w);
	rps = admin_rate_get(&admin_st.rate, now_ms, now_total, &window_ms);
	if (rps < 0.0) {
		/*
		 * no sample a second old yet: the average since the table was
		 * made
		 */
		uint64_t up = shm_now_ms() - w->shm->created_ms;

		window_ms = up;
		rps = up ? (double)now_total * 1000.0 / (double)up : 0.0;
	}
	json_object_set_new(rm, "requests_per_second", json_real(admin_round2(rps)));
	json_object_set_new(rm, "requests_per_second_window_ms",
	    json_integer((json_int_t)window_ms));
	{
		int64_t inflight = 0;

		for (i = 0; i < n; i++)
			inflight += v[i].t.inflight;
		json_object_set_new(rm, "in_flight", json_integer(inflight));
	}

	json_object_set_new(root, "load_balancing", lb);
	dp = admin_default_pool(w);
	json_object_set_new(lb, "strategy", json_string(conf_strategy_name(
	    (enum conf_strategy)shm_pool_strategy(w->shm, dp))));
	json_object_set_new(lb, "strategy_pool",
	    json_string(admin_pool_name(w, dp, pbuf, sizeof(pbuf))));
	{
		json_t	*ps = json_object();
		size_t	 p;

		for (p = 0; p < w->view.npools; p++)
			json_object_set_new(ps, w->conf->pools[p].name,
			    json_string(conf_strategy_name((enum conf_strategy)
			    shm_pool_strategy(w->shm, w->view.pools[p].id))));
		json_object_set_new(lb, "pool_strategies", ps);
	}
	json_object_set_new(lb, "backend_distribution", dist);
	for (i = 0; i < n; i++) {
		double pct = attempts ?
		    100.0 * (double)v[i].t.requests / (double)attempts : 0.0;

		mean += pct;
		e = json_object();
		json_object_set_new(e, "requests",
		    json_integer((json_int_t)v[i].t.requests));
		json_object_set_new(e, "percentage", json_real(admin_round2(pct)));
		json_object_set_new(e, "pool", json_string(be_pool(&v[i])));
		json_object_set_new(dist, v[i].d.name, e);
	}
	if (n > 0) {
		mean /= (double)n;
		for (i = 0; i < n; i++) {
			double pct = attempts ? 100.0 * (double)v[i].t.requests /
			    (double)attempts : 0.0;

			var += (pct - mean) * (pct - mean);
		}
		var /= (double)n;
	}
	json_object_set_new(lb, "distribution_variance", json_real(admin_round2(var)));

	json_object_set_new(root, "circuit_breakers", cb);
	for (i = 0; i < n; i++) {
		const struct admin_be *b = &v[i];

		e = json_object();
		json_object_set_new(e, "status",
		    json_string(admin_breaker_name(b->breaker)));
		json_object_set_new(e, "failure_count",
		    json_integer((json_int_t)b->consec_fails));
		json_object_set_new(e, "last_failure",
		    b->breaker == SHM_BREAKER_OPEN ?
		    admin_time(b->breaker_change_ms) : json_null());
		json_object_set_new(e, "opens",
		    json_integer((json_int_t)b->breaker_opens));
		json_object_set_new(e, "last_transition",
		    admin_time(b->breaker_change_ms));
		json_object_set_new(cb, b->d.name, e);
	}

	json_object_set_new(root, "failover_events", fo);
	json_object_set_new(fo, "total_failovers", json_integer((json_int_t)fo_n));
	json_object_set_new(fo, "successful_failovers", json_integer((json_int_t)fo_ok));
	json_object_set_new(fo, "avg_failover_time_ms", fo_ok ?
	    json_real(admin_round2((double)fo_us / (double)fo_ok / 1000.0)) : json_null());
	json_object_set_new(fo, "last_failover", fo_last ? admin_time(fo_last) : json_null());
	json_object_set_new(fo, "retries", json_integer((json_int_t)retries));

	json_object_set_new(root, "notes", notes);
	json_object_set_new(notes, "routing_metrics", json_string(
	    "counts are attempts (a retry is a second attempt); success: "
	    "answered below 500; failed: answered 5xx or no answer; "
	    "requests refused with no eligible backend are not counted"));
	json_object_set_new(notes, "circuit_breakers", json_string(
	    "failure_count: consecutive failed attempts summed over workers; "
	    "last_failure: when the open breaker opened, null while it is "
	    "not open (the table keeps no per-request failure time)"));
	json_object_set_new(notes, "failover_events", json_string(
	    "total_failovers: requests that moved to another backend after an "
	    "attempt failed; successful: another backend answered them; time: "
	    "from the first failure to the answer's head (ms, coarse clock); "
	    "retries: every further attempt, stale pooled connections included"));
	json_object_set_new(root, "timestamp", admin_time(shm_now_ms()));
	free(v);
	return root;
}

json_t *
admin_registry_json(struct worker *w, const struct admin_be *v, size_t n)
{
	const struct shm_registry *r = &w->shm->registry;
	size_t		 i, nreg = 0;

	for (i = 0; i < n; i++)
		if (v[i].d.flags & SHM_F_REGISTRY)
			nreg++;
	(void)atomic_load_explicit(&r->applied, memory_order_acquire);
	return json_pack("{s:b, s:I, s:I, s:o, s:o, s:b, s:I, s:I, s:{s:I, s:I}}",
	    "enabled", (int)atomic_load_explicit(&r->enabled, memory_order_relaxed),
	    "syncs_ok", (json_int_t)atomic_load_explicit(&r->syncs_ok,
		memory_order_relaxed),
	    "syncs_failed", (json_int_t)atomic_load_explicit(&r->syncs_failed,
		memory_order_relaxed),
	    "last_success", admin_time(atomic_load_explicit(&r->last_ok_ms,
		memory_order_relaxed)),
	    "last_failure", admin_time(atomic_load_explicit(&r->last_fail_ms,
		memory_order_relaxed)),
	    "failing", (int)atomic_load_explicit(&r->failing, memory_order_relaxed),
	    "listed", (json_int_t)atomic_load_explicit(&r->listed,
		memory_order_relaxed),
	    "in_grace", (json_int_t)atomic_load_explicit(&r->in_grace,
		memory_order_relaxed),
	    "backends", "static", (json_int_t)(n - nreg),
	    "registry", (json_int_t)nreg);
}

json_t *
admin_services_json(struct worker *w)
{
	struct admin_be	*v;
	size_t		 n, i;
	uint32_t	 m;
	json_t		*root, *list, *e, *models;
	char		 name[SHM_NAME_MAX];

	v = admin_snapshot(w, &n);
	if ((root = json_object()) == NULL || (list = json_array()) == NULL) {
		json_decref(root);
		free(v);
		return NULL;
	}
	json_object_set_new(root, "services", list);
	for (i = 0; i < n; i++) {
		const struct admin_be *b = &v[i];

		e = json_object();
		json_object_set_new(e, "name", json_string(b->d.name));
		json_object_set_new(e, "address", json_string(b->d.addr));
		json_object_set_new(e, "pool", json_string(be_pool(b)));
		json_object_set_new(e, "health",
		    json_string(admin_health_name(b->health)));
		json_object_set_new(e, "breaker",
		    json_string(admin_breaker_name(b->breaker)));
		json_object_set_new(e, "weight", json_integer(b->d.weight));
		models = json_array();
		for (m = 0; m < b->d.nmodels && m < SHM_SLOT_MODELS; m++)
			if (shm_model_name(w->shm, b->d.models[m], name,
			    sizeof(name)) == 0)
				json_array_append_new(models, json_string(name));
		json_object_set_new(e, "models", models);
		json_object_set_new(e, "source", json_string(
		    (b->d.flags & SHM_F_REGISTRY) ? "registry" : "static"));
		json_object_set_new(e, "last_seen", (b->d.flags & SHM_F_REGISTRY) ?
		    admin_time(b->d.last_seen_ms) : json_null());
		json_object_set_new(e, "added", admin_time(b->d.added_ms));
		json_object_set_new(e, "backup",
		    json_boolean(b->d.flags & SHM_F_BACKUP));
		json_object_set_new(e, "disabled",
		    json_boolean(b->d.flags & SHM_F_DISABLED));
		json_object_set_new(e, "draining",
		    json_boolean(b->d.flags & SHM_F_DRAINING));
		json_object_set_new(e, "in_flight", json_integer(b->t.inflight));
		json_object_set_new(e, "region", json_string(b->d.region));
		json_array_append_new(list, e);
	}
	json_object_set_new(root, "total", json_integer((json_int_t)n));
	json_object_set_new(root, "registry", admin_registry_json(w, v, n));
	free(v);
	return root;
}

/* In-flight requests of every backend of the pools in mask, by name. */

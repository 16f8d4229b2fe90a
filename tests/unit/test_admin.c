/* Unit tests of the admin API's pure parts (worker/admin.c, metrics.c, drill.c) over a real shared table. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "conf/conf.h"
#include "shm/table.h"
#include "worker/admin.h"
#include "worker/worker.h"

#define NB	8		/* backend slots */
#define NW	2		/* worker stripes */

static struct shm_hdr	*shm;
static struct conf	 cf;
static struct conf_pool	 cpools[2];
static struct worker	 w;

/* Put a backend into slot of pool with flags, models, weight. */
static void
add(uint32_t slot, const char *name, uint32_t pool, uint32_t flags,
    uint32_t weight, const char *model)
{
	struct shm_desc d;

	memset(&d, 0, sizeof(d));
	strcpy(d.name, name);
	snprintf(d.addr, sizeof(d.addr), "127.0.0.1:%u", 9000 + slot);
	d.pool = pool;
	d.weight = weight;
	d.flags = flags | SHM_F_INUSE;
	d.added_ms = 1752589800000ULL;
	if (model != NULL) {
		d.models[0] = (uint32_t)shm_model_intern(shm, model);
		d.nmodels = 1;
	}
	if (flags & SHM_F_REGISTRY)
		d.last_seen_ms = 1752590000123ULL;
	shm_desc_write(shm_slot(shm, slot), &d);
	if (slot + 1 > atomic_load(&shm->nslots))
		atomic_store(&shm->nslots, slot + 1);
}

static void
setup(void)
{
	uint32_t i;

	shm = shm_create(NB, NW, NULL);
	cr_assert_not_null(shm);
	memset(&cf, 0, sizeof(cf));
	memset(cpools, 0, sizeof(cpools));
	strcpy(cpools[0].name, "default");
	cpools[0].strategy = STRAT_ROUND_ROBIN;
	strcpy(cpools[1].name, "llm");
	cpools[1].strategy = STRAT_LEAST_LATENCY;
	cf.pools = cpools;
	cf.npools = 2;
	cf.breaker.threshold = 10;
	cf.breaker.timeout_ms = 60000;
	cf.health.type = HEALTH_HTTP;
	strcpy(cf.admin.token, "sekret");
	shm_pool_set(shm, 0, "default", STRAT_ROUND_ROBIN, STRAT_ROUND_ROBIN);
	shm_pool_set(shm, 1, "llm", STRAT_LEAST_LATENCY, STRAT_ROUND_ROBIN);

	add(0, "a", 0, SHM_F_STATIC, 1, NULL);
	add(1, "b", 0, SHM_F_STATIC, 3, NULL);
	add(2, "c", 0, SHM_F_STATIC | SHM_F_BACKUP, 1, NULL);
	add(3, "phi\"3", 1, SHM_F_REGISTRY, 2, "phi3");
	shm_gen_bump(shm);

	memset(&w, 0, sizeof(w));
	w.conf = &cf;
	w.shm = shm;
	w.index = 1;
	cr_assert_eq(ev_init(&w.loop, 16), 0);
	w.view.shm = shm;
	w.view.nstripes = NW;
	w.view.rng = 12345;
	w.view.be = calloc(NB, sizeof(*w.view.be));
	w.wb = calloc(NB, sizeof(*w.wb));
	w.view.npools = 2;
	w.view.pools = calloc(2, sizeof(*w.view.pools));
	for (i = 0; i < 2; i++)
		w.view.pools[i].idx = calloc(NB, sizeof(uint32_t));
	{
		const char *names[2] = { "default", "llm" };

		balance_view_pools(&w.view, names);
	}
	for (i = 0; i < NB; i++)
		TAILQ_INIT(&w.wb[i].idle);
	TAILQ_INIT(&w.clients);
	TAILQ_INIT(&w.czombies);
	TAILQ_INIT(&w.uzombies);
	worker_refresh(&w);
}

static void
teardown(void)
{
	uint32_t i;

	for (i = 0; i < 2; i++)
		free(w.view.pools[i].idx);
	free(w.view.pools);
	free(w.view.be);
	free(w.wb);
	ev_close(&w.loop);
	shm_destroy(shm);
}

TestSuite(admin, .init = setup, .fini = teardown);

static void
set_ctr(uint32_t wk, uint32_t slot, uint64_t req, uint64_t s2, uint64_t s4,
    uint64_t s5, uint64_t fails, uint64_t retries, uint64_t lat_us)
{
	struct shm_counters *k = shm_ctr(shm, wk, slot);

	atomic_store(&k->requests, req);
	atomic_store(&k->status[2], s2);
	atomic_store(&k->status[4], s4);
	atomic_store(&k->status[5], s5);
	atomic_store(&k->fails, fails);
	atomic_store(&k->retries, retries);
	atomic_store(&k->lat_sum_us, lat_us);
	atomic_store(&k->lat_hist[shm_lat_bucket(lat_us / (s2 + s4 + s5 ? s2 + s4 + s5 : 1))],
	    s2 + s4 + s5);
}

static double
num(json_t *o, const char *path)
{
	json_t *v = json_object_get(o, path);

	cr_assert(json_is_number(v), "%s is not a number", path);
	return json_number_value(v);
}

Test(admin, health_shape_and_counts)
{
	json_t	*j, *hs, *e;

	atomic_store(&shm_slot(shm, 0)->health, SHM_HEALTH_UP);
	atomic_store(&shm_slot(shm, 0)->lat_ewma_us, 5200);
	atomic_store(&shm_slot(shm, 0)->last_check_ms, 1752589800000ULL);
	atomic_store(&shm_slot(shm, 1)->health, SHM_HEALTH_DOWN);
	atomic_store(&shm_slot(shm, 2)->health, SHM_HEALTH_UP);
	atomic_store(&shm_slot(shm, 3)->health, SHM_HEALTH_UP);
	j = admin_health_json(&w);
	cr_assert_not_null(j);
	hs = json_object_get(j, "health_status");
	e = json_object_get(json_object_get(hs, "default"), "a");
	cr_assert_not_null(e);
	cr_assert_str_eq(json_string_value(json_object_get(e, "status")), "healthy");
	cr_assert_float_eq(num(e, "response_time_ms"), 5.2, 1e-9);
	cr_assert_str_eq(json_string_value(json_object_get(e, "last_check")),
	    "2025-07-15T14:30:00.000Z");
	e = json_object_get(json_object_get(hs, "default"), "b");
	cr_assert_str_eq(json_string_value(json_object_get(e, "status")), "unhealthy");
	cr_assert(json_is_null(json_object_get(e, "last_check")));
	cr_assert(json_is_null(json_object_get(e, "response_time_ms")));
	cr_assert_not_null(json_object_get(json_object_get(hs, "llm"), "phi\"3"));
	cr_assert_str_eq(json_string_value(json_object_get(j, "overall_health")),
	    "degraded");
	cr_assert_eq(num(j, "total_backends"), 4);
	cr_assert_eq(num(j, "healthy_backends"), 3);
	cr_assert_eq(num(j, "unhealthy_backends"), 1);
	json_decref(j);

	atomic_store(&shm_slot(shm, 1)->health, SHM_HEALTH_UP);
	j = admin_health_json(&w);
	cr_assert_str_eq(json_string_value(json_object_get(j, "overall_health")),
	    "healthy");
	json_decref(j);
	atomic_store(&shm_slot(shm, 1)->health, SHM_HEALTH_UNKNOWN);
	j = admin_health_json(&w);
	cr_assert_str_eq(json_string_value(json_object_get(j, "overall_health")),
	    "unknown");
	json_decref(j);
}

Test(admin, metrics_totals_distribution_breakers)
{
	json_t	*j, *rm, *lb, *d, *cb, *fo;

	/* a: 30 + 10 attempts over two stripes; b: 40, 4 unanswered, 3 retries */
	set_ctr(0, 0, 30, 27, 1, 2, 2, 0, 30 * 10000);	/* fails count the 5xx too */
	set_ctr(1, 0, 10, 10, 0, 0, 0, 0, 10 * 10000);
	set_ctr(0, 1, 40, 36, 0, 0, 4, 3, 36 * 10000);
	atomic_store(&shm_ctr(shm, 0, 1)->consec_fails, 2);
	atomic_store(&shm_ctr(shm, 1, 1)->consec_fails, 1);
	atomic_store(&shm_slot(shm, 1)->breaker, SHM_BREAKER_OPEN);
	atomic_store(&shm_slot(shm, 1)->breaker_change_ms, 1752590910000ULL);
	atomic_store(&shm_slot(shm, 1)->breaker_opens, 5);
	/* b: 3 requests moved on after failing there, 2 answered elsewhere, 150 ms on average */
	atomic_store(&shm_ctr(shm, 0, 1)->failovers, 2);
	atomic_store(&shm_ctr(shm, 1, 1)->failovers, 1);
	atomic_store(&shm_ctr(shm, 0, 1)->failover_ok, 2);
	atomic_store(&shm_ctr(shm, 0, 1)->failover_us, 300000);
	atomic_store(&shm_ctr(shm, 1, 1)->last_failover_ms, 1752590910000ULL);
	shm_pool_strategy_set(shm, 0, STRAT_WEIGHTED);

	j = admin_metrics_json(&w, shm_mono_ms());
	cr_assert_not_null(j);
	rm = json_object_get(j, "routing_metrics");
	cr_assert_eq(num(rm, "total_requests"), 80);
	cr_assert_eq(num(rm, "successful_requests"), 74);	/* 27+1+10+36 */
	cr_assert_eq(num(rm, "failed_requests"), 6);		/* 2 5xx + 4 unanswered */
	cr_assert_float_eq(num(rm, "success_rate"), 92.5, 1e-9);
	cr_assert_float_eq(num(rm, "avg_response_time_ms"), 10.0, 1e-9);
	cr_assert(num(rm, "requests_per_second") >= 0.0);

	lb = json_object_get(j, "load_balancing");
	cr_assert_str_eq(json_string_value(json_object_get(lb, "strategy")), "weighted");
	d = json_object_get(lb, "backend_distribution");
	cr_assert_eq(num(json_object_get(d, "a"), "requests"), 40);
	cr_assert_float_eq(num(json_object_get(d, "a"), "percentage"), 50.0, 1e-9);
	cr_assert_float_eq(num(json_object_get(d, "b"), "percentage"), 50.0, 1e-9);
	cr_assert_float_eq(num(json_object_get(d, "c"), "percentage"), 0.0, 1e-9);
	/* percentages 50, 50, 0, 0: mean 25, variance 625 */
	cr_assert_float_eq(num(lb, "distribution_variance"), 625.0, 1e-9);

	cb = json_object_get(j, "circuit_breakers");
	cr_assert_str_eq(json_string_value(json_object_get(
	    json_object_get(cb, "b"), "status")), "open");
	cr_assert_eq(num(json_object_get(cb, "b"), "failure_count"), 3);
	cr_assert_str_eq(json_string_value(json_object_get(
	    json_object_get(cb, "b"), "last_failure")), "2025-07-15T14:48:30.000Z");
	cr_assert(json_is_null(json_object_get(json_object_get(cb, "a"),
	    "last_failure")));
	cr_assert_str_eq(json_string_value(json_object_get(
	    json_object_get(cb, "a"), "status")), "closed");

	fo = json_object_get(j, "failover_events");
	cr_assert_eq(num(fo, "total_failovers"), 3);
	cr_assert_eq(num(fo, "successful_failovers"), 2);
	cr_assert_float_eq(num(fo, "avg_failover_time_ms"), 150.0, 0.01);
	cr_assert_str_eq(json_string_value(json_object_get(fo, "last_failover")),
	    "2025-07-15T14:48:30.000Z");
	cr_assert_eq(num(fo, "retries"), 3);
	cr_assert_not_null(json_object_get(j, "notes"));
	json_decref(j);
}

Test(admin, services_list)
{
	json_t	*j, *l, *e;
	size_t	 i;
	int	 seen = 0;

	j = admin_services_json(&w);
	l = json_object_get(j, "services");
	cr_assert_eq(json_array_size(l), 4);
	json_array_foreach(l, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		cr_assert_not_null(json_object_get(e, "address"));
		cr_assert_not_null(json_object_get(e, "weight"));
		if (strcmp(n, "phi\"3") == 0) {
			cr_assert_str_eq(json_string_value(json_object_get(e, "source")),
			    "registry");
			cr_assert_str_eq(json_string_value(json_object_get(e, "pool")),
			    "llm");
			cr_assert_str_eq(json_string_value(json_array_get(
			    json_object_get(e, "models"), 0)), "phi3");
			cr_assert_str_eq(json_string_value(json_object_get(e,
			    "last_seen")), "2025-07-15T14:33:20.123Z");
			seen++;
		} else if (strcmp(n, "c") == 0) {
			cr_assert_str_eq(json_string_value(json_object_get(e, "source")),
			    "static");
			cr_assert(json_is_null(json_object_get(e, "last_seen")));
			cr_assert(json_is_true(json_object_get(e, "backup")));
			cr_assert_eq(json_array_size(json_object_get(e, "models")), 0);
			seen++;
		}
	}
	cr_assert_eq(seen, 2);
	json_decref(j);
}

static json_t *
strat(const char *body, struct admin_resp *r)
{
	json_t *b = json_loads(body, 0, NULL);

	struct admin_strat	 st;
	uint32_t		 i;

	cr_assert_not_null(b);
	memset(r, 0, sizeof(*r));
	if (admin_strategy_check(&w, b, r, &st) == 0) {
		/* what the master does with "strategy set": the test plays it */
		for (i = 0; i < SHM_POOLS_MAX; i++)
			if (st.mask[i])
				shm_pool_strategy_set(shm, i, (uint32_t)st.strat);
		admin_strategy_answer(&w, &st, NULL, r);
	}
	json_decref(b);
	return r->json;
}

static const char *
errmsg(json_t *j)
{
	return json_string_value(json_object_get(json_object_get(j, "error"),
	    "message"));
}

Test(admin, strategy_switch)
{
	struct admin_resp	 r;
	json_t			*j, *sc;

	atomic_store(&shm_ctr(shm, 0, 0)->inflight, 25);
	j = strat("{\"strategy\": \"least_connections\", \"pool\": \"llm\"}", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(shm_pool_strategy(shm, 1), STRAT_LEAST_CONN);
	cr_assert_eq(shm_pool_strategy(shm, 0), STRAT_ROUND_ROBIN);
	sc = json_object_get(j, "strategy_change");
	cr_assert_str_eq(json_string_value(json_object_get(sc, "previous_strategy")),
	    "least_latency");
	cr_assert_str_eq(json_string_value(json_object_get(sc, "new_strategy")),
	    "least_connections");
	cr_assert(json_is_true(json_object_get(sc, "strategy_applied")));
	cr_assert_not_null(json_object_get(sc, "change_timestamp"));
	/* only the llm pool's backends */
	cr_assert_null(json_object_get(json_object_get(sc,
	    "active_connections_before"), "a"));
	json_decref(j);

	j = strat("{\"strategy\": \"random\"}", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(shm_pool_strategy(shm, 0), STRAT_RANDOM);
	cr_assert_eq(shm_pool_strategy(shm, 1), STRAT_RANDOM);
	sc = json_object_get(j, "strategy_change");
	cr_assert_str_eq(json_string_value(json_object_get(sc, "previous_strategy")),
	    "round_robin");
	cr_assert_eq(num(json_object_get(sc, "active_connections_before"), "a"), 25);
	cr_assert_eq(num(json_object_get(sc, "active_connections_after"), "a"), 25);
	json_decref(j);

	j = strat("{\"strategy\": \"fastest\"}", &r);
	cr_assert_eq(r.status, 400);
	cr_assert(strstr(errmsg(j), "unknown strategy \"fastest\"") != NULL);
	cr_assert(strstr(errmsg(j), "power_of_two") != NULL);
	json_decref(j);
	j = strat("{\"strategy\": \"random\", \"pool\": \"nope\"}", &r);
	cr_assert_eq(r.status, 400);
	cr_assert(strstr(errmsg(j), "unknown pool") != NULL);
	json_decref(j);
	j = strat("{\"strategy\": 3}", &r);
	cr_assert_eq(r.status, 400);
	json_decref(j);
	cr_assert_eq(shm_pool_strategy(shm, 0), STRAT_RANDOM);
}

Test(admin, rate_sampler)
{
	struct admin_rate	r;
	uint64_t		win;

	memset(&r, 0, sizeof(r));
	cr_assert_lt(admin_rate_get(&r, 1000, 5, &win), 0.0);
	admin_rate_add(&r, 1000, 100);
	cr_assert_lt(admin_rate_get(&r, 1500, 150, &win), 0.0);	/* too young */
	admin_rate_add(&r, 2000, 200);
	cr_assert_float_eq(admin_rate_get(&r, 3000, 400, &win), 150.0, 1e-9);
	cr_assert_eq(win, 2000);
	/* samples older than the 10 s window are skipped */
	cr_assert_float_eq(admin_rate_get(&r, 11500, 1150, &win), 100.0, 1e-9);
	cr_assert_eq(win, 9500);
}

/* Run admin_handle() on a request; returns the response text (static). */
static char *
handle(const char *method, const char *path, const char *auth, const char *body)
{
	static char		 resp[256 * 1024];
	struct admin_req	 q;
	struct buf		 out;

	memset(&q, 0, sizeof(q));
	q.method = method;
	q.path = path;
	q.query = "";
	q.auth = auth;
	q.body = body;
	q.bodylen = body ? strlen(body) : 0;
	out.cap = 64;			/* small on purpose: the answer must grow it */
	out.data = malloc(out.cap);
	out.rpos = out.wpos = 0;
	cr_assert_eq(admin_handle(&w, NULL, &q, &out), 0);
	cr_assert_lt(out.wpos, sizeof(resp));
	memcpy(resp, out.data, out.wpos);
	resp[out.wpos] = '\0';
	free(out.data);
	return resp;
}

static int
status_of(const char *resp)
{
	return atoi(resp + 9);
}

/* The body after the head; checks Content-Length against it. */
static const char *
body_of(const char *resp)
{
	const char	*b = strstr(resp, "\r\n\r\n"), *cl;

	cr_assert_not_null(b);
	cl = strstr(resp, "Content-Length: ");
	cr_assert_not_null(cl);
	cr_assert_eq((size_t)atol(cl + 16), strlen(b + 4));
	return b + 4;
}

Test(admin, handle_routes_auth_errors)
{
	char	*s;

	s = handle("GET", "/api/v1/router/health", NULL, NULL);
	cr_assert_eq(status_of(s), 200);
	cr_assert(strstr(s, "Content-Type: application/json\r\n") != NULL);
	cr_assert(strstr(body_of(s), "\"overall_health\"") != NULL);

	s = handle("HEAD", "/api/v1/router/health", NULL, NULL);
	cr_assert_eq(status_of(s), 200);
	cr_assert_str_eq(strstr(s, "\r\n\r\n"), "\r\n\r\n");

	s = handle("GET", "/nope", NULL, NULL);
	cr_assert_eq(status_of(s), 404);
	body_of(s);

	s = handle("DELETE", "/api/v1/router/strategy", NULL, NULL);
	cr_assert_eq(status_of(s), 405);
	cr_assert(strstr(s, "Allow: GET, HEAD, PUT\r\n") != NULL);

	s = handle("PUT", "/api/v1/router/strategy", NULL, "{\"strategy\":\"random\"}");
	cr_assert_eq(status_of(s), 401);
	cr_assert(strstr(s, "WWW-Authenticate: Bearer") != NULL);
	s = handle("PUT", "/api/v1/router/strategy", "Bearer wrong",
	    "{\"strategy\":\"random\"}");
	cr_assert_eq(status_of(s), 401);
	s = handle("PUT", "/api/v1/router/strategy", "Bearer sekre",
	    "{\"strategy\":\"random\"}");
	cr_assert_eq(status_of(s), 401);
	s = handle("PUT", "/api/v1/router/strategy", "Basic sekret",
	    "{\"strategy\":\"random\"}");
	cr_assert_eq(status_of(s), 401);
	cr_assert_eq(shm_pool_strategy(shm, 0), STRAT_ROUND_ROBIN);

	s = handle("PUT", "/api/v1/router/strategy", "Bearer sekret",
	    "{\"strategy\": \"random\",");
	cr_assert_eq(status_of(s), 400);
	cr_assert(strstr(body_of(s), "invalid JSON") != NULL);
	s = handle("PUT", "/api/v1/router/strategy", "Bearer sekret", "[1]");
	cr_assert_eq(status_of(s), 400);
	/*
	 * authorized and valid: the write goes to the master, never to the
	 * table from here; with no link to a master (no mctl_init()) that is
	 * a 503 and the strategy is untouched
	 */
	s = handle("PUT", "/api/v1/router/strategy", "bearer  sekret ",
	    "{\"strategy\":\"random\"}");
	cr_assert_eq(status_of(s), 503);
	cr_assert(strstr(body_of(s), "master") != NULL);
	cr_assert_eq(shm_pool_strategy(shm, 0), STRAT_ROUND_ROBIN);

	/* no token configured: writes are refused whatever is sent */
	cf.admin.token[0] = '\0';
	s = handle("PUT", "/api/v1/router/strategy", "Bearer ",
	    "{\"strategy\":\"random\"}");
	cr_assert_eq(status_of(s), 403);
}

Test(admin, prometheus_text)
{
	char	*s;
	size_t	 len;

	set_ctr(0, 0, 30, 27, 1, 2, 0, 0, 30 * 3000);
	set_ctr(1, 0, 10, 10, 0, 0, 0, 0, 10 * 3000);
	atomic_store(&shm->workers[0].state, 1);
	atomic_store(&shm->workers[1].state, 2);
	s = metrics_prom(&w, &len);
	cr_assert_not_null(s);
	cr_assert_eq(strlen(s), len);
	cr_assert(strstr(s, "# TYPE routerd_backend_response_seconds histogram\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_responses_total{backend=\"a\",pool=\"default\",code=\"2xx\"} 37\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_responses_total{backend=\"a\",pool=\"default\",code=\"5xx\"} 2\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_requests_total{backend=\"a\",pool=\"default\"} 40\n") != NULL);
	/* 3 ms: not in le=0.0025, in le=0.005 and every bucket after it */
	cr_assert(strstr(s, "routerd_backend_response_seconds_bucket{backend=\"a\",pool=\"default\",le=\"0.0025\"} 0\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_response_seconds_bucket{backend=\"a\",pool=\"default\",le=\"0.005\"} 40\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_response_seconds_bucket{backend=\"a\",pool=\"default\",le=\"+Inf\"} 40\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_response_seconds_count{backend=\"a\",pool=\"default\"} 40\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_response_seconds_sum{backend=\"a\",pool=\"default\"} 0.120000\n") != NULL);
	/* a quote in a name is escaped */
	cr_assert(strstr(s, "{backend=\"phi\\\"3\",pool=\"llm\"}") != NULL);
	cr_assert(strstr(s, "routerd_workers{state=\"running\"} 1\n") != NULL);
	cr_assert(strstr(s, "routerd_workers{state=\"draining\"} 1\n") != NULL);
	cr_assert(strstr(s, "routerd_backend_breaker_state{backend=\"a\",pool=\"default\",state=\"closed\"} 1\n") != NULL);
	free(s);
}

static json_t *
drill(int breaker, const char *body, struct admin_resp *r)
{
	json_t	*b = json_loads(body, 0, NULL);
	int	 rc;

	cr_assert_not_null(b);
	memset(r, 0, sizeof(*r));
	rc = breaker ? drill_breaker(&w, NULL, b, r) : drill_failover(&w, NULL, b, r);
	json_decref(b);
	cr_assert_eq(rc, 0, "a synchronous answer was expected");
	cr_assert_not(drill_busy());
	return r->json;
}

Test(admin, drills_validate_and_dry_run)
{
	struct admin_resp	 r;
	json_t			*j, *o;

	j = drill(0, "{\"primary_backend\": \"zzz\"}", &r);
	cr_assert_eq(r.status, 404);
	json_decref(j);
	j = drill(0, "{\"primary_backend\": \"a\", \"duration_ms\": -1}", &r);
	cr_assert_eq(r.status, 400);
	json_decref(j);
	j = drill(0, "{\"primary_backend\": \"a\", \"simulate_failure\": \"yes\"}", &r);
	cr_assert_eq(r.status, 400);
	json_decref(j);
	j = drill(0, "{}", &r);
	cr_assert_eq(r.status, 400);
	json_decref(j);

	/* dry run: the balancer's choice without a, and a is back at once */
	j = drill(0, "{\"primary_backend\": \"a\", \"simulate_failure\": false}", &r);
	cr_assert_eq(r.status, 200);
	o = json_object_get(j, "failover_test");
	cr_assert_str_eq(json_string_value(json_object_get(o, "backup_backend")), "b");
	cr_assert(json_is_false(json_object_get(o, "failover_triggered")));
	cr_assert(json_is_null(json_object_get(o, "requests_lost")));
	cr_assert_eq(w.view.be[0].flags & SHM_F_DISABLED, 0);
	json_decref(j);

	/* the whole primary tier of a pool: the backup tier takes over */
	j = drill(1, "{\"backend\": \"default\", \"simulate_failure\": false}", &r);
	cr_assert_eq(r.status, 200);
	o = json_object_get(j, "circuit_breaker_test");
	cr_assert_str_eq(json_string_value(json_object_get(o, "backup_backend")), "c");
	cr_assert_eq(json_array_size(json_object_get(o, "backends")), 2);
	cr_assert_str_eq(json_string_value(json_object_get(o, "initial_state")),
	    "closed");
	cr_assert_eq(num(o, "failure_threshold"), 10);
	cr_assert_eq(w.view.be[0].flags & SHM_F_DISABLED, 0);
	cr_assert_eq(w.view.be[1].flags & SHM_F_DISABLED, 0);
	json_decref(j);

	/* the only backend of its pool: the drill refuses to cut live traffic */
	j = drill(0, "{\"primary_backend\": \"phi\\\"3\"}", &r);
	cr_assert_eq(r.status, 200);
	o = json_object_get(j, "failover_test");
	cr_assert(json_is_null(json_object_get(o, "backup_backend")));
	cr_assert(json_is_false(json_object_get(o, "failover_triggered")));
	cr_assert_not_null(json_object_get(o, "note"));
	cr_assert_eq(w.view.be[3].flags & SHM_F_DISABLED, 0);
	json_decref(j);
}

Test(admin, drill_orders_go_to_the_master)
{
	struct admin_resp	 r;
	json_t			*b;
	struct adminconn	*fake = (struct adminconn *)&r;	/* never dereferenced by drill.c */

	b = json_loads("{\"primary_backend\": \"a\", \"duration_ms\": 5000}", 0, NULL);
	memset(&r, 0, sizeof(r));
	/*
	 * the drill orders the real breaker through the master; with no link
	 * to one (no mctl_init() here) it is refused at once with a 503 and
	 * nothing is touched: not the breaker, not the order words, not the view
	 */
	cr_assert_eq(drill_failover(&w, fake, b, &r), 0);
	cr_assert_eq(r.status, 503);
	cr_assert_not(drill_busy());
	cr_assert_eq(atomic_load(&shm_slot(shm, 0)->force_breaker), SHM_FORCE_NONE);
	cr_assert_eq(atomic_load(&shm_slot(shm, 0)->force_seq), 0);
	cr_assert_eq(atomic_load(&shm_slot(shm, 0)->breaker), SHM_BREAKER_CLOSED);
	cr_assert_eq(w.view.be[0].flags & SHM_F_DISABLED, 0);
	cr_assert_eq(w.loop.nheap, 0, "a drill timer is armed");
	json_decref(r.json);
	json_decref(b);
}

/*
 * Unit tests of what shows flow control: the sums of the workers' queue
 * rows, the tenants as shown (merged by label, the busiest first, bytes
 * made printable), their JSON (routerctl show queue / show tenants and
 * the admin API) and their /metrics families, over a real shared table
 * written the way the workers do.
 */
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
#include "worker/balance.h"
#include "worker/flowview.h"
#include "worker/worker.h"

#define NB	4
#define NW	3
#define BAND(p)	((p) + SHM_BANDS / 2)

static struct shm_hdr	*shm;
static struct conf	 cf;
static struct conf_pool	 cpools[2];
static struct worker	 w;

static void
setup(void)
{
	const char	*names[2] = { "default", "llm" };
	uint32_t	 i;

	shm = shm_create(NB, NW, NULL);
	cr_assert_not_null(shm);
	memset(&cf, 0, sizeof(cf));
	memset(cpools, 0, sizeof(cpools));
	strcpy(cpools[0].name, "default");
	strcpy(cpools[1].name, "llm");
	cf.pools = cpools;
	cf.npools = 2;
	shm_pool_set(shm, 0, "default", STRAT_ROUND_ROBIN, STRAT_ROUND_ROBIN);
	shm_pool_set(shm, 1, "llm", STRAT_LEAST_TOKENS, STRAT_LEAST_TOKENS);
	shm_gen_bump(shm);

	memset(&w, 0, sizeof(w));
	w.conf = &cf;
	w.shm = shm;
	w.view.shm = shm;
	w.view.nstripes = NW;
	w.view.be = calloc(NB, sizeof(*w.view.be));
	w.view.npools = 2;
	w.view.pools = calloc(2, sizeof(*w.view.pools));
	for (i = 0; i < 2; i++)
		w.view.pools[i].idx = calloc(NB, sizeof(uint32_t));
	balance_view_pools(&w.view, names);
}

static void
teardown(void)
{
	uint32_t i;

	for (i = 0; i < 2; i++)
		free(w.view.pools[i].idx);
	free(w.view.pools);
	free(w.view.be);
	shm_destroy(shm);
}

TestSuite(flowview, .init = setup, .fini = teardown);

/* Worker wk's row of pool 0: n requests of priority prio that waited ms each. */
static void
waited(uint32_t wk, int prio, uint64_t n, uint64_t ms)
{
	struct shm_poolq *q = &shm->poolq[wk][0];

	atomic_fetch_add(&q->waits, n);
	atomic_fetch_add(&q->wait_ms, n * ms);
	atomic_fetch_add(&q->band_admitted[BAND(prio)], n);
	atomic_fetch_add(&q->wait_hist[shm_lat_bucket(ms * 1000)], n);
}

/* A tenant entry as flow.c takes one: the key, then its label. */
static struct shm_tenant *
tenant(uint32_t idx, uint64_t key, const char *label, uint64_t requests)
{
	struct shm_tenant *t = &shm->tenants[idx];

	atomic_store(&t->key, key);
	memset(t->label, 0, sizeof(t->label));
	if (label != NULL)
		memcpy(t->label, label, strlen(label));
	atomic_store(&t->requests, requests);
	return t;
}

static json_t *
get(json_t *o, const char *path)
{
	char	buf[128], *p, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = strtok_r(buf, ".", &save); p != NULL && o != NULL;
	    p = strtok_r(NULL, ".", &save))
		o = json_is_array(o) ? json_array_get(o, (size_t)atoi(p)) :
		    json_object_get(o, p);
	return o;
}

static json_int_t
num(json_t *o, const char *path)
{
	json_t	*v = get(o, path);

	cr_assert(json_is_integer(v), "%s is not an integer", path);
	return json_integer_value(v);
}

Test(flowview, queue_sums_every_worker_and_shows_used_bands)
{
	json_t	*j;

	waited(0, 3, 2, 100);
	waited(2, 3, 1, 400);
	waited(1, -8, 1, 50);
	atomic_store(&shm->poolq[1][0].queued, 2);
	atomic_store(&shm->poolq[1][0].band_queued[BAND(7)], 2);
	atomic_store(&shm->poolq[0][0].dropped, 1);
	atomic_store(&shm->poolq[2][0].dropped, 2);
	atomic_store(&shm->poolq[2][0].expired, 4);
	atomic_store(&shm->poolq[0][0].limited, 5);
	atomic_store(&shm->poolq[1][0].timeouts, 6);
	atomic_store(&shm->poolq[2][0].rejected, 7);
	atomic_store(&shm->workers[0].bud_retries, 3);
	atomic_store(&shm->workers[2].bud_retries, 4);
	atomic_store(&shm->workers[1].bud_refused, 9);

	j = flowview_queue_json(shm);
	cr_assert_not_null(j);
	cr_assert_eq(json_array_size(get(j, "pools")), 2);
	cr_assert_str_eq(json_string_value(get(j, "pools.0.pool")), "default");
	cr_assert_eq(num(j, "pools.0.waiting"), 2);
	cr_assert_eq(num(j, "pools.0.waits"), 4);
	cr_assert_float_eq(json_real_value(get(j, "pools.0.wait_ms_avg")),
	    (2 * 100 + 400 + 50) / 4.0, 0.01);
	cr_assert_eq(num(j, "pools.0.deadline_dropped"), 3);
	cr_assert_eq(num(j, "pools.0.deadline_expired"), 4);
	cr_assert_eq(num(j, "pools.0.ratelimited"), 5);
	cr_assert_eq(num(j, "pools.0.timeouts"), 6);
	cr_assert_eq(num(j, "pools.0.rejected"), 7);
	/* highest first: 7 (waiting), 3, 0 (always), -8; none of the rest */
	cr_assert_eq(json_array_size(get(j, "pools.0.bands")), 4);
	cr_assert_eq(num(j, "pools.0.bands.0.priority"), 7);
	cr_assert_eq(num(j, "pools.0.bands.0.waiting"), 2);
	cr_assert_eq(num(j, "pools.0.bands.0.admitted"), 0);
	cr_assert_eq(num(j, "pools.0.bands.1.priority"), 3);
	cr_assert_eq(num(j, "pools.0.bands.1.admitted"), 3);
	cr_assert_eq(num(j, "pools.0.bands.2.priority"), 0);
	cr_assert_eq(num(j, "pools.0.bands.3.priority"), -8);
	cr_assert_eq(num(j, "pools.0.bands.3.admitted"), 1);
	/* an idle pool: its priority 0 band, no average yet */
	cr_assert_str_eq(json_string_value(get(j, "pools.1.pool")), "llm");
	cr_assert_eq(json_array_size(get(j, "pools.1.bands")), 1);
	cr_assert_eq(num(j, "pools.1.bands.0.priority"), 0);
	cr_assert(json_is_null(get(j, "pools.1.wait_ms_avg")));
	cr_assert_eq(num(j, "retry_budget.retries"), 7);
	cr_assert_eq(num(j, "retry_budget.refused"), 9);
	json_decref(j);

	/* a retired pool leaves the answer */
	shm_pool_retire(shm, 1);
	j = flowview_queue_json(shm);
	cr_assert_eq(json_array_size(get(j, "pools")), 1);
	json_decref(j);
}

Test(flowview, tenants_merged_by_label_busiest_first_printable)
{
	struct flowview_tenant	*v;
	struct shm_tenant	*t;
	json_t			*j;
	size_t			 n;

	cr_assert_null(flowview_tenants(shm, &n));
	cr_assert_eq(n, 0);
	j = flowview_tenants_json(shm);
	cr_assert_eq(json_array_size(get(j, "tenants")), 0);
	json_decref(j);

	t = tenant(7, 0x1001, "sk-a...0001", 5);
	atomic_store(&t->limited_req, 2);
	atomic_store(&t->waits, 1);
	atomic_store(&t->wait_ms, 30);
	atomic_store(&t->last_ms, 1752589800123ULL);
	/* another key with the same ends: the reader sees one tenant */
	t = tenant(900, 0x2001, "sk-a...0001", 2);
	atomic_store(&t->limited_tok, 4);
	atomic_store(&t->waits, 1);
	atomic_store(&t->wait_ms, 10);
	atomic_store(&t->queued, 1);
	atomic_store(&t->last_ms, 1752589900000ULL);
	tenant(3, 0x3001, "b\x01q\"\\\xe9", 9);
	t = tenant(4, 0x4001, "10.0.0.9", 1);
	atomic_store(&t->queued, -1);		/* a decrement seen before its increment */
	tenant(5, 0x5001, NULL, 50);		/* taken, its label not written yet */
	tenant(6, 0, "ghost", 50);		/* no key: free */

	v = flowview_tenants(shm, &n);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(v[0].label, "b?q\"\\?");
	cr_assert_eq(v[0].requests, 9);
	cr_assert_str_eq(v[1].label, "sk-a...0001");
	cr_assert_eq(v[1].requests, 7);
	cr_assert_eq(v[1].limited_req, 2);
	cr_assert_eq(v[1].limited_tok, 4);
	cr_assert_eq(v[1].waits, 2);
	cr_assert_eq(v[1].wait_ms, 40);
	cr_assert_eq(v[1].queued, 1);
	cr_assert_eq(v[1].last_ms, 1752589900000ULL);
	cr_assert_str_eq(v[2].label, "10.0.0.9");
	cr_assert_eq(v[2].queued, 0);
	free(v);

	j = flowview_tenants_json(shm);
	cr_assert_not_null(j);
	cr_assert_eq(json_array_size(get(j, "tenants")), 3);
	cr_assert_str_eq(json_string_value(get(j, "tenants.1.tenant")), "sk-a...0001");
	cr_assert_eq(num(j, "tenants.1.requests"), 7);
	cr_assert_eq(num(j, "tenants.1.limited_requests"), 2);
	cr_assert_eq(num(j, "tenants.1.limited_tokens"), 4);
	cr_assert_eq(num(j, "tenants.1.deadline_dropped"), 0);
	cr_assert_float_eq(json_real_value(get(j, "tenants.1.wait_ms_avg")), 20.0, 0.01);
	cr_assert_str_eq(json_string_value(get(j, "tenants.1.last_seen")),
	    "2025-07-15T14:31:40.000Z");
	cr_assert(json_is_null(get(j, "tenants.2.wait_ms_avg")));
	cr_assert(json_is_null(get(j, "tenants.2.last_seen")));
	json_decref(j);
}

Test(flowview, metrics_families_escaped)
{
	char	*s;
	size_t	 len;

	waited(1, 3, 1, 2);
	atomic_store(&shm->poolq[0][0].limited, 5);
	tenant(11, 0x1001, "q\"\\x", 4);
	atomic_store(&shm->tenants[11].limited_tok, 2);
	atomic_store(&shm->workers[1].bud_refused, 8);
	s = metrics_prom(&w, &len);
	cr_assert_not_null(s);
	cr_assert_eq(strlen(s), len);
#define HAS(x)	cr_assert_not_null(strstr(s, x), "no %s", x)
	HAS("# TYPE routerd_queue_waiting gauge\n");
	HAS("routerd_queue_waiting{pool=\"default\",priority=\"3\"} 0\n");
	HAS("routerd_queue_waiting{pool=\"default\",priority=\"0\"} 0\n");
	HAS("routerd_queue_waiting{pool=\"llm\",priority=\"0\"} 0\n");
	HAS("routerd_queue_admitted_total{pool=\"default\",priority=\"3\"} 1\n");
	HAS("# TYPE routerd_queue_wait_seconds histogram\n");
	HAS("routerd_queue_wait_seconds_bucket{pool=\"default\",le=\"0.0025\"} 1\n");
	HAS("routerd_queue_wait_seconds_bucket{pool=\"default\",le=\"+Inf\"} 1\n");
	HAS("routerd_queue_wait_seconds_sum{pool=\"default\"} 0.002\n");
	HAS("routerd_queue_wait_seconds_count{pool=\"default\"} 1\n");
	HAS("routerd_ratelimited_total{pool=\"default\"} 5\n");
	HAS("routerd_queue_deadline_dropped_total{pool=\"llm\"} 0\n");
	HAS("routerd_tenant_requests_total{tenant=\"q\\\"\\\\x\"} 4\n");
	HAS("routerd_tenant_ratelimited_total{tenant=\"q\\\"\\\\x\",limit=\"tokens\"} 2\n");
	HAS("routerd_tenant_ratelimited_total{tenant=\"q\\\"\\\\x\",limit=\"requests\"} 0\n");
	HAS("routerd_tenant_queue_wait_seconds_total{tenant=\"q\\\"\\\\x\"} 0.000\n");
	HAS("routerd_retry_budget_refused_total 8\n");
	HAS("routerd_retry_budget_retries_total 0\n");
#undef HAS
	cr_assert_null(strstr(s, "priority=\"1\""), "an unused band has samples");
	free(s);
}

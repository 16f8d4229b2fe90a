/*
 * Unit tests of what shows routerd's LLM routing: the decision rings'
 * reader (shm_explain_read()), their JSON (explain_json(), GET
 * /api/v1/explain) and the (backend, model) and pool families of
 * /metrics, over a real shared table written the way the workers do.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "conf/conf.h"
#include "shm/table.h"
#include "worker/admin.h"
#include "worker/balance.h"
#include "worker/explain.h"
#include "worker/worker.h"

#define NB	8
#define NW	3

static struct shm_hdr	*shm;
static struct conf	 cf;
static struct conf_pool	 cpools[2];
static struct worker	 w;
static int		 m_phi, m_llama;

static void
add(uint32_t slot, const char *name, uint32_t pool, int m0, int m1)
{
	struct shm_desc d;

	memset(&d, 0, sizeof(d));
	strcpy(d.name, name);
	snprintf(d.addr, sizeof(d.addr), "127.0.0.1:%u", 9000 + slot);
	d.pool = pool;
	d.weight = 1;
	d.flags = SHM_F_INUSE | SHM_F_STATIC;
	if (m0 >= 0)
		d.models[d.nmodels++] = (uint32_t)m0;
	if (m1 >= 0)
		d.models[d.nmodels++] = (uint32_t)m1;
	shm_desc_write(shm_slot(shm, slot), &d);
	if (slot + 1 > atomic_load(&shm->nslots))
		atomic_store(&shm->nslots, slot + 1);
}

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
	cpools[1].strategy = STRAT_LEAST_TOKENS;
	cf.pools = cpools;
	cf.npools = 2;
	shm_pool_set(shm, 0, "default", STRAT_ROUND_ROBIN, STRAT_ROUND_ROBIN);
	shm_pool_set(shm, 1, "llm", STRAT_LEAST_TOKENS, STRAT_ROUND_ROBIN);
	m_phi = shm_model_intern(shm, "phi3");
	m_llama = shm_model_intern(shm, "llama");
	add(0, "a", 0, -1, -1);
	add(1, "gpu\"1", 1, m_phi, m_llama);
	add(2, "gpu2", 1, m_llama, -1);
	shm_gen_bump(shm);

	memset(&w, 0, sizeof(w));
	w.conf = &cf;
	w.shm = shm;
	w.index = 0;
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

TestSuite(seeing, .init = setup, .fini = teardown);

/* A worker's write of its next decision, as the seqlock protocol wants it. */
static void
decide(uint32_t wk, uint64_t ms, const char *rid, uint32_t pool, int pick,
    int shadow, int model, uint32_t reason, uint32_t ncand)
{
	struct shm_explain	*x = shm_explain(shm, wk);
	uint64_t		 pos = atomic_load(&x->head);
	struct shm_decision	*e = &x->ent[pos & (SHM_EXPLAIN_LEN - 1)];
	uint32_t		 s = atomic_load(&e->seq), i;

	atomic_store_explicit(&e->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	e->pool = pool;
	e->strategy = STRAT_LEAST_TOKENS;
	e->reason = reason;
	e->pick = pick;
	e->shadow = shadow;
	e->model = model;
	e->ncand = ncand;
	e->blocks = 3;
	e->prompt_tokens = 120;
	e->ms = ms;
	memset(e->rid, 0, sizeof(e->rid));
	strncpy(e->rid, rid, sizeof(e->rid));
	for (i = 0; i < ncand && i < SHM_EXPLAIN_CANDS; i++) {
		e->cand[i].slot = (int32_t)(1 + i % 2);
		e->cand[i].match = i == 0 ? 3 : 0;
		e->cand[i].score = 1000 * (i + 1);
	}
	atomic_store_explicit(&e->seq, s + 2, memory_order_release);
	atomic_store_explicit(&x->head, pos + 1, memory_order_release);
}

Test(seeing, explain_read_newest_first_over_workers)
{
	struct shm_decision_copy out[8];
	int			 n;

	cr_assert_eq(shm_explain_read(shm, out, 8), 0, "empty rings give nothing");
	decide(0, 1000, "r0", 1, 1, 2, m_phi, BAL_R_AFFINITY, 2);
	decide(2, 3000, "r2", 1, 2, -1, -1, BAL_R_COLD, 1);
	decide(1, 2000, "r1", 0, 0, -1, -1, BAL_R_STRATEGY, 1);
	decide(0, 4000, "r0b", 1, 1, 1, m_llama, BAL_R_SATURATED, 2);
	n = shm_explain_read(shm, out, 8);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(out[0].d.rid, "r0b");
	cr_assert_str_eq(out[1].d.rid, "r2");
	cr_assert_str_eq(out[2].d.rid, "r1");
	cr_assert_str_eq(out[3].d.rid, "r0");
	cr_assert_eq(out[1].worker, 2);
	cr_assert_eq(out[0].pos, 1);
	cr_assert_eq(out[0].d.seq % 2, 0);
	n = shm_explain_read(shm, out, 2);
	cr_assert_eq(n, 2, "at most max");
	cr_assert_str_eq(out[1].d.rid, "r2");
}

Test(seeing, explain_read_ring_wraps_and_skips_a_torn_entry)
{
	struct shm_decision_copy *out = calloc(200, sizeof(*out));
	char			 rid[16];
	int			 i, n;

	for (i = 1; i <= 100; i++) {
		snprintf(rid, sizeof(rid), "q%d", i);
		decide(1, 10000 + (uint64_t)i, rid, 1, 1, -1, -1, BAL_R_LOAD, 1);
	}
	n = shm_explain_read(shm, out, 200);
	cr_assert_eq(n, SHM_EXPLAIN_LEN, "a ring keeps its last %d", SHM_EXPLAIN_LEN);
	cr_assert_str_eq(out[0].d.rid, "q100");
	cr_assert_str_eq(out[SHM_EXPLAIN_LEN - 1].d.rid, "q37");
	/* a worker caught in the middle of a write: that entry is left out, not waited for */
	atomic_fetch_add(&shm_explain(shm, 1)->ent[99 & (SHM_EXPLAIN_LEN - 1)].seq, 1);
	n = shm_explain_read(shm, out, 200);
	cr_assert_eq(n, SHM_EXPLAIN_LEN - 1);
	cr_assert_str_eq(out[0].d.rid, "q99");
	free(out);
}

/*
 * A writer process rewrites one worker's ring as fast as it can, every
 * entry's fields derived from its ms; the reader must never see a mix.
 */
Test(seeing, explain_read_never_torn)
{
	struct shm_decision_copy out[SHM_EXPLAIN_LEN];
	pid_t			 pid;
	int			 round, i, n, st, seen = 0;

	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		uint64_t ms;

		for (ms = 1; ms < 400000; ms++) {
			char rid[40];

			snprintf(rid, sizeof(rid), "t%llu", (unsigned long long)ms);
			decide(0, ms, rid, (uint32_t)(ms % 2), (int)(ms % 3),
			    (int)(ms % 5), -1, (uint32_t)(ms % BAL_R_COUNT),
			    (uint32_t)(ms % SHM_EXPLAIN_CANDS) + 1);
		}
		_exit(0);
	}
	for (round = 0; round < 100 || waitpid(pid, &st, WNOHANG) == 0; round++) {
		n = shm_explain_read(shm, out, SHM_EXPLAIN_LEN);
		for (i = 0; i < n; i++) {
			const struct shm_decision *d = &out[i].d;
			char rid[40];

			snprintf(rid, sizeof(rid), "t%llu", (unsigned long long)d->ms);
			cr_assert_str_eq(d->rid, rid);
			cr_assert_eq(d->pool, d->ms % 2);
			cr_assert_eq(d->pick, (int)(d->ms % 3));
			cr_assert_eq(d->shadow, (int)(d->ms % 5));
			cr_assert_eq(d->ncand, d->ms % SHM_EXPLAIN_CANDS + 1);
			cr_assert(i == 0 || out[i - 1].d.ms > d->ms, "newest first");
		}
		seen += n;
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_gt(seen, SHM_EXPLAIN_LEN, "the reader saw the writer's decisions (%d)", seen);
}

Test(seeing, explain_json_names)
{
	json_t	*j, *ds, *d, *c;

	decide(0, 1752589800123ULL, "req-1", 1, 1, 2, m_phi, BAL_R_AFFINITY, 2);
	decide(1, 1752589800500ULL, "req-2", 0, -1, -1, -1, BAL_R_NONE, 0);
	j = explain_json(shm, 10);
	cr_assert_not_null(j);
	ds = json_object_get(j, "decisions");
	cr_assert_eq(json_array_size(ds), 2);
	d = json_array_get(ds, 1);
	cr_assert_str_eq(json_string_value(json_object_get(d, "time")), "2025-07-15T14:30:00.123Z");
	cr_assert_str_eq(json_string_value(json_object_get(d, "request_id")), "req-1");
	cr_assert_str_eq(json_string_value(json_object_get(d, "pool")), "llm");
	cr_assert_str_eq(json_string_value(json_object_get(d, "model")), "phi3");
	cr_assert_str_eq(json_string_value(json_object_get(d, "strategy")), "least_tokens");
	cr_assert_str_eq(json_string_value(json_object_get(d, "reason")), "affinity");
	cr_assert_str_eq(json_string_value(json_object_get(d, "pick")), "gpu\"1");
	cr_assert_str_eq(json_string_value(json_object_get(d, "shadow")), "gpu2");
	cr_assert_eq(json_integer_value(json_object_get(d, "candidates_seen")), 2);
	cr_assert_eq(json_integer_value(json_object_get(d, "prefix_blocks")), 3);
	c = json_object_get(d, "candidates");
	cr_assert_eq(json_array_size(c), 2);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(c, 0), "backend")), "gpu\"1");
	cr_assert(json_is_true(json_object_get(json_array_get(c, 0), "picked")));
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(c, 0), "match")), 3);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(c, 1), "score")), 2000);
	cr_assert(json_is_false(json_object_get(json_array_get(c, 1), "picked")));
	/* nothing picked, no model: nulls, not names */
	d = json_array_get(ds, 0);
	cr_assert(json_is_null(json_object_get(d, "pick")));
	cr_assert(json_is_null(json_object_get(d, "shadow")));
	cr_assert(json_is_null(json_object_get(d, "model")));
	cr_assert_str_eq(json_string_value(json_object_get(d, "reason")), "none");
	cr_assert_str_eq(json_string_value(json_object_get(d, "pool")), "default");
	json_decref(j);
	cr_assert_str_eq(explain_reason_name(BAL_R_OVERRIDE), "override");
	cr_assert_str_eq(explain_reason_name(BAL_R_COUNT), "unknown");
}

static char *
get(const char *path, const char *query)
{
	static char		 resp[256 * 1024];
	struct admin_req	 q;
	struct buf		 out;

	memset(&q, 0, sizeof(q));
	q.method = "GET";
	q.path = path;
	q.query = query;
	out.cap = 64;
	out.data = malloc(out.cap);
	out.rpos = out.wpos = 0;
	cr_assert_eq(admin_handle(&w, NULL, &q, &out), 0);
	cr_assert_lt(out.wpos, sizeof(resp));
	memcpy(resp, out.data, out.wpos);
	resp[out.wpos] = '\0';
	free(out.data);
	return resp;
}

Test(seeing, explain_endpoint)
{
	char	*s;
	json_t	*j;
	int	 i;

	for (i = 0; i < 15; i++)
		decide((uint32_t)i % NW, 5000 + (uint64_t)i, "r", 1, 1, -1, -1,
		    BAL_R_STRATEGY, 1);
	s = get("/api/v1/explain", "");
	cr_assert_eq(atoi(s + 9), 200);
	j = json_loads(strstr(s, "\r\n\r\n") + 4, 0, NULL);
	cr_assert_eq(json_array_size(json_object_get(j, "decisions")), EXPLAIN_DEFAULT);
	json_decref(j);
	s = get("/api/v1/explain", "x=1&n=3");
	cr_assert_eq(atoi(s + 9), 200);
	j = json_loads(strstr(s, "\r\n\r\n") + 4, 0, NULL);
	cr_assert_eq(json_array_size(json_object_get(j, "decisions")), 3);
	json_decref(j);
	s = get("/api/v1/explain", "n=0");
	cr_assert_eq(atoi(s + 9), 400);
	s = get("/api/v1/explain", "n=abc");
	cr_assert_eq(atoi(s + 9), 400);
	s = get("/api/v1/explain", "n=99999999999999999999");
	cr_assert_eq(atoi(s + 9), 400);
	s = get("/api/v1/explain", "n=4096");
	cr_assert_eq(atoi(s + 9), 200);
}

/* A worker's figures for one (slot, pair): n requests of ttft_us, itl gaps, tokens. */
static void
pair_traffic(uint32_t wk, uint32_t slot, uint32_t pair, uint64_t n,
    uint64_t ttft_us, uint64_t itl_us, uint64_t ptok, uint64_t otok)
{
	struct shm_pair *p = shm_pair(shm, wk, slot, pair);

	shm_ctr_add(&p->requests, n);
	shm_ctr_add(&p->done, n);
	shm_ctr_add(&p->ttft_sum_us, n * ttft_us);
	shm_ctr_add(&p->ttft_hist[shm_lat_bucket(ttft_us)], n);
	shm_ctr_add(&p->itl_sum_us, n * 10 * itl_us);
	shm_ctr_add(&p->itl_count, n * 10);
	shm_ctr_add(&p->itl_hist[shm_lat_bucket(itl_us)], n * 10);
	shm_ctr_add(&p->prompt_tokens, n * ptok);
	shm_ctr_add(&p->output_tokens, n * otok);
	shm_ctr_add(&p->cached_tokens, n * ptok / 2);
	shm_ctr_add(&p->ptok_hist[shm_tok_bucket(ptok)], n);
	shm_ctr_add(&p->otok_hist[shm_tok_bucket(otok)], n);
}

static void
has(const char *s, const char *line)
{
	cr_assert(strstr(s, line) != NULL, "missing: %s", line);
}

Test(seeing, metrics_pairs_and_pools)
{
	char	*s;
	size_t	 len;

	/* gpu"1 serves phi3 (pair 0) and llama; two workers' stripes add up */
	pair_traffic(0, 1, 0, 3, 40000, 2000, 100, 7);
	pair_traffic(2, 1, 0, 1, 40000, 2000, 100, 7);
	/* a request for a model gpu2 does not list: the "other" pair */
	pair_traffic(1, 2, SHM_SLOT_MODELS, 2, 300000, 20000, 3000, 600);
	atomic_store(&shm_pair(shm, 1, 2, SHM_SLOT_MODELS)->prompt, 900);
	atomic_store(&shm_pair(shm, 1, 2, SHM_SLOT_MODELS)->uncached, 400);
	atomic_store(&shm_pair(shm, 1, 2, SHM_SLOT_MODELS)->output, 50);
	atomic_store(&shm_pair(shm, 1, 2, SHM_SLOT_MODELS)->reqs, 1);
	atomic_store(&shm->poolq[0][1].shadow_agree, 5);
	atomic_store(&shm->poolq[2][1].shadow_agree, 2);
	atomic_store(&shm->poolq[1][1].shadow_differ, 3);
	atomic_store(&shm->poolq[0][0].override_used, 4);
	atomic_store(&shm->poolq[1][0].override_ignored, 6);
	atomic_store(&shm->poolq[0][1].affinity, 8);
	atomic_store(&shm->poolq[0][1].affinity_yield, 1);
	atomic_store(&shm->poolq[2][1].cold, 2);

	s = metrics_prom(&w, &len);
	cr_assert_not_null(s);
	has(s, "# TYPE routerd_backend_ttft_seconds histogram\n");
	has(s, "# TYPE routerd_backend_itl_seconds histogram\n");
	has(s, "# TYPE routerd_backend_prompt_tokens histogram\n");
	has(s, "# TYPE routerd_backend_output_tokens histogram\n");
	has(s, "# TYPE routerd_backend_llm_requests_total counter\n");
	has(s, "# TYPE routerd_backend_tokens_inflight gauge\n");
	/* 40 ms: above le=0.025, inside le=0.05 */
	has(s, "routerd_backend_ttft_seconds_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"0.025\"} 0\n");
	has(s, "routerd_backend_ttft_seconds_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"0.05\"} 4\n");
	has(s, "routerd_backend_ttft_seconds_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"+Inf\"} 4\n");
	has(s, "routerd_backend_ttft_seconds_sum{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 0.160000\n");
	has(s, "routerd_backend_ttft_seconds_count{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 4\n");
	has(s, "routerd_backend_itl_seconds_count{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 40\n");
	has(s, "routerd_backend_itl_seconds_sum{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 0.080000\n");
	/* 100 tokens: above le=64, inside le=128 */
	has(s, "routerd_backend_prompt_tokens_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"64\"} 0\n");
	has(s, "routerd_backend_prompt_tokens_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"128\"} 4\n");
	has(s, "routerd_backend_prompt_tokens_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"+Inf\"} 4\n");
	has(s, "routerd_backend_prompt_tokens_sum{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 400\n");
	has(s, "routerd_backend_output_tokens_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"4\"} 0\n");
	has(s, "routerd_backend_output_tokens_bucket{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\",le=\"8\"} 4\n");
	has(s, "routerd_backend_llm_requests_total{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 4\n");
	has(s, "routerd_backend_prompt_tokens_total{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 400\n");
	has(s, "routerd_backend_output_tokens_total{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 28\n");
	has(s, "routerd_backend_cached_tokens_total{backend=\"gpu\\\"1\",pool=\"llm\",model=\"phi3\"} 200\n");
	/* the pair without traffic (gpu"1, llama) and backend a's: no samples at all */
	cr_assert_null(strstr(s, "model=\"llama\",le="));
	cr_assert_null(strstr(s, "routerd_backend_llm_requests_total{backend=\"gpu\\\"1\",pool=\"llm\",model=\"llama\""));
	cr_assert_null(strstr(s, "routerd_backend_tokens_inflight{backend=\"gpu\\\"1\",pool=\"llm\",model=\"llama\""));
	cr_assert_null(strstr(s, "routerd_backend_llm_requests_total{backend=\"a\""));
	/* another model at gpu2 */
	has(s, "routerd_backend_prompt_tokens_bucket{backend=\"gpu2\",pool=\"llm\",model=\"other\",le=\"2048\"} 0\n");
	has(s, "routerd_backend_prompt_tokens_bucket{backend=\"gpu2\",pool=\"llm\",model=\"other\",le=\"4096\"} 2\n");
	has(s, "routerd_backend_tokens_inflight{backend=\"gpu2\",pool=\"llm\",model=\"other\",kind=\"prompt\"} 900\n");
	has(s, "routerd_backend_tokens_inflight{backend=\"gpu2\",pool=\"llm\",model=\"other\",kind=\"uncached\"} 400\n");
	has(s, "routerd_backend_tokens_inflight{backend=\"gpu2\",pool=\"llm\",model=\"other\",kind=\"output\"} 50\n");
	/* the pools: summed over the workers' rows */
	has(s, "# TYPE routerd_pool_shadow_decisions_total counter\n");
	has(s, "routerd_pool_shadow_decisions_total{pool=\"llm\",result=\"agree\"} 7\n");
	has(s, "routerd_pool_shadow_decisions_total{pool=\"llm\",result=\"differ\"} 3\n");
	has(s, "routerd_pool_shadow_decisions_total{pool=\"default\",result=\"agree\"} 0\n");
	has(s, "routerd_pool_strategy_overrides_total{pool=\"default\",result=\"used\"} 4\n");
	has(s, "routerd_pool_strategy_overrides_total{pool=\"default\",result=\"ignored\"} 6\n");
	has(s, "routerd_pool_llm_picks_total{pool=\"llm\",reason=\"affinity\"} 8\n");
	has(s, "routerd_pool_llm_picks_total{pool=\"llm\",reason=\"yield\"} 1\n");
	has(s, "routerd_pool_llm_picks_total{pool=\"llm\",reason=\"cold\"} 2\n");
	/* each family once, its samples together (the text format wants them so) */
	cr_assert_null(strstr(strstr(s, "# TYPE routerd_pool_llm_picks_total") + 1,
	    "# TYPE routerd_pool_llm_picks_total"));
	cr_assert_null(strstr(strstr(s, "routerd_pool_llm_picks_total{pool=\"llm\",reason=\"cold\"}"),
	    "# TYPE routerd_pool_llm_picks_total"));
	free(s);
}

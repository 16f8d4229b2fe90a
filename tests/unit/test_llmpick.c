/* Unit tests of the llm strategy (worker/balance.c): affinity, saturation, cold placement, filters, the decision ring. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conf/conf.h"
#include "shm/table.h"
#include "worker/balance.h"
#include "worker/jscan.h"

#define NB	8
#define NW	2

static struct shm_hdr	*shm;
static struct wbe	 be[NB];
static struct wpool	 pool;
static uint32_t		 idx[NB];
static struct wview	 v;
static uint64_t		 blocks[4][16];

static void
setup(void)
{
	uint32_t	i, g, b;
	char		name[16];

	shm = shm_create(NB, NW, NULL);
	cr_assert_not_null(shm);
	memset(be, 0, sizeof(be));
	memset(&pool, 0, sizeof(pool));
	memset(&v, 0, sizeof(v));
	pool.idx = idx;
	v.shm = shm;
	v.nstripes = NW;
	v.be = be;
	v.pools = &pool;
	v.npools = 1;
	v.rng = 0x9e3779b97f4a7c15ULL;
	v.last_slot = -1;
	v.llm.affinity_limit = 200000;
	v.llm.queue_limit = 8;
	v.llm.kv_ppm = 950000;
	v.llm.load_factor = 125;
	v.llm.block = 256;
	for (i = 0; i < SHM_POOLS_MAX; i++)
		v.local[i] = i < 1 ? 0 : -1;
	strcpy(v.region, "here");
	for (i = 0; i < 4; i++) {
		be[i].inuse = 1;
		be[i].flags = SHM_F_INUSE;
		be[i].weight = 1;
		snprintf(name, sizeof(name), "gpu%u", i);
		be[i].hrw = jscan_hash(name, strlen(name), 0x6872770aULL);
		strcpy(be[i].region, i < 2 ? "here" : "there");
		idx[pool.n++] = i;
	}
	shm_pool_set(shm, 0, "llm", STRAT_LLM, STRAT_ROUND_ROBIN);
	for (g = 0; g < 4; g++)
		for (b = 0; b < 16; b++)
			blocks[g][b] = jscan_hash(&b, sizeof(b), 1000 + g) | 1;
}

static void
teardown(void)
{
	balance_view_free(&v);
	shm_destroy(shm);
}

TestSuite(llmpick, .init = setup, .fini = teardown);

static struct bal_req
req(int g, uint32_t nblocks)
{
	struct bal_req r;

	memset(&r, 0, sizeof(r));
	r.model = -1;
	r.blocks = blocks[g];
	r.nblocks = nblocks;
	r.prompt_tokens = nblocks * 64;
	r.output_tokens = 16;
	return r;
}

/* What the worker does when an attempt is sent: the prefix noted there, tokens in flight. */
static void
sent(uint32_t slot, const struct bal_req *r, uint32_t nwarm, int64_t uncached)
{
	uint32_t i;

	for (i = 0; i < nwarm; i++)
		shm_pfx_note(shm, r->blocks[i], slot, 1);
	if (uncached) {
		struct shm_counters *k = shm_ctr(shm, 1, slot);

		atomic_store(&k->tok_uncached, atomic_load(&k->tok_uncached) + uncached);
	}
}

Test(llmpick, longest_warm_prefix_wins)
{
	struct bal_req	r = req(0, 12);

	/* gpu1 has 4 blocks of this prompt, gpu3 all 12 */
	sent(1, &r, 4, 0);
	sent(3, &r, 12, 0);
	cr_assert_eq(balance_pick(&v, 0, &r), 3);
	cr_assert_eq(v.ex_reason, BAL_R_AFFINITY);
	cr_assert_eq(v.last_match, 12);
	cr_assert_eq(v.ex_ncand, 4);
	/* the same again: affinity is not a coin toss */
	cr_assert_eq(balance_pick(&v, 0, &r), 3);
}

Test(llmpick, affinity_yields_to_load_then_to_the_limit)
{
	struct bal_req	r = req(0, 12);
	struct shm_counters *k = shm_ctr(shm, 0, 3);

	sent(3, &r, 12, 0);
	/* a few requests in flight there: the saved prefill still outweighs them */
	shm_inflight_set(shm, 0, 3, 2);
	cr_assert_eq(balance_pick(&v, 0, &r), 3);
	/* many more in flight than elsewhere: the load wins, a cold backend takes it */
	shm_inflight_set(shm, 0, 3, 60);
	cr_assert_neq(balance_pick(&v, 0, &r), 3);
	shm_inflight_set(shm, 0, 3, 0);
	/* under its limit with a heavy prefill backlog elsewhere in the pool: affinity */
	v.llm.affinity_limit = 1000;
	atomic_store(&k->tok_uncached, 1001);
	cr_assert_neq(balance_pick(&v, 0, &r), 3, "1001 uncached in flight > 1000");
	cr_assert_eq(v.ex_reason, BAL_R_SATURATED);
	atomic_store(&k->tok_uncached, 100);
	cr_assert_eq(balance_pick(&v, 0, &r), 3);
	cr_assert_eq(v.ex_reason, BAL_R_AFFINITY);
}

Test(llmpick, metrics_saturate_only_while_fresh)
{
	struct bal_req	r = req(0, 12);
	struct shm_slot	*s = shm_slot(shm, 3);

	sent(3, &r, 12, 0);
	v.llm.metrics_ms = 1000;
	atomic_store(&s->m_waiting, 9);
	atomic_store(&s->m_ms, shm_now_ms());
	cr_assert_neq(balance_pick(&v, 0, &r), 3, "9 waiting >= queue_limit 8");
	atomic_store(&s->m_waiting, 2);
	atomic_store(&s->m_kv_ppm, 960000);
	cr_assert_neq(balance_pick(&v, 0, &r), 3, "96 %% KV-cache use >= kv_limit");
	/* older than three intervals: not used */
	atomic_store(&s->m_ms, shm_now_ms() - 3500);
	cr_assert_eq(balance_pick(&v, 0, &r), 3);
}

Test(llmpick, cold_prefix_by_rendezvous_with_bounded_load)
{
	struct bal_req	r0 = req(0, 8), r1 = req(1, 8), r2 = req(2, 8);
	int		a, b, c, seen[NB] = { 0 }, g, i;

	/* nothing warm: the same prompt goes to the same backend from any view */
	a = balance_pick(&v, 0, &r0);
	cr_assert_eq(v.ex_reason, BAL_R_COLD);
	pool.rr = 3;
	memset(v.cold, 0, NB * sizeof(v.cold[0]));	/* another instance, as fresh */
	cr_assert_eq(balance_pick(&v, 0, &r0), a, "placement does not depend on the turn");
	b = balance_pick(&v, 0, &r1);
	c = balance_pick(&v, 0, &r2);
	cr_assert(a >= 0 && b >= 0 && c >= 0);
	/* many prompts spread over the members */
	for (g = 0; g < 64; g++) {
		uint64_t bl[8];
		struct bal_req r = req(0, 8);

		for (i = 0; i < 8; i++)
			bl[i] = jscan_hash(&g, sizeof(g), 77 + (uint64_t)i);
		r.blocks = bl;
		seen[balance_pick(&v, 0, &r)]++;
	}
	for (i = 0; i < 4; i++)
		cr_assert_gt(seen[i], 4, "backend %d got %d of 64 new prefixes", i, seen[i]);
	/* no backend was given much more than its share of new prefixes */
	for (i = 0; i < 4; i++)
		cr_assert_leq(seen[i], 64 * 125 / 400 + 2, "backend %d got %d of 64", i, seen[i]);
	/* the hashed backend loaded well past the others: the next by hash takes it */
	memset(v.cold, 0, NB * sizeof(v.cold[0]));
	shm_inflight_set(shm, 0, (uint32_t)a, 10);
	cr_assert_neq(balance_pick(&v, 0, &r0), a);
	cr_assert_eq(v.ex_reason, BAL_R_COLD);
}

Test(llmpick, no_prefix_least_loaded)
{
	struct bal_req	r = req(0, 0);

	shm_inflight_set(shm, 0, 0, 3);
	shm_inflight_set(shm, 0, 1, 1);
	shm_inflight_set(shm, 0, 2, 2);
	shm_inflight_set(shm, 1, 3, 4);
	cr_assert_eq(balance_pick(&v, 0, &r), 1);
}

/* Dirty the stack where pick_llm's candidates will live, as earlier calls of a worker do. */
static void __attribute__((noinline))
stack_dirty(void)
{
	volatile unsigned char junk[16384];
	size_t i;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(0x5a + i);
}

Test(llmpick, short_prompt_scores_alike_whatever_the_stack)
{
	/* a prompt under one block has no prefix: no backend may look warmer */
	struct bal_req	r = req(0, 0);
	int		i, seen[NB] = { 0 };
	uint32_t	k;

	r.prompt_tokens = 14;
	for (i = 0; i < 8; i++) {
		stack_dirty();
		seen[balance_pick(&v, 0, &r)]++;
		cr_assert_eq(v.ex_ncand, 4);
		for (k = 0; k < v.ex_ncand; k++) {
			cr_assert_eq(v.ex_cand[k].match, 0, "candidate %u match %u", k,
			    v.ex_cand[k].match);
			cr_assert_eq(v.ex_cand[k].score, v.ex_cand[0].score);
		}
	}
	/* equal scores take turns */
	for (i = 0; i < 4; i++)
		cr_assert_eq(seen[i], 2, "gpu%d picked %d times of 8", i, seen[i]);
}

Test(llmpick, region_filter_then_fallback)
{
	struct bal_req	r = req(0, 12);

	sent(3, &r, 12, 0);		/* warm only in "there" */
	pool.filters = FILTER_REGION;
	cr_assert_lt(balance_pick(&v, 0, &r), 2, "region first: here, though cold");
	be[0].flags |= SHM_F_DISABLED;
	be[1].flags |= SHM_F_DISABLED;
	cr_assert_eq(balance_pick(&v, 0, &r), 3, "no eligible one here: the filter is passed over");
}

Test(llmpick, saturation_filter_before_region)
{
	struct bal_req	r = req(0, 0);
	uint32_t	i;

	v.llm.metrics_ms = 1000;
	for (i = 0; i < 2; i++) {
		atomic_store(&shm_slot(shm, i)->m_waiting, 20);
		atomic_store(&shm_slot(shm, i)->m_ms, shm_now_ms());
	}
	pool.filters = FILTER_SATURATION | (FILTER_REGION << 4);
	cr_assert_geq(balance_pick(&v, 0, &r), 2, "both here are saturated: there");
	pool.filters = FILTER_REGION | (FILTER_SATURATION << 4);
	cr_assert_lt(balance_pick(&v, 0, &r), 2, "region first: here, saturated or not");
}

Test(llmpick, decision_ring_and_shadow)
{
	struct bal_req		 r = req(0, 12);
	struct shm_explain	*e = shm_explain(shm, 0);
	struct shm_decision	*d;
	int			 slot;

	r.rid = "req-1";
	sent(2, &r, 12, 0);
	pool.shadow = STRAT_ROUND_ROBIN + 1;
	slot = balance_pick(&v, 0, &r);
	cr_assert_eq(slot, 2);
	cr_assert_eq(atomic_load(&e->head), 1);
	d = &e->ent[0];
	cr_assert_eq(atomic_load(&d->seq) % 2, 0);
	cr_assert_eq(d->strategy, STRAT_LLM);
	cr_assert_eq(d->reason, BAL_R_AFFINITY);
	cr_assert_eq(d->pick, 2);
	cr_assert_geq(d->shadow, 0);
	cr_assert_str_eq(d->rid, "req-1");
	cr_assert_eq(d->blocks, 12);
	cr_assert_eq(d->ncand, 4);
	cr_assert_eq(v.last_match, 12, "the shadow's pick does not change what the worker counts");
	cr_assert_eq(atomic_load(&shm->poolq[0][0].shadow_agree) +
	    atomic_load(&shm->poolq[0][0].shadow_differ), 1);
	cr_assert_eq(atomic_load(&shm->poolq[0][0].affinity), 1);
}

Test(llmpick, override_by_request)
{
	struct bal_req	r = req(0, 12);
	int		i, n[NB] = { 0 };

	sent(2, &r, 12, 0);
	r.override = STRAT_ROUND_ROBIN + 1;
	for (i = 0; i < 8; i++)
		n[balance_pick(&v, 0, &r)]++;
	for (i = 0; i < 4; i++)
		cr_assert_eq(n[i], 2, "round robin asked for: in turn");
	cr_assert_eq(v.ex_reason, BAL_R_OVERRIDE);
}

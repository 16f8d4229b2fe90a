/*
 * make bench: nanoseconds per backend pick, per strategy, over a table of
 * 1,000 backends.  Two figures each: the pick alone, and the pick with the
 * bookkeeping a request brings (its in-flight +1 when sent, -1 when done,
 * here with 64 requests outstanding), which the ranked strategies must
 * fold into their sums and trees, plus a latency change from the prober
 * every PROBE_EVERY picks (1,000 backends checked every 2 s against a
 * worker serving 20,000 requests a second).
 *
 * Then the llm strategy over LLM_BACKENDS of them with the prefix memory
 * full (every way of every set taken): requests of LLM_GROUPS prompt
 * groups of LLM_BLOCKS blocks, each group warm on one backend, and one
 * request in eight a cold prefix.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/conf.h"
#include "shm/table.h"
#include "worker/balance.h"

#define NBACKENDS	1000
#define NSTRIPES	2
#define PICKS		2000000
#define OUTSTANDING	64
#define PROBE_EVERY	40
#define LLM_BACKENDS	64
#define LLM_GROUPS	256
#define LLM_BLOCKS	32
#define LLM_PICKS	500000

static double
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int
main(int argc, char *argv[])
{
	struct shm_hdr	*h;
	struct wview	 v;
	struct wpool	 pool;
	struct bal_req	 req;
	uint32_t	 i;
	int		 s, n = argc > 1 ? atoi(argv[1]) : NBACKENDS;
	int		 nstripes = argc > 2 ? atoi(argv[2]) : NSTRIPES;
	static const int strategies[] = {
		STRAT_ROUND_ROBIN, STRAT_WEIGHTED, STRAT_LEAST_CONN,
		STRAT_POWER_OF_TWO, STRAT_LEAST_LATENCY, STRAT_RANDOM
	};

	if (n < 1 || n > 65536)
		n = NBACKENDS;
	if (nstripes < 1 || nstripes > SHM_WORKERS_MAX)
		nstripes = NSTRIPES;
	if ((h = shm_create((uint32_t)n, (uint32_t)nstripes, NULL)) == NULL) {
		perror("shm_create");
		return 1;
	}
	memset(&v, 0, sizeof(v));
	v.shm = h;
	v.nstripes = (uint32_t)nstripes;
	v.rng = 0x12345678abcdefULL;
	v.be = calloc((size_t)n, sizeof(*v.be));
	memset(&pool, 0, sizeof(pool));
	pool.idx = calloc((size_t)n, sizeof(uint32_t));
	pool.n = (size_t)n;
	pool.rr = 0;
	v.pools = &pool;
	v.npools = 1;
	if (v.be == NULL || pool.idx == NULL)
		return 1;
	for (i = 0; i < (uint32_t)n; i++) {
		v.be[i].inuse = 1;
		v.be[i].flags = SHM_F_INUSE;
		v.be[i].weight = 1 + i % 10;
		pool.idx[i] = i;
		/* some in-flight spread so the comparisons are not all ties */
		shm_inflight_set(h, 0, i, (int64_t)(i * 7919 % 13));
		atomic_store(&shm_slot(h, i)->lat_ewma_us, 1000 + i * 104729 % 5000);
	}
	memset(&req, 0, sizeof(req));
	req.model = -1;
	printf("backend selection, %d backends, %d worker stripes, %d picks each\n",
	    n, nstripes, PICKS);
	for (s = 0; s < (int)(sizeof(strategies) / sizeof(strategies[0])); s++) {
		double		 t0, t1, t2;
		unsigned long	 sum = 0;
		int		 out[OUTSTANDING];

		shm_pool_set(h, 0, "bench", (uint32_t)strategies[s], STRAT_ROUND_ROBIN);
		for (i = 0; i < 1000; i++)
			sum += (unsigned long)balance_pick(&v, 0, &req);
		t0 = now_ns();
		for (i = 0; i < PICKS; i++)
			sum += (unsigned long)balance_pick(&v, 0, &req);
		t1 = now_ns();
		for (i = 0; i < OUTSTANDING; i++)
			out[i] = -1;
		for (i = 0; i < PICKS; i++) {
			int	 slot = balance_pick(&v, 0, &req);
			int	*o = &out[i % OUTSTANDING];

			if (*o >= 0)
				shm_inflight_add(h, 0, (uint32_t)*o, -1);
			if ((*o = slot) >= 0)
				shm_inflight_add(h, 0, (uint32_t)slot, 1);
			sum += (unsigned long)slot;
			if (i % PROBE_EVERY == 0) {
				uint32_t b = (uint32_t)(balance_rand(&v) % (uint64_t)n);

				atomic_store(&shm_slot(h, b)->lat_ewma_us,
				    1000 + (uint32_t)(balance_rand(&v) % 5000));
				shm_prober_note(h, b);
			}
		}
		t2 = now_ns();
		for (i = 0; i < OUTSTANDING; i++)
			if (out[i] >= 0)
				shm_inflight_add(h, 0, (uint32_t)out[i], -1);
		printf("%-18s %8.1f ns/pick   %8.1f ns/pick+churn   (checksum %lu)\n",
		    conf_strategy_name((enum conf_strategy)strategies[s]),
		    (t1 - t0) / PICKS, (t2 - t1) / PICKS, sum % 1000);
	}
	if (n >= LLM_BACKENDS) {
		static uint64_t	 blocks[LLM_GROUPS + 1][LLM_BLOCKS];
		struct wpool	 lp = { .idx = pool.idx, .n = LLM_BACKENDS };
		double		 t0, t1;
		unsigned long	 sum = 0;
		uint32_t	 g, b, k;

		v.pools = &lp;
		v.llm.affinity_limit = 200000;
		v.llm.queue_limit = 8;
		v.llm.kv_ppm = 950000;
		v.llm.load_factor = 125;
		v.llm.block = 256;
		for (i = 0; i < LLM_BACKENDS; i++)
			v.be[i].hrw = 0x9e3779b97f4a7c15ULL * (i + 1);
		/* fill every way with other prefixes, then note the groups' */
		for (i = 0; i < SHM_PFX_SETS * SHM_PFX_WAYS * 2; i++)
			shm_pfx_note(h, balance_rand(&v), i % LLM_BACKENDS, i / 1024);
		for (g = 0; g <= LLM_GROUPS; g++)
			for (b = 0; b < LLM_BLOCKS; b++)
				blocks[g][b] = balance_rand(&v);
		for (g = 0; g < LLM_GROUPS; g++)
			for (b = 0; b < LLM_BLOCKS; b++)
				shm_pfx_note(h, blocks[g][b], g % LLM_BACKENDS, 1u << 20);
		shm_pool_set(h, 0, "bench", STRAT_LLM, STRAT_ROUND_ROBIN);
		req.nblocks = LLM_BLOCKS;
		req.prompt_tokens = LLM_BLOCKS * 64;
		req.output_tokens = 256;
		t0 = now_ns();
		for (k = 0; k < LLM_PICKS; k++) {
			g = k % 8 == 7 ? LLM_GROUPS : (k * 2654435761u) % LLM_GROUPS;
			if (g == LLM_GROUPS)
				blocks[g][0] = balance_rand(&v);	/* a new prefix */
			req.blocks = blocks[g];
			sum += (unsigned long)balance_pick(&v, 0, &req);
		}
		t1 = now_ns();
		printf("%-18s %8.1f ns/pick   (%d backends, %d blocks, prefix memory full; checksum %lu)\n",
		    "llm", (t1 - t0) / LLM_PICKS, LLM_BACKENDS, LLM_BLOCKS, sum % 1000);
		v.pools = &pool;
	}
	balance_view_free(&v);
	shm_destroy(h);
	return 0;
}

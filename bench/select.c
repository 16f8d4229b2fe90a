/*
 * make bench: nanoseconds per backend pick, per strategy, over a table of
 * 1,000 backends.  Two figures each: the pick alone, and the pick with the
 * bookkeeping a request brings (its in-flight +1 when sent, -1 when done,
 * here with 64 requests outstanding), which the ranked strategies must
 * fold into their sums and trees, plus a latency change from the prober
 * every PROBE_EVERY picks (1,000 backends checked every 2 s against a
 * worker serving 20,000 requests a second).
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
	req.strategy = -1;
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
	balance_view_free(&v);
	shm_destroy(h);
	return 0;
}

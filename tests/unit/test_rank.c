/*
 * Ranked picks (least_connections, least_latency from per-worker sums and
 * min-trees, worker/balance.c) against the plain scan: two views over one
 * real shared table, one ranked, one scanning, must choose alike after
 * every kind of change, and the sums must match the stripes even while
 * other processes write them and lap their logs.
 */
#include <sys/wait.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf/conf.h"
#include "shm/table.h"
#include "worker/balance.h"

#define NB	300		/* backend slots */
#define NW	3		/* worker stripes */
#define NPOOL	2

static struct shm_hdr	*shm;

/* One worker's view: its own copies, cursors and trees. */
struct side {
	struct wview	 v;
	struct wbe	 be[NB];
	struct wpool	 pools[NPOOL];
	uint32_t	 idx[NPOOL][NB];
};

static struct side	 ranked, scan;

static void
side_init(struct side *s, int rank_off)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < NPOOL; i++) {
		s->pools[i].idx = s->idx[i];
		s->pools[i].id = (uint32_t)i;
	}
	for (i = 0; i < SHM_POOLS_MAX; i++)
		s->v.local[i] = i < NPOOL ? (int16_t)i : -1;
	s->v.shm = shm;
	s->v.nstripes = NW;
	s->v.be = s->be;
	s->v.pools = s->pools;
	s->v.npools = NPOOL;
	s->v.rng = 0x9e3779b97f4a7c15ULL;
	s->v.rank_off = rank_off;
	strcpy(s->v.region, "nyc1");
}

static void
setup(void)
{
	uint32_t i;

	shm = shm_create(NB, NW, NULL);
	cr_assert_not_null(shm, "shm_create");
	side_init(&ranked, 0);
	side_init(&scan, 1);
	/* pool 0: slots 0..249 in a shuffled order; pool 1: the rest */
	for (i = 0; i < NB; i++) {
		uint32_t slot = i < 250 ? (i * 7u) % 250 : i;
		uint32_t pool = i < 250 ? 0 : 1;
		struct side *s;
		int k;

		for (k = 0; k < 2; k++) {
			s = k ? &scan : &ranked;
			s->be[slot].inuse = 1;
			s->be[slot].pool = pool;
			s->be[slot].weight = 1;
			s->be[slot].flags = SHM_F_INUSE;
			s->pools[pool].idx[s->pools[pool].n++] = slot;
		}
		atomic_store(&shm_slot(shm, slot)->lat_ewma_us, 1000 + slot % 7 * 100);
	}
	shm_pool_set(shm, 0, "p0", STRAT_LEAST_CONN, STRAT_ROUND_ROBIN);
	shm_pool_set(shm, 1, "p1", STRAT_LEAST_LATENCY, STRAT_ROUND_ROBIN);
}

static void
teardown(void)
{
	balance_view_free(&ranked.v);
	balance_view_free(&scan.v);
	shm_destroy(shm);
}

TestSuite(rank, .init = setup, .fini = teardown);

static uint64_t rs = 88172645463325252ULL;

static uint32_t
rnd(uint32_t n)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return (uint32_t)(rs % n);
}

/* Both views see the same edit of a slot's local copy. */
static void
edit(uint32_t slot, uint32_t set, uint32_t clear, int max_conns)
{
	struct side	*s;
	int		 k;

	for (k = 0; k < 2; k++) {
		s = k ? &scan : &ranked;
		s->be[slot].flags = (s->be[slot].flags | set) & ~clear;
		if (max_conns >= 0)
			s->be[slot].max_conns = (uint32_t)max_conns;
		balance_slot_changed(&s->v, slot);
	}
}

static void
same_pick(uint32_t pool, const struct bal_req *r, int step)
{
	int a = balance_pick(&ranked.v, pool, r);
	int b = balance_pick(&scan.v, pool, r);

	cr_assert_eq(a, b, "step %d pool %u: ranked %d, scan %d", step, pool, a, b);
}

Test(rank, agrees_with_scan_under_every_change)
{
	struct bal_req	 any = { .model = -1, .strategy = -1 }, ex = { .model = -1, .strategy = -1 };
	int		 step, k;

	for (step = 0; step < 30000; step++) {
		uint32_t slot = rnd(NB);

		switch (rnd(16)) {
		case 0: case 1: case 2: case 3: case 4: case 5:
			shm_inflight_set(shm, rnd(NW), slot, rnd(4));
			break;
		case 6:
			atomic_store(&shm_slot(shm, slot)->health,
			    rnd(3) == 0 ? SHM_HEALTH_DOWN : SHM_HEALTH_UP);
			shm_prober_note(shm, slot);
			break;
		case 7:
			k = (int)rnd(10);
			atomic_store(&shm_slot(shm, slot)->trial_tickets, rnd(3));
			atomic_store(&shm_slot(shm, slot)->breaker, k == 0 ?
			    SHM_BREAKER_OPEN : k == 1 ? SHM_BREAKER_HALF_OPEN :
			    SHM_BREAKER_CLOSED);
			shm_prober_note(shm, slot);
			break;
		case 8:
			atomic_store(&shm_slot(shm, slot)->lat_ewma_us, 500 + rnd(2000));
			shm_prober_note(shm, slot);
			break;
		case 9:
			k = (int)rnd(4);
			edit(slot, k == 0 ? SHM_F_DISABLED : k == 1 ? SHM_F_DRAINING :
			    k == 2 ? SHM_F_BACKUP : 0,
			    k == 3 ? SHM_F_DISABLED | SHM_F_DRAINING | SHM_F_BACKUP : 0,
			    -1);
			break;
		case 10:
			edit(slot, 0, 0, rnd(3) == 0 ? (int)rnd(4) : 0);
			break;
		case 11:
			shm_pool_strategy_set(shm, rnd(NPOOL), rnd(2) ?
			    STRAT_LEAST_CONN : STRAT_LEAST_LATENCY);
			break;
		case 12:
			/* a burst that laps the logs: the ranked side re-reads */
			if (rnd(50) == 0) {
				uint32_t w = rnd(NW);

				/* slot's change scrolls out of the log: only a re-read finds it */
				shm_inflight_set(shm, w, slot, 1 + rnd(3));
				for (k = 0; k < SHM_INLOG_LEN + 10; k++)
					shm_inflight_set(shm, w, (slot + 1 + (uint32_t)k %
					    (NB - 1)) % NB, rnd(3));
				balance_pick(&ranked.v, 0, &any);
				balance_pick(&scan.v, 0, &any);
				cr_assert_eq(ranked.v.tot[slot], shm_inflight(shm, slot),
				    "step %d: slot %u summed %d, stripes say %lld", step,
				    slot, ranked.v.tot[slot],
				    (long long)shm_inflight(shm, slot));
			}
			break;
		case 14:
			/* the prober's log laps: every tree is rebuilt */
			if (rnd(50) == 0) {
				atomic_store(&shm_slot(shm, slot)->health,
				    rnd(2) ? SHM_HEALTH_DOWN : SHM_HEALTH_UP);
				shm_prober_note(shm, slot);
				for (k = 0; k < SHM_INLOG_LEN + 10; k++)
					shm_prober_note(shm, (slot + 1 + (uint32_t)k %
					    (NB - 1)) % NB);
			}
			break;
		case 13:
			/* a retry: the scan answers for both */
			ex.exclude[0] = (uint32_t)balance_pick(&scan.v, 0, &any);
			ex.nexclude = 1;
			balance_pick(&ranked.v, 0, &any);
			same_pick(0, &ex, step);
			break;
		default:
			break;
		}
		same_pick(rnd(NPOOL), &any, step);
	}
}

Test(rank, a_lone_member_and_an_empty_pool)
{
	struct bal_req	any = { .model = -1, .strategy = -1 };
	uint32_t	i;

	/* every member of pool 1 but one down */
	for (i = 250; i < NB; i++) {
		atomic_store(&shm_slot(shm, i)->health, i == 277 ?
		    SHM_HEALTH_UP : SHM_HEALTH_DOWN);
		shm_prober_note(shm, i);
	}
	for (i = 0; i < 10; i++)
		cr_assert_eq(balance_pick(&ranked.v, 1, &any), 277);
	atomic_store(&shm_slot(shm, 277)->health, SHM_HEALTH_DOWN);
	shm_prober_note(shm, 277);
	cr_assert_eq(balance_pick(&ranked.v, 1, &any), -1);
	cr_assert_eq(balance_pick(&scan.v, 1, &any), -1);
}

/*
 * Writers in other processes change their stripes as fast as they can,
 * lapping their logs over and over, while we pick.  Once they stop, the
 * ranked side's sums must be the stripes' sums exactly, and it must pick
 * what the scan picks.
 */
Test(rank, sums_exact_after_concurrent_writers)
{
	struct bal_req	 any = { .model = -1, .strategy = -1 };
	pid_t		 pid[NW - 1];
	uint32_t	 w, i;
	int		 st, k;

	balance_pick(&ranked.v, 0, &any);
	for (w = 1; w < NW; w++) {
		pid[w - 1] = fork();
		cr_assert_neq(pid[w - 1], -1);
		if (pid[w - 1] == 0) {
			uint64_t x = 0x2545F4914F6CDD1DULL * (w + 1);

			alarm(20);
			for (k = 0; k < 400000; k++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				shm_inflight_add(shm, w, (uint32_t)(x % NB),
				    (x >> 20) % 2 ? 1 : (atomic_load(&shm_ctr(shm, w,
				    (uint32_t)(x % NB))->inflight) > 0 ? -1 : 0));
			}
			_exit(0);
		}
	}
	/* stripe 0 is ours, as a worker's own */
	for (k = 0; k < 20000; k++) {
		shm_inflight_add(shm, 0, rnd(NB), 1);
		balance_pick(&ranked.v, rnd(NPOOL), &any);
	}
	for (w = 0; w < NW - 1; w++) {
		cr_assert_eq(waitpid(pid[w], &st, 0), pid[w]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %u", w);
	}
	balance_pick(&ranked.v, 0, &any);
	for (i = 0; i < NB; i++)
		cr_assert_eq(ranked.v.tot[i], shm_inflight(shm, i), "slot %u: %d vs %lld",
		    i, ranked.v.tot[i], (long long)shm_inflight(shm, i));
	for (k = 0; k < NPOOL; k++)
		scan.pools[k].rr = ranked.pools[k].rr;	/* the same turn for ties */
	for (k = 0; k < 1000; k++)
		same_pick(rnd(NPOOL), &any, k);
}

/* Backend selection: the strategies of DESIGN.md "Balancing" over a worker's view. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "balance.h"

uint64_t
balance_rand(struct wview *v)
{
	/* xorshift64*: fast, good enough to spread load, never on a secret */
	uint64_t x = v->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	v->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static int64_t
balance_inflight(struct wview *v, uint32_t slot)
{
	int64_t		 sum = 0;
	uint32_t	 w;

	for (w = 0; w < v->nstripes; w++)
		sum += atomic_load_explicit(&shm_ctr(v->shm, w, slot)->inflight,
		    memory_order_relaxed);
	return sum;
}

static int
balance_eligible_x(struct wview *v, uint32_t slot, int ignore_full)
{
	const struct wbe	*b = &v->be[slot];
	const struct shm_slot	*s;

	if (!b->inuse || (b->flags & (SHM_F_DISABLED | SHM_F_DRAINING)))
		return 0;
	s = shm_slot(v->shm, slot);
	if (atomic_load_explicit(&s->health, memory_order_relaxed) == SHM_HEALTH_DOWN)
		return 0;
	switch (atomic_load_explicit(&s->breaker, memory_order_relaxed)) {
	case SHM_BREAKER_OPEN:
		return 0;
	case SHM_BREAKER_HALF_OPEN:
		if (atomic_load_explicit(&s->trial_tickets, memory_order_relaxed) == 0)
			return 0;
		break;
	}
	if (!ignore_full && b->max_conns && balance_inflight(v, slot) >= b->max_conns)
		return 0;
	return 1;
}

int
balance_eligible(struct wview *v, uint32_t slot)
{
	return balance_eligible_x(v, slot, 0);
}

static int
balance_excluded(const struct bal_req *r, uint32_t slot)
{
	size_t	i;

	for (i = 0; i < r->nexclude; i++)
		if (r->exclude[i] == slot)
			return 1;
	return 0;
}

static int
balance_serves(const struct wbe *b, int model)
{
	uint32_t	i;

	if (model < 0)
		return 1;
	for (i = 0; i < b->nmodels; i++)
		if (b->models[i] == (uint32_t)model)
			return 1;
	return 0;
}

int
balance_pool_has_model(const struct wview *v, uint32_t pool, int model)
{
	const struct wpool	*p = &v->pools[pool];
	size_t			 i;

	for (i = 0; i < p->n; i++)
		if (balance_serves(&v->be[p->idx[i]], model))
			return 1;
	return 0;
}

/*
 * Candidate filter shared by every strategy: eligible, not tried yet,
 * serving the model, in the wanted tier (backup or primary) and, for geo's
 * first pass, in our region.
 */
struct bal_filter {
	const struct bal_req	*req;
	int			 backup;	/* tier: 0 primaries, 1 backups */
	int			 local;		/* 1: only backends in v->region */
};

static int
balance_ok(struct wview *v, uint32_t slot, const struct bal_filter *f)
{
	const struct wbe	*b = &v->be[slot];

	if (((b->flags & SHM_F_BACKUP) != 0) != f->backup)
		return 0;
	if (f->local && strcmp(b->region, v->region) != 0)
		return 0;
	if (!balance_serves(b, f->req->model))
		return 0;
	if (f->req->nexclude && balance_excluded(f->req, slot))
		return 0;
	return balance_eligible_x(v, slot, f->req->ignore_full);
}

static int
pick_round_robin(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	size_t	i;

	for (i = 0; i < p->n; i++) {
		uint32_t slot = p->idx[p->rr++ % p->n];

		if (balance_ok(v, slot, f))
			return (int)slot;
	}
	return -1;
}

/* nginx-style smooth weighted round robin: O(n), no bursts. */
static int
pick_weighted(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	struct wbe	*best = NULL;
	int64_t		 total = 0;
	int		 bslot = -1;
	size_t		 i;

	for (i = 0; i < p->n; i++) {
		uint32_t	 slot = p->idx[i];
		struct wbe	*b = &v->be[slot];

		if (!balance_ok(v, slot, f))
			continue;
		b->cur += b->weight;
		total += b->weight;
		if (best == NULL || b->cur > best->cur) {
			best = b;
			bslot = (int)slot;
		}
	}
	if (best != NULL)
		best->cur -= total;
	return bslot;
}

#define SCHED_MAX_WORK	(32u * 1000 * 1000)	/* weight sum x members we simulate */
#define SCHED_PROBES	64			/* ineligible entries skipped before scanning */

void
balance_pool_changed(struct wpool *p)
{
	free(p->sched);
	p->sched = NULL;
	p->nsched = 0;
	p->spos = 0;
	p->sched_state = 0;
}

/*
 * Precompute one cycle of smooth weighted round robin over every member
 * (eligible or not: eligibility is checked at pick time).  The cycle is
 * the sum of the weights long and repeats exactly, so stepping through it
 * gives the same sequence as running the O(n) algorithm each time.
 */
static void
sched_build(struct wview *v, struct wpool *p)
{
	int64_t		*cur;
	uint64_t	 total = 0;
	size_t		 i, t;

	p->sched_state = -1;
	for (i = 0; i < p->n; i++)
		total += v->be[p->idx[i]].weight;
	if (total == 0 || total * p->n > SCHED_MAX_WORK)
		return;
	cur = calloc(p->n, sizeof(*cur));
	p->sched = calloc(total, sizeof(*p->sched));
	if (cur == NULL || p->sched == NULL) {
		free(cur);
		free(p->sched);
		p->sched = NULL;
		return;
	}
	for (t = 0; t < total; t++) {
		size_t	best = 0;

		for (i = 0; i < p->n; i++) {
			cur[i] += v->be[p->idx[i]].weight;
			if (cur[i] > cur[best])
				best = i;
		}
		cur[best] -= (int64_t)total;
		p->sched[t] = p->idx[best];
	}
	free(cur);
	p->nsched = total;
	p->spos = 0;
	p->sched_state = 1;
}

static int
pick_weighted_sched(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	size_t	k;

	if (p->sched_state == 0)
		sched_build(v, p);
	if (p->sched_state != 1)
		return pick_weighted(v, p, f);
	for (k = 0; k < SCHED_PROBES && k < p->nsched; k++) {
		uint32_t slot = p->sched[p->spos];

		if (++p->spos == p->nsched)
			p->spos = 0;
		if (balance_ok(v, slot, f))
			return (int)slot;
	}
	/* most of the cycle cannot take it (down, tried, wrong model): scan */
	return pick_weighted(v, p, f);
}

/* least_connections: in-flight requests summed over every worker's stripe. */
static uint64_t
cost_inflight(struct wview *v, uint32_t slot)
{
	int64_t n = balance_inflight(v, slot);

	return n > 0 ? (uint64_t)n : 0;
}

/* least_latency: latency EWMA x (in-flight + 1), so a fast backend is not flooded. */
static uint64_t
cost_latency(struct wview *v, uint32_t slot)
{
	uint64_t lat = atomic_load_explicit(&shm_slot(v->shm, slot)->lat_ewma_us,
	    memory_order_relaxed);

	return (lat ? lat : 1) * (cost_inflight(v, slot) + 1);
}

/*
 * The eligible member with the lowest cost.  Ties go in turn: the scan
 * starts just after the member chosen last, and the first lowest wins.
 */
static int
pick_lowest(struct wview *v, struct wpool *p, const struct bal_filter *f,
    uint64_t (*cost)(struct wview *, uint32_t))
{
	uint64_t	 bestc = UINT64_MAX;
	int		 best = -1;
	size_t		 i, bi = 0, start = p->n ? p->rr % p->n : 0;

	for (i = 0; i < p->n; i++) {
		size_t		k = (start + i) % p->n;
		uint32_t	slot = p->idx[k];
		uint64_t	c;

		if (!balance_ok(v, slot, f))
			continue;
		c = cost(v, slot);
		if (best == -1 || c < bestc) {
			bestc = c;
			best = (int)slot;
			bi = k;
		}
	}
	if (best != -1)
		p->rr = (uint32_t)(bi + 1);
	return best;
}

/*
 * Uniform pick among eligible members, other than avoid (-1: none): a few
 * random probes, then, when most members cannot take it, one pass of
 * reservoir sampling, which stays uniform however the eligible ones lie.
 */
static int
pick_random_but(struct wview *v, struct wpool *p, const struct bal_filter *f,
    int avoid)
{
	size_t		i, seen = 0;
	int		pick = -1;

	if (p->n == 0)
		return -1;
	for (i = 0; i < 4; i++) {
		uint32_t slot = p->idx[balance_rand(v) % p->n];

		if ((int)slot != avoid && balance_ok(v, slot, f))
			return (int)slot;
	}
	for (i = 0; i < p->n; i++) {
		uint32_t slot = p->idx[i];

		if ((int)slot == avoid || !balance_ok(v, slot, f))
			continue;
		if (balance_rand(v) % ++seen == 0)
			pick = (int)slot;
	}
	return pick;
}

static int
pick_random(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	return pick_random_but(v, p, f, -1);
}

static int
pick_p2c(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	int	a, b;

	if ((a = pick_random(v, p, f)) == -1)
		return -1;
	/* two different backends, or the comparison means nothing */
	if ((b = pick_random_but(v, p, f, a)) == -1)
		return a;
	return balance_inflight(v, (uint32_t)b) < balance_inflight(v, (uint32_t)a) ? b : a;
}

static int
pick_with(struct wview *v, struct wpool *p, uint32_t strategy,
    const struct bal_filter *f)
{
	switch (strategy) {
	case STRAT_WEIGHTED:
		return pick_weighted_sched(v, p, f);
	case STRAT_LEAST_CONN:
		return pick_lowest(v, p, f, cost_inflight);
	case STRAT_POWER_OF_TWO:
		return pick_p2c(v, p, f);
	case STRAT_LEAST_LATENCY:
		return pick_lowest(v, p, f, cost_latency);
	case STRAT_RANDOM:
		return pick_random(v, p, f);
	case STRAT_ROUND_ROBIN:
	default:
		return pick_round_robin(v, p, f);
	}
}

int
balance_pick(struct wview *v, uint32_t pool, const struct bal_req *req)
{
	struct wpool		*p;
	struct bal_filter	 f = { .req = req };
	uint32_t		 strat, base;
	int			 slot;

	if (pool >= v->npools)
		return -1;
	p = &v->pools[pool];
	strat = shm_pool_strategy(v->shm, pool);
	base = atomic_load_explicit(&v->shm->pools[pool].base_strategy,
	    memory_order_relaxed);
	if (base == STRAT_GEO || base == STRAT_MODEL)
		base = STRAT_ROUND_ROBIN;
	for (f.backup = 0; f.backup <= 1; f.backup++) {
		switch (strat) {
		case STRAT_GEO:
			f.local = 1;
			if ((slot = pick_with(v, p, base, &f)) != -1)
				return slot;
			f.local = 0;
			slot = pick_with(v, p, base, &f);
			break;
		case STRAT_MODEL:
			/* the model filter is in req; rank survivors by the base strategy */
			slot = pick_with(v, p, base, &f);
			break;
		default:
			slot = pick_with(v, p, strat, &f);
			break;
		}
		if (slot != -1)
			return slot;
	}
	return -1;
}

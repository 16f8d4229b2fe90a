/* Backend selection: the strategies of DESIGN.md "Balancing" over a worker's view. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bsd/string.h>

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

/*
 * What a slot's flags, health and breaker allow, before its load is
 * counted: the one definition the scan and the ranked trees share.
 */
enum slot_state {
	SLOT_NO,		/* unused, disabled, draining, down or breaker open */
	SLOT_TRIAL,		/* breaker half-open: only with a trial ticket */
	SLOT_OK
};

static enum slot_state
balance_slot_state(struct wview *v, uint32_t slot)
{
	const struct wbe	*b = &v->be[slot];
	const struct shm_slot	*s;

	if (!b->inuse || (b->flags & (SHM_F_DISABLED | SHM_F_DRAINING)))
		return SLOT_NO;
	s = shm_slot(v->shm, slot);
	if (atomic_load_explicit(&s->health, memory_order_relaxed) == SHM_HEALTH_DOWN)
		return SLOT_NO;
	switch (atomic_load_explicit(&s->breaker, memory_order_relaxed)) {
	case SHM_BREAKER_OPEN:
		return SLOT_NO;
	case SHM_BREAKER_HALF_OPEN:
		return SLOT_TRIAL;
	}
	return SLOT_OK;
}

static int
balance_eligible_x(struct wview *v, uint32_t slot, int ignore_full)
{
	const struct wbe	*b = &v->be[slot];

	switch (balance_slot_state(v, slot)) {
	case SLOT_NO:
		return 0;
	case SLOT_TRIAL:
		if (atomic_load_explicit(&shm_slot(v->shm, slot)->trial_tickets,
		    memory_order_relaxed) == 0)
			return 0;
		break;
	case SLOT_OK:
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

/*
 * 1 when the backend in slot serves model (-1: any): it declares it, and
 * the prober has not taken that (backend, model) pair out (bit i of its
 * models_down | models_open, for models[i] == model).
 */
static int
balance_serves(const struct wview *v, uint32_t slot, int model)
{
	const struct wbe	*b = &v->be[slot];
	uint32_t		 i;

	if (model < 0)
		return 1;
	for (i = 0; i < b->nmodels; i++)
		if (b->models[i] == (uint32_t)model)
			return !((shm_models_out(shm_slot(v->shm, slot)) >> i) & 1);
	return 0;
}

int
balance_any_eligible(struct wview *v, uint32_t pool, const struct bal_req *r)
{
	const struct wpool	*p;
	size_t			 i;

	if (pool >= v->npools)
		return 0;
	p = &v->pools[pool];
	for (i = 0; i < p->n; i++)
		if (!balance_excluded(r, p->idx[i]) && balance_eligible(v, p->idx[i]) &&
		    balance_serves(v, p->idx[i], r->model))
			return 1;
	return 0;
}

int
balance_pool_has_model(const struct wview *v, uint32_t pool, int model)
{
	const struct wpool	*p = &v->pools[pool];
	size_t			 i;

	for (i = 0; i < p->n; i++)
		if (balance_serves(v, p->idx[i], model))
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
	int			 unsat;		/* 1: only backends below their load signals' limits */
};

static int	balance_signals_saturated(struct wview *, uint32_t);
static int	pick_lowest(struct wview *, struct wpool *, const struct bal_filter *,
		    uint64_t (*)(struct wview *, uint32_t));

static int
balance_ok(struct wview *v, uint32_t slot, const struct bal_filter *f)
{
	const struct wbe	*b = &v->be[slot];

	if (((b->flags & SHM_F_BACKUP) != 0) != f->backup)
		return 0;
	if (f->local && strcmp(b->region, v->region) != 0)
		return 0;
	if (!balance_serves(v, slot, f->req->model))
		return 0;
	if (f->req->nexclude && balance_excluded(f->req, slot))
		return 0;
	if ((f->unsat || (f->req->gate && !f->req->ignore_full)) &&
	    balance_signals_saturated(v, slot))
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
	p->tvalid = 0;
}

void
balance_slot_changed(struct wview *v, uint32_t slot)
{
	const struct wbe *b = &v->be[slot];

	if (b->pool < v->npools)
		v->pools[b->pool].tvalid = 0;
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

/*
 * A backend's latency for least_latency: what the workers measured on
 * their own requests there in the last BAL_LIVE_MS (the mean of the
 * stripes that did), else the prober's EWMA of its checks.  A check
 * says how fast /health answers; a request says how fast the work is.
 */
#define BAL_LIVE_MS	10000

static uint32_t
balance_latency(struct wview *v, uint32_t slot)
{
	uint64_t	 now = 0, sum = 0, n = 0;
	uint32_t	 w;

	for (w = 0; w < v->nstripes; w++) {
		struct shm_counters *k = shm_ctr(v->shm, w, slot);
		uint64_t at = atomic_load_explicit(&k->live_lat_ms,
		    memory_order_relaxed);

		if (at == 0)
			continue;
		if (now == 0)
			now = shm_now_ms();
		if (now - at > BAL_LIVE_MS && at < now)
			continue;
		sum += atomic_load_explicit(&k->live_lat_us, memory_order_relaxed);
		n++;
	}
	if (n > 0) {
		sum /= n;
		return sum > UINT32_MAX ? UINT32_MAX : (uint32_t)(sum ? sum : 1);
	}
	return atomic_load_explicit(&shm_slot(v->shm, slot)->lat_ewma_us,
	    memory_order_relaxed);
}

/* least_latency: latency x (in-flight + 1), so a fast backend is not flooded. */
static uint64_t
cost_latency(struct wview *v, uint32_t slot)
{
	uint64_t lat = balance_latency(v, slot);

	return (lat ? lat : 1) * (cost_inflight(v, slot) + 1);
}

/*
 * least_tokens: prompt tokens not expected in the backend's cache plus
 * output tokens still expected, in flight over every worker's stripe;
 * in-flight requests break ties (a request with no body counts none).
 */
static uint64_t
cost_tokens(struct wview *v, uint32_t slot)
{
	int64_t		 t = 0;
	uint32_t	 w;

	for (w = 0; w < v->nstripes; w++) {
		struct shm_counters *k = shm_ctr(v->shm, w, slot);

		t += atomic_load_explicit(&k->tok_uncached, memory_order_relaxed) +
		    atomic_load_explicit(&k->tok_output, memory_order_relaxed);
	}
	if (t < 0)
		t = 0;
	return ((uint64_t)t << 16) + (cost_inflight(v, slot) & 0xffff);
}

/*
 * The llm strategy (DESIGN "LLM routing").  Each candidate has a load, in
 * prompt-token units, over every worker's stripe: its uncached prompt
 * tokens in flight, four per output token still expected (a decode step
 * shared by a batch costs each sequence about what a few prefill tokens
 * do), and LLM_REQ_WEIGHT per request in flight (a request holds a place
 * in the batch, or waits for one, whatever its tokens); and a match, the
 * leading prompt blocks the prefix memory says were sent there lately.
 * What the request would add there is its prompt less the warm blocks.
 *
 * - Some candidate is warm: the one with the lowest load plus added
 *   tokens among those not saturated wins, so affinity holds until the
 *   load it gathers outweighs the prefill it saves (a warm backend with
 *   many more requests in flight than the others loses a request to
 *   them).  Saturated: its uncached tokens in flight reach
 *   llm.affinity_limit, or its own metrics (fresh) show llm.queue_limit
 *   waiting requests or llm.kv_limit KV-cache use.  When the warm ones
 *   are all saturated, the same score over the others decides.
 * - None is warm: the candidates are ranked by a hash of the first block
 *   and their names (rendezvous hashing, so several routerd instances
 *   send a new prefix to the same backend), and the first whose load
 *   with the request stays within llm.load_factor % of the mean takes it.
 * - A prompt shorter than one block has no prefix: the lowest score.
 */
#define LLM_OUT_WEIGHT	1	/* an output token still expected, in prompt tokens */
#define LLM_REQ_WEIGHT	64	/* a request in flight (its place in the batch or the queue) */
#define LLM_QUEUE_WEIGHT 256	/* a request the backend's metrics say waits for a place */
#define LLM_MISS_WEIGHT	4	/* a prompt token to prefill: its time, and the cache it evicts */
#define LLM_COLD_HALF_MS 60000	/* new-prefix counts halve every minute */

struct llm_cand {
	uint32_t	 slot;
	uint32_t	 match;
	int64_t		 uncached;
	int64_t		 load;
	int64_t		 add;
	int		 sat;
};

static int
balance_signals_saturated(struct wview *v, uint32_t slot)
{
	const struct shm_slot	*s = shm_slot(v->shm, slot);
	uint64_t		 at, now, waiting;
	uint32_t		 run;
	int64_t			 inf;

	if (v->llm.metrics_ms == 0)
		return 0;
	at = atomic_load_explicit(&s->m_ms, memory_order_relaxed);
	if (at == 0)
		return 0;
	now = shm_now_ms();
	if (now > at && now - at > 3 * v->llm.metrics_ms)
		return 0;	/* stale: not used */
	if (atomic_load_explicit(&s->m_kv_ppm, memory_order_relaxed) >= v->llm.kv_ppm)
		return 1;
	if (v->llm.queue_limit == 0)
		return 0;	/* llm.queue_limit 0: the waiting count is not a limit */
	/*
	 * Waiting there: what its metrics said, or what we sent it that it
	 * did not say it runs, if more.  Our in-flight count is current where
	 * its metrics are a read old, so a freed place is taken once, not by
	 * every request that waited for it.
	 */
	waiting = atomic_load_explicit(&s->m_waiting, memory_order_relaxed);
	run = atomic_load_explicit(&s->m_running, memory_order_relaxed);
	inf = balance_inflight(v, slot);
	if (inf > (int64_t)run && (uint64_t)(inf - (int64_t)run) > waiting)
		waiting = (uint64_t)(inf - (int64_t)run);
	return waiting >= v->llm.queue_limit;
}

static void
llm_load(struct wview *v, struct llm_cand *c)
{
	int64_t		 u = 0, o = 0, r = 0;
	uint32_t	 w;

	/* one cache line a stripe: in-flight and the token words sit together */
	for (w = 0; w < v->nstripes; w++) {
		struct shm_counters *k = shm_ctr(v->shm, w, c->slot);

		r += atomic_load_explicit(&k->inflight, memory_order_relaxed);
		u += atomic_load_explicit(&k->tok_uncached, memory_order_relaxed);
		o += atomic_load_explicit(&k->tok_output, memory_order_relaxed);
	}
	c->uncached = u > 0 ? u : 0;
	c->load = c->uncached + LLM_OUT_WEIGHT * (o > 0 ? o : 0) +
	    LLM_REQ_WEIGHT * (r > 0 ? r : 0);
	if (v->llm.metrics_ms != 0) {
		/* the backend's own queue, while its figures are fresh */
		const struct shm_slot	*s = shm_slot(v->shm, c->slot);
		uint64_t		 at = atomic_load_explicit(&s->m_ms,
					    memory_order_relaxed), now;

		if (at != 0 && ((now = shm_now_ms()) <= at ||
		    now - at <= 3 * v->llm.metrics_ms))
			c->load += LLM_QUEUE_WEIGHT * (int64_t)atomic_load_explicit(
			    &s->m_waiting, memory_order_relaxed);
	}
}

/*
 * The blocks warm per candidate: the longest prefix warm anywhere found
 * by bisection over the chained blocks (warm at block i means warm at
 * every block before it, as they were noted together), each probe
 * crediting the candidates it names.  O(log blocks) probes of one set.
 */
static uint32_t
llm_match(struct wview *v, const struct bal_req *r, struct llm_cand *cs, size_t n)
{
	uint32_t	 lo = 0, hi = r->nblocks, best = 0, found[SHM_PFX_WAYS];
	size_t		 i, k, nf;

	while (lo < hi) {
		uint32_t	mid = lo + (hi - lo) / 2;
		int		hit = 0;

		nf = shm_pfx_find(v->shm, r->blocks[mid], found, SHM_PFX_WAYS);
		for (k = 0; k < nf; k++) {
			if (found[k] >= v->shm->max_backends ||
			    v->cstamp[found[k]] != v->npick)
				continue;	/* not a candidate */
			if (v->cmatch[found[k]] < mid + 1)
				v->cmatch[found[k]] = mid + 1;
			hit = 1;
		}
		if (hit) {
			best = mid + 1;
			lo = mid + 1;
		} else
			hi = mid;
	}
	for (i = 0; i < n; i++)
		cs[i].match = v->cmatch[cs[i].slot];
	return best;
}

static int
llm_alloc(struct wview *v)
{
	if (v->cmatch != NULL)
		return 0;
	v->cmatch = calloc(v->shm->max_backends, sizeof(*v->cmatch));
	v->cstamp = calloc(v->shm->max_backends, sizeof(*v->cstamp));
	v->cold = calloc(v->shm->max_backends, sizeof(*v->cold));
	if (v->cmatch == NULL || v->cstamp == NULL || v->cold == NULL) {
		free(v->cmatch);
		free(v->cstamp);
		free(v->cold);
		v->cmatch = v->cstamp = v->cold = NULL;
		return -1;
	}
	return 0;
}

static uint64_t
llm_hrw(uint64_t block, uint64_t name)
{
	uint64_t x = block ^ name;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void
llm_explain_cands(struct wview *v, const struct llm_cand *cs, size_t n)
{
	size_t	i;

	v->ex_ncand = (uint32_t)n;
	for (i = 0; i < n && i < SHM_EXPLAIN_CANDS; i++) {
		v->ex_cand[i].slot = (int32_t)cs[i].slot;
		v->ex_cand[i].match = cs[i].match;
		v->ex_cand[i].score = (uint64_t)(cs[i].load + cs[i].add);
	}
}

static int
pick_llm(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	const struct bal_req	*r = f->req;
	struct llm_cand		 stack[64], *cs = stack;
	int64_t			 P = r->prompt_tokens;
	uint32_t		 longest = 0;
	size_t			 i, k, n = 0, best = SIZE_MAX, start;
	int			 pick, any_warm_ok = 0;

	if (p->n == 0 || llm_alloc(v) == -1)
		return pick_lowest(v, p, f, cost_tokens);
	if (p->n > 64 && (cs = malloc(p->n * sizeof(*cs))) == NULL)
		return pick_lowest(v, p, f, cost_tokens);
	if (++v->npick == 0)
		v->npick = 1;
	start = p->rr % p->n;
	for (i = 0; i < p->n; i++) {
		uint32_t slot = p->idx[(start + i) % p->n];

		if (!balance_ok(v, slot, f))
			continue;
		cs[n].slot = slot;
		cs[n].match = 0;	/* llm_match() credits it; a prompt under a block has none */
		v->cstamp[slot] = v->npick;
		v->cmatch[slot] = 0;
		llm_load(v, &cs[n]);
		n++;
	}
	if (n == 0) {
		pick = -1;
		v->ex_reason = BAL_R_NONE;
		goto out;
	}
	if (r->nblocks > 0)
		longest = llm_match(v, r, cs, n);
	for (i = 0; i < n; i++) {
		/* the warm blocks' characters are not prefilled again; the rest is */
		cs[i].add = P - (int64_t)cs[i].match * v->llm.block / 4;
		if (cs[i].add < 0)
			cs[i].add = 0;
		/* with the gate on, balance_ok() already left saturated ones out */
		cs[i].sat = cs[i].uncached >= v->llm.affinity_limit ||
		    (!(r->gate && !r->ignore_full) &&
		    balance_signals_saturated(v, cs[i].slot));
		cs[i].add = LLM_MISS_WEIGHT * cs[i].add +
		    LLM_OUT_WEIGHT * (int64_t)r->output_tokens + LLM_REQ_WEIGHT;
		if (cs[i].match > 0 && !cs[i].sat)
			any_warm_ok = 1;
	}
	if (longest > 0 || r->nblocks == 0) {
		/* the lowest load + added tokens, saturated ones last; ties in turn */
		for (i = 0; i < n; i++) {
			if (best == SIZE_MAX || cs[i].sat < cs[best].sat ||
			    (cs[i].sat == cs[best].sat && cs[i].load + cs[i].add <
			    cs[best].load + cs[best].add))
				best = i;
		}
		if (r->nblocks == 0)
			v->ex_reason = BAL_R_STRATEGY;
		else if (!any_warm_ok)
			v->ex_reason = BAL_R_SATURATED;
		else if (cs[best].match == longest)
			v->ex_reason = BAL_R_AFFINITY;
		else
			v->ex_reason = BAL_R_LOAD;
	} else {
		/*
		 * cold: rendezvous order among the least loaded backends
		 * (any bound above them, even half of what this request
		 * costs, measured 1.3x the TTFT of least_tokens on unique
		 * prompts: a backend one request busier took its turn),
		 * preferring those that were not given more than
		 * load_factor % of their share of the new prefixes lately
		 * (each one fills that backend's cache)
		 */
		int64_t		mn = INT64_MAX;
		uint64_t	bw = 0, tot = 0, now = shm_now_ms();
		uint32_t	capn;

		if (now - v->cold_ms >= LLM_COLD_HALF_MS) {
			for (i = 0; i < v->shm->max_backends; i++)
				v->cold[i] /= 2;
			v->cold_ms = now;
		}
		for (i = 0; i < n; i++) {
			if (cs[i].load < mn)
				mn = cs[i].load;
			tot += v->cold[cs[i].slot];
		}
		capn = (uint32_t)(((tot + 1) * v->llm.load_factor + 100 * n - 1) / (100 * n));
		for (k = 0; k < 2 && best == SIZE_MAX; k++)
			for (i = 0; i < n; i++) {
				uint64_t h = llm_hrw(r->blocks[0], v->be[cs[i].slot].hrw);

				if (cs[i].sat || cs[i].load > mn ||
				    (k == 0 && v->cold[cs[i].slot] + 1 > capn))
					continue;
				if (best == SIZE_MAX || h > bw) {
					bw = h;
					best = i;
				}
			}
		if (best == SIZE_MAX)
			for (i = 0; i < n; i++)
				if (best == SIZE_MAX || cs[i].load + cs[i].add <
				    cs[best].load + cs[best].add)
					best = i;
		v->cold[cs[best].slot]++;
		v->ex_reason = BAL_R_COLD;
	}
	pick = (int)cs[best].slot;
	v->last_match = cs[best].match;
	p->rr = (uint32_t)((start + best + 1) % p->n);
out:
	llm_explain_cands(v, cs, n);
	if (cs != stack)
		free(cs);
	return pick;
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
 * Ranked picks.  The scan above reads every member's stripes: over a
 * thousand backends that is thousands of cache lines per request.  The
 * same answer comes from two structures a worker keeps for itself:
 *
 * - tot[slot], in-flight summed over the stripes, brought up to date at
 *   each ranked pick by applying what the stripes' logs say changed since
 *   the last one (a stripe whose log lapped us is re-read whole);
 * - per pool, a min-tree of the members' costs, the leaf of a member
 *   updated when its tot changes or when the prober's log names it (its
 *   health, breaker or latency changed), the whole tree rebuilt when the
 *   view (membership, flags) or the strategy changes, or a log lapped us.
 *
 * A pick is then the tree's root and one walk to the first member at or
 * after the turn cursor with that cost: the scan's answer, ties in turn
 * included, in O(log n).  Requests the tree cannot answer (a retry that
 * excludes backends, a model or region filter, a queue's ignore_full,
 * the backup tier, a half-open member) take the scan.
 */
#define RANK_NONE	UINT64_MAX
#define RANK_SLOW	(-2)		/* the tree cannot answer: scan */

static void
rank_invalidate(struct wview *v)
{
	size_t	i;

	for (i = 0; i < v->npools; i++)
		v->pools[i].tvalid = 0;
}

static void
rank_free(struct wview *v)
{
	free(v->tot);
	free(v->sval);
	free(v->seen);
	v->tot = NULL;
	v->sval = NULL;
	v->seen = NULL;
	v->rank_ready = 0;
}

static int
rank_alloc(struct wview *v)
{
	size_t	nb = v->shm->max_backends;

	v->tot = calloc(nb, sizeof(*v->tot));
	v->sval = calloc(nb * v->nstripes, sizeof(*v->sval));
	v->seen = calloc(v->nstripes ? v->nstripes : 1, sizeof(*v->seen));
	if (v->tot == NULL || v->sval == NULL || v->seen == NULL) {
		rank_free(v);
		return -1;
	}
	return 0;
}

/*
 * What a member's cost depends on besides its in-flight count, read from
 * the table when its pool's tree is built: its latency EWMA (at least 1),
 * or 0 when it cannot take a request whatever its load.  A half-open
 * member marks the pool for scanning.
 */
static uint32_t
rank_base(struct wview *v, struct wpool *p, uint32_t slot)
{
	uint32_t	lat;

	if (v->be[slot].flags & SHM_F_BACKUP)
		return 0;		/* the tree ranks primaries; backups are scanned */
	switch (balance_slot_state(v, slot)) {
	case SLOT_NO:
		return 0;
	case SLOT_TRIAL:
		p->tslow = 1;
		return 0;
	case SLOT_OK:
		break;
	}
	lat = balance_latency(v, slot);
	return lat ? lat : 1;
}

/* The cost the scan would give slot, or RANK_NONE if it could not take a request. */
static uint64_t
rank_key(const struct wview *v, uint32_t slot, uint32_t strat)
{
	const struct wbe	*b = &v->be[slot];
	int64_t			 n = v->tot[slot];

	if (b->rlat == 0)
		return RANK_NONE;
	if (n < 0)
		n = 0;
	if (b->max_conns && n >= b->max_conns)
		return RANK_NONE;
	if (strat != STRAT_LEAST_LATENCY)
		return (uint64_t)n;
	return (uint64_t)b->rlat * ((uint64_t)n + 1);
}

static void
tree_set(struct wpool *p, size_t pos, uint64_t key)
{
	uint64_t	*t = p->tree;
	size_t		 i = p->tcap + pos;

	t[i] = key;
	for (i >>= 1; i >= 1; i >>= 1) {
		uint64_t m = t[2 * i] < t[2 * i + 1] ? t[2 * i] : t[2 * i + 1];

		if (t[i] == m)
			break;
		t[i] = m;
	}
}

static int
tree_build(struct wview *v, struct wpool *p, uint32_t strat)
{
	size_t	cap = 1, k;

	while (cap < p->n)
		cap <<= 1;
	if (cap != p->tcap || p->tree == NULL) {
		uint64_t *t = reallocarray(p->tree, 2 * cap, sizeof(*t));

		if (t == NULL)
			return -1;
		p->tree = t;
		p->tcap = cap;
	}
	p->tslow = 0;
	for (k = 0; k < cap; k++) {
		uint64_t key = RANK_NONE;

		if (k < p->n) {
			struct wbe *b = &v->be[p->idx[k]];

			b->ppos = (uint32_t)k;
			b->rlat = rank_base(v, p, p->idx[k]);
			key = rank_key(v, p->idx[k], strat);
		}
		p->tree[cap + k] = key;
	}
	for (k = cap - 1; k >= 1; k--)
		p->tree[k] = p->tree[2 * k] < p->tree[2 * k + 1] ?
		    p->tree[2 * k] : p->tree[2 * k + 1];
	p->tstrat = strat;
	p->tvalid = 1;
	return 0;
}

/*
 * The first position at or after start whose leaf holds m, the tree's
 * minimum; -1 if none does.  Climb from the leaf while we are a right
 * child or our right sibling holds no m; then descend leftmost-first.
 */
static long
tree_first(const struct wpool *p, size_t start, uint64_t m)
{
	const uint64_t	*t = p->tree;
	size_t		 i = p->tcap + start;

	if (t[i] == m)
		return (long)start;
	for (; i > 1; i >>= 1)
		if ((i & 1) == 0 && t[i + 1] == m) {
			i++;
			while (i < p->tcap)
				i = t[2 * i] == m ? 2 * i : 2 * i + 1;
			return (long)(i - p->tcap);
		}
	return -1;
}

/* A stripe's in-flight word for slot is now val: fix tot and the slot's leaf. */
static void
rank_apply(struct wview *v, uint32_t stripe, uint32_t slot, int32_t val,
    int touch)
{
	int32_t		*sv;
	struct wbe	*b;
	struct wpool	*p;

	if (slot >= v->shm->max_backends)
		return;			/* a torn entry; the lap check re-reads */
	sv = &v->sval[(size_t)stripe * v->shm->max_backends + slot];
	if (*sv == val)
		return;
	v->tot[slot] += val - *sv;
	*sv = val;
	b = &v->be[slot];
	if (!touch || !b->inuse || b->pool >= v->npools)
		return;
	p = &v->pools[b->pool];
	if (p->tvalid && b->ppos < p->n && p->idx[b->ppos] == slot) {
		/* an attempt ended or began there: its live latency may have moved */
		if (p->tstrat == STRAT_LEAST_LATENCY && b->rlat != 0 && !p->tslow)
			b->rlat = rank_base(v, p, slot);
		tree_set(p, b->ppos, rank_key(v, slot, p->tstrat));
	}
}

/* Re-read a stripe whole (first use, or its log lapped us). */
static void
rank_reread(struct wview *v, uint32_t stripe)
{
	struct shm_inlog	*l = shm_inlog(v->shm, stripe);
	uint64_t		 head;
	uint32_t		 i, n;

	/* head first: the words read after are at least as new, and later entries repeat them */
	head = atomic_load_explicit(&l->head, memory_order_acquire);
	for (i = 0, n = v->shm->max_backends; i < n; i++)
		rank_apply(v, stripe, i, (int32_t)atomic_load_explicit(
		    &shm_ctr(v->shm, stripe, i)->inflight, memory_order_relaxed), 0);
	v->seen[stripe] = head;
	rank_invalidate(v);
}

/* Apply every stripe's log entries written since the last call. */
static void
rank_sync(struct wview *v)
{
	uint32_t	s;

	for (s = 0; s < v->nstripes; s++) {
		struct shm_inlog	*l = shm_inlog(v->shm, s);
		uint64_t		 from = v->seen[s], head, i;

		head = atomic_load_explicit(&l->head, memory_order_acquire);
		if (head == from && v->rank_ready)
			continue;
		if (head - from >= SHM_INLOG_LEN || !v->rank_ready) {
			rank_reread(v, s);
			continue;
		}
		for (i = from; i < head; i++) {
			uint64_t e = atomic_load_explicit(
			    &l->ent[i & (SHM_INLOG_LEN - 1)], memory_order_relaxed);

			rank_apply(v, s, SHM_INLOG_SLOT(e), SHM_INLOG_VAL(e), 1);
		}
		/* the writer may have lapped us while we read: then trust nothing read */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&l->head, memory_order_relaxed) - from >=
		    SHM_INLOG_LEN)
			rank_reread(v, s);
		else
			v->seen[s] = head;
	}
	v->rank_ready = 1;
}

/* The prober changed slot's health, breaker or latency: refresh its leaf. */
static void
rank_refresh(struct wview *v, uint32_t slot)
{
	struct wbe	*b;
	struct wpool	*p;

	if (slot >= v->shm->max_backends)
		return;			/* a torn entry; the lap check invalidates */
	b = &v->be[slot];
	if (!b->inuse || b->pool >= v->npools)
		return;
	p = &v->pools[b->pool];
	if (!p->tvalid || b->ppos >= p->n || p->idx[b->ppos] != slot)
		return;
	if (p->tslow) {
		p->tvalid = 0;		/* a half-open member may have closed: recount */
		return;
	}
	b->rlat = rank_base(v, p, slot);
	tree_set(p, b->ppos, rank_key(v, slot, p->tstrat));
}

/* Apply the prober's log since the last call. */
static void
rank_prober_sync(struct wview *v)
{
	struct shm_inlog	*l = shm_plog(v->shm);
	uint64_t		 from = v->pseen, head, i;

	head = atomic_load_explicit(&l->head, memory_order_acquire);
	if (head == from)
		return;
	v->pseen = head;
	if (head - from >= SHM_INLOG_LEN) {
		rank_invalidate(v);
		return;
	}
	for (i = from; i < head; i++)
		rank_refresh(v, SHM_INLOG_SLOT(atomic_load_explicit(
		    &l->ent[i & (SHM_INLOG_LEN - 1)], memory_order_relaxed)));
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&l->head, memory_order_relaxed) - from >=
	    SHM_INLOG_LEN)
		rank_invalidate(v);
}

static int
pick_ranked(struct wview *v, struct wpool *p, uint32_t strat,
    const struct bal_filter *f)
{
	uint64_t	 m;
	long		 pos;

	if (v->rank_off || f->backup || f->local || f->unsat || f->req->nexclude ||
	    f->req->model >= 0 || f->req->ignore_full ||
	    (f->req->gate && v->llm.metrics_ms != 0))
		return RANK_SLOW;
	if (v->tot == NULL && rank_alloc(v) == -1)
		return RANK_SLOW;
	rank_sync(v);
	rank_prober_sync(v);
	if ((!p->tvalid || p->tstrat != strat) && tree_build(v, p, strat) == -1)
		return RANK_SLOW;
	if (p->tslow)
		return RANK_SLOW;
	if ((m = p->tree[1]) == RANK_NONE)
		return -1;
	if ((pos = tree_first(p, p->rr % p->n, m)) == -1)
		pos = tree_first(p, 0, m);
	p->rr = (uint32_t)(pos + 1);
	return (int)p->idx[pos];
}

static int
pick_least(struct wview *v, struct wpool *p, uint32_t strat,
    const struct bal_filter *f)
{
	int	slot;

	if ((slot = pick_ranked(v, p, strat, f)) != RANK_SLOW)
		return slot;
	return pick_lowest(v, p, f, strat == STRAT_LEAST_LATENCY ?
	    cost_latency : cost_inflight);
}

void
balance_view_free(struct wview *v)
{
	size_t	i;

	for (i = 0; i < v->npools; i++) {
		free(v->pools[i].tree);
		v->pools[i].tree = NULL;
		v->pools[i].tcap = 0;
		v->pools[i].tvalid = 0;
		free(v->pools[i].sched);
		v->pools[i].sched = NULL;
		v->pools[i].sched_state = 0;
	}
	rank_free(v);
	free(v->cmatch);
	free(v->cstamp);
	free(v->cold);
	v->cmatch = v->cstamp = v->cold = NULL;
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
		return pick_least(v, p, STRAT_LEAST_CONN, f);
	case STRAT_POWER_OF_TWO:
		return pick_p2c(v, p, f);
	case STRAT_LEAST_LATENCY:
		return pick_least(v, p, STRAT_LEAST_LATENCY, f);
	case STRAT_RANDOM:
		return pick_random(v, p, f);
	case STRAT_LEAST_TOKENS:
		return pick_lowest(v, p, f, cost_tokens);
	case STRAT_LLM:
		return pick_llm(v, p, f);
	case STRAT_ROUND_ROBIN:
	default:
		return pick_round_robin(v, p, f);
	}
}

/* The pick of one tier with the filters of f, by strat (geo and model: by base). */
static int
pick_tier(struct wview *v, struct wpool *p, uint32_t strat, uint32_t base,
    struct bal_filter *f)
{
	int	slot;

	switch (strat) {
	case STRAT_GEO:
		if (f->local)
			return pick_with(v, p, base, f);
		f->local = 1;
		slot = pick_with(v, p, base, f);
		f->local = 0;
		return slot != -1 ? slot : pick_with(v, p, base, f);
	case STRAT_MODEL:
		/* the model filter is in req; rank survivors by the base strategy */
		return pick_with(v, p, base, f);
	default:
		return pick_with(v, p, strat, f);
	}
}

/* 1 if some member passes f. */
static int
balance_any(struct wview *v, struct wpool *p, const struct bal_filter *f)
{
	size_t	i;

	for (i = 0; i < p->n; i++)
		if (balance_ok(v, p->idx[i], f))
			return 1;
	return 0;
}

/*
 * The pool's filters, in their order: each narrows the candidates (of
 * the tier) when some candidate is left, and is dropped when none is.
 * The model filter is the request's (always on when it names one).
 */
static void
balance_filters(struct wview *v, struct wpool *p, struct bal_filter *f)
{
	uint32_t	fl = p->filters;
	int		i;

	for (i = 0; i < CONF_FILTERS_MAX && fl != 0; i++, fl >>= 4) {
		struct bal_filter t = *f;

		switch (fl & 0xf) {
		case FILTER_REGION:
			t.local = 1;
			break;
		case FILTER_SATURATION:
			t.unsat = 1;
			break;
		default:
			continue;
		}
		if (balance_any(v, p, &t))
			*f = t;
	}
}

/* One decision into this worker's ring, for routerctl explain. */
static void
balance_explain(struct wview *v, const struct wpool *p, uint32_t strat, int slot,
    int shadow, const struct bal_req *req)
{
	struct shm_explain	*e = shm_explain(v->shm, v->windex);
	uint64_t		 head = atomic_load_explicit(&e->head, memory_order_relaxed);
	struct shm_decision	*d = &e->ent[head & (SHM_EXPLAIN_LEN - 1)];
	uint32_t		 seq = atomic_load_explicit(&d->seq, memory_order_relaxed);

	atomic_store_explicit(&d->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	d->pool = p->id;
	d->strategy = strat;
	d->reason = v->ex_reason;
	d->pick = slot;
	d->shadow = shadow;
	d->model = req->model >= 0 ? req->model : -1;
	d->ncand = v->ex_ncand;
	d->blocks = req->nblocks;
	d->prompt_tokens = req->prompt_tokens;
	{
		struct timespec ts;

		/* the coarse clock: the ring says when to the ms, not to the ns */
		clock_gettime(CLOCK_REALTIME_COARSE, &ts);
		d->ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	}
	if (req->rid != NULL)
		strlcpy(d->rid, req->rid, sizeof(d->rid));
	else
		d->rid[0] = '\0';
	memcpy(d->cand, v->ex_cand, sizeof(d->cand[0]) *
	    (v->ex_ncand < SHM_EXPLAIN_CANDS ? v->ex_ncand : SHM_EXPLAIN_CANDS));
	atomic_store_explicit(&d->seq, seq + 2, memory_order_release);
	atomic_store_explicit(&e->head, head + 1, memory_order_release);
}

int
balance_pick(struct wview *v, uint32_t pool, const struct bal_req *req)
{
	struct wpool		*p;
	struct bal_filter	 f = { .req = req };
	struct shm_poolq	*q;
	uint32_t		 strat, base, match;
	int			 slot = -1, shadow = -1, tier;

	if (pool >= v->npools)
		return -1;
	p = &v->pools[pool];
	if (p->id >= SHM_POOLS_MAX)
		return -1;
	/* the strategy words of the pool's id, whatever its place in a newer file */
	strat = shm_pool_strategy(v->shm, p->id);
	base = atomic_load_explicit(&v->shm->pools[p->id].base_strategy,
	    memory_order_relaxed);
	if (base == STRAT_GEO || base == STRAT_MODEL)
		base = STRAT_ROUND_ROBIN;
	if (req->override > 0 && req->override <= STRAT_COUNT)
		strat = (uint32_t)req->override - 1;	/* X-Router-Strategy, allowed by the pool */
	v->ex_reason = BAL_R_STRATEGY;
	v->ex_ncand = 0;
	v->last_match = 0;
	for (tier = 0; tier <= 1 && slot == -1; tier++) {
		f.backup = tier;
		f.local = f.unsat = 0;
		if (p->filters != 0)
			balance_filters(v, p, &f);
		slot = pick_tier(v, p, strat, base, &f);
	}
	if (slot == -1)
		v->ex_reason = BAL_R_NONE;
	v->last_slot = slot;
	q = &v->shm->poolq[v->windex][p->id];
	if (p->shadow > 0 && p->shadow <= STRAT_COUNT && slot != -1 && req->nexclude == 0) {
		/* what the shadow would have picked, from the same candidates; not acted on */
		uint32_t	reason = v->ex_reason, ncand = v->ex_ncand;
		struct shm_cand	cand[SHM_EXPLAIN_CANDS];

		match = v->last_match;
		memcpy(cand, v->ex_cand, sizeof(cand));
		shadow = pick_tier(v, p, p->shadow - 1, base, &f);
		shm_ctr_add(shadow == slot ? &q->shadow_agree : &q->shadow_differ, 1);
		v->ex_reason = reason;
		v->ex_ncand = ncand;
		memcpy(v->ex_cand, cand, sizeof(cand));
		v->last_match = match;
	}
	if (v->ex_reason == BAL_R_AFFINITY)
		shm_ctr_add(&q->affinity, 1);
	else if (v->ex_reason == BAL_R_COLD)
		shm_ctr_add(&q->cold, 1);
	else if (v->ex_reason == BAL_R_SATURATED || v->ex_reason == BAL_R_LOAD)
		shm_ctr_add(&q->affinity_yield, 1);
	if (req->override > 0 && slot != -1 && strat != STRAT_LLM)
		v->ex_reason = BAL_R_OVERRIDE;	/* llm's own reason says more */
	balance_explain(v, p, strat, slot, shadow, req);
	return slot;
}

void
balance_view_pools(struct wview *v, const char *const *names)
{
	size_t	i;
	int	id;

	for (i = 0; i < SHM_POOLS_MAX; i++)
		v->local[i] = -1;
	for (i = 0; i < v->npools; i++) {
		v->pools[i].id = UINT32_MAX;
		if (names[i] == NULL ||
		    (id = shm_pool_id(v->shm, names[i])) < 0 ||
		    id >= SHM_POOLS_MAX || v->local[id] != -1)
			continue;
		v->pools[i].id = (uint32_t)id;
		v->local[id] = (int16_t)i;
	}
}

uint32_t
balance_view_pool_of(const struct wview *v, uint32_t id)
{
	if (id >= SHM_POOLS_MAX || v->local[id] < 0)
		return UINT32_MAX;
	return (uint32_t)v->local[id];
}

uint32_t
balance_view_qid(const struct wview *v, int pool)
{
	if (pool < 0 || (size_t)pool >= v->npools ||
	    v->pools[pool].id >= SHM_POOLS_MAX)
		return 0;
	return v->pools[pool].id;
}

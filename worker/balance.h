/* Backend selection over a worker's view of the shared table. */
#ifndef WORKER_BALANCE_H
#define WORKER_BALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "shm/table.h"

/* This worker's copy of one slot's descriptor fields that selection needs. */
struct wbe {
	uint32_t	 inuse;
	uint32_t	 pool;		/* index in the view's pools[] (this worker's config), UINT32_MAX: none */
	uint32_t	 flags;		/* SHM_F_* */
	uint32_t	 weight;
	uint32_t	 max_conns;
	int64_t		 cur;		/* smooth weighted round robin state */
	uint32_t	 nmodels;
	uint32_t	 models[SHM_SLOT_MODELS];
	char		 region[SHM_NAME_MAX];
	uint32_t	 ppos;		/* its index in its pool's idx[], set with the pool's tree */
	uint32_t	 rlat;		/* as of that tree: latency EWMA (>= 1), 0 = cannot take requests */
	uint64_t	 hrw;		/* hash of its name: its rank for a cold prefix (llm) */
};

struct wpool {
	uint32_t	 id;		/* the pool's id in the table (shm_pool_id()), UINT32_MAX: none */
	uint32_t	*idx;		/* slots of the pool's members */
	size_t		 n;
	uint32_t	 rr;		/* round robin cursor */
	uint32_t	 shadow;	/* shadow_strategy + 1, 0 none */
	uint32_t	 filters;	/* conf_pool.filters */
	/*
	 * weighted: one full smooth-WRR cycle, precomputed, so a pick is
	 * a step through an array.  sched_state 0 = to build, 1 = built,
	 * -1 = too large (sum of weights x members): pick by scanning.
	 */
	uint32_t	*sched;
	size_t		 nsched;
	size_t		 spos;
	int		 sched_state;
	/*
	 * least_connections/least_latency: a min-tree over the members'
	 * costs (leaves at tree[tcap + position], UINT64_MAX for a member
	 * that cannot take a request), valid for strategy tstrat while
	 * tvalid.  tslow: a member is half-open, whose trial tickets only a
	 * scan can weigh, so picks scan until the next rebuild.
	 */
	uint64_t	*tree;
	size_t		 tcap;
	uint32_t	 tstrat;
	int		 tvalid;
	int		 tslow;
};

/* What selection reads: the table for live words, local copies for the rest. */
struct wview {
	struct shm_hdr	*shm;
	uint32_t	 nstripes;	/* worker stripes to sum for in-flight */
	struct wbe	*be;		/* [shm->max_backends], indexed by slot */
	/*
	 * This worker's pools, in its own config's order (a route's and a
	 * backup_pool's index); each knows its stable id in the table, by
	 * which shared per-pool words are read.  local[id] maps back.
	 */
	struct wpool	*pools;
	size_t		 npools;
	int16_t		 local[SHM_POOLS_MAX];	/* table id -> index in pools[], -1 */
	uint64_t	 rng;		/* xorshift state, never 0 */
	char		 region[SHM_NAME_MAX];
	/*
	 * Ranked picks: in-flight per slot summed over every stripe, kept
	 * current by applying the stripes' in-flight logs (shm_inlog) rather
	 * than re-reading every backend's stripes at each pick.  Allocated
	 * at the first ranked pick.
	 */
	int32_t		*tot;		/* [max_backends] */
	int32_t		*sval;		/* [nstripes][max_backends]: last value seen */
	uint64_t	*seen;		/* [nstripes]: log entries applied */
	uint64_t	 pseen;		/* prober log entries applied */
	int		 rank_ready;	/* every stripe read once */
	int		 rank_off;	/* 1: always scan (tests compare the two) */
	uint32_t	 windex;	/* our stripe: decision ring, pool counters */
	struct {
		int64_t	 affinity_limit;	/* llm.* */
		uint32_t queue_limit;
		uint32_t kv_ppm;
		uint32_t load_factor;
		uint32_t block;			/* characters per prefix block */
		uint64_t metrics_ms;		/* health.metrics_interval, 0: not read */
	} llm;
	/* the last pick: its slot, and the prefix blocks warm there (llm) */
	int		 last_slot;
	uint32_t	 last_match;
	uint32_t	*cmatch;	/* [max_backends]: blocks warm per candidate, during an llm pick */
	uint32_t	*cstamp;	/* [max_backends]: the pick that wrote cmatch */
	uint32_t	 npick;
	uint32_t	*cold;		/* [max_backends]: new prefixes placed there lately (halved each minute) */
	uint64_t	 cold_ms;	/* when cold[] was halved last */
	/* the last pick, for the decision ring */
	uint32_t	 ex_reason;	/* enum bal_reason */
	uint32_t	 ex_ncand;
	struct shm_cand	 ex_cand[SHM_EXPLAIN_CANDS];
};

#define BAL_EXCLUDE_MAX	8

#define BAL_BLOCKS_MAX	256	/* prefix blocks a request may name (llm.max_blocks <= this) */

/*
 * Why a pick went where it did (routerctl explain).  BAL_R_STRATEGY is a
 * plain pick by the strategy's own order; the others are the llm
 * strategy's reasons, and BAL_R_OVERRIDE a pick by X-Router-Strategy.
 */
enum bal_reason {
	BAL_R_NONE = 0,		/* nothing could take it */
	BAL_R_STRATEGY,		/* the strategy's order */
	BAL_R_AFFINITY,		/* the longest warm prefix, below its limits */
	BAL_R_SATURATED,	/* warm backends saturated: token-load score */
	BAL_R_LOAD,		/* a warm match too short to matter: token-load score */
	BAL_R_COLD,		/* no backend warm: bounded-load consistent hash */
	BAL_R_OVERRIDE,		/* X-Router-Strategy chose the strategy */
	BAL_R_COUNT
};

/*
 * Per-request constraints: slots already tried, the model asked for (-1 =
 * any); and what the llm strategy reads: the prompt's chained block hashes
 * (jscan_request()) and its token estimates.
 */
struct bal_req {
	uint32_t	 exclude[BAL_EXCLUDE_MAX];
	size_t		 nexclude;
	int		 model;
	int		 ignore_full;	/* 1: treat backends at max_conns (or over their load signals) as eligible (queueing asks) */
	int		 gate;		/* 1: a backend over its load signals is not eligible (queue.saturation) */
	int		 override;	/* X-Router-Strategy, allowed by the pool: enum conf_strategy + 1, 0 none */
	const uint64_t	*blocks;	/* chained hashes of the prompt's blocks, first block first */
	uint32_t	 nblocks;
	uint32_t	 prompt_tokens;	/* estimated */
	uint32_t	 output_tokens;	/* max_tokens, else llm.output_tokens */
	const char	*rid;		/* request id, for the decision ring */
};

/*
 * balance_view_pools() maps the view's pools (already allocated, npools of
 * them) to their table ids by name: names[i] is pools[i]'s name.  A name
 * the table does not know gets id UINT32_MAX, an empty pool.  Call once,
 * before the first balance_view_slot(): an id names the same pool for as
 * long as this worker runs.
 */
void	 balance_view_pools(struct wview *, const char *const *names);

/*
 * balance_view_pool_of() is the index in the view's pools of table pool
 * id, or UINT32_MAX when the pool is not one of this worker's config (a
 * newer generation's, or none).
 */
uint32_t balance_view_pool_of(const struct wview *, uint32_t id);

/*
 * balance_view_qid() is the table id of the view's pool (a route's index,
 * -1 for none) for the per-pool shared words, always below SHM_POOLS_MAX:
 * 0 for a pool without an id, which a routed request never has.
 */
uint32_t balance_view_qid(const struct wview *, int pool);

/*
 * balance_pick() returns the slot of the backend that should take the
 * next request of pool under the pool's current strategy (read from the
 * table), or -1 when no backend is eligible.  Primaries first; backups
 * only when no primary is eligible.  Does not count the request: the
 * caller adds it to its in-flight stripe once it is sent.
 */
int	 balance_pick(struct wview *, uint32_t pool, const struct bal_req *);

/* 1 if slot may take a request now (health, breaker, flags, max_conns). */
int	 balance_eligible(struct wview *, uint32_t slot);
/* 1 when some member of pool, not excluded by r and serving r's model, could take a request now. */
int	 balance_any_eligible(struct wview *, uint32_t pool, const struct bal_req *r);

/* 1 if some backend of pool serves model id. */
int	 balance_pool_has_model(const struct wview *, uint32_t pool, int model);

uint64_t balance_rand(struct wview *);

/* The pool's members or weights changed: rebuild its weighted cycle and its tree on the next pick. */
void	 balance_pool_changed(struct wpool *);

/* The view's copy of slot (its flags, max_conns) changed outside a rebuild. */
void	 balance_slot_changed(struct wview *, uint32_t slot);

/* Free what balance_pick() allocated in the view and its pools. */
void	 balance_view_free(struct wview *);

#endif

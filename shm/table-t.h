/* The shared table's fixed layout: a versioned ABI of plain structs, no pointers. */
#ifndef SHM_TABLE_T_H
#define SHM_TABLE_T_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#define SHM_MAGIC		0x52544442u	/* "RTDB" */
#define SHM_ABI			11u	/* 5: stable pool ids; 6: held bodies; 7: registry; 8: accept/free lists; 9: LLM routing; 10: stream counters, token words beside in-flight; 11: flow control */

#define SHM_NAME_MAX		64
#define SHM_ADDR_MAX		128
#define SHM_PATH_MAX		128
#define SHM_SA_MAX		28		/* sizeof(struct sockaddr_in6) */
#define SHM_SLOT_MODELS		16
#define SHM_MODELS_MAX		1024
#define SHM_POOLS_MAX		64
#define SHM_WORKERS_MAX		64
#define SHM_LAT_BUCKETS		16
#define SHM_CACHELINE		64
#define SHM_INLOG_LEN		4096		/* entries in a stripe's in-flight log, a power of two */
#define SHM_PAIRS		(SHM_SLOT_MODELS + 1)	/* a slot's models, then "any other model" */
#define SHM_TOK_BUCKETS		16		/* token histograms: <= 1, 2, 4, ... 16384, +Inf */
#define SHM_PFX_WAYS		8		/* prefix index: entries per set (one cache line) */
#define SHM_PFX_SETS		16384		/* sets, a power of two: 131072 (prefix, backend) pairs */
#define SHM_EXPLAIN_LEN		64		/* decisions kept per worker, a power of two */
#define SHM_EXPLAIN_CANDS	8		/* candidates kept per decision */
#define SHM_TENANTS		4096		/* tenants tracked host-wide, a power of two */
#define SHM_TENANT_LABEL	64
#define SHM_BANDS		16		/* admission bands: priority -8 (band 0) to 7 (band 15) */
#define SHM_BUDGET_SECS		10		/* the retry budget's window, a bucket per second */

enum shm_health {
	SHM_HEALTH_UNKNOWN = 0,		/* no check finished yet: eligible */
	SHM_HEALTH_UP,
	SHM_HEALTH_DOWN
};

enum shm_breaker {
	SHM_BREAKER_CLOSED = 0,
	SHM_BREAKER_OPEN,
	SHM_BREAKER_HALF_OPEN
};

/* shm_desc.flags */
#define SHM_F_INUSE		0x01	/* slot holds a backend */
#define SHM_F_STATIC		0x02	/* from the config file: never removed by the registry */
#define SHM_F_BACKUP		0x04	/* only when no primary of its pool is eligible */
#define SHM_F_DISABLED		0x08	/* operator: takes no traffic */
#define SHM_F_DRAINING		0x10	/* operator/registry: no new requests */
#define SHM_F_REGISTRY		0x20	/* learned from the registry */

/*
 * A backend's descriptor.  Written by the master only, inside the slot's
 * seqlock (shm_desc_write()); read by everyone else with shm_desc_read(),
 * which copies it out and retries while a write is in progress.
 */
struct shm_desc {
	char		 name[SHM_NAME_MAX];
	char		 addr[SHM_ADDR_MAX];		/* "host:port" as configured */
	uint8_t		 sa[SHM_SA_MAX];		/* resolved sockaddr_in/in6 */
	uint32_t	 salen;
	char		 health_path[SHM_PATH_MAX];	/* "" = the global health.path */
	char		 region[SHM_NAME_MAX];
	uint32_t	 pool;				/* index into hdr->pools */
	uint32_t	 weight;			/* 1..1000 */
	uint32_t	 max_conns;			/* 0 = unlimited */
	uint32_t	 flags;				/* SHM_F_* */
	uint32_t	 nmodels;
	uint32_t	 models[SHM_SLOT_MODELS];	/* ids in hdr->models */
	uint64_t	 added_ms;			/* CLOCK_REALTIME ms */
	uint64_t	 last_seen_ms;			/* registry: last time listed */
};

/* One backend.  Each group of fields names its only writer. */
struct shm_slot {
	/* master only: odd while the descriptor is being rewritten */
	alignas(SHM_CACHELINE) _Atomic uint32_t seq;
	struct shm_desc	 d;

	/* prober only: each word a single atomic, read without locks */
	alignas(SHM_CACHELINE) _Atomic uint32_t health;		/* enum shm_health */
	_Atomic uint32_t breaker;		/* enum shm_breaker */
	_Atomic uint32_t fails;			/* consecutive failed checks */
	_Atomic uint32_t oks;			/* consecutive good checks */
	_Atomic uint32_t lat_ewma_us;		/* check/request latency EWMA */
	_Atomic uint32_t lat_p50_us;
	_Atomic uint32_t lat_p99_us;
	_Atomic uint32_t breaker_opens;		/* transitions to open, total */
	_Atomic uint64_t last_check_ms;		/* CLOCK_REALTIME ms */
	_Atomic uint64_t last_change_ms;	/* last health transition */
	_Atomic uint64_t breaker_change_ms;	/* last breaker transition */

	/*
	 * Half-open trial tickets: the prober stores N when the breaker
	 * half-opens; a worker takes one with a compare-and-swap before it
	 * sends a trial request.  The one field with several writers, and
	 * only ever decremented by workers.
	 */
	alignas(SHM_CACHELINE) _Atomic uint32_t trial_tickets;

	/*
	 * master only (from routerctl/admin API): an operator's order for the
	 * breaker, applied by the prober, which stays the breaker's only
	 * writer.  SHM_FORCE_*; seq is bumped with every new order so the
	 * same order given twice is seen twice.
	 */
	_Atomic uint32_t force_breaker;
	_Atomic uint32_t force_seq;

	/*
	 * prober only: the backend's own load signals, from its Prometheus
	 * /metrics (health.metrics, vLLM's names), and which of its models
	 * are out.  m_ms is the CLOCK_REALTIME ms of the last good read, 0
	 * for none; a reader ignores m_* older than three
	 * health.metrics_interval.  Bit i of models_down: d.models[i] is
	 * missing from the backend's /v1/models; of models_open: the
	 * (backend, model) pair's breaker is open (its requests fail while
	 * the backend's others work).  Either takes that pair out, not the
	 * backend.
	 */
	alignas(SHM_CACHELINE) _Atomic uint32_t m_waiting;	/* vllm:num_requests_waiting */
	_Atomic uint32_t m_running;		/* vllm:num_requests_running */
	_Atomic uint32_t m_kv_ppm;		/* vllm:kv_cache_usage_perc, parts per million */
	_Atomic uint32_t m_fails;		/* consecutive failed /metrics reads */
	_Atomic uint64_t m_ms;
	_Atomic uint64_t m_reads;		/* good reads, total */
	_Atomic uint64_t m_errors;		/* failed reads, total */
	_Atomic uint32_t models_down;
	_Atomic uint32_t models_open;
	_Atomic uint64_t models_ms;		/* last good /v1/models read */
};

#define SHM_FORCE_NONE		0	/* the breaker follows traffic */
#define SHM_FORCE_OPEN		1	/* hold it open until released */
#define SHM_FORCE_CLOSE		2	/* close it now, then follow traffic */

/*
 * A worker's counters for one backend.  Written by that worker only
 * (plain load + store, no locked instruction); read by anyone, who sums
 * the stripes of every worker.
 */
struct shm_counters {
	alignas(SHM_CACHELINE) _Atomic int64_t inflight;	/* requests now at this backend */
	/* tokens now at this backend, all models (the sums of its shm_pair stripes);
	   in in-flight's cache line: the llm pick reads the three of every stripe */
	_Atomic int64_t	 tok_prompt;		/* prompt tokens in flight */
	_Atomic int64_t	 tok_uncached;		/* ...of them not expected in its prefix cache */
	_Atomic int64_t	 tok_output;		/* output tokens expected, not yet received */
	_Atomic uint64_t requests;		/* attempts sent */
	_Atomic uint64_t fails;			/* connect errors, resets, timeouts, bad responses */
	_Atomic uint64_t consec_fails;		/* failed attempts in a row (breaker input) */
	_Atomic uint64_t retries;		/* attempts that were retries */
	_Atomic uint64_t bytes_in;		/* from the backend */
	_Atomic uint64_t bytes_out;		/* to the backend */
	_Atomic uint64_t lat_sum_us;		/* sum of response-head latencies */
	_Atomic uint64_t status[6];		/* [0] none/error, [1..5] 1xx..5xx */
	_Atomic uint64_t conns;			/* upstream connections opened */
	_Atomic uint64_t lat_hist[SHM_LAT_BUCKETS];	/* shm_lat_bucket() */
	/* failovers away from this backend: a failed attempt, then another backend */
	_Atomic uint64_t failovers;		/* requests moved on after failing here */
	_Atomic uint64_t failover_ok;		/* ...that another backend then answered */
	_Atomic uint64_t failover_us;		/* sum of first failure -> answer head */
	_Atomic uint64_t last_failover_ms;	/* CLOCK_REALTIME ms of the last success */
	/* streams (llm: DESIGN "Stream-aware failover") */
	_Atomic uint64_t held_fails;		/* failed before the first event, head held: moved on unseen */
	_Atomic uint64_t streams_broken;	/* broke after the first event: ended with an error event */
	_Atomic uint64_t down_released;		/* waiting for a first byte when the prober marked it down */
	/* live latency, as this worker measures its requests (least_latency) */
	_Atomic uint64_t live_lat_us;		/* EWMA of response-head latency */
	_Atomic uint64_t live_lat_ms;		/* CLOCK_REALTIME ms of its last update; 0 none */
};

/*
 * A worker's figures for one (backend, model) pair: pair[i] is the
 * slot's d.models[i], pair[SHM_SLOT_MODELS] every request with another
 * model or none.  Written by that worker only (plain load + store), read
 * by anyone, who sums the stripes.  The in-flight words go up when an
 * attempt is sent and down by the same amounts when it ends; the totals
 * take the backend's usage when it sent one, the estimate otherwise.
 */
struct shm_pair {
	alignas(SHM_CACHELINE) _Atomic int64_t reqs;	/* requests in flight */
	_Atomic int64_t	 prompt;		/* prompt tokens in flight (estimated) */
	_Atomic int64_t	 uncached;		/* ...not expected to be cached there */
	_Atomic int64_t	 output;		/* output tokens expected, not yet received */
	_Atomic uint64_t requests;		/* attempts sent */
	_Atomic uint64_t done;			/* attempts ended with a whole response */
	_Atomic uint64_t fails;			/* attempts that failed */
	_Atomic uint64_t consec_fails;		/* in a row (the pair's breaker input) */
	_Atomic uint64_t prompt_tokens;		/* total: usage.prompt_tokens, else estimated */
	_Atomic uint64_t output_tokens;		/* total: usage.completion_tokens, else counted */
	_Atomic uint64_t cached_tokens;		/* total: usage.prompt_tokens_details.cached_tokens */
	_Atomic uint64_t usage_chars;		/* prompt characters of the requests with a usage */
	_Atomic uint64_t usage_prompt;		/* ...and their usage.prompt_tokens (chars per token) */
	_Atomic uint64_t ttft_sum_us;
	_Atomic uint64_t itl_sum_us;
	_Atomic uint64_t itl_count;
	_Atomic uint64_t ttft_hist[SHM_LAT_BUCKETS];	/* shm_lat_bucket() */
	_Atomic uint64_t itl_hist[SHM_LAT_BUCKETS];
	_Atomic uint64_t ptok_hist[SHM_TOK_BUCKETS];	/* shm_tok_bucket() */
	_Atomic uint64_t otok_hist[SHM_TOK_BUCKETS];
};

/*
 * The host's prefix memory: which backends were sent which prompt
 * prefixes lately.  A prefix is named by the chained hash of its blocks
 * (DESIGN "LLM routing"); an entry is (hash with its low 16 bits
 * replaced by the slot) and the tick it was last used.  A set holds
 * SHM_PFX_WAYS entries of the hashes that fall in it; a new entry takes
 * the way used least recently.  Every worker writes it, without locks:
 * two workers racing on a way lose one entry, which costs one cache miss
 * at the backend, never a wrong answer (a prefix memory is advice).
 */
struct shm_pfxset {
	alignas(SHM_CACHELINE) _Atomic uint64_t key[SHM_PFX_WAYS];	/* 0: empty */
	alignas(SHM_CACHELINE) _Atomic uint32_t tick[SHM_PFX_WAYS];
};

/*
 * One routing decision, for routerctl explain: a worker's ring of its
 * last SHM_EXPLAIN_LEN, each entry inside its own seqlock (seq odd while
 * the worker rewrites it).  Written by that worker only.
 */
struct shm_cand {
	int32_t		 slot;
	uint32_t	 match;			/* prefix blocks warm there */
	uint64_t	 score;			/* the strategy's cost, lower wins */
};

struct shm_decision {
	alignas(SHM_CACHELINE) _Atomic uint32_t seq;
	uint32_t	 pool;			/* pool id */
	uint32_t	 strategy;		/* enum conf_strategy used */
	uint32_t	 reason;		/* enum bal_reason */
	int32_t		 pick;			/* slot, -1 none */
	int32_t		 shadow;		/* the shadow strategy's pick, -1 none */
	int32_t		 model;			/* model id, -1 none */
	uint32_t	 ncand;			/* candidates seen (the first SHM_EXPLAIN_CANDS kept) */
	uint32_t	 blocks;		/* prefix blocks of the request */
	uint32_t	 prompt_tokens;		/* estimated */
	uint64_t	 ms;			/* CLOCK_REALTIME */
	char		 rid[40];		/* request id */
	struct shm_cand	 cand[SHM_EXPLAIN_CANDS];
};

struct shm_explain {
	alignas(SHM_CACHELINE) _Atomic uint64_t head;	/* decisions ever written */
	struct shm_decision ent[SHM_EXPLAIN_LEN];
};

/*
 * A stripe's in-flight log: every change of an in-flight word of the
 * stripe, in order, as (slot << 32 | new value).  Written by the stripe's
 * writer only (its worker, or the master once that worker is dead and
 * reaped): the entry first, then head with release.  A reader that keeps
 * a sum of in-flight per backend applies the entries past the head it saw
 * last instead of re-reading every backend's stripes; one that fell more
 * than SHM_INLOG_LEN entries behind re-reads the stripe instead.
 *
 * The prober keeps one log of the same shape: the slots whose health,
 * breaker or latency EWMA it just changed (value 0), so a worker that
 * ranks backends refreshes those alone.
 */
struct shm_inlog {
	alignas(SHM_CACHELINE) _Atomic uint64_t head;	/* entries ever written */
	alignas(SHM_CACHELINE) _Atomic uint64_t ent[SHM_INLOG_LEN];
};

/*
 * A pool, by id.  An id names one pool for as long as any generation may
 * use it: the master gives a name the id it had before (live or retired),
 * and gives a free id to a new name only if it was never used or no
 * running worker's generation is as old as last_gen (DESIGN "The shared
 * table").  Every descriptor's pool and every per-pool shared word
 * (strategy, poolq[][]) is keyed by that id, never by the order of the
 * pools in a config file, so a worker of generation N keeps routing by
 * generation N's pools whatever generation N+1 does to the table.
 *
 * name and inuse: master only, under hdr->mseq; inuse is 1 while the
 * pool is in the current config, 0 once retired (the name stays, so the
 * workers of older generations still find their pool's id).  last_gen:
 * master only, read by nobody else.  strategy: one atomic word, written
 * by whoever owns the change (master, control).
 */
struct shm_pool {
	alignas(SHM_CACHELINE) _Atomic uint32_t strategy;	/* enum conf_strategy */
	_Atomic uint32_t inuse;
	_Atomic uint32_t base_strategy;
	uint32_t	 last_gen;		/* the last config generation that had it */
	char		 name[SHM_NAME_MAX];
};

/* A worker slot: pid written by the master, the rest by that worker. */
struct shm_worker {
	alignas(SHM_CACHELINE) _Atomic int32_t pid;
	_Atomic uint32_t generation;		/* config generation it runs */
	_Atomic uint32_t state;			/* 0 free, 1 running, 2 draining */
	_Atomic uint32_t queued;		/* requests waiting in its FIFO */
	_Atomic uint64_t started_ms;
	_Atomic uint64_t conns;			/* client connections open */
	_Atomic uint64_t accepted;		/* client connections accepted, total */
	_Atomic uint64_t hold_bytes;		/* request body memory held now */
	_Atomic uint64_t hold_refused;		/* bodies that streamed: hold memory spent */
	_Atomic uint64_t accept_paused;		/* times it stopped accepting at limits.connections */
	_Atomic uint32_t free_bufs;		/* WORKER_BUFSZ blocks on its free list */
	_Atomic uint32_t free_fwd;		/* forward blocks on its free list */
	/*
	 * The retry budget's window (DESIGN "Flow control"): per second
	 * (bud_sec[i], monotonic seconds, i = second % SHM_BUDGET_SECS) the
	 * requests this worker began and the retries it made.  A worker
	 * deciding a retry sums every worker's buckets of the last
	 * SHM_BUDGET_SECS seconds.
	 */
	_Atomic uint64_t bud_sec[SHM_BUDGET_SECS];
	_Atomic uint32_t bud_req[SHM_BUDGET_SECS];
	_Atomic uint32_t bud_retry[SHM_BUDGET_SECS];
	_Atomic uint64_t bud_refused;		/* retries the budget refused */
	_Atomic uint64_t bud_retries;		/* retries it allowed */
};

struct shm_model {
	char	 name[SHM_NAME_MAX];
};

/*
 * A worker's queue for one pool id (DESIGN "Queueing"); that worker
 * writes it, and the master zeroes it when it gives the id to a new name
 * (no worker that wrote it is left then).
 */
struct shm_poolq {
	_Atomic uint32_t queued;		/* waiting now */
	_Atomic uint64_t waits;			/* requests that waited and got a backend */
	_Atomic uint64_t wait_ms;		/* their total wait */
	_Atomic uint64_t timeouts;		/* 503 after queue.timeout */
	_Atomic uint64_t rejected;		/* 503 at once: the queue was full */
	_Atomic uint64_t shadow_agree;		/* shadow_strategy picked what the strategy did */
	_Atomic uint64_t shadow_differ;
	_Atomic uint64_t override_used;		/* X-Router-Strategy honoured */
	_Atomic uint64_t override_ignored;	/* X-Router-Strategy not in allow_strategies */
	_Atomic uint64_t affinity;		/* llm: sent to the warmest backend */
	_Atomic uint64_t affinity_yield;	/* llm: the warmest was saturated; load decided */
	_Atomic uint64_t cold;			/* llm: no backend warm; placed by hashing */
	/*
	 * The admission queue (DESIGN "Flow control").  head: the order key
	 * of this worker's first waiting request of the pool (band, then
	 * virtual start, flow_key()), 0 none; stuck: the pool's release epoch
	 * at which that request found no backend (the others do not wait
	 * for it until a slot frees again).
	 */
	_Atomic uint64_t head;
	_Atomic uint64_t stuck;
	_Atomic uint64_t dropped;		/* 503: the deadline passed in the queue */
	_Atomic uint64_t expired;		/* 503: the deadline had passed on arrival */
	_Atomic uint64_t limited;		/* 429: a rate limit */
	_Atomic uint32_t band_queued[SHM_BANDS];	/* waiting now, by band */
	_Atomic uint64_t band_admitted[SHM_BANDS];	/* left the queue for a backend, by band */
	_Atomic uint64_t wait_hist[SHM_LAT_BUCKETS];	/* their waits (shm_lat_bucket()) */
};

/*
 * The admission queue of one pool, host-wide; several writers, each word
 * a single atomic.  epoch counts releases of a backend slot while anything
 * waits; vclock is the virtual start of the last request that left the
 * queue (the fair queue's clock, DESIGN "Flow control").
 */
struct shm_qpool {
	alignas(SHM_CACHELINE) _Atomic uint64_t epoch;
	_Atomic uint64_t vclock;
	_Atomic uint32_t queued;		/* waiting now, every worker */
};

/*
 * A tenant (queue.tenant), host-wide, found by the hash of its name
 * (open addressing; a word of 0 is free, and a taken entry is never
 * given back).  Several writers: the rate-limit and fair-queue words
 * change by compare-and-swap, the counters by atomic adds.
 */
struct shm_tenant {
	alignas(SHM_CACHELINE) _Atomic uint64_t key;	/* hash of its name, 0 free */
	_Atomic int64_t	 rq_tat;		/* requests_per_second: monotonic ns the bucket is empty until (GCRA) */
	_Atomic int64_t	 tk_tat;		/* tokens_per_minute: the same */
	_Atomic uint64_t vt;			/* fair queue: virtual start of its next waiting request */
	_Atomic int32_t	 rule;			/* its ratelimits entry + 1, 0 none */
	_Atomic int32_t	 queued;		/* waiting now */
	alignas(SHM_CACHELINE) _Atomic uint64_t requests;	/* admitted past its limits */
	_Atomic uint64_t limited_req;		/* 429: requests_per_second */
	_Atomic uint64_t limited_tok;		/* 429: tokens_per_minute */
	_Atomic uint64_t tokens;		/* charged, then corrected by the backend's usage */
	_Atomic uint64_t waits;			/* requests that waited in the queue */
	_Atomic uint64_t wait_ms;		/* their total wait */
	_Atomic uint64_t dropped;		/* 503: deadline in the queue */
	_Atomic uint64_t last_ms;		/* CLOCK_REALTIME ms of its last request */
	/* written once, by whoever took the entry, after key */
	alignas(SHM_CACHELINE) char label[SHM_TENANT_LABEL];	/* shown: an address, a rule's name, or a key cut to its ends */
};

/*
 * The registry's counters, as the master keeps them from the syncer's
 * reports (DESIGN: the syncer never touches the table).  Written by the
 * master only, each word a single atomic; read by workers (/metrics, the
 * admin API) and routerctl.  Backends by source are not here: readers
 * count them from the descriptors' SHM_F_REGISTRY flag.
 */
struct shm_registry {
	alignas(SHM_CACHELINE) _Atomic uint32_t enabled;	/* registry.url is set */
	_Atomic uint32_t failing;		/* the last pull failed */
	_Atomic uint64_t syncs_ok;		/* pulls that worked, since the master started */
	_Atomic uint64_t syncs_failed;		/* pulls that failed (the last good set kept) */
	_Atomic uint64_t last_ok_ms;		/* CLOCK_REALTIME ms of the last good pull; 0: none */
	_Atomic uint64_t last_fail_ms;
	_Atomic uint32_t listed;		/* services in the last good answer */
	_Atomic uint32_t in_grace;		/* registry backends gone, waiting out registry.grace */
	_Atomic uint64_t applied;		/* batches applied */
};

/*
 * The header.  magic/abi/sizes are written once by the master before the
 * first fork.  gen is bumped by the master after every membership or
 * model-index change (release), so a reader that sees a new gen re-reads
 * descriptors and the model index.
 */
struct shm_hdr {
	uint32_t	 magic;
	uint32_t	 abi;
	uint64_t	 size;			/* bytes mapped */
	uint32_t	 max_backends;
	uint32_t	 max_workers;
	uint64_t	 slots_off;		/* offset of slots[max_backends] */
	uint64_t	 counters_off;		/* offset of counters[max_workers][max_backends] */
	uint64_t	 inlog_off;		/* offset of inlog[max_workers] */
	uint64_t	 plog_off;		/* offset of the prober's log (one shm_inlog) */
	uint64_t	 pair_off;		/* offset of pair[max_workers][max_backends][SHM_PAIRS] */
	uint64_t	 pfx_off;		/* offset of the prefix memory, SHM_PFX_SETS sets */
	uint64_t	 explain_off;		/* offset of explain[max_workers] */
	uint64_t	 created_ms;

	alignas(SHM_CACHELINE) _Atomic uint64_t gen;
	_Atomic uint32_t nslots;		/* high-water mark of used slots */
	_Atomic uint32_t nmodels;		/* master only */
	_Atomic uint32_t mseq;			/* master only: seqlock over models[] and pool names */
	_Atomic uint32_t verbose;		/* master only: log level every process follows */

	struct shm_registry registry;		/* master only */
	struct shm_pool	 pools[SHM_POOLS_MAX];
	struct shm_worker workers[SHM_WORKERS_MAX];
	struct shm_model models[SHM_MODELS_MAX];
	struct shm_poolq poolq[SHM_WORKERS_MAX][SHM_POOLS_MAX];
	struct shm_qpool qpool[SHM_POOLS_MAX];
	struct shm_tenant tenants[SHM_TENANTS];
};

_Static_assert(sizeof(struct shm_slot) % SHM_CACHELINE == 0, "slot not cache-line sized");
_Static_assert(sizeof(struct shm_counters) % SHM_CACHELINE == 0, "counters not cache-line sized");
_Static_assert(sizeof(struct shm_inlog) % SHM_CACHELINE == 0, "inlog not cache-line sized");
_Static_assert(sizeof(struct shm_pair) % SHM_CACHELINE == 0, "pair not cache-line sized");
_Static_assert(sizeof(struct shm_pfxset) == 2 * SHM_CACHELINE, "prefix set not two lines");
_Static_assert((SHM_PFX_SETS & (SHM_PFX_SETS - 1)) == 0, "prefix sets not a power of two");
_Static_assert((SHM_EXPLAIN_LEN & (SHM_EXPLAIN_LEN - 1)) == 0, "explain ring not a power of two");
_Static_assert((SHM_INLOG_LEN & (SHM_INLOG_LEN - 1)) == 0, "inlog length not a power of two");
_Static_assert(sizeof(struct shm_hdr) % SHM_CACHELINE == 0, "header not cache-line sized");
_Static_assert(sizeof(struct shm_tenant) == 3 * SHM_CACHELINE, "tenant not three lines");
_Static_assert((SHM_TENANTS & (SHM_TENANTS - 1)) == 0, "tenants not a power of two");
_Static_assert(alignof(struct shm_slot) == SHM_CACHELINE, "slot alignment");
_Static_assert(sizeof(struct shm_desc) < 1024, "descriptor too large");

#endif

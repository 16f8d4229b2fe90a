/* The shared table's API: creation, seqlock'd descriptors, health words, counter stripes. */
#ifndef SHM_TABLE_H
#define SHM_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "table-t.h"

/* Bytes needed for a table of this capacity (page-rounded). */
size_t	 shm_size(uint32_t max_backends, uint32_t max_workers);

/*
 * shm_create() maps a zeroed MAP_SHARED table (memfd) and writes the
 * header.  Call in the master before the first fork.  Returns the header
 * or NULL with errno set; *fdp gets the memfd (may be NULL).
 */
struct shm_hdr	*shm_create(uint32_t max_backends, uint32_t max_workers, int *fdp);
void		 shm_destroy(struct shm_hdr *);

/* shm_check(): 0 if magic, ABI and size are what this binary expects, else -1. */
int	 shm_check(const struct shm_hdr *, size_t maplen);

static inline struct shm_slot *
shm_slot(struct shm_hdr *h, uint32_t i)
{
	return (struct shm_slot *)((char *)h + h->slots_off) + i;
}

static inline struct shm_counters *
shm_ctr(struct shm_hdr *h, uint32_t worker, uint32_t slot)
{
	return (struct shm_counters *)((char *)h + h->counters_off) +
	    (size_t)worker * h->max_backends + slot;
}

/* worker's figures for (slot, pair): pair is an index into d.models, or SHM_SLOT_MODELS for any other */
static inline struct shm_pair *
shm_pair(struct shm_hdr *h, uint32_t worker, uint32_t slot, uint32_t pair)
{
	return (struct shm_pair *)((char *)h + h->pair_off) +
	    ((size_t)worker * h->max_backends + slot) * SHM_PAIRS + pair;
}

static inline struct shm_pfxset *
shm_pfxset(struct shm_hdr *h, uint64_t hash)
{
	return (struct shm_pfxset *)((char *)h + h->pfx_off) +
	    (hash & (SHM_PFX_SETS - 1));
}

static inline struct shm_explain *
shm_explain(struct shm_hdr *h, uint32_t worker)
{
	return (struct shm_explain *)((char *)h + h->explain_off) + worker;
}

/* Master only: rewrite a slot's descriptor inside its seqlock. */
void	 shm_desc_write(struct shm_slot *, const struct shm_desc *);

/*
 * Anyone: copy a consistent descriptor out, retrying while the master
 * writes.  shm_desc_read() spins until it succeeds; shm_desc_tryread()
 * makes one attempt and returns 0 on success, -1 if a write raced it
 * (the copy in the out buffer is then torn and must not be used).
 */
void	 shm_desc_read(const struct shm_slot *, struct shm_desc *);
int	 shm_desc_tryread(const struct shm_slot *, struct shm_desc *);

/* Generation: master bumps after publishing changes; readers compare. */
uint64_t shm_gen(const struct shm_hdr *);
void	 shm_gen_bump(struct shm_hdr *);

/*
 * Single-writer counter update: the calling worker owns the stripe, so a
 * relaxed load and store suffice (no lock prefix on the hot path).
 */
static inline void
shm_ctr_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
	    memory_order_relaxed);
}

static inline struct shm_inlog *
shm_inlog(struct shm_hdr *h, uint32_t stripe)
{
	return (struct shm_inlog *)((char *)h + h->inlog_off) + stripe;
}

/* A log entry: the slot and the in-flight word's new value. */
#define SHM_INLOG_ENT(slot, v)	((uint64_t)(slot) << 32 | (uint32_t)(int32_t)(v))
#define SHM_INLOG_SLOT(e)	((uint32_t)((e) >> 32))
#define SHM_INLOG_VAL(e)	((int32_t)(uint32_t)(e))

/*
 * Set the in-flight word of (stripe, slot) and log the change.  Only the
 * stripe's writer may call it.  The release fence keeps the entry behind
 * the previous head: a reader that sees this entry overwrite an old one
 * also sees a head that tells it so (the seqlock argument, per entry).
 */
static inline void
shm_inflight_set(struct shm_hdr *h, uint32_t stripe, uint32_t slot, int64_t v)
{
	struct shm_inlog	*l = shm_inlog(h, stripe);
	uint64_t		 pos;

	pos = atomic_load_explicit(&l->head, memory_order_relaxed);
	atomic_store_explicit(&shm_ctr(h, stripe, slot)->inflight, v,
	    memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&l->ent[pos & (SHM_INLOG_LEN - 1)],
	    SHM_INLOG_ENT(slot, v), memory_order_relaxed);
	atomic_store_explicit(&l->head, pos + 1, memory_order_release);
}

static inline void
shm_inflight_add(struct shm_hdr *h, uint32_t stripe, uint32_t slot, int64_t d)
{
	shm_inflight_set(h, stripe, slot, atomic_load_explicit(
	    &shm_ctr(h, stripe, slot)->inflight, memory_order_relaxed) + d);
}

static inline struct shm_inlog *
shm_plog(struct shm_hdr *h)
{
	return (struct shm_inlog *)((char *)h + h->plog_off);
}

/*
 * Prober only, after it changed slot's health, breaker or latency words:
 * log the slot (same protocol as shm_inflight_set()).
 */
static inline void
shm_prober_note(struct shm_hdr *h, uint32_t slot)
{
	struct shm_inlog	*l = shm_plog(h);
	uint64_t		 pos;

	pos = atomic_load_explicit(&l->head, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&l->ent[pos & (SHM_INLOG_LEN - 1)],
	    SHM_INLOG_ENT(slot, 0), memory_order_relaxed);
	atomic_store_explicit(&l->head, pos + 1, memory_order_release);
}

/*
 * Anyone: 1 when a slot's load signals (m_*) are fresh, read by the
 * prober no longer than three interval_ms (health.metrics_interval) ago;
 * 0 when there are none or they are stale, and must not be used.  A
 * time ahead of now_ms (another process's clock read) counts as fresh.
 */
static inline int
shm_metrics_fresh(const struct shm_slot *s, uint64_t now_ms, uint64_t interval_ms)
{
	uint64_t	ms = atomic_load_explicit(&s->m_ms, memory_order_acquire);

	return ms != 0 && (now_ms <= ms || now_ms - ms <= 3 * interval_ms);
}

/*
 * Anyone: the slot's (backend, model) pairs that are out, bit i for
 * d.models[i]: missing from its /v1/models, or the pair's breaker open.
 */
static inline uint32_t
shm_models_out(const struct shm_slot *s)
{
	return atomic_load_explicit(&s->models_down, memory_order_acquire) |
	    atomic_load_explicit(&s->models_open, memory_order_acquire);
}

/* Sum of in-flight requests at a slot over every worker's stripe. */
int64_t	 shm_inflight(struct shm_hdr *, uint32_t slot);

/* Sum every worker's stripe for a slot into out (plain numbers). */
struct shm_totals {
	int64_t	 inflight;
	uint64_t requests, fails, retries, bytes_in, bytes_out, lat_sum_us, conns;
	uint64_t status[6];
	uint64_t lat_hist[SHM_LAT_BUCKETS];
	uint64_t failovers, failover_ok, failover_us;
	uint64_t last_failover_ms;	/* the latest over the stripes */
	uint64_t held_fails, streams_broken, down_released;
};
void	 shm_totals(struct shm_hdr *, uint32_t slot, struct shm_totals *);

/* One (backend, model) pair summed over every worker's stripe (plain numbers). */
struct shm_pairsum {
	int64_t	 reqs, prompt, uncached, output;
	uint64_t requests, done, fails, consec_fails;
	uint64_t prompt_tokens, output_tokens, cached_tokens, usage_chars, usage_prompt;
	uint64_t ttft_sum_us, itl_sum_us, itl_count;
	uint64_t ttft_hist[SHM_LAT_BUCKETS], itl_hist[SHM_LAT_BUCKETS];
	uint64_t ptok_hist[SHM_TOK_BUCKETS], otok_hist[SHM_TOK_BUCKETS];
};
void	 shm_pair_sum(struct shm_hdr *, uint32_t slot, uint32_t pair, struct shm_pairsum *);

/* Token histogram bucket (<= 1, 2, 4, ... 16384, +Inf) and its bound (UINT64_MAX for +Inf). */
unsigned shm_tok_bucket(uint64_t tokens);
uint64_t shm_tok_bucket_le(unsigned bucket);

/*
 * The prefix memory (struct shm_pfxset).  shm_pfx_note() records that
 * slot was sent the prefix named hash at tick; shm_pfx_find() writes to
 * slots[] (at most max) the slots recorded for hash and returns how many.
 * Ticks are the caller's clock (a coarse time): the oldest way is
 * replaced first.  shm_pfx_forget() drops a slot's entries (its backend
 * left, or its cache is cold again).
 */
void	 shm_pfx_note(struct shm_hdr *, uint64_t hash, uint32_t slot, uint32_t tick);
size_t	 shm_pfx_find(struct shm_hdr *, uint64_t hash, uint32_t *slots, size_t max);
void	 shm_pfx_forget(struct shm_hdr *, uint32_t slot);

/*
 * routerctl explain: the last decisions of every worker's ring (struct
 * shm_explain).  shm_explain_read() copies into out (at most max) the
 * newest decisions over all workers, newest first (by ms, then by ring
 * position), each a consistent copy taken inside its seqlock; an entry
 * its worker keeps rewriting is skipped after a few tries, so the call
 * never waits on a writer.  Returns how many it copied, or -1 when out
 * of memory.  Anyone may call it; it writes nothing in the table.
 */
struct shm_decision_copy {
	uint32_t		 worker;	/* whose ring */
	uint64_t		 pos;		/* its place there: decisions before it */
	struct shm_decision	 d;		/* d.seq: the even sequence it was read at */
};
int	 shm_explain_read(struct shm_hdr *, struct shm_decision_copy *out, size_t max);

/* Latency histogram bucket for a latency in microseconds, and its upper bound (UINT64_MAX for +Inf). */
unsigned shm_lat_bucket(uint64_t us);
uint64_t shm_lat_bucket_le_us(unsigned bucket);

/*
 * Model index (master only writes; readers look up without locks, under
 * hdr->mseq).  shm_model_intern() returns the id of name, adding it when
 * new, or -1 when the index is full (or name is empty or longer than
 * SHM_NAME_MAX - 1).  shm_model_lookup() returns the id or -1.
 * shm_model_name() copies the name of an id into buf: 0, or -1 if the id
 * is unknown or buf too small.  Interning does not bump gen: the master
 * does once its batch of changes is written.
 */
int	 shm_model_intern(struct shm_hdr *, const char *name);
int	 shm_model_lookup(const struct shm_hdr *, const char *name);
int	 shm_model_name(const struct shm_hdr *, uint32_t id, char *buf, size_t len);

/*
 * Pools, by stable id (see struct shm_pool).  Master only:
 * shm_pool_intern() gives name its id for generation gen (-1: none left),
 * shm_pool_set() names the id and sets its strategies and marks it live
 * (a NULL name frees it outright, for tests and a fresh table),
 * shm_pool_retire() marks it gone from the config, keeping its name.
 * Anyone, without locks: shm_pool_find() returns the id of a live pool or
 * -1 (operators act on live pools by name); shm_pool_id() the id of a
 * live or retired one (a worker maps its own config with it);
 * shm_pool_name() names an id.  The strategy is one atomic word.
 */
int	 shm_pool_intern(struct shm_hdr *, const char *name, uint32_t gen,
	    uint32_t oldest);
void	 shm_pool_set(struct shm_hdr *, uint32_t pool, const char *name,
	    uint32_t strategy, uint32_t base_strategy);
void	 shm_pool_retire(struct shm_hdr *, uint32_t pool);
uint32_t shm_pool_strategy(const struct shm_hdr *, uint32_t pool);
void	 shm_pool_strategy_set(struct shm_hdr *, uint32_t pool, uint32_t strategy);
int	 shm_pool_find(const struct shm_hdr *, const char *name);
int	 shm_pool_id(const struct shm_hdr *, const char *name);
int	 shm_pool_name(const struct shm_hdr *, uint32_t pool, char *buf, size_t len);

/*
 * Half-open trial tickets: shm_trial_take() atomically takes one ticket
 * and returns 1, or returns 0 when none is left.
 */
int	 shm_trial_take(struct shm_slot *);

/* Milliseconds of CLOCK_REALTIME and CLOCK_MONOTONIC. */
uint64_t shm_now_ms(void);
uint64_t shm_mono_ms(void);
uint64_t shm_mono_ns(void);	/* CLOCK_MONOTONIC in ns, for what ms cannot time */

#endif

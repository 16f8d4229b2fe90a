/* The shared table: one lock-free MAP_SHARED mapping that the master writes and every process reads. */
#include <sys/mman.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "table.h"

/*
 * Seqlocks in this file.
 *
 * Every descriptor (slot->seq over slot->d) and the model index and pool
 * names (hdr->mseq over hdr->models[] and hdr->pools[].name) follow the
 * sequence-counter pattern of Linux Documentation/locking/seqlock.rst,
 * written with C11 fences the way Boehm describes in "Can Seqlocks Get
 * Along With Programming Language Memory Models?" (MSPC 2012):
 *
 *   writer (only ever one: the master)      reader (anyone, never blocks)
 *     seq = s + 1   (relaxed, now odd)        s1 = seq (acquire); odd: retry
 *     fence(release)                          copy the data (plain memcpy)
 *     write the data                          fence(acquire)
 *     seq = s + 2   (release, even again)     s2 = seq (relaxed); s1 != s2: retry
 *
 * Why it is enough: the acquire load of s1 pairs with the writer's final
 * release store, so a reader that sees an even s1 also sees every byte of
 * the write that produced it.  If the copy read any byte of a later write,
 * that byte was stored after the writer's release fence, so the fence
 * synchronizes with the reader's acquire fence and the odd store of that
 * later write happens-before the reload of seq: s2 differs from s1 and the
 * copy is thrown away.  A copy that overlaps a write is therefore torn, but
 * it is never returned as good.  (In ISO C the racing memcpy is formally a
 * data race; like the kernel, Concurrency Kit's ck_sequence and every other
 * seqlock in C, we rely on it being an ordinary copy whose result is
 * discarded.  No decision is taken on the torn bytes except ones that are
 * bounded and re-validated, see shm_model_lookup().)
 *
 * There is one writer per seqlock, so the writer needs no atomic
 * read-modify-write and readers never store into the table: no lock, no
 * cache line written by a reader, nothing for a dead process to leave held.
 * The one way a reader can wait is a master that dies between the odd and
 * the even store; the whole daemon goes down with the master anyway.
 */

/* Upper bounds of the latency buckets (Prometheus "le"), in microseconds. */
static const uint64_t shm_lat_le_us[SHM_LAT_BUCKETS] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
	UINT64_MAX
};

/* Layout of a table of a given capacity; 0 for a capacity we refuse. */
struct shm_layout {
	size_t	 slots_off;
	size_t	 counters_off;
	size_t	 inlog_off;
	size_t	 plog_off;
	size_t	 pair_off;
	size_t	 pfx_off;
	size_t	 explain_off;
	size_t	 size;
};

static int	 shm_layout(uint32_t, uint32_t, struct shm_layout *);
static void	 shm_relax(unsigned);
static uint32_t	 shm_seq_read_begin(const _Atomic uint32_t *);
static int	 shm_seq_read_retry(const _Atomic uint32_t *, uint32_t);
static uint32_t	 shm_seq_write_begin(_Atomic uint32_t *);
static void	 shm_seq_write_end(_Atomic uint32_t *, uint32_t);
static void	 shm_name_copy(char *, const char *);
static int	 shm_model_find(const struct shm_hdr *, const char *, uint32_t);
static int	 shm_pool_search(const struct shm_hdr *, const char *, int);
static int	 shm_pool_lookup(const struct shm_hdr *, const char *, int);
static uint64_t	 shm_clock_ms(clockid_t);

static size_t
shm_roundup(size_t v, size_t to)
{
	return (v + to - 1) / to * to;
}

/*
 * Compute where slots and counters go and the page-rounded size.  Returns
 * 0, or -1 when the capacity is empty, above SHM_WORKERS_MAX workers (the
 * header has a fixed workers[] array) or would overflow size_t.
 */
static int
shm_layout(uint32_t max_backends, uint32_t max_workers, struct shm_layout *l)
{
	size_t	 slots, stripes, counters, end;
	long	 pg;

	if (max_backends == 0 || max_workers == 0 ||
	    max_workers > SHM_WORKERS_MAX)
		return (-1);
	if ((pg = sysconf(_SC_PAGESIZE)) == -1 || pg < SHM_CACHELINE)
		pg = 4096;

	/* The header is a whole number of cache lines; keep it explicit. */
	l->slots_off = shm_roundup(sizeof(struct shm_hdr), SHM_CACHELINE);
	if (__builtin_mul_overflow((size_t)max_backends,
	    sizeof(struct shm_slot), &slots) ||
	    __builtin_add_overflow(l->slots_off, slots, &end))
		return (-1);
	l->counters_off = shm_roundup(end, SHM_CACHELINE);
	if (__builtin_mul_overflow((size_t)max_backends, (size_t)max_workers,
	    &stripes) ||
	    __builtin_mul_overflow(stripes, sizeof(struct shm_counters),
	    &counters) ||
	    __builtin_add_overflow(l->counters_off, counters, &end))
		return (-1);
	l->inlog_off = shm_roundup(end, SHM_CACHELINE);
	if (__builtin_add_overflow(l->inlog_off,
	    ((size_t)max_workers + 1) * sizeof(struct shm_inlog), &end))
		return (-1);
	l->plog_off = l->inlog_off + (size_t)max_workers * sizeof(struct shm_inlog);
	/* pairs, prefix memory and decisions: only the pages touched cost memory */
	l->pair_off = shm_roundup(end, SHM_CACHELINE);
	if (__builtin_mul_overflow(stripes, SHM_PAIRS * sizeof(struct shm_pair),
	    &counters) ||
	    __builtin_add_overflow(l->pair_off, counters, &end))
		return (-1);
	l->pfx_off = shm_roundup(end, SHM_CACHELINE);
	end = l->pfx_off + (size_t)SHM_PFX_SETS * sizeof(struct shm_pfxset);
	l->explain_off = end;
	if (__builtin_add_overflow(l->explain_off,
	    (size_t)max_workers * sizeof(struct shm_explain), &end) ||
	    end > SIZE_MAX - (size_t)pg)
		return (-1);
	l->size = shm_roundup(end, (size_t)pg);
	return (0);
}

size_t
shm_size(uint32_t max_backends, uint32_t max_workers)
{
	struct shm_layout l;

	if (shm_layout(max_backends, max_workers, &l) == -1)
		return (0);
	return (l.size);
}

/*
 * Map a new table and write its header.  Master only, before the first
 * fork, so every child inherits the mapping at the same address.  The
 * memory is zero because a fresh memfd and an anonymous mapping both are,
 * and we do not touch it: pages stay unallocated until a slot is used.
 * Returns the header, or NULL with errno set (EINVAL for a capacity
 * shm_size() refuses).  *fdp, if fdp is not NULL, gets the memfd (for
 * routerctl-style readers to map), or -1 after the anonymous fallback;
 * with fdp NULL the memfd is closed, the mapping keeps the memory alive.
 */
struct shm_hdr *
shm_create(uint32_t max_backends, uint32_t max_workers, int *fdp)
{
	struct shm_layout l;
	struct shm_hdr	*h;
	void		*p;
	int		 fd, saved;

	if (fdp != NULL)
		*fdp = -1;
	if (shm_layout(max_backends, max_workers, &l) == -1) {
		errno = EINVAL;
		return (NULL);
	}

	fd = memfd_create("routerd-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd != -1) {
		if (ftruncate(fd, (off_t)l.size) == -1)
			goto fail;
		/*
		 * A reader holding the fd could shrink it and SIGBUS every
		 * process; forbid resizing.  Best effort: the table works
		 * without seals, they only guard against a bug elsewhere.
		 */
		(void)fcntl(fd, F_ADD_SEALS,
		    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
		p = mmap(NULL, l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			goto fail;
	} else {
		/* No memfd (old kernel, seccomp): fork still shares this. */
		p = mmap(NULL, l.size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return (NULL);
	}
	/*
	 * Populated now up to the pairs: first-touch faults belong to
	 * start-up, not to a registry apply.  The (backend, model) pairs,
	 * the prefix memory and the decision rings stay sparse: they are
	 * large for the table's capacity and cost memory only where used.
	 */
	{
		volatile char	*q = p;
		size_t		 off;
		long		 pg = sysconf(_SC_PAGESIZE);

		if (pg <= 0)
			pg = 4096;
		for (off = 0; off < l.pair_off; off += (size_t)pg)
			q[off] = 0;
	}

	h = p;
	h->magic = SHM_MAGIC;
	h->abi = SHM_ABI;
	h->size = l.size;
	h->max_backends = max_backends;
	h->max_workers = max_workers;
	h->slots_off = l.slots_off;
	h->counters_off = l.counters_off;
	h->inlog_off = l.inlog_off;
	h->plog_off = l.plog_off;
	h->pair_off = l.pair_off;
	h->pfx_off = l.pfx_off;
	h->explain_off = l.explain_off;
	h->created_ms = shm_now_ms();
	/* Nothing forked yet, but publish the header as a release anyway. */
	atomic_store_explicit(&h->gen, 0, memory_order_release);

	if (fd != -1) {
		if (fdp != NULL)
			*fdp = fd;
		else
			close(fd);
	}
	return (h);

fail:
	saved = errno;
	close(fd);
	errno = saved;
	return (NULL);
}

/* Unmap a table made by shm_create().  The caller closes the memfd it kept. */
void
shm_destroy(struct shm_hdr *h)
{
	if (h != NULL)
		munmap(h, h->size);
}

/*
 * Check that a mapping of maplen bytes is a table this binary can read:
 * magic, ABI, and a size and layout that agree with its own capacity
 * fields and with maplen.  Every child and routerctl call this before
 * trusting any offset in the header.
 */
int
shm_check(const struct shm_hdr *h, size_t maplen)
{
	struct shm_layout l;

	if (h == NULL || maplen < sizeof(*h))
		return (-1);
	if (h->magic != SHM_MAGIC || h->abi != SHM_ABI)
		return (-1);
	if (shm_layout(h->max_backends, h->max_workers, &l) == -1)
		return (-1);
	if (h->size != maplen || h->size != l.size ||
	    h->slots_off != l.slots_off || h->counters_off != l.counters_off ||
	    h->inlog_off != l.inlog_off || h->plog_off != l.plog_off ||
	    h->pair_off != l.pair_off || h->pfx_off != l.pfx_off ||
	    h->explain_off != l.explain_off)
		return (-1);
	return (0);
}

/* Spin politely, then give the CPU away: the writer may be preempted mid-write. */
static void
shm_relax(unsigned spins)
{
	if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
		return;
	}
	sched_yield();
}

/* Writer side of a seqlock: returns the even value it started from. */
static uint32_t
shm_seq_write_begin(_Atomic uint32_t *seq)
{
	uint32_t s;

	/* Single writer: nobody else stores seq, a relaxed load is ours. */
	s = atomic_load_explicit(seq, memory_order_relaxed);
	atomic_store_explicit(seq, s + 1, memory_order_relaxed);
	/* Keep the odd store ahead of every data store (smp_wmb()). */
	atomic_thread_fence(memory_order_release);
	return (s);
}

static void
shm_seq_write_end(_Atomic uint32_t *seq, uint32_t s)
{
	/* Publishes the data stores to any acquire load that sees s + 2. */
	atomic_store_explicit(seq, s + 2, memory_order_release);
}

/* Reader side: the sequence to validate against, odd if a write is on. */
static uint32_t
shm_seq_read_begin(const _Atomic uint32_t *seq)
{
	return (atomic_load_explicit(seq, memory_order_acquire));
}

/* 1 if the data copied since shm_seq_read_begin() returned s may be torn. */
static int
shm_seq_read_retry(const _Atomic uint32_t *seq, uint32_t s)
{
	/* Keep the data loads ahead of the reload of seq (smp_rmb()). */
	atomic_thread_fence(memory_order_acquire);
	return ((s & 1) != 0 ||
	    atomic_load_explicit(seq, memory_order_relaxed) != s);
}

/*
 * Master only.  Readers that race this see seq odd or changed and retry;
 * none of them ever sees a mix of the old and the new descriptor.
 */
void
shm_desc_write(struct shm_slot *s, const struct shm_desc *d)
{
	uint32_t seq;

	seq = shm_seq_write_begin(&s->seq);
	memcpy(&s->d, d, sizeof(s->d));
	shm_seq_write_end(&s->seq, seq);
}

/*
 * One attempt.  Returns 0 with a consistent copy in *d, or -1 if the
 * master was writing; *d then holds a torn copy the caller must not use.
 */
int
shm_desc_tryread(const struct shm_slot *s, struct shm_desc *d)
{
	uint32_t seq;

	seq = shm_seq_read_begin(&s->seq);
	if (seq & 1)
		return (-1);
	memcpy(d, &s->d, sizeof(*d));
	return (shm_seq_read_retry(&s->seq, seq) ? -1 : 0);
}

/* Retry until a copy validates; waits only while the master is mid-write. */
void
shm_desc_read(const struct shm_slot *s, struct shm_desc *d)
{
	unsigned spins;

	for (spins = 0; shm_desc_tryread(s, d) == -1; spins++)
		shm_relax(spins);
}

/* The acquire pairs with shm_gen_bump(): a new gen shows everything before it. */
uint64_t
shm_gen(const struct shm_hdr *h)
{
	return (atomic_load_explicit(&h->gen, memory_order_acquire));
}

/* Master only, after its descriptor, model and pool writes are done. */
void
shm_gen_bump(struct shm_hdr *h)
{
	atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
}

/*
 * Stripes are summed with relaxed loads: each word is exact on its own,
 * the sum is a snapshot that may mix instants, which is all a balancing
 * decision or a metrics scrape needs.
 */
int64_t
shm_inflight(struct shm_hdr *h, uint32_t slot)
{
	int64_t	 n = 0;
	uint32_t w;

	for (w = 0; w < h->max_workers; w++)
		n += atomic_load_explicit(&shm_ctr(h, w, slot)->inflight,
		    memory_order_relaxed);
	return (n);
}

void
shm_totals(struct shm_hdr *h, uint32_t slot, struct shm_totals *t)
{
	struct shm_counters	*c;
	uint32_t		 w;
	unsigned		 i;
	uint64_t		 last;

	memset(t, 0, sizeof(*t));
	for (w = 0; w < h->max_workers; w++) {
		c = shm_ctr(h, w, slot);
		t->inflight += atomic_load_explicit(&c->inflight,
		    memory_order_relaxed);
		t->requests += atomic_load_explicit(&c->requests,
		    memory_order_relaxed);
		t->fails += atomic_load_explicit(&c->fails,
		    memory_order_relaxed);
		t->retries += atomic_load_explicit(&c->retries,
		    memory_order_relaxed);
		t->bytes_in += atomic_load_explicit(&c->bytes_in,
		    memory_order_relaxed);
		t->bytes_out += atomic_load_explicit(&c->bytes_out,
		    memory_order_relaxed);
		t->lat_sum_us += atomic_load_explicit(&c->lat_sum_us,
		    memory_order_relaxed);
		t->conns += atomic_load_explicit(&c->conns,
		    memory_order_relaxed);
		for (i = 0; i < 6; i++)
			t->status[i] += atomic_load_explicit(&c->status[i],
			    memory_order_relaxed);
		for (i = 0; i < SHM_LAT_BUCKETS; i++)
			t->lat_hist[i] += atomic_load_explicit(
			    &c->lat_hist[i], memory_order_relaxed);
		t->failovers += atomic_load_explicit(&c->failovers,
		    memory_order_relaxed);
		t->failover_ok += atomic_load_explicit(&c->failover_ok,
		    memory_order_relaxed);
		t->failover_us += atomic_load_explicit(&c->failover_us,
		    memory_order_relaxed);
		t->held_fails += atomic_load_explicit(&c->held_fails,
		    memory_order_relaxed);
		t->streams_broken += atomic_load_explicit(&c->streams_broken,
		    memory_order_relaxed);
		t->down_released += atomic_load_explicit(&c->down_released,
		    memory_order_relaxed);
		last = atomic_load_explicit(&c->last_failover_ms, memory_order_relaxed);
		if (last > t->last_failover_ms)
			t->last_failover_ms = last;
	}
}

/* The first bucket whose bound is >= us ("le" is inclusive, as in Prometheus). */
unsigned
shm_lat_bucket(uint64_t us)
{
	unsigned i;

	for (i = 0; i < SHM_LAT_BUCKETS - 1; i++)
		if (us <= shm_lat_le_us[i])
			break;
	return (i);
}

/* UINT64_MAX stands for +Inf, for the last bucket and any bucket past it. */
uint64_t
shm_lat_bucket_le_us(unsigned bucket)
{
	if (bucket >= SHM_LAT_BUCKETS)
		return (UINT64_MAX);
	return (shm_lat_le_us[bucket]);
}

/* Copy a name into a SHM_NAME_MAX field, NUL-padded so stale bytes never leak. */
static void
shm_name_copy(char *dst, const char *src)
{
	size_t n;

	n = strnlen(src, SHM_NAME_MAX - 1);
	memcpy(dst, src, n);
	memset(dst + n, 0, SHM_NAME_MAX - n);
}

/*
 * Linear search of the first n models.  Bounded by SHM_NAME_MAX per entry
 * so that a torn entry (no NUL) read inside a seqlock section cannot run
 * off its field; the caller validates before it trusts the answer.
 */
static int
shm_model_find(const struct shm_hdr *h, const char *name, uint32_t n)
{
	uint32_t i;

	if (n > SHM_MODELS_MAX)
		n = SHM_MODELS_MAX;
	for (i = 0; i < n; i++)
		if (h->models[i].name[0] == name[0] &&
		    strncmp(h->models[i].name, name, SHM_NAME_MAX) == 0)
			return ((int)i);
	return (-1);
}

/*
 * Master only.  Returns the id of name, appending it when new; -1 when
 * the index is full or name is empty or does not fit SHM_NAME_MAX (a
 * truncated name would alias another).  Ids are never reused, so a slot's
 * models[] stays valid.  The caller bumps gen when it is done.
 */
int
shm_model_intern(struct shm_hdr *h, const char *name)
{
	uint32_t n, seq;
	int	 id;
	size_t	 len;

	len = strnlen(name, SHM_NAME_MAX);
	if (len == 0 || len >= SHM_NAME_MAX)
		return (-1);
	/* We are the only writer: our own reads need no seqlock. */
	n = atomic_load_explicit(&h->nmodels, memory_order_relaxed);
	if ((id = shm_model_find(h, name, n)) != -1)
		return (id);
	if (n >= SHM_MODELS_MAX)
		return (-1);

	seq = shm_seq_write_begin(&h->mseq);
	shm_name_copy(h->models[n].name, name);
	/*
	 * Release as well: a reader that acquire-loads nmodels == n + 1 is
	 * then sure to find the name (and to see mseq at least odd if it
	 * starts a read section afterwards), so "every id below nmodels can
	 * be named" holds even outside a read section.
	 */
	atomic_store_explicit(&h->nmodels, n + 1, memory_order_release);
	shm_seq_write_end(&h->mseq, seq);
	return ((int)n);
}

/* Anyone, without locks.  Returns the id of name or -1. */
int
shm_model_lookup(const struct shm_hdr *h, const char *name)
{
	unsigned spins;
	uint32_t seq;
	int	 id;

	if (name[0] == '\0')
		return (-1);
	for (spins = 0;; spins++) {
		seq = shm_seq_read_begin(&h->mseq);
		if ((seq & 1) == 0) {
			id = shm_model_find(h, name, atomic_load_explicit(
			    &h->nmodels, memory_order_relaxed));
			if (!shm_seq_read_retry(&h->mseq, seq))
				return (id);
		}
		shm_relax(spins);
	}
}

/*
 * Anyone.  Copies the name of model id into buf and returns 0; -1 if id
 * is not interned or buf cannot hold the name (buf is then "" if len > 0).
 */
int
shm_model_name(const struct shm_hdr *h, uint32_t id, char *buf, size_t len)
{
	char	 name[SHM_NAME_MAX];
	unsigned spins;
	uint32_t seq, n = 0;
	size_t	 nlen;

	if (len > 0)
		buf[0] = '\0';
	for (spins = 0;; spins++) {
		seq = shm_seq_read_begin(&h->mseq);
		if ((seq & 1) == 0) {
			n = atomic_load_explicit(&h->nmodels,
			    memory_order_relaxed);
			if (id < n && id < SHM_MODELS_MAX)
				memcpy(name, h->models[id].name, sizeof(name));
			if (!shm_seq_read_retry(&h->mseq, seq))
				break;
		}
		shm_relax(spins);
	}
	if (id >= n || id >= SHM_MODELS_MAX)
		return (-1);
	nlen = strnlen(name, sizeof(name) - 1);
	if (nlen >= len)
		return (-1);
	memcpy(buf, name, nlen);
	buf[nlen] = '\0';
	return (0);
}

/*
 * Master only.  Names pool (truncated to SHM_NAME_MAX - 1; conf/ rejects
 * longer names) and sets its strategies; a NULL name frees the pool.  An
 * index past SHM_POOLS_MAX is a caller bug and is ignored.  The caller
 * bumps gen when it is done.
 */
void
shm_pool_set(struct shm_hdr *h, uint32_t pool, const char *name,
    uint32_t strategy, uint32_t base_strategy)
{
	struct shm_pool	*p;
	uint32_t	 seq;

	if (pool >= SHM_POOLS_MAX)
		return;
	p = &h->pools[pool];
	seq = shm_seq_write_begin(&h->mseq);
	if (name != NULL)
		shm_name_copy(p->name, name);
	else
		memset(p->name, 0, sizeof(p->name));
	atomic_store_explicit(&p->inuse, name != NULL, memory_order_relaxed);
	shm_seq_write_end(&h->mseq, seq);
	atomic_store_explicit(&p->base_strategy, base_strategy,
	    memory_order_release);
	atomic_store_explicit(&p->strategy, strategy, memory_order_release);
}

/*
 * Master only.  The id of pool name for a config of generation gen, while
 * the oldest running worker runs generation oldest (DESIGN "The shared
 * table": an id never names another pool while any generation may use
 * it).  In order: the id name already has, live or retired; an id never
 * used; a retired id whose last_gen is below oldest, so that no running
 * worker can know it (the oldest such; its name is replaced and every
 * stripe's queue words of that id are zeroed, as their writers are gone).
 * Records gen as the id's last_gen.  Returns the id, or -1 when name is
 * empty or does not fit SHM_NAME_MAX, or every id is taken.  Marks
 * nothing in use: shm_pool_set() does.
 */
int
shm_pool_intern(struct shm_hdr *h, const char *name, uint32_t gen,
    uint32_t oldest)
{
	struct shm_pool	*p;
	uint32_t	 i, seq, w;
	int		 id = -1, fresh = -1, old = -1;
	size_t		 len;

	len = strnlen(name, SHM_NAME_MAX);
	if (len == 0 || len >= SHM_NAME_MAX)
		return (-1);
	/* We are the only writer: our own reads need no seqlock. */
	for (i = 0; i < SHM_POOLS_MAX && id == -1; i++) {
		p = &h->pools[i];
		if (p->name[0] == '\0') {
			if (fresh == -1)
				fresh = (int)i;
		} else if (strncmp(p->name, name, SHM_NAME_MAX) == 0)
			id = (int)i;
		else if (!atomic_load_explicit(&p->inuse, memory_order_relaxed) &&
		    p->last_gen < oldest &&
		    (old == -1 || p->last_gen < h->pools[old].last_gen))
			old = (int)i;
	}
	if (id == -1 && (id = fresh) == -1) {
		if ((id = old) == -1)
			return (-1);
		p = &h->pools[id];
		for (w = 0; w < SHM_WORKERS_MAX; w++)
			memset(&h->poolq[w][id], 0, sizeof(h->poolq[w][id]));
		memset(&h->qpool[id], 0, sizeof(h->qpool[id]));
	}
	p = &h->pools[id];
	if (strncmp(p->name, name, SHM_NAME_MAX) != 0) {
		seq = shm_seq_write_begin(&h->mseq);
		shm_name_copy(p->name, name);
		shm_seq_write_end(&h->mseq, seq);
	}
	p->last_gen = gen;
	return (id);
}

/*
 * Master only: pool id left the config.  Its name stays (older workers
 * still look it up) and its id is not given to another name until
 * shm_pool_intern() sees no generation that may use it.
 */
void
shm_pool_retire(struct shm_hdr *h, uint32_t pool)
{
	uint32_t seq;

	if (pool >= SHM_POOLS_MAX)
		return;
	seq = shm_seq_write_begin(&h->mseq);
	atomic_store_explicit(&h->pools[pool].inuse, 0, memory_order_relaxed);
	shm_seq_write_end(&h->mseq, seq);
}

/*
 * Linear search for name among the pool names, live ones only or live and
 * retired.  Inside a seqlock section: bounded by SHM_NAME_MAX, the caller
 * validates.
 */
static int
shm_pool_search(const struct shm_hdr *h, const char *name, int retired)
{
	const struct shm_pool	*p;
	uint32_t		 i;

	for (i = 0; i < SHM_POOLS_MAX; i++) {
		p = &h->pools[i];
		if ((retired || atomic_load_explicit(&p->inuse,
		    memory_order_relaxed)) && p->name[0] == name[0] &&
		    strncmp(p->name, name, SHM_NAME_MAX) == 0)
			return ((int)i);
	}
	return (-1);
}

static int
shm_pool_lookup(const struct shm_hdr *h, const char *name, int retired)
{
	unsigned spins;
	uint32_t seq;
	int	 id;

	if (name[0] == '\0')
		return (-1);
	for (spins = 0;; spins++) {
		seq = shm_seq_read_begin(&h->mseq);
		if ((seq & 1) == 0) {
			id = shm_pool_search(h, name, retired);
			if (!shm_seq_read_retry(&h->mseq, seq))
				return (id);
		}
		shm_relax(spins);
	}
}

/*
 * Anyone, without locks: the id of pool name, live or retired, or -1.  A
 * worker maps its own config's pools with it: its generation's ids stay
 * named while it runs.
 */
int
shm_pool_id(const struct shm_hdr *h, const char *name)
{
	return (shm_pool_lookup(h, name, 1));
}

/*
 * Anyone.  Copies the name of pool id (live or retired) into buf and
 * returns 0; -1 if id has no name or buf cannot hold it (buf is then ""
 * if len > 0).
 */
int
shm_pool_name(const struct shm_hdr *h, uint32_t id, char *buf, size_t len)
{
	char	 name[SHM_NAME_MAX];
	unsigned spins;
	uint32_t seq;
	size_t	 nlen;

	if (len > 0)
		buf[0] = '\0';
	if (id >= SHM_POOLS_MAX)
		return (-1);
	for (spins = 0;; spins++) {
		seq = shm_seq_read_begin(&h->mseq);
		if ((seq & 1) == 0) {
			memcpy(name, h->pools[id].name, sizeof(name));
			if (!shm_seq_read_retry(&h->mseq, seq))
				break;
		}
		shm_relax(spins);
	}
	nlen = strnlen(name, sizeof(name) - 1);
	if (nlen == 0 || nlen >= len)
		return (-1);
	memcpy(buf, name, nlen);
	buf[nlen] = '\0';
	return (0);
}

/* The pool's current strategy (0, the default, for an index out of range). */
uint32_t
shm_pool_strategy(const struct shm_hdr *h, uint32_t pool)
{
	if (pool >= SHM_POOLS_MAX)
		return (0);
	return (atomic_load_explicit(&h->pools[pool].strategy,
	    memory_order_acquire));
}

/* Whoever owns the change (master, control): one atomic word, no seqlock. */
void
shm_pool_strategy_set(struct shm_hdr *h, uint32_t pool, uint32_t strategy)
{
	if (pool >= SHM_POOLS_MAX)
		return;
	atomic_store_explicit(&h->pools[pool].strategy, strategy,
	    memory_order_release);
}

/* Anyone, without locks.  Returns the id of the live pool called name, or -1. */
int
shm_pool_find(const struct shm_hdr *h, const char *name)
{
	return (shm_pool_lookup(h, name, 0));
}

/*
 * Take one half-open trial ticket: 1 if we got one, 0 if none is left.
 * A compare-and-swap, not a fetch_sub, so the count never goes below 0
 * however many workers race for the last ticket.  Acquire on success
 * pairs with the prober's release store of the tickets.
 */
int
shm_trial_take(struct shm_slot *s)
{
	uint32_t t;

	t = atomic_load_explicit(&s->trial_tickets, memory_order_relaxed);
	while (t > 0) {
		if (atomic_compare_exchange_weak_explicit(&s->trial_tickets,
		    &t, t - 1, memory_order_acquire, memory_order_relaxed))
			return (1);
	}
	return (0);
}

static uint64_t
shm_clock_ms(clockid_t clk)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts) == -1)
		return (0);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

uint64_t
shm_now_ms(void)
{
	return (shm_clock_ms(CLOCK_REALTIME));
}

uint64_t
shm_mono_ms(void)
{
	return (shm_clock_ms(CLOCK_MONOTONIC));
}

uint64_t
shm_mono_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return (0);
	return ((uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec);
}

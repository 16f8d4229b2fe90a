/* Unit and multi-process torture tests of the shared table (shm/). */
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "shm/table.h"

/*
 * Children forked by these tests never touch criterion: they report through
 * a MAP_SHARED scratch area and their exit status, and leave with _exit()
 * so that no atexit handler of the test runner runs twice.  Each arms an
 * alarm so a hang becomes a signal death the parent reports, not a stuck
 * suite.  That alarm is also why no test sets criterion's .timeout:
 * criterion 2.4.1 leaks 48 bytes in its runner when a .timeout test runs
 * beside another under --jobs 2, and LeakSanitizer then fails the SAN=1
 * run.
 */
#define CHILD_ALARM_S	10

static void *
scratch_map(size_t len)
{
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	cr_assert_neq(p, MAP_FAILED, "mmap scratch: %s", strerror(errno));
	return (p);
}

/* Wait for pid and return its exit code, or 128 + signal if it died. */
static int
child_status(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) == -1)
		cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
	if (WIFEXITED(st))
		return (WEXITSTATUS(st));
	if (WIFSIGNALED(st))
		return (128 + WTERMSIG(st));
	return (255);
}

static struct shm_hdr *
table(uint32_t backends, uint32_t workers)
{
	struct shm_hdr *h;

	h = shm_create(backends, workers, NULL);
	cr_assert_not_null(h, "shm_create: %s", strerror(errno));
	return (h);
}

/* --- creation and the header --- */

Test(shm, size_layout)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t sz;

	sz = shm_size(16, 4);
	cr_assert_gt(sz, 0);
	cr_assert_eq(sz % pg, 0, "size %zu not page-rounded", sz);
	cr_assert_geq(sz, sizeof(struct shm_hdr) + 16 * sizeof(struct shm_slot) +
	    16 * 4 * sizeof(struct shm_counters));
	cr_assert_geq(shm_size(17, 4), sz);
	cr_assert_eq(shm_size(0, 4), 0, "no backends must be refused");
	cr_assert_eq(shm_size(16, 0), 0, "no workers must be refused");
	cr_assert_eq(shm_size(16, SHM_WORKERS_MAX + 1), 0,
	    "more workers than hdr->workers[] must be refused");
	cr_assert_gt(shm_size(16, SHM_WORKERS_MAX), 0);
	cr_assert_eq(shm_size(UINT32_MAX, SHM_WORKERS_MAX) % pg, 0);
}

Test(shm, create_check)
{
	struct shm_hdr	*h;
	struct shm_slot	*s0, *s1;
	uint64_t	 before, after;
	uint32_t	 w, b;
	int		 fd;

	before = shm_now_ms();
	h = shm_create(8, 3, &fd);
	after = shm_now_ms();
	cr_assert_not_null(h, "shm_create: %s", strerror(errno));
	cr_assert_eq(h->magic, SHM_MAGIC);
	cr_assert_eq(h->abi, SHM_ABI);
	cr_assert_eq(h->size, shm_size(8, 3));
	cr_assert_eq(h->max_backends, 8);
	cr_assert_eq(h->max_workers, 3);
	cr_assert_geq(h->created_ms, before);
	cr_assert_leq(h->created_ms, after);
	cr_assert_eq(shm_gen(h), 0);
	cr_assert_eq(h->slots_off % SHM_CACHELINE, 0);
	cr_assert_eq(h->counters_off % SHM_CACHELINE, 0);
	cr_assert_geq(h->slots_off, sizeof(*h));
	cr_assert_geq(h->counters_off, h->slots_off + 8 * sizeof(struct shm_slot));
	cr_assert_leq(h->counters_off + 8 * 3 * sizeof(struct shm_counters),
	    h->size);

	/* Zeroed, and every slot and stripe inside the mapping, line-aligned. */
	s0 = shm_slot(h, 0);
	s1 = shm_slot(h, 7);
	cr_assert_eq(((uintptr_t)s0) % SHM_CACHELINE, 0);
	cr_assert_eq(atomic_load(&s1->seq), 0);
	cr_assert_eq(s1->d.name[0], '\0');
	for (w = 0; w < 3; w++)
		for (b = 0; b < 8; b++) {
			cr_assert_eq((uintptr_t)shm_ctr(h, w, b) % SHM_CACHELINE, 0);
			cr_assert_eq(atomic_load(&shm_ctr(h, w, b)->requests), 0);
		}
	cr_assert_leq((char *)(shm_ctr(h, 2, 7) + 1), (char *)h + h->size);

	cr_assert_eq(shm_check(h, h->size), 0);
	cr_assert_eq(shm_check(h, h->size - 1), -1, "short map accepted");
	cr_assert_eq(shm_check(h, h->size + 4096), -1, "long map accepted");
	cr_assert_eq(shm_check(h, sizeof(*h) - 1), -1);
	cr_assert_eq(shm_check(NULL, h->size), -1);

	h->magic ^= 1;
	cr_assert_eq(shm_check(h, h->size), -1, "bad magic accepted");
	h->magic ^= 1;
	h->abi = SHM_ABI + 1;
	cr_assert_eq(shm_check(h, h->size), -1, "bad ABI accepted");
	h->abi = SHM_ABI;
	h->counters_off += SHM_CACHELINE;
	cr_assert_eq(shm_check(h, h->size), -1, "bad offset accepted");
	h->counters_off -= SHM_CACHELINE;
	h->max_workers = SHM_WORKERS_MAX + 1;
	cr_assert_eq(shm_check(h, h->size), -1, "bad capacity accepted");
	h->max_workers = 3;
	cr_assert_eq(shm_check(h, h->size), 0);

	/* The memfd, mapped again the way routerctl would, is the same table. */
	if (fd != -1) {
		struct stat	 st;
		struct shm_hdr	*h2;

		cr_assert_eq(fstat(fd, &st), 0);
		cr_assert_eq((size_t)st.st_size, h->size);
		h2 = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
		    MAP_SHARED, fd, 0);
		cr_assert_neq(h2, MAP_FAILED);
		cr_assert_eq(shm_check(h2, (size_t)st.st_size), 0);
		shm_gen_bump(h);
		cr_assert_eq(shm_gen(h2), 1);
		/* Sealed: nobody can shrink the table under the others. */
		cr_assert_eq(ftruncate(fd, 4096), -1);
		munmap(h2, (size_t)st.st_size);
		close(fd);
	} else
		cr_log_warn("memfd_create failed, anonymous fallback used");
	shm_destroy(h);
}

Test(shm, create_refuses_bad_capacity)
{
	int fd = 42;

	errno = 0;
	cr_assert_null(shm_create(0, 1, &fd));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(fd, -1);
	cr_assert_null(shm_create(1, SHM_WORKERS_MAX + 1, NULL));
}

/* --- descriptors --- */

Test(shm, desc_roundtrip)
{
	struct shm_hdr	*h = table(4, 1);
	struct shm_desc	 d, got;
	struct shm_slot	*s = shm_slot(h, 2);
	const struct shm_slot *cs = s;

	memset(&d, 0, sizeof(d));
	snprintf(d.name, sizeof(d.name), "gpu-a");
	snprintf(d.addr, sizeof(d.addr), "10.0.0.1:8000");
	d.salen = 16;
	d.sa[0] = 2;
	snprintf(d.region, sizeof(d.region), "eu-west");
	d.pool = 3;
	d.weight = 250;
	d.max_conns = 32;
	d.flags = SHM_F_INUSE | SHM_F_STATIC;
	d.nmodels = 2;
	d.models[0] = 7;
	d.models[1] = 9;
	d.added_ms = 123456789;
	d.last_seen_ms = 987654321;

	shm_desc_write(s, &d);
	cr_assert_eq(atomic_load(&s->seq), 2, "seq must be even after a write");
	shm_desc_read(cs, &got);
	cr_assert_eq(memcmp(&got, &d, sizeof(d)), 0);
	memset(&got, 0xff, sizeof(got));
	cr_assert_eq(shm_desc_tryread(cs, &got), 0);
	cr_assert_eq(memcmp(&got, &d, sizeof(d)), 0);

	d.weight = 1;
	shm_desc_write(s, &d);
	cr_assert_eq(atomic_load(&s->seq), 4);
	shm_desc_read(cs, &got);
	cr_assert_eq(got.weight, 1);

	/* Mid-write (seq odd) a try fails; the neighbour slot is untouched. */
	atomic_store(&s->seq, 5);
	cr_assert_eq(shm_desc_tryread(cs, &got), -1);
	atomic_store(&s->seq, 6);
	cr_assert_eq(shm_desc_tryread(cs, &got), 0);
	shm_desc_read(shm_slot(h, 3), &got);
	cr_assert_eq(got.name[0], '\0');
	shm_destroy(h);
}

Test(shm, gen_bump)
{
	struct shm_hdr *h = table(1, 1);
	pid_t pid;

	cr_assert_eq(shm_gen(h), 0);
	shm_gen_bump(h);
	shm_gen_bump(h);
	cr_assert_eq(shm_gen(h), 2);

	/* A child sees the bump: the mapping really is shared. */
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		alarm(CHILD_ALARM_S);
		shm_gen_bump(h);
		_exit(0);
	}
	cr_assert_eq(child_status(pid), 0);
	cr_assert_eq(shm_gen(h), 3);
	shm_destroy(h);
}

/* --- counters --- */

Test(shm, counters_sum_stripes)
{
	struct shm_hdr		*h = table(5, 4);
	struct shm_totals	 t;
	struct shm_counters	*c;
	uint32_t		 w;
	unsigned		 i;

	cr_assert_neq((char *)shm_ctr(h, 0, 1), (char *)shm_ctr(h, 1, 1));
	for (w = 0; w < 4; w++) {
		c = shm_ctr(h, w, 1);
		shm_ctr_add(&c->requests, 10 + w);
		shm_ctr_add(&c->fails, w);
		shm_ctr_add(&c->retries, 1);
		shm_ctr_add(&c->bytes_in, 1000);
		shm_ctr_add(&c->bytes_out, 2000);
		shm_ctr_add(&c->lat_sum_us, 500);
		shm_ctr_add(&c->conns, 2);
		shm_ctr_add(&c->status[2], 7);
		shm_ctr_add(&c->status[5], w);
		shm_ctr_add(&c->lat_hist[shm_lat_bucket(3000)], 1);
		shm_inflight_add(h, w, 1, 3);
		shm_inflight_add(h, w, 1, -1);
		/* Other slots' stripes must not leak into slot 1. */
		shm_ctr_add(&shm_ctr(h, w, 0)->requests, 1000);
		shm_ctr_add(&shm_ctr(h, w, 2)->requests, 1000);
	}
	shm_totals(h, 1, &t);
	cr_assert_eq(t.requests, 10 + 11 + 12 + 13);
	cr_assert_eq(t.fails, 0 + 1 + 2 + 3);
	cr_assert_eq(t.retries, 4);
	cr_assert_eq(t.bytes_in, 4000);
	cr_assert_eq(t.bytes_out, 8000);
	cr_assert_eq(t.lat_sum_us, 2000);
	cr_assert_eq(t.conns, 8);
	cr_assert_eq(t.status[2], 28);
	cr_assert_eq(t.status[5], 6);
	cr_assert_eq(t.status[0], 0);
	cr_assert_eq(t.inflight, 8);
	for (i = 0; i < SHM_LAT_BUCKETS; i++)
		cr_assert_eq(t.lat_hist[i], i == shm_lat_bucket(3000) ? 4 : 0);

	shm_totals(h, 4, &t);
	cr_assert_eq(t.requests, 0);
	shm_totals(h, 0, &t);
	cr_assert_eq(t.requests, 4000);
	shm_destroy(h);
}

Test(shm, inflight_sum)
{
	struct shm_hdr	*h = table(3, 3);
	pid_t		 pid[3];
	uint32_t	 w;

	cr_assert_eq(shm_inflight(h, 2), 0);
	/* Each worker process writes only its own stripe, as in routerd. */
	for (w = 0; w < 3; w++) {
		pid[w] = fork();
		cr_assert_neq(pid[w], -1);
		if (pid[w] == 0) {
			int k;

			alarm(CHILD_ALARM_S);
			for (k = 0; k < 100000; k++)
				shm_inflight_add(h, w, 2, 1);
			for (k = 0; k < 100000 - (int)w - 1; k++)
				shm_inflight_add(h, w, 2, -1);
			_exit(0);
		}
	}
	for (w = 0; w < 3; w++)
		cr_assert_eq(child_status(pid[w]), 0);
	cr_assert_eq(shm_inflight(h, 2), 1 + 2 + 3);
	cr_assert_eq(shm_inflight(h, 1), 0);
	shm_inflight_add(h, 0, 2, -1);
	cr_assert_eq(shm_inflight(h, 2), 5);
	shm_destroy(h);
}

Test(shm, lat_buckets)
{
	uint64_t prev = 0, le;
	unsigned i;

	cr_assert_eq(shm_lat_bucket(0), 0);
	cr_assert_eq(shm_lat_bucket_le_us(0), 1000, "first bucket is 1 ms");
	cr_assert_eq(shm_lat_bucket_le_us(SHM_LAT_BUCKETS - 2), 60000000,
	    "last finite bucket is 60 s");
	cr_assert_eq(shm_lat_bucket_le_us(SHM_LAT_BUCKETS - 1), UINT64_MAX);
	cr_assert_eq(shm_lat_bucket_le_us(SHM_LAT_BUCKETS), UINT64_MAX);
	cr_assert_eq(shm_lat_bucket_le_us(1000), UINT64_MAX);
	for (i = 0; i < SHM_LAT_BUCKETS; i++) {
		le = shm_lat_bucket_le_us(i);
		cr_assert_gt(le, prev, "bucket %u not increasing", i);
		/* "le" is inclusive; one past it is the next bucket. */
		cr_assert_eq(shm_lat_bucket(le), i, "le of bucket %u", i);
		if (i > 0)
			cr_assert_eq(shm_lat_bucket(prev + 1), i);
		if (i + 1 < SHM_LAT_BUCKETS)
			cr_assert_eq(shm_lat_bucket(le + 1), i + 1);
		/* Roughly exponential: each bound at most 3x the last. */
		if (i > 0 && i + 1 < SHM_LAT_BUCKETS)
			cr_assert_leq(le, prev * 3);
		prev = le;
	}
	cr_assert_eq(shm_lat_bucket(UINT64_MAX), SHM_LAT_BUCKETS - 1);
	cr_assert_eq(shm_lat_bucket(3600ull * 1000000), SHM_LAT_BUCKETS - 1);
	for (le = 0, i = 0; le < 100000000; le = le * 2 + 1) {
		cr_assert_geq(shm_lat_bucket(le), i, "not monotonic at %lu",
		    (unsigned long)le);
		i = shm_lat_bucket(le);
	}
}

/* --- model index --- */

Test(shm, models)
{
	struct shm_hdr	*h = table(1, 1);
	char		 buf[SHM_NAME_MAX], name[SHM_NAME_MAX + 8];
	int		 i;

	cr_assert_eq(shm_model_lookup(h, "llama-3-70b"), -1);
	cr_assert_eq(shm_model_intern(h, "llama-3-70b"), 0);
	cr_assert_eq(shm_model_intern(h, "qwen2.5-7b"), 1);
	cr_assert_eq(shm_model_intern(h, "llama-3-70b"), 0, "interned twice");
	cr_assert_eq(atomic_load(&h->nmodels), 2);
	cr_assert_eq(shm_model_lookup(h, "qwen2.5-7b"), 1);
	cr_assert_eq(shm_model_lookup(h, "llama-3-70b"), 0);
	cr_assert_eq(shm_model_lookup(h, "llama-3"), -1, "prefix matched");
	cr_assert_eq(shm_model_lookup(h, "llama-3-70b-x"), -1);
	cr_assert_eq(shm_model_lookup(h, ""), -1);

	cr_assert_eq(shm_model_name(h, 1, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "qwen2.5-7b");
	cr_assert_eq(shm_model_name(h, 2, buf, sizeof(buf)), -1);
	cr_assert_str_eq(buf, "");
	cr_assert_eq(shm_model_name(h, 1, buf, 5), -1, "truncated silently");
	cr_assert_eq(shm_model_name(h, 1, buf, 11), 0);
	cr_assert_str_eq(buf, "qwen2.5-7b");

	/* Empty and too-long names would alias: refused. */
	cr_assert_eq(shm_model_intern(h, ""), -1);
	memset(name, 'x', sizeof(name));
	name[SHM_NAME_MAX] = '\0';
	cr_assert_eq(shm_model_intern(h, name), -1);
	name[SHM_NAME_MAX - 1] = '\0';
	cr_assert_eq(shm_model_intern(h, name), 2, "63 bytes must fit");
	cr_assert_eq(shm_model_name(h, 2, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, name);

	/* Fill the index: ids are dense, then a new name gets -1. */
	for (i = 3; i < SHM_MODELS_MAX; i++) {
		snprintf(name, sizeof(name), "model-%d", i);
		cr_assert_eq(shm_model_intern(h, name), i);
	}
	cr_assert_eq(atomic_load(&h->nmodels), SHM_MODELS_MAX);
	cr_assert_eq(shm_model_intern(h, "one-too-many"), -1);
	cr_assert_eq(shm_model_lookup(h, "one-too-many"), -1);
	cr_assert_eq(shm_model_intern(h, "qwen2.5-7b"), 1, "full, but known");
	cr_assert_eq(shm_model_lookup(h, "model-1023"), 1023);
	cr_assert_eq(shm_model_name(h, 1023, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "model-1023");
	cr_assert_eq(shm_model_name(h, SHM_MODELS_MAX, buf, sizeof(buf)), -1);
	cr_assert_eq(atomic_load(&h->mseq) % 2, 0);
	shm_destroy(h);
}

/*
 * The master interns while readers look names up: every id below an
 * acquire-loaded nmodels must be found and named, never a wrong id.
 */
Test(shm, models_concurrent)
{
	struct shm_hdr	*h = table(1, 1);
	_Atomic uint32_t *go;
	char		 name[SHM_NAME_MAX];
	uint64_t	 until;
	uint32_t	 i;
	pid_t		 pid[2];
	int		 r;

	go = scratch_map(4096);
	for (r = 0; r < 2; r++) {
		pid[r] = fork();
		cr_assert_neq(pid[r], -1);
		if (pid[r] == 0) {
			char	 want[SHM_NAME_MAX], buf[SHM_NAME_MAX];
			uint32_t n, k, x = 2463534242u + (uint32_t)r;
			uint64_t checks = 0;

			alarm(CHILD_ALARM_S);
			while (atomic_load(go) == 0)
				;
			do {
				n = atomic_load_explicit(&h->nmodels,
				    memory_order_acquire);
				if (n == 0)
					continue;
				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				k = x % n;
				snprintf(want, sizeof(want), "m-%u", k);
				if (shm_model_lookup(h, want) != (int)k)
					_exit(1);
				if (shm_model_name(h, k, buf, sizeof(buf)) != 0 ||
				    strcmp(buf, want) != 0)
					_exit(2);
				checks++;
			} while (n < SHM_MODELS_MAX || checks < 1000);
			_exit(0);
		}
	}
	atomic_store(go, 1);
	for (i = 0; i < SHM_MODELS_MAX; i++) {
		until = shm_mono_ms();
		snprintf(name, sizeof(name), "m-%u", i);
		cr_assert_eq(shm_model_intern(h, name), (int)i);
		/* Spread the 1024 interns over ~0.2 s so readers overlap. */
		if (i % 8 == 0)
			while (shm_mono_ms() == until)
				sched_yield();
	}
	for (r = 0; r < 2; r++)
		cr_assert_eq(child_status(pid[r]), 0, "model reader %d failed", r);
	munmap(go, 4096);
	shm_destroy(h);
}

/* --- pools --- */

Test(shm, pools)
{
	struct shm_hdr *h = table(1, 1);

	cr_assert_eq(shm_pool_find(h, "chat"), -1);
	shm_pool_set(h, 0, "chat", 2, 1);
	shm_pool_set(h, 5, "embed", 3, 3);
	cr_assert_eq(shm_pool_find(h, "chat"), 0);
	cr_assert_eq(shm_pool_find(h, "embed"), 5);
	cr_assert_eq(shm_pool_find(h, "cha"), -1);
	cr_assert_eq(shm_pool_find(h, ""), -1, "a free pool's empty name matched");
	cr_assert_eq(shm_pool_strategy(h, 0), 2);
	cr_assert_eq(atomic_load(&h->pools[0].base_strategy), 1);
	cr_assert_eq(shm_pool_strategy(h, 5), 3);

	/* Operator override, then back to the configured one. */
	shm_pool_strategy_set(h, 0, 4);
	cr_assert_eq(shm_pool_strategy(h, 0), 4);
	cr_assert_eq(atomic_load(&h->pools[0].base_strategy), 1);
	shm_pool_strategy_set(h, 0,
	    atomic_load(&h->pools[0].base_strategy));
	cr_assert_eq(shm_pool_strategy(h, 0), 1);

	/* Renaming and freeing. */
	shm_pool_set(h, 5, "emb", 3, 3);
	cr_assert_eq(shm_pool_find(h, "embed"), -1);
	cr_assert_eq(shm_pool_find(h, "emb"), 5);
	cr_assert_str_eq(h->pools[5].name, "emb");
	cr_assert_eq(h->pools[5].name[4], '\0', "stale bytes left");
	shm_pool_set(h, 5, NULL, 0, 0);
	cr_assert_eq(shm_pool_find(h, "emb"), -1);
	cr_assert_eq(atomic_load(&h->pools[5].inuse), 0);

	/* Out of range is ignored, not a write past the array. */
	shm_pool_set(h, SHM_POOLS_MAX, "x", 1, 1);
	shm_pool_strategy_set(h, SHM_POOLS_MAX, 9);
	cr_assert_eq(shm_pool_strategy(h, SHM_POOLS_MAX), 0);
	cr_assert_eq(shm_pool_find(h, "x"), -1);
	shm_pool_set(h, SHM_POOLS_MAX - 1, "last", 1, 1);
	cr_assert_eq(shm_pool_find(h, "last"), SHM_POOLS_MAX - 1);
	cr_assert_eq(atomic_load(&h->mseq) % 2, 0);
	shm_destroy(h);
}

/*
 * Pool ids across generations (issue 11): a name keeps its id whatever
 * the order of the file, a retired name keeps its id (and its name, for
 * the workers of older generations), and an id is given to another name
 * only once no running generation is as old as the last one that had it.
 */
Test(shm, pool_ids_survive_reorder_retire_and_reuse)
{
	struct shm_hdr	*h = table(1, 2);
	char		 buf[SHM_NAME_MAX], name[16];
	int		 a, b, c, z, i;

	/* generation 1: a, b */
	a = shm_pool_intern(h, "a", 1, 1);
	b = shm_pool_intern(h, "b", 1, 1);
	cr_assert(a >= 0 && b >= 0 && a != b);
	shm_pool_set(h, (uint32_t)a, "a", 1, 1);
	shm_pool_set(h, (uint32_t)b, "b", 2, 2);

	/* generation 2 swaps them in the file: the same ids */
	cr_assert_eq(shm_pool_intern(h, "b", 2, 1), b);
	cr_assert_eq(shm_pool_intern(h, "a", 2, 1), a);
	cr_assert_eq(shm_pool_find(h, "a"), a);
	cr_assert_eq(shm_pool_find(h, "b"), b);

	/* generation 3 has a and c: c a new id, b retired but still named */
	cr_assert_eq(shm_pool_intern(h, "a", 3, 2), a);
	c = shm_pool_intern(h, "c", 3, 2);
	cr_assert(c >= 0 && c != a && c != b, "c took id %d", c);
	shm_pool_set(h, (uint32_t)c, "c", 3, 3);
	shm_pool_retire(h, (uint32_t)b);
	cr_assert_eq(shm_pool_find(h, "b"), -1, "a retired pool is not live");
	cr_assert_eq(shm_pool_id(h, "b"), b, "the old generation lost its id");
	cr_assert_eq(shm_pool_name(h, (uint32_t)b, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "b");
	cr_assert_eq(shm_pool_id(h, "a"), a);
	cr_assert_eq(shm_pool_id(h, "nope"), -1);
	cr_assert_eq(shm_pool_name(h, SHM_POOLS_MAX, buf, sizeof(buf)), -1);
	cr_assert_eq(shm_pool_name(h, (uint32_t)b, buf, 1), -1, "buf too small");

	/* every other id taken by generation 3 */
	for (i = 0; i < SHM_POOLS_MAX; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		if ((z = shm_pool_intern(h, name, 3, 2)) == -1)
			break;
		cr_assert(z != a && z != b && z != c, "%s took id %d", name, z);
		shm_pool_set(h, (uint32_t)z, name, 0, 0);
	}
	cr_assert_eq(i, SHM_POOLS_MAX - 3);
	/* a queue word a generation-2 worker left under b's id */
	atomic_store(&h->poolq[1][b].waits, 7);

	/* generation 2 still runs (oldest 2): b's id is not for another name */
	cr_assert_eq(shm_pool_intern(h, "z", 4, 2), -1);
	cr_assert_eq(shm_pool_id(h, "b"), b);
	/* b coming back gets its id again, counters and all */
	cr_assert_eq(shm_pool_intern(h, "b", 4, 2), b);
	shm_pool_set(h, (uint32_t)b, "b", 2, 2);
	cr_assert_eq(shm_pool_find(h, "b"), b);
	cr_assert_eq(atomic_load(&h->poolq[1][b].waits), 7, "a kept id's counters were reset");
	shm_pool_retire(h, (uint32_t)b);

	/* once the oldest running generation is past b's last one, z may take it */
	cr_assert_eq(shm_pool_intern(h, "z", 5, 4), -1, "b's last generation was 4");
	z = shm_pool_intern(h, "z", 6, 5);
	cr_assert_eq(z, b);
	cr_assert_eq(shm_pool_id(h, "b"), -1);
	cr_assert_eq(shm_pool_id(h, "z"), z);
	cr_assert_eq(atomic_load(&h->poolq[1][z].waits), 0, "z inherited b's counters");

	/* bad names */
	cr_assert_eq(shm_pool_intern(h, "", 6, 5), -1);
	memset(buf, 'x', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	cr_assert_eq(shm_pool_intern(h, buf, 6, 5), -1, "a truncated name would alias");
	cr_assert_eq(atomic_load(&h->mseq) % 2, 0);
	shm_destroy(h);
}

/* --- trial tickets --- */

Test(shm, trial_tickets)
{
	struct shm_hdr	*h = table(2, 1);
	struct shm_slot	*s = shm_slot(h, 1);
	int		 i, got = 0;

	cr_assert_eq(shm_trial_take(s), 0, "ticket from nothing");
	atomic_store(&s->trial_tickets, 3);
	for (i = 0; i < 10; i++)
		got += shm_trial_take(s);
	cr_assert_eq(got, 3);
	cr_assert_eq(atomic_load(&s->trial_tickets), 0);
	cr_assert_eq(shm_trial_take(shm_slot(h, 0)), 0);
	shm_destroy(h);
}

#define TRIAL_PROCS	3
#define TRIAL_TICKETS	2000000

Test(shm, trial_tickets_contended)
{
	struct shm_hdr	*h = table(1, 1);
	struct shm_slot	*s = shm_slot(h, 0);
	struct {
		_Atomic uint32_t go;
		_Atomic uint64_t took[TRIAL_PROCS];
	}		*sc;
	pid_t		 pid[TRIAL_PROCS];
	uint64_t	 total = 0;
	int		 p;

	sc = scratch_map(4096);
	atomic_store(&s->trial_tickets, TRIAL_TICKETS);
	for (p = 0; p < TRIAL_PROCS; p++) {
		pid[p] = fork();
		cr_assert_neq(pid[p], -1);
		if (pid[p] == 0) {
			uint64_t n = 0;

			alarm(CHILD_ALARM_S);
			while (atomic_load(&sc->go) == 0)
				;
			while (shm_trial_take(s))
				n++;
			/* Once empty, it stays empty. */
			if (shm_trial_take(s))
				_exit(1);
			atomic_store(&sc->took[p], n);
			_exit(0);
		}
	}
	atomic_store(&sc->go, 1);
	for (p = 0; p < TRIAL_PROCS; p++) {
		cr_assert_eq(child_status(pid[p]), 0, "taker %d failed", p);
		total += atomic_load(&sc->took[p]);
		cr_log_info("taker %d: %lu tickets", p,
		    (unsigned long)atomic_load(&sc->took[p]));
	}
	cr_assert_eq(total, TRIAL_TICKETS, "took %lu of %u tickets",
	    (unsigned long)total, TRIAL_TICKETS);
	cr_assert_eq(atomic_load(&s->trial_tickets), 0);
	munmap(sc, 4096);
	shm_destroy(h);
}

/* --- time --- */

Test(shm, clocks)
{
	uint64_t a, b;

	a = shm_now_ms();
	cr_assert_gt(a, 1600000000000ull, "CLOCK_REALTIME in ms expected");
	a = shm_mono_ms();
	usleep(20000);
	b = shm_mono_ms();
	cr_assert_geq(b - a, 19);
	cr_assert_lt(b - a, 5000);
}

/*
 * --- the torture test (STYLE 13; after Concurrency Kit's ck_sequence
 * validate test) ---
 *
 * One writer process rewrites descriptors in a loop as the master would.
 * Write number c goes to slot c % nslots and is entirely derived from c:
 * every byte of name is c mod 256, weight is c, region and addr spell c,
 * models[i] is c + i, the sockaddr and health path bytes follow c, and
 * last_seen_ms is a checksum of all the rest.  Readers copy slots out and
 * rebuild the descriptor from the copy's added_ms (== c): any mix of two
 * writes shows as a difference.  They also check that c belongs to the
 * slot read and that a slot's c never goes back.
 *
 * How we know it can fail:
 *  - the same harness with TORTURE_UNPROTECTED reads with a bare memcpy
 *    instead of the seqlock, and the negative-control test below asserts
 *    that it does catch torn descriptors (16 tears within milliseconds on
 *    a 2-core machine, also with the other tests running beside it);
 *  - by hand, against mutated copies of shm/table.c: a tryread that skips
 *    the second read of seq, and a writer that never stores the odd seq,
 *    each made both torture tests fail with torn descriptors (tens to
 *    thousands per run).
 * Reader 0 shares no CPU with the writer (true overlap); on a 2-CPU box
 * reader 1 shares the writer's, so it covers a writer preempted mid-write.
 */

#define TORTURE_READERS_MAX	3

enum torture_mode {
	TORTURE_SEQLOCK,	/* shm_desc_read / shm_desc_tryread */
	TORTURE_UNPROTECTED	/* bare memcpy: must see tears */
};

struct torture_shared {
	_Atomic uint32_t go;		/* parent: everyone forked */
	_Atomic uint32_t stop;		/* writer: done; or a reader: enough tears */
	_Atomic uint64_t writes;
	struct {
		_Atomic uint64_t reads;
		_Atomic uint64_t retries;	/* failed shm_desc_tryread() */
		_Atomic uint64_t torn;
		_Atomic uint64_t backwards;	/* c went back or wrong slot */
	} r[TORTURE_READERS_MAX];
};

/*
 * Pin the calling child to the nth CPU it may run on (modulo their count).
 * The writer gets one CPU and the readers the others, so that reads and
 * writes really overlap even when criterion runs other tests next to us:
 * left alone, the scheduler may stack writer and reader on one CPU where
 * they only ever interleave at a preemption, and the negative control
 * then sees no tear at all (observed on a 2-core machine).
 */
static void
torture_pin(int nth)
{
	cpu_set_t	 allowed, one;
	int		 cpu, n;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) == -1 ||
	    (n = CPU_COUNT(&allowed)) < 2)
		return;
	nth %= n;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &allowed) && nth-- == 0)
			break;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	(void)sched_setaffinity(0, sizeof(one), &one);
}

/* How many CPUs this test may use. */
static int
torture_ncpu(void)
{
	cpu_set_t allowed;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) == -1)
		return (1);
	return (CPU_COUNT(&allowed));
}

static void
torture_hex(char *p, uint64_t v)
{
	static const char xd[] = "0123456789abcdef";
	int i;

	for (i = 15; i >= 0; i--, v >>= 4)
		p[i] = xd[v & 0xf];
}

static uint64_t
torture_sum(const struct shm_desc *d)
{
	const unsigned char	*p = (const unsigned char *)d;
	uint64_t		 h = 1469598103934665603ull;
	size_t			 i;

	/* FNV-1a over everything before last_seen_ms, the checksum itself. */
	for (i = 0; i < offsetof(struct shm_desc, last_seen_ms); i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (h);
}

static void
torture_fill(struct shm_desc *d, uint64_t c)
{
	unsigned i;

	memset(d, 0, sizeof(*d));
	memset(d->name, (int)(c & 0xff), sizeof(d->name));
	memcpy(d->addr, "10.0.0.1:", 9);
	torture_hex(d->addr + 9, c * 2654435761u);
	for (i = 0; i < SHM_SA_MAX; i++)
		d->sa[i] = (uint8_t)((c >> 8) + i);
	d->salen = (uint32_t)(c ^ 0x5a5a5a5a);
	memset(d->health_path, (int)((c * 7) & 0xff),
	    sizeof(d->health_path) - 1);
	memcpy(d->region, "region-", 7);
	torture_hex(d->region + 7, c);
	d->pool = (uint32_t)(c % SHM_POOLS_MAX);
	d->weight = (uint32_t)c;
	d->max_conns = ~(uint32_t)c;
	d->flags = SHM_F_INUSE | ((c & 1) ? SHM_F_BACKUP : 0);
	d->nmodels = SHM_SLOT_MODELS;
	for (i = 0; i < SHM_SLOT_MODELS; i++)
		d->models[i] = (uint32_t)(c + i);
	d->added_ms = c;
	d->last_seen_ms = torture_sum(d);
}

/* 1 if d is exactly what write number d->added_ms stored. */
static int
torture_valid(const struct shm_desc *d)
{
	struct shm_desc want;

	if (d->last_seen_ms != torture_sum(d))
		return (0);
	torture_fill(&want, d->added_ms);
	return (memcmp(&want, d, sizeof(want)) == 0);
}

static void
torture_writer(struct shm_hdr *h, struct torture_shared *ts, uint32_t nslots,
    uint64_t ms)
{
	struct shm_desc	 d;
	uint64_t	 c, deadline;

	alarm(CHILD_ALARM_S);
	torture_pin(0);
	while (atomic_load(&ts->go) == 0)
		;
	deadline = shm_mono_ms() + ms;
	/* Slots 0..nslots-1 were written with c = slot before the fork. */
	for (c = nslots; c < 200000000; c++) {
		if ((c & 255) == 0 && (shm_mono_ms() >= deadline ||
		    atomic_load_explicit(&ts->stop, memory_order_relaxed)))
			break;
		torture_fill(&d, c);
		shm_desc_write(shm_slot(h, (uint32_t)(c % nslots)), &d);
	}
	atomic_store(&ts->writes, c - nslots);
	atomic_store(&ts->stop, 1);
	_exit(0);
}

/*
 * Exit codes: 0 ok, 1 torn descriptor seen (seqlock mode), 2 no read at
 * all, 3 a slot's counter went back or belonged to another slot.
 */
static void
torture_reader(struct shm_hdr *h, struct torture_shared *ts, int r,
    uint32_t nslots, enum torture_mode mode)
{
	struct shm_desc	 d;
	uint64_t	 last[64], reads = 0, retries = 0, torn = 0, back = 0;
	uint64_t	 deadline;
	uint32_t	 slot, x = 88172645u + (uint32_t)r * 7919u;
	unsigned	 fails;

	alarm(CHILD_ALARM_S);
	torture_pin(1 + r);
	memset(last, 0, sizeof(last));
	while (atomic_load(&ts->go) == 0)
		;
	/* Belt and braces: the writer's stop flag should end us long before. */
	deadline = shm_mono_ms() + 5000;
	while (reads == 0 || !atomic_load_explicit(&ts->stop,
	    memory_order_relaxed)) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		slot = x % nslots;
		if (mode == TORTURE_UNPROTECTED)
			memcpy(&d, &shm_slot(h, slot)->d, sizeof(d));
		else if (reads & 1)
			shm_desc_read(shm_slot(h, slot), &d);
		else {
			for (fails = 0; shm_desc_tryread(shm_slot(h, slot),
			    &d) == -1; fails++) {
				retries++;
				if (fails % 64 == 63)
					sched_yield();
			}
		}
		reads++;
		if (!torture_valid(&d)) {
			torn++;
			/* The control needs only a few; let the writer stop. */
			if (mode == TORTURE_UNPROTECTED && torn >= 16)
				atomic_store(&ts->stop, 1);
		} else if (d.added_ms % nslots != slot ||
		    d.added_ms < last[slot]) {
			back++;
		} else
			last[slot] = d.added_ms;
		if ((reads & 1023) == 0 && shm_mono_ms() >= deadline)
			break;
	}
	atomic_store(&ts->r[r].reads, reads);
	atomic_store(&ts->r[r].retries, retries);
	atomic_store(&ts->r[r].torn, torn);
	atomic_store(&ts->r[r].backwards, back);
	if (reads == 0)
		_exit(2);
	if (mode == TORTURE_SEQLOCK && torn > 0)
		_exit(1);
	if (mode == TORTURE_SEQLOCK && back > 0)
		_exit(3);
	_exit(0);
}

/*
 * Run one writer and nreaders readers for about ms milliseconds; fills
 * *ts with what each saw and status[] with each reader's exit code.
 */
static void
torture_run(uint32_t nslots, int nreaders, uint64_t ms,
    enum torture_mode mode, struct torture_shared *ts, int *status)
{
	struct shm_hdr	*h;
	struct shm_desc	 d;
	pid_t		 writer, reader[TORTURE_READERS_MAX];
	uint32_t	 i;
	int		 r;

	cr_assert_leq(nslots, 64);
	cr_assert_leq(nreaders, TORTURE_READERS_MAX);
	h = table(nslots, 1);
	for (i = 0; i < nslots; i++) {
		torture_fill(&d, i);
		shm_desc_write(shm_slot(h, i), &d);
	}
	memset(ts, 0, sizeof(*ts));

	for (r = 0; r < nreaders; r++) {
		reader[r] = fork();
		cr_assert_neq(reader[r], -1, "fork: %s", strerror(errno));
		if (reader[r] == 0)
			torture_reader(h, ts, r, nslots, mode);
	}
	writer = fork();
	cr_assert_neq(writer, -1, "fork: %s", strerror(errno));
	if (writer == 0)
		torture_writer(h, ts, nslots, ms);
	atomic_store(&ts->go, 1);

	cr_assert_eq(child_status(writer), 0, "writer failed");
	for (r = 0; r < nreaders; r++) {
		status[r] = child_status(reader[r]);
		cr_log_info("%s reader %d: %lu reads, %lu retries, %lu torn, "
		    "status %d (writer: %lu writes, %u slots)",
		    mode == TORTURE_SEQLOCK ? "seqlock" : "unprotected", r,
		    (unsigned long)atomic_load(&ts->r[r].reads),
		    (unsigned long)atomic_load(&ts->r[r].retries),
		    (unsigned long)atomic_load(&ts->r[r].torn), status[r],
		    (unsigned long)atomic_load(&ts->writes), nslots);
	}
	shm_destroy(h);
}

static void
torture_expect_clean(uint32_t nslots, int nreaders, uint64_t ms)
{
	struct torture_shared	*ts;
	int			 status[TORTURE_READERS_MAX], r;

	ts = scratch_map(sizeof(*ts));
	torture_run(nslots, nreaders, ms, TORTURE_SEQLOCK, ts, status);
	cr_assert_gt(atomic_load(&ts->writes), 0, "writer never wrote");
	for (r = 0; r < nreaders; r++) {
		cr_assert_eq(atomic_load(&ts->r[r].torn), 0,
		    "reader %d saw %lu torn descriptors", r,
		    (unsigned long)atomic_load(&ts->r[r].torn));
		cr_assert_eq(atomic_load(&ts->r[r].backwards), 0,
		    "reader %d saw a slot go back in time", r);
		cr_assert_geq(atomic_load(&ts->r[r].reads), 1,
		    "reader %d never read", r);
		cr_assert_eq(status[r], 0, "reader %d exit status %d", r,
		    status[r]);
	}
	munmap(ts, sizeof(*ts));
}

/* 64 slots, three readers: the shape of the real table. */
Test(shm, torture_seqlock)
{
	torture_expect_clean(64, 3, 1500);
}

/* One hot slot: every read races the writer, so retries really happen. */
Test(shm, torture_seqlock_hot)
{
	torture_expect_clean(1, 2, 500);
}

/*
 * Negative control: the same harness reading with a bare memcpy must see
 * torn descriptors, or the torture test above proves nothing.  One hot
 * slot, one reader; readers stop the writer after 16 tears, so this
 * usually takes milliseconds and at most ~1 s.
 */
Test(shm, torture_control_detects_tears)
{
	struct torture_shared	*ts;
	int			 status[TORTURE_READERS_MAX];

	/* On one CPU a tear needs a preemption mid-memcpy: not reliable. */
	if (torture_ncpu() < 2)
		cr_skip_test("needs 2 CPUs to make the control reliable");
	ts = scratch_map(sizeof(*ts));
	torture_run(1, 1, 1000, TORTURE_UNPROTECTED, ts, status);
	cr_assert_eq(status[0], 0);
	cr_assert_gt(atomic_load(&ts->r[0].reads), 0);
	cr_assert_gt(atomic_load(&ts->r[0].torn), 0,
	    "unprotected reads saw no tear in %lu reads: the torture test "
	    "cannot tell a seqlock from none", (unsigned long)
	    atomic_load(&ts->r[0].reads));
	munmap(ts, sizeof(*ts));
}

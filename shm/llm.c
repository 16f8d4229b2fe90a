/*
 * The table's LLM parts: (backend, model) pairs summed over the
 * stripes, token histograms, the host's prefix memory and the readers
 * of the workers' decision rings.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shm/table.h"

#define LD(p)	atomic_load_explicit((p), memory_order_relaxed)

void
shm_pair_sum(struct shm_hdr *h, uint32_t slot, uint32_t pair, struct shm_pairsum *o)
{
	uint32_t w;
	unsigned i;

	memset(o, 0, sizeof(*o));
	if (slot >= h->max_backends || pair >= SHM_PAIRS)
		return;
	for (w = 0; w < h->max_workers; w++) {
		struct shm_pair *p = shm_pair(h, w, slot, pair);

		o->reqs += LD(&p->reqs);
		o->prompt += LD(&p->prompt);
		o->uncached += LD(&p->uncached);
		o->output += LD(&p->output);
		o->requests += LD(&p->requests);
		o->done += LD(&p->done);
		o->fails += LD(&p->fails);
		o->consec_fails += LD(&p->consec_fails);
		o->prompt_tokens += LD(&p->prompt_tokens);
		o->output_tokens += LD(&p->output_tokens);
		o->cached_tokens += LD(&p->cached_tokens);
		o->usage_chars += LD(&p->usage_chars);
		o->usage_prompt += LD(&p->usage_prompt);
		o->ttft_sum_us += LD(&p->ttft_sum_us);
		o->itl_sum_us += LD(&p->itl_sum_us);
		o->itl_count += LD(&p->itl_count);
		for (i = 0; i < SHM_LAT_BUCKETS; i++) {
			o->ttft_hist[i] += LD(&p->ttft_hist[i]);
			o->itl_hist[i] += LD(&p->itl_hist[i]);
		}
		for (i = 0; i < SHM_TOK_BUCKETS; i++) {
			o->ptok_hist[i] += LD(&p->ptok_hist[i]);
			o->otok_hist[i] += LD(&p->otok_hist[i]);
		}
	}
}

unsigned
shm_tok_bucket(uint64_t tokens)
{
	unsigned i;

	for (i = 0; i < SHM_TOK_BUCKETS - 1; i++)
		if (tokens <= (1ull << i))
			break;
	return (i);
}

uint64_t
shm_tok_bucket_le(unsigned bucket)
{
	if (bucket >= SHM_TOK_BUCKETS - 1)
		return (UINT64_MAX);
	return (1ull << bucket);
}

/* An entry: the hash's high 48 bits, the slot in the low 16; never 0. */
static uint64_t
pfx_key(uint64_t hash, uint32_t slot)
{
	return ((hash | 1ull << 63) & ~0xffffull) | (slot & 0xffff);
}

/*
 * The set comes from the hash's low bits, the key keeps its high bits,
 * so the two never overlap for SHM_PFX_SETS <= 2^16.
 */
void
shm_pfx_note(struct shm_hdr *h, uint64_t hash, uint32_t slot, uint32_t tick)
{
	struct shm_pfxset	*s = shm_pfxset(h, hash);
	uint64_t		 key = pfx_key(hash, slot);
	uint32_t		 age, oldest = 0;
	unsigned		 i, victim = 0;

	for (i = 0; i < SHM_PFX_WAYS; i++) {
		uint64_t k = LD(&s->key[i]);

		if (k == key) {
			atomic_store_explicit(&s->tick[i], tick, memory_order_relaxed);
			return;
		}
		/* an empty way is the oldest of all; ticks may wrap */
		age = k == 0 ? UINT32_MAX : tick - LD(&s->tick[i]);
		if (i == 0 || age > oldest) {
			oldest = age;
			victim = i;
		}
	}
	atomic_store_explicit(&s->tick[victim], tick, memory_order_relaxed);
	atomic_store_explicit(&s->key[victim], key, memory_order_relaxed);
}

size_t
shm_pfx_find(struct shm_hdr *h, uint64_t hash, uint32_t *slots, size_t max)
{
	struct shm_pfxset	*s = shm_pfxset(h, hash);
	uint64_t		 want = pfx_key(hash, 0);
	size_t			 n = 0;
	unsigned		 i;

	for (i = 0; i < SHM_PFX_WAYS && n < max; i++) {
		uint64_t k = LD(&s->key[i]);

		if (k != 0 && (k & ~0xffffull) == want)
			slots[n++] = (uint32_t)(k & 0xffff);
	}
	return (n);
}

void
shm_pfx_forget(struct shm_hdr *h, uint32_t slot)
{
	struct shm_pfxset	*base;
	size_t			 i;
	unsigned		 w;

	base = (struct shm_pfxset *)((char *)h + h->pfx_off);
	for (i = 0; i < SHM_PFX_SETS; i++)
		for (w = 0; w < SHM_PFX_WAYS; w++) {
			uint64_t k = LD(&base[i].key[w]);

			if (k != 0 && (k & 0xffff) == (slot & 0xffff))
				atomic_store_explicit(&base[i].key[w], 0,
				    memory_order_relaxed);
		}
}

/*
 * One entry of a decision ring, copied inside its seqlock (the writer:
 * seq odd, fence, fields, seq even with release; as in table.c).  0, or
 * -1 when the worker was rewriting it on every try.
 */
static int
explain_copy(const struct shm_decision *e, struct shm_decision *out)
{
	uint32_t	s1;
	unsigned	tries;

	for (tries = 0; tries < 8; tries++) {
		s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		memcpy((char *)out + sizeof(out->seq), (const char *)e +
		    sizeof(e->seq), sizeof(*e) - sizeof(e->seq));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&e->seq, memory_order_relaxed) == s1) {
			atomic_store_explicit(&out->seq, s1, memory_order_relaxed);
			return (0);
		}
	}
	return (-1);
}

static int
explain_newer(const void *a, const void *b)
{
	const struct shm_decision_copy *x = a, *y = b;

	if (x->d.ms != y->d.ms)
		return (x->d.ms < y->d.ms ? 1 : -1);
	if (x->pos != y->pos)
		return (x->pos < y->pos ? 1 : -1);
	return (x->worker < y->worker ? -1 : x->worker > y->worker);
}

int
shm_explain_read(struct shm_hdr *h, struct shm_decision_copy *out, size_t max)
{
	struct shm_decision_copy *all;
	size_t		 per, n = 0;
	uint64_t	 head, pos, k;
	uint32_t	 w;

	if (max == 0)
		return (0);
	/* no worker gives more than max of the newest max */
	per = max < SHM_EXPLAIN_LEN ? max : SHM_EXPLAIN_LEN;
	if ((all = calloc((size_t)h->max_workers * per, sizeof(*all))) == NULL)
		return (-1);
	for (w = 0; w < h->max_workers; w++) {
		struct shm_explain *x = shm_explain(h, w);

		head = atomic_load_explicit(&x->head, memory_order_acquire);
		for (k = 1; k <= per && k <= head; k++) {
			struct shm_decision_copy *c = &all[n];

			pos = head - k;
			if (explain_copy(&x->ent[pos & (SHM_EXPLAIN_LEN - 1)],
			    &c->d) == -1 || c->d.ms == 0)
				continue;
			c->worker = w;
			c->pos = pos;
			n++;
		}
	}
	qsort(all, n, sizeof(*all), explain_newer);
	if (n > max)
		n = max;
	memcpy(out, all, n * sizeof(*all));
	free(all);
	return ((int)n);
}

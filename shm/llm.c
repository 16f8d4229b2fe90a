/*
 * The table's LLM parts: (backend, model) pairs summed over the
 * stripes, token histograms, and the host's prefix memory.
 */
#include <stdatomic.h>
#include <stdint.h>
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

/* The flow-control counters of the table summed for reading, and their JSON (routerctl and the admin API share it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/admin.h"
#include "worker/flowview.h"

#define LD(p)	atomic_load_explicit((p), memory_order_relaxed)

void
flowview_pool_sum(struct shm_hdr *h, uint32_t pool, struct flowview_pool *s)
{
	uint32_t	 k, b;

	memset(s, 0, sizeof(*s));
	if (pool >= SHM_POOLS_MAX)
		return;
	/* every generation's workers count a pool under its id */
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++) {
		const struct shm_poolq *q = &h->poolq[k][pool];

		s->waiting += LD(&q->queued);
		s->waits += LD(&q->waits);
		s->wait_ms += LD(&q->wait_ms);
		s->timeouts += LD(&q->timeouts);
		s->rejected += LD(&q->rejected);
		s->dropped += LD(&q->dropped);
		s->expired += LD(&q->expired);
		s->limited += LD(&q->limited);
		for (b = 0; b < SHM_BANDS; b++) {
			s->band_waiting[b] += LD(&q->band_queued[b]);
			s->band_admitted[b] += LD(&q->band_admitted[b]);
		}
		for (b = 0; b < SHM_LAT_BUCKETS; b++)
			s->wait_hist[b] += LD(&q->wait_hist[b]);
	}
}

int
flowview_band_shown(const struct flowview_pool *s, unsigned b)
{
	if (b >= SHM_BANDS)
		return 0;
	return FLOWVIEW_PRIO(b) == 0 || s->band_waiting[b] != 0 ||
	    s->band_admitted[b] != 0;
}

void
flowview_budget(struct shm_hdr *h, uint64_t *retries, uint64_t *refused)
{
	uint32_t	 k;

	*retries = *refused = 0;
	/* a stripe's counters outlive its worker: the sums only grow */
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++) {
		*retries += LD(&h->workers[k].bud_retries);
		*refused += LD(&h->workers[k].bud_refused);
	}
}

static int
flowview_by_label(const void *a, const void *b)
{
	return strcmp(((const struct flowview_tenant *)a)->label,
	    ((const struct flowview_tenant *)b)->label);
}

static int
flowview_by_requests(const void *a, const void *b)
{
	const struct flowview_tenant *x = a, *y = b;

	if (x->requests != y->requests)
		return x->requests > y->requests ? -1 : 1;
	return strcmp(x->label, y->label);
}

/*
 * The label as written after the key (it may still be in progress:
 * NUL-terminated here), bytes a reader cannot show replaced by '?'
 * (flow.c writes them printable; the table is not trusted for that).
 * 0, or -1 for an entry without a label yet.
 */
static int
flowview_label(const struct shm_tenant *t, char *buf)
{
	size_t	 i;

	memcpy(buf, t->label, SHM_TENANT_LABEL);
	buf[SHM_TENANT_LABEL - 1] = '\0';
	for (i = 0; buf[i] != '\0'; i++)
		if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e)
			buf[i] = '?';
	return buf[0] != '\0' ? 0 : -1;
}

struct flowview_tenant *
flowview_tenants(struct shm_hdr *h, size_t *np)
{
	struct flowview_tenant	*v, *o;
	size_t			 n = 0, i, m;
	uint32_t		 k;
	int32_t			 q;

	*np = 0;
	if ((v = calloc(SHM_TENANTS, sizeof(*v))) == NULL)
		return NULL;
	for (k = 0; k < SHM_TENANTS; k++) {
		const struct shm_tenant *t = &h->tenants[k];

		if (atomic_load_explicit(&t->key, memory_order_acquire) == 0 ||
		    flowview_label(t, v[n].label) == -1)
			continue;
		o = &v[n++];
		q = LD(&t->queued);
		o->queued = q > 0 ? (uint64_t)q : 0;
		o->requests = LD(&t->requests);
		o->limited_req = LD(&t->limited_req);
		o->limited_tok = LD(&t->limited_tok);
		o->tokens = LD(&t->tokens);
		o->waits = LD(&t->waits);
		o->wait_ms = LD(&t->wait_ms);
		o->dropped = LD(&t->dropped);
		o->last_ms = LD(&t->last_ms);
	}
	if (n == 0) {
		free(v);
		return NULL;
	}
	/* one label, one tenant to the reader: a series is never repeated */
	qsort(v, n, sizeof(*v), flowview_by_label);
	for (i = 1, m = 0; i < n; i++) {
		o = &v[m];
		if (strcmp(o->label, v[i].label) != 0) {
			v[++m] = v[i];
			continue;
		}
		o->queued += v[i].queued;
		o->requests += v[i].requests;
		o->limited_req += v[i].limited_req;
		o->limited_tok += v[i].limited_tok;
		o->tokens += v[i].tokens;
		o->waits += v[i].waits;
		o->wait_ms += v[i].wait_ms;
		o->dropped += v[i].dropped;
		if (v[i].last_ms > o->last_ms)
			o->last_ms = v[i].last_ms;
	}
	n = m + 1;
	qsort(v, n, sizeof(*v), flowview_by_requests);
	*np = n;
	return v;
}

/* Mean wait in ms, null before the first. */
static json_t *
flowview_avg(uint64_t sum_ms, uint64_t n)
{
	if (n == 0)
		return json_null();
	return json_real(admin_round2((double)sum_ms / (double)n));
}

static json_t *
flowview_pool_json(struct shm_hdr *h, uint32_t id, const char *name)
{
	struct flowview_pool	 s;
	json_t			*o, *bands;
	unsigned		 b;

	flowview_pool_sum(h, id, &s);
	if ((bands = json_array()) == NULL)
		return NULL;
	for (b = SHM_BANDS; b-- > 0;)
		if (flowview_band_shown(&s, b))
			json_array_append_new(bands, json_pack("{s:i, s:I, s:I}",
			    "priority", FLOWVIEW_PRIO(b),
			    "waiting", (json_int_t)s.band_waiting[b],
			    "admitted", (json_int_t)s.band_admitted[b]));
	o = json_pack("{s:s, s:I, s:o, s:I, s:o, s:I, s:I, s:I, s:I, s:I}",
	    "pool", name,
	    "waiting", (json_int_t)s.waiting,
	    "bands", bands,
	    "waits", (json_int_t)s.waits,
	    "wait_ms_avg", flowview_avg(s.wait_ms, s.waits),
	    "timeouts", (json_int_t)s.timeouts,
	    "rejected", (json_int_t)s.rejected,
	    "deadline_dropped", (json_int_t)s.dropped,
	    "deadline_expired", (json_int_t)s.expired,
	    "ratelimited", (json_int_t)s.limited);
	return o;
}

json_t *
flowview_queue_json(struct shm_hdr *h)
{
	json_t		*pools, *e;
	char		 name[SHM_NAME_MAX];
	uint64_t	 retries, refused;
	uint32_t	 p;

	if ((pools = json_array()) == NULL)
		return NULL;
	for (p = 0; p < SHM_POOLS_MAX; p++) {
		/* the live pools: a retired one's queue empties with its workers */
		if (!atomic_load_explicit(&h->pools[p].inuse, memory_order_acquire) ||
		    shm_pool_name(h, p, name, sizeof(name)) == -1)
			continue;
		if ((e = flowview_pool_json(h, p, name)) == NULL) {
			json_decref(pools);
			return NULL;
		}
		json_array_append_new(pools, e);
	}
	flowview_budget(h, &retries, &refused);
	return json_pack("{s:o, s:{s:I, s:I}}", "pools", pools,
	    "retry_budget", "retries", (json_int_t)retries,
	    "refused", (json_int_t)refused);
}

json_t *
flowview_tenants_json(struct shm_hdr *h)
{
	struct flowview_tenant	*v;
	json_t			*a, *e;
	size_t			 n, i;

	v = flowview_tenants(h, &n);
	if ((a = json_array()) == NULL) {
		free(v);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		e = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:o}",
		    "tenant", v[i].label,
		    "queued", (json_int_t)v[i].queued,
		    "requests", (json_int_t)v[i].requests,
		    "limited_requests", (json_int_t)v[i].limited_req,
		    "limited_tokens", (json_int_t)v[i].limited_tok,
		    "tokens", (json_int_t)v[i].tokens,
		    "waits", (json_int_t)v[i].waits,
		    "wait_ms_avg", flowview_avg(v[i].wait_ms, v[i].waits),
		    "deadline_dropped", (json_int_t)v[i].dropped,
		    "last_seen", admin_time(v[i].last_ms));
		if (e == NULL) {
			free(v);
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, e);
	}
	free(v);
	return json_pack("{s:o}", "tenants", a);
}

/* Prometheus text exposition (format 0.0.4) of the shared table for GET /metrics. */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/admin.h"
#include "worker/flowview.h"
#include "worker/worker.h"

/* A label value with \, " and newline escaped as the text format wants. */
static void
prom_esc(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void
prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample per running worker of a 64-bit field of its stripe (off: offsetof in struct shm_worker). */
static void
prom_worker_u64(FILE *f, struct shm_hdr *h, const char *name, const char *type,
    const char *help, size_t off)
{
	uint32_t	k;

	prom_family(f, name, type, help);
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++) {
		struct shm_worker *sw = &h->workers[k];

		if (atomic_load_explicit(&sw->state, memory_order_relaxed) == 0)
			continue;
		fprintf(f, "%s{worker=\"%u\",pid=\"%d\"} %llu\n", name, k,
		    (int)atomic_load_explicit(&sw->pid, memory_order_relaxed),
		    (unsigned long long)atomic_load_explicit(
		    (_Atomic uint64_t *)(void *)((char *)sw + off), memory_order_relaxed));
	}
}

/* name{backend="..",pool=".."[,extra]} */
static void
prom_be(FILE *f, const char *name, const struct admin_be *b, const char *extra)
{
	fprintf(f, "%s{backend=\"", name);
	prom_esc(f, b->d.name);
	fputs("\",pool=\"", f);
	prom_esc(f, b->pool);
	fputc('"', f);
	if (extra != NULL)
		fprintf(f, ",%s", extra);
	fputs("} ", f);
}

/*
 * One counter or gauge per backend, value picked by off into struct admin_be.
 */
enum prom_val {
	PV_REQUESTS, PV_FAILS, PV_RETRIES, PV_INFLIGHT, PV_BYTES_IN,
	PV_BYTES_OUT, PV_CONNS, PV_CONSEC, PV_OPENS, PV_WEIGHT, PV_EWMA,
	PV_HELD, PV_BROKEN, PV_DOWNREL
};

static const struct prom_row {
	const char	*name;
	const char	*type;
	enum prom_val	 v;
	const char	*help;
} prom_rows[] = {
	{ "routerd_backend_requests_total", "counter", PV_REQUESTS,
	  "Attempts sent to the backend (a retry is a second attempt)." },
	{ "routerd_backend_failures_total", "counter", PV_FAILS,
	  "Failed attempts: 5xx answers, connect errors, resets, timeouts, "
	  "bad responses." },
	{ "routerd_backend_retries_total", "counter", PV_RETRIES,
	  "Attempts that were retries of a request that failed elsewhere." },
	{ "routerd_backend_inflight_requests", "gauge", PV_INFLIGHT,
	  "Requests now at the backend, summed over workers." },
	{ "routerd_backend_received_bytes_total", "counter", PV_BYTES_IN,
	  "Bytes read from the backend." },
	{ "routerd_backend_sent_bytes_total", "counter", PV_BYTES_OUT,
	  "Bytes written to the backend." },
	{ "routerd_backend_connections_total", "counter", PV_CONNS,
	  "Upstream connections opened to the backend." },
	{ "routerd_backend_consecutive_failures", "gauge", PV_CONSEC,
	  "Failed attempts in a row (the breaker's input), summed over workers." },
	{ "routerd_backend_breaker_opens_total", "counter", PV_OPENS,
	  "Circuit breaker transitions to open." },
	{ "routerd_backend_weight", "gauge", PV_WEIGHT,
	  "Configured weight." },
	{ "routerd_backend_check_latency_seconds", "gauge", PV_EWMA,
	  "Latency EWMA measured by the prober." },
	{ "routerd_backend_held_stream_failures_total", "counter", PV_HELD,
	  "Streams that failed here before their first event while the head "
	  "was held (llm.hold_headers): retried elsewhere, unseen by the client." },
	{ "routerd_backend_streams_broken_total", "counter", PV_BROKEN,
	  "Streams that broke here after their first event: ended with an "
	  "error event." },
	{ "routerd_backend_down_released_total", "counter", PV_DOWNREL,
	  "Attempts waiting here for a first byte, released when the prober "
	  "marked the backend down." },
};

static void
prom_value(FILE *f, const struct admin_be *b, enum prom_val v)
{
	switch (v) {
	case PV_REQUESTS:
		fprintf(f, "%llu\n", (unsigned long long)b->t.requests);
		break;
	case PV_FAILS:
		fprintf(f, "%llu\n", (unsigned long long)b->t.fails);
		break;
	case PV_RETRIES:
		fprintf(f, "%llu\n", (unsigned long long)b->t.retries);
		break;
	case PV_INFLIGHT:
		fprintf(f, "%lld\n", (long long)b->t.inflight);
		break;
	case PV_BYTES_IN:
		fprintf(f, "%llu\n", (unsigned long long)b->t.bytes_in);
		break;
	case PV_BYTES_OUT:
		fprintf(f, "%llu\n", (unsigned long long)b->t.bytes_out);
		break;
	case PV_CONNS:
		fprintf(f, "%llu\n", (unsigned long long)b->t.conns);
		break;
	case PV_CONSEC:
		fprintf(f, "%llu\n", (unsigned long long)b->consec_fails);
		break;
	case PV_OPENS:
		fprintf(f, "%u\n", b->breaker_opens);
		break;
	case PV_WEIGHT:
		fprintf(f, "%u\n", b->d.weight);
		break;
	case PV_EWMA:
		fprintf(f, "%.6f\n", b->lat_ewma_us / 1e6);
		break;
	case PV_HELD:
		fprintf(f, "%llu\n", (unsigned long long)b->t.held_fails);
		break;
	case PV_BROKEN:
		fprintf(f, "%llu\n", (unsigned long long)b->t.streams_broken);
		break;
	case PV_DOWNREL:
		fprintf(f, "%llu\n", (unsigned long long)b->t.down_released);
		break;
	}
}

/* Per pool queue depth and waits, summed over every worker's row of the table. */
static void
prom_pool_queues(struct worker *w, FILE *f)
{
	struct shm_hdr	*h = w->shm;
	static const struct {
		const char	*name, *type, *help;
	} fam[] = {
		{ "routerd_pool_queue_depth", "gauge", "Requests waiting for a backend slot." },
		{ "routerd_pool_queue_waits_total", "counter", "Requests that waited and got a backend." },
		{ "routerd_pool_queue_wait_seconds_total", "counter", "Time those requests waited." },
		{ "routerd_pool_queue_timeouts_total", "counter", "Requests answered 503 after queue.timeout." },
		{ "routerd_pool_queue_rejected_total", "counter", "Requests answered 503 at once: queue full." },
	};
	size_t		 k, p;
	uint32_t	 x;

	for (k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		prom_family(f, fam[k].name, fam[k].type, fam[k].help);
		for (p = 0; p < w->view.npools; p++) {
			uint64_t v = 0;
			uint32_t id = w->view.pools[p].id;

			/* every generation's workers count a pool under its id */
			for (x = 0; x < h->max_workers && x < SHM_WORKERS_MAX &&
			    id < SHM_POOLS_MAX; x++) {
				const struct shm_poolq *q = &h->poolq[x][id];

				switch (k) {
				case 0: v += atomic_load_explicit(&q->queued, memory_order_relaxed); break;
				case 1: v += atomic_load_explicit(&q->waits, memory_order_relaxed); break;
				case 2: v += atomic_load_explicit(&q->wait_ms, memory_order_relaxed); break;
				case 3: v += atomic_load_explicit(&q->timeouts, memory_order_relaxed); break;
				case 4: v += atomic_load_explicit(&q->rejected, memory_order_relaxed); break;
				}
			}
			if (k == 2)
				fprintf(f, "%s{pool=\"%s\"} %.3f\n", fam[k].name,
				    w->conf->pools[p].name, (double)v / 1e3);
			else
				fprintf(f, "%s{pool=\"%s\"} %llu\n", fam[k].name,
				    w->conf->pools[p].name, (unsigned long long)v);
		}
	}
}

/* name{pool="..."[,extra]} and a blank */
static void
prom_pool(FILE *f, const char *name, const char *pool, const char *extra)
{
	fprintf(f, "%s{pool=\"", name);
	prom_esc(f, pool);
	fputc('"', f);
	if (extra != NULL)
		fprintf(f, ",%s", extra);
	fputs("} ", f);
}

/*
 * Flow control per pool (flowview.c sums the workers' rows): the bands
 * of the admission queue, its waits as a histogram, the deadlines and
 * rate limits that refused requests.  A band has samples once it was
 * used (priority 0 always), so a page is not sixteen zeros per pool.
 */
static void
prom_flow_pools(struct worker *w, FILE *f)
{
	struct flowview_pool	*s;
	static const struct {
		const char	*name, *help;
		size_t		 off;
	} cnt[] = {
		{ "routerd_queue_deadline_dropped_total",
		  "Requests answered 503 because their X-Request-Deadline passed "
		  "while they waited.", offsetof(struct flowview_pool, dropped) },
		{ "routerd_queue_deadline_expired_total",
		  "Requests answered 503 because their X-Request-Deadline had "
		  "passed when they arrived.", offsetof(struct flowview_pool, expired) },
		{ "routerd_ratelimited_total",
		  "Requests answered 429 by a rate limit (ratelimits).",
		  offsetof(struct flowview_pool, limited) },
	};
	char		 lbl[64];
	size_t		 p, np = w->view.npools, k;
	unsigned	 b;
	uint64_t	 cum;

	if (np == 0 || (s = calloc(np, sizeof(*s))) == NULL)
		return;
	for (p = 0; p < np; p++)
		flowview_pool_sum(w->shm, w->view.pools[p].id, &s[p]);

	prom_family(f, "routerd_queue_waiting", "gauge",
	    "Requests waiting in the admission queue now, by priority band.");
	for (p = 0; p < np; p++)
		for (b = SHM_BANDS; b-- > 0;)
			if (flowview_band_shown(&s[p], b)) {
				snprintf(lbl, sizeof(lbl), "priority=\"%d\"",
				    FLOWVIEW_PRIO(b));
				prom_pool(f, "routerd_queue_waiting",
				    w->conf->pools[p].name, lbl);
				fprintf(f, "%llu\n",
				    (unsigned long long)s[p].band_waiting[b]);
			}
	prom_family(f, "routerd_queue_admitted_total", "counter",
	    "Requests that left the admission queue for a backend, by priority band.");
	for (p = 0; p < np; p++)
		for (b = SHM_BANDS; b-- > 0;)
			if (flowview_band_shown(&s[p], b)) {
				snprintf(lbl, sizeof(lbl), "priority=\"%d\"",
				    FLOWVIEW_PRIO(b));
				prom_pool(f, "routerd_queue_admitted_total",
				    w->conf->pools[p].name, lbl);
				fprintf(f, "%llu\n",
				    (unsigned long long)s[p].band_admitted[b]);
			}
	prom_family(f, "routerd_queue_wait_seconds", "histogram",
	    "Time requests waited in the admission queue before a backend took them.");
	for (p = 0; p < np; p++) {
		cum = 0;
		for (k = 0; k < SHM_LAT_BUCKETS; k++) {
			uint64_t le = shm_lat_bucket_le_us((unsigned)k);

			cum += s[p].wait_hist[k];
			if (le == UINT64_MAX)
				snprintf(lbl, sizeof(lbl), "le=\"+Inf\"");
			else
				snprintf(lbl, sizeof(lbl), "le=\"%g\"",
				    (double)le / 1e6);
			prom_pool(f, "routerd_queue_wait_seconds_bucket",
			    w->conf->pools[p].name, lbl);
			fprintf(f, "%llu\n", (unsigned long long)cum);
		}
		prom_pool(f, "routerd_queue_wait_seconds_sum",
		    w->conf->pools[p].name, NULL);
		fprintf(f, "%.3f\n", (double)s[p].wait_ms / 1e3);
		/* the +Inf bucket: the same requests as waits, read in one pass */
		prom_pool(f, "routerd_queue_wait_seconds_count",
		    w->conf->pools[p].name, NULL);
		fprintf(f, "%llu\n", (unsigned long long)cum);
	}
	for (k = 0; k < sizeof(cnt) / sizeof(cnt[0]); k++) {
		prom_family(f, cnt[k].name, "counter", cnt[k].help);
		for (p = 0; p < np; p++) {
			prom_pool(f, cnt[k].name, w->conf->pools[p].name, NULL);
			fprintf(f, "%llu\n", (unsigned long long)*(const uint64_t *)
			    (const void *)((const char *)&s[p] + cnt[k].off));
		}
	}
	free(s);
}

/* name{tenant="..."[,extra]} and a blank */
static void
prom_tenant(FILE *f, const char *name, const struct flowview_tenant *t,
    const char *extra)
{
	fprintf(f, "%s{tenant=\"", name);
	prom_esc(f, t->label);
	fputc('"', f);
	if (extra != NULL)
		fprintf(f, ",%s", extra);
	fputs("} ", f);
}

/*
 * Per tenant (queue.tenant; a secret shown cut to its ends, as the table
 * keeps it), the tenants the table tracks: those a rate limit applies to
 * and those that waited in the queue.  Then the retry budget.
 */
static void
prom_flow_tenants(struct worker *w, FILE *f)
{
	struct flowview_tenant	*v;
	static const struct {
		const char	*name, *type, *help;
		size_t		 off;
	} fam[] = {
		{ "routerd_tenant_requests_total", "counter",
		  "Requests of the tenant that passed its rate limits.",
		  offsetof(struct flowview_tenant, requests) },
		{ "routerd_tenant_tokens_total", "counter",
		  "Tokens charged to the tenant, corrected by the backends' usage.",
		  offsetof(struct flowview_tenant, tokens) },
		{ "routerd_tenant_queued", "gauge",
		  "Requests of the tenant waiting in the admission queue now.",
		  offsetof(struct flowview_tenant, queued) },
		{ "routerd_tenant_queue_waits_total", "counter",
		  "Requests of the tenant that waited in the queue and got a backend.",
		  offsetof(struct flowview_tenant, waits) },
		{ "routerd_tenant_deadline_dropped_total", "counter",
		  "Requests of the tenant answered 503: their deadline passed in the queue.",
		  offsetof(struct flowview_tenant, dropped) },
	};
	size_t		 n, i, k;
	uint64_t	 retries, refused;

	v = flowview_tenants(w->shm, &n);
	for (k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
		prom_family(f, fam[k].name, fam[k].type, fam[k].help);
		for (i = 0; i < n; i++) {
			prom_tenant(f, fam[k].name, &v[i], NULL);
			fprintf(f, "%llu\n", (unsigned long long)*(const uint64_t *)
			    (const void *)((const char *)&v[i] + fam[k].off));
		}
	}
	prom_family(f, "routerd_tenant_queue_wait_seconds_total", "counter",
	    "Time the tenant's requests waited in the queue before a backend took them.");
	for (i = 0; i < n; i++) {
		prom_tenant(f, "routerd_tenant_queue_wait_seconds_total", &v[i], NULL);
		fprintf(f, "%.3f\n", (double)v[i].wait_ms / 1e3);
	}
	prom_family(f, "routerd_tenant_ratelimited_total", "counter",
	    "Requests of the tenant answered 429, by the limit they hit "
	    "(requests_per_second, tokens_per_minute).");
	for (i = 0; i < n; i++) {
		prom_tenant(f, "routerd_tenant_ratelimited_total", &v[i],
		    "limit=\"requests\"");
		fprintf(f, "%llu\n", (unsigned long long)v[i].limited_req);
		prom_tenant(f, "routerd_tenant_ratelimited_total", &v[i],
		    "limit=\"tokens\"");
		fprintf(f, "%llu\n", (unsigned long long)v[i].limited_tok);
	}
	free(v);

	flowview_budget(w->shm, &retries, &refused);
	prom_family(f, "routerd_retry_budget_retries_total", "counter",
	    "Retries the retry budget allowed, all workers.");
	fprintf(f, "routerd_retry_budget_retries_total %llu\n",
	    (unsigned long long)retries);
	prom_family(f, "routerd_retry_budget_refused_total", "counter",
	    "Retries the retry budget refused: the client got the failure.");
	fprintf(f, "routerd_retry_budget_refused_total %llu\n",
	    (unsigned long long)refused);
}

static const char *const prom_codes[6] = {
	"other", "1xx", "2xx", "3xx", "4xx", "5xx"
};

/*
 * The prober's view of each backend's own state (health.metrics,
 * health.models, the pair breakers).  The load figures appear only while
 * fresh (shm_metrics_fresh()); routerd_backend_metrics_fresh says which.
 */
static void
prom_backend_signals(struct worker *w, FILE *f, const struct admin_be *v,
    size_t n)
{
	struct shm_hdr		*h = w->shm;
	const struct conf	*cf = w->conf;
	uint64_t		 now = shm_now_ms();
	uint64_t		 iv = (uint64_t)cf->health.metrics_interval_ms;
	char			 lbl[SHM_NAME_MAX * 2 + 16], name[SHM_NAME_MAX];
	const char		*p;
	size_t			 i, k, o;

	if (cf->health.metrics) {
		prom_family(f, "routerd_backend_metrics_fresh", "gauge",
		    "1 while the backend's load figures from its /metrics are "
		    "fresh (read within three health.metrics_interval).");
		for (i = 0; i < n; i++) {
			prom_be(f, "routerd_backend_metrics_fresh", &v[i], NULL);
			fprintf(f, "%d\n", shm_metrics_fresh(shm_slot(h, v[i].slot),
			    now, iv));
		}
		prom_family(f, "routerd_backend_waiting", "gauge",
		    "Requests waiting at the backend (vllm:num_requests_waiting); "
		    "only while fresh.");
		for (i = 0; i < n; i++)
			if (shm_metrics_fresh(shm_slot(h, v[i].slot), now, iv)) {
				prom_be(f, "routerd_backend_waiting", &v[i], NULL);
				fprintf(f, "%u\n", atomic_load_explicit(
				    &shm_slot(h, v[i].slot)->m_waiting,
				    memory_order_relaxed));
			}
		prom_family(f, "routerd_backend_running", "gauge",
		    "Requests running at the backend (vllm:num_requests_running); "
		    "only while fresh.");
		for (i = 0; i < n; i++)
			if (shm_metrics_fresh(shm_slot(h, v[i].slot), now, iv)) {
				prom_be(f, "routerd_backend_running", &v[i], NULL);
				fprintf(f, "%u\n", atomic_load_explicit(
				    &shm_slot(h, v[i].slot)->m_running,
				    memory_order_relaxed));
			}
		prom_family(f, "routerd_backend_kv_cache_usage", "gauge",
		    "KV-cache use the backend reports, 0 to 1 "
		    "(vllm:kv_cache_usage_perc); only while fresh.");
		for (i = 0; i < n; i++)
			if (shm_metrics_fresh(shm_slot(h, v[i].slot), now, iv)) {
				prom_be(f, "routerd_backend_kv_cache_usage", &v[i], NULL);
				fprintf(f, "%.6f\n", atomic_load_explicit(
				    &shm_slot(h, v[i].slot)->m_kv_ppm,
				    memory_order_relaxed) / 1e6);
			}
		prom_family(f, "routerd_backend_metrics_reads_total", "counter",
		    "Good reads of the backend's /metrics.");
		for (i = 0; i < n; i++) {
			prom_be(f, "routerd_backend_metrics_reads_total", &v[i], NULL);
			fprintf(f, "%llu\n", (unsigned long long)atomic_load_explicit(
			    &shm_slot(h, v[i].slot)->m_reads, memory_order_relaxed));
		}
		prom_family(f, "routerd_backend_metrics_errors_total", "counter",
		    "Failed reads of the backend's /metrics (no answer, not 2xx, "
		    "too large, or without the figures).");
		for (i = 0; i < n; i++) {
			prom_be(f, "routerd_backend_metrics_errors_total", &v[i], NULL);
			fprintf(f, "%llu\n", (unsigned long long)atomic_load_explicit(
			    &shm_slot(h, v[i].slot)->m_errors, memory_order_relaxed));
		}
	}
	for (o = 0; o < 2; o++) {
		p = o == 0 ? "routerd_backend_model_listed" :
		    "routerd_backend_model_breaker_open";
		if (o == 0 && !cf->health.models)
			continue;
		prom_family(f, p, "gauge", o == 0 ?
		    "1 while the backend lists the model in its /v1/models "
		    "(health.models), 0 once it does not." :
		    "1 while the (backend, model) pair's breaker is open.");
		for (i = 0; i < n; i++) {
			uint32_t bits = atomic_load_explicit(o == 0 ?
			    &shm_slot(h, v[i].slot)->models_down :
			    &shm_slot(h, v[i].slot)->models_open,
			    memory_order_relaxed);

			for (k = 0; k < v[i].d.nmodels && k < SHM_SLOT_MODELS; k++) {
				char	*q = lbl;

				if (shm_model_name(h, v[i].d.models[k], name,
				    sizeof(name)) == -1)
					continue;
				/* the name escaped as a label value wants */
				q += snprintf(lbl, sizeof(lbl), "model=\"");
				for (const char *c = name; *c != '\0'; c++) {
					if (*c == '\\' || *c == '"' || *c == '\n')
						*q++ = '\\';
					*q++ = *c == '\n' ? 'n' : *c;
				}
				*q++ = '"';
				*q = '\0';
				prom_be(f, p, &v[i], lbl);
				fprintf(f, "%d\n", (int)(((bits >> k) & 1) ^ (o == 0)));
			}
		}
	}
}

char *
metrics_prom(struct worker *w, size_t *lenp)
{
	struct shm_hdr	*h = w->shm;
	struct admin_be	*v;
	FILE		*f;
	char		*out = NULL, lbl[64];
	size_t		 n, i, r, len = 0;
	unsigned	 k, st;
	uint64_t	 cum, retries = 0, fo_n = 0, fo_ok = 0, fo_us = 0;
	uint32_t	 running = 0, draining = 0, p;

	*lenp = 0;
	v = admin_snapshot(w, &n);
	if ((f = open_memstream(&out, &len)) == NULL) {
		free(v);
		return NULL;
	}

	prom_family(f, "routerd_backend_responses_total", "counter",
	    "Responses from the backend by status class (other: no class).");
	for (i = 0; i < n; i++)
		for (k = 0; k < 6; k++) {
			snprintf(lbl, sizeof(lbl), "code=\"%s\"", prom_codes[k]);
			prom_be(f, "routerd_backend_responses_total", &v[i], lbl);
			fprintf(f, "%llu\n", (unsigned long long)v[i].t.status[k]);
		}
	for (r = 0; r < sizeof(prom_rows) / sizeof(prom_rows[0]); r++) {
		prom_family(f, prom_rows[r].name, prom_rows[r].type,
		    prom_rows[r].help);
		for (i = 0; i < n; i++) {
			prom_be(f, prom_rows[r].name, &v[i], NULL);
			prom_value(f, &v[i], prom_rows[r].v);
		}
	}

	prom_family(f, "routerd_backend_health", "gauge",
	    "1 for the backend's health state from the prober, 0 for the others.");
	for (i = 0; i < n; i++)
		for (st = SHM_HEALTH_UNKNOWN; st <= SHM_HEALTH_DOWN; st++) {
			snprintf(lbl, sizeof(lbl), "state=\"%s\"",
			    st == SHM_HEALTH_UP ? "up" :
			    st == SHM_HEALTH_DOWN ? "down" : "unknown");
			prom_be(f, "routerd_backend_health", &v[i], lbl);
			fprintf(f, "%d\n", v[i].health == st);
		}
	prom_family(f, "routerd_backend_breaker_state", "gauge",
	    "1 for the circuit breaker's state, 0 for the others.");
	for (i = 0; i < n; i++)
		for (st = SHM_BREAKER_CLOSED; st <= SHM_BREAKER_HALF_OPEN; st++) {
			snprintf(lbl, sizeof(lbl), "state=\"%s\"",
			    admin_breaker_name(st));
			prom_be(f, "routerd_backend_breaker_state", &v[i], lbl);
			fprintf(f, "%d\n", v[i].breaker == st);
		}

	prom_family(f, "routerd_backend_response_seconds", "histogram",
	    "Time from the start of the request to the backend's response head.");
	for (i = 0; i < n; i++) {
		cum = 0;
		for (k = 0; k < SHM_LAT_BUCKETS; k++) {
			uint64_t le = shm_lat_bucket_le_us(k);

			cum += v[i].t.lat_hist[k];
			if (le == UINT64_MAX)
				snprintf(lbl, sizeof(lbl), "le=\"+Inf\"");
			else
				snprintf(lbl, sizeof(lbl), "le=\"%g\"",
				    (double)le / 1e6);
			prom_be(f, "routerd_backend_response_seconds_bucket",
			    &v[i], lbl);
			fprintf(f, "%llu\n", (unsigned long long)cum);
		}
		prom_be(f, "routerd_backend_response_seconds_sum", &v[i], NULL);
		fprintf(f, "%.6f\n", (double)v[i].t.lat_sum_us / 1e6);
		prom_be(f, "routerd_backend_response_seconds_count", &v[i], NULL);
		fprintf(f, "%llu\n", (unsigned long long)cum);
		retries += v[i].t.retries;
		fo_n += v[i].t.failovers;
		fo_ok += v[i].t.failover_ok;
		fo_us += v[i].t.failover_us;
	}

	prom_backend_signals(w, f, v, n);

	prom_family(f, "routerd_retries_total", "counter",
	    "Further attempts after a failed one, all backends.");
	fprintf(f, "routerd_retries_total %llu\n", (unsigned long long)retries);
	prom_family(f, "routerd_failovers_total", "counter",
	    "Requests moved to another backend after an attempt failed.");
	fprintf(f, "routerd_failovers_total %llu\n", (unsigned long long)fo_n);
	prom_family(f, "routerd_failovers_succeeded_total", "counter",
	    "Failovers that another backend answered.");
	fprintf(f, "routerd_failovers_succeeded_total %llu\n", (unsigned long long)fo_ok);
	prom_family(f, "routerd_failover_seconds_total", "counter",
	    "Time from the first failure to the answer, summed over successful failovers.");
	fprintf(f, "routerd_failover_seconds_total %.6f\n", (double)fo_us / 1e6);

	prom_family(f, "routerd_pool_backends", "gauge",
	    "Backends in the pool.");
	for (p = 0; p < w->view.npools; p++) {
		size_t cnt = 0;

		for (i = 0; i < n; i++)
			cnt += v[i].d.pool == w->view.pools[p].id;
		fputs("routerd_pool_backends{pool=\"", f);
		prom_esc(f, w->conf->pools[p].name);
		fprintf(f, "\"} %zu\n", cnt);
	}
	prom_family(f, "routerd_pool_strategy", "gauge",
	    "1 for the pool's current balancing strategy.");
	for (p = 0; p < w->view.npools; p++) {
		fputs("routerd_pool_strategy{pool=\"", f);
		prom_esc(f, w->conf->pools[p].name);
		fprintf(f, "\",strategy=\"%s\"} 1\n", conf_strategy_name(
		    (enum conf_strategy)shm_pool_strategy(h, w->view.pools[p].id)));
	}

	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++) {
		st = atomic_load_explicit(&h->workers[k].state,
		    memory_order_relaxed);
		running += st == 1;
		draining += st == 2;
	}
	prom_family(f, "routerd_workers", "gauge",
	    "Worker processes by state.");
	fprintf(f, "routerd_workers{state=\"running\"} %u\n", running);
	fprintf(f, "routerd_workers{state=\"draining\"} %u\n", draining);
	prom_family(f, "routerd_worker_client_connections", "gauge",
	    "Client connections open in the worker.");
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++)
		if (atomic_load_explicit(&h->workers[k].state,
		    memory_order_relaxed) != 0)
			fprintf(f, "routerd_worker_client_connections{worker=\"%u\","
			    "pid=\"%d\"} %llu\n", k,
			    (int)atomic_load_explicit(&h->workers[k].pid,
			    memory_order_relaxed),
			    (unsigned long long)atomic_load_explicit(
			    &h->workers[k].conns, memory_order_relaxed));
	prom_family(f, "routerd_worker_accepted_connections_total", "counter",
	    "Client connections the worker accepted.");
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++)
		if (atomic_load_explicit(&h->workers[k].state,
		    memory_order_relaxed) != 0)
			fprintf(f, "routerd_worker_accepted_connections_total{worker=\"%u\","
			    "pid=\"%d\"} %llu\n", k,
			    (int)atomic_load_explicit(&h->workers[k].pid,
			    memory_order_relaxed),
			    (unsigned long long)atomic_load_explicit(
			    &h->workers[k].accepted, memory_order_relaxed));
	prom_worker_u64(f, h, "routerd_worker_held_body_bytes", "gauge",
	    "Memory the worker spends on request bodies held before routing.",
	    offsetof(struct shm_worker, hold_bytes));
	prom_worker_u64(f, h, "routerd_worker_hold_refused_total", "counter",
	    "Request bodies that streamed, or were refused, because limits.hold_memory was spent.",
	    offsetof(struct shm_worker, hold_refused));
	prom_worker_u64(f, h, "routerd_worker_accept_paused_total", "counter",
	    "Times the worker stopped accepting at limits.connections.",
	    offsetof(struct shm_worker, accept_paused));
	prom_family(f, "routerd_worker_free_buffers", "gauge",
	    "Buffers kept on the worker's free lists (io: 32k, fwd: retries.buffer).");
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++)
		if (atomic_load_explicit(&h->workers[k].state,
		    memory_order_relaxed) != 0) {
			fprintf(f, "routerd_worker_free_buffers{worker=\"%u\","
			    "list=\"io\"} %u\n", k, atomic_load_explicit(
			    &h->workers[k].free_bufs, memory_order_relaxed));
			fprintf(f, "routerd_worker_free_buffers{worker=\"%u\","
			    "list=\"fwd\"} %u\n", k, atomic_load_explicit(
			    &h->workers[k].free_fwd, memory_order_relaxed));
		}
	prom_pool_queues(w, f);
	prom_flow_pools(w, f);
	prom_flow_tenants(w, f);
	metrics_llm(w, f, v, n);
	prom_family(f, "routerd_worker_queued_requests", "gauge",
	    "Requests waiting in the worker's FIFO for a backend slot.");
	for (k = 0; k < h->max_workers && k < SHM_WORKERS_MAX; k++)
		if (atomic_load_explicit(&h->workers[k].state,
		    memory_order_relaxed) != 0)
			fprintf(f, "routerd_worker_queued_requests{worker=\"%u\","
			    "pid=\"%d\"} %u\n", k,
			    (int)atomic_load_explicit(&h->workers[k].pid,
			    memory_order_relaxed),
			    atomic_load_explicit(&h->workers[k].queued,
			    memory_order_relaxed));
	prom_family(f, "routerd_backends", "gauge",
	    "Backends in the shared table.");
	fprintf(f, "routerd_backends %zu\n", n);
	{
		const struct shm_registry *rg = &h->registry;
		size_t	 ri, nreg = 0;
		uint64_t last;

		for (ri = 0; ri < n; ri++)
			if (v[ri].d.flags & SHM_F_REGISTRY)
				nreg++;
		prom_family(f, "routerd_backends_by_source", "gauge",
		    "Backends in the shared table by where they came from: the "
		    "config file (static) or the registry.");
		fprintf(f, "routerd_backends_by_source{source=\"static\"} %zu\n"
		    "routerd_backends_by_source{source=\"registry\"} %zu\n",
		    n - nreg, nreg);
		prom_family(f, "routerd_registry_syncs_total", "counter",
		    "Registry pulls since the master started, by result "
		    "(failed: the last good set was kept).");
		fprintf(f, "routerd_registry_syncs_total{result=\"ok\"} %llu\n"
		    "routerd_registry_syncs_total{result=\"failed\"} %llu\n",
		    (unsigned long long)atomic_load_explicit(&rg->syncs_ok,
		    memory_order_relaxed),
		    (unsigned long long)atomic_load_explicit(&rg->syncs_failed,
		    memory_order_relaxed));
		last = atomic_load_explicit(&rg->last_ok_ms, memory_order_relaxed);
		prom_family(f, "routerd_registry_last_success_timestamp_seconds",
		    "gauge", "When the last registry pull worked, seconds since "
		    "the epoch; 0: never.");
		fprintf(f, "routerd_registry_last_success_timestamp_seconds %.3f\n",
		    (double)last / 1e3);
		prom_family(f, "routerd_registry_failing", "gauge",
		    "1 while the last registry pull failed.");
		fprintf(f, "routerd_registry_failing %u\n",
		    atomic_load_explicit(&rg->failing, memory_order_relaxed));
	}
	prom_family(f, "routerd_table_generation", "gauge",
	    "Generation of the shared table (bumped by every membership change).");
	fprintf(f, "routerd_table_generation %llu\n",
	    (unsigned long long)shm_gen(h));
	prom_family(f, "routerd_start_time_seconds", "gauge",
	    "When the shared table was created, seconds since the epoch.");
	fprintf(f, "routerd_start_time_seconds %.3f\n", (double)h->created_ms / 1e3);

	free(v);
	if (fclose(f) != 0 || out == NULL) {
		free(out);
		return NULL;
	}
	*lenp = len;
	return out;
}

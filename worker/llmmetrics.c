/*
 * The LLM part of GET /metrics: per (backend, model) pair the time to
 * first token, the gap between tokens and the tokens per request as
 * histograms, token totals and tokens in flight; per pool how the llm
 * strategy, X-Router-Strategy and shadow_strategy decided.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>

#include "worker/admin.h"
#include "worker/worker.h"

/* One pair with traffic: whose it is, its model's label and its sums. */
struct llm_row {
	const struct admin_be	*b;
	char			 model[SHM_NAME_MAX];
	struct shm_pairsum	 s;
};

static void
llm_esc(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void
llm_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{backend="..",pool="..",model=".."[,extra]} and a blank */
static void
llm_labels(FILE *f, const char *name, const struct llm_row *r, const char *extra)
{
	fprintf(f, "%s{backend=\"", name);
	llm_esc(f, r->b->d.name);
	fputs("\",pool=\"", f);
	llm_esc(f, r->b->pool);
	fputs("\",model=\"", f);
	llm_esc(f, r->model);
	fputc('"', f);
	if (extra != NULL)
		fprintf(f, ",%s", extra);
	fputs("} ", f);
}

/*
 * The pairs that saw a request or hold one now (the others would only
 * fill the page with zeros), in slot then pair order.  *np gets their
 * number; NULL when there are none or no memory.
 */
static struct llm_row *
llm_rows(struct worker *w, const struct admin_be *v, size_t n, size_t *np)
{
	struct llm_row	*rows = NULL, *t;
	size_t		 i, cap = 0, nr = 0;
	uint32_t	 k, pair, nm;

	*np = 0;
	for (i = 0; i < n; i++) {
		nm = v[i].d.nmodels < SHM_SLOT_MODELS ? v[i].d.nmodels : SHM_SLOT_MODELS;
		/* the slot's models, then the pair of every other model */
		for (k = 0; k <= nm; k++) {
			struct shm_pairsum s;

			pair = k < nm ? k : SHM_SLOT_MODELS;
			shm_pair_sum(w->shm, v[i].slot, pair, &s);
			if (s.requests == 0 && s.reqs == 0)
				continue;
			if (nr == cap) {
				cap = cap ? cap * 2 : 16;
				if ((t = reallocarray(rows, cap, sizeof(*rows))) == NULL) {
					free(rows);
					return NULL;
				}
				rows = t;
			}
			rows[nr].b = &v[i];
			rows[nr].s = s;
			if (pair == SHM_SLOT_MODELS || shm_model_name(w->shm,
			    v[i].d.models[pair], rows[nr].model,
			    sizeof(rows[nr].model)) == -1)
				strlcpy(rows[nr].model, "other", sizeof(rows[nr].model));
			nr++;
		}
	}
	*np = nr;
	return rows;
}

/* A latency histogram (shm_lat_bucket()'s bounds, in seconds) of every row. */
static void
llm_lat_hist(FILE *f, const char *name, const char *help, const struct llm_row *rows,
    size_t nr, int itl)
{
	char		 lbl[64], m[96];
	size_t		 i;
	unsigned	 k;
	uint64_t	 cum, le;

	llm_family(f, name, "histogram", help);
	for (i = 0; i < nr; i++) {
		const uint64_t *hist = itl ? rows[i].s.itl_hist : rows[i].s.ttft_hist;

		cum = 0;
		for (k = 0; k < SHM_LAT_BUCKETS; k++) {
			cum += hist[k];
			le = shm_lat_bucket_le_us(k);
			if (le == UINT64_MAX)
				snprintf(lbl, sizeof(lbl), "le=\"+Inf\"");
			else
				snprintf(lbl, sizeof(lbl), "le=\"%g\"", (double)le / 1e6);
			snprintf(m, sizeof(m), "%s_bucket", name);
			llm_labels(f, m, &rows[i], lbl);
			fprintf(f, "%llu\n", (unsigned long long)cum);
		}
		snprintf(m, sizeof(m), "%s_sum", name);
		llm_labels(f, m, &rows[i], NULL);
		fprintf(f, "%.6f\n", (double)(itl ? rows[i].s.itl_sum_us :
		    rows[i].s.ttft_sum_us) / 1e6);
		snprintf(m, sizeof(m), "%s_count", name);
		llm_labels(f, m, &rows[i], NULL);
		fprintf(f, "%llu\n", (unsigned long long)cum);
	}
}

/*
 * A token histogram (powers of two) of every row; its sum is the pair's
 * token total, which takes the same figure as the histogram for each
 * request.
 */
static void
llm_tok_hist(FILE *f, const char *name, const char *help, const struct llm_row *rows,
    size_t nr, int output)
{
	char		 lbl[64], m[96];
	size_t		 i;
	unsigned	 k;
	uint64_t	 cum, le;

	llm_family(f, name, "histogram", help);
	for (i = 0; i < nr; i++) {
		const uint64_t *hist = output ? rows[i].s.otok_hist : rows[i].s.ptok_hist;

		cum = 0;
		for (k = 0; k < SHM_TOK_BUCKETS; k++) {
			cum += hist[k];
			le = shm_tok_bucket_le(k);
			if (le == UINT64_MAX)
				snprintf(lbl, sizeof(lbl), "le=\"+Inf\"");
			else
				snprintf(lbl, sizeof(lbl), "le=\"%llu\"",
				    (unsigned long long)le);
			snprintf(m, sizeof(m), "%s_bucket", name);
			llm_labels(f, m, &rows[i], lbl);
			fprintf(f, "%llu\n", (unsigned long long)cum);
		}
		snprintf(m, sizeof(m), "%s_sum", name);
		llm_labels(f, m, &rows[i], NULL);
		fprintf(f, "%llu\n", (unsigned long long)(output ?
		    rows[i].s.output_tokens : rows[i].s.prompt_tokens));
		snprintf(m, sizeof(m), "%s_count", name);
		llm_labels(f, m, &rows[i], NULL);
		fprintf(f, "%llu\n", (unsigned long long)cum);
	}
}

/* The pools' decision counters, summed over every worker's row of the table. */
static void
llm_pools(struct worker *w, FILE *f)
{
	static const struct {
		const char	*name, *help, *label, *value;
		size_t		 off;
	} fam[] = {
		{ "routerd_pool_shadow_decisions_total",
		  "Picks of the pool's shadow_strategy beside the real pick, by "
		  "whether they agreed.", "result", "agree",
		  offsetof(struct shm_poolq, shadow_agree) },
		{ NULL, NULL, "result", "differ", offsetof(struct shm_poolq, shadow_differ) },
		{ "routerd_pool_strategy_overrides_total",
		  "Requests that named a strategy in X-Router-Strategy: used "
		  "(in allow_strategies) or ignored.", "result", "used",
		  offsetof(struct shm_poolq, override_used) },
		{ NULL, NULL, "result", "ignored", offsetof(struct shm_poolq, override_ignored) },
		{ "routerd_pool_llm_picks_total",
		  "llm strategy picks by how they were placed: affinity (the "
		  "warmest backend), yield (it was saturated, token load decided), "
		  "cold (no backend warm, placed by hashing).", "reason", "affinity",
		  offsetof(struct shm_poolq, affinity) },
		{ NULL, NULL, "reason", "yield", offsetof(struct shm_poolq, affinity_yield) },
		{ NULL, NULL, "reason", "cold", offsetof(struct shm_poolq, cold) },
	};
	struct shm_hdr	*h = w->shm;
	const size_t	 nfam = sizeof(fam) / sizeof(fam[0]);
	size_t		 k, j, end, p;
	uint32_t	 x;

	for (k = 0; k < nfam; k = end) {
		/* a family: its first row names it, the rows after it with no name are its other values */
		for (end = k + 1; end < nfam && fam[end].name == NULL; end++)
			;
		llm_family(f, fam[k].name, "counter", fam[k].help);
		for (p = 0; p < w->view.npools; p++) {
			uint32_t id = w->view.pools[p].id;

			for (j = k; j < end; j++) {
				uint64_t v = 0;

				for (x = 0; x < h->max_workers && x < SHM_WORKERS_MAX &&
				    id < SHM_POOLS_MAX; x++)
					v += atomic_load_explicit((const _Atomic uint64_t *)
					    (const void *)((const char *)&h->poolq[x][id] +
					    fam[j].off), memory_order_relaxed);
				fprintf(f, "%s{pool=\"", fam[k].name);
				llm_esc(f, w->conf->pools[p].name);
				fprintf(f, "\",%s=\"%s\"} %llu\n", fam[j].label,
				    fam[j].value, (unsigned long long)v);
			}
		}
	}
}

void
metrics_llm(struct worker *w, FILE *f, const struct admin_be *v, size_t n)
{
	static const struct {
		const char	*name, *help;
		size_t		 off;
	} tot[] = {
		{ "routerd_backend_llm_requests_total",
		  "LLM requests sent to the backend for the model (attempts).",
		  offsetof(struct shm_pairsum, requests) },
		{ "routerd_backend_prompt_tokens_total",
		  "Prompt tokens sent: the backend's usage, else routerd's estimate.",
		  offsetof(struct shm_pairsum, prompt_tokens) },
		{ "routerd_backend_output_tokens_total",
		  "Output tokens received: the backend's usage, else counted.",
		  offsetof(struct shm_pairsum, output_tokens) },
		{ "routerd_backend_cached_tokens_total",
		  "Prompt tokens the backend said it had cached (usage).",
		  offsetof(struct shm_pairsum, cached_tokens) },
	};
	static const char *const kinds[3] = { "prompt", "uncached", "output" };
	struct llm_row	*rows;
	size_t		 nr, i, k;
	char		 lbl[32];

	rows = llm_rows(w, v, n, &nr);
	llm_lat_hist(f, "routerd_backend_ttft_seconds",
	    "Time from sending the request to the backend's first token (first "
	    "body byte).", rows, nr, 0);
	llm_lat_hist(f, "routerd_backend_itl_seconds",
	    "Gaps between the tokens (events) of a streamed answer.", rows, nr, 1);
	llm_tok_hist(f, "routerd_backend_prompt_tokens",
	    "Prompt tokens per request.", rows, nr, 0);
	llm_tok_hist(f, "routerd_backend_output_tokens",
	    "Output tokens per request.", rows, nr, 1);
	for (k = 0; k < sizeof(tot) / sizeof(tot[0]); k++) {
		llm_family(f, tot[k].name, "counter", tot[k].help);
		for (i = 0; i < nr; i++) {
			llm_labels(f, tot[k].name, &rows[i], NULL);
			fprintf(f, "%llu\n", (unsigned long long)*(const uint64_t *)
			    (const void *)((const char *)&rows[i].s + tot[k].off));
		}
	}
	llm_family(f, "routerd_backend_tokens_inflight", "gauge",
	    "Tokens of the requests now at the backend for the model: prompt, "
	    "prompt not expected in its cache (uncached), output still expected.");
	for (i = 0; i < nr; i++)
		for (k = 0; k < 3; k++) {
			snprintf(lbl, sizeof(lbl), "kind=\"%s\"", kinds[k]);
			llm_labels(f, "routerd_backend_tokens_inflight", &rows[i], lbl);
			fprintf(f, "%lld\n", (long long)(k == 0 ? rows[i].s.prompt :
			    k == 1 ? rows[i].s.uncached : rows[i].s.output));
		}
	free(rows);
	llm_pools(w, f);
}

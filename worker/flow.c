/*
 * Flow control (DESIGN "Flow control"): tenants, bands and deadlines of
 * requests; the host-wide rate limits (GCRA over one word per limit in
 * the table, so every worker spends the same budget); the retry budget
 * (every worker's requests and retries per second, summed when a retry
 * is asked for); and the order keys of the admission queue (start-time
 * fair queueing per tenant, weighted by tokens, inside strict bands).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker/flow.h"
#include "worker/h1.h"
#include "worker/jscan.h"
#include "worker/worker.h"

#define FLOW_SEED	0x74656e616e74ULL	/* "tenant" */
#define FLOW_ADDR_SEED	0x61646472ULL		/* "addr": an address is never a header's value */
#define FLOW_PROBES	32			/* tenant entries looked at before giving up */
#define FLOW_TAG_MASK	((1ULL << 56) - 1)
#define NS_SEC		1000000000LL
#define NS_MIN		(60 * NS_SEC)

#define LD(p)		atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v)	atomic_store_explicit((p), (v), memory_order_relaxed)
#define ADD(p, v)	atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

static void
flow_lower(char *dst, size_t len, const char *src)
{
	size_t	i;

	for (i = 0; i + 1 < len && src[i] != '\0'; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

void
flow_init(struct worker *w)
{
	struct flow_conf	*f = &w->flow;
	const struct conf	*cf = w->conf;
	size_t			 i;

	memset(f, 0, sizeof(*f));
	if (strncasecmp(cf->queue.tenant, "header:", 7) == 0) {
		flow_lower(f->header, sizeof(f->header), cf->queue.tenant + 7);
		f->bearer = strcmp(f->header, "authorization") == 0;
		f->redact = f->bearer || strstr(f->header, "key") != NULL ||
		    strstr(f->header, "token") != NULL || strstr(f->header, "auth") != NULL;
	}
	flow_lower(f->prio, sizeof(f->prio), cf->queue.priority_header);
	f->any_rule = -1;
	for (i = 0; i < cf->nratelimits && i < CONF_RATELIMITS_MAX; i++) {
		const struct conf_ratelimit *r = &cf->ratelimits[i];

		if (strcmp(r->tenant, "*") == 0)
			f->any_rule = (int)i;
		f->rule_hash[i] = jscan_hash(r->tenant, strlen(r->tenant), FLOW_SEED) | 1;
		if (r->rps > 0 || r->tpm > 0)
			f->limits = 1;
	}
}

/* What routerctl and /metrics show of a tenant: secrets cut to their ends. */
static void
flow_label(struct client *c, const char *s, size_t n, int redact)
{
	char	*l = c->x.tlabel;
	size_t	 i, o = 0;

	if (redact) {
		if (n >= 12)
			snprintf(l, SHM_TENANT_LABEL, "%.4s...%.4s", s, s + n - 4);
		else
			snprintf(l, SHM_TENANT_LABEL, "...%.2s", n >= 2 ? s + n - 2 : "");
		/* the ends kept are shown as text (JSON wants UTF-8): bytes outside ASCII are not */
		for (; l[o] != '\0'; o++)
			if ((unsigned char)l[o] <= ' ' || (unsigned char)l[o] >= 127)
				l[o] = '?';
		return;
	}
	for (i = 0; i < n && o + 1 < SHM_TENANT_LABEL; i++)
		l[o++] = s[i] > ' ' && s[i] < 127 && s[i] != '"' && s[i] != '\\' ?
		    s[i] : '?';
	l[o] = '\0';
}

/* X-Request-Deadline: Unix time in seconds ("1733400000.25"), or from now ("250ms", "2s"). */
static int
flow_deadline(struct client *c, const char *s, size_t n)
{
	char	 buf[40], *end;
	double	 v;
	int64_t	 at_ms;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (!isdigit((unsigned char)buf[0]))
		return -1;
	v = strtod(buf, &end);
	if (end == buf || v < 0 || v > 1e13)
		return -1;
	if (strcmp(end, "ms") == 0)
		at_ms = (int64_t)c->w->loop.now + (int64_t)v;
	else if (strcmp(end, "s") == 0)
		at_ms = (int64_t)c->w->loop.now + (int64_t)(v * 1000);
	else if (*end == '\0')
		at_ms = (int64_t)c->w->loop.now +
		    ((int64_t)(v * 1000) - (int64_t)shm_now_ms());
	else
		return -1;
	c->x.deadline = at_ms > 1 ? (uint64_t)at_ms : 1;
	return 0;
}

int
flow_head(struct client *c, const char *base)
{
	const struct flow_conf	*f = &c->w->flow;
	const struct conf	*cf = c->w->conf;
	struct span		 v;
	const char		*s = NULL;
	size_t			 n = 0, i;
	int			 prio = 0, st;

	c->x.tenant = 0;
	c->x.rule = 0;
	c->x.deadline = 0;
	c->x.tok_charged = 0;
	c->x.rl_set = 0;
	if (f->header[0] != '\0' && (st = h1_find(base, &c->h, f->header, &v)) != 0 &&
	    v.len > 0) {
		if (st != 1)
			return 400;	/* two of them: which tenant is it? */
		s = base + v.off;
		n = v.len;
		if (f->bearer && n > 7 && strncasecmp(s, "Bearer ", 7) == 0) {
			s += 7;
			n -= 7;
			while (n > 0 && *s == ' ')
				s++, n--;
		}
	}
	if (n > 0) {
		c->x.tenant_key = jscan_hash(s, n, FLOW_SEED) | 1;
		flow_label(c, s, n, f->redact);
		for (i = 0; i < cf->nratelimits; i++)
			if (f->rule_hash[i] == c->x.tenant_key &&
			    strlen(cf->ratelimits[i].tenant) == n &&
			    memcmp(cf->ratelimits[i].tenant, s, n) == 0) {
				c->x.rule = (int16_t)(i + 1);
				break;
			}
	} else {
		n = strlen(c->ip);
		c->x.tenant_key = jscan_hash(c->ip, n, FLOW_ADDR_SEED) | 1;
		flow_label(c, c->ip, n, 0);
		for (i = 0; i < cf->nratelimits; i++)
			if (strcmp(cf->ratelimits[i].tenant, c->ip) == 0) {
				c->x.rule = (int16_t)(i + 1);
				break;
			}
	}
	if (c->x.rule == 0 && f->any_rule >= 0)
		c->x.rule = (int16_t)(f->any_rule + 1);
	if (c->x.rule > 0)
		prio = cf->ratelimits[c->x.rule - 1].priority;
	if (f->prio[0] != '\0' && (st = h1_find(base, &c->h, f->prio, &v)) != 0) {
		char	 buf[16], *end;
		long	 p;

		if (st != 1 || v.len == 0 || v.len >= sizeof(buf))
			return 400;
		memcpy(buf, base + v.off, v.len);
		buf[v.len] = '\0';
		p = strtol(buf, &end, 10);
		if (*end != '\0' || end == buf)
			return 400;
		/* a client may lower its band, never raise it past its tenant's */
		if (p < prio)
			prio = p < CONF_PRIO_MIN ? CONF_PRIO_MIN : (int)p;
	}
	c->x.band = (uint8_t)(prio - CONF_PRIO_MIN);
	if ((st = h1_find(base, &c->h, "x-request-deadline", &v)) != 0 &&
	    (st != 1 || flow_deadline(c, base + v.off, v.len) == -1))
		return 400;
	return 0;
}

/* The request's tenant entry in the table, taken if it has none yet; NULL when the table is full. */
static struct shm_tenant *
flow_tenant(struct client *c)
{
	struct shm_tenant	*t;
	uint64_t		 k, want = c->x.tenant_key;
	uint32_t		 h, i;

	if (c->x.tenant > 0)
		return &c->w->shm->tenants[c->x.tenant - 1];
	if (c->x.tenant < 0 || want == 0)
		return NULL;
	h = (uint32_t)(want >> 20);
	for (i = 0; i < FLOW_PROBES; i++) {
		uint32_t	idx = (h + i) & (SHM_TENANTS - 1);

		t = &c->w->shm->tenants[idx];
		k = atomic_load_explicit(&t->key, memory_order_acquire);
		if (k == 0) {
			uint64_t	zero = 0;

			if (atomic_compare_exchange_strong_explicit(&t->key, &zero,
			    want, memory_order_acq_rel, memory_order_acquire)) {
				memcpy(t->label, c->x.tlabel, sizeof(t->label));
				ST(&t->rule, c->x.rule);
				k = want;
			} else
				k = zero;
		}
		if (k == want) {
			c->x.tenant = (int32_t)idx + 1;
			return t;
		}
	}
	c->x.tenant = -1;
	return NULL;
}

/* Go-style durations, as OpenAI writes its x-ratelimit-reset-*: "20ms", "1.5s", "6m0s". */
static void
flow_dur(char *b, size_t len, int64_t ns)
{
	if (ns < 0)
		ns = 0;
	if (ns < NS_SEC)
		snprintf(b, len, "%lldms", (long long)((ns + 999999) / 1000000));
	else if (ns < NS_MIN)
		snprintf(b, len, "%.3gs", (double)ns / NS_SEC);
	else
		snprintf(b, len, "%lldm%.3gs", (long long)(ns / NS_MIN),
		    (double)(ns % NS_MIN) / NS_SEC);
}

/*
 * The x-ratelimit-* lines of rule r, for what is left (left[0] requests,
 * left[1] tokens) and how long until full again (reset[], ns), into buf.
 * -1 when they do not fit.
 */
static int
flow_rl_lines(char *buf, size_t len, const struct conf_ratelimit *r,
    const int64_t left[2], const int64_t reset[2])
{
	char	 d[32];
	size_t	 o = 0;
	int	 n;

	buf[0] = '\0';
	if (r->rps > 0) {
		flow_dur(d, sizeof(d), reset[0]);
		n = snprintf(buf, len, "x-ratelimit-limit-requests: %d\r\n"
		    "x-ratelimit-remaining-requests: %lld\r\n"
		    "x-ratelimit-reset-requests: %s\r\n",
		    r->burst > 0 ? r->burst : r->rps, (long long)left[0], d);
		if (n < 0 || (size_t)n >= len)
			return -1;
		o = (size_t)n;
	}
	if (r->tpm > 0) {
		flow_dur(d, sizeof(d), reset[1]);
		n = snprintf(buf + o, len - o, "x-ratelimit-limit-tokens: %lld\r\n"
		    "x-ratelimit-remaining-tokens: %lld\r\n"
		    "x-ratelimit-reset-tokens: %s\r\n",
		    (long long)r->tpm, (long long)left[1], d);
		if (n < 0 || (size_t)n >= len - o)
			return -1;
	}
	return 0;
}

struct flow_state {
	int64_t	 rq_left, rq_reset;	/* requests left now, ns until full */
	int64_t	 tk_left, tk_reset;
	int64_t	 wait;			/* ns until the refused request would fit */
};

static void
flow_reply_429(struct client *c, const struct conf_ratelimit *r,
    const struct flow_state *fs, int tokens, int too_large, int64_t cost)
{
	char			 hdr[640], msg[256];
	int64_t			 wait_ms = (fs->wait + 999999) / 1000000;
	int64_t			 left[2] = { fs->rq_left, fs->tk_left };
	int64_t			 reset[2] = { fs->rq_reset, fs->tk_reset };
	size_t			 o;
	struct reply_extra	 x = { tokens ? "tokens" : "requests",
				    "rate_limit_exceeded", hdr };

	if (wait_ms < 1)
		wait_ms = 1;
	o = (size_t)snprintf(hdr, sizeof(hdr), "Retry-After: %lld\r\n"
	    "retry-after-ms: %lld\r\n", too_large ? 60LL : (long long)((wait_ms + 999) / 1000),
	    too_large ? 60000LL : (long long)wait_ms);
	if (o >= sizeof(hdr) || flow_rl_lines(hdr + o, sizeof(hdr) - o, r, left, reset) == -1)
		x.headers = NULL;
	if (too_large)
		snprintf(msg, sizeof(msg), "Request too large for tenant %s: "
		    "limit %lld tokens per minute, requested %lld",
		    c->x.tlabel, (long long)r->tpm, (long long)cost);
	else if (tokens)
		snprintf(msg, sizeof(msg), "Rate limit reached for tenant %s on "
		    "tokens per minute: limit %lld, remaining %lld, requested %lld. "
		    "Please try again in %lldms.", c->x.tlabel, (long long)r->tpm,
		    (long long)fs->tk_left, (long long)cost, (long long)wait_ms);
	else
		snprintf(msg, sizeof(msg), "Rate limit reached for tenant %s on "
		    "requests per second: limit %d. Please try again in %lldms.",
		    c->x.tlabel, r->rps, (long long)wait_ms);
	shm_ctr_add(&exchange_poolq(c)->limited, 1);
	client_reply_x(c, 429, msg, &x);
}

/*
 * The tenant's two buckets, as GCRA keeps them: tat is the time the
 * bucket would be full again (the theoretical arrival time); a request
 * fits while tat, after it, is at most the bucket's depth ahead of now.
 */
static int
flow_limits(struct client *c, struct shm_tenant *t, const struct conf_ratelimit *r)
{
	struct flow_state	 fs = { 0, 0, 0, 0, 0 };
	int64_t			 now = (int64_t)shm_mono_ns(), tat, base, T = 0, tau = 0;
	int64_t			 cost = 0, cns = 0;
	double			 tk = 0;
	int			 burst, took_rq = 0;

	if (r->rps > 0) {
		burst = r->burst > 0 ? r->burst : r->rps;
		T = NS_SEC / r->rps;
		tau = (int64_t)burst * T;
		tat = LD(&t->rq_tat);
		for (;;) {
			base = tat > now ? tat : now;
			if (base + T - now > tau) {
				fs.wait = base + T - now - tau;
				fs.rq_left = 0;
				fs.rq_reset = base - now;
				break;
			}
			if (atomic_compare_exchange_weak_explicit(&t->rq_tat, &tat,
			    base + T, memory_order_relaxed, memory_order_relaxed)) {
				took_rq = 1;
				fs.rq_left = (now + tau - (base + T)) / T;
				fs.rq_reset = base + T - now;
				break;
			}
		}
	}
	if (r->tpm > 0) {
		cost = (int64_t)c->x.breq.prompt_tokens + c->x.breq.output_tokens;
		tk = (double)NS_MIN / (double)r->tpm;	/* ns per token */
		cns = (int64_t)(cost * tk);
		tat = LD(&t->tk_tat);
		for (;;) {
			base = tat > now ? tat : now;
			fs.tk_left = (int64_t)((now + NS_MIN - base) / tk);
			fs.tk_reset = base - now;
			if (!took_rq && r->rps > 0)
				break;		/* refused already: only the figures */
			if (cost > r->tpm) {
				fs.wait = NS_MIN;
				break;
			}
			if (base + cns - now > NS_MIN) {
				fs.wait = base + cns - now - NS_MIN;
				break;
			}
			if (atomic_compare_exchange_weak_explicit(&t->tk_tat, &tat,
			    base + cns, memory_order_relaxed, memory_order_relaxed)) {
				c->x.tok_charged = cost;
				ADD(&t->tokens, (uint64_t)cost);
				goto ok;
			}
		}
		if (took_rq)
			atomic_fetch_sub_explicit(&t->rq_tat, T, memory_order_relaxed);
		if (took_rq || r->rps == 0) {
			ADD(&t->limited_tok, 1);
			flow_reply_429(c, r, &fs, 1, cost > r->tpm, cost);
		} else {
			ADD(&t->limited_req, 1);
			flow_reply_429(c, r, &fs, 0, 0, cost);
		}
		return -1;
	}
	if (r->rps > 0 && !took_rq) {
		ADD(&t->limited_req, 1);
		flow_reply_429(c, r, &fs, 0, 0, 0);
		return -1;
	}
ok:
	c->x.rl_left[0] = fs.rq_left;
	c->x.rl_reset[0] = fs.rq_reset;
	if (r->tpm > 0) {
		/* what this request took is out of the bucket now */
		c->x.rl_left[1] = fs.tk_left > cost ? fs.tk_left - cost : 0;
		c->x.rl_reset[1] = fs.tk_reset + cns;
	}
	c->x.rl_set = 1;
	return 0;
}

const char *
flow_headers(const struct client *c, char *buf, size_t len)
{
	if (!c->x.rl_set || c->x.rule <= 0)
		return NULL;
	if (flow_rl_lines(buf, len, &c->w->conf->ratelimits[c->x.rule - 1],
	    c->x.rl_left, c->x.rl_reset) == -1)
		return NULL;
	return buf;
}

/* This worker's bucket of the retry budget's window for second sec. */
static uint32_t
flow_bud_slot(struct worker *w, uint64_t sec)
{
	struct shm_worker	*me = &w->shm->workers[w->index];
	uint32_t		 i = (uint32_t)(sec % SHM_BUDGET_SECS);

	if (LD(&me->bud_sec[i]) != sec) {
		ST(&me->bud_req[i], 0);
		ST(&me->bud_retry[i], 0);
		atomic_store_explicit(&me->bud_sec[i], sec, memory_order_release);
	}
	return i;
}

int
flow_admit(struct client *c)
{
	struct worker		*w = c->w;
	struct shm_worker	*me = &w->shm->workers[w->index];
	const struct conf_ratelimit *r;
	struct shm_tenant	*t;
	uint32_t		 i;

	if (w->conf->retries.budget_percent > 0) {
		i = flow_bud_slot(w, w->loop.now / 1000);
		ST(&me->bud_req[i], LD(&me->bud_req[i]) + 1);
	}
	if (c->x.deadline != 0 && w->loop.now >= c->x.deadline) {
		shm_ctr_add(&exchange_poolq(c)->expired, 1);
		client_reply(c, 503, "the request's deadline (X-Request-Deadline) "
		    "passed before a backend could take it");
		return -1;
	}
	if (!w->flow.limits || c->x.rule <= 0)
		return 0;
	r = &w->conf->ratelimits[c->x.rule - 1];
	if (r->rps == 0 && r->tpm == 0)
		return 0;
	if ((t = flow_tenant(c)) == NULL)
		return 0;	/* no room to keep it: not limited, never refused for that */
	ST(&t->last_ms, shm_now_ms());
	if (flow_limits(c, t, r) == -1)
		return -1;
	ADD(&t->requests, 1);
	return 0;
}

void
flow_usage(struct client *c, int64_t tokens)
{
	const struct conf_ratelimit *r;
	struct shm_tenant	*t;
	int64_t			 d, dn;

	if (!c->x.rl_set || c->x.tenant <= 0 || c->x.rule <= 0 || tokens < 0)
		return;
	r = &c->w->conf->ratelimits[c->x.rule - 1];
	t = &c->w->shm->tenants[c->x.tenant - 1];
	d = tokens - c->x.tok_charged;
	c->x.tok_charged = tokens;
	if (d == 0 || r->tpm <= 0)
		return;
	dn = (int64_t)(d * ((double)NS_MIN / (double)r->tpm));
	if (d < 0)
		atomic_fetch_add_explicit(&t->tk_tat, dn, memory_order_relaxed);
	else {
		/* a debt counts from now: a bucket that filled up meanwhile is not a refund */
		int64_t now = (int64_t)shm_mono_ns(), tat = LD(&t->tk_tat);

		while (!atomic_compare_exchange_weak_explicit(&t->tk_tat, &tat,
		    (tat > now ? tat : now) + dn, memory_order_relaxed,
		    memory_order_relaxed))
			continue;
	}
	ADD(&t->tokens, (uint64_t)d);
}

int
flow_retry_take(struct client *c)
{
	struct worker		*w = c->w;
	const struct conf	*cf = w->conf;
	struct shm_worker	*me = &w->shm->workers[w->index];
	uint64_t		 sec = w->loop.now / 1000, req = 0, ret = 0, allowed;
	uint32_t		 j, k, i;

	if (cf->retries.budget_percent <= 0)
		return 1;
	i = flow_bud_slot(w, sec);
	for (j = 0; j < w->shm->max_workers; j++) {
		struct shm_worker *o = &w->shm->workers[j];

		for (k = 0; k < SHM_BUDGET_SECS; k++) {
			uint64_t s = atomic_load_explicit(&o->bud_sec[k], memory_order_acquire);

			if (s > sec || s + SHM_BUDGET_SECS <= sec)
				continue;
			req += LD(&o->bud_req[k]);
			ret += LD(&o->bud_retry[k]);
		}
	}
	allowed = req * (uint64_t)cf->retries.budget_percent / 100;
	if (allowed < (uint64_t)cf->retries.budget_min * SHM_BUDGET_SECS)
		allowed = (uint64_t)cf->retries.budget_min * SHM_BUDGET_SECS;
	if (ret >= allowed) {
		ST(&me->bud_refused, LD(&me->bud_refused) + 1);
		return 0;
	}
	ST(&me->bud_retry[i], LD(&me->bud_retry[i]) + 1);
	ST(&me->bud_retries, LD(&me->bud_retries) + 1);
	return 1;
}

uint64_t
flow_enqueue(struct client *c)
{
	struct shm_qpool	*qp = &c->w->shm->qpool[c->x.qid];
	struct shm_tenant	*t = flow_tenant(c);
	uint64_t		 v = LD(&qp->vclock), vt, start, cost;

	cost = (uint64_t)c->x.breq.prompt_tokens + c->x.breq.output_tokens;
	if (cost == 0)
		cost = 1;
	start = v;
	if (t != NULL) {
		vt = LD(&t->vt);
		for (;;) {
			start = vt > v ? vt : v;
			if (atomic_compare_exchange_weak_explicit(&t->vt, &vt,
			    start + cost, memory_order_relaxed, memory_order_relaxed))
				break;
		}
		ADD(&t->queued, 1);
		ST(&t->last_ms, shm_now_ms());
	}
	return ((uint64_t)(SHM_BANDS - c->x.band) << 56) | (start & FLOW_TAG_MASK);
}

void
flow_dequeue(struct client *c, int served)
{
	struct shm_qpool	*qp = &c->w->shm->qpool[c->x.qid];
	struct shm_tenant	*t = c->x.tenant > 0 ? &c->w->shm->tenants[c->x.tenant - 1] : NULL;
	uint64_t		 start = c->x.qkey & FLOW_TAG_MASK, v;

	if (served) {
		v = LD(&qp->vclock);
		while (v < start && !atomic_compare_exchange_weak_explicit(&qp->vclock,
		    &v, start, memory_order_relaxed, memory_order_relaxed))
			continue;
	}
	if (t == NULL)
		return;
	atomic_fetch_sub_explicit(&t->queued, 1, memory_order_relaxed);
	if (served) {
		ADD(&t->waits, 1);
		ADD(&t->wait_ms, c->w->loop.now - c->x.t_queued);
	}
}

void
flow_dropped(struct client *c)
{
	if (c->x.tenant > 0)
		ADD(&c->w->shm->tenants[c->x.tenant - 1].dropped, 1);
}

/*
 * The LLM side of an exchange: what the held body says (prompt blocks,
 * characters, max_tokens), what each attempt adds to its backend's
 * stripes while it runs, and what the response says back (its events,
 * their timings, the backend's "usage").  Everything lands in this
 * worker's stripes of the table: the (backend, model) pair's, and the
 * backend's token words that least_tokens and llm rank by.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llhttp.h"

#include "worker/http.h"
#include "worker/jscan.h"
#include "worker/flow.h"
#include "worker/llm.h"
#include "worker/worker.h"

#define LD(p)		atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v)	atomic_store_explicit((p), (v), memory_order_relaxed)
/* stripes have one writer: a load and a store, no lock prefix */
#define ADD(p, v)	ST((p), LD(p) + (v))

#define LLM_OUTPUT_MAX	32768	/* a max_tokens above this is counted as this */

int
llm_pair(const struct wbe *b, int model)
{
	uint32_t	i;

	if (model >= 0)
		for (i = 0; i < b->nmodels && i < SHM_SLOT_MODELS; i++)
			if (b->models[i] == (uint32_t)model)
				return (int)i;
	return SHM_PAIRS - 1;
}

void
llm_free(struct client *c)
{
	free(c->x.llm);
	c->x.llm = NULL;
}

int
llm_wants(struct client *c, int *blocks)
{
	struct worker		*w = c->w;
	const struct conf_pool	*cp;
	uint32_t		 strat, f;
	int			 pool = c->x.pool;

	*blocks = 0;
	if (c->x.local_models || pool < 0 || (size_t)pool >= w->view.npools ||
	    (size_t)pool >= w->conf->npools)
		return 0;
	strat = shm_pool_strategy(w->shm, w->view.pools[pool].id);
	cp = &w->conf->pools[pool];
	/* a tokens_per_minute limit counts the prompt whatever the strategy */
	if (c->x.infer && c->x.rule > 0 &&
	    w->conf->ratelimits[c->x.rule - 1].tpm > 0)
		return 1;
	*blocks = strat == STRAT_LLM || cp->shadow_strategy == STRAT_LLM ||
	    (cp->allow_strategies & (1u << STRAT_LLM));
	if (*blocks || strat == STRAT_LEAST_TOKENS || strat == STRAT_MODEL ||
	    cp->shadow_strategy == STRAT_LEAST_TOKENS ||
	    (cp->allow_strategies & (1u << STRAT_LEAST_TOKENS)))
		return 1;
	/* filters: [model] narrows by the body's model whatever ranks the rest */
	for (f = cp->filters; f != 0; f >>= 4)
		if ((f & 0xf) == FILTER_MODEL)
			return 1;
	return 0;
}

int
llm_scan(struct client *c, int blocks, const char *body, size_t len, char *model,
    size_t modelsz)
{
	struct worker		*w = c->w;
	struct llm_req		*lr;
	struct jscan_req	 r;
	uint64_t		 scratch[1];
	int			 res;

	if (c->x.llm == NULL)
		c->x.llm = malloc(sizeof(*c->x.llm));
	lr = c->x.llm;
	memset(&r, 0, sizeof(r));
	r.block = blocks && lr != NULL ? (size_t)w->conf->llm.block : 0;
	r.max_blocks = r.block ? (size_t)w->conf->llm.max_blocks : 0;
	if (r.max_blocks > BAL_BLOCKS_MAX)
		r.max_blocks = BAL_BLOCKS_MAX;
	r.blocks = lr != NULL ? lr->blocks : scratch;
	r.model = model;
	r.modelsz = modelsz;
	res = jscan_request(body, len, &r);
	if (res == JSCAN_BAD || lr == NULL) {
		llm_free(c);
		return res;
	}
	memset(lr, 0, offsetof(struct llm_req, blocks));
	memset(&lr->nblocks, 0, offsetof(struct llm_req, tail) -
	    offsetof(struct llm_req, nblocks));
	lr->nblocks = (uint32_t)r.nblocks;
	lr->chars = r.chars;
	lr->max_tokens = r.max_tokens;
	lr->stream = r.stream;
	lr->model = res == JSCAN_FOUND ? shm_model_lookup(w->shm, model) : -1;
	c->x.breq.blocks = lr->blocks;
	c->x.breq.nblocks = lr->nblocks;
	c->x.breq.prompt_tokens = (uint32_t)(lr->chars / 4);
	c->x.breq.output_tokens = (uint32_t)(lr->max_tokens > 0 ?
	    (lr->max_tokens < LLM_OUTPUT_MAX ? lr->max_tokens : LLM_OUTPUT_MAX) :
	    w->conf->llm.output_tokens);
	return res;
}

/*
 * Prompt tokens of a request of chars characters at pair p: by the
 * characters per token the backend's usage showed this worker there
 * (once it has seen enough), else four.
 */
static int64_t
llm_prompt_tokens(struct shm_pair *p, uint64_t chars)
{
	uint64_t	uc = LD(&p->usage_chars), up = LD(&p->usage_prompt);

	if (up >= 256 && uc > 0)
		return (int64_t)(chars * up / uc);
	return (int64_t)(chars / 4);
}

/*
 * llm_attempt(): the attempt u begins (dir 1) or ends (dir -1).  At the
 * beginning its estimates are added to the backend's token words and to
 * the pair's in-flight words, and its prefix is noted as sent there; at
 * the end whatever of them is still counted is taken off again, so the
 * words return to what they were whatever happened in between.
 */
void
llm_attempt(struct upconn *u, int dir)
{
	struct client		*c = u->cl;
	struct worker		*w = u->w;
	struct llm_req		*lr = c->x.llm;
	struct shm_counters	*k = shm_ctr(w->shm, w->index, u->slot);
	struct shm_pair		*p;
	uint32_t		 i, tick;

	if (dir > 0) {
		lr = c->x.llm;
		c->x.tok_output = c->x.body_len > 0 ? w->conf->llm.output_tokens : 0;
		if (lr == NULL) {
			/* no prompt read: the held body's bytes, four a token */
			c->x.tok_prompt = c->x.holding ? (int64_t)(c->x.body_len / 4) : 0;
			c->x.tok_uncached = c->x.tok_prompt;
		} else {
			lr->pair = llm_pair(&w->view.be[u->slot], lr->model);
			p = shm_pair(w->shm, w->index, u->slot, (uint32_t)lr->pair);
			c->x.tok_prompt = llm_prompt_tokens(p, lr->chars);
			c->x.tok_output = c->x.breq.output_tokens;
			/* the blocks warm there are not prefilled again */
			lr->match = w->view.last_slot == (int)u->slot ? w->view.last_match : 0;
			c->x.tok_uncached = lr->chars == 0 ? c->x.tok_prompt :
			    c->x.tok_prompt - c->x.tok_prompt * (int64_t)((uint64_t)lr->match *
			    (uint64_t)w->conf->llm.block) / (int64_t)lr->chars;
			if (c->x.tok_uncached < 0)
				c->x.tok_uncached = 0;
			lr->t_sent_us = (shm_mono_ns() / 1000);
			lr->t_first_us = lr->t_event_us = 0;
			lr->events = lr->sse = 0;
			lr->nl = 1;
			lr->bound = 1;
			lr->evdata = lr->began = 0;
			lr->tail_len = 0;
			lr->done = 0;
			ADD(&p->reqs, 1);
			ADD(&p->prompt, c->x.tok_prompt);
			ADD(&p->uncached, c->x.tok_uncached);
			ADD(&p->output, c->x.tok_output);
			ADD(&p->requests, 1);
			tick = (uint32_t)(shm_now_ms() >> 6);
			for (i = 0; i < lr->nblocks; i++)
				shm_pfx_note(w->shm, lr->blocks[i], u->slot, tick);
		}
		ADD(&k->tok_prompt, c->x.tok_prompt);
		ADD(&k->tok_uncached, c->x.tok_uncached);
		ADD(&k->tok_output, c->x.tok_output);
		return;
	}
	ADD(&k->tok_prompt, -c->x.tok_prompt);
	ADD(&k->tok_uncached, -c->x.tok_uncached);
	ADD(&k->tok_output, -c->x.tok_output);
	if (lr != NULL) {
		p = shm_pair(w->shm, w->index, u->slot, (uint32_t)lr->pair);
		ADD(&p->reqs, -1);
		ADD(&p->prompt, -c->x.tok_prompt);
		ADD(&p->uncached, -c->x.tok_uncached);
		ADD(&p->output, -c->x.tok_output);
	}
	c->x.tok_prompt = c->x.tok_uncached = c->x.tok_output = 0;
}

/*
 * Response body bytes (decoded) of the attempt.  The first one times
 * the first token (in an event stream).  In an event stream each event (a blank line) is about one token:
 * it times the inter-token gap and takes one expected output token off.
 * The last LLM_TAIL bytes are kept for the "usage" at the end.
 */
void
llm_resp_data(struct upconn *u, const char *at, size_t len)
{
	struct client		*c = u->cl;
	struct worker		*w = u->w;
	struct llm_req		*lr = c->x.llm;
	struct shm_counters	*k;
	struct shm_pair		*p;
	uint64_t		 now, gap;
	uint32_t		 ev = 0;
	size_t			 i;

	if (lr == NULL || len == 0 || u->interim)
		return;
	now = (shm_mono_ns() / 1000);
	p = shm_pair(w->shm, w->index, u->slot, (uint32_t)lr->pair);
	k = shm_ctr(w->shm, w->index, u->slot);
	if (!lr->began) {
		lr->began = 1;
		/* an event stream begins with a field or a comment, JSON with { or [ */
		for (i = 0; i < len && (at[i] == ' ' || at[i] == '\n' || at[i] == '\r' ||
		    at[i] == '\t'); i++)
			;
		lr->sse = i < len && at[i] != '{' && at[i] != '[';
		if (!lr->sse)
			lr->t_first_us = lr->t_event_us = now;
	}
	if (lr->sse) {
		/* events end at a blank line; one of comments alone (": ping") is no token */
		for (i = 0; i < len; i++) {
			if (at[i] == '\n') {
				lr->bound = lr->nl;
				if (lr->nl && lr->evdata)
					ev++;
				if (lr->nl)
					lr->evdata = 0;
				lr->nl = 1;
			} else if (at[i] != '\r') {
				if (lr->nl && at[i] != ':')
					lr->evdata = 1;
				lr->nl = lr->bound = 0;
			}
		}
		if (ev > 0 && lr->t_first_us == 0) {
			/* the first token: time to it from sending */
			lr->t_first_us = lr->t_event_us = now;
			gap = now - lr->t_sent_us;
			ADD(&p->ttft_sum_us, gap);
			ADD(&p->ttft_hist[shm_lat_bucket(gap)], 1);
		}
		if (ev > 0) {
			if (lr->events > 0) {
				/* the gap since the last read with an event, shared by this read's events */
				gap = (now - lr->t_event_us) / ev;
				ADD(&p->itl_sum_us, gap * ev);
				ADD(&p->itl_count, ev);
				ADD(&p->itl_hist[shm_lat_bucket(gap)], ev);
			}
			lr->events += ev;
			lr->t_event_us = now;
			if (c->x.tok_output > 0) {
				int64_t	take = ev < c->x.tok_output ? ev : c->x.tok_output;

				ADD(&p->output, -take);
				ADD(&k->tok_output, -take);
				c->x.tok_output -= take;
			}
		}
	}
	if (len >= LLM_TAIL) {
		memcpy(lr->tail, at + len - LLM_TAIL, LLM_TAIL);
		lr->tail_len = LLM_TAIL;
	} else {
		if (lr->tail_len + len > LLM_TAIL) {
			size_t drop = lr->tail_len + len - LLM_TAIL;

			memmove(lr->tail, lr->tail + drop, lr->tail_len - drop);
			lr->tail_len -= drop;
		}
		memcpy(lr->tail + lr->tail_len, at, len);
		lr->tail_len += len;
	}
}

/*
 * The number after the last "key": in the tail, -1 when there is none
 * (or it is cut off by the tail's start).
 */
static int64_t
llm_usage_num(const char *t, size_t n, const char *key)
{
	size_t		 kl = strlen(key), i;
	const char	*hit = NULL, *p, *end = t + n;
	int64_t		 v = 0;

	for (i = 0; i + kl <= n; i++)
		if (t[i] == '"' && memcmp(t + i, key, kl) == 0)
			hit = t + i;
	if (hit == NULL)
		return -1;
	for (p = hit + kl; p < end && (*p == ' ' || *p == ':' || *p == '\t' ||
	    *p == '\n' || *p == '\r'); p++)
		;
	if (p == end || *p < '0' || *p > '9')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9' && v < INT64_MAX / 10 - 9; p++)
		v = v * 10 + (*p - '0');
	return p == end ? -1 : v;
}

/*
 * llm_attempt_done(): the attempt ended, ok with a whole response (a 5xx
 * counts as failed) or not.  The pair's totals take the backend's usage
 * when the tail holds it (else the estimates: prompt tokens, events),
 * and its characters per token learn from it.
 */
void
llm_attempt_done(struct upconn *u, int ok)
{
	struct client	*c = u->cl;
	struct worker	*w = u->w;
	struct llm_req	*lr = c != NULL ? c->x.llm : NULL;
	struct shm_pair	*p;
	int64_t		 pt, ct, cached;

	if (lr == NULL || lr->done)
		return;
	lr->done = 1;
	p = shm_pair(w->shm, w->index, u->slot, (uint32_t)lr->pair);
	if (!ok || c->x.status >= 500) {
		ADD(&p->fails, 1);
		ADD(&p->consec_fails, 1);
		return;
	}
	ADD(&p->done, 1);
	ST(&p->consec_fails, 0);
	pt = llm_usage_num(lr->tail, lr->tail_len, "\"prompt_tokens\"");
	ct = llm_usage_num(lr->tail, lr->tail_len, "\"completion_tokens\"");
	cached = llm_usage_num(lr->tail, lr->tail_len, "\"cached_tokens\"");
	if (pt >= 0) {
		ADD(&p->usage_chars, lr->chars);
		ADD(&p->usage_prompt, (uint64_t)pt);
	} else
		pt = llm_prompt_tokens(p, lr->chars);
	if (ct < 0)
		/* an event per token, less the final [DONE] */
		ct = lr->sse && lr->events > 0 ? lr->events - 1 : 0;
	flow_usage(c, pt + ct);
	ADD(&p->prompt_tokens, (uint64_t)pt);
	ADD(&p->output_tokens, (uint64_t)ct);
	if (cached > 0)
		ADD(&p->cached_tokens, (uint64_t)cached);
	ADD(&p->ptok_hist[shm_tok_bucket((uint64_t)pt)], 1);
	ADD(&p->otok_hist[shm_tok_bucket((uint64_t)ct)], 1);
}

int
llm_stream_end(struct client *c, const char *why)
{
	const struct llm_req	*lr = c->x.llm;
	char			 ev[320];
	int			 n;
	size_t			 need;

	/* an event stream by its first bytes, or asked for and none came yet */
	if (lr == NULL || !(lr->sse || (lr->stream && lr->t_first_us == 0)) ||
	    c->out.data == NULL || !c->x.head_sent)
		return 0;
	if (!(c->x.resp_body == BODY_EOF ||
	    (c->x.resp_body == BODY_CHUNKED && !c->x.mid_chunk)))
		return 0;
	/*
	 * An event cut off in its middle is ended first: one newline after a
	 * whole line dispatches it, two after a broken line make the client
	 * reject it, either way before the error event.
	 */
	n = snprintf(ev, sizeof(ev), "%sdata: {\"error\":{\"message\":\"the backend's "
	    "stream broke after it began: %s\",\"type\":\"server_error\","
	    "\"param\":null,\"code\":\"upstream_stream_broken\"}}\n\n",
	    !lr->sse || lr->bound ? "" : lr->nl ? "\n" : "\n\n", why);
	if (n <= 0 || (size_t)n >= sizeof(ev))
		return 0;
	need = (size_t)n + (c->x.resp_body == BODY_CHUNKED ? 12 : 0);
	if (buf_room(&c->out) < need && c->out.rpos > 0)
		buf_compact(&c->out);
	if (buf_room(&c->out) < need)
		return 0;
	if (c->x.resp_body == BODY_CHUNKED)
		c->out.wpos += http_chunk_header(c->out.data + c->out.wpos, (size_t)n);
	buf_put(&c->out, ev, (size_t)n);
	if (c->x.resp_body == BODY_CHUNKED)
		buf_put(&c->out, "\r\n", 2);
	return 1;
}

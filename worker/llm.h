/*
 * What routerd reads of an OpenAI-style exchange it carries: the prompt's
 * prefix blocks and token estimates on the way in (jscan_request()), and
 * on the way out the stream's events, its timings and the backend's
 * "usage", into the (backend, model) pair's stripe of the table.
 */
#ifndef WORKER_LLM_H
#define WORKER_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "worker/balance.h"

#define LLM_TAIL	512	/* bytes of the response body kept for its "usage" */

/* Per request, allocated when its body was scanned (c->x.llm), freed with the exchange. */
struct llm_req {
	uint64_t	 blocks[BAL_BLOCKS_MAX];	/* chained, seeded by the model */
	uint32_t	 nblocks;
	uint64_t	 chars;		/* prompt characters (messages' or prompt's strings) */
	int64_t		 max_tokens;	/* max_tokens / max_completion_tokens, -1 none */
	int		 stream;	/* "stream": true */
	int		 model;		/* model id in the table, -1 none */
	/* the current attempt, reset when it begins */
	int		 pair;		/* its pair at the attempt's slot */
	uint32_t	 match;		/* prefix blocks warm there when it was picked */
	int64_t		 uncached;	/* what it added to the stripes */
	uint64_t	 t_sent_us;	/* monotonic: the attempt began */
	uint64_t	 t_first_us;	/* first token: first data event (SSE) or body byte, 0 none yet */
	uint64_t	 t_event_us;	/* last event */
	uint32_t	 events;	/* SSE events (or body reads, not SSE) */
	uint32_t	 sse;		/* the response is text/event-stream */
	uint32_t	 nl;		/* SSE: the line so far is empty */
	uint32_t	 bound;		/* SSE: the bytes so far end with a whole event (or none came) */
	uint32_t	 evdata;	/* SSE: the event so far has a field line (not only comments) */
	uint32_t	 began;		/* a body byte came */
	int		 done;		/* llm_attempt_done() counted this attempt */
	size_t		 tail_len;
	char		 tail[LLM_TAIL];
};

struct client;
struct upconn;

/*
 * llm_wants(): 1 when c's pool ranks by what the body says (llm,
 * least_tokens, model: as its strategy, shadow or a strategy a request may
 * ask for); *blocks: 1 when it needs the prefix blocks (llm).
 * llm_scan(): scan the whole held JSON body for them, the model into
 * model[modelsz]; returns jscan_request()'s answer.  Facts are kept in
 * c->x.llm and c->x.breq unless the body is not a JSON object (or memory
 * is short: the request is then routed without them, never refused).
 */
int	 llm_wants(struct client *, int *blocks);
int	 llm_scan(struct client *, int blocks, const char *body, size_t len,
	    char *model, size_t modelsz);

/* The attempt u begins (dir 1: add its estimates to its stripes, note its prefix) or ends (dir -1). */
void	 llm_attempt(struct upconn *, int dir);

/* Response body bytes of u's attempt, as given to the client (decoded). */
void	 llm_resp_data(struct upconn *, const char *, size_t);

/* u's attempt ended: ok 1 a whole response (its status counted already), 0 a failure. */
void	 llm_attempt_done(struct upconn *, int ok);

/* The pair of model at slot: its index in the slot's models, SHM_PAIRS - 1 for any other. */
int	 llm_pair(const struct wbe *, int model);

/*
 * The stream of c broke after its head went out (why says how): end it
 * with a final error event (DESIGN "Stream-aware failover"), never a
 * fake [DONE].  Returns 1 when the event is in c->out, 0 when the answer
 * is not an event stream or its framing cannot take one (a chunk left
 * open, a Content-Length): the client then sees the cut alone.
 */
int	 llm_stream_end(struct client *, const char *why);

void	 llm_free(struct client *);

#endif

/*
 * Flow control (DESIGN "Flow control"): who a request belongs to, its
 * band and deadline, the host-wide rate limits and retry budget, and the
 * order keys of the admission queue.  The state all workers share is in
 * the table (struct shm_tenant, shm_qpool, shm_worker's budget window).
 */
#ifndef WORKER_FLOW_H
#define WORKER_FLOW_H

#include <stddef.h>
#include <stdint.h>

struct client;
struct worker;

/* Settings a worker derives from its config once (flow_init()). */
struct flow_conf {
	char		 header[64];	/* queue.tenant's field, lower case; "" = the client's address */
	int		 bearer;	/* it is Authorization: the tenant is its token */
	int		 redact;	/* its values are secrets: shown cut to their ends */
	char		 prio[64];	/* queue.priority_header, lower case, "" none */
	uint64_t	 rule_hash[64];	/* each ratelimits entry's tenant, hashed */
	int		 any_rule;	/* the "*" entry, -1 none */
	int		 limits;	/* some entry limits anything */
};

void	 flow_init(struct worker *);

/*
 * The request head is parsed (base is c->in's data): its tenant, band
 * and deadline into c->x.  0, or the status to refuse it with (400: a
 * priority or deadline that does not parse).
 */
int	 flow_head(struct client *, const char *base);

/*
 * Before the request is given a backend: 0 to go on, -1 when it was
 * answered (429 over a rate limit, 503 past its deadline).  Counts the
 * request into the retry budget's window.
 */
int	 flow_admit(struct client *);

/*
 * The x-ratelimit-* lines of an admitted request whose tenant is
 * limited (what was left when it was admitted) into buf; NULL when it is
 * not limited or they do not fit.
 */
#define FLOW_HEADERS_MAX	320
const char *flow_headers(const struct client *, char *buf, size_t len);

/* The backend's usage said the request took tokens: its tenant's tokens_per_minute is corrected. */
void	 flow_usage(struct client *, int64_t tokens);

/* May c be tried once more?  1, counted as a retry; 0 when the retry budget is spent (counted). */
int	 flow_retry_take(struct client *);

/*
 * The admission queue's order, lowest first: the band (higher priority
 * first), then the virtual start of the request in its tenant's flow
 * (start-time fair queueing, weighted by tokens).  flow_enqueue() takes
 * the key as c enters the queue of pool c->x.qid; flow_dequeue() as it leaves it (served
 * 1, or dropped 0).
 */
uint64_t flow_enqueue(struct client *);
void	 flow_dequeue(struct client *, int served);
/* c's deadline (queue.timeout or its own) passed in the queue: counted for its tenant. */
void	 flow_dropped(struct client *);

/* The band of a key, 0 (priority -8) to SHM_BANDS - 1 (priority 7). */
#define FLOW_KEY_BAND(k)	(SHM_BANDS - (unsigned)((k) >> 56))

#endif

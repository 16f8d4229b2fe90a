/* The retry rules of DESIGN.md "Retries and failover", as pure functions. */
#ifndef WORKER_RETRY_H
#define WORKER_RETRY_H

#include <stdint.h>

/* How an attempt at a backend failed. */
enum up_err {
	UPE_CONNECT,		/* the backend never got the request */
	UPE_SEND,		/* reset while sending */
	UPE_EMPTY,		/* closed or reset before any response byte */
	UPE_TIMEOUT,		/* no response byte in time */
	UPE_BAD,		/* the response broke HTTP */
	UPE_TRUNCATED,		/* closed in the middle of the response body */
	UPE_STATUS,		/* a retryable status (retries.on_status) not yet forwarded */
	UPE_HELD		/* closed or broke after its head, before its first event,
				   while the head was held from the client (llm.hold_headers) */
};

/* What is known about the request when an attempt fails. */
struct retry_facts {
	enum up_err	 err;
	int		 idempotent;	/* GET, HEAD, PUT, DELETE, OPTIONS, TRACE */
	int		 held;		/* every byte sent so far is still in fwd */
	int		 answered;	/* a response byte already went to the client */
	int		 complete;	/* the whole request was read from the client */
	int		 llm;		/* an LLM request of a pool that holds heads: any 5xx
					   before the first event is worth another backend */
};

/*
 * retry_replayable(): may this request go to another backend?  Only when
 * nothing was answered, the request is still held whole, and either the
 * backend never got it, or the method is idempotent and the backend gave
 * nothing back (reset, close, or timeout once the request was complete),
 * or it answered with a retryable status (asked only for idempotent
 * requests, see retry_status_wanted()).
 */
int	 retry_replayable(const struct retry_facts *);

/*
 * retry_status_wanted(): should a response with this status be held back
 * and the request tried elsewhere?  bitmap has a bit per status
 * (retries.on_status); attempts counts the attempts made, max is
 * retries.max.
 */
int	 retry_status_wanted(const uint8_t *bitmap, int status,
	    const struct retry_facts *, int attempts, int max);

#endif

/* One active health check in flight: non-blocking connect, request, response parsed by llhttp. */
#ifndef PROBER_CHECK_H
#define PROBER_CHECK_H

#include <sys/socket.h>
#include <stdint.h>

#include <llhttp.h>

#include "lib/ev.h"
#include "shm/table-t.h"

enum check_kind {
	CHECK_HTTP = 0,		/* GET path: 2xx is good */
	CHECK_TCP,		/* the connection is accepted: good */
	CHECK_LLM		/* POST a one-token chat completion to model: 2xx */
};

/* Where and how to check; copied by check_start(). */
struct check_target {
	enum check_kind		 kind;
	struct sockaddr_storage	 ss;		/* port already offset */
	socklen_t		 sslen;
	char			 host[SHM_ADDR_MAX + 8];	/* Host: */
	char			 path[SHM_PATH_MAX];		/* CHECK_HTTP */
	char			 model[SHM_NAME_MAX];	/* CHECK_LLM; "" = GET /v1/models */
	int			 timeout_ms;
	size_t			 body_max;	/* keep the body, up to this many bytes; 0: drop it */
};

#define CHECK_WHY_MAX	128
#define CHECK_REQ_MAX	1024

struct check;

/*
 * Called once per check_start(), from the loop, never from inside
 * check_start() itself: ok is 1 for a good check, 0 for a bad one, -1
 * when this process could not check at all (out of descriptors, ports,
 * memory), which says nothing about the backend; latency_us runs from
 * the start to the end of the answer; why is a short reason for a bad
 * one ("connection refused", "status 503").  The check is idle again when
 * this runs, so the callback may start the next one.  With a body_max,
 * a good check's response body (de-chunked) is in body[0..bodylen),
 * valid until the next check_start() or check_cancel(); a body larger
 * than body_max makes the check bad.
 */
typedef void	(*check_done_cb)(struct check *, int ok, uint32_t latency_us,
		    const char *why);

/* Embed one per backend; zero it, then check_init(). */
struct check {
	struct ev_io	 io;		/* first: the loop hands us this pointer */
	struct ev_timer	 timer;		/* the check's whole time budget */
	llhttp_t	 parser;
	check_done_cb	 done;
	void		*arg;		/* the owner's */
	enum check_kind	 kind;
	int		 running;
	int		 local;		/* failed[] is our own trouble: no verdict */
	int		 connected;
	int		 timeout_ms;
	int		 status;	/* final response status, 0 until seen */
	int		 complete;	/* the final response ended */
	char		 failed[CHECK_WHY_MAX];	/* an error waiting to be reported */
	char		 req[CHECK_REQ_MAX];
	size_t		 reqlen, reqoff;
	uint64_t	 t0_us;
	char		*body;		/* kept between checks; check_cancel() frees it */
	size_t		 bodylen, bodycap, bodymax;
	int		 bodyover;	/* the body passed bodymax (or no memory for it) */
};

void	 check_init(struct check *, check_done_cb, void *arg);

/*
 * check_start() begins a check of t on l; the result comes through the
 * done callback.  The check must be idle.  Returns 0; errors (no socket,
 * no route, a request that does not fit) are results too, reported from
 * the loop like any other.
 */
int	 check_start(struct ev_loop *l, struct check *, const struct check_target *t);

/*
 * Abandon a running check without a result (the backend left the table)
 * and free the body buffer; the check may be started again.
 */
void	 check_cancel(struct ev_loop *l, struct check *);

#endif

/* The admin HTTP API of a worker: JSON endpoints, Prometheus text and the failover drills. */
#ifndef WORKER_ADMIN_H
#define WORKER_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "lib/buf.h"
#include "shm/table.h"

struct worker;
struct adminconn;

/*
 * adminconn.c: the admin listener's connections.  A request is read
 * whole before admin_handle() sees it: its head up to limits.header_size
 * (431 past it), its body up to ADMINCONN_BODY_MAX (413 past it).
 * adminconn_accept() takes a new connection of the admin listener;
 * adminconn_done() sends an answer that came later (admin_handle()
 * returned 1), which the handler appended to adminconn_out();
 * adminconn_closing() says whether the answer will end the connection
 * (its Connection: close); adminconn_drain() closes the idle ones and
 * marks the rest to close after their answer; adminconn_count() is how
 * many are open; adminconn_free_zombies() frees the closed ones once no
 * event can name them.
 */
#define ADMINCONN_BODY_MAX	(64 * 1024)
void		 adminconn_accept(struct worker *, int fd);
void		 adminconn_done(struct adminconn *);
struct buf	*adminconn_out(struct adminconn *);
int		 adminconn_closing(const struct adminconn *);
void		 adminconn_drain(struct worker *);
size_t		 adminconn_count(void);
void		 adminconn_free_zombies(void);

struct admin_req {
	const char	*method;	/* "GET", "PUT", ... */
	const char	*path;		/* without the query, NUL-terminated */
	const char	*query;		/* after '?', or "" */
	const char	*auth;		/* Authorization field value, or NULL */
	const char	*body;		/* request body (not NUL-terminated), may be NULL */
	size_t		 bodylen;
};

/*
 * admin_handle(): answer r.  Returns 0 when a complete HTTP/1.1 response
 * (status line, Content-Type, Content-Length, body) has been appended to
 * out; when it does not fit in out->cap - out->wpos, out is grown with
 * worker_buf_grow() (the worker frees it later).  Returns 1 when the
 * answer comes later (the drills, writes forwarded to the master): then
 * c is kept and adminconn_done(c) is called once the response has been
 * appended to adminconn_out(c); if the client goes away first
 * adminconn.c calls admin_abort(c),
 * after which c is not touched again.  Never blocks; reads the table,
 * writes only the pools' strategy words (PUT /api/v1/router/strategy).
 */
int	 admin_handle(struct worker *w, struct adminconn *c, const struct admin_req *r, struct buf *out);
void	 admin_abort(struct adminconn *c);

/*
 * What follows is shared by admin.c, metrics.c, drill.c and the unit
 * tests; nothing else should need it.
 */

/* One backend as the admin API reports it: a consistent copy of its slot. */
struct admin_be {
	uint32_t		 slot;
	struct shm_desc		 d;
	struct shm_totals	 t;
	uint64_t		 consec_fails;	/* summed over worker stripes */
	uint32_t		 health, breaker, lat_ewma_us, breaker_opens;
	uint64_t		 last_check_ms, breaker_change_ms;
	char			 pool[SHM_NAME_MAX];	/* its pool's name in the table, "" if none */
};

/*
 * admin_snapshot() copies every backend in use out of the table, in slot
 * order; *np gets their number.  Returns a malloc'd array (free it), or
 * NULL on allocation failure (or when there are none: *np is then 0).
 */
struct admin_be	*admin_snapshot(struct worker *, size_t *np);

/* adminjson.c: the pool the top-level answers speak for ("default", else the first). */
uint32_t	 admin_default_pool(struct worker *);
/* adminjson.c: start the requests-per-second sampler (first admin request). */
void		 admin_sampler_start(struct worker *);

/* Name of table pool id p for the answers: the table's name, "pool<N>" if it has none. */
const char	*admin_pool_name(struct worker *, uint32_t p, char *buf, size_t len);
const char	*admin_health_name(uint32_t);
const char	*admin_breaker_name(uint32_t);

/* ms since the epoch as RFC 3339 UTC with milliseconds; json null for 0. */
json_t		*admin_time(uint64_t ms);
double		 admin_round2(double);

/* A response being built by a handler. */
struct admin_resp {
	int		 status;
	json_t		*json;		/* the body as JSON, or */
	char		*text;		/* a malloc'd text body */
	size_t		 textlen;
	const char	*ctype;		/* for text */
	const char	*allow;		/* 405: the Allow field */
	int		 www_auth;	/* 401: add WWW-Authenticate */
};

/* Set r to an error answer {"error": {"message", "type", "code"}}. */
void	 admin_error(struct admin_resp *, int status, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/*
 * admin_write() appends r as a complete response to out (no body for
 * HEAD; "Connection: close" when close), growing out when needed; frees
 * r's body.  0, or -1 when out could not grow.
 */
int	 admin_write(struct buf *out, struct admin_resp *, int head, int close);

/*
 * Parse a JSON object body.  Returns it, or NULL with r set to a 400 that
 * carries jansson's reason.
 */
json_t	*admin_parse_body(const struct admin_req *, struct admin_resp *);

/*
 * The registry's counters from the table's registry block (the master
 * writes it) and the backends by source counted from the descriptors:
 * {"enabled", "syncs_ok", "syncs_failed", "last_success", "last_failure",
 * "failing", "listed", "in_grace", "backends": {"static", "registry"}}.
 */
json_t	*admin_registry_json(struct worker *, const struct admin_be *, size_t n);

/* The JSON endpoints; each returns a new reference (NULL: out of memory). */
json_t	*admin_health_json(struct worker *);
json_t	*admin_metrics_json(struct worker *, uint64_t now_ms);
json_t	*admin_services_json(struct worker *);

/*
 * PUT /api/v1/router/strategy, in two halves around the master, which
 * writes the strategy words: admin_strategy_check() validates the parsed
 * body into st (0), or fills r with a 400 naming what is wrong (-1);
 * admin_strategy_answer() fills r with 200 and the strategy_change
 * object once the master's reply (its "data") is in.
 */
struct admin_strat {
	int		 strat;
	char		 name[32];		/* the strategy's canonical name */
	char		 pool[SHM_NAME_MAX];	/* "": every pool */
	uint8_t		 mask[SHM_POOLS_MAX];
	uint32_t	 first;			/* the pool the top-level fields speak for */
	uint32_t	 prev[SHM_POOLS_MAX];
	json_t		*before;		/* in-flight per backend, before */
};
int	 admin_strategy_check(struct worker *, json_t *body, struct admin_resp *,
	    struct admin_strat *);
void	 admin_strategy_answer(struct worker *, struct admin_strat *, json_t *reply,
	    struct admin_resp *);

/*
 * A forwarded write's failure as r: the master's refusal (400 with its
 * reason), or no answer (503 no link, 504 timed out).  0 when reply is
 * a success (r untouched), -1 with r filled.
 */
int	 admin_master_error(json_t *reply, int status, struct admin_resp *);

/*
 * Requests per second: samples of the total of attempts, taken once a
 * second after the first admin request (admin.c).  admin_rate_add()
 * records one; admin_rate_get() returns the rate over the last ~10 s
 * given the total now, with *window_ms the span it covers, or -1 when
 * there is no sample a second old yet.
 */
#define ADMIN_RATE_SAMPLES	16
struct admin_rate {
	uint64_t	 t_ms[ADMIN_RATE_SAMPLES];	/* monotonic */
	uint64_t	 v[ADMIN_RATE_SAMPLES];
	size_t		 n, head;
};
void	 admin_rate_add(struct admin_rate *, uint64_t t_ms, uint64_t v);
double	 admin_rate_get(const struct admin_rate *, uint64_t t_ms, uint64_t v,
	    uint64_t *window_ms);

/*
 * metrics.c: metrics_prom() renders the Prometheus text exposition
 * (format 0.0.4) of the table into a malloc'd string; *lenp its length.
 * NULL on allocation failure.
 */
char	*metrics_prom(struct worker *, size_t *lenp);

/*
 * llmmetrics.c: metrics_llm() appends to f the families of the (backend,
 * model) pairs of the n backends v (only pairs that saw traffic have
 * samples) and the pools' llm, X-Router-Strategy and shadow counters.
 */
void	 metrics_llm(struct worker *, FILE *f, const struct admin_be *v, size_t n);

/*
 * drill.c: the two drills.  Each validates the body (r gets a 4xx when it
 * is wrong) and returns 0 with r filled, or 1 when the drill runs and its
 * answer goes to c later (adminconn_done()).  drill_abort() forgets c
 * and restores the worker's view at once; drill_busy() is 1 while one
 * runs in this worker.
 */
int	 drill_failover(struct worker *, struct adminconn *, json_t *body,
	    struct admin_resp *);
int	 drill_breaker(struct worker *, struct adminconn *, json_t *body,
	    struct admin_resp *);
void	 drill_abort(struct adminconn *);
int	 drill_busy(void);

#endif

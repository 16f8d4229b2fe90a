/* The admin HTTP API: request routing, bearer auth, answers and the writes (forwarded to the master). */
#include <sys/queue.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "lib/log.h"
#include "worker/admin.h"
#include "worker/explain.h"
#include "worker/flowview.h"
#include "worker/mctl.h"
#include "worker/worker.h"

static json_t *
admin_inflight(struct worker *w, const uint8_t *mask)
{
	struct admin_be	*v;
	size_t		 n, i;
	json_t		*o = json_object();

	v = admin_snapshot(w, &n);
	for (i = 0; i < n; i++)
		if (v[i].d.pool < SHM_POOLS_MAX && mask[v[i].d.pool])
			json_object_set_new(o, v[i].d.name,
			    json_integer(v[i].t.inflight));
	free(v);
	return o;
}

int
admin_strategy_check(struct worker *w, json_t *body, struct admin_resp *r,
    struct admin_strat *st)
{
	json_t		*js, *jp;
	const char	*sname, *pname = NULL;
	int		 strat, p;
	uint32_t	 i, dp;
	char		 valid[256];

	memset(st, 0, sizeof(*st));
	st->first = UINT32_MAX;
	js = json_object_get(body, "strategy");
	if (js == NULL || !json_is_string(js)) {
		admin_error(r, 400, "\"strategy\" must be a string");
		return -1;
	}
	sname = json_string_value(js);
	if ((strat = conf_strategy_from_name(sname)) < 0) {
		valid[0] = '\0';
		for (p = 0; p < STRAT_COUNT; p++) {
			if (p)
				strlcat(valid, ", ", sizeof(valid));
			strlcat(valid, conf_strategy_name((enum conf_strategy)p),
			    sizeof(valid));
		}
		admin_error(r, 400, "unknown strategy \"%.64s\" (valid: %s)",
		    sname, valid);
		return -1;
	}
	jp = json_object_get(body, "pool");
	if (jp != NULL && !json_is_null(jp)) {
		if (!json_is_string(jp)) {
			admin_error(r, 400, "\"pool\" must be a string");
			return -1;
		}
		pname = json_string_value(jp);
	}
	if (pname != NULL) {
		if ((p = shm_pool_find(w->shm, pname)) < 0) {
			admin_error(r, 400, "unknown pool \"%.64s\"", pname);
			return -1;
		}
		st->mask[p] = 1;
		st->first = (uint32_t)p;
		strlcpy(st->pool, pname, sizeof(st->pool));
	} else {
		for (i = 0; i < SHM_POOLS_MAX; i++)
			if (atomic_load_explicit(&w->shm->pools[i].inuse,
			    memory_order_acquire)) {
				st->mask[i] = 1;
				if (st->first == UINT32_MAX)
					st->first = i;
			}
		dp = admin_default_pool(w);
		if (dp < SHM_POOLS_MAX && st->mask[dp])
			st->first = dp;
	}
	if (st->first == UINT32_MAX) {
		admin_error(r, 400, "no pool to change");
		return -1;
	}
	st->strat = strat;
	strlcpy(st->name, conf_strategy_name((enum conf_strategy)strat),
	    sizeof(st->name));
	for (i = 0; i < SHM_POOLS_MAX; i++)
		st->prev[i] = shm_pool_strategy(w->shm, i);
	st->before = admin_inflight(w, st->mask);
	return 0;
}

void
admin_strategy_answer(struct worker *w, struct admin_strat *st, json_t *reply,
    struct admin_resp *r)
{
	json_t		*root, *sc, *pools, *rp, *e;
	uint32_t	 i;
	size_t		 k;
	int		 applied = 1;
	char		 pbuf[16];

	/* the master's "previous": what it replaced, whatever we read before */
	rp = json_object_get(json_object_get(reply, "data"), "pools");
	json_array_foreach(rp, k, e) {
		const char *pn = json_string_value(json_object_get(e, "pool"));
		const char *pv = json_string_value(json_object_get(e, "previous"));
		int	    p = pn != NULL ? shm_pool_find(w->shm, pn) : -1;
		int	    sv = pv != NULL ? conf_strategy_from_name(pv) : -1;

		if (p >= 0 && sv >= 0)
			st->prev[p] = (uint32_t)sv;
	}
	root = json_object();
	sc = json_object();
	pools = json_object();
	json_object_set_new(root, "strategy_change", sc);
	json_object_set_new(sc, "active_connections_before", st->before);
	st->before = NULL;
	for (i = 0; i < SHM_POOLS_MAX; i++) {
		json_t *pe;

		if (!st->mask[i])
			continue;
		if (shm_pool_strategy(w->shm, i) != (uint32_t)st->strat)
			applied = 0;
		pe = json_object();
		json_object_set_new(pe, "previous_strategy", json_string(
		    conf_strategy_name((enum conf_strategy)st->prev[i])));
		json_object_set_new(pe, "new_strategy", json_string(st->name));
		json_object_set_new(pools, admin_pool_name(w, i, pbuf,
		    sizeof(pbuf)), pe);
	}
	json_object_set_new(sc, "previous_strategy", json_string(
	    conf_strategy_name((enum conf_strategy)st->prev[st->first])));
	json_object_set_new(sc, "new_strategy", json_string(st->name));
	json_object_set_new(sc, "change_timestamp", admin_time(shm_now_ms()));
	json_object_set_new(sc, "active_connections_after",
	    admin_inflight(w, st->mask));
	json_object_set_new(sc, "strategy_applied", json_boolean(applied));
	json_object_set_new(sc, "pools", pools);
	json_object_set_new(sc, "applied_by", json_string("master"));
	json_object_set_new(sc, "note", json_string(
	    "the master applied the change (routerctl's strategy set); active "
	    "connections are in-flight requests per backend read just before "
	    "the request went to the master and just after its answer; every "
	    "worker uses the new strategy from its next pick; a reload "
	    "restores the configured one"));
	r->status = 200;
	r->json = root;
}

/*
 * A write waiting for the master's answer.  Its adminconn may go first
 * (admin_abort()): c is then NULL and the answer is dropped.
 */
struct admin_fwd {
	TAILQ_ENTRY(admin_fwd)	 entry;
	struct worker		*w;
	struct adminconn	*c;
	int			 head;
	struct admin_strat	 st;
};
static TAILQ_HEAD(, admin_fwd)	admin_fwds = TAILQ_HEAD_INITIALIZER(admin_fwds);

static void
admin_fwd_free(struct admin_fwd *f)
{
	TAILQ_REMOVE(&admin_fwds, f, entry);
	json_decref(f->st.before);
	free(f);
}

/* Turn a failed forward into r: the master's error (400), or no answer (503/504). */
int
admin_master_error(json_t *reply, int status, struct admin_resp *r)
{
	const char	*e;

	if (reply == NULL) {
		admin_error(r, status == 504 ? 504 : 503, status == 504 ?
		    "the master did not answer in time; the change may still "
		    "happen" : "no link to the master; nothing was changed");
		return -1;
	}
	if (json_is_true(json_object_get(reply, "ok")))
		return 0;
	e = json_string_value(json_object_get(reply, "error"));
	admin_error(r, 400, "%s", e != NULL ? e : "the master refused the change");
	return -1;
}

static void
admin_strategy_done(void *arg, json_t *reply, int status)
{
	struct admin_fwd	*f = arg;
	struct admin_resp	 r;

	memset(&r, 0, sizeof(r));
	if (admin_master_error(reply, status, &r) == 0)
		admin_strategy_answer(f->w, &f->st, reply, &r);
	if (admin_write(adminconn_out(f->c), &r, f->head,
	    adminconn_closing(f->c)) == -1) {
		memset(&r, 0, sizeof(r));
		admin_error(&r, 500, "answer too large for memory");
		(void)admin_write(adminconn_out(f->c), &r, f->head,
		    adminconn_closing(f->c));
	}
	json_decref(r.json);
	{
		struct adminconn *c = f->c;

		admin_fwd_free(f);
		adminconn_done(c);
	}
}

void
admin_error(struct admin_resp *r, int status, const char *fmt, ...)
{
	va_list	 ap;
	char	 msg[512];
	const char *type;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (status == 401 || status == 403)
		type = "authentication_error";
	else if (status == 404)
		type = "not_found_error";
	else if (status < 500)
		type = "invalid_request_error";
	else
		type = "server_error";
	json_decref(r->json);
	r->json = json_pack("{s:{s:s, s:s, s:i}}", "error", "message", msg,
	    "type", type, "code", status);
	r->status = status;
}

json_t *
admin_parse_body(const struct admin_req *q, struct admin_resp *r)
{
	json_error_t	 err;
	json_t		*j;

	if (q->body == NULL || q->bodylen == 0) {
		admin_error(r, 400, "a JSON object body is required");
		return NULL;
	}
	j = json_loadb(q->body, q->bodylen, JSON_REJECT_DUPLICATES, &err);
	if (j == NULL) {
		admin_error(r, 400, "invalid JSON: %s (line %d, column %d)",
		    err.text, err.line, err.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		admin_error(r, 400, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

int
admin_write(struct buf *out, struct admin_resp *r, int head, int close)
{
	char		 hdr[512], *body = NULL;
	const char	*ctype = "application/json";
	size_t		 blen = 0, hlen, need, nl = 0;
	int		 n;

	if (r->json != NULL) {
		body = json_dumps(r->json, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
		    JSON_REAL_PRECISION(12));
		json_decref(r->json);
		r->json = NULL;
		if (body == NULL) {
			r->status = 500;
			body = strdup("{\"error\": {\"message\": \"out of memory\", "
			    "\"type\": \"server_error\", \"code\": 500}}");
		}
		if (body != NULL) {
			blen = strlen(body);
			nl = 1;		/* the newline curl users expect */
		}
	} else if (r->text != NULL) {
		body = r->text;
		blen = r->textlen;
		r->text = NULL;
		ctype = r->ctype;
	}
	n = snprintf(hdr, sizeof(hdr),
	    "HTTP/1.1 %d %s\r\n"
	    "Server: routerd\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "Cache-Control: no-store\r\n"
	    "%s%s%s"
	    "%s%s"
	    "\r\n",
	    r->status, r->status == 409 ? "Conflict" : reply_reason(r->status),
	    ctype, blen + nl,
	    r->allow ? "Allow: " : "", r->allow ? r->allow : "",
	    r->allow ? "\r\n" : "",
	    r->www_auth ? "WWW-Authenticate: Bearer realm=\"routerd\"\r\n" : "",
	    close ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(hdr)) {
		free(body);
		return -1;
	}
	hlen = (size_t)n;
	need = hlen + (head ? 0 : blen + nl);
	if (buf_room(out) < need && worker_buf_grow(out, need) == -1) {
		free(body);
		return -1;
	}
	buf_put(out, hdr, hlen);
	if (!head) {
		if (blen > 0)
			buf_put(out, body, blen);
		if (nl)
			buf_put(out, "\n", 1);
	}
	free(body);
	return 0;
}

/*
 * 1: the bearer token matches; 0: missing or wrong; -1: writes are off (no
 * token set).
 */
static int
admin_authorized(struct worker *w, const char *auth)
{
	const char	*tok = w->conf->admin.token, *p;
	size_t		 tlen, plen;

	if (tok[0] == '\0')
		return -1;
	if (auth == NULL || strncasecmp(auth, "Bearer", 6) != 0 ||
	    (auth[6] != ' ' && auth[6] != '\t'))
		return 0;
	for (p = auth + 6; *p == ' ' || *p == '\t'; p++)
		;
	plen = strlen(p);
	while (plen > 0 && (p[plen - 1] == ' ' || p[plen - 1] == '\t'))
		plen--;
	tlen = strlen(tok);
	if (plen != tlen)
		return 0;
	return CRYPTO_memcmp(p, tok, tlen) == 0;
}

static int
h_health(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	r->status = 200;
	if ((r->json = admin_health_json(w)) == NULL)
		admin_error(r, 500, "out of memory");
	return 0;
}

static int
h_metrics(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	r->status = 200;
	if ((r->json = admin_metrics_json(w, shm_mono_ms())) == NULL)
		admin_error(r, 500, "out of memory");
	return 0;
}

static int
h_services(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	r->status = 200;
	if ((r->json = admin_services_json(w)) == NULL)
		admin_error(r, 500, "out of memory");
	return 0;
}

static int
h_strategy_get(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	json_t	*root, *ps;
	size_t	 p;

	root = json_object();
	ps = json_object();
	for (p = 0; p < w->view.npools; p++)
		json_object_set_new(ps, w->conf->pools[p].name,
		    json_string(conf_strategy_name((enum conf_strategy)
		    shm_pool_strategy(w->shm, w->view.pools[p].id))));
	json_object_set_new(root, "strategy", json_string(conf_strategy_name(
	    (enum conf_strategy)shm_pool_strategy(w->shm, admin_default_pool(w)))));
	json_object_set_new(root, "pools", ps);
	r->status = 200;
	r->json = root;
	return 0;
}

static int
h_strategy_put(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	struct admin_fwd	*f;
	json_t			*body;
	const char		*words[4];
	size_t			 n = 0;

	if ((body = admin_parse_body(q, r)) == NULL)
		return 0;
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		json_decref(body);
		admin_error(r, 500, "out of memory");
		return 0;
	}
	if (admin_strategy_check(w, body, r, &f->st) == -1) {
		json_decref(body);
		free(f);
		return 0;
	}
	json_decref(body);
	f->w = w;
	f->c = c;
	TAILQ_INSERT_TAIL(&admin_fwds, f, entry);
	/* the master is the pools' strategy words' one writer */
	words[n++] = "strategy";
	words[n++] = "set";
	if (f->st.pool[0] != '\0')
		words[n++] = f->st.pool;
	words[n++] = f->st.name;
	if (mctl_send(words, n, admin_strategy_done, f) == -1) {
		admin_fwd_free(f);
		admin_error(r, 503, "no link to the master; nothing was changed");
		return 0;
	}
	return 1;
}

static int
h_breaker_test(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	json_t	*body;
	int	 rc;

	if ((body = admin_parse_body(q, r)) == NULL)
		return 0;
	rc = drill_breaker(w, c, body, r);
	json_decref(body);
	return rc;
}

static int
h_failover_test(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	json_t	*body;
	int	 rc;

	if ((body = admin_parse_body(q, r)) == NULL)
		return 0;
	rc = drill_failover(w, c, body, r);
	json_decref(body);
	return rc;
}

/* GET /api/v1/explain?n=N: the newest N routing decisions of this host (default 10). */
static int
h_explain(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	const char	*p, *e = NULL;
	char		 num[16];
	long long	 n = EXPLAIN_DEFAULT;
	size_t		 len;

	for (p = q->query; *p != '\0'; p += len + (p[len] == '&')) {
		len = strcspn(p, "&");
		if (len < 2 || strncmp(p, "n=", 2) != 0)
			continue;
		snprintf(num, sizeof(num), "%.*s", (int)(len - 2), p + 2);
		if (len - 2 >= sizeof(num))
			e = "too large";
		else
			n = strtonum(num, 1, EXPLAIN_MAX, &e);
		if (e != NULL) {
			admin_error(r, 400, "n is %s: 1 to %d decisions", e,
			    EXPLAIN_MAX);
			return 0;
		}
	}
	r->status = 200;
	if ((r->json = explain_json(w->shm, (size_t)n)) == NULL)
		admin_error(r, 500, "out of memory");
	return 0;
}

/* GET /api/v1/router/queue: the admission queue of every live pool and the retry budget. */
static int
h_queue(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	r->status = 200;
	if ((r->json = flowview_queue_json(w->shm)) == NULL)
		admin_error(r, 500, "out of memory");
	return 0;
}

/* GET /api/v1/router/tenants: the tenants the table tracks, the busiest first. */
static int
h_tenants(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	r->status = 200;
	if ((r->json = flowview_tenants_json(w->shm)) == NULL)
		admin_error(r, 500, "out of memory");
	return 0;
}

static int
h_prom(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct admin_resp *r)
{
	if ((r->text = metrics_prom(w, &r->textlen)) == NULL) {
		admin_error(r, 500, "out of memory");
		return 0;
	}
	r->status = 200;
	r->ctype = "text/plain; version=0.0.4; charset=utf-8";
	return 0;
}

/*
 * The endpoints. GET rows answer HEAD too; write rows need the bearer token.
 */
static const struct admin_route {
	const char	*path;
	const char	*method;
	int		 write;
	int		(*fn)(struct worker *, struct adminconn *,
			    const struct admin_req *, struct admin_resp *);
} admin_routes[] = {
	{ "/api/v1/router/health",		"GET",	0, h_health },
	{ "/api/v1/router/metrics",		"GET",	0, h_metrics },
	{ "/api/v1/router/strategy",		"GET",	0, h_strategy_get },
	{ "/api/v1/router/strategy",		"PUT",	1, h_strategy_put },
	{ "/api/v1/router/circuit-breaker/test", "POST", 1, h_breaker_test },
	{ "/api/v1/router/failover/test",	"POST",	1, h_failover_test },
	{ "/api/v1/router/queue",		"GET",	0, h_queue },
	{ "/api/v1/router/tenants",		"GET",	0, h_tenants },
	{ "/api/v1/explain",			"GET",	0, h_explain },
	{ "/services",				"GET",	0, h_services },
	{ "/metrics",				"GET",	0, h_prom },
};
#define ADMIN_NROUTES	(sizeof(admin_routes) / sizeof(admin_routes[0]))

int
admin_handle(struct worker *w, struct adminconn *c, const struct admin_req *q,
    struct buf *out)
{
	const struct admin_route *rt = NULL;
	struct admin_resp	 r;
	char			 allow[64];
	size_t			 i;
	int			 known = 0, head, rc = 0, a, cl;

	memset(&r, 0, sizeof(r));
	admin_sampler_start(w);
	head = strcmp(q->method, "HEAD") == 0;
	allow[0] = '\0';
	for (i = 0; i < ADMIN_NROUTES; i++) {
		if (strcmp(admin_routes[i].path, q->path) != 0)
			continue;
		known = 1;
		if (allow[0] != '\0')
			strlcat(allow, ", ", sizeof(allow));
		strlcat(allow, admin_routes[i].method, sizeof(allow));
		if (strcmp(admin_routes[i].method, "GET") == 0)
			strlcat(allow, ", HEAD", sizeof(allow));
		if (strcmp(admin_routes[i].method, q->method) == 0 ||
		    (head && strcmp(admin_routes[i].method, "GET") == 0))
			rt = &admin_routes[i];
	}
	if (!known)
		admin_error(&r, 404, "no such endpoint: %.200s", q->path);
	else if (rt == NULL) {
		admin_error(&r, 405, "method %.16s not allowed on %.200s",
		    q->method, q->path);
		r.allow = allow;
	} else if (rt->write && (a = admin_authorized(w, q->auth)) != 1) {
		if (a == -1)
			admin_error(&r, 403, "writes are disabled: admin.token is not set");
		else {
			admin_error(&r, 401, "this endpoint needs "
			    "\"Authorization: Bearer <admin.token>\"");
			r.www_auth = 1;
		}
	} else if ((rc = rt->fn(w, c, q, &r)) == 1)
		return 1;
	cl = c != NULL && adminconn_closing(c);
	if (admin_write(out, &r, head, cl) == -1) {
		/*
		 * could not grow: a short answer always fits a fresh 32 KiB
		 * buffer
		 */
		struct admin_resp e;

		memset(&e, 0, sizeof(e));
		admin_error(&e, 500, "answer too large for memory");
		if (admin_write(out, &e, head, cl) == -1)
			return 0;
	}
	return 0;
}

void
admin_abort(struct adminconn *c)
{
	struct admin_fwd	*f, *next;

	for (f = TAILQ_FIRST(&admin_fwds); f != NULL; f = next) {
		next = TAILQ_NEXT(f, entry);
		if (f->c == c) {
			mctl_cancel(f);
			admin_fwd_free(f);
		}
	}
	drill_abort(c);
}

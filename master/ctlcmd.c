/* The control socket's commands: read the shared table and the config, steer backends, pools and the master. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/control.h"
#include "master/registry.h"
#include "worker/explain.h"
#include "worker/flowview.h"

#define MASKED	"********"

const char *
control_health_word(uint32_t h)
{
	switch (h) {
	case SHM_HEALTH_UP:
		return "up";
	case SHM_HEALTH_DOWN:
		return "down";
	default:
		return "unknown";
	}
}

const char *
control_breaker_word(uint32_t b)
{
	switch (b) {
	case SHM_BREAKER_OPEN:
		return "open";
	case SHM_BREAKER_HALF_OPEN:
		return "half-open";
	default:
		return "closed";
	}
}

const char *
control_force_word(uint32_t f)
{
	switch (f) {
	case SHM_FORCE_OPEN:
		return "open";
	case SHM_FORCE_CLOSE:
		return "close";
	default:
		return "none";
	}
}

const char *
control_state_word(uint32_t flags)
{
	if (flags & SHM_F_DISABLED)
		return "disabled";
	if (flags & SHM_F_DRAINING)
		return "draining";
	return "enabled";
}

void
control_pool_name(const struct shm_hdr *h, uint32_t idx, char *buf, size_t len)
{
	buf[0] = '\0';
	if (idx >= SHM_POOLS_MAX ||
	    !atomic_load_explicit(&h->pools[idx].inuse, memory_order_relaxed))
		return;
	snprintf(buf, len, "%.*s", SHM_NAME_MAX - 1, h->pools[idx].name);
}

void
control_time(uint64_t ms, int millis, char *buf, size_t len)
{
	time_t		t = (time_t)(ms / 1000);
	struct tm	tm;
	char		s[32];

	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	if (millis)
		snprintf(buf, len, "%s.%03uZ", s, (unsigned)(ms % 1000));
	else
		snprintf(buf, len, "%sZ", s);
}

/* Time as JSON: null for "never" (0). */
static json_t *
ctlcmd_time_json(uint64_t ms)
{
	char	buf[40];

	if (ms == 0)
		return json_null();
	control_time(ms, 0, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *
ctlcmd_message(json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Adds "message" (what routerctl prints for a write) to data; returns data. */
static json_t *
ctlcmd_message(json_t *data, const char *fmt, ...)
{
	char	buf[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_object_set_new(data, "message", json_string(buf));
	return data;
}

/*
 * Calls fn for every backend in the table with a consistent copy of its
 * descriptor, in slot order.
 */
static void
ctlcmd_each(struct shm_hdr *h, void (*fn)(struct shm_hdr *, uint32_t,
    const struct shm_desc *, void *), void *arg)
{
	uint32_t	i, n = atomic_load_explicit(&h->nslots, memory_order_acquire);
	struct shm_desc	d;

	for (i = 0; i < n; i++) {
		shm_desc_read(shm_slot(h, i), &d);
		if (d.flags & SHM_F_INUSE)
			fn(h, i, &d, arg);
	}
}

static json_t *
ctlcmd_models(struct shm_hdr *h, const struct shm_desc *d)
{
	json_t	*a = json_array();
	char	 name[SHM_NAME_MAX];
	uint32_t k;

	for (k = 0; k < d->nmodels && k < SHM_SLOT_MODELS; k++)
		if (shm_model_name(h, d->models[k], name, sizeof(name)) == 0)
			json_array_append_new(a, json_string(name));
	return a;
}

static json_t *
ctlcmd_flags(uint32_t f)
{
	json_t	*a = json_array();

	if (f & SHM_F_STATIC)
		json_array_append_new(a, json_string("static"));
	if (f & SHM_F_REGISTRY)
		json_array_append_new(a, json_string("registry"));
	if (f & SHM_F_BACKUP)
		json_array_append_new(a, json_string("backup"));
	if (f & SHM_F_DISABLED)
		json_array_append_new(a, json_string("disabled"));
	if (f & SHM_F_DRAINING)
		json_array_append_new(a, json_string("draining"));
	return a;
}

/* Eligible as the balancer sees it, but for max_conns (a moment's state). */
static int
ctlcmd_eligible(struct shm_slot *s, const struct shm_desc *d)
{
	return !(d->flags & (SHM_F_DISABLED | SHM_F_DRAINING)) &&
	    atomic_load_explicit(&s->health, memory_order_relaxed) != SHM_HEALTH_DOWN &&
	    atomic_load_explicit(&s->breaker, memory_order_relaxed) != SHM_BREAKER_OPEN;
}

static void
ctlcmd_backend_row(struct shm_hdr *h, uint32_t i, const struct shm_desc *d,
    void *arg)
{
	struct shm_slot		*s = shm_slot(h, i);
	struct shm_totals	 t;
	char			 pool[SHM_NAME_MAX];
	json_t			*row;

	shm_totals(h, i, &t);
	control_pool_name(h, d->pool, pool, sizeof(pool));
	row = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, "
	    "s:I, s:I, s:f, s:o, s:o, s:s}",
	    "name", d->name,
	    "slot", (json_int_t)i,
	    "pool", pool,
	    "address", d->addr,
	    "state", control_state_word(d->flags),
	    "health", control_health_word(atomic_load_explicit(&s->health,
		memory_order_relaxed)),
	    "breaker", control_breaker_word(atomic_load_explicit(&s->breaker,
		memory_order_relaxed)),
	    "weight", (json_int_t)d->weight,
	    "max_conns", (json_int_t)d->max_conns,
	    "inflight", (json_int_t)t.inflight,
	    "requests", (json_int_t)t.requests,
	    "fails", (json_int_t)t.fails,
	    "latency_ms", atomic_load_explicit(&s->lat_ewma_us,
		memory_order_relaxed) / 1000.0,
	    "models", ctlcmd_models(h, d),
	    "flags", ctlcmd_flags(d->flags),
	    "region", d->region);
	if (row != NULL) {
		json_object_set_new(row, "last_check",
		    ctlcmd_time_json(atomic_load_explicit(&s->last_check_ms,
		    memory_order_relaxed)));
		json_array_append_new(arg, row);
	}
}

static json_t *
ctlcmd_show_backends(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	json_t	*a = json_array();

	ctlcmd_each(m->shm, ctlcmd_backend_row, a);
	return a;
}

/* Per pool: members, eligible members, load. */
struct pool_acc {
	uint32_t	 backends[SHM_POOLS_MAX];
	uint32_t	 eligible[SHM_POOLS_MAX];
	int64_t		 inflight[SHM_POOLS_MAX];
	uint64_t	 requests[SHM_POOLS_MAX];
};

static void
ctlcmd_pool_acc(struct shm_hdr *h, uint32_t i, const struct shm_desc *d,
    void *arg)
{
	struct pool_acc		*pa = arg;
	struct shm_totals	 t;

	if (d->pool >= SHM_POOLS_MAX)
		return;
	shm_totals(h, i, &t);
	pa->backends[d->pool]++;
	pa->eligible[d->pool] += ctlcmd_eligible(shm_slot(h, i), d);
	pa->inflight[d->pool] += t.inflight;
	pa->requests[d->pool] += t.requests;
}

static json_t *
ctlcmd_pools(struct master *m)
{
	struct pool_acc	*pa;
	json_t		*a = json_array();
	char		 name[SHM_NAME_MAX];
	uint32_t	 p;

	if ((pa = calloc(1, sizeof(*pa))) == NULL)
		return a;
	ctlcmd_each(m->shm, ctlcmd_pool_acc, pa);
	for (p = 0; p < SHM_POOLS_MAX; p++) {
		control_pool_name(m->shm, p, name, sizeof(name));
		if (name[0] == '\0')
			continue;
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
		    "name", name,
		    "strategy", conf_strategy_name(shm_pool_strategy(m->shm, p)),
		    "base_strategy", conf_strategy_name(atomic_load_explicit(
			&m->shm->pools[p].base_strategy, memory_order_relaxed)),
		    "backends", (json_int_t)pa->backends[p],
		    "eligible", (json_int_t)pa->eligible[p],
		    "inflight", (json_int_t)pa->inflight[p],
		    "requests", (json_int_t)pa->requests[p]));
	}
	free(pa);
	return a;
}

static json_t *
ctlcmd_show_pools(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_pools(m);
}

struct summary_acc {
	json_t		*rows;
	json_int_t	 n, up, down, open;
};

static void
ctlcmd_summary_row(struct shm_hdr *h, uint32_t i, const struct shm_desc *d,
    void *arg)
{
	struct summary_acc	*sa = arg;
	struct shm_slot		*s = shm_slot(h, i);
	struct shm_totals	 t;
	char			 pool[SHM_NAME_MAX];
	uint32_t		 health, breaker;

	health = atomic_load_explicit(&s->health, memory_order_relaxed);
	breaker = atomic_load_explicit(&s->breaker, memory_order_relaxed);
	sa->n++;
	sa->up += health == SHM_HEALTH_UP;
	sa->down += health == SHM_HEALTH_DOWN;
	sa->open += breaker == SHM_BREAKER_OPEN;
	shm_totals(h, i, &t);
	control_pool_name(h, d->pool, pool, sizeof(pool));
	json_array_append_new(sa->rows, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}",
	    "name", d->name, "pool", pool, "state", control_state_word(d->flags),
	    "health", control_health_word(health),
	    "breaker", control_breaker_word(breaker),
	    "inflight", (json_int_t)t.inflight,
	    "requests", (json_int_t)t.requests));
}

/* The registry's counters (registry.c keeps them; the master owns them). */
static json_t *
ctlcmd_registry(struct master *m)
{
	struct registry_stats	 st;

	registry_stats(m, &st);
	return json_pack("{s:b, s:I, s:I, s:o, s:o, s:b, s:s, s:I, s:I, s:I, "
	    "s:I, s:{s:I, s:I}}",
	    "enabled", m->conf->registry.url[0] != '\0',
	    "syncs_ok", (json_int_t)st.syncs_ok,
	    "syncs_failed", (json_int_t)st.syncs_failed,
	    "last_success", ctlcmd_time_json(st.last_ok_ms),
	    "last_failure", ctlcmd_time_json(st.last_fail_ms),
	    "failing", st.failing,
	    "last_error", st.last_error,
	    "listed", (json_int_t)st.listed,
	    "skipped", (json_int_t)st.skipped,
	    "conflicts", (json_int_t)st.conflicts,
	    "in_grace", (json_int_t)st.in_grace,
	    "backends", "static", (json_int_t)st.configured,
	    "registry", (json_int_t)st.backends);
}

static json_t *
ctlcmd_show_summary(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	struct summary_acc	 sa = { .rows = json_array() };
	json_int_t		 workers = 0;
	uint64_t		 now = shm_now_ms();
	int			 i;

	ctlcmd_each(m->shm, ctlcmd_summary_row, &sa);
	for (i = 0; i < SHM_WORKERS_MAX; i++)
		workers += m->w[i].pid > 0 && !m->w[i].old;
	return json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o, s:o, s:o}",
	    "router",
	    "generation", (json_int_t)m->generation,
	    "table_generation", (json_int_t)shm_gen(m->shm),
	    "workers", workers,
	    "uptime_s", (json_int_t)(now > m->shm->created_ms ?
		(now - m->shm->created_ms) / 1000 : 0),
	    "backends", sa.n, "up", sa.up, "down", sa.down, "open_breakers", sa.open,
	    "pools", ctlcmd_pools(m),
	    "backends", sa.rows,
	    "registry", ctlcmd_registry(m));
}

static json_t *
ctlcmd_show_registry(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_registry(m);
}

struct model_acc {
	json_t		*rows[SHM_MODELS_MAX];	/* backends serving model id */
	uint32_t	 up[SHM_MODELS_MAX];
};

/* explain [N]: the newest N decisions of the workers' rings (worker/explain.c). */
static json_t *
ctlcmd_explain(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	const char	*e = NULL;
	long long	 n = EXPLAIN_DEFAULT;
	json_t		*data;

	if (nargs == 1 && (n = strtonum(args[0], 1, EXPLAIN_MAX, &e), e != NULL)) {
		snprintf(err, errlen, "explain: N is %s: %.32s (1 to %d)", e,
		    args[0], EXPLAIN_MAX);
		return NULL;
	}
	if ((data = explain_json(m->shm, (size_t)n)) == NULL)
		snprintf(err, errlen, "out of memory");
	return data;
}

/* show queue and show tenants: the admin API's JSON, built by worker/flowview.c. */
static json_t *
ctlcmd_show_queue(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	json_t	*data;

	if ((data = flowview_queue_json(m->shm)) == NULL)
		snprintf(err, errlen, "out of memory");
	return data;
}

static json_t *
ctlcmd_show_tenants(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	json_t	*data;

	if ((data = flowview_tenants_json(m->shm)) == NULL)
		snprintf(err, errlen, "out of memory");
	return data;
}

static void
ctlcmd_model_acc(struct shm_hdr *h, uint32_t i, const struct shm_desc *d,
    void *arg)
{
	struct model_acc	*ma = arg;
	uint32_t		 k, id;

	for (k = 0; k < d->nmodels && k < SHM_SLOT_MODELS; k++) {
		if ((id = d->models[k]) >= SHM_MODELS_MAX)
			continue;
		if (ma->rows[id] == NULL)
			ma->rows[id] = json_array();
		json_array_append_new(ma->rows[id], json_string(d->name));
		ma->up[id] += ctlcmd_eligible(shm_slot(h, i), d);
	}
}

static json_t *
ctlcmd_show_models(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	struct model_acc	*ma;
	json_t			*a = json_array();
	char			 name[SHM_NAME_MAX];
	uint32_t		 id, n;

	if ((ma = calloc(1, sizeof(*ma))) == NULL) {
		snprintf(err, errlen, "out of memory");
		json_decref(a);
		return NULL;
	}
	ctlcmd_each(m->shm, ctlcmd_model_acc, ma);
	n = atomic_load_explicit(&m->shm->nmodels, memory_order_acquire);
	for (id = 0; id < n && id < SHM_MODELS_MAX; id++) {
		if (shm_model_name(m->shm, id, name, sizeof(name)) == -1) {
			json_decref(ma->rows[id]);
			continue;
		}
		json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:o}",
		    "model", name, "id", (json_int_t)id,
		    "up", (json_int_t)ma->up[id],
		    "backends", ma->rows[id] ? ma->rows[id] : json_array()));
	}
	free(ma);
	return a;
}

static json_t *
ctlcmd_totals_json(const char *name, const struct shm_totals *t)
{
	json_t	*o;

	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
	    "s:I, s:I, s:f}",
	    "requests", (json_int_t)t->requests,
	    "fails", (json_int_t)t->fails,
	    "retries", (json_int_t)t->retries,
	    "inflight", (json_int_t)t->inflight,
	    "errors", (json_int_t)t->status[0],
	    "1xx", (json_int_t)t->status[1],
	    "2xx", (json_int_t)t->status[2],
	    "3xx", (json_int_t)t->status[3],
	    "4xx", (json_int_t)t->status[4],
	    "5xx", (json_int_t)t->status[5],
	    "bytes_in", (json_int_t)t->bytes_in,
	    "bytes_out", (json_int_t)t->bytes_out,
	    "conns", (json_int_t)t->conns,
	    "avg_ms", t->requests ? (double)t->lat_sum_us / t->requests / 1000.0 : 0.0);
	if (o != NULL && name != NULL)
		json_object_set_new(o, "name", json_string(name));
	return o;
}

struct stats_acc {
	json_t			*rows;
	struct shm_totals	 sum;
};

static void
ctlcmd_stats_row(struct shm_hdr *h, uint32_t i, const struct shm_desc *d,
    void *arg)
{
	struct stats_acc	*sa = arg;
	struct shm_totals	 t;
	int			 k;

	shm_totals(h, i, &t);
	sa->sum.requests += t.requests;
	sa->sum.fails += t.fails;
	sa->sum.retries += t.retries;
	sa->sum.inflight += t.inflight;
	sa->sum.bytes_in += t.bytes_in;
	sa->sum.bytes_out += t.bytes_out;
	sa->sum.lat_sum_us += t.lat_sum_us;
	sa->sum.conns += t.conns;
	for (k = 0; k < 6; k++)
		sa->sum.status[k] += t.status[k];
	json_array_append_new(sa->rows, ctlcmd_totals_json(d->name, &t));
}

static json_t *
ctlcmd_show_stats(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	struct stats_acc	sa;

	memset(&sa, 0, sizeof(sa));
	sa.rows = json_array();
	ctlcmd_each(m->shm, ctlcmd_stats_row, &sa);
	return json_pack("{s:o, s:o}", "backends", sa.rows,
	    "total", ctlcmd_totals_json(NULL, &sa.sum));
}

static void
ctlcmd_breaker_row(struct shm_hdr *h, uint32_t i, const struct shm_desc *d,
    void *arg)
{
	struct shm_slot	*s = shm_slot(h, i);
	char		 pool[SHM_NAME_MAX];
	uint32_t	 w;
	uint64_t	 consec = 0;

	for (w = 0; w < h->max_workers; w++)
		consec += atomic_load_explicit(&shm_ctr(h, w, i)->consec_fails,
		    memory_order_relaxed);
	control_pool_name(h, d->pool, pool, sizeof(pool));
	json_array_append_new(arg, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, "
	    "s:I, s:o}",
	    "name", d->name, "pool", pool,
	    "breaker", control_breaker_word(atomic_load_explicit(&s->breaker,
		memory_order_relaxed)),
	    "forced", control_force_word(atomic_load_explicit(&s->force_breaker,
		memory_order_relaxed)),
	    "force_seq", (json_int_t)atomic_load_explicit(&s->force_seq,
		memory_order_relaxed),
	    "opens", (json_int_t)atomic_load_explicit(&s->breaker_opens,
		memory_order_relaxed),
	    "consecutive_fails", (json_int_t)consec,
	    "trial_tickets", (json_int_t)atomic_load_explicit(&s->trial_tickets,
		memory_order_relaxed),
	    "since", ctlcmd_time_json(atomic_load_explicit(&s->breaker_change_ms,
		memory_order_relaxed))));
}

static json_t *
ctlcmd_show_breakers(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	json_t	*a = json_array();

	ctlcmd_each(m->shm, ctlcmd_breaker_row, a);
	return a;
}

static json_t *
ctlcmd_helper_row(const char *role, const struct mworker *mw)
{
	return json_pack("{s:s, s:n, s:I, s:I, s:s, s:n, s:n, s:n, s:n, s:n, s:n, s:n}",
	    "role", role, "id", "pid", (json_int_t)mw->pid,
	    "generation", (json_int_t)mw->generation, "state", "running",
	    "conns", "accepted", "queued", "started", "free_bufs", "free_fwd",
	    "accept_paused");
}

static json_t *
ctlcmd_show_workers(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	json_t			*a = json_array(), *row;
	const struct shm_worker	*sw;
	int			 i;

	for (i = 0; i < SHM_WORKERS_MAX; i++) {
		const struct mworker *mw = &m->w[i];

		if (mw->pid <= 0 || mw->stripe >= m->shm->max_workers)
			continue;
		sw = &m->shm->workers[mw->stripe];
		row = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:o}",
		    "role", "worker", "id", (json_int_t)mw->pos,
		    "stripe", (json_int_t)mw->stripe,
		    "pid", (json_int_t)mw->pid,
		    "generation", (json_int_t)mw->generation,
		    "state", mw->old || atomic_load_explicit(&sw->state,
			memory_order_relaxed) == 2 ? "draining" : "running",
		    "conns", (json_int_t)atomic_load_explicit(&sw->conns,
			memory_order_relaxed),
		    "accepted", (json_int_t)atomic_load_explicit(&sw->accepted,
			memory_order_relaxed),
		    "queued", (json_int_t)atomic_load_explicit(&sw->queued,
			memory_order_relaxed),
		    "started", ctlcmd_time_json(atomic_load_explicit(&sw->started_ms,
			memory_order_relaxed)));
		json_object_set_new(row, "free_bufs", json_integer(
		    atomic_load_explicit(&sw->free_bufs, memory_order_relaxed)));
		json_object_set_new(row, "free_fwd", json_integer(
		    atomic_load_explicit(&sw->free_fwd, memory_order_relaxed)));
		json_object_set_new(row, "accept_paused", json_integer((json_int_t)
		    atomic_load_explicit(&sw->accept_paused, memory_order_relaxed)));
		json_array_append_new(a, row);
	}
	if (m->prober.pid > 0)
		json_array_append_new(a, ctlcmd_helper_row("prober", &m->prober));
	if (m->syncer.pid > 0)
		json_array_append_new(a, ctlcmd_helper_row("syncer", &m->syncer));
	return a;
}

/* The rows of a directive table for obj as a JSON object of text values. */
static json_t *
ctlcmd_conf_rows(const struct conf_directive *tab, size_t n, const void *obj)
{
	json_t	*o = json_object();
	char	 buf[CONF_TOKEN_MAX + CONF_PATH_MAX];
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (conf_directive_format(&tab[i], obj, buf, sizeof(buf)) == -1)
			continue;
		if ((strcmp(tab[i].name, "admin.token") == 0 ||
		    strcmp(tab[i].name, "registry.token") == 0) && buf[0] != '\0')
			strlcpy(buf, MASKED, sizeof(buf));
		json_object_set_new(o, tab[i].name, json_string(buf));
	}
	return o;
}

static json_t *
ctlcmd_conf_json(const struct conf *cf)
{
	json_t	*listen = json_array(), *pools = json_object(), *routes = json_array();
	json_t	*o, *bes, *models;
	size_t	 i, b;
	int	 k;

	for (i = 0; i < cf->nlisten; i++)
		json_array_append_new(listen, json_string(cf->listen[i].text));
	for (i = 0; i < cf->npools; i++) {
		const struct conf_pool *p = &cf->pools[i];

		o = ctlcmd_conf_rows(conf_pool_keys, conf_npool_keys, p);
		bes = json_array();
		for (b = 0; b < p->nbackends; b++) {
			json_t *be = ctlcmd_conf_rows(conf_backend_keys,
			    conf_nbackend_keys, &p->backends[b]);

			models = json_array();
			for (k = 0; k < p->backends[b].nmodels; k++)
				json_array_append_new(models,
				    json_string(p->backends[b].models[k]));
			json_object_set_new(be, "models", models);
			json_array_append_new(bes, be);
		}
		json_object_set_new(o, "backends", bes);
		json_object_set_new(pools, p->name, o);
	}
	for (i = 0; i < cf->nroutes; i++) {
		o = ctlcmd_conf_rows(conf_route_keys, conf_nroute_keys, &cf->routes[i]);
		json_object_set_new(o, "pool",
		    json_string(cf->pools[cf->routes[i].pool].name));
		json_array_append_new(routes, o);
	}
	return json_pack("{s:s, s:o, s:o, s:o, s:o}",
	    "file", cf->file, "settings",
	    ctlcmd_conf_rows(conf_directives, conf_ndirectives, cf),
	    "listen", listen, "pools", pools, "routes", routes);
}

static json_t *
ctlcmd_show_config(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	struct conf	 masked;
	char		*text = NULL;
	size_t		 len = 0;
	FILE		*fp;
	json_t		*o;

	if (json)
		return ctlcmd_conf_json(m->conf);
	/* a shallow copy shares the pools and routes; only the secrets differ */
	masked = *m->conf;
	if (masked.admin.token[0] != '\0')
		strlcpy(masked.admin.token, MASKED, sizeof(masked.admin.token));
	if (masked.registry.token[0] != '\0')
		strlcpy(masked.registry.token, MASKED, sizeof(masked.registry.token));
	if ((fp = open_memstream(&text, &len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	conf_dump(&masked, fp);
	if (fclose(fp) == EOF) {
		free(text);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	o = json_pack("{s:s}", "text", text);
	free(text);
	return o;
}

/* The slot of backend name, or -1 with err filled. */
static int
ctlcmd_backend(struct master *m, const char *name, struct shm_desc *d,
    char *err, size_t errlen)
{
	int	slot;

	if ((slot = master_slot_find(m->shm, name)) == -1) {
		snprintf(err, errlen, "no such backend: %s", name);
		return -1;
	}
	shm_desc_read(shm_slot(m->shm, (uint32_t)slot), d);
	return slot;
}

/* Publish a changed descriptor: workers see it with the next generation. */
static void
ctlcmd_publish(struct master *m, int slot, const struct shm_desc *d)
{
	shm_desc_write(shm_slot(m->shm, (uint32_t)slot), d);
	shm_gen_bump(m->shm);
}

static json_t *
ctlcmd_backend_flags(struct master *m, const char *name, uint32_t set,
    char *err, size_t errlen)
{
	struct shm_desc	d;
	uint32_t	old;
	int		slot;

	if ((slot = ctlcmd_backend(m, name, &d, err, errlen)) == -1)
		return NULL;
	old = d.flags;
	d.flags = (d.flags & ~(SHM_F_DISABLED | SHM_F_DRAINING)) | set;
	if (d.flags != old)
		ctlcmd_publish(m, slot, &d);
	return ctlcmd_message(json_pack("{s:s, s:s, s:s}", "backend", d.name,
	    "state", control_state_word(d.flags),
	    "previous", control_state_word(old)),
	    "backend %s: %s", d.name, control_state_word(d.flags));
}

static json_t *
ctlcmd_backend_enable(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_backend_flags(m, args[0], 0, err, errlen);
}

static json_t *
ctlcmd_backend_disable(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_backend_flags(m, args[0], SHM_F_DISABLED, err, errlen);
}

static json_t *
ctlcmd_backend_drain(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_backend_flags(m, args[0], SHM_F_DRAINING, err, errlen);
}

static json_t *
ctlcmd_backend_weight(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	struct shm_desc	 d;
	const char	*errstr;
	long long	 w;
	uint32_t	 old;
	int		 slot;

	w = strtonum(args[1], 1, CONF_WEIGHT_MAX, &errstr);
	if (errstr != NULL) {
		snprintf(err, errlen, "weight %s is %s (1-%d)", args[1], errstr,
		    CONF_WEIGHT_MAX);
		return NULL;
	}
	if ((slot = ctlcmd_backend(m, args[0], &d, err, errlen)) == -1)
		return NULL;
	old = d.weight;
	d.weight = (uint32_t)w;
	if (d.weight != old)
		ctlcmd_publish(m, slot, &d);
	return ctlcmd_message(json_pack("{s:s, s:I, s:I}", "backend", d.name,
	    "weight", (json_int_t)d.weight, "previous", (json_int_t)old),
	    "backend %s: weight %u (was %u)", d.name, d.weight, old);
}

/* An order for the prober, the breaker's only writer: the order, then a new seq. */
static json_t *
ctlcmd_breaker_force(struct master *m, const char *name, uint32_t order,
    char *err, size_t errlen)
{
	struct shm_desc	 d;
	struct shm_slot	*s;
	int		 slot;

	if ((slot = ctlcmd_backend(m, name, &d, err, errlen)) == -1)
		return NULL;
	s = shm_slot(m->shm, (uint32_t)slot);
	atomic_store_explicit(&s->force_breaker, order, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->force_seq, 1, memory_order_release);
	return ctlcmd_message(json_pack("{s:s, s:s, s:s}", "backend", d.name,
	    "forced", control_force_word(order),
	    "breaker", control_breaker_word(atomic_load_explicit(&s->breaker,
		memory_order_relaxed))),
	    "backend %s: breaker ordered %s (now %s; the prober applies it)",
	    d.name, order == SHM_FORCE_OPEN ? "open" : order == SHM_FORCE_CLOSE ?
	    "closed" : "released",
	    control_breaker_word(atomic_load_explicit(&s->breaker,
	    memory_order_relaxed)));
}

static json_t *
ctlcmd_breaker_open(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_breaker_force(m, args[0], SHM_FORCE_OPEN, err, errlen);
}

static json_t *
ctlcmd_breaker_close(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_breaker_force(m, args[0], SHM_FORCE_CLOSE, err, errlen);
}

static json_t *
ctlcmd_breaker_release(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_breaker_force(m, args[0], SHM_FORCE_NONE, err, errlen);
}

/* strategy set [POOL] NAME: one pool, or every pool when none is named. */
static json_t *
ctlcmd_strategy_set(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	const char	*sname = args[nargs - 1];
	char		 name[SHM_NAME_MAX], msg[512];
	json_t		*pools, *o;
	uint32_t	 p, old;
	int		 s, one = -1, k;
	size_t		 len;

	if ((s = conf_strategy_from_name(sname)) == -1) {
		len = (size_t)snprintf(err, errlen, "unknown strategy: %s; valid "
		    "strategies:", sname);
		for (k = 0; k < STRAT_COUNT && len < errlen; k++)
			len += (size_t)snprintf(err + len, errlen - len, "%s %s",
			    k ? "," : "", conf_strategy_name((enum conf_strategy)k));
		return NULL;
	}
	if (nargs == 2 && (one = shm_pool_find(m->shm, args[0])) == -1) {
		snprintf(err, errlen, "no such pool: %s", args[0]);
		return NULL;
	}
	pools = json_array();
	msg[0] = '\0';
	for (p = 0; p < SHM_POOLS_MAX; p++) {
		if (one != -1 && p != (uint32_t)one)
			continue;
		control_pool_name(m->shm, p, name, sizeof(name));
		if (name[0] == '\0')
			continue;
		old = shm_pool_strategy(m->shm, p);
		shm_pool_strategy_set(m->shm, p, (uint32_t)s);
		json_array_append_new(pools, json_pack("{s:s, s:s, s:s}",
		    "pool", name, "previous", conf_strategy_name(old),
		    "strategy", conf_strategy_name((enum conf_strategy)s)));
		len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, "%spool %s: %s -> %s",
		    len ? "\n" : "", name, conf_strategy_name(old),
		    conf_strategy_name((enum conf_strategy)s));
	}
	o = json_pack("{s:o}", "pools", pools);
	return ctlcmd_message(o, "%s", msg);
}

static json_t *
ctlcmd_reload(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	size_t	len;
	int	rc;

	err[0] = '\0';
	if ((rc = master_reload(m, err, errlen)) == 1)	/* waits on host name lookups */
		return ctlcmd_message(json_pack("{s:I, s:b}", "generation",
		    (json_int_t)m->generation, "deferred", 1), "%s", err);
	if (rc == -1) {
		/* master_reload() writes one FILE:LINE:COL line per error */
		len = strlen(err);
		while (len > 0 && err[len - 1] == '\n')
			err[--len] = '\0';
		if (len == 0)
			snprintf(err, errlen, "reload failed");
		return NULL;
	}
	return ctlcmd_message(json_pack("{s:I}", "generation",
	    (json_int_t)m->generation), "reloaded: generation %u", m->generation);
}

/* The stop itself happens in control.c once this reply is on its way. */
static json_t *
ctlcmd_stop(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_message(json_pack("{s:b}", "stopping", 1), "stopping");
}

static json_t *
ctlcmd_log_level(struct master *m, int verbose)
{
	log_setverbose(verbose);
	m->verbose = verbose;
	atomic_store_explicit(&m->shm->verbose, (uint32_t)verbose,
	    memory_order_release);
	return ctlcmd_message(json_pack("{s:i}", "verbose", verbose),
	    "logging %s", verbose ? "verbose" : "brief");
}

static json_t *
ctlcmd_log_verbose(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_log_level(m, 1);
}

static json_t *
ctlcmd_log_brief(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_log_level(m, 0);
}

/* No log files yet (the access log lands later): nothing to reopen. */
static json_t *
ctlcmd_log_reopen(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	master_log_reopen(m);	/* every worker reopens its access log (SIGUSR1) */
	return ctlcmd_message(json_pack("{s:b}", "reopened", 1),
	    "log files reopened");
}

/* The subscription itself is control.c's; this is its first reply. */
static json_t *
ctlcmd_monitor(struct master *m, const char *const *args, int nargs,
    int json, char *err, size_t errlen)
{
	return ctlcmd_message(json_pack("{s:b}", "monitor", 1),
	    "monitoring routerd events; interrupt to stop");
}

const control_handler control_handlers[CTL_NCMDS] = {
	[CTL_SHOW_SUMMARY] = ctlcmd_show_summary,
	[CTL_SHOW_BACKENDS] = ctlcmd_show_backends,
	[CTL_SHOW_POOLS] = ctlcmd_show_pools,
	[CTL_SHOW_MODELS] = ctlcmd_show_models,
	[CTL_SHOW_STATS] = ctlcmd_show_stats,
	[CTL_SHOW_BREAKERS] = ctlcmd_show_breakers,
	[CTL_SHOW_WORKERS] = ctlcmd_show_workers,
	[CTL_SHOW_CONFIG] = ctlcmd_show_config,
	[CTL_SHOW_REGISTRY] = ctlcmd_show_registry,
	[CTL_SHOW_QUEUE] = ctlcmd_show_queue,
	[CTL_SHOW_TENANTS] = ctlcmd_show_tenants,
	[CTL_EXPLAIN] = ctlcmd_explain,
	[CTL_BACKEND_ENABLE] = ctlcmd_backend_enable,
	[CTL_BACKEND_DISABLE] = ctlcmd_backend_disable,
	[CTL_BACKEND_DRAIN] = ctlcmd_backend_drain,
	[CTL_BACKEND_WEIGHT] = ctlcmd_backend_weight,
	[CTL_BREAKER_OPEN] = ctlcmd_breaker_open,
	[CTL_BREAKER_CLOSE] = ctlcmd_breaker_close,
	[CTL_BREAKER_RELEASE] = ctlcmd_breaker_release,
	[CTL_STRATEGY_SET] = ctlcmd_strategy_set,
	[CTL_RELOAD] = ctlcmd_reload,
	[CTL_STOP] = ctlcmd_stop,
	[CTL_LOG_VERBOSE] = ctlcmd_log_verbose,
	[CTL_LOG_BRIEF] = ctlcmd_log_brief,
	[CTL_LOG_REOPEN] = ctlcmd_log_reopen,
	[CTL_MONITOR] = ctlcmd_monitor,
};

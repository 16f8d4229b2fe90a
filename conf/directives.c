/* The directive tables and the value types they use: parse, check, format. */
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>

#include "conf.h"
#include "conf_private.h"

#define MS_SEC		1000LL
#define MS_MIN		(60 * MS_SEC)
#define MS_HOUR		(60 * MS_MIN)
#define MS_DAY		(24 * MS_HOUR)
#define KIB		1024LL
#define MIB		(1024 * KIB)
#define GIB		(1024 * MIB)

#define SUN_PATH_LEN	sizeof(((struct sockaddr_un *)0)->sun_path)

/* Index = enum value; kept next to the enums' order in conf.h. */
const char *const conf_strategy_names[] = {
	"round_robin", "weighted", "least_connections", "power_of_two",
	"least_latency", "random", "geo", "model", "least_tokens", "llm", NULL
};
/* The same, and "none" (STRAT_COUNT): for shadow_strategy. */
static const char *const conf_shadow_names[] = {
	"round_robin", "weighted", "least_connections", "power_of_two",
	"least_latency", "random", "geo", "model", "least_tokens", "llm",
	"none", NULL
};
_Static_assert(sizeof(conf_shadow_names) / sizeof(conf_shadow_names[0]) ==
    STRAT_COUNT + 2, "shadow names out of step with enum conf_strategy");
/* Index = enum conf_filter. */
static const char *const conf_filter_names[] = {
	"none", "model", "region", "saturation", NULL
};
static const char *const conf_health_names[] = {
	"http", "tcp", "llm", "none", NULL
};
static const char *const conf_registry_names[] = {
	"mech-compute", "simple", "etcd", NULL
};

#define C(f)	offsetof(struct conf, f), sizeof(((struct conf *)0)->f)
#define P(f)	offsetof(struct conf_pool, f), sizeof(((struct conf_pool *)0)->f)
#define B(f)	offsetof(struct conf_backend, f), \
		    sizeof(((struct conf_backend *)0)->f)
#define R(f)	offsetof(struct conf_route, f), sizeof(((struct conf_route *)0)->f)

/*
 * Every scalar setting of routerd.  Rows of one section stay together:
 * conf_dump() opens a section where its first row is.
 */
const struct conf_directive conf_directives[] = {
	{ "workers", "workers", "auto", "ROUTER_WORKER_THREADS", "workers",
	  "worker processes; auto = online CPUs, at most 32",
	  C(workers), 1, CONF_WORKERS_MAX, NULL },
	{ "user", "string", "", NULL, NULL,
	  "user to run as after binding the listeners; empty = stay",
	  C(user), 0, 0, NULL },
	{ "group", "string", "", NULL, NULL,
	  "group to run as; empty = the user's primary group",
	  C(group), 0, 0, NULL },
	{ "region", "string", "", NULL, NULL,
	  "this router's region, preferred by the geo strategy",
	  C(region), 0, 0, NULL },
	{ "strategy", "enum", "round_robin", "ROUTER_STRATEGY", "strategy",
	  "balancing strategy of pools that do not name their own",
	  C(strategy), 0, 0, conf_strategy_names },
	{ "pidfile", "string", "/run/routerd/routerd.pid", NULL, NULL,
	  "pid file of the master",
	  C(pidfile), 1, 0, NULL },
	{ "access_log", "string", "", NULL, NULL,
	  "access log file; empty = no access log",
	  C(access_log), 0, 0, NULL },
	{ "max_backends", "int", "1024", NULL, NULL,
	  "capacity of the shared backend table (registry included)",
	  C(max_backends), 1, 65536, NULL },

	{ "admin.address", "addr", "", NULL, NULL,
	  "JSON admin API and Prometheus /metrics; empty = off",
	  C(admin.addr), 0, 0, NULL },
	{ "admin.token", "string", "", NULL, NULL,
	  "Bearer token that admin API writes must carry",
	  C(admin.token), 0, 0, NULL },

	{ "control.socket", "string", "/run/routerd/routerd.sock", NULL, NULL,
	  "routerctl's UNIX socket",
	  C(control.socket), 1, SUN_PATH_LEN - 1, NULL },

	{ "health.type", "enum", "http", NULL, NULL,
	  "active check: http, tcp, llm or none",
	  C(health.type), 0, 0, conf_health_names },
	{ "health.interval", "duration", "30s", "ROUTER_HEALTH_CHECK_INTERVAL",
	  "health-interval", "time between two checks of one backend",
	  C(health.interval_ms), 10, INT_MAX, NULL },
	{ "health.timeout", "duration", "5s", "ROUTER_HEALTH_CHECK_TIMEOUT",
	  "health-timeout", "time a check may take before it counts as failed",
	  C(health.timeout_ms), 10, INT_MAX, NULL },
	{ "health.path", "urlpath", "/health", NULL, NULL,
	  "URL path of http checks",
	  C(health.path), 1, 0, NULL },
	{ "health.port_offset", "int", "0", NULL, NULL,
	  "check port minus backend port (1: a helper on port + 1)",
	  C(health.port_offset), 0, 65535, NULL },
	{ "health.fall", "int", "3", NULL, "max-errors",
	  "consecutive failed checks that mark a backend down",
	  C(health.fall), 1, 1000, NULL },
	{ "health.rise", "int", "2", NULL, NULL,
	  "consecutive good checks that mark a backend up",
	  C(health.rise), 1, 1000, NULL },
	{ "health.metrics", "bool", "false", NULL, NULL,
	  "read each backend's Prometheus metrics (vLLM names) into the table",
	  C(health.metrics), 0, 0, NULL },
	{ "health.metrics_interval", "duration", "1s", NULL, NULL,
	  "how often; a figure older than three intervals is not used",
	  C(health.metrics_interval_ms), 50, INT_MAX, NULL },
	{ "health.metrics_path", "urlpath", "/metrics", NULL, NULL,
	  "URL path of the backends' Prometheus metrics",
	  C(health.metrics_path), 1, 0, NULL },
	{ "health.models", "bool", "false", NULL, NULL,
	  "read each backend's /v1/models: a model it does not list is out there",
	  C(health.models), 0, 0, NULL },

	{ "breaker.threshold", "int", "10", "ROUTER_CIRCUIT_BREAKER_THRESHOLD",
	  NULL, "consecutive failed requests that open a backend's breaker",
	  C(breaker.threshold), 1, 1000000, NULL },
	{ "breaker.timeout", "duration", "60s", "ROUTER_CIRCUIT_BREAKER_TIMEOUT",
	  NULL, "time an open breaker waits before going half-open",
	  C(breaker.timeout_ms), 1, INT_MAX, NULL },
	{ "breaker.half_open_requests", "int", "1", NULL, NULL,
	  "trial requests a half-open breaker lets through",
	  C(breaker.half_open_requests), 1, 1000, NULL },

	{ "retries.max", "int", "3", "ROUTER_MAX_RETRIES", NULL,
	  "further attempts after a failed one, when replay is safe",
	  C(retries.max), 0, CONF_RETRIES_MAX, NULL },
	{ "retries.delay", "duration", "1s", "ROUTER_RETRY_DELAY", NULL,
	  "back-off before retrying the same backend",
	  C(retries.delay_ms), 0, INT_MAX, NULL },
	{ "retries.buffer", "size", "64k", NULL, NULL,
	  "request bodies up to this size are kept for a retry",
	  C(retries.buffer), CONF_HEAD_BUF, GIB, NULL },
	{ "retries.on_status", "statuses", "502,503,504", NULL, NULL,
	  "response statuses that send an idempotent request to another backend",
	  C(retries.on_status), 0, 0, NULL },
	{ "retries.non_idempotent", "bool", "false", NULL, NULL,
	  "replay POST and PATCH like idempotent requests (they may then run twice)",
	  C(retries.non_idempotent), 0, 0, NULL },
	{ "retries.budget_percent", "int", "20", NULL, NULL,
	  "retries of all workers, per cent of requests over 10 s; 0 = no budget",
	  C(retries.budget_percent), 0, 100, NULL },
	{ "retries.budget_min", "int", "10", NULL, NULL,
	  "retries per second the budget allows however few requests came",
	  C(retries.budget_min), 0, 1000000, NULL },

	{ "queue.size", "int", "1000", "ROUTER_QUEUE_SIZE", NULL,
	  "requests that may wait for a free backend, all workers together",
	  C(queue.size), 0, 10000000, NULL },
	{ "queue.timeout", "duration", "30s", NULL, NULL,
	  "longest wait in the queue before a 503",
	  C(queue.timeout_ms), 0, INT_MAX, NULL },
	{ "queue.tenant", "tenant", "header:Authorization", NULL, NULL,
	  "who a request belongs to: header:NAME (else its address) or client",
	  C(queue.tenant), 0, 0, NULL },
	{ "queue.priority_header", "string", "X-Priority", NULL, NULL,
	  "request field with the priority band, -8 to 7; empty = none",
	  C(queue.priority_header), 0, 0, NULL },
	{ "queue.saturation", "bool", "true", NULL, NULL,
	  "requests wait here while every backend is over its load signals",
	  C(queue.saturation), 0, 0, NULL },

	{ "registry.url", "url", "", "ROUTER_REGISTRY_URL", NULL,
	  "service registry to pull backends from; empty = no syncer",
	  C(registry.url), 0, 0, NULL },
	{ "registry.format", "enum", "mech-compute", NULL, NULL,
	  "registry protocol: mech-compute, simple or etcd",
	  C(registry.format), 0, 0, conf_registry_names },
	{ "registry.token", "string", "", "ROUTER_REGISTRY_TOKEN", NULL,
	  "token sent to the registry as X-Registry-Token",
	  C(registry.token), 0, 0, NULL },
	{ "registry.interval", "duration", "10s", NULL,
	  "registry-sync-interval", "time between two registry pulls",
	  C(registry.interval_ms), 100, INT_MAX, NULL },
	{ "registry.grace", "duration", "60s", NULL,
	  "service-removal-grace-period",
	  "how long a backend missing from the registry is kept",
	  C(registry.grace_ms), 0, INT_MAX, NULL },
	{ "registry.pool", "name", "llm", NULL, NULL,
	  "pool the registry's backends go to (created if not defined)",
	  C(registry.pool), 1, 0, NULL },
	{ "registry.environment", "string", "", NULL, NULL,
	  "registry environment to select; empty = all",
	  C(registry.environment), 0, 0, NULL },
	{ "registry.prefix", "string", "", NULL, NULL,
	  "etcd key prefix",
	  C(registry.prefix), 0, 0, NULL },
	{ "registry.timeout", "duration", "10s", NULL, NULL,
	  "time one registry pull may take, connect to last byte",
	  C(registry.timeout_ms), 10, INT_MAX, NULL },
	{ "registry.max_size", "size", "16m", NULL, NULL,
	  "largest registry answer; a bigger one fails the pull",
	  C(registry.max_size), KIB, GIB, NULL },
	{ "registry.type_filter", "string", "openai-api", NULL, NULL,
	  "simple format: only services whose metadata.type is this; empty = all",
	  C(registry.type_filter), 0, 0, NULL },

	{ "timeout.connect", "duration", "5s", NULL, NULL,
	  "connecting to a backend",
	  C(timeout.connect_ms), 1, INT_MAX, NULL },
	{ "timeout.client_header", "duration", "10s", NULL, NULL,
	  "whole request head from the client (a total, not an idle timer)",
	  C(timeout.client_header_ms), 1, INT_MAX, NULL },
	{ "timeout.client_idle", "duration", "60s", NULL, NULL,
	  "idle keep-alive connection or stalled request body",
	  C(timeout.client_idle_ms), 1, INT_MAX, NULL },
	{ "timeout.upstream_response", "duration", "60s", NULL, NULL,
	  "silence between two response bytes from a backend",
	  C(timeout.upstream_response_ms), 1, INT_MAX, NULL },
	{ "timeout.upstream_idle", "duration", "4s", NULL, NULL,
	  "idle keep-alive connection to a backend, closed by us first",
	  C(timeout.upstream_idle_ms), 1, INT_MAX, NULL },
	{ "timeout.drain", "duration", "30s", NULL, NULL,
	  "time old workers get to finish their requests on reload or stop",
	  C(timeout.drain_ms), 0, INT_MAX, NULL },
	{ "timeout.first_token", "duration", "30s", NULL, NULL,
	  "from sending a request to the backend's first body byte (first SSE event)",
	  C(timeout.first_token_ms), 1, INT_MAX, NULL },
	{ "timeout.stream_idle", "duration", "60s", NULL, NULL,
	  "silence between two events of a stream once it began",
	  C(timeout.stream_idle_ms), 1, INT_MAX, NULL },

	{ "llm.block", "int", "256", NULL, NULL,
	  "characters per prefix block of a prompt",
	  C(llm.block), 16, 65536, NULL },
	{ "llm.max_blocks", "int", "128", NULL, NULL,
	  "prefix blocks hashed per request (the rest of a long prompt is not)",
	  C(llm.max_blocks), 1, 1024, NULL },
	{ "llm.affinity_limit", "int", "200000", NULL, NULL,
	  "uncached prompt tokens in flight at a backend before its prefix affinity yields",
	  C(llm.affinity_limit), 1, LLONG_MAX, NULL },
	{ "llm.queue_limit", "int", "8", NULL, NULL,
	  "waiting requests a backend reports (health.metrics) before it yields",
	  C(llm.queue_limit), 0, 1000000, NULL },
	{ "llm.kv_limit", "int", "95", NULL, NULL,
	  "KV-cache use a backend reports, in percent, before it yields",
	  C(llm.kv_limit), 1, 100, NULL },
	{ "llm.hold_headers", "bool", "true", NULL, NULL,
	  "llm pools: hold the response head until the first SSE event, so a failure before it is retried",
	  C(llm.hold_headers), 0, 0, NULL },
	{ "llm.output_tokens", "int", "256", NULL, NULL,
	  "output tokens expected of a request that sets no max_tokens",
	  C(llm.output_tokens), 1, 1000000, NULL },
	{ "llm.load_factor", "int", "125", NULL, NULL,
	  "cold prefixes: a backend above this percent of the mean token load is passed over",
	  C(llm.load_factor), 100, 1000, NULL },

	{ "limits.header_size", "size", "16k", NULL, NULL,
	  "largest request head (431 beyond)",
	  C(limits.header_size), KIB, CONF_HEAD_BUF, NULL },
	{ "limits.header_count", "int", "100", NULL, NULL,
	  "most request header fields (431 beyond)",
	  C(limits.header_count), 1, CONF_HEAD_FIELDS, NULL },
	{ "limits.uri", "size", "8k", NULL, NULL,
	  "longest request target (414 beyond); at most header_size",
	  C(limits.uri), 64, CONF_HEAD_BUF, NULL },
	{ "limits.body", "size", "0", NULL, NULL,
	  "largest request body (413 beyond); 0 = unlimited",
	  C(limits.body), 0, LLONG_MAX, NULL },
	{ "limits.hold", "size", "1m", NULL, NULL,
	  "request bodies up to this are received whole before a backend is chosen; 0 = none",
	  C(limits.hold), 0, 256 * MIB, NULL },
	{ "limits.hold_memory", "size", "256m", NULL, NULL,
	  "memory one worker may spend on held request bodies at once",
	  C(limits.hold_memory), 0, LLONG_MAX, NULL },
	{ "limits.connections", "int", "10000", NULL, NULL,
	  "client connections per worker; beyond, new ones wait in the listen queue",
	  C(limits.connections), 1, CONF_CONNECTIONS_MAX, NULL },
};
const size_t conf_ndirectives = sizeof(conf_directives) /
    sizeof(conf_directives[0]);

/* One entry of pools: (the map key is the pool's name). */
const struct conf_directive conf_pool_keys[] = {
	{ "strategy", "enum", NULL, NULL, NULL,
	  "balancing strategy; default: the top-level strategy",
	  P(strategy), 0, 0, conf_strategy_names },
	{ "base_strategy", "enum", "round_robin", NULL, NULL,
	  "for geo and model: what ranks the backends that qualify",
	  P(base_strategy), 0, 0, conf_strategy_names },
	{ "backup_pool", "name", "", NULL, NULL,
	  "pool that takes the requests when no backend here is eligible",
	  P(backup_pool), 0, 0, NULL },
	{ "allow_strategies", "strategies", "", NULL, NULL,
	  "strategies a request may ask for with X-Router-Strategy",
	  P(allow_strategies), 0, 0, conf_strategy_names },
	{ "shadow_strategy", "enum", "none", NULL, NULL,
	  "computed beside every pick, never used; its agreement is in the metrics",
	  P(shadow_strategy), 0, 0, conf_shadow_names },
	{ "filters", "filters", "", NULL, NULL,
	  "filters applied in order before the strategy: model, region, saturation",
	  P(filters), 0, CONF_FILTERS_MAX, conf_filter_names },
	{ "backends", "backends", NULL, NULL, NULL,
	  "list of backends (at least one, except in registry.pool)",
	  0, 0, 0, 0, NULL },
};
const size_t conf_npool_keys = sizeof(conf_pool_keys) /
    sizeof(conf_pool_keys[0]);

/* One entry of a backends: list. */
const struct conf_directive conf_backend_keys[] = {
	{ "name", "name", NULL, NULL, NULL,
	  "unique among all pools; default: the address",
	  B(name), 1, 0, NULL },
	{ "address", "addr", NULL, NULL, NULL,
	  "host:port, resolved at load time (required)",
	  B(addr), 0, 0, NULL },
	{ "weight", "int", "1", NULL, NULL,
	  "share for the weighted strategy",
	  B(weight), 1, CONF_WEIGHT_MAX, NULL },
	{ "backup", "bool", "false", NULL, NULL,
	  "used only when no primary backend of the pool is eligible",
	  B(backup), 0, 0, NULL },
	{ "max_conns", "int", "0", NULL, NULL,
	  "concurrent requests; 0 = unlimited",
	  B(max_conns), 0, 1000000, NULL },
	{ "region", "string", "", NULL, NULL,
	  "region, for the geo strategy",
	  B(region), 0, 0, NULL },
	{ "health_path", "urlpath", "", NULL, NULL,
	  "URL path of this backend's http check; empty = health.path",
	  B(health_path), 0, 0, NULL },
	{ "models", "list", NULL, NULL, NULL,
	  "model names this backend serves, for the model strategy",
	  B(models), 0, CONF_MODELS_MAX, NULL },
};
const size_t conf_nbackend_keys = sizeof(conf_backend_keys) /
    sizeof(conf_backend_keys[0]);

/* One entry of routes: the longest matching prefix wins, host-specific first. */
const struct conf_directive conf_route_keys[] = {
	{ "prefix", "urlpath", "/", NULL, NULL,
	  "request path prefix; / matches every path",
	  R(prefix), 1, 0, NULL },
	{ "host", "string", "", NULL, NULL,
	  "Host the request must name; empty = any",
	  R(host), 0, 0, NULL },
	{ "pool", "pool", NULL, NULL, NULL,
	  "pool that serves the matching requests (required)",
	  R(pool), 0, 0, NULL },
};
const size_t conf_nroute_keys = sizeof(conf_route_keys) /
    sizeof(conf_route_keys[0]);

#define L(f)	offsetof(struct conf_ratelimit, f), \
		    sizeof(((struct conf_ratelimit *)0)->f)
/* One entry of ratelimits: a tenant, or "*" for each tenant no entry names. */
const struct conf_directive conf_ratelimit_keys[] = {
	{ "tenant", "string", NULL, NULL, NULL,
	  "the tenant's key (queue.tenant's value), or * for each other tenant",
	  L(tenant), 1, 0, NULL },
	{ "requests_per_second", "int", "0", NULL, NULL,
	  "requests per second, all workers together; 0 = no limit",
	  L(rps), 0, 10000000, NULL },
	{ "burst", "int", "0", NULL, NULL,
	  "requests at once above the rate; 0 = one second's worth",
	  L(burst), 0, 10000000, NULL },
	{ "tokens_per_minute", "int", "0", NULL, NULL,
	  "prompt and output tokens per minute, all workers together; 0 = no limit",
	  L(tpm), 0, 1000000000000LL, NULL },
	{ "priority", "int", "0", NULL, NULL,
	  "band of its requests that do not send the priority header",
	  L(priority), CONF_PRIO_MIN, CONF_PRIO_MAX, NULL },
};
const size_t conf_nratelimit_keys = sizeof(conf_ratelimit_keys) /
    sizeof(conf_ratelimit_keys[0]);
#undef L

#undef C
#undef P
#undef B
#undef R

/*
 * A value type: set() parses text into the field at obj + d->off and checks
 * it against the row's limits, writing a message to err on failure (-1);
 * format() writes the field back as text set() accepts.
 */
struct conf_type {
	const char	*name;
	int		(*set)(const struct conf_directive *, void *,
			    const char *, char *, size_t);
	void		(*format)(const struct conf_directive *, const void *,
			    char *, size_t);
	int		 quoted;	/* conf_dump() quotes the text */
};

static void
conf_put_ll(const struct conf_directive *d, void *field, long long v)
{
	int	 i;
	int64_t	 i64;

	if (d->size == sizeof(int)) {
		i = (int)v;
		memcpy(field, &i, sizeof(i));
	} else {
		i64 = v;
		memcpy(field, &i64, sizeof(i64));
	}
}

static long long
conf_get_ll(const struct conf_directive *d, const void *field)
{
	int	 i;
	int64_t	 i64;

	if (d->size == sizeof(int)) {
		memcpy(&i, field, sizeof(i));
		return i;
	}
	memcpy(&i64, field, sizeof(i64));
	return i64;
}

/*
 * Why a directive's range ends where it does, when the bound is a size in
 * the code rather than a matter of taste: the range error says it.
 */
static const struct {
	const char	*name, *why;
} conf_range_whys[] = {
	{ "workers", "a reload runs the old and the new workers side by side, "
	  "and the table has 64 worker stripes" },
	{ "retries.max", "each failed backend is excluded from the next "
	  "attempt, and the exclusion set holds 8" },
	{ "retries.buffer", "the retry buffer also carries the request head, "
	  "so it is at least the 32k head buffer" },
	{ "limits.header_size", "a request head must fit the worker's 32k "
	  "input buffer" },
	{ "limits.uri", "a request head must fit the worker's 32k input buffer" },
	{ "limits.header_count", "a parsed head holds at most 256 fields" },
};

/* ": why" for the range error of d, or "". */
static const char *
conf_range_why(const struct conf_directive *d, char *buf, size_t len)
{
	size_t	 i;

	buf[0] = '\0';
	for (i = 0; i < sizeof(conf_range_whys) / sizeof(conf_range_whys[0]); i++)
		if (d->name != NULL && strcmp(d->name, conf_range_whys[i].name) == 0)
			snprintf(buf, len, ": %s", conf_range_whys[i].why);
	return buf;
}

static int
conf_set_int(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	const char	*errstr;
	char		 why[128];
	long long	 v;

	v = strtonum(text, d->min, d->max, &errstr);
	if (errstr != NULL) {
		snprintf(err, errlen, "'%s' is not an integer from %lld to %lld%s",
		    text, d->min, d->max, conf_range_why(d, why, sizeof(why)));
		return -1;
	}
	conf_put_ll(d, field, v);
	return 0;
}

static void
conf_fmt_int(const struct conf_directive *d, const void *field, char *buf,
    size_t len)
{
	snprintf(buf, len, "%lld", conf_get_ll(d, field));
}

static int
conf_set_workers(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	long	 n;

	if (strcasecmp(text, "auto") != 0)
		return conf_set_int(d, field, text, err, errlen);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > d->max)
		n = d->max;
	conf_put_ll(d, field, n);
	return 0;
}

static int
conf_set_bool(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };
	int	 i;

	for (i = 0; yes[i] != NULL; i++)
		if (strcasecmp(text, yes[i]) == 0) {
			conf_put_ll(d, field, 1);
			return 0;
		}
	for (i = 0; no[i] != NULL; i++)
		if (strcasecmp(text, no[i]) == 0) {
			conf_put_ll(d, field, 0);
			return 0;
		}
	snprintf(err, errlen, "'%s' is not a boolean (true or false)", text);
	return -1;
}

static void
conf_fmt_bool(const struct conf_directive *d, const void *field, char *buf,
    size_t len)
{
	strlcpy(buf, conf_get_ll(d, field) ? "true" : "false", len);
}

/* Writes ms as the largest unit that divides it: 90000 is "90s", 120000 "2m". */
static void
conf_fmt_ms(long long ms, char *buf, size_t len)
{
	if (ms != 0 && ms % MS_HOUR == 0)
		snprintf(buf, len, "%lldh", ms / MS_HOUR);
	else if (ms != 0 && ms % MS_MIN == 0)
		snprintf(buf, len, "%lldm", ms / MS_MIN);
	else if (ms % MS_SEC == 0)
		snprintf(buf, len, "%llds", ms / MS_SEC);
	else
		snprintf(buf, len, "%lldms", ms);
}

static int
conf_set_duration(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	char		 lo[32], hi[32];
	long long	 v;

	if ((v = conf_parse_duration(text)) == -1) {
		snprintf(err, errlen,
		    "'%s' is not a duration (e.g. 500ms, 30s, 2m, 1h)", text);
		return -1;
	}
	if (v < d->min || v > d->max) {
		conf_fmt_ms(d->min, lo, sizeof(lo));
		conf_fmt_ms(d->max, hi, sizeof(hi));
		snprintf(err, errlen, "%s is out of range (%s to %s)", text,
		    lo, d->max == INT_MAX ? "24d" : hi);
		return -1;
	}
	conf_put_ll(d, field, v);
	return 0;
}

static void
conf_fmt_duration(const struct conf_directive *d, const void *field,
    char *buf, size_t len)
{
	conf_fmt_ms(conf_get_ll(d, field), buf, len);
}

static void
conf_fmt_bytes(long long v, char *buf, size_t len)
{
	if (v != 0 && v % GIB == 0)
		snprintf(buf, len, "%lldg", v / GIB);
	else if (v != 0 && v % MIB == 0)
		snprintf(buf, len, "%lldm", v / MIB);
	else if (v != 0 && v % KIB == 0)
		snprintf(buf, len, "%lldk", v / KIB);
	else
		snprintf(buf, len, "%lld", v);
}

static int
conf_set_size(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	char		 lo[32], hi[32], why[128];
	long long	 v;

	if ((v = conf_parse_size(text)) == -1) {
		snprintf(err, errlen,
		    "'%s' is not a size (e.g. 512, 64k, 16m, 1g)", text);
		return -1;
	}
	if (v < d->min || v > d->max) {
		conf_fmt_bytes(d->min, lo, sizeof(lo));
		conf_fmt_bytes(d->max, hi, sizeof(hi));
		snprintf(err, errlen, "%s is out of range (%s to %s)%s", text,
		    lo, hi, conf_range_why(d, why, sizeof(why)));
		return -1;
	}
	conf_put_ll(d, field, v);
	return 0;
}

static void
conf_fmt_size(const struct conf_directive *d, const void *field, char *buf,
    size_t len)
{
	conf_fmt_bytes(conf_get_ll(d, field), buf, len);
}

/* Strings are printable: they end up in logs, JSON and HTTP headers. */
static int
conf_set_string(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	size_t		 n, max;
	const char	*p;

	n = strlen(text);
	max = d->size - 1;
	if (d->max > 0 && (size_t)d->max < max)
		max = (size_t)d->max;
	if (n > max) {
		snprintf(err, errlen, "value is too long (%zu bytes, at most %zu)",
		    n, max);
		return -1;
	}
	if ((long long)n < d->min) {
		snprintf(err, errlen, "value must not be empty");
		return -1;
	}
	for (p = text; *p != '\0'; p++)
		if (iscntrl((unsigned char)*p)) {
			snprintf(err, errlen, "value contains a control character");
			return -1;
		}
	memset(field, 0, d->size);
	memcpy(field, text, n);
	return 0;
}

static void
conf_fmt_string(const struct conf_directive *d, const void *field, char *buf,
    size_t len)
{
	strlcpy(buf, field, len);
}

/*
 * conf_name_check() accepts a pool, backend or model name: printable ASCII
 * without space, quote or backslash, since names are routerctl arguments,
 * JSON keys and Prometheus label values.  0 or -1 with a message.
 */
int
conf_name_check(const char *name, char *err, size_t errlen)
{
	const char	*p;

	if (*name == '\0') {
		snprintf(err, errlen, "name must not be empty");
		return -1;
	}
	if (strlen(name) >= CONF_NAME_MAX) {
		snprintf(err, errlen, "name '%s' is too long (at most %d bytes)",
		    name, CONF_NAME_MAX - 1);
		return -1;
	}
	for (p = name; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 127 || *p == '"' || *p == '\\') {
			snprintf(err, errlen, "name '%s' may not contain "
			    "spaces, quotes, backslashes or non-ASCII", name);
			return -1;
		}
	return 0;
}

static int
conf_set_name(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	if (d->min == 0 && *text == '\0') {
		memset(field, 0, d->size);
		return 0;
	}
	if (conf_name_check(text, err, errlen) == -1)
		return -1;
	return conf_set_string(d, field, text, err, errlen);
}

/*
 * queue.tenant: "client" (the client's address) or "header:NAME", a
 * request field whose value names the tenant (Authorization: its bearer
 * token).
 */
static int
conf_set_tenant(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	const char	*p;

	if (strcmp(text, "client") != 0) {
		if (strncasecmp(text, "header:", 7) != 0 || text[7] == '\0') {
			snprintf(err, errlen, "'%s' is not client or header:NAME", text);
			return -1;
		}
		for (p = text + 7; *p != '\0'; p++)
			if (*p <= ' ' || *p >= 127 || strchr("()<>@,;:\\\"/[]?={}", *p) != NULL) {
				snprintf(err, errlen, "'%s' is not a field name", text + 7);
				return -1;
			}
	}
	return conf_set_string(d, field, text, err, errlen);
}

/* A comma-separated list of HTTP statuses (100-599), or "" for none. */
static int
conf_set_statuses(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	const char	*p = text;

	while (*p != '\0') {
		char		*end;
		long		 v;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		v = strtol(p, &end, 10);
		if (end == p || v < 100 || v > 599) {
			snprintf(err, errlen, "'%s' is not a list of HTTP statuses "
			    "(100-599, separated by commas)", text);
			return -1;
		}
		p = end;
		if (*p != '\0' && *p != ',' && *p != ' ') {
			snprintf(err, errlen, "'%s' is not a list of HTTP statuses", text);
			return -1;
		}
	}
	return conf_set_string(d, field, text, err, errlen);
}

static int
conf_set_urlpath(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	if (*text != '\0' && *text != '/') {
		snprintf(err, errlen, "path '%s' must start with /", text);
		return -1;
	}
	return conf_set_string(d, field, text, err, errlen);
}

static int
conf_set_url(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	if (*text != '\0' &&
	    !(strncmp(text, "http://", 7) == 0 && text[7] != '\0') &&
	    !(strncmp(text, "https://", 8) == 0 && text[8] != '\0')) {
		snprintf(err, errlen, "'%s' is not an http:// or https:// URL",
		    text);
		return -1;
	}
	return conf_set_string(d, field, text, err, errlen);
}

static int
conf_set_addr(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	struct conf_addr	 a;

	memset(&a, 0, sizeof(a));
	if (*text != '\0' && conf_parse_addr(text, &a, err, errlen) == -1)
		return -1;
	memcpy(field, &a, sizeof(a));
	return 0;
}

static void
conf_fmt_addr(const struct conf_directive *d, const void *field, char *buf,
    size_t len)
{
	const struct conf_addr	*a = field;

	strlcpy(buf, a->text, len);
}

static int
conf_set_enum(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen)
{
	size_t	 i, off;

	for (i = 0; d->names[i] != NULL; i++)
		if (strcmp(text, d->names[i]) == 0) {
			conf_put_ll(d, field, (long long)i);
			return 0;
		}
	off = (size_t)snprintf(err, errlen, "unknown value '%s' (expected ",
	    text);
	for (i = 0; d->names[i] != NULL && off < errlen; i++)
		off += (size_t)snprintf(err + off, errlen - off, "%s%s",
		    i == 0 ? "" : d->names[i + 1] == NULL ? " or " : ", ",
		    d->names[i]);
	if (off < errlen)
		snprintf(err + off, errlen - off, ")");
	return -1;
}

/*
 * A comma-separated list of names (a YAML list is joined with commas
 * first): "strategies" is a set, one bit per name; "filters" a sequence
 * of up to d->max names, 4 bits each, the first in the low bits.
 */
static int
conf_set_names(const struct conf_directive *d, void *field, const char *text,
    char *err, size_t errlen, int seq)
{
	char		 buf[256], *p, *tok;
	uint32_t	 v = 0;
	int		 n = 0, i;

	if (strlcpy(buf, text, sizeof(buf)) >= sizeof(buf)) {
		snprintf(err, errlen, "list too long");
		return -1;
	}
	for (p = buf; (tok = strsep(&p, ",")) != NULL; ) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		tok[strcspn(tok, " \t")] = '\0';
		if (*tok == '\0')
			continue;
		for (i = seq; d->names[i] != NULL; i++)
			if (strcmp(tok, d->names[i]) == 0)
				break;
		if (d->names[i] == NULL) {
			snprintf(err, errlen, "unknown name '%s'", tok);
			return -1;
		}
		if (seq) {
			if (n == d->max) {
				snprintf(err, errlen, "at most %lld entries",
				    (long long)d->max);
				return -1;
			}
			v |= (uint32_t)i << (4 * n);
		} else {
			if (v & 1u << i) {
				snprintf(err, errlen, "'%s' listed twice", tok);
				return -1;
			}
			v |= 1u << i;
		}
		n++;
	}
	memcpy(field, &v, sizeof(v));
	return 0;
}

static int
conf_set_strategies(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	return conf_set_names(d, field, text, err, errlen, 0);
}

static int
conf_set_filters(const struct conf_directive *d, void *field,
    const char *text, char *err, size_t errlen)
{
	return conf_set_names(d, field, text, err, errlen, 1);
}

static void
conf_fmt_names(const struct conf_directive *d, const void *field, char *buf,
    size_t len, int seq)
{
	uint32_t v;
	size_t	 off = 0;
	int	 i;

	memcpy(&v, field, sizeof(v));
	buf[0] = '\0';
	for (i = 0; i < 32 && off < len; i++) {
		unsigned x;

		if (seq) {
			if ((x = (v >> (4 * i)) & 0xf) == 0 || i >= 8)
				break;
		} else {
			if ((v & 1u << i) == 0)
				continue;
			x = (unsigned)i;
		}
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
		    off ? "," : "", d->names[x]);
	}
}

static void
conf_fmt_strategies(const struct conf_directive *d, const void *field,
    char *buf, size_t len)
{
	conf_fmt_names(d, field, buf, len, 0);
}

static void
conf_fmt_filters(const struct conf_directive *d, const void *field,
    char *buf, size_t len)
{
	conf_fmt_names(d, field, buf, len, 1);
}

static void
conf_fmt_enum(const struct conf_directive *d, const void *field, char *buf,
    size_t len)
{
	long long	 v, n;

	for (n = 0; d->names[n] != NULL; n++)
		continue;
	v = conf_get_ll(d, field);
	strlcpy(buf, v >= 0 && v < n ? d->names[v] : "?", len);
}

static const struct conf_type conf_types[] = {
	{ "int",	conf_set_int,		conf_fmt_int,		0 },
	{ "bool",	conf_set_bool,		conf_fmt_bool,		0 },
	{ "duration",	conf_set_duration,	conf_fmt_duration,	0 },
	{ "size",	conf_set_size,		conf_fmt_size,		0 },
	{ "string",	conf_set_string,	conf_fmt_string,	1 },
	{ "name",	conf_set_name,		conf_fmt_string,	1 },
	{ "tenant",	conf_set_tenant,	conf_fmt_string,	1 },
	{ "urlpath",	conf_set_urlpath,	conf_fmt_string,	1 },
	{ "statuses",	conf_set_statuses,	conf_fmt_string,	1 },
	{ "url",	conf_set_url,		conf_fmt_string,	1 },
	{ "addr",	conf_set_addr,		conf_fmt_addr,		1 },
	{ "workers",	conf_set_workers,	conf_fmt_int,		0 },
	{ "enum",	conf_set_enum,		conf_fmt_enum,		0 },
	{ "strategies",	conf_set_strategies,	conf_fmt_strategies,	1 },
	{ "filters",	conf_set_filters,	conf_fmt_filters,	1 },
	/* Structural: walked by yaml.c, printed by conf_dump(). */
	{ "list",	NULL,			NULL,			0 },
	{ "backends",	NULL,			NULL,			0 },
	{ "pool",	NULL,			NULL,			0 },
};

static const struct conf_type *
conf_type_find(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(conf_types) / sizeof(conf_types[0]); i++)
		if (strcmp(conf_types[i].name, name) == 0)
			return &conf_types[i];
	return NULL;
}

const struct conf_directive *
conf_key_find(const struct conf_directive *tab, size_t n, const char *name)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(tab[i].name, name) == 0)
			return &tab[i];
	return NULL;
}

const struct conf_directive *
conf_directive_find(const char *name)
{
	return conf_key_find(conf_directives, conf_ndirectives, name);
}

/* Is name a section of conf_directives[], such as "health"? */
int
conf_is_section(const char *name)
{
	size_t	 i, n;

	n = strlen(name);
	for (i = 0; i < conf_ndirectives; i++)
		if (strncmp(conf_directives[i].name, name, n) == 0 &&
		    conf_directives[i].name[n] == '.')
			return 1;
	return 0;
}

int
conf_type_quoted(const struct conf_directive *d)
{
	const struct conf_type	*t;

	t = conf_type_find(d->type);
	return t != NULL && t->quoted;
}

/*
 * conf_directive_set() parses text as row d's value into obj (the struct the
 * row's table describes).  0, or -1 with a message in err and obj unchanged.
 */
int
conf_directive_set(const struct conf_directive *d, void *obj,
    const char *text, char *err, size_t errlen)
{
	const struct conf_type	*t;

	if ((t = conf_type_find(d->type)) == NULL || t->set == NULL) {
		snprintf(err, errlen, "%s cannot be set from text", d->name);
		return -1;
	}
	return t->set(d, (char *)obj + d->off, text, err, errlen);
}

int
conf_directive_format(const struct conf_directive *d, const void *obj,
    char *buf, size_t len)
{
	const struct conf_type	*t;

	if ((t = conf_type_find(d->type)) == NULL || t->format == NULL) {
		if (len > 0)
			buf[0] = '\0';
		return -1;
	}
	t->format(d, (const char *)obj + d->off, buf, len);
	return 0;
}

/*
 * conf_defaults() applies the def text of every row of tab that has one.
 * A failure is a bug in the table (the unit tests load every default).
 */
int
conf_defaults(const struct conf_directive *tab, size_t n, void *obj,
    char *err, size_t errlen)
{
	char	 msg[CONF_ERR_MAX];
	size_t	 i;

	for (i = 0; i < n; i++) {
		if (tab[i].def == NULL)
			continue;
		if (conf_directive_set(&tab[i], obj, tab[i].def, msg,
		    sizeof(msg)) == -1) {
			snprintf(err, errlen, "default of %s: %s", tab[i].name,
			    msg);
			return -1;
		}
	}
	return 0;
}

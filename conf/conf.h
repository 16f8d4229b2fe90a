/* The parsed routerd configuration: one immutable object per load or reload. */
#ifndef CONF_CONF_H
#define CONF_CONF_H

#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONF_NAME_MAX		64	/* backend, pool, model names incl. NUL */
#define CONF_ADDR_MAX		128	/* "host:port" text incl. NUL */
#define CONF_PATH_MAX		256	/* file paths, URL paths, prefixes */
#define CONF_TOKEN_MAX		256
#define CONF_MODELS_MAX		16	/* models per backend */
#define CONF_POOLS_MAX		64
#define CONF_LISTEN_MAX		16
#define CONF_WORKERS_MAX	32	/* SHM_WORKERS_MAX / 2: generations overlap on reload */
#define CONF_WEIGHT_MAX		1000
#define CONF_RATELIMITS_MAX	64	/* entries of ratelimits: */
#define CONF_PRIO_MIN		-8	/* admission bands: X-Priority or a tenant's priority */
#define CONF_PRIO_MAX		7

/* Balancing strategies; the numbers are stored in the shared table. */
enum conf_strategy {
	STRAT_ROUND_ROBIN = 0,
	STRAT_WEIGHTED,
	STRAT_LEAST_CONN,
	STRAT_POWER_OF_TWO,
	STRAT_LEAST_LATENCY,
	STRAT_RANDOM,
	STRAT_GEO,
	STRAT_MODEL,
	STRAT_LEAST_TOKENS,
	STRAT_LLM,
	STRAT_COUNT		/* also "none", for shadow_strategy */
};

/* A pool's filters, applied in order before its strategy ranks the rest. */
enum conf_filter {
	FILTER_NONE = 0,
	FILTER_MODEL,		/* backends serving the request's model (pair healthy) */
	FILTER_REGION,		/* backends of the router's region, if any is eligible */
	FILTER_SATURATION	/* backends below llm.queue_limit / llm.kv_limit, if any */
};
#define CONF_FILTERS_MAX	4	/* conf_pool.filters: one enum conf_filter per 4 bits, first in the low bits */

enum conf_health_type {
	HEALTH_HTTP = 0,
	HEALTH_TCP,
	HEALTH_LLM,
	HEALTH_NONE
};

enum conf_registry_format {
	REGISTRY_MECH_COMPUTE = 0,
	REGISTRY_SIMPLE,
	REGISTRY_ETCD
};

/* A resolved socket address plus the text it was written as. */
struct conf_addr {
	char			 text[CONF_ADDR_MAX];	/* as written: "127.0.0.1:8000" */
	struct sockaddr_storage	 ss;			/* resolved at load time */
	socklen_t		 sslen;
};

struct conf_backend {
	char		 name[CONF_NAME_MAX];
	struct conf_addr addr;
	int		 weight;		/* 1..1000, default 1 */
	int		 backup;		/* 0/1 */
	int		 max_conns;		/* 0 = unlimited */
	char		 region[CONF_NAME_MAX];
	char		 health_path[CONF_PATH_MAX];	/* "" = health.path */
	char		 models[CONF_MODELS_MAX][CONF_NAME_MAX];
	int		 nmodels;
	int		 line, column;		/* where it was declared */
};

struct conf_pool {
	char			 name[CONF_NAME_MAX];
	enum conf_strategy	 strategy;	/* default: the top-level strategy */
	enum conf_strategy	 base_strategy;	/* for STRAT_MODEL/GEO: what ranks the survivors */
	char			 backup_pool[CONF_NAME_MAX];	/* "" = none: takes over when nothing here is eligible */
	uint32_t		 allow_strategies;	/* bit per strategy X-Router-Strategy may ask for */
	enum conf_strategy	 shadow_strategy;	/* STRAT_COUNT: none */
	uint32_t		 filters;		/* CONF_FILTERS_MAX enum conf_filter, 4 bits each */
	struct conf_backend	*backends;
	size_t			 nbackends;
};

struct conf_route {
	char	 prefix[CONF_PATH_MAX];	/* path prefix, "/" matches everything */
	char	 host[CONF_ADDR_MAX];	/* "" = any Host */
	int	 pool;			/* index into conf.pools */
};

/*
 * One entry of ratelimits: (DESIGN "Flow control"): the tenant it names,
 * or "*" for every tenant no other entry names, each on its own budget.
 */
struct conf_ratelimit {
	char	 tenant[CONF_TOKEN_MAX];	/* the tenant's key (an API key, a header's value, an address) or "*" */
	int	 rps;			/* requests_per_second, 0 = no limit */
	int	 burst;			/* requests at once above the rate, 0 = rps */
	int64_t	 tpm;			/* tokens_per_minute, 0 = no limit */
	int	 priority;		/* its requests' band without X-Priority */
};

struct conf {
	char			 file[CONF_PATH_MAX];	/* "" = the embedded default */

	struct conf_addr	 listen[CONF_LISTEN_MAX];
	size_t			 nlisten;
	int			 workers;		/* "auto" resolved to nproc */
	char			 user[CONF_NAME_MAX];	/* "" = stay as started */
	char			 group[CONF_NAME_MAX];
	char			 region[CONF_NAME_MAX];
	enum conf_strategy	 strategy;		/* default for pools */
	char			 pidfile[CONF_PATH_MAX];
	char			 access_log[CONF_PATH_MAX];	/* "" = off */
	int			 max_backends;		/* table capacity, default 1024 */

	struct {
		struct conf_addr addr;		/* text "" = no admin listener */
		char		 token[CONF_TOKEN_MAX];
	} admin;
	struct {
		char	 socket[CONF_PATH_MAX];
	} control;

	struct {
		enum conf_health_type	 type;
		int			 interval_ms;	/* 30s */
		int			 timeout_ms;	/* 5s */
		char			 path[CONF_PATH_MAX];	/* /health */
		int			 port_offset;	/* 0 */
		int			 fall;		/* 3 */
		int			 rise;		/* 2 */
		int			 metrics;	/* 0/1: read each backend's /metrics */
		int			 metrics_interval_ms;	/* 1s */
		char			 metrics_path[CONF_PATH_MAX];	/* /metrics */
		int			 models;	/* 0/1: read each backend's /v1/models */
	} health;
	struct {
		int	 block;			/* 256 characters per prefix block */
		int	 max_blocks;		/* 128: prefix blocks hashed per request */
		int64_t	 affinity_limit;	/* 200000 uncached prompt tokens in flight */
		int	 queue_limit;		/* 8 waiting requests (backend metrics) */
		int	 kv_limit;		/* 95 % KV-cache use (backend metrics) */
		int	 hold_headers;		/* 0/1: hold the head until the first SSE event */
		int	 output_tokens;		/* 256: expected output when max_tokens is absent */
		int	 load_factor;		/* 125 %: bounded load of the cold placement */
	} llm;
	struct {
		int	 threshold;		/* 10 */
		int	 timeout_ms;		/* 60s */
		int	 half_open_requests;	/* 1 */
	} breaker;
	struct {
		int	 max;			/* 3 */
		int	 delay_ms;		/* 1s */
		size_t	 buffer;		/* 64 KiB */
		char	 on_status[64];		/* "502,503,504": statuses worth another backend */
		int	 non_idempotent;	/* 0/1: replay POST and PATCH too */
		int	 budget_percent;	/* 20: retries host-wide, per cent of requests (10 s window), 0 = no budget */
		int	 budget_min;		/* 10: retries per second the budget always allows */
	} retries;
	struct {
		int	 size;			/* 1000 */
		int	 timeout_ms;		/* 30s */
		char	 tenant[CONF_NAME_MAX + 8];	/* header:Authorization, header:NAME or client */
		char	 priority_header[CONF_NAME_MAX];	/* X-Priority, "" = none */
		int	 saturation;		/* 0/1: a backend over its load signals takes no new work; requests wait here */
	} queue;
	struct conf_ratelimit	 ratelimits[CONF_RATELIMITS_MAX];
	size_t			 nratelimits;
	struct {
		char			 url[CONF_PATH_MAX];	/* "" = no syncer */
		enum conf_registry_format format;
		char			 token[CONF_TOKEN_MAX];
		int			 interval_ms;	/* 10s */
		int			 grace_ms;	/* 60s */
		char			 pool[CONF_NAME_MAX];	/* "llm" */
		char			 environment[CONF_NAME_MAX];
		char			 prefix[CONF_PATH_MAX];	/* etcd key prefix */
		int			 timeout_ms;	/* 10s: a whole pull */
		size_t			 max_size;	/* 16 MiB: largest answer */
		char			 type_filter[CONF_NAME_MAX];	/* simple: metadata.type, "" = all */
	} registry;
	struct {
		int	 connect_ms;		/* 5s */
		int	 client_header_ms;	/* 10s, a total for the whole head */
		int	 client_idle_ms;	/* 60s, keep-alive idle and body idle */
		int	 upstream_response_ms;	/* 60s, idle between response bytes */
		int	 upstream_idle_ms;	/* 4s, pooled backend connection */
		int	 drain_ms;		/* 30s */
		int	 first_token_ms;	/* 30s: request sent -> first body byte */
		int	 stream_idle_ms;	/* 60s: between events once a stream began */
	} timeout;
	struct {
		size_t	 header_size;		/* 16 KiB: the whole request head */
		int	 header_count;		/* 100 */
		size_t	 uri;			/* 8 KiB */
		uint64_t body;			/* 0 = unlimited; default 0 */
		size_t	 hold;			/* 1 MiB: bodies held whole before routing */
		uint64_t hold_memory;		/* 256 MiB per worker */
		int	 connections;		/* 10000 client connections per worker */
	} limits;

	struct conf_pool	*pools;
	size_t			 npools;
	struct conf_route	*routes;	/* empty: every request goes to pool 0 */
	size_t			 nroutes;
};

/* Overrides from the command line, applied last (see conf_load()). */
struct conf_flag {
	const char	*name;		/* long flag without "--", e.g. "health-interval" */
	const char	*value;
};

/*
 * conf_load() builds a config: built-in defaults < the YAML file (path, or
 * the embedded default config when path is NULL) < ROUTER_* environment
 * variables < flags.  On success returns the new object and 0 errors.  On
 * failure returns NULL and writes every error found to errf, one per line,
 * as "FILE:LINE:COLUMN: message" (environment and flag errors as
 * "ROUTER_X: message" / "--flag: message"); *nerrors gets their count.
 * Never exits, never logs: the caller decides what a bad file means.
 */
struct conf	*conf_load(const char *path, const struct conf_flag *flags,
		    size_t nflags, FILE *errf, int *nerrors);
void		 conf_free(struct conf *);

/* conf_dump() prints the effective config as YAML (routerd -T). */
void		 conf_dump(const struct conf *, FILE *);

/* The embedded default config used by `make run` and when no file exists. */
extern const char conf_default_yaml[];

/* Name <-> enum helpers; *_from_name return -1 for an unknown name. */
const char	*conf_strategy_name(enum conf_strategy);
int		 conf_strategy_from_name(const char *);
const char	*conf_health_type_name(enum conf_health_type);

/* conf_pool_find() returns the index of the named pool or -1. */
int		 conf_pool_find(const struct conf *, const char *);

/*
 * What the code can honour, so that routerd -t refuses more instead of
 * clamping it (worker/worker.c asserts that they match the workers'
 * sizes): a request head must fit the worker's input buffer
 * (WORKER_BUFSZ), its fields the parsed head (WORKER_HDR_MAX), every
 * attempt's failed backend the exclusion set (BAL_EXCLUDE_MAX), and the
 * retry buffer is never smaller than the head buffer it also carries.
 */
#define CONF_HEAD_BUF		(32 * 1024)
#define CONF_HEAD_FIELDS	256
#define CONF_RETRIES_MAX	8
#define CONF_CONNECTIONS_MAX	1000000

/*
 * conf_parse_duration() parses "500ms", "30s", "2m", "1h" or a bare number
 * of seconds into milliseconds; -1 on error.  conf_parse_size() parses
 * "64k", "16KiB", "10m", "1g" or a bare number of bytes; -1 on error.
 * conf_parse_addr() parses "host:port", "[v6]:port" or ":port"/"port"
 * (meaning 0.0.0.0) and resolves it numerically or with getaddrinfo.
 */
/*
 * conf_set_resolver(fn) makes conf_parse_addr() (and so conf_load()) hand
 * host names to fn instead of getaddrinfo(): the master, whose loop must
 * not block, answers names from lookups done in a helper process.  fn
 * fills a->ss and a->sslen and returns 0, or -1 with a reason in err.
 * Numeric addresses never reach it.  NULL: getaddrinfo() again.
 */
typedef int	(*conf_resolver_fn)(const char *text, const char *host,
		    const char *port, struct conf_addr *a, char *err, size_t errlen);
void		 conf_set_resolver(conf_resolver_fn);

long long	 conf_parse_duration(const char *);
long long	 conf_parse_size(const char *);
int		 conf_parse_addr(const char *, struct conf_addr *, char *err,
		    size_t errlen);

/*
 * The directive tables (STYLE 8): one row per scalar setting, the single
 * source of defaults, YAML keys, ROUTER_* environment overrides, long flags,
 * conf_dump() and the man page.  conf_directives[] describes struct conf and
 * names its rows by dotted YAML path ("health.interval"); conf_pool_keys[],
 * conf_backend_keys[] and conf_route_keys[] describe one entry of pools:,
 * a backends: list and routes: (relative to struct conf_pool, conf_backend
 * and conf_route).  The lists listen:, backends:, pools: and routes: are
 * structure, not directives; rows with type "list", "backends" or "pool" are
 * walked by the YAML loader itself.
 *
 * type is one of: int, bool, duration, size, string, name, urlpath, url,
 * addr, workers, enum, tenant, and the structural list, backends, pool.
 */
struct conf_directive {
	const char	*name;		/* dotted YAML path: "health.interval" */
	const char	*type;		/* see above */
	const char	*def;		/* default as written in YAML; NULL: none */
	const char	*env;		/* "ROUTER_..." or NULL */
	const char	*flag;		/* long flag without "--", or NULL */
	const char	*help;		/* one line */
	/* How conf/ stores the value; other code should not need these. */
	size_t		 off;		/* offsetof() in the described struct */
	size_t		 size;		/* sizeof() that field */
	long long	 min, max;	/* int, duration (ms), size; string: min length */
	const char *const *names;	/* enum: value names by number, NULL-terminated */
};

extern const struct conf_directive	conf_directives[];
extern const size_t			conf_ndirectives;
extern const struct conf_directive	conf_pool_keys[];
extern const size_t			conf_npool_keys;
extern const struct conf_directive	conf_backend_keys[];
extern const size_t			conf_nbackend_keys;
extern const struct conf_directive	conf_route_keys[];
extern const size_t			conf_nroute_keys;
extern const struct conf_directive	conf_ratelimit_keys[];
extern const size_t			conf_nratelimit_keys;

/* conf_directive_find() looks a row of conf_directives[] up by name; NULL if none. */
const struct conf_directive *conf_directive_find(const char *);

/*
 * conf_directive_format() writes the value of row d in obj (a struct conf
 * for conf_directives[], a struct conf_pool, conf_backend or conf_route for
 * the other tables) as text that the same row parses back to the same
 * value ("30s", "64k", "round_robin"), unquoted.  Returns 0, or -1 for a
 * structural row.  For `routerctl show config` and for spotting what a
 * reload changed.
 */
int		 conf_directive_format(const struct conf_directive *d,
		    const void *obj, char *buf, size_t len);

#endif

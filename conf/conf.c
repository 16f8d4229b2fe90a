/* conf_load(): defaults, file, environment and flags, then whole-config checks. */
#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>

#include "conf.h"
#include "conf_private.h"

static const char *const conf_health_type_names[] = {
	"http", "tcp", "llm", "none"
};

/*
 * Errors are kept until the load ends and then written in file order, so
 * that `routerd -t` reads like a compiler even though whole-config checks
 * run last.  Errors without a file position (ROUTER_*, --flags) follow.
 */
static void	conf_msg_add(struct conf_loader *, int, int, const char *,
		    const char *, va_list) __attribute__((format(printf, 5, 0)));

static void
conf_msg_add(struct conf_loader *ld, int line, int column, const char *prefix,
    const char *fmt, va_list ap)
{
	struct conf_msg	*nm;
	char		 msg[CONF_ERR_MAX * 2];

	ld->nerrors++;
	if (ld->errf == NULL)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (ld->nmsgs == ld->msgcap) {
		nm = reallocarray(ld->msgs, ld->msgcap + 16, sizeof(*nm));
		if (nm == NULL) {
			/* Out of order beats lost. */
			fprintf(ld->errf, "%s%s\n", prefix, msg);
			return;
		}
		ld->msgs = nm;
		ld->msgcap += 16;
	}
	nm = &ld->msgs[ld->nmsgs];
	if (asprintf(&nm->text, "%s%s\n", prefix, msg) == -1) {
		fprintf(ld->errf, "%s%s\n", prefix, msg);
		return;
	}
	nm->line = line;
	nm->column = column;
	nm->seq = ld->nmsgs++;
}

static int
conf_msg_cmp(const void *a, const void *b)
{
	const struct conf_msg	*x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->column != y->column)
		return x->column < y->column ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
conf_msg_flush(struct conf_loader *ld)
{
	size_t	 i;

	if (ld->nmsgs == 0)
		return;
	qsort(ld->msgs, ld->nmsgs, sizeof(*ld->msgs), conf_msg_cmp);
	for (i = 0; i < ld->nmsgs; i++) {
		fputs(ld->msgs[i].text, ld->errf);
		free(ld->msgs[i].text);
	}
	free(ld->msgs);
	ld->msgs = NULL;
	ld->nmsgs = ld->msgcap = 0;
}

/* Reports "FILE:LINE:COLUMN: message". */
void
conf_err(struct conf_loader *ld, int line, int column, const char *fmt, ...)
{
	char	 prefix[CONF_PATH_MAX + 32];
	va_list	 ap;

	snprintf(prefix, sizeof(prefix), "%s:%d:%d: ", ld->file, line, column);
	va_start(ap, fmt);
	conf_msg_add(ld, line, column, prefix, fmt, ap);
	va_end(ap);
}

/* Like conf_err(), at wherever the value in question came from. */
void
conf_err_at(struct conf_loader *ld, const struct conf_origin *o,
    const char *fmt, ...)
{
	char	 prefix[CONF_PATH_MAX + 32];
	int	 line = INT_MAX, column = 0;
	va_list	 ap;

	switch (o->kind) {
	case ORIGIN_FILE:
		line = o->line;
		column = o->column;
		snprintf(prefix, sizeof(prefix), "%s:%d:%d: ", ld->file, line,
		    column);
		break;
	case ORIGIN_ENV:
		snprintf(prefix, sizeof(prefix), "%s: ", o->name);
		break;
	case ORIGIN_FLAG:
		snprintf(prefix, sizeof(prefix), "--%s: ", o->name);
		break;
	case ORIGIN_DEFAULT:
		line = column = 1;
		snprintf(prefix, sizeof(prefix), "%s:1:1: ", ld->file);
		break;
	}
	va_start(ap, fmt);
	conf_msg_add(ld, line, column, prefix, fmt, ap);
	va_end(ap);
}

/*
 * conf_pool_add() appends an empty pool declared at m, its strategy left to
 * be inherited (STRAT_COUNT until conf_finish()).  Returns its index, or -1
 * after reporting a bad or duplicate name.
 */
int
conf_pool_add(struct conf_loader *ld, const char *name, struct conf_mark m)
{
	struct conf		*conf = ld->conf;
	struct conf_pool	*p;
	void			*np;
	char			 err[CONF_ERR_MAX];
	int			 i;

	if (conf_name_check(name, err, sizeof(err)) == -1) {
		conf_err(ld, m.line, m.column, "pool: %s", err);
		return -1;
	}
	if ((i = conf_pool_find(conf, name)) != -1) {
		conf_err(ld, m.line, m.column,
		    "duplicate pool '%s' (first at line %d)%s", name,
		    ld->pool_marks[i].line, strcmp(name, "default") == 0 ?
		    "; a top-level backends: list is the pool 'default'" : "");
		return -1;
	}
	if (conf->npools == CONF_POOLS_MAX) {
		conf_err(ld, m.line, m.column, "pool '%s': at most %d pools",
		    name, CONF_POOLS_MAX);
		return -1;
	}
	if (conf->npools == ld->pool_cap) {
		if ((np = reallocarray(conf->pools, ld->pool_cap + 8,
		    sizeof(*conf->pools))) == NULL)
			goto nomem;
		conf->pools = np;
		if ((np = reallocarray(ld->pool_marks, ld->pool_cap + 8,
		    sizeof(*ld->pool_marks))) == NULL)
			goto nomem;
		ld->pool_marks = np;
		ld->pool_cap += 8;
	}
	i = (int)conf->npools++;
	p = &conf->pools[i];
	memset(p, 0, sizeof(*p));
	strlcpy(p->name, name, sizeof(p->name));
	if (conf_defaults(conf_pool_keys, conf_npool_keys, p, err,
	    sizeof(err)) == -1)
		conf_err(ld, m.line, m.column, "%s", err);
	p->strategy = STRAT_COUNT;
	ld->pool_marks[i] = m;
	return i;
nomem:
	conf_err(ld, m.line, m.column, "out of memory");
	return -1;
}

/* ROUTER_* variables, then flags: each overrides what came before. */
static void
conf_overrides(struct conf_loader *ld, const struct conf_flag *flags,
    size_t nflags)
{
	const struct conf_directive	*d;
	struct conf_origin		 o;
	char				 err[CONF_ERR_MAX];
	const char			*v;
	size_t				 i;

	for (i = 0; i < conf_ndirectives; i++) {
		d = &conf_directives[i];
		if (d->env == NULL || (v = getenv(d->env)) == NULL)
			continue;
		o = (struct conf_origin){ ORIGIN_ENV, 0, 0, d->env };
		if (conf_directive_set(d, ld->conf, v, err, sizeof(err)) == -1)
			conf_err_at(ld, &o, "%s", err);
		else
			ld->origins[i] = o;
	}
	for (i = 0; i < nflags; i++) {
		o = (struct conf_origin){ ORIGIN_FLAG, 0, 0, flags[i].name };
		for (d = conf_directives; d < conf_directives +
		    conf_ndirectives; d++)
			if (d->flag != NULL && flags[i].name != NULL &&
			    strcmp(d->flag, flags[i].name) == 0)
				break;
		if (d == conf_directives + conf_ndirectives) {
			if (flags[i].name == NULL)
				o.name = "";
			conf_err_at(ld, &o, "unknown option");
		} else if (flags[i].value == NULL)
			conf_err_at(ld, &o, "missing value");
		else if (conf_directive_set(d, ld->conf, flags[i].value, err,
		    sizeof(err)) == -1)
			conf_err_at(ld, &o, "%s", err);
		else
			ld->origins[d - conf_directives] = o;
	}
}

static struct conf_origin *
conf_origin(struct conf_loader *ld, const char *name)
{
	return &ld->origins[conf_directive_find(name) - conf_directives];
}

static int
conf_addr_equal(const struct conf_addr *a, const struct conf_addr *b)
{
	return a->sslen == b->sslen && memcmp(&a->ss, &b->ss, a->sslen) == 0;
}

static void
conf_finish_listen(struct conf_loader *ld)
{
	struct conf	*conf = ld->conf;
	char		 err[CONF_ERR_MAX];
	size_t		 i, j;

	if (!ld->listen_given && conf->nlisten == 0) {
		if (conf_parse_addr(CONF_LISTEN_DEFAULT, &conf->listen[0], err,
		    sizeof(err)) == -1)
			conf_err(ld, 1, 1, "listen: %s", err);
		else
			conf->nlisten = 1;
	}
	for (i = 0; i < conf->nlisten; i++) {
		for (j = 0; j < i; j++)
			if (conf_addr_equal(&conf->listen[i], &conf->listen[j]))
				break;
		if (j < i)
			conf_err(ld, ld->listen_marks[i].line,
			    ld->listen_marks[i].column,
			    "listen: %s is listed twice (first at line %d)",
			    conf->listen[i].text, ld->listen_marks[j].line);
		if (conf->admin.addr.text[0] != '\0' &&
		    conf_addr_equal(&conf->listen[i], &conf->admin.addr))
			conf_err_at(ld, conf_origin(ld, "admin.address"),
			    "admin.address %s is also a listen address",
			    conf->admin.addr.text);
	}
}

/* Order for finding duplicate backend names: by name, then by position. */
struct conf_beref {
	const struct conf_backend	*be;
	size_t				 seq;	/* index in pool order */
};

static int
conf_beref_cmp(const void *a, const void *b)
{
	const struct conf_beref	*x = a, *y = b;
	int			 c;

	if ((c = strcmp(x->be->name, y->be->name)) != 0)
		return c;
	if (x->be->line != y->be->line)
		return x->be->line < y->be->line ? -1 : 1;
	if (x->be->column != y->be->column)
		return x->be->column < y->be->column ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Backend names are global: routerctl, the admin API and metrics name a
 * backend without its pool.  Reports every duplicate but the first one in
 * the file at its own position.
 */
static void
conf_finish_backends(struct conf_loader *ld)
{
	struct conf		*conf = ld->conf;
	struct conf_beref	*refs;
	const struct conf_backend **first, *be;
	size_t			 n, i, j, k;

	for (n = 0, i = 0; i < conf->npools; i++)
		n += conf->pools[i].nbackends;
	if (n > (size_t)conf->max_backends)
		conf_err_at(ld, conf_origin(ld, "max_backends"),
		    "%zu backends do not fit in max_backends %d", n,
		    conf->max_backends);
	if (n < 2)
		return;
	refs = calloc(n, sizeof(*refs));
	first = calloc(n, sizeof(*first));
	if (refs == NULL || first == NULL) {
		conf_err(ld, 1, 1, "out of memory");
		goto out;
	}
	for (k = 0, i = 0; i < conf->npools; i++)
		for (j = 0; j < conf->pools[i].nbackends; j++, k++) {
			refs[k].be = &conf->pools[i].backends[j];
			refs[k].seq = k;
		}
	qsort(refs, n, sizeof(*refs), conf_beref_cmp);
	for (i = 1; i < n; i++) {
		if (refs[i].be->name[0] == '\0')
			continue;
		for (j = i; j > 0 && strcmp(refs[j - 1].be->name,
		    refs[i].be->name) == 0; j--)
			continue;
		if (j < i)
			first[refs[i].seq] = refs[j].be;
	}
	for (k = 0, i = 0; i < conf->npools; i++)
		for (j = 0; j < conf->pools[i].nbackends; j++, k++) {
			if ((be = first[k]) == NULL)
				continue;
			conf_err(ld, conf->pools[i].backends[j].line,
			    conf->pools[i].backends[j].column,
			    "duplicate backend name '%s' (first at line %d)",
			    be->name, be->line);
		}
out:
	free(refs);
	free(first);
}

/* Pools: "default" first, inherited strategies, registry pool, non-empty. */
static void
conf_finish_pools(struct conf_loader *ld)
{
	struct conf		*conf = ld->conf;
	struct conf_pool	 p;
	struct conf_mark	 m;
	const struct conf_origin *o;
	int			 i;

	if (conf->registry.url[0] != '\0' &&
	    conf_pool_find(conf, conf->registry.pool) == -1) {
		o = conf_origin(ld, "registry.pool");
		m.line = o->kind == ORIGIN_FILE ? o->line : 0;
		m.column = o->kind == ORIGIN_FILE ? o->column : 0;
		conf_pool_add(ld, conf->registry.pool, m);
	}
	if ((i = conf_pool_find(conf, "default")) > 0) {
		p = conf->pools[i];
		m = ld->pool_marks[i];
		memmove(&conf->pools[1], &conf->pools[0], i * sizeof(p));
		memmove(&ld->pool_marks[1], &ld->pool_marks[0], i * sizeof(m));
		conf->pools[0] = p;
		ld->pool_marks[0] = m;
	}
	for (i = 0; i < (int)conf->npools; i++) {
		m = ld->pool_marks[i];
		if (conf->pools[i].strategy == STRAT_COUNT)
			conf->pools[i].strategy = conf->strategy;
		if (conf->pools[i].base_strategy == STRAT_GEO ||
		    conf->pools[i].base_strategy == STRAT_MODEL)
			conf_err(ld, m.line, m.column, "pool '%s': "
			    "base_strategy cannot be geo or model",
			    conf->pools[i].name);
		if (conf->pools[i].nbackends == 0 &&
		    strcmp(conf->pools[i].name, conf->registry.pool) != 0)
			conf_err(ld, m.line, m.column,
			    "pool '%s' has no backends", conf->pools[i].name);
		if (conf->pools[i].backup_pool[0] != '\0' &&
		    (conf_pool_find(conf, conf->pools[i].backup_pool) == -1 ||
		    strcmp(conf->pools[i].backup_pool, conf->pools[i].name) == 0))
			conf_err(ld, m.line, m.column, "pool '%s': backup_pool '%s' "
			    "is not another pool", conf->pools[i].name,
			    conf->pools[i].backup_pool);
	}
	if (conf->npools == 0)
		conf_err(ld, 1, 1, "no backends: give a backends: list, "
		    "pools: or registry.url");
}

static void
conf_finish_routes(struct conf_loader *ld)
{
	struct conf	*conf = ld->conf;
	size_t		 i;

	for (i = 0; i < conf->nroutes; i++) {
		if (ld->route_pools[i][0] == '\0')
			continue;	/* already reported */
		conf->routes[i].pool = conf_pool_find(conf,
		    ld->route_pools[i]);
		if (conf->routes[i].pool == -1)
			conf_err(ld, ld->route_marks[i].line,
			    ld->route_marks[i].column,
			    "route: unknown pool '%s'", ld->route_pools[i]);
	}
}

/* The checks that need the whole config, after every override. */
static void
conf_finish(struct conf_loader *ld)
{
	struct conf		*conf = ld->conf;
	const struct conf_origin *o;

	conf_finish_listen(ld);
	if (conf->limits.uri > conf->limits.header_size) {
		o = conf_origin(ld, "limits.uri");
		if (o->kind == ORIGIN_DEFAULT)
			o = conf_origin(ld, "limits.header_size");
		conf_err_at(ld, o, "limits.uri (%zu) is larger than "
		    "limits.header_size (%zu)", conf->limits.uri,
		    conf->limits.header_size);
	}
	conf_finish_pools(ld);
	conf_finish_backends(ld);
	conf_finish_routes(ld);
}

struct conf *
conf_load(const char *path, const struct conf_flag *flags, size_t nflags,
    FILE *errf, int *nerrors)
{
	struct conf_loader	 ld;
	struct conf		*conf;
	FILE			*fp = NULL;
	char			 err[CONF_ERR_MAX];
	int			 syntax_ok;

	memset(&ld, 0, sizeof(ld));
	ld.errf = errf;
	ld.file = path != NULL ? path : CONF_DEFAULT_NAME;
	if ((conf = calloc(1, sizeof(*conf))) == NULL ||
	    (ld.origins = calloc(conf_ndirectives,
	    sizeof(*ld.origins))) == NULL) {
		conf_err(&ld, 1, 1, "out of memory");
		goto out;
	}
	ld.conf = conf;
	if (path != NULL)
		strlcpy(conf->file, path, sizeof(conf->file));
	if (conf_defaults(conf_directives, conf_ndirectives, conf, err,
	    sizeof(err)) == -1)
		conf_err(&ld, 1, 1, "%s", err);

	if (path != NULL && (fp = fopen(path, "r")) == NULL) {
		ld.nerrors++;
		if (errf != NULL)
			fprintf(errf, "%s: %s\n", path, strerror(errno));
		goto out;
	}
	syntax_ok = conf_yaml_load(&ld, fp, conf_default_yaml) == 0;
	if (fp != NULL)
		fclose(fp);
	conf_overrides(&ld, flags, nflags);
	if (syntax_ok)
		conf_finish(&ld);
out:
	if (ld.errf != NULL)
		conf_msg_flush(&ld);
	free(ld.origins);
	free(ld.pool_marks);
	free(ld.route_marks);
	free(ld.route_pools);
	if (nerrors != NULL)
		*nerrors = ld.nerrors;
	if (ld.nerrors > 0) {
		conf_free(conf);
		return NULL;
	}
	return conf;
}

void
conf_free(struct conf *conf)
{
	size_t	 i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->npools; i++)
		free(conf->pools[i].backends);
	free(conf->pools);
	free(conf->routes);
	free(conf);
}

int
conf_pool_find(const struct conf *conf, const char *name)
{
	size_t	 i;

	for (i = 0; i < conf->npools; i++)
		if (strcmp(conf->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *
conf_strategy_name(enum conf_strategy s)
{
	if ((int)s < 0 || s >= STRAT_COUNT)
		return "unknown";
	return conf_strategy_names[s];
}

int
conf_strategy_from_name(const char *name)
{
	int	 i;

	for (i = 0; i < STRAT_COUNT; i++)
		if (strcmp(conf_strategy_names[i], name) == 0)
			return i;
	return -1;
}

const char *
conf_health_type_name(enum conf_health_type t)
{
	if ((int)t < 0 || (size_t)t >= sizeof(conf_health_type_names) /
	    sizeof(conf_health_type_names[0]))
		return "unknown";
	return conf_health_type_names[t];
}

/* Reads 1*DIGIT at *pp into *v; -1 if none or if it overflows. */
static int
conf_digits(const char **pp, long long *v)
{
	const char	*p = *pp;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (*v = 0; isdigit((unsigned char)*p); p++) {
		if (*v > (LLONG_MAX - (*p - '0')) / 10)
			return -1;
		*v = *v * 10 + (*p - '0');
	}
	*pp = p;
	return 0;
}

/*
 * A duration is a bare number of seconds or one or more NUMBER UNIT terms,
 * units ms, s, m, h, d: "1m30s" is 90000.  Returns ms, or -1.
 */
long long
conf_parse_duration(const char *s)
{
	const char	*p = s;
	long long	 v, mult, total = 0;

	if (s == NULL || *s == '\0')
		return -1;
	if (s[strspn(s, "0123456789")] == '\0') {
		if (conf_digits(&p, &v) == -1 || v > LLONG_MAX / 1000)
			return -1;
		return v * 1000;
	}
	while (*p != '\0') {
		if (conf_digits(&p, &v) == -1)
			return -1;
		if (strncmp(p, "ms", 2) == 0) {
			mult = 1;
			p += 2;
		} else {
			switch (*p++) {
			case 's':
				mult = 1000;
				break;
			case 'm':
				mult = 60 * 1000;
				break;
			case 'h':
				mult = 60 * 60 * 1000;
				break;
			case 'd':
				mult = 24 * 60 * 60 * 1000;
				break;
			default:
				return -1;
			}
		}
		if (v > (LLONG_MAX - total) / mult)
			return -1;
		total += v * mult;
	}
	return total;
}

/*
 * A size is a number of bytes with an optional binary suffix, any case:
 * k, kb, kib (1024), m, mb, mib, g, gb, gib, or b.  Returns bytes, or -1.
 */
long long
conf_parse_size(const char *s)
{
	static const struct {
		const char	*suffix;
		long long	 mult;
	} units[] = {
		{ "", 1 }, { "b", 1 },
		{ "k", 1LL << 10 }, { "kb", 1LL << 10 }, { "kib", 1LL << 10 },
		{ "m", 1LL << 20 }, { "mb", 1LL << 20 }, { "mib", 1LL << 20 },
		{ "g", 1LL << 30 }, { "gb", 1LL << 30 }, { "gib", 1LL << 30 },
	};
	const char	*p = s;
	long long	 v;
	size_t		 i;

	if (s == NULL || conf_digits(&p, &v) == -1)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(p, units[i].suffix) == 0) {
			if (v > LLONG_MAX / units[i].mult)
				return -1;
			return v * units[i].mult;
		}
	return -1;
}

/*
 * Resolves host (already split from its port) into a.  Numeric IPv4 is
 * taken as is; a bracketed host must be numeric IPv6; anything else goes
 * to getaddrinfo(), where an IPv4 answer is preferred because "localhost"
 * often lists ::1 first while local servers mostly bind 127.0.0.1.
 */
static conf_resolver_fn	 conf_resolver;

void
conf_set_resolver(conf_resolver_fn fn)
{
	conf_resolver = fn;
}

static int
conf_resolve(const char *text, const char *host, int bracketed,
    const char *port, struct conf_addr *a, char *err, size_t errlen)
{
	struct addrinfo		 hints, *res, *ai, *pick;
	struct sockaddr_in	*sin;
	int			 rv;

	if (!bracketed) {
		sin = (struct sockaddr_in *)&a->ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)atoi(port));
			a->sslen = sizeof(*sin);
			return 0;
		}
		/* a name: the caller may not be allowed to wait for DNS */
		if (conf_resolver != NULL)
			return conf_resolver(text, host, port, a, err, errlen);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0);
	if ((rv = getaddrinfo(host, port, &hints, &res)) != 0) {
		if (bracketed)
			snprintf(err, errlen, "'%s': '%s' is not an IPv6 address",
			    text, host);
		else
			snprintf(err, errlen, "'%s': cannot resolve '%s': %s",
			    text, host, gai_strerror(rv));
		return -1;
	}
	pick = res;
	for (ai = res; ai != NULL; ai = ai->ai_next)
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
	if (pick->ai_addrlen > sizeof(a->ss)) {
		freeaddrinfo(res);
		snprintf(err, errlen, "'%s': unsupported address", text);
		return -1;
	}
	memcpy(&a->ss, pick->ai_addr, pick->ai_addrlen);
	a->sslen = pick->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int
conf_parse_addr(const char *s, struct conf_addr *a, char *err, size_t errlen)
{
	char		 buf[CONF_ADDR_MAX];
	const char	*host, *port, *end;
	int		 bracketed = 0;

	memset(a, 0, sizeof(*a));
	if (strlcpy(buf, s, sizeof(buf)) >= sizeof(buf)) {
		snprintf(err, errlen, "address is too long (at most %d bytes)",
		    CONF_ADDR_MAX - 1);
		return -1;
	}
	if (buf[0] == '[') {
		if ((end = strchr(buf, ']')) == NULL) {
			snprintf(err, errlen, "'%s': missing ']'", s);
			return -1;
		}
		if (end[1] != ':') {
			snprintf(err, errlen, "'%s': no port (expected "
			    "[address]:port)", s);
			return -1;
		}
		buf[end - buf] = '\0';
		host = buf + 1;
		port = end + 2;
		bracketed = 1;
	} else if (strchr(buf, ':') == NULL) {
		if (buf[strspn(buf, "0123456789")] != '\0' || buf[0] == '\0') {
			snprintf(err, errlen, "'%s': no port (expected "
			    "host:port)", s);
			return -1;
		}
		host = "0.0.0.0";
		port = buf;
	} else {
		end = strrchr(buf, ':');
		if (strchr(buf, ':') != end) {
			snprintf(err, errlen, "'%s': write IPv6 addresses as "
			    "[address]:port", s);
			return -1;
		}
		buf[end - buf] = '\0';
		host = buf[0] == '\0' ? "0.0.0.0" : buf;
		port = end + 1;
	}
	if (*port == '\0' || port[strspn(port, "0123456789")] != '\0' ||
	    strlen(port) > 5 || atoi(port) < 1 || atoi(port) > 65535) {
		snprintf(err, errlen, "'%s': port must be a number from 1 to "
		    "65535", s);
		return -1;
	}
	if (*host == '\0' || strpbrk(host, " \t[]/") != NULL) {
		snprintf(err, errlen, "'%s': bad host", s);
		return -1;
	}
	if (conf_resolve(s, host, bracketed, port, a, err, errlen) == -1) {
		memset(a, 0, sizeof(*a));
		return -1;
	}
	strlcpy(a->text, s, sizeof(a->text));
	return 0;
}

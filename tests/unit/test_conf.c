/* Unit tests of conf/: parsing, defaults, overrides, error positions, dump. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf/conf.h"

#define EXAMPLE_CONF	"conf/routerd.yaml"

static char	 tmp_path[64];
static char	*errbuf;	/* what the last load wrote to errf */
static size_t	 errlen;
static int	 nerr;

/* Tests must not see the ROUTER_* settings of whoever runs them. */
static void
clear_env(void)
{
	size_t	 i;

	for (i = 0; i < conf_ndirectives; i++)
		if (conf_directives[i].env != NULL)
			unsetenv(conf_directives[i].env);
}

static void
cleanup(void)
{
	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	free(errbuf);
	errbuf = NULL;
}

TestSuite(conf, .init = clear_env, .fini = cleanup);

/* Writes yaml to a fresh temporary file and returns its path. */
static const char *
write_tmp(const char *yaml)
{
	int	 fd;
	size_t	 n = strlen(yaml);

	if (tmp_path[0] != '\0')
		unlink(tmp_path);
	strcpy(tmp_path, "/tmp/test_conf_XXXXXX.yaml");
	fd = mkstemps(tmp_path, 5);
	cr_assert(fd != -1);
	cr_assert_eq(write(fd, yaml, n), (ssize_t)n);
	close(fd);
	return tmp_path;
}

/* conf_load() of a file (NULL: the embedded default), errors into errbuf. */
static struct conf *
load_file(const char *path, const struct conf_flag *flags, size_t nflags)
{
	struct conf	*conf;
	FILE		*errf;

	free(errbuf);
	errbuf = NULL;
	errf = open_memstream(&errbuf, &errlen);
	cr_assert(errf != NULL);
	nerr = -1;
	conf = conf_load(path, flags, nflags, errf, &nerr);
	fclose(errf);
	cr_assert_geq(nerr, 0);
	return conf;
}

static struct conf *
load_yaml(const char *yaml, const struct conf_flag *flags, size_t nflags)
{
	return load_file(write_tmp(yaml), flags, nflags);
}

/* Asserts that the last load failed with an error line "PATH:POS: ...MSG...". */
static void
expect_error(const char *pos, const char *msg)
{
	char	 want[512];
	char	*line, *save, *copy;
	int	 found = 0;

	snprintf(want, sizeof(want), "%s:%s: ", tmp_path, pos);
	copy = strdup(errbuf != NULL ? errbuf : "");
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, want, strlen(want)) == 0 &&
		    strstr(line, msg) != NULL)
			found = 1;
	free(copy);
	cr_assert(found, "no error '%s%s' in:\n%s", want, msg,
	    errbuf != NULL ? errbuf : "");
}

static const char *const referee_yaml =
    "listen:\n"
    "  - address: 127.0.0.1:18080\n"
    "workers: 1\n"
    "strategy: least_connections\n"
    "health:\n"
    "  interval: 2s\n"
    "  timeout: 1s\n"
    "  path: /\n"
    "backends:\n"
    "  - name: b1\n"
    "    address: 127.0.0.1:18001\n"
    "  - name: b2\n"
    "    address: 127.0.0.1:18002\n";

static const char *const one_backend = "backends: [{address: 127.0.0.1:9000}]\n";

static int
addr_port(const struct conf_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void
addr_ip(const struct conf_addr *a, char *buf, size_t len)
{
	if (a->ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr,
		    buf, len);
	else
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, buf, len);
}

/* Two configs are equal if every table row formats alike and the lists match. */
static void
assert_conf_equal(const struct conf *a, const struct conf *b)
{
	char	 x[512], y[512];
	size_t	 i, j, k;
	const struct conf_backend *ba, *bb;

	for (i = 0; i < conf_ndirectives; i++) {
		conf_directive_format(&conf_directives[i], a, x, sizeof(x));
		conf_directive_format(&conf_directives[i], b, y, sizeof(y));
		cr_assert_str_eq(x, y, "%s differs", conf_directives[i].name);
	}
	cr_assert_eq(a->nlisten, b->nlisten);
	for (i = 0; i < a->nlisten; i++) {
		cr_assert_str_eq(a->listen[i].text, b->listen[i].text);
		cr_assert_eq(a->listen[i].sslen, b->listen[i].sslen);
		cr_assert(memcmp(&a->listen[i].ss, &b->listen[i].ss,
		    a->listen[i].sslen) == 0);
	}
	cr_assert_eq(a->npools, b->npools);
	for (i = 0; i < a->npools; i++) {
		cr_assert_str_eq(a->pools[i].name, b->pools[i].name);
		cr_assert_eq(a->pools[i].strategy, b->pools[i].strategy);
		cr_assert_eq(a->pools[i].base_strategy,
		    b->pools[i].base_strategy);
		cr_assert_eq(a->pools[i].nbackends, b->pools[i].nbackends);
		for (j = 0; j < a->pools[i].nbackends; j++) {
			ba = &a->pools[i].backends[j];
			bb = &b->pools[i].backends[j];
			for (k = 0; k < conf_nbackend_keys; k++) {
				if (conf_directive_format(&conf_backend_keys[k],
				    ba, x, sizeof(x)) == -1)
					continue;
				conf_directive_format(&conf_backend_keys[k], bb,
				    y, sizeof(y));
				cr_assert_str_eq(x, y, "backend %s: %s differs",
				    ba->name, conf_backend_keys[k].name);
			}
			cr_assert(memcmp(&ba->addr.ss, &bb->addr.ss,
			    sizeof(ba->addr.ss)) == 0);
			cr_assert_eq(ba->nmodels, bb->nmodels);
			for (k = 0; k < (size_t)ba->nmodels; k++)
				cr_assert_str_eq(ba->models[k], bb->models[k]);
		}
	}
	cr_assert_eq(a->nroutes, b->nroutes);
	for (i = 0; i < a->nroutes; i++) {
		cr_assert_str_eq(a->routes[i].prefix, b->routes[i].prefix);
		cr_assert_str_eq(a->routes[i].host, b->routes[i].host);
		cr_assert_eq(a->routes[i].pool, b->routes[i].pool);
	}
}

/* Dumps conf, loads the dump, and checks that nothing changed. */
static void
assert_round_trip(const struct conf *conf)
{
	struct conf	*again;
	char		*text = NULL;
	size_t		 len = 0;
	FILE		*fp;

	fp = open_memstream(&text, &len);
	cr_assert(fp != NULL);
	conf_dump(conf, fp);
	fclose(fp);
	again = load_yaml(text, NULL, 0);
	cr_assert_not_null(again, "dump does not load:\n%s\nerrors:\n%s", text,
	    errbuf);
	assert_conf_equal(conf, again);
	conf_free(again);
	free(text);
}

Test(conf, tables_are_consistent)
{
	const struct conf_directive *d, *e;
	size_t		 i, j;
	struct conf	 c;
	char		 buf[256];
	const char	*dot, *dot2;

	for (i = 0; i < conf_ndirectives; i++) {
		d = &conf_directives[i];
		cr_assert_not_null(d->name);
		cr_assert_not_null(d->type);
		cr_assert_not_null(d->help, "%s has no help", d->name);
		cr_assert_not_null(d->def, "%s has no default", d->name);
		cr_assert_eq(conf_directive_find(d->name), d);
		/* Every type is one conf/ knows. */
		memset(&c, 0, sizeof(c));
		cr_assert_eq(conf_directive_format(d, &c, buf, sizeof(buf)), 0,
		    "%s: type %s unknown", d->name, d->type);
		if (d->env != NULL)
			cr_assert(strncmp(d->env, "ROUTER_", 7) == 0);
		for (j = 0; j < i; j++) {
			e = &conf_directives[j];
			cr_assert_str_neq(d->name, e->name);
			if (d->env != NULL && e->env != NULL)
				cr_assert_str_neq(d->env, e->env);
			if (d->flag != NULL && e->flag != NULL)
				cr_assert_str_neq(d->flag, e->flag);
		}
		/* A section's rows are contiguous, as conf_dump() needs. */
		if (i > 0 && (dot = strchr(d->name, '.')) != NULL) {
			e = &conf_directives[i - 1];
			dot2 = strchr(e->name, '.');
			if (dot2 == NULL || dot2 - e->name != dot - d->name ||
			    strncmp(e->name, d->name, dot - d->name) != 0)
				for (j = 0; j + 1 < i; j++)
					cr_assert(strncmp(conf_directives[j].name,
					    d->name, dot - d->name + 1) != 0,
					    "section of %s is split", d->name);
		}
	}
	cr_assert_null(conf_directive_find("nonsense"));
	cr_assert_not_null(conf_directive_find("health.interval"));
	cr_assert_str_eq(conf_directive_find("health.fall")->flag,
	    "max-errors");
	cr_assert_str_eq(conf_directive_find("workers")->env,
	    "ROUTER_WORKER_THREADS");
	cr_assert_str_eq(conf_directive_find("registry.grace")->flag,
	    "service-removal-grace-period");
}

Test(conf, defaults)
{
	struct conf	*c;
	long		 ncpu;
	char		 ip[64];

	c = load_yaml(one_backend, NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(nerr, 0);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cr_assert_eq(c->workers, ncpu > 64 ? 64 : ncpu < 1 ? 1 : ncpu);
	cr_assert_eq(c->nlisten, 1);
	cr_assert_str_eq(c->listen[0].text, "0.0.0.0:8080");
	addr_ip(&c->listen[0], ip, sizeof(ip));
	cr_assert_str_eq(ip, "0.0.0.0");
	cr_assert_eq(addr_port(&c->listen[0]), 8080);
	cr_assert_str_eq(c->user, "");
	cr_assert_str_eq(c->group, "");
	cr_assert_str_eq(c->region, "");
	cr_assert_eq(c->strategy, STRAT_ROUND_ROBIN);
	cr_assert_str_eq(c->pidfile, "/run/routerd/routerd.pid");
	cr_assert_str_eq(c->access_log, "");
	cr_assert_eq(c->max_backends, 1024);
	cr_assert_str_eq(c->admin.addr.text, "");
	cr_assert_str_eq(c->admin.token, "");
	cr_assert_str_eq(c->control.socket, "/run/routerd/routerd.sock");
	cr_assert_eq(c->health.type, HEALTH_HTTP);
	cr_assert_eq(c->health.interval_ms, 30000);
	cr_assert_eq(c->health.timeout_ms, 5000);
	cr_assert_str_eq(c->health.path, "/health");
	cr_assert_eq(c->health.port_offset, 0);
	cr_assert_eq(c->health.fall, 3);
	cr_assert_eq(c->health.rise, 2);
	cr_assert_eq(c->breaker.threshold, 10);
	cr_assert_eq(c->breaker.timeout_ms, 60000);
	cr_assert_eq(c->breaker.half_open_requests, 1);
	cr_assert_eq(c->retries.max, 3);
	cr_assert_eq(c->retries.delay_ms, 1000);
	cr_assert_eq(c->retries.buffer, 64 * 1024);
	cr_assert_eq(c->queue.size, 1000);
	cr_assert_eq(c->queue.timeout_ms, 30000);
	cr_assert_str_eq(c->registry.url, "");
	cr_assert_eq(c->registry.format, REGISTRY_MECH_COMPUTE);
	cr_assert_eq(c->registry.interval_ms, 10000);
	cr_assert_eq(c->registry.grace_ms, 60000);
	cr_assert_str_eq(c->registry.pool, "llm");
	cr_assert_eq(c->timeout.connect_ms, 5000);
	cr_assert_eq(c->timeout.client_header_ms, 10000);
	cr_assert_eq(c->timeout.client_idle_ms, 60000);
	cr_assert_eq(c->timeout.upstream_response_ms, 60000);
	cr_assert_eq(c->timeout.upstream_idle_ms, 4000);
	cr_assert_eq(c->retries.non_idempotent, 0);
	cr_assert_eq(c->timeout.drain_ms, 30000);
	cr_assert_eq(c->limits.header_size, 16384);
	cr_assert_eq(c->limits.header_count, 100);
	cr_assert_eq(c->limits.uri, 8192);
	cr_assert_eq(c->limits.body, 0);
	cr_assert_eq(c->npools, 1);
	cr_assert_str_eq(c->pools[0].name, "default");
	cr_assert_eq(c->pools[0].strategy, STRAT_ROUND_ROBIN);
	cr_assert_eq(c->pools[0].nbackends, 1);
	cr_assert_str_eq(c->pools[0].backends[0].name, "127.0.0.1:9000");
	cr_assert_eq(c->pools[0].backends[0].weight, 1);
	cr_assert_eq(c->pools[0].backends[0].backup, 0);
	cr_assert_eq(c->pools[0].backends[0].max_conns, 0);
	cr_assert_eq(c->pools[0].backends[0].nmodels, 0);
	cr_assert_eq(c->pools[0].backends[0].line, 1);
	cr_assert_eq(c->pools[0].backends[0].column, 12);
	cr_assert_eq(c->nroutes, 0);
	cr_assert_str_eq(c->file, tmp_path);
	conf_free(c);
}

Test(conf, embedded_default)
{
	struct conf	*c;

	c = load_file(NULL, NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_str_eq(c->file, "");
	cr_assert_eq(c->nlisten, 1);
	cr_assert_str_eq(c->listen[0].text, "127.0.0.1:8080");
	cr_assert_eq(c->workers, 2);
	cr_assert_str_eq(c->admin.addr.text, "127.0.0.1:9090");
	cr_assert_str_eq(c->admin.token, "change-me");
	cr_assert_str_eq(c->control.socket, "/tmp/routerd.sock");
	cr_assert_str_eq(c->pidfile, "/tmp/routerd.pid");
	cr_assert_eq(c->health.interval_ms, 2000);
	cr_assert_eq(c->health.timeout_ms, 1000);
	cr_assert_str_eq(c->health.path, "/health");
	cr_assert_eq(c->strategy, STRAT_ROUND_ROBIN);
	cr_assert_eq(c->npools, 1);
	cr_assert_eq(c->pools[0].nbackends, 2);
	cr_assert_str_eq(c->pools[0].backends[0].name, "demo-1");
	cr_assert_str_eq(c->pools[0].backends[1].name, "demo-2");
	cr_assert_eq(addr_port(&c->pools[0].backends[1].addr), 8002);
	cr_assert_eq(c->pools[0].backends[0].nmodels, 1);
	cr_assert_str_eq(c->pools[0].backends[0].models[0], "demo-model");
	assert_round_trip(c);
	conf_free(c);
}

Test(conf, example_file)
{
	struct conf	*c;
	int		 llm;

	c = load_file(EXAMPLE_CONF, NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->npools, 3);
	cr_assert_str_eq(c->pools[0].name, "qdrant");
	llm = conf_pool_find(c, "llm");
	cr_assert_eq(llm, 1);
	cr_assert_str_eq(c->pools[llm].backup_pool, "llm-spare");
	cr_assert_str_eq(c->retries.on_status, "502,503,504");
	cr_assert_eq(c->pools[llm].strategy, STRAT_MODEL);
	cr_assert_eq(c->pools[llm].base_strategy, STRAT_LEAST_LATENCY);
	cr_assert_eq(c->pools[0].backends[1].backup, 1);
	cr_assert_eq(c->pools[llm].backends[0].weight, 2);
	cr_assert_eq(c->pools[llm].backends[0].nmodels, 2);
	cr_assert_eq(c->nroutes, 3);
	cr_assert_eq(c->routes[0].pool, 0);
	cr_assert_eq(c->routes[1].pool, llm);
	cr_assert_str_eq(c->region, "nyc1");
	assert_round_trip(c);
	conf_free(c);
}

/* Every row of conf_directives[] appears in the example, so it documents all. */
Test(conf, example_file_names_every_key)
{
	FILE	*fp;
	char	 line[512], *text = NULL, key[128];
	size_t	 len = 0, i;
	FILE	*all;
	const char *dot;

	fp = fopen(EXAMPLE_CONF, "r");
	cr_assert_not_null(fp);
	all = open_memstream(&text, &len);
	while (fgets(line, sizeof(line), fp) != NULL)
		fputs(line, all);
	fclose(fp);
	fclose(all);
	for (i = 0; i < conf_ndirectives; i++) {
		dot = strchr(conf_directives[i].name, '.');
		snprintf(key, sizeof(key), "%s%s:", dot != NULL ? "  " : "\n",
		    dot != NULL ? dot + 1 : conf_directives[i].name);
		cr_assert_not_null(strstr(text, key), "%s missing",
		    conf_directives[i].name);
	}
	for (i = 0; i < conf_nbackend_keys; i++) {
		snprintf(key, sizeof(key), "%s:", conf_backend_keys[i].name);
		cr_assert_not_null(strstr(text, key));
	}
	free(text);
}

Test(conf, referee_benchmark_config)
{
	struct conf	*c;

	c = load_yaml(referee_yaml, NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->workers, 1);
	cr_assert_eq(c->strategy, STRAT_LEAST_CONN);
	cr_assert_eq(c->npools, 1);
	cr_assert_eq(c->pools[0].strategy, STRAT_LEAST_CONN);
	cr_assert_eq(c->pools[0].nbackends, 2);
	cr_assert_str_eq(c->health.path, "/");
	cr_assert_eq(c->health.interval_ms, 2000);
	cr_assert_eq(addr_port(&c->listen[0]), 18080);
	cr_assert_eq(addr_port(&c->pools[0].backends[1].addr), 18002);
	conf_free(c);
}

Test(conf, durations)
{
	cr_assert_eq(conf_parse_duration("500ms"), 500);
	cr_assert_eq(conf_parse_duration("30s"), 30000);
	cr_assert_eq(conf_parse_duration("2m"), 120000);
	cr_assert_eq(conf_parse_duration("1h"), 3600000);
	cr_assert_eq(conf_parse_duration("1d"), 86400000);
	cr_assert_eq(conf_parse_duration("1m30s"), 90000);
	cr_assert_eq(conf_parse_duration("7"), 7000);
	cr_assert_eq(conf_parse_duration("0"), 0);
	cr_assert_eq(conf_parse_duration("0ms"), 0);
	cr_assert_eq(conf_parse_duration(""), -1);
	cr_assert_eq(conf_parse_duration(NULL), -1);
	cr_assert_eq(conf_parse_duration("s"), -1);
	cr_assert_eq(conf_parse_duration("-1s"), -1);
	cr_assert_eq(conf_parse_duration("1.5s"), -1);
	cr_assert_eq(conf_parse_duration("10x"), -1);
	cr_assert_eq(conf_parse_duration("10 s"), -1);
	cr_assert_eq(conf_parse_duration("5msx"), -1);
	cr_assert_eq(conf_parse_duration("99999999999999999999"), -1);
	cr_assert_eq(conf_parse_duration("9999999999999999h"), -1);
}

Test(conf, sizes)
{
	cr_assert_eq(conf_parse_size("0"), 0);
	cr_assert_eq(conf_parse_size("512"), 512);
	cr_assert_eq(conf_parse_size("512b"), 512);
	cr_assert_eq(conf_parse_size("64k"), 65536);
	cr_assert_eq(conf_parse_size("64K"), 65536);
	cr_assert_eq(conf_parse_size("64KiB"), 65536);
	cr_assert_eq(conf_parse_size("16kb"), 16384);
	cr_assert_eq(conf_parse_size("16m"), 16 << 20);
	cr_assert_eq(conf_parse_size("16MiB"), 16 << 20);
	cr_assert_eq(conf_parse_size("1g"), 1 << 30);
	cr_assert_eq(conf_parse_size("2GB"), 2LL << 30);
	cr_assert_eq(conf_parse_size(""), -1);
	cr_assert_eq(conf_parse_size(NULL), -1);
	cr_assert_eq(conf_parse_size("k"), -1);
	cr_assert_eq(conf_parse_size("-1"), -1);
	cr_assert_eq(conf_parse_size("1t"), -1);
	cr_assert_eq(conf_parse_size("1.5k"), -1);
	cr_assert_eq(conf_parse_size("64 k"), -1);
	cr_assert_eq(conf_parse_size("99999999999999999g"), -1);
}

Test(conf, addresses)
{
	struct conf_addr a;
	char		 err[256], ip[64];

	cr_assert_eq(conf_parse_addr("127.0.0.1:8000", &a, err, sizeof(err)),
	    0, "%s", err);
	cr_assert_eq(a.ss.ss_family, AF_INET);
	cr_assert_eq(a.sslen, sizeof(struct sockaddr_in));
	cr_assert_eq(addr_port(&a), 8000);
	cr_assert_str_eq(a.text, "127.0.0.1:8000");

	cr_assert_eq(conf_parse_addr("localhost:81", &a, err, sizeof(err)), 0,
	    "%s", err);
	addr_ip(&a, ip, sizeof(ip));
	cr_assert(strcmp(ip, "127.0.0.1") == 0 || strcmp(ip, "::1") == 0);
	cr_assert_eq(addr_port(&a), 81);

	cr_assert_eq(conf_parse_addr("[::1]:443", &a, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(a.ss.ss_family, AF_INET6);
	cr_assert_eq(addr_port(&a), 443);

	cr_assert_eq(conf_parse_addr(":8080", &a, err, sizeof(err)), 0);
	addr_ip(&a, ip, sizeof(ip));
	cr_assert_str_eq(ip, "0.0.0.0");
	cr_assert_eq(addr_port(&a), 8080);
	cr_assert_eq(conf_parse_addr("8080", &a, err, sizeof(err)), 0);
	addr_ip(&a, ip, sizeof(ip));
	cr_assert_str_eq(ip, "0.0.0.0");
	cr_assert_eq(addr_port(&a), 8080);
	cr_assert_eq(conf_parse_addr("65535", &a, err, sizeof(err)), 0);

	cr_assert_eq(conf_parse_addr("127.0.0.1", &a, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "no port"), "%s", err);
	cr_assert_eq(conf_parse_addr("127.0.0.1:0", &a, err, sizeof(err)), -1);
	cr_assert_eq(conf_parse_addr("127.0.0.1:65536", &a, err,
	    sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "port"));
	cr_assert_eq(conf_parse_addr("127.0.0.1:http", &a, err, sizeof(err)),
	    -1);
	cr_assert_eq(conf_parse_addr("127.0.0.1:", &a, err, sizeof(err)), -1);
	cr_assert_eq(conf_parse_addr("::1:80", &a, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "[address]:port"));
	cr_assert_eq(conf_parse_addr("[::1:80", &a, err, sizeof(err)), -1);
	cr_assert_eq(conf_parse_addr("[::1]", &a, err, sizeof(err)), -1);
	cr_assert_eq(conf_parse_addr("[localhost]:80", &a, err, sizeof(err)),
	    -1);
	cr_assert_eq(conf_parse_addr("", &a, err, sizeof(err)), -1);
	cr_assert_eq(conf_parse_addr("no-such-host.invalid:80", &a, err,
	    sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "cannot resolve"), "%s", err);
	cr_assert_str_eq(a.text, "");
}

Test(conf, env_beats_file_and_flag_beats_env)
{
	struct conf		*c;
	struct conf_flag	 flags[] = {
		{ "health-interval", "7s" },
		{ "max-errors", "9" },
		{ "service-removal-grace-period", "2m" },
	};
	const char *yaml =
	    "workers: 3\n"
	    "strategy: random\n"
	    "health:\n"
	    "  interval: 5s\n"
	    "  timeout: 2s\n"
	    "retries: {max: 1}\n"
	    "backends: [{address: 127.0.0.1:9000}]\n";

	c = load_yaml(yaml, NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->workers, 3);
	cr_assert_eq(c->health.interval_ms, 5000);
	conf_free(c);

	setenv("ROUTER_WORKER_THREADS", "5", 1);
	setenv("ROUTER_STRATEGY", "weighted", 1);
	setenv("ROUTER_HEALTH_CHECK_INTERVAL", "6s", 1);
	setenv("ROUTER_HEALTH_CHECK_TIMEOUT", "3s", 1);
	setenv("ROUTER_MAX_RETRIES", "0", 1);
	setenv("ROUTER_REGISTRY_URL", "http://127.0.0.1:3013", 1);
	setenv("ROUTER_CIRCUIT_BREAKER_THRESHOLD", "4", 1);
	setenv("ROUTER_QUEUE_SIZE", "5", 1);
	c = load_yaml(yaml, flags, sizeof(flags) / sizeof(flags[0]));
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->workers, 5);
	cr_assert_eq(c->strategy, STRAT_WEIGHTED);
	/* A pool without its own strategy follows the overridden one. */
	cr_assert_eq(c->pools[0].strategy, STRAT_WEIGHTED);
	cr_assert_eq(c->health.interval_ms, 7000);	/* flag */
	cr_assert_eq(c->health.timeout_ms, 3000);	/* env */
	cr_assert_eq(c->health.fall, 9);
	cr_assert_eq(c->retries.max, 0);
	cr_assert_eq(c->breaker.threshold, 4);
	cr_assert_eq(c->queue.size, 5);
	cr_assert_eq(c->registry.grace_ms, 120000);
	cr_assert_str_eq(c->registry.url, "http://127.0.0.1:3013");
	/* The registry's pool exists, empty, once there is a registry. */
	cr_assert_eq(c->npools, 2);
	cr_assert_eq(c->pools[conf_pool_find(c, "llm")].nbackends, 0);
	/* The dump holds the effective values; reload it on a clean slate. */
	clear_env();
	assert_round_trip(c);
	conf_free(c);
}

Test(conf, workers_and_strategy_flags)
{
	struct conf		*c;
	struct conf_flag	 flags[] = {
		{ "workers", "auto" }, { "strategy", "power_of_two" },
	};
	long			 ncpu;

	setenv("ROUTER_WORKER_THREADS", "5", 1);
	c = load_yaml(one_backend, flags, 2);
	cr_assert_not_null(c, "%s", errbuf);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cr_assert_eq(c->workers, ncpu > 64 ? 64 : ncpu);
	cr_assert_eq(c->strategy, STRAT_POWER_OF_TWO);
	conf_free(c);
}

Test(conf, bad_env_and_flags)
{
	struct conf		*c;
	struct conf_flag	 flags[] = {
		{ "no-such-flag", "1" },
		{ "health-timeout", "soon" },
		{ "workers", NULL },
	};

	setenv("ROUTER_RETRY_DELAY", "-1", 1);
	setenv("ROUTER_WORKER_THREADS", "65", 1);
	c = load_yaml(one_backend, flags, 3);
	cr_assert_null(c);
	cr_assert_eq(nerr, 5, "%s", errbuf);
	cr_assert_not_null(strstr(errbuf, "--no-such-flag: unknown option\n"),
	    "%s", errbuf);
	cr_assert_not_null(strstr(errbuf, "--health-timeout: 'soon' is not a "
	    "duration"), "%s", errbuf);
	cr_assert_not_null(strstr(errbuf, "--workers: missing value\n"));
	cr_assert_not_null(strstr(errbuf, "ROUTER_RETRY_DELAY: '-1' is not a "
	    "duration"));
	cr_assert_not_null(strstr(errbuf, "ROUTER_WORKER_THREADS: '65' is not "
	    "an integer from 1 to 32"));
}

Test(conf, error_positions)
{
	struct conf	*c;

	c = load_yaml(
	    "listen:\n"
	    "  - address: 127.0.0.1:8080\n"
	    "health:\n"
	    "  interval: 3x\n"
	    "  fall: 0\n"
	    "backends:\n"
	    "  - { name: a, address: 127.0.0.1:1, weight: 1001 }\n"
	    "  - name: b\n"
	    "    address: 127.0.0.1:99999\n", NULL, 0);
	cr_assert_null(c);
	cr_assert_eq(nerr, 4, "%s", errbuf);
	expect_error("4:13", "health.interval: '3x' is not a duration");
	expect_error("5:9", "health.fall: '0' is not an integer from 1 to 1000");
	expect_error("7:46", "weight: '1001' is not an integer from 1 to 1000");
	expect_error("9:14", "port must be a number from 1 to 65535");
}

Test(conf, many_errors_all_reported)
{
	struct conf	*c;

	c = load_yaml(
	    "workers: 0\n"				/* 1 */
	    "strategy: fastest\n"			/* 2 */
	    "foo: 1\n"					/* 3 */
	    "max_backends: 70000\n"			/* 4 */
	    "admin: 5\n"				/* 5 */
	    "limits: {header_size: 9k, body: 1x}\n"	/* 6 */
	    "queue: {size: 10, size: 20}\n"		/* 7 */
	    "backends:\n"
	    "  - { address: localhost }\n"		/* 9 */
	    "  - { name: \"a b\", address: 127.0.0.1:2, backup: maybe }\n"
	    "  - { address: 127.0.0.1:3, models: [m, m], colour: red }\n",
	    NULL, 0);
	cr_assert_null(c);
	expect_error("1:10", "workers:");
	expect_error("2:11", "unknown value 'fastest'");
	expect_error("3:1", "unknown key 'foo'");
	expect_error("4:15", "max_backends: '70000' is not an integer from 1 "
	    "to 65536");
	expect_error("5:8", "admin must be a mapping");
	expect_error("6:33", "limits.body: '1x' is not a size");
	expect_error("7:19", "duplicate key 'size' in queue (first at line 7)");
	expect_error("9:16", "'localhost': no port");
	expect_error("10:13", "may not contain spaces");
	expect_error("10:50", "backup: 'maybe' is not a boolean");
	expect_error("11:41", "models: 'm' listed twice");
	expect_error("11:45", "unknown key 'colour' in backend");
	cr_assert_eq(nerr, 12, "%s", errbuf);
	/* Written in file order although found in another. */
	cr_assert_lt(strstr(errbuf, ":11:41: models"),
	    strstr(errbuf, ":11:45: unknown key 'colour'"));
	cr_assert_lt(strstr(errbuf, ":10:50: backup"),
	    strstr(errbuf, ":11:41: models"));
}

Test(conf, unknown_keys)
{
	struct conf	*c;

	c = load_yaml("health:\n  intervall: 5s\n"
	    "pools:\n  p:\n    stratgy: random\n"
	    "    backends: [{address: 127.0.0.1:1}]\n"
	    "routes:\n  - {prefix: /, pool: p, weight: 2}\n", NULL, 0);
	cr_assert_null(c);
	expect_error("2:3", "unknown key 'intervall' in health");
	expect_error("5:5", "unknown key 'stratgy' in pool 'p'");
	expect_error("8:26", "unknown key 'weight' in route");
	cr_assert_eq(nerr, 3, "%s", errbuf);
}

Test(conf, shorthand_and_pools_together)
{
	struct conf	*c;

	c = load_yaml(
	    "strategy: least_latency\n"
	    "pools:\n"
	    "  vec:\n"
	    "    strategy: random\n"
	    "    backends: [{name: v1, address: 127.0.0.1:6333}]\n"
	    "  llm:\n"
	    "    backends: [{name: l1, address: 127.0.0.1:8000}]\n"
	    "backends:\n"
	    "  - {name: d1, address: 127.0.0.1:9000, weight: 5}\n"
	    "  - {name: d2, address: 127.0.0.1:9001, backup: yes}\n"
	    "routes:\n"
	    "  - {prefix: /v, pool: vec}\n", NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->npools, 3);
	cr_assert_str_eq(c->pools[0].name, "default");
	cr_assert_eq(c->pools[0].strategy, STRAT_LEAST_LATENCY);
	cr_assert_eq(c->pools[0].nbackends, 2);
	cr_assert_eq(c->pools[0].backends[0].weight, 5);
	cr_assert_eq(c->pools[0].backends[1].backup, 1);
	cr_assert_str_eq(c->pools[1].name, "vec");
	cr_assert_eq(c->pools[1].strategy, STRAT_RANDOM);
	cr_assert_str_eq(c->pools[2].name, "llm");
	cr_assert_eq(c->pools[2].strategy, STRAT_LEAST_LATENCY);
	cr_assert_eq(c->routes[0].pool, 1);
	cr_assert_str_eq(c->routes[0].prefix, "/v");
	cr_assert_eq(conf_pool_find(c, "llm"), 2);
	cr_assert_eq(conf_pool_find(c, "nope"), -1);
	assert_round_trip(c);
	conf_free(c);
}

Test(conf, duplicate_names)
{
	struct conf	*c;

	c = load_yaml(
	    "pools:\n"
	    "  a:\n"
	    "    backends:\n"
	    "      - {name: x, address: 127.0.0.1:1}\n"
	    "  default:\n"
	    "    backends: [{name: y, address: 127.0.0.1:2}]\n"
	    "  b:\n"
	    "    backends:\n"
	    "      - {name: x, address: 127.0.0.1:3}\n"
	    "      - {address: 127.0.0.1:1}\n"
	    "      - {name: 127.0.0.1:1, address: 127.0.0.1:4}\n"
	    "backends:\n"
	    "  - {name: z, address: 127.0.0.1:5}\n", NULL, 0);
	cr_assert_null(c);
	expect_error("9:9", "duplicate backend name 'x' (first at line 4)");
	expect_error("11:9", "duplicate backend name '127.0.0.1:1' "
	    "(first at line 10)");
	expect_error("12:1", "duplicate pool 'default' (first at line 5)");
	cr_assert_eq(nerr, 3, "%s", errbuf);

	c = load_yaml("pools:\n  a:\n    backends: [{address: 127.0.0.1:1}]\n"
	    "  a:\n    backends: [{address: 127.0.0.1:2}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("4:3", "duplicate key 'a' in pools");
}

Test(conf, bad_strategy)
{
	struct conf	*c;

	c = load_yaml("strategy: fastest\n"
	    "pools:\n  p:\n    strategy: weigthed\n"
	    "    base_strategy: geo\n"
	    "    backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:11", "strategy: unknown value 'fastest' (expected "
	    "round_robin, weighted, least_connections, power_of_two, "
	    "least_latency, random, geo, model, least_tokens or llm)");
	expect_error("4:15", "strategy: unknown value 'weigthed'");
	expect_error("3:3", "pool 'p': base_strategy cannot be geo or model");
	cr_assert_eq(nerr, 3, "%s", errbuf);
}

Test(conf, routes)
{
	struct conf	*c;

	c = load_yaml("backends: [{address: 127.0.0.1:1}]\n"
	    "routes:\n"
	    "  - {prefix: /a, pool: nowhere}\n"
	    "  - {prefix: b, pool: default}\n"
	    "  - {prefix: /c}\n"
	    "  - {pool: default, host: api.example.com}\n", NULL, 0);
	cr_assert_null(c);
	expect_error("3:24", "route: unknown pool 'nowhere'");
	expect_error("4:14", "prefix: path 'b' must start with /");
	expect_error("5:5", "route: pool is required");
	cr_assert_eq(nerr, 3, "%s", errbuf);

	c = load_yaml("backends: [{address: 127.0.0.1:1}]\n"
	    "routes:\n"
	    "  - {pool: default, host: api.example.com}\n", NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->nroutes, 1);
	cr_assert_str_eq(c->routes[0].prefix, "/");
	cr_assert_str_eq(c->routes[0].host, "api.example.com");
	cr_assert_eq(c->routes[0].pool, 0);
	conf_free(c);
}

Test(conf, syntax_errors)
{
	struct conf	*c;

	c = load_yaml("health:\n  interval: [1s\nbackends: []\n", NULL, 0);
	cr_assert_null(c);
	cr_assert_eq(nerr, 1, "%s", errbuf);
	expect_error("3:9", "syntax error");

	c = load_yaml("health:\n  interval: 1s\n timeout: 2s\n", NULL, 0);
	cr_assert_null(c);
	cr_assert_eq(nerr, 1, "%s", errbuf);
	expect_error("3:2", "syntax error: did not find expected key");

	c = load_yaml("a: \"unterminated\n", NULL, 0);
	cr_assert_null(c);
	cr_assert_eq(nerr, 1, "%s", errbuf);
	cr_assert_not_null(strstr(errbuf, "syntax error"));

	c = load_yaml("- just\n- a list\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:1", "the top level must be a mapping");

	c = load_yaml(one_backend, NULL, 0);
	cr_assert_not_null(c);
	conf_free(c);
	c = load_yaml("backends: [{address: 127.0.0.1:1}]\n---\nworkers: 2\n",
	    NULL, 0);
	cr_assert_null(c);
	expect_error("3:1", "only one YAML document");
}

Test(conf, structure_and_type_errors)
{
	struct conf	*c;

	c = load_yaml(
	    "workers: [1, 2]\n"
	    "health: {interval: {a: 1}}\n"
	    "listen: 127.0.0.1:80\n"
	    "pools: [a]\n"
	    "backends:\n"
	    "  - {address: 127.0.0.1:1, models: phi3}\n"
	    "  - {name: x}\n"
	    "  - {address: \"\"}\n"
	    "  - just-a-string\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:10", "workers: expected a single value, not a list");
	expect_error("2:20", "health.interval: expected a single value, not "
	    "a mapping");
	expect_error("3:9", "listen must be a list");
	expect_error("4:8", "pools must be a mapping");
	expect_error("6:36", "models must be a list");
	expect_error("7:5", "backend x: address is required");
	expect_error("8:15", "address: must not be empty");
	expect_error("9:5", "backend must be a mapping");
	cr_assert_eq(nerr, 8, "%s", errbuf);
}

Test(conf, listen_forms)
{
	struct conf	*c;

	c = load_yaml("listen:\n  - address: :8081\n  - 8082\n"
	    "  - {address: \"[::1]:8083\"}\n" "backends: [{address: 127.0.0.1:1}]\n",
	    NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->nlisten, 3);
	cr_assert_eq(addr_port(&c->listen[1]), 8082);
	cr_assert_eq(c->listen[2].ss.ss_family, AF_INET6);
	assert_round_trip(c);
	conf_free(c);

	c = load_yaml("listen: []\nbackends: [{address: 127.0.0.1:1}]\n",
	    NULL, 0);
	cr_assert_null(c);
	expect_error("1:9", "at least one address");

	/* found by tests/fuzz/fuzz_conf: an empty item loaded as no listener at all */
	c = load_yaml("listen:\n  - \"\"\n  -\n  - ~\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c, "an empty listen item was taken");
	expect_error("2:5", "listen: address must not be empty");
	expect_error("4:5", "listen: address must not be empty");
	cr_assert_eq(nerr, 3, "%s", errbuf);

	c = load_yaml("listen:\n  - :8080\n  - 0.0.0.0:8080\n"
	    "admin: {address: \"8080\"}\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("3:5", "listen: 0.0.0.0:8080 is listed twice (first at "
	    "line 2)");
	expect_error("4:18", "admin.address 8080 is also a listen address");
}

Test(conf, pools_need_backends_except_registry)
{
	struct conf	*c;

	c = load_yaml("pools:\n  empty: {}\n  llm: {backends: []}\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("2:3", "pool 'empty' has no backends");
	cr_assert_eq(nerr, 1, "%s", errbuf);

	c = load_yaml("registry:\n  url: http://127.0.0.1:3013\n"
	    "  pool: models\n  format: simple\n", NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->npools, 1);
	cr_assert_str_eq(c->pools[0].name, "models");
	cr_assert_eq(c->pools[0].nbackends, 0);
	cr_assert_eq(c->registry.format, REGISTRY_SIMPLE);
	assert_round_trip(c);
	conf_free(c);

	c = load_yaml("pools:\n  b: 5\nbackends: 7\n"
	    "registry: {pool: r}\n", NULL, 0);
	cr_assert_null(c);
	expect_error("2:6", "pool 'b' must be a mapping");
	expect_error("3:11", "backends must be a list");
	cr_assert_eq(nerr, 3, "%s", errbuf);	/* and "no backends" */

	c = load_yaml("workers: 2\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:1", "no backends");

	c = load_yaml("registry: {url: ftp://x}\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:17", "is not an http:// or https:// URL");
}

Test(conf, limits_and_ranges)
{
	struct conf	*c;

	c = load_yaml("limits:\n  header_size: 4k\n  uri: 8k\n"
	    "max_backends: 1\n"
	    "backends: [{address: 127.0.0.1:1}, {address: 127.0.0.1:2}]\n",
	    NULL, 0);
	cr_assert_null(c);
	expect_error("3:8", "limits.uri (8192) is larger than "
	    "limits.header_size (4096)");
	expect_error("4:15", "2 backends do not fit in max_backends 1");
	cr_assert_eq(nerr, 2, "%s", errbuf);

	c = load_yaml("limits: {header_size: 4k}\n" "health: {path: health}\n"
	    "control: {socket: \"\"}\n" "workers: 65\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:23", "limits.uri (8192) is larger than");
	expect_error("2:16", "path 'health' must start with /");
	expect_error("3:19", "must not be empty");
	expect_error("4:10", "workers: '65' is not an integer from 1 to 32");

	c = load_yaml("workers: auto\nlimits: {body: 10g, uri: 1k}\n"
	    "health: {type: none, interval: 1m30s}\n"
	    "backends: [{address: 127.0.0.1:1, weight: 1000, max_conns: 0}]\n",
	    NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->limits.body, 10ULL << 30);
	cr_assert_eq(c->limits.uri, 1024);
	cr_assert_eq(c->health.type, HEALTH_NONE);
	cr_assert_eq(c->health.interval_ms, 90000);
	cr_assert_geq(c->workers, 1);
	assert_round_trip(c);
	conf_free(c);
}

/*
 * routerd -t refuses what the workers cannot honour instead of clamping it,
 * and says which limit: the head buffer, the parsed head, the exclusion set.
 */
Test(conf, limits_the_code_cannot_honour)
{
	struct conf	*c;

	c = load_yaml("limits:\n  header_size: 64k\n  header_count: 257\n"
	    "  uri: 33k\n"
	    "retries:\n  max: 9\n  buffer: 16k\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("2:16", "limits.header_size: 64k is out of range (1k to 32k): "
	    "a request head must fit the worker's 32k input buffer");
	expect_error("3:17", "limits.header_count: '257' is not an integer from "
	    "1 to 256: a parsed head holds at most 256 fields");
	expect_error("4:8", "limits.uri: 33k is out of range (64 to 32k)");
	expect_error("6:8", "retries.max: '9' is not an integer from 0 to 8: "
	    "each failed backend is excluded");
	expect_error("7:11", "retries.buffer: 16k is out of range (32k to 1g): "
	    "the retry buffer also carries the request head");
	cr_assert_eq(nerr, 5, "%s", errbuf);

	/* the master could not run 33 workers beside a reload's next generation */
	c = load_yaml("workers: 33\nbackends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_null(c);
	expect_error("1:10", "workers: '33' is not an integer from 1 to 32: a reload "
	    "runs the old and the new workers side by side");

	/* the bounds themselves are honoured, and so taken */
	c = load_yaml("limits: {header_size: 32k, header_count: 256, uri: 32k}\n"
	    "retries: {max: 8, buffer: 32k}\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_eq(c->limits.header_size, 32768);
	cr_assert_eq(c->limits.header_count, 256);
	cr_assert_eq(c->retries.max, 8);
	cr_assert_eq(c->retries.buffer, 32768);
	cr_assert_eq(c->limits.connections, 10000);
	conf_free(c);

	/* the environment is held to the same limit */
	setenv("ROUTER_MAX_RETRIES", "20", 1);
	c = load_yaml("backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	unsetenv("ROUTER_MAX_RETRIES");
	cr_assert_null(c);
	cr_assert(strstr(errbuf, "ROUTER_MAX_RETRIES") != NULL &&
	    strstr(errbuf, "exclusion set holds 8") != NULL, "%s", errbuf);
}

Test(conf, null_and_quoted_values)
{
	struct conf	*c;

	c = load_yaml("admin:\n  address: ~\n  token:\n"
	    "user: \"routerd\"\n" "retries: {max: \"2\"}\n"
	    "region: 'us \"east\" \\\\ 1'\n"
	    "backends: [{address: 127.0.0.1:1, region: null}]\n", NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	cr_assert_str_eq(c->admin.addr.text, "");
	cr_assert_str_eq(c->admin.token, "");
	cr_assert_str_eq(c->user, "routerd");
	cr_assert_eq(c->retries.max, 2);
	cr_assert_str_eq(c->region, "us \"east\" \\\\ 1");
	assert_round_trip(c);
	conf_free(c);
}

Test(conf, missing_file_and_null_sinks)
{
	struct conf	*c;
	int		 n = 0;

	c = load_file("/nonexistent/routerd.yaml", NULL, 0);
	cr_assert_null(c);
	cr_assert_eq(nerr, 1);
	cr_assert_str_eq(errbuf, "/nonexistent/routerd.yaml: No such file or "
	    "directory\n");

	c = conf_load(write_tmp("workers: x\n"), NULL, 0, NULL, &n);
	cr_assert_null(c);
	cr_assert_eq(n, 2);
	c = conf_load(write_tmp(one_backend), NULL, 0, NULL, NULL);
	cr_assert_not_null(c);
	conf_free(c);
	conf_free(NULL);
}

Test(conf, names)
{
	int	 i;

	for (i = 0; i < STRAT_COUNT; i++)
		cr_assert_eq(conf_strategy_from_name(conf_strategy_name(i)), i);
	cr_assert_str_eq(conf_strategy_name(STRAT_LLM), "llm");
	cr_assert_str_eq(conf_strategy_name(STRAT_LEAST_CONN),
	    "least_connections");
	cr_assert_str_eq(conf_strategy_name(STRAT_MODEL), "model");
	cr_assert_eq(conf_strategy_from_name("power_of_two"),
	    STRAT_POWER_OF_TWO);
	cr_assert_eq(conf_strategy_from_name("fastest"), -1);
	cr_assert_eq(conf_strategy_from_name(""), -1);
	cr_assert_str_eq(conf_strategy_name(STRAT_COUNT), "unknown");
	cr_assert_str_eq(conf_health_type_name(HEALTH_HTTP), "http");
	cr_assert_str_eq(conf_health_type_name(HEALTH_LLM), "llm");
	cr_assert_str_eq(conf_health_type_name(HEALTH_NONE), "none");
}

Test(conf, directive_format)
{
	struct conf	*c;
	char		 buf[64];

	c = load_yaml("retries: {delay: 1500ms, buffer: 1m}\n"
	    "breaker: {timeout: 2h}\n" "limits: {body: 1000}\n"
	    "backends: [{address: 127.0.0.1:1}]\n", NULL, 0);
	cr_assert_not_null(c, "%s", errbuf);
	conf_directive_format(conf_directive_find("retries.delay"), c, buf,
	    sizeof(buf));
	cr_assert_str_eq(buf, "1500ms");
	conf_directive_format(conf_directive_find("retries.buffer"), c, buf,
	    sizeof(buf));
	cr_assert_str_eq(buf, "1m");
	conf_directive_format(conf_directive_find("breaker.timeout"), c, buf,
	    sizeof(buf));
	cr_assert_str_eq(buf, "2h");
	conf_directive_format(conf_directive_find("limits.body"), c, buf,
	    sizeof(buf));
	cr_assert_str_eq(buf, "1000");
	conf_directive_format(conf_directive_find("strategy"), c, buf,
	    sizeof(buf));
	cr_assert_str_eq(buf, "round_robin");
	cr_assert_eq(conf_directive_format(&conf_backend_keys[7],
	    &c->pools[0].backends[0], buf, sizeof(buf)), -1);
	conf_free(c);
}

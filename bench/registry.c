/* make bench: milliseconds to parse a registry answer of N services and apply it to the table (target: 10,000 in < 100 ms). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"
#include "shm/table.h"
#include "syncer/syncer.h"

static double
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A mech-compute answer of n services; every `moved`-th one on another port. */
static char *
answer(int n, int moved, size_t *len)
{
	size_t	 cap = (size_t)n * 600 + 64, off = 0;
	char	*b = malloc(cap);
	int	 i;

	if (b == NULL)
		return NULL;
	off += (size_t)snprintf(b + off, cap - off, "{\"success\":true,\"services\":[");
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(b + off, cap - off,
		    "%s{\"serviceName\":\"llm-%d\",\"serviceId\":\"svc-%05d\","
		    "\"vmIp\":\"10.%d.%d.%d\",\"internalPort\":%d,\"status\":\"%s\","
		    "\"environment\":\"prod\",\"region\":\"nyc%d\","
		    "\"capabilities\":[\"chat\"],\"healthCheckEndpoint\":\"/health\","
		    "\"metadata\":{\"models\":[\"model-%d\",\"model-%d\"],\"weight\":%d},"
		    "\"lastSeen\":\"2024-05-01T12:00:00Z\","
		    "\"internalUrl\":\"http://10.%d.%d.%d:%d\"}",
		    i ? "," : "", i % 50, i, i >> 16 & 255, i >> 8 & 255, i & 255,
		    8000 + (moved && i % moved == 0), i % 3 ? "healthy" : "degraded",
		    i % 4, i % 32, (i + 1) % 32, 1 + i % 10,
		    i >> 16 & 255, i >> 8 & 255, i & 255, 8000);
	off += (size_t)snprintf(b + off, cap - off, "]}");
	*len = off;
	return b;
}

static int
to_master(void *arg, const void *msg, size_t len)
{
	return registry_msg(arg, msg, len);
}

/* One sync: parse the answer, pack it, hand it to the master's apply.  Prints the times. */
static int
round_trip(struct master *m, const char *what, const char *body, size_t len)
{
	static struct syncer_set set;
	struct syncer_stats	 st;
	struct registry_stats	 rs;
	char			 err[256];
	double			 t0, t1, t2;
	static uint32_t		 batch;

	syncer_set_clear(&set);
	memset(&st, 0, sizeof(st));
	t0 = now_ms();
	if (syncer_parse(m->conf, body, len, &set, err, sizeof(err)) == -1) {
		fprintf(stderr, "bench-registry: parse: %s\n", err);
		return -1;
	}
	t1 = now_ms();
	st.syncs_ok = ++batch;
	st.listed = (uint32_t)set.n;
	if (syncer_batch_send(&set, batch, &st, to_master, m) == -1)
		return -1;
	t2 = now_ms();
	registry_stats(m, &rs);
	printf("registry %-26s %5zu services: parse %6.2f ms, pack+apply %6.2f ms "
	    "(apply %6.2f ms), total %6.2f ms%s\n", what, set.n, t1 - t0, t2 - t1,
	    (double)rs.apply_us / 1e3, t2 - t0, t2 - t0 < 100 ? "" : "  OVER 100 ms");
	return 0;
}

int
main(int argc, char *argv[])
{
	struct master		 m;
	struct registry_stats	 rs;
	struct conf		*cf;
	char			 path[] = "/tmp/bench-registry-XXXXXX", *body;
	size_t			 len;
	int			 n = argc > 1 ? atoi(argv[1]) : 10000, fd, nerr;
	FILE			*f;

	if (n < 1 || n > 60000)
		n = 10000;
	log_init(1, 0);
	syncer_json_arena(argc > 2 && strcmp(argv[2], "-m") == 0 ? 0 : 1);
	if ((fd = mkstemp(path)) == -1 || (f = fdopen(fd, "w")) == NULL) {
		perror("bench-registry: mkstemp");
		return 1;
	}
	fprintf(f, "listen:\n  - address: 127.0.0.1:1\nmax_backends: %d\n"
	    "registry:\n  url: http://127.0.0.1:1\n  pool: llm\n"
	    "pools:\n  llm:\n    strategy: round_robin\n", n + 16);
	fclose(f);
	cf = conf_load(path, NULL, 0, stderr, &nerr);
	unlink(path);
	if (cf == NULL)
		return 1;
	memset(&m, 0, sizeof(m));
	m.conf = cf;
	if ((m.shm = shm_create((uint32_t)cf->max_backends, 2, NULL)) == NULL ||
	    ev_init(&m.loop, 16) == -1) {
		perror("bench-registry: table");
		return 1;
	}
	/* the master publishes its pools before any pull; the registry looks its pool up by name */
	shm_pool_set(m.shm, 0, "llm", STRAT_ROUND_ROBIN, STRAT_ROUND_ROBIN);
	if ((body = answer(n, 0, &len)) == NULL)
		return 1;
	printf("registry answer: %d services, %zu bytes of JSON\n", n, len);
	if (round_trip(&m, "first (all new)", body, len) == -1 ||
	    round_trip(&m, "unchanged", body, len) == -1)
		return 1;
	free(body);
	if ((body = answer(n, 100, &len)) == NULL ||
	    round_trip(&m, "1% moved", body, len) == -1)
		return 1;
	free(body);
	registry_stats(&m, &rs);
	if (rs.backends != (uint32_t)n) {
		fprintf(stderr, "bench-registry: %u backends in the table, want %d\n",
		    rs.backends, n);
		return 1;
	}
	registry_reset();
	syncer_json_arena(0);
	ev_close(&m.loop);
	shm_destroy(m.shm);
	conf_free(cf);
	return 0;
}

/* Unit tests of the registry syncer (formats, records) and the master's apply (master/registry.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"
#include "shm/table.h"
#include "syncer/syncer.h"

/* A config from YAML text (registry.url set so the registry pool exists). */
static struct conf *
conf_from(const char *extra)
{
	char		 path[] = "/tmp/test-syncer-XXXXXX";
	int		 fd, nerr;
	FILE		*f;
	struct conf	*cf;

	fd = mkstemp(path);
	cr_assert_neq(fd, -1);
	f = fdopen(fd, "w");
	fprintf(f, "listen:\n  - address: 127.0.0.1:1\nmax_backends: 64\n"
	    "registry:\n  url: http://127.0.0.1:1\n  pool: llm\n%s"
	    "pools:\n  llm:\n    strategy: round_robin\n"
	    "  other:\n    backends:\n      - { name: cfg1, address: 127.0.0.1:9 }\n",
	    extra);
	fclose(f);
	cf = conf_load(path, NULL, 0, stderr, &nerr);
	unlink(path);
	cr_assert_not_null(cf, "config did not load");
	return cf;
}

static const char *
mech_rec(char *buf, size_t len, const char *id, const char *ip, int port,
    const char *status, const char *env, const char *md)
{
	snprintf(buf, len, "{\"serviceName\":\"llm\",\"serviceId\":\"%s\",\"vmIp\":\"%s\","
	    "\"internalPort\":%d,\"status\":\"%s\",\"environment\":\"%s\","
	    "\"region\":\"nyc1\",\"capabilities\":[\"cap-model\"],"
	    "\"healthCheckEndpoint\":\"http://%s:%d/healthz?x=1\",\"metadata\":%s}",
	    id, ip, port, status, env, ip, port, md);
	return buf;
}

Test(syncer_format, mech_compute_filters_and_skips)
{
	struct conf		*cf = conf_from("  environment: prod\n");
	struct syncer_set	 set;
	char			 body[8192], r[6][512], err[256];

	memset(&set, 0, sizeof(set));
	snprintf(body, sizeof(body), "{\"success\":true,\"services\":[%s,%s,%s,%s,%s,%s,"
	    "{\"serviceId\":\"x\"},7,{\"serviceId\":\"p\",\"vmIp\":\"1.2.3.4\","
	    "\"internalPort\":70000,\"status\":\"healthy\",\"environment\":\"prod\"}]}",
	    mech_rec(r[0], 512, "a", "10.0.0.1", 8000, "healthy", "prod",
		"{\"models\":[\"m1\",\"m2\"],\"weight\":7}"),
	    mech_rec(r[1], 512, "b", "10.0.0.2", 8001, "degraded", "prod",
		"{\"static\":true}"),
	    mech_rec(r[2], 512, "c", "10.0.0.3", 8002, "unhealthy", "prod", "{}"),
	    mech_rec(r[3], 512, "d", "10.0.0.4", 8003, "offline", "prod", "{}"),
	    mech_rec(r[4], 512, "e", "10.0.0.5", 8004, "healthy", "staging", "{}"),
	    mech_rec(r[5], 512, "f", "10.0.0.6", 8005, "healthy", "prod",
		"{\"weight\":\"heavy\"}"));
	cr_assert_eq(syncer_parse(cf, body, strlen(body), &set, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(set.n, 2);
	cr_assert_eq(set.filtered, 3);	/* unhealthy, offline, staging */
	cr_assert_eq(set.skipped, 4);	/* bad weight, no address, not an object, bad port */
	cr_assert_str_eq(set.svc[0].name, "a");
	cr_assert_str_eq(set.svc[0].host, "10.0.0.1");
	cr_assert_eq(set.svc[0].port, 8000);
	cr_assert_eq(set.svc[0].weight, 7);
	cr_assert_eq(set.svc[0].nmodels, 2);
	cr_assert_str_eq(set.svc[0].models[1], "m2");
	cr_assert_str_eq(set.svc[0].health_path, "/healthz?x=1");
	cr_assert_str_eq(set.svc[0].region, "nyc1");
	cr_assert_eq(set.svc[0].is_static, 0);
	/* no metadata.models: the capabilities are the models */
	cr_assert_str_eq(set.svc[1].models[0], "cap-model");
	cr_assert_eq(set.svc[1].is_static, 1);
	syncer_set_free(&set);
	conf_free(cf);
}

Test(syncer_format, bad_answers_fail_whole)
{
	struct conf		*cf = conf_from("");
	struct syncer_set	 set;
	char			 err[256];
	const char		*bad[] = {
		"", "<html>", "{\"success\":true,\"services\":[{\"a\":1}",
		"{\"success\":false,\"services\":[]}", "{\"services\":{}}", "[]", "42",
		/* trailing commas (found by tests/fuzz/fuzz_registry) */
		"{\"success\":true,\"services\":[],}",
		"{\"success\":true,\"services\":[{\"serviceId\":\"a\"}, ]}",
	};
	size_t			 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&set, 0, sizeof(set));
		cr_assert_eq(syncer_parse(cf, bad[i], strlen(bad[i]), &set, err,
		    sizeof(err)), -1, "accepted: %s", bad[i]);
		cr_assert_neq(err[0], '\0');
		syncer_set_free(&set);
	}
	conf_free(cf);
}

Test(syncer_format, simple_bare_array_is_strict_json)
{
	struct conf		*cf = conf_from("  format: simple\n  type_filter: \"\"\n");
	struct syncer_set	 set;
	char			 err[256];
	const char		*good = "[{\"id\":\"a\",\"host\":\"10.0.0.1\",\"port\":1}]";
	const char		*bad[] = {
		"[{\"id\":\"a\",\"host\":\"10.0.0.1\",\"port\":1}, ]", "[,]",
		"[{\"id\":\"a\",\"host\":\"10.0.0.1\",\"port\":1}",
	};
	/* a NUL byte put jansson's count of the bytes it took out of step */
	static const char	 nul[] = "[[0\0]";
	size_t			 i;

	memset(&set, 0, sizeof(set));
	cr_assert_eq(syncer_parse(cf, good, strlen(good), &set, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(set.n, 1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		syncer_set_clear(&set);
		cr_assert_eq(syncer_parse(cf, bad[i], strlen(bad[i]), &set, err,
		    sizeof(err)), -1, "accepted: %s", bad[i]);
		cr_assert_neq(err[0], '\0');
	}
	syncer_set_clear(&set);
	cr_assert_eq(syncer_parse(cf, nul, sizeof(nul) - 1, &set, err, sizeof(err)),
	    -1, "accepted a NUL byte");
	cr_assert_str_eq(err, "invalid JSON: NUL byte at byte 3");
	syncer_set_free(&set);
	conf_free(cf);
}

Test(syncer_format, simple_type_filter_and_healthy)
{
	struct conf		*cf = conf_from("  format: simple\n");
	struct syncer_set	 set;
	char			 err[256];
	const char		*body = "{\"services\":["
	    "{\"id\":\"s1\",\"name\":\"one\",\"host\":\"10.1.0.1\",\"port\":9000,\"healthy\":true,"
	    "\"metadata\":{\"type\":\"openai-api\",\"models\":[\"phi3\"],\"weight\":2,"
	    "\"babysitter_url\":\"http://10.1.0.1:9001/status\"}},"
	    "{\"id\":\"s2\",\"host\":\"10.1.0.2\",\"port\":\"9000\",\"healthy\":true,"
	    "\"metadata\":{\"type\":\"vector-db\"}},"
	    "{\"id\":\"s3\",\"host\":\"10.1.0.3\",\"port\":9000,\"healthy\":false,"
	    "\"metadata\":{\"type\":\"openai-api\"}},"
	    "{\"id\":\"s4\",\"host\":\"\",\"port\":9000,\"metadata\":{\"type\":\"openai-api\"}},"
	    "{\"name\":\"s5\",\"host\":\"llm.example\",\"port\":\"80\","
	    "\"metadata\":{\"type\":\"openai-api\",\"static\":\"true\"}}]}";

	memset(&set, 0, sizeof(set));
	cr_assert_eq(syncer_parse(cf, body, strlen(body), &set, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(set.n, 2);
	cr_assert_eq(set.filtered, 2);
	cr_assert_eq(set.skipped, 1);
	cr_assert_str_eq(set.svc[0].name, "s1");
	cr_assert_eq(set.svc[0].weight, 2);
	cr_assert_str_eq(set.svc[0].health_path, "/status");
	cr_assert_str_eq(set.svc[1].name, "s5");
	cr_assert_str_eq(set.svc[1].host, "llm.example");
	cr_assert_eq(set.svc[1].is_static, 1);
	syncer_set_free(&set);
	conf_free(cf);
}

Test(syncer_format, etcd_values_and_range)
{
	struct conf		*cf = conf_from("  format: etcd\n  prefix: /a/\n");
	struct syncer_set	 set;
	char			 err[256], buf[512];
	uint64_t		 rev;
	/* base64 of {"serviceId":"e1","vmIp":"10.2.0.1","internalPort":81,"status":"healthy"} */
	const char *body = "{\"header\":{\"revision\":\"17\"},\"kvs\":[{\"key\":\"L2EvZTE=\","
	    "\"value\":\"eyJzZXJ2aWNlSWQiOiJlMSIsInZtSXAiOiIxMC4yLjAuMSIsImludGVybmFsUG9ydCI6"
	    "ODEsInN0YXR1cyI6ImhlYWx0aHkifQ==\"},{\"key\":\"L2EvYg==\",\"value\":\"!!\"}],"
	    "\"count\":\"2\"}";

	memset(&set, 0, sizeof(set));
	cr_assert_eq(syncer_parse(cf, body, strlen(body), &set, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(set.n, 1);
	cr_assert_eq(set.skipped, 1);
	cr_assert_eq(set.revision, 17);
	cr_assert_str_eq(set.svc[0].name, "e1");
	cr_assert_eq(set.svc[0].port, 81);
	syncer_set_clear(&set);
	/* no key under the prefix: no kvs member at all */
	body = "{\"header\":{\"revision\":\"18\"}}";
	cr_assert_eq(syncer_parse(cf, body, strlen(body), &set, err, sizeof(err)), 0);
	cr_assert_eq(set.n, 0);
	cr_assert_eq(syncer_etcd_revision(body, strlen(body), &rev), 0);
	cr_assert_eq(rev, 18);
	/* "/a/" .. "/a0" */
	cr_assert_gt(syncer_etcd_range_body("/a/", 0, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "{\"key\":\"L2Ev\",\"range_end\":\"L2Ew\"}");
	cr_assert_gt(syncer_etcd_range_body("", 1, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"count_only\":true}");
	syncer_set_free(&set);
	conf_free(cf);
}

Test(syncer_format, pack_unpack)
{
	struct syncer_svc	 s;
	struct syncer_rec_view	 v;
	_Alignas(8) char	 buf[4096];
	uint8_t			 sa[28];
	size_t			 salen;
	int			 n;

	memset(&s, 0, sizeof(s));
	strcpy(s.name, "svc");
	strcpy(s.host, "::1");
	s.port = 8080;
	s.weight = 3;
	s.is_static = 1;
	strcpy(s.models[0], "m");
	s.nmodels = 1;
	cr_assert_eq(syncer_resolve(s.host, s.port, sa, &salen), 0);
	n = syncer_pack(&s, sa, salen, (struct syncer_rec *)buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_eq(n % 8, 0);
	cr_assert_eq(syncer_unpack(buf, (size_t)n, &v), n);
	cr_assert_str_eq(v.name, "svc");
	cr_assert_str_eq(v.addr, "[::1]:8080");
	cr_assert_eq(v.nmodels, 1);
	cr_assert_str_eq(v.models[0], "m");
	cr_assert_eq(v.rec->flags, SYNCER_REC_STATIC);
	/* too small a room; a record cut short; a record claiming more models */
	cr_assert_eq(syncer_pack(&s, sa, salen, (struct syncer_rec *)buf, 40), -1);
	cr_assert_eq(syncer_unpack(buf, (size_t)n - 8, &v), -1);
	((struct syncer_rec *)buf)->nmodels = 9;
	cr_assert_eq(syncer_unpack(buf, (size_t)n, &v), -1);
}

/* --- the master's apply ---------------------------------------------------- */

static struct master	M;

static int
to_master(void *arg, const void *msg, size_t len)
{
	return registry_msg(arg, msg, len);
}

static void
setup_master(const char *extra)
{
	log_init(1, 0);
	memset(&M, 0, sizeof(M));
	M.conf = conf_from(extra);
	M.shm = shm_create(64, 2, NULL);
	cr_assert_not_null(M.shm);
	cr_assert_eq(ev_init(&M.loop, 8), 0);
	cr_assert_eq(master_table_load(M.shm, M.conf, 1, 1), 0);
	registry_reset();
}

static void
teardown_master(void)
{
	registry_reset();
	ev_close(&M.loop);
	shm_destroy(M.shm);
	conf_free(M.conf);
}

/* Send services "name:port[:s]" (s = static) as one batch. */
static void
send_batch(const char *const *svcs, size_t n)
{
	static uint32_t		 batch;
	struct syncer_set	 set;
	struct syncer_stats	 st;
	size_t			 i;

	memset(&set, 0, sizeof(set));
	memset(&st, 0, sizeof(st));
	set.svc = calloc(n + 1, sizeof(*set.svc));
	for (i = 0; i < n; i++) {
		struct syncer_svc *s = &set.svc[i];

		cr_assert_eq(sscanf(svcs[i], "%63[^:]:%d", s->name, &s->port), 2);
		strcpy(s->host, "127.0.0.1");
		s->weight = 1;
		s->is_static = strstr(svcs[i], ":s") != NULL;
	}
	set.n = n;
	st.syncs_ok = ++batch;
	st.listed = (uint32_t)n;
	cr_assert_eq(syncer_batch_send(&set, batch, &st, to_master, &M), 0);
	free(set.svc);
}

static int
slot_of(const char *name, struct shm_desc *d)
{
	int	s = master_slot_find(M.shm, name);

	if (s >= 0 && d != NULL)
		shm_desc_read(shm_slot(M.shm, (uint32_t)s), d);
	return s;
}

Test(registry_apply, add_update_grace_static, .init = NULL)
{
	struct shm_desc		d;
	struct registry_stats	rs;
	const char		*a[] = { "r1:8001", "r2:8002", "r3:8003:s" };
	const char		*b[] = { "r1:8101" };
	int			 s1;
	uint64_t		 gen;

	setup_master("  grace: 300ms\n");
	send_batch(a, 3);
	cr_assert_geq(s1 = slot_of("r1", &d), 0);
	cr_assert_eq(d.flags & (SHM_F_INUSE | SHM_F_REGISTRY | SHM_F_STATIC),
	    SHM_F_INUSE | SHM_F_REGISTRY);
	cr_assert_eq(d.pool, (uint32_t)conf_pool_find(M.conf, "llm"));
	cr_assert_str_eq(d.addr, "127.0.0.1:8001");
	cr_assert_neq(d.last_seen_ms, 0);
	cr_assert_geq(slot_of("r3", &d), 0);
	cr_assert(d.flags & SHM_F_STATIC);

	/* r1 moves: same slot; r2 and r3 are gone from the registry */
	gen = shm_gen(M.shm);
	send_batch(b, 1);
	cr_assert_gt(shm_gen(M.shm), gen);
	cr_assert_eq(slot_of("r1", &d), s1);
	cr_assert_str_eq(d.addr, "127.0.0.1:8101");
	cr_assert_geq(slot_of("r2", NULL), 0, "removed before its grace");
	registry_stats(&M, &rs);
	cr_assert_eq(rs.backends, 3);
	cr_assert_eq(rs.in_grace, 1);
	cr_assert_eq(rs.statics, 1);
	cr_assert_eq(rs.configured, 1);

	/* the grace timer frees r2 in the master's loop; r3 is static and stays */
	usleep(350 * 1000);
	ev_run_once(&M.loop, 100);
	cr_assert_eq(slot_of("r2", NULL), -1, "not removed after its grace");
	cr_assert_geq(slot_of("r3", NULL), 0);
	cr_assert_geq(slot_of("cfg1", NULL), 0);
	registry_stats(&M, &rs);
	cr_assert_eq(rs.backends, 2);
	cr_assert_eq(rs.syncs_ok, 2);
	teardown_master();
}

Test(registry_apply, outage_and_conflicts)
{
	struct syncer_stats	 st;
	struct registry_stats	 rs;
	struct shm_desc		 d;
	const char		*a[] = { "r1:8001", "cfg1:8002", "r1:8003" };
	char			 junk[64];

	setup_master("  grace: 0\n");
	send_batch(a, 3);
	/* the configured cfg1 is untouched; the second r1 is a duplicate */
	cr_assert_geq(slot_of("cfg1", &d), 0);
	cr_assert_eq(d.flags & SHM_F_REGISTRY, 0);
	cr_assert_str_eq(d.addr, "127.0.0.1:9");
	cr_assert_geq(slot_of("r1", &d), 0);
	cr_assert_str_eq(d.addr, "127.0.0.1:8001");
	registry_stats(&M, &rs);
	cr_assert_eq(rs.conflicts, 1);

	/* a failed pull changes nothing, even with no grace at all */
	memset(&st, 0, sizeof(st));
	st.syncs_ok = 1;
	st.syncs_failed = 1;
	strcpy(st.error, "HTTP status 500");
	cr_assert_eq(syncer_status_send(SYNCER_MSG_FAIL, &st, to_master, &M), 0);
	cr_assert_geq(slot_of("r1", NULL), 0);
	registry_stats(&M, &rs);
	cr_assert_eq(rs.failing, 1);
	cr_assert_eq(rs.syncs_failed, 1);
	cr_assert_str_eq(rs.last_error, "HTTP status 500");

	/* malformed messages are refused, and so is an SVC outside a batch */
	memset(junk, 0, sizeof(junk));
	cr_assert_eq(registry_msg(&M, junk, 3), -1);
	cr_assert_eq(registry_msg(&M, junk, sizeof(junk)), -1);
	((struct syncer_msg_hdr *)junk)->type = SYNCER_MSG_SVC;
	((struct syncer_msg_hdr *)junk)->len = sizeof(struct syncer_msg_hdr);
	cr_assert_eq(registry_msg(&M, junk, sizeof(struct syncer_msg_hdr)), -1);

	/* an empty but good answer: with grace 0 r1 leaves at once */
	send_batch(a, 0);
	cr_assert_eq(slot_of("r1", NULL), -1);
	cr_assert_geq(slot_of("cfg1", NULL), 0);
	teardown_master();
}

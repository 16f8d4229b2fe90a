/* libFuzzer harness: a registry's answer through the syncer's parsers, its records and the master's apply. */

/*
 * The first byte picks the format and the filters; the rest is the answer,
 * parsed by syncer_parse() (and syncer_etcd_revision()), every service
 * packed and unpacked (the two must agree), and the whole set sent as one
 * batch to the master's registry_msg() on a fresh table.  The HTTP
 * formats are read as a stream (syncer_parse_stream()), which must decide
 * as decoding the whole document would: an answer it takes must be JSON,
 * and the same document written out plainly by jansson must get the same
 * verdict and the same services.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include <jansson.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"
#include "shm/table.h"
#include "syncer/syncer.h"
#include "tests/fuzz/common.h"

static const char fuzz_registry_yaml[] =
    "listen:\n  - address: 127.0.0.1:1\nmax_backends: 64\n"
    "registry:\n  url: http://127.0.0.1:1\n  pool: llm\n  grace: 1m\n"
    "pools:\n  llm:\n    strategy: round_robin\n"
    "  other:\n    backends:\n      - { name: cfg1, address: 127.0.0.1:9 }\n";

static struct master	 M;

static void
fuzz_registry_init(void)
{
	int	 nerr;

	log_init(1, 0);
	log_setverbose(0);
	if ((M.conf = conf_load(fuzz_file(fuzz_registry_yaml,
	    strlen(fuzz_registry_yaml)), NULL, 0, stderr, &nerr)) == NULL ||
	    ev_init(&M.loop, 8) == -1)
		abort();
}

/* syncer_unpack() of what syncer_pack() made must give the service back. */
static void
fuzz_registry_pack(const struct syncer_svc *s)
{
	_Alignas(8) char	 buf[8192];
	struct syncer_rec_view	 v;
	char			 addr[CONF_ADDR_MAX + 16];
	uint8_t			 sa[28];
	size_t			 salen;
	int			 n, i;

	if (syncer_resolve(s->host, s->port, sa, &salen) == -1) {
		salen = 16;
		memset(sa, 0, sizeof(sa));
	}
	if ((n = syncer_pack(s, sa, salen, (struct syncer_rec *)buf,
	    sizeof(buf))) == -1)
		return;
	if (syncer_unpack(buf, (size_t)n, &v) != n)
		abort();
	snprintf(addr, sizeof(addr), strchr(s->host, ':') != NULL ? "[%s]:%d" :
	    "%s:%d", s->host, s->port);
	if (strcmp(v.name, s->name) != 0 || strcmp(v.addr, addr) != 0 ||
	    strcmp(v.region, s->region) != 0 ||
	    strcmp(v.health_path, s->health_path) != 0 ||
	    v.nmodels != s->nmodels || v.rec->salen != salen)
		abort();
	for (i = 0; i < v.nmodels; i++)
		if (strcmp(v.models[i], s->models[i]) != 0)
			abort();
}

static int
fuzz_registry_send(void *arg, const void *msg, size_t len)
{
	/* a malformed message is the master's to refuse; ours never are */
	if (registry_msg(arg, msg, len) == -1)
		abort();
	return 0;
}

/* The stream parser against jansson's reading of the whole answer. */
static void
fuzz_registry_whole(const struct conf *cf, const uint8_t *data, size_t size,
    int rc, const struct syncer_set *set)
{
	struct syncer_set	 again;
	json_t			*root;
	char			 err[256], *text;
	size_t			 i;
	int			 rc2;

	if ((root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL) {
		/* duplicate keys are the one thing the two may read apart */
		if (rc == 0 && (root = json_loadb((const char *)data, size, 0,
		    NULL)) == NULL) {
			fprintf(stderr, "fuzz_registry: an answer that is not JSON "
			    "was taken\n");
			abort();
		}
		json_decref(root);
		return;
	}
	/* jansson skips a NUL byte between tokens, which JSON does not allow */
	if (memchr(data, '\0', size) != NULL) {
		json_decref(root);
		return;
	}
	if ((text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
		abort();
	json_decref(root);
	memset(&again, 0, sizeof(again));
	rc2 = syncer_parse(cf, text, strlen(text), &again, err, sizeof(err));
	if (rc2 != rc || (rc == 0 && (again.n != set->n ||
	    again.skipped != set->skipped || again.filtered != set->filtered))) {
		fprintf(stderr, "fuzz_registry: %d (%zu taken, %u skipped, %u "
		    "filtered) as sent, %d (%zu, %u, %u) written plainly: %s\n",
		    rc, set->n, set->skipped, set->filtered, rc2, again.n,
		    again.skipped, again.filtered, text);
		abort();
	}
	for (i = 0; rc == 0 && i < set->n; i++)
		if (strcmp(set->svc[i].name, again.svc[i].name) != 0 ||
		    strcmp(set->svc[i].host, again.svc[i].host) != 0 ||
		    set->svc[i].port != again.svc[i].port)
			abort();
	syncer_set_free(&again);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int		 init;
	struct syncer_set	 set;
	struct syncer_stats	 st;
	struct conf		*cf;
	char			 err[256];
	uint64_t		 rev;
	size_t			 i;
	uint8_t			 sel;
	int			 rc;

	if (!init) {
		fuzz_registry_init();
		init = 1;
	}
	if (size < 1)
		return 0;
	sel = data[0];
	data++, size--;
	cf = M.conf;
	cf->registry.format = (enum conf_registry_format)(sel % 3);
	strlcpy(cf->registry.environment, sel & 0x04 ? "prod" : "",
	    sizeof(cf->registry.environment));
	strlcpy(cf->registry.type_filter, sel & 0x08 ? "" : "openai-api",
	    sizeof(cf->registry.type_filter));

	memset(&set, 0, sizeof(set));
	rc = syncer_parse(cf, (const char *)data, size, &set, err, sizeof(err));
	if (cf->registry.format != REGISTRY_ETCD)
		fuzz_registry_whole(cf, data, size, rc, &set);
	if (rc == 0) {
		for (i = 0; i < set.n; i++)
			fuzz_registry_pack(&set.svc[i]);
		/* a fresh table and registry: every input starts from the same state */
		if ((M.shm = shm_create(64, 2, NULL)) == NULL ||
		    master_table_load(M.shm, cf, 1, 1) == -1)
			abort();
		registry_reset();
		memset(&st, 0, sizeof(st));
		st.listed = (uint32_t)set.n;
		if (syncer_batch_send(&set, 1, &st, fuzz_registry_send, &M) == -1)
			abort();
		registry_reset();
		shm_destroy(M.shm);
		M.shm = NULL;
	} else if (err[0] == '\0')
		abort();	/* a refusal must say why */
	syncer_set_free(&set);
	(void)syncer_etcd_revision((const char *)data, size, &rev);
	return 0;
}

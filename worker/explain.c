/* The workers' decision rings (shm_explain_read()) as JSON, with names for the ids they hold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "worker/admin.h"
#include "worker/balance.h"
#include "worker/explain.h"

static const char *const explain_reasons[BAL_R_COUNT] = {
	[BAL_R_NONE] = "none",
	[BAL_R_STRATEGY] = "strategy",
	[BAL_R_AFFINITY] = "affinity",
	[BAL_R_SATURATED] = "saturated",
	[BAL_R_LOAD] = "load",
	[BAL_R_COLD] = "cold",
	[BAL_R_OVERRIDE] = "override",
};

const char *
explain_reason_name(unsigned r)
{
	if (r >= BAL_R_COUNT || explain_reasons[r] == NULL)
		return "unknown";
	return explain_reasons[r];
}

/* A slot's backend name as a JSON string, null for none (-1) or a slot gone since. */
static json_t *
explain_backend(struct shm_hdr *h, int32_t slot)
{
	struct shm_desc	d;

	if (slot < 0 || (uint32_t)slot >= h->max_backends)
		return json_null();
	shm_desc_read(shm_slot(h, (uint32_t)slot), &d);
	if (!(d.flags & SHM_F_INUSE))
		return json_null();
	d.name[sizeof(d.name) - 1] = '\0';
	return json_string(d.name);
}

static json_t *
explain_one(struct shm_hdr *h, const struct shm_decision_copy *c)
{
	const struct shm_decision *d = &c->d;
	json_t		*o, *cands;
	char		 name[SHM_NAME_MAX], rid[sizeof(d->rid) + 1];
	uint32_t	 i;

	if ((o = json_object()) == NULL || (cands = json_array()) == NULL) {
		json_decref(o);
		return NULL;
	}
	memcpy(rid, d->rid, sizeof(d->rid));
	rid[sizeof(d->rid)] = '\0';
	json_object_set_new(o, "time", admin_time(d->ms));
	json_object_set_new(o, "worker", json_integer(c->worker));
	/* a request id is ours or was checked on the way in; jansson refuses non-UTF-8 anyway */
	json_object_set_new(o, "request_id", json_string(rid));
	json_object_set_new(o, "pool", shm_pool_name(h, d->pool, name,
	    sizeof(name)) == 0 ? json_string(name) : json_null());
	json_object_set_new(o, "model", d->model >= 0 && shm_model_name(h,
	    (uint32_t)d->model, name, sizeof(name)) == 0 ? json_string(name) :
	    json_null());
	json_object_set_new(o, "strategy", json_string(conf_strategy_name(
	    (enum conf_strategy)d->strategy)));
	json_object_set_new(o, "reason", json_string(explain_reason_name(d->reason)));
	json_object_set_new(o, "pick", explain_backend(h, d->pick));
	json_object_set_new(o, "shadow", explain_backend(h, d->shadow));
	json_object_set_new(o, "candidates_seen", json_integer(d->ncand));
	json_object_set_new(o, "prefix_blocks", json_integer(d->blocks));
	json_object_set_new(o, "prompt_tokens", json_integer(d->prompt_tokens));
	for (i = 0; i < d->ncand && i < SHM_EXPLAIN_CANDS; i++)
		json_array_append_new(cands, json_pack("{s:o, s:I, s:I, s:b}",
		    "backend", explain_backend(h, d->cand[i].slot),
		    "match", (json_int_t)d->cand[i].match,
		    "score", (json_int_t)(d->cand[i].score > INT64_MAX ?
		    INT64_MAX : d->cand[i].score),
		    "picked", d->cand[i].slot == d->pick && d->pick >= 0));
	json_object_set_new(o, "candidates", cands);
	return o;
}

json_t *
explain_json(struct shm_hdr *h, size_t n)
{
	struct shm_decision_copy *v;
	json_t		*a, *e;
	int		 got, i;

	if (n > EXPLAIN_MAX)
		n = EXPLAIN_MAX;
	if ((v = calloc(n > 0 ? n : 1, sizeof(*v))) == NULL)
		return NULL;
	if ((got = shm_explain_read(h, v, n)) == -1 || (a = json_array()) == NULL) {
		free(v);
		return NULL;
	}
	for (i = 0; i < got; i++)
		if ((e = explain_one(h, &v[i])) != NULL)
			json_array_append_new(a, e);
	free(v);
	return json_pack("{s:o}", "decisions", a);
}

/* routerctl's human output: aligned tables for show commands, one line per monitor event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include "ctl/ctl.h"

#define NCOLS(c)	(sizeof(c) / sizeof((c)[0]))

static const struct ctl_col backend_cols[] = {
	{ "NAME", "name", 0 }, { "POOL", "pool", 0 },
	{ "ADDRESS", "address", 0 }, { "STATE", "state", 0 },
	{ "HEALTH", "health", 0 }, { "BREAKER", "breaker", 0 },
	{ "WEIGHT", "weight", 1 }, { "INFLIGHT", "inflight", 1 },
	{ "REQUESTS", "requests", 1 }, { "FAILS", "fails", 1 },
	{ "LAT_MS", "latency_ms", 1 }, { "MODELS", "models", 0 },
};
static const struct ctl_col summary_cols[] = {
	{ "NAME", "name", 0 }, { "POOL", "pool", 0 },
	{ "STATE", "state", 0 }, { "HEALTH", "health", 0 },
	{ "BREAKER", "breaker", 0 }, { "INFLIGHT", "inflight", 1 },
	{ "REQUESTS", "requests", 1 },
};
static const struct ctl_col pool_cols[] = {
	{ "POOL", "name", 0 }, { "STRATEGY", "strategy", 0 },
	{ "BASE", "base_strategy", 0 }, { "BACKENDS", "backends", 1 },
	{ "ELIGIBLE", "eligible", 1 }, { "INFLIGHT", "inflight", 1 },
	{ "REQUESTS", "requests", 1 },
};
static const struct ctl_col model_cols[] = {
	{ "MODEL", "model", 0 }, { "UP", "up", 1 },
	{ "BACKENDS", "backends", 0 },
};
static const struct ctl_col stats_cols[] = {
	{ "NAME", "name", 0 }, { "REQUESTS", "requests", 1 },
	{ "FAILS", "fails", 1 }, { "RETRIES", "retries", 1 },
	{ "INFLIGHT", "inflight", 1 }, { "2XX", "2xx", 1 },
	{ "3XX", "3xx", 1 }, { "4XX", "4xx", 1 }, { "5XX", "5xx", 1 },
	{ "BYTES_IN", "bytes_in", 1 }, { "BYTES_OUT", "bytes_out", 1 },
	{ "AVG_MS", "avg_ms", 1 },
};
static const struct ctl_col breaker_cols[] = {
	{ "NAME", "name", 0 }, { "POOL", "pool", 0 },
	{ "BREAKER", "breaker", 0 }, { "FORCED", "forced", 0 },
	{ "OPENS", "opens", 1 }, { "FAILS_IN_ROW", "consecutive_fails", 1 },
	{ "SINCE", "since", 0 },
};
static const struct ctl_col worker_cols[] = {
	{ "ROLE", "role", 0 }, { "ID", "id", 1 }, { "PID", "pid", 1 },
	{ "GEN", "generation", 1 }, { "STATE", "state", 0 },
	{ "CONNS", "conns", 1 }, { "ACCEPTED", "accepted", 1 },
	{ "QUEUED", "queued", 1 }, { "PAUSED", "accept_paused", 1 },
	{ "FREE_BUFS", "free_bufs", 1 },
	{ "FREE_FWD", "free_fwd", 1 }, { "STARTED", "started", 0 },
};
static const struct ctl_col queue_cols[] = {
	{ "POOL", "pool", 0 }, { "WAITING", "waiting", 1 },
	{ "WAITS", "waits", 1 }, { "AVG_WAIT_MS", "wait_ms_avg", 1 },
	{ "TIMEOUTS", "timeouts", 1 }, { "REJECTED", "rejected", 1 },
	{ "DROPPED", "deadline_dropped", 1 }, { "EXPIRED", "deadline_expired", 1 },
	{ "LIMITED", "ratelimited", 1 },
};
static const struct ctl_col band_cols[] = {
	{ "POOL", "pool", 0 }, { "PRIORITY", "priority", 1 },
	{ "WAITING", "waiting", 1 }, { "ADMITTED", "admitted", 1 },
};
static const struct ctl_col tenant_cols[] = {
	{ "TENANT", "tenant", 0 }, { "QUEUED", "queued", 1 },
	{ "REQUESTS", "requests", 1 }, { "LIMITED_REQ", "limited_requests", 1 },
	{ "LIMITED_TOK", "limited_tokens", 1 }, { "TOKENS", "tokens", 1 },
	{ "WAITS", "waits", 1 }, { "AVG_WAIT_MS", "wait_ms_avg", 1 },
	{ "DROPPED", "deadline_dropped", 1 }, { "LAST_SEEN", "last_seen", 0 },
};

/* One cell as text into buf. */
static void
ctl_cell(const json_t *v, char *buf, size_t len)
{
	size_t	i;
	json_t	*e;

	buf[0] = '\0';
	switch (v == NULL ? JSON_NULL : json_typeof(v)) {
	case JSON_STRING:
		strlcpy(buf, json_string_value(v), len);
		break;
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		snprintf(buf, len, "%.1f", json_real_value(v));
		break;
	case JSON_TRUE:
		strlcpy(buf, "yes", len);
		break;
	case JSON_FALSE:
		strlcpy(buf, "no", len);
		break;
	case JSON_ARRAY:
		json_array_foreach(v, i, e) {
			char	one[128];

			ctl_cell(e, one, sizeof(one));
			if (i > 0)
				strlcat(buf, ",", len);
			strlcat(buf, one, len);
		}
		if (buf[0] == '\0')
			strlcpy(buf, "-", len);
		break;
	default:
		strlcpy(buf, "-", len);
		break;
	}
}

void
ctl_table(FILE *fp, const struct ctl_col *cols, size_t ncols, const json_t *rows)
{
	size_t	 w[32], c, i, nrows;
	char	 cell[512];
	json_t	*row;

	if (ncols > 32)
		ncols = 32;
	nrows = json_is_array(rows) ? json_array_size(rows) : 0;
	for (c = 0; c < ncols; c++)
		w[c] = strlen(cols[c].title);
	for (i = 0; i < nrows; i++) {
		row = json_array_get(rows, i);
		for (c = 0; c < ncols; c++) {
			ctl_cell(json_object_get(row, cols[c].key), cell, sizeof(cell));
			if (strlen(cell) > w[c])
				w[c] = strlen(cell);
		}
	}
	for (i = 0; i <= nrows; i++) {
		row = i > 0 ? json_array_get(rows, i - 1) : NULL;
		for (c = 0; c < ncols; c++) {
			const char *sep = c + 1 < ncols ? "  " : "";

			if (row == NULL)
				strlcpy(cell, cols[c].title, sizeof(cell));
			else
				ctl_cell(json_object_get(row, cols[c].key), cell,
				    sizeof(cell));
			if (c + 1 == ncols && !cols[c].right)
				fprintf(fp, "%s", cell);
			else
				fprintf(fp, cols[c].right ? "%*s%s" : "%-*s%s",
				    (int)w[c], cell, sep);
		}
		fputc('\n', fp);
	}
}

/* One line: syncs, last success, backends by source. */
static void
ctl_show_registry(FILE *fp, const json_t *g)
{
	const json_t	*b = json_object_get(g, "backends");
	const char	*last = json_string_value(json_object_get(g, "last_success"));
	const char	*e = json_string_value(json_object_get(g, "last_error"));

	if (g == NULL)
		return;
	fprintf(fp, "registry: %s, %" JSON_INTEGER_FORMAT " syncs ok, %"
	    JSON_INTEGER_FORMAT " failed, last success %s; backends: %"
	    JSON_INTEGER_FORMAT " static, %" JSON_INTEGER_FORMAT " registry\n",
	    !json_is_true(json_object_get(g, "enabled")) ? "off" :
	    json_is_true(json_object_get(g, "failing")) ? "failing" : "ok",
	    json_integer_value(json_object_get(g, "syncs_ok")),
	    json_integer_value(json_object_get(g, "syncs_failed")),
	    last != NULL ? last : "never",
	    json_integer_value(json_object_get(b, "static")),
	    json_integer_value(json_object_get(b, "registry")));
	if (json_is_true(json_object_get(g, "failing")) && e != NULL && e[0] != '\0')
		fprintf(fp, "registry: last error: %s\n", e);
}

static void
ctl_show_summary(FILE *fp, const json_t *data)
{
	json_t	*r = json_object_get(data, "router");

	fprintf(fp, "routerd: generation %" JSON_INTEGER_FORMAT
	    ", %" JSON_INTEGER_FORMAT " workers, up %" JSON_INTEGER_FORMAT
	    "s, %" JSON_INTEGER_FORMAT " backends (%" JSON_INTEGER_FORMAT
	    " up, %" JSON_INTEGER_FORMAT " down, %" JSON_INTEGER_FORMAT
	    " open breakers)\n\n",
	    json_integer_value(json_object_get(r, "generation")),
	    json_integer_value(json_object_get(r, "workers")),
	    json_integer_value(json_object_get(r, "uptime_s")),
	    json_integer_value(json_object_get(r, "backends")),
	    json_integer_value(json_object_get(r, "up")),
	    json_integer_value(json_object_get(r, "down")),
	    json_integer_value(json_object_get(r, "open_breakers")));
	ctl_show_registry(fp, json_object_get(data, "registry"));
	fputc('\n', fp);
	ctl_table(fp, pool_cols, NCOLS(pool_cols), json_object_get(data, "pools"));
	fputc('\n', fp);
	ctl_table(fp, summary_cols, NCOLS(summary_cols),
	    json_object_get(data, "backends"));
}

static void
ctl_show_stats(FILE *fp, const json_t *data)
{
	json_t	*rows = json_deep_copy(json_object_get(data, "backends"));
	json_t	*total = json_deep_copy(json_object_get(data, "total"));

	if (rows == NULL)
		rows = json_array();
	if (total != NULL) {
		json_object_set_new(total, "name", json_string("total"));
		json_array_append_new(rows, total);
	}
	ctl_table(fp, stats_cols, NCOLS(stats_cols), rows);
	json_decref(rows);
}

static const struct ctl_col cand_cols[] = {
	{ "", "mark", 0 }, { "BACKEND", "backend", 0 },
	{ "MATCH", "match", 1 }, { "SCORE", "score", 1 },
};

static const char *
ctl_str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "-";
}

/*
 * explain: per decision a line of who and what, a line of how it went,
 * then its candidates (the pick marked "*") indented under it.
 */
static void
ctl_show_explain(FILE *fp, const json_t *data)
{
	const json_t	*ds = json_object_get(data, "decisions"), *d;
	json_t		*rows, *c;
	size_t		 i, k;

	if (json_array_size(ds) == 0) {
		fprintf(fp, "no routing decisions recorded\n");
		return;
	}
	json_array_foreach(ds, i, d) {
		json_int_t	seen = json_integer_value(json_object_get(d, "candidates_seen"));

		if (i > 0)
			fputc('\n', fp);
		fprintf(fp, "%s  %s  pool %s  model %s\n", ctl_str(d, "time"),
		    ctl_str(d, "request_id"), ctl_str(d, "pool"),
		    ctl_str(d, "model"));
		fprintf(fp, "  strategy %s, reason %s: picked %s, shadow %s; %"
		    JSON_INTEGER_FORMAT " candidate%s, %" JSON_INTEGER_FORMAT
		    " prefix blocks, %" JSON_INTEGER_FORMAT " prompt tokens\n",
		    ctl_str(d, "strategy"), ctl_str(d, "reason"),
		    ctl_str(d, "pick"), ctl_str(d, "shadow"), seen,
		    seen == 1 ? "" : "s",
		    json_integer_value(json_object_get(d, "prefix_blocks")),
		    json_integer_value(json_object_get(d, "prompt_tokens")));
		if ((rows = json_deep_copy(json_object_get(d, "candidates"))) == NULL ||
		    json_array_size(rows) == 0) {
			json_decref(rows);
			continue;
		}
		json_array_foreach(rows, k, c)
			json_object_set_new(c, "mark", json_string(
			    json_is_true(json_object_get(c, "picked")) ? "  *" : "   "));
		ctl_table(fp, cand_cols, NCOLS(cand_cols), rows);
		json_decref(rows);
	}
}

/*
 * show queue: a line per pool, then one per band that was used (its
 * pool named on each), then the retry budget.
 */
static void
ctl_show_queue(FILE *fp, const json_t *data)
{
	const json_t	*pools = json_object_get(data, "pools"), *p, *b;
	const json_t	*rb = json_object_get(data, "retry_budget");
	json_t		*rows, *row;
	size_t		 i, k;

	ctl_table(fp, queue_cols, NCOLS(queue_cols), pools);
	if ((rows = json_array()) == NULL)
		return;
	json_array_foreach(pools, i, p)
		json_array_foreach(json_object_get(p, "bands"), k, b) {
			if ((row = json_deep_copy(b)) == NULL)
				continue;
			json_object_set(row, "pool", json_object_get(p, "pool"));
			json_array_append_new(rows, row);
		}
	fputc('\n', fp);
	ctl_table(fp, band_cols, NCOLS(band_cols), rows);
	json_decref(rows);
	fprintf(fp, "\nretry budget: %" JSON_INTEGER_FORMAT " retries allowed, %"
	    JSON_INTEGER_FORMAT " refused\n",
	    json_integer_value(json_object_get(rb, "retries")),
	    json_integer_value(json_object_get(rb, "refused")));
}

static void
ctl_show_config(FILE *fp, const json_t *data)
{
	const char	*t = json_string_value(json_object_get(data, "text"));

	if (t != NULL)
		fputs(t, fp);
	else
		json_dumpf(data, fp, JSON_INDENT(2));
}

void
ctl_show(FILE *fp, enum ctlproto_id cmd, const json_t *data)
{
	const char	*msg;

	switch (cmd) {
	case CTL_SHOW_SUMMARY:
		ctl_show_summary(fp, data);
		return;
	case CTL_SHOW_BACKENDS:
		ctl_table(fp, backend_cols, NCOLS(backend_cols), data);
		return;
	case CTL_SHOW_POOLS:
		ctl_table(fp, pool_cols, NCOLS(pool_cols), data);
		return;
	case CTL_SHOW_MODELS:
		ctl_table(fp, model_cols, NCOLS(model_cols), data);
		return;
	case CTL_SHOW_STATS:
		ctl_show_stats(fp, data);
		return;
	case CTL_SHOW_BREAKERS:
		ctl_table(fp, breaker_cols, NCOLS(breaker_cols), data);
		return;
	case CTL_SHOW_WORKERS:
		ctl_table(fp, worker_cols, NCOLS(worker_cols), data);
		return;
	case CTL_SHOW_CONFIG:
		ctl_show_config(fp, data);
		return;
	case CTL_SHOW_REGISTRY:
		ctl_show_registry(fp, data);
		return;
	case CTL_SHOW_QUEUE:
		ctl_show_queue(fp, data);
		return;
	case CTL_SHOW_TENANTS:
		ctl_table(fp, tenant_cols, NCOLS(tenant_cols),
		    json_object_get(data, "tenants"));
		return;
	case CTL_EXPLAIN:
		ctl_show_explain(fp, data);
		return;
	default:
		/* the writes: the master says what it did in one line */
		if ((msg = json_string_value(json_object_get(data, "message"))) != NULL)
			fprintf(fp, "%s\n", msg);
		return;
	}
}

void
ctl_event(FILE *fp, const json_t *ev)
{
	const char	*time = json_string_value(json_object_get(ev, "time"));
	const char	*type = json_string_value(json_object_get(ev, "type"));
	const char	*msg = json_string_value(json_object_get(ev, "message"));

	fprintf(fp, "%s %s: %s\n", time ? time : "-", type ? type : "event",
	    msg ? msg : "");
	fflush(fp);
}

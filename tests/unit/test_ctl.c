/* Unit tests of routerctl's keyword tree, its tables, and the control protocol's frame codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ctl/ctl.h"
#include "lib/ctlproto.h"

static char	err[1024];

/* Parse a command line given as one string; returns ctl_parse()'s result. */
static int
parse(const char *line, struct ctl_req *req)
{
	static char	 buf[256];
	static char	*argv[16];
	int		 argc = 0;
	char		*p, *save = NULL;

	strcpy(buf, line);
	for (p = strtok_r(buf, " ", &save); p != NULL && argc < 16;
	    p = strtok_r(NULL, " ", &save))
		argv[argc++] = p;
	err[0] = '\0';
	return ctl_parse(argc, argv, req, err, sizeof(err));
}

Test(grammar, rows_in_id_order_and_prefix_free)
{
	size_t	i, j;

	cr_assert_eq(ctlproto_ncmds, CTL_NCMDS);
	for (i = 0; i < ctlproto_ncmds; i++) {
		const struct ctlproto_cmd *a = &ctlproto_cmds[i];

		cr_assert_eq((size_t)a->id, i);
		cr_assert(a->nwords >= 1 && a->nwords <= CTLPROTO_WORDS_MAX);
		cr_assert(a->minargs <= a->maxargs);
		cr_assert_eq(ctlproto_lookup(a->words, (size_t)a->nwords), a);
		/* show commands only read; what changes state is a write */
		cr_assert_eq(a->write, strcmp(a->words[0], "show") != 0 &&
		    a->id != CTL_MONITOR && a->id != CTL_EXPLAIN, "%s %s", a->words[0],
		    a->nwords > 1 ? a->words[1] : "");
		for (j = 0; j < ctlproto_ncmds; j++) {
			const struct ctlproto_cmd *b = &ctlproto_cmds[j];
			int k, same = 1;

			if (i == j || b->nwords < a->nwords)
				continue;
			for (k = 0; k < a->nwords; k++)
				same &= strcmp(a->words[k], b->words[k]) == 0;
			cr_assert(!same, "row %zu is a prefix of row %zu", i, j);
		}
	}
}

Test(parse, full_words)
{
	struct ctl_req	r;

	cr_assert_eq(parse("show backends", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_BACKENDS);
	cr_assert_eq(r.nargs, 0);
	cr_assert_eq(parse("backend weight b1 7", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_BACKEND_WEIGHT);
	cr_assert_eq(r.nargs, 2);
	cr_assert_str_eq(r.args[0], "b1");
	cr_assert_str_eq(r.args[1], "7");
	cr_assert_eq(parse("reload", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_RELOAD);
	cr_assert_eq(parse("monitor", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_MONITOR);
}

Test(parse, prefixes)
{
	struct ctl_req	r;

	cr_assert_eq(parse("sh b", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_BACKENDS, "sh b is show backends");
	cr_assert_eq(parse("sh br", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_BREAKERS);
	cr_assert_eq(parse("sh su", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_SUMMARY);
	cr_assert_eq(parse("sh st", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_STATS);
	cr_assert_eq(parse("sh q", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_QUEUE);
	cr_assert_eq(parse("sh te", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_SHOW_TENANTS);
	cr_assert_eq(parse("ba di b1", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_BACKEND_DISABLE);
	cr_assert_str_eq(r.args[0], "b1");
	cr_assert_eq(parse("ba dr b1", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_BACKEND_DRAIN);
	cr_assert_eq(parse("br o b1", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_BREAKER_OPEN);
	cr_assert_eq(parse("str s llm random", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_STRATEGY_SET);
	cr_assert_eq(r.nargs, 2);
	cr_assert_eq(parse("l v", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_LOG_VERBOSE);
	cr_assert_eq(parse("m", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_MONITOR);
	cr_assert_eq(parse("e 5", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_EXPLAIN);
	cr_assert_eq(r.nargs, 1);
	cr_assert_eq(parse("explain", &r), 0, "%s", err);
	cr_assert_eq(r.nargs, 0, "N is optional");
	cr_assert_eq(parse("explain 1 2", &r), -1);
	cr_assert_str_eq(err, "usage: explain [N]");
	cr_assert_eq(parse("rel", &r), 0, "%s", err);
	cr_assert_eq(r.cmd->id, CTL_RELOAD);
	/* arguments are never expanded: a backend may be called "s" */
	cr_assert_eq(parse("backend enable s", &r), 0, "%s", err);
	cr_assert_str_eq(r.args[0], "s");
}

Test(parse, ambiguous)
{
	struct ctl_req	r;

	cr_assert_eq(parse("s", &r), -1);
	cr_assert_str_eq(err, "ambiguous command: s (show, strategy, stop)");
	cr_assert_eq(parse("st", &r), -1);
	cr_assert_str_eq(err, "ambiguous command: st (strategy, stop)");
	cr_assert_eq(parse("b enable x", &r), -1);
	cr_assert_str_eq(err, "ambiguous command: b (backend, breaker)");
	cr_assert_eq(parse("backend d b1", &r), -1);
	cr_assert_str_eq(err, "ambiguous command: backend d (disable, drain)");
	cr_assert_eq(parse("breaker c b1", &r), 0, "c is close only: %s", err);
}

Test(parse, unknown_and_help)
{
	struct ctl_req	r;

	cr_assert_eq(parse("frobnicate", &r), -1);
	cr_assert_str_eq(err, "unknown command: frobnicate; valid commands: "
	    "show, explain, backend, breaker, strategy, reload, stop, log, monitor");
	cr_assert_eq(parse("show x", &r), -1);
	cr_assert_str_eq(err, "unknown command: show x; valid commands: summary, "
	    "backends, pools, models, stats, breakers, workers, config, registry, "
	    "queue, tenants");
	cr_assert_eq(parse("sh", &r), -1);
	cr_assert_str_eq(err, "incomplete command: show; valid commands: summary, "
	    "backends, pools, models, stats, breakers, workers, config, registry, "
	    "queue, tenants");
	cr_assert_eq(parse("log", &r), -1);
	cr_assert_str_eq(err, "incomplete command: log; valid commands: verbose, "
	    "brief, reopen");
	cr_assert_eq(parse("", &r), -1);
	cr_assert(strncmp(err, "missing command; valid commands: show,", 38) == 0, "%s", err);
	/* a keyword longer than the real one is not a prefix of it */
	cr_assert_eq(parse("showx", &r), -1);
	cr_assert(strncmp(err, "unknown command: showx;", 23) == 0, "%s", err);
}

Test(parse, argument_counts)
{
	struct ctl_req	r;

	cr_assert_eq(parse("backend weight b1", &r), -1);
	cr_assert_str_eq(err, "usage: backend weight NAME N");
	cr_assert_eq(parse("backend weight b1 2 3", &r), -1);
	cr_assert_str_eq(err, "usage: backend weight NAME N");
	cr_assert_eq(parse("backend disable", &r), -1);
	cr_assert_str_eq(err, "usage: backend disable NAME");
	cr_assert_eq(parse("strategy set", &r), -1);
	cr_assert_str_eq(err, "usage: strategy set [POOL] NAME");
	cr_assert_eq(parse("strategy set a b c", &r), -1);
	cr_assert_eq(parse("strategy set random", &r), 0, "%s", err);
	cr_assert_eq(r.nargs, 1);
	cr_assert_eq(parse("show backends now", &r), -1);
	cr_assert_str_eq(err, "usage: show backends");
	cr_assert_eq(parse("stop now", &r), -1);
	cr_assert_str_eq(err, "usage: stop");
}

Test(parse, request_json)
{
	struct ctl_req	 r;
	json_t		*j;
	char		*s;

	cr_assert_eq(parse("ba w b1 9", &r), 0, "%s", err);
	cr_assert_not_null(j = ctl_request(&r, 1));
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_str_eq(s, "{\"cmd\":[\"backend\",\"weight\",\"b1\",\"9\"],\"json\":true}");
	free(s);
	json_decref(j);
}

Test(usage, lists_every_command)
{
	char	*text = NULL;
	size_t	 len = 0, i;
	FILE	*fp = open_memstream(&text, &len);

	ctl_usage(fp);
	fclose(fp);
	for (i = 0; i < ctlproto_ncmds; i++)
		cr_assert_not_null(strstr(text, ctlproto_cmds[i].help));
	cr_assert_not_null(strstr(text, "strategy set [POOL] NAME"));
	free(text);
}

Test(table, aligned_columns)
{
	static const struct ctl_col cols[] = {
		{ "NAME", "name", 0 }, { "N", "n", 1 }, { "TAGS", "tags", 0 },
	};
	json_t	*rows = json_loads("[{\"name\":\"alpha\",\"n\":5,\"tags\":[\"a\",\"b\"]},"
	    "{\"name\":\"b\",\"n\":12345,\"tags\":[]}, {\"n\":null}]", 0, NULL);
	char	*text = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&text, &len);

	cr_assert_not_null(rows);
	ctl_table(fp, cols, 3, rows);
	fclose(fp);
	cr_assert_str_eq(text,
	    "NAME       N  TAGS\n"
	    "alpha      5  a,b\n"
	    "b      12345  -\n"
	    "-          -  -\n");
	free(text);
	json_decref(rows);
}

Test(frame, parse)
{
	unsigned char	b[16] = { 0, 0, 0, 3, '{', '}', ' ', 'x' };
	size_t		n = 0;

	cr_assert_eq(ctlproto_frame_parse(b, 0, 100, &n), 0);
	cr_assert_eq(ctlproto_frame_parse(b, 3, 100, &n), 0);
	cr_assert_eq(ctlproto_frame_parse(b, 6, 100, &n), 0, "half a frame");
	cr_assert_eq(ctlproto_frame_parse(b, 7, 100, &n), 1);
	cr_assert_eq(n, 3);
	cr_assert_eq(ctlproto_frame_parse(b, 8, 100, &n), 1, "bytes of the next frame");
	cr_assert_eq(ctlproto_frame_parse(b, 7, 2, &n), -1, "over the limit");
	memset(b, 0, 4);
	cr_assert_eq(ctlproto_frame_parse(b, 4, 100, &n), -1, "empty frame");
	/* "GET " as a length: garbage is an oversized frame */
	memcpy(b, "GET ", 4);
	cr_assert_eq(ctlproto_frame_parse(b, 4, CTLPROTO_REQ_MAX, &n), -1);
	b[0] = 0; b[1] = 1; b[2] = 0; b[3] = 0;		/* exactly 64 KiB */
	cr_assert_eq(ctlproto_frame_parse(b, 4, CTLPROTO_REQ_MAX, &n), 0);
	b[3] = 1;
	cr_assert_eq(ctlproto_frame_parse(b, 4, CTLPROTO_REQ_MAX, &n), -1);
}

Test(frame, encode_roundtrip)
{
	json_t	*v = json_pack("{s:[s,s]}", "cmd", "show", "pools");
	char	*f;
	size_t	 len, n;
	json_t	*back;

	cr_assert_not_null(f = ctlproto_frame_json(v, CTLPROTO_REQ_MAX, &len));
	cr_assert_eq(ctlproto_frame_parse(f, len, CTLPROTO_REQ_MAX, &n), 1);
	cr_assert_eq(n + CTLPROTO_HDR, len);
	back = json_loadb(f + CTLPROTO_HDR, n, 0, NULL);
	cr_assert(json_equal(back, v));
	free(f);
	cr_assert_null(ctlproto_frame_json(v, 5, &len), "too large for max");
	json_decref(back);
	json_decref(v);
}

/* The master's decoding of a request payload (ctlproto_request_parse()). */
static int
req_parse(const char *payload, struct ctlproto_req *rq, int *fatal)
{
	err[0] = '\0';
	return ctlproto_request_parse(payload, strlen(payload), rq, err,
	    sizeof(err), fatal);
}

Test(request, decodes_words_and_arguments)
{
	struct ctlproto_req	rq;
	int			fatal;

	cr_assert_eq(req_parse("{\"cmd\":[\"backend\",\"weight\",\"b1\",\"7\"],"
	    "\"json\":true}", &rq, &fatal), 0, "%s", err);
	cr_assert_eq(rq.cmd->id, CTL_BACKEND_WEIGHT);
	cr_assert_eq(rq.nw, 4);
	cr_assert_str_eq(rq.argv[rq.cmd->nwords], "b1");
	cr_assert_str_eq(rq.argv[rq.cmd->nwords + 1], "7");
	cr_assert_eq(rq.json, 1);
	cr_assert_str_eq(rq.text, "backend weight b1 7");
	ctlproto_request_free(&rq);
	cr_assert_null(rq.root);
}

Test(request, refusals_say_why_and_which_close)
{
	static const struct {
		const char	*payload, *msg;
		int		 fatal;
	} cases[] = {
		{ "{\"cmd\": [\"show\"", "bad request: ", 1 },
		{ "[\"show\", \"pools\"]", "bad request: not a JSON object", 1 },
		{ "{\"cmd\":[\"show\"],\"cmd\":[\"stop\"]}", "bad request: ", 1 },
		{ "{\"cmd\":\"show pools\"}", "bad request: \"cmd\" must be an array of 1 to 16 strings", 0 },
		{ "{\"cmd\":[]}", "bad request: \"cmd\" must be an array", 0 },
		{ "{\"cmd\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
		  "\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]}", "bad request: \"cmd\" must be", 0 },
		{ "{\"cmd\":[\"show\",5]}", "bad request: \"cmd\" must hold strings", 0 },
		{ "{\"cmd\":[\"frob\",\"now\"]}", "unknown command: frob now", 0 },
		{ "{\"cmd\":[\"backend\",\"weight\",\"b1\"]}", "usage: backend weight NAME N", 0 },
		{ "{\"cmd\":[\"show\",\"pools\",\"x\"]}", "usage: show pools", 0 },
	};
	struct ctlproto_req	rq;
	size_t			i;
	int			fatal;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(req_parse(cases[i].payload, &rq, &fatal), -1, "%s",
		    cases[i].payload);
		cr_assert(strncmp(err, cases[i].msg, strlen(cases[i].msg)) == 0,
		    "%s: '%s', want '%s'", cases[i].payload, err, cases[i].msg);
		cr_assert_eq(fatal, cases[i].fatal, "%s", cases[i].payload);
		cr_assert_null(rq.root);
	}
}

Test(show, explain_blocks)
{
	char	*text = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&text, &len);
	json_t	*d = json_loads("{\"decisions\": ["
	    "{\"time\": \"2025-07-15T14:30:00.123Z\", \"request_id\": \"req-1\","
	    " \"pool\": \"llm\", \"model\": \"phi3\", \"strategy\": \"llm\","
	    " \"reason\": \"affinity\", \"pick\": \"gpu1\", \"shadow\": null,"
	    " \"candidates_seen\": 2, \"prefix_blocks\": 3, \"prompt_tokens\": 120,"
	    " \"candidates\": [{\"backend\": \"gpu1\", \"match\": 3, \"score\": 1000, \"picked\": true},"
	    " {\"backend\": \"gpu2\", \"match\": 0, \"score\": 25000, \"picked\": false}]},"
	    "{\"time\": \"2025-07-15T14:29:59.000Z\", \"request_id\": \"req-0\","
	    " \"pool\": \"default\", \"model\": null, \"strategy\": \"round_robin\","
	    " \"reason\": \"none\", \"pick\": null, \"shadow\": null,"
	    " \"candidates_seen\": 0, \"prefix_blocks\": 0, \"prompt_tokens\": 0,"
	    " \"candidates\": []}]}", 0, NULL);

	cr_assert_not_null(d);
	ctl_show(fp, CTL_EXPLAIN, d);
	fclose(fp);
	cr_assert_str_eq(text,
	    "2025-07-15T14:30:00.123Z  req-1  pool llm  model phi3\n"
	    "  strategy llm, reason affinity: picked gpu1, shadow -; 2 candidates, "
	    "3 prefix blocks, 120 prompt tokens\n"
	    "     BACKEND  MATCH  SCORE\n"
	    "  *  gpu1         3   1000\n"
	    "     gpu2         0  25000\n"
	    "\n"
	    "2025-07-15T14:29:59.000Z  req-0  pool default  model -\n"
	    "  strategy round_robin, reason none: picked -, shadow -; 0 candidates, "
	    "0 prefix blocks, 0 prompt tokens\n");
	free(text);
	json_decref(d);
	text = NULL;
	fp = open_memstream(&text, &len);
	d = json_loads("{\"decisions\": []}", 0, NULL);
	ctl_show(fp, CTL_EXPLAIN, d);
	fclose(fp);
	cr_assert_str_eq(text, "no routing decisions recorded\n");
	free(text);
	json_decref(d);
}

Test(show, queue_pools_bands_budget)
{
	char	*text = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&text, &len);
	json_t	*d = json_loads("{\"pools\": [{\"pool\": \"default\", \"waiting\": 1,"
	    " \"bands\": [{\"priority\": 3, \"waiting\": 1, \"admitted\": 2},"
	    " {\"priority\": 0, \"waiting\": 0, \"admitted\": 10}],"
	    " \"waits\": 4, \"wait_ms_avg\": 12.5, \"timeouts\": 0, \"rejected\": 0,"
	    " \"deadline_dropped\": 1, \"deadline_expired\": 2, \"ratelimited\": 30}],"
	    " \"retry_budget\": {\"retries\": 5, \"refused\": 6}}", 0, NULL);

	cr_assert_not_null(d);
	ctl_show(fp, CTL_SHOW_QUEUE, d);
	fclose(fp);
	cr_assert_str_eq(text,
	    "POOL     WAITING  WAITS  AVG_WAIT_MS  TIMEOUTS  REJECTED  DROPPED  EXPIRED  LIMITED\n"
	    "default        1      4         12.5         0         0        1        2       30\n"
	    "\n"
	    "POOL     PRIORITY  WAITING  ADMITTED\n"
	    "default         3        1         2\n"
	    "default         0        0        10\n"
	    "\n"
	    "retry budget: 5 retries allowed, 6 refused\n");
	free(text);
	json_decref(d);
}

Test(show, tenants_table)
{
	char	*text = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&text, &len);
	json_t	*d = json_loads("{\"tenants\": [{\"tenant\": \"sk-a...0001\", \"queued\": 0,"
	    " \"requests\": 7, \"limited_requests\": 3, \"limited_tokens\": 0,"
	    " \"tokens\": 900, \"waits\": 1, \"wait_ms_avg\": 250.0,"
	    " \"deadline_dropped\": 1, \"last_seen\": \"2025-07-15T14:30:00.123Z\"},"
	    " {\"tenant\": \"127.0.0.1\", \"queued\": 1, \"requests\": 0,"
	    " \"limited_requests\": 0, \"limited_tokens\": 0, \"tokens\": 0,"
	    " \"waits\": 0, \"wait_ms_avg\": null, \"deadline_dropped\": 0,"
	    " \"last_seen\": null}]}", 0, NULL);

	cr_assert_not_null(d);
	ctl_show(fp, CTL_SHOW_TENANTS, d);
	fclose(fp);
	cr_assert_str_eq(text,
	    "TENANT       QUEUED  REQUESTS  LIMITED_REQ  LIMITED_TOK  TOKENS  WAITS  "
	    "AVG_WAIT_MS  DROPPED  LAST_SEEN\n"
	    "sk-a...0001       0         7            3            0     900      1  "
	    "      250.0        1  2025-07-15T14:30:00.123Z\n"
	    "127.0.0.1         1         0            0            0       0      0  "
	    "          -        0  -\n");
	free(text);
	json_decref(d);
}

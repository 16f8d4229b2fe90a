/* The control protocol of lib/ctlproto.h: frame codec and command grammar. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include "ctlproto.h"

const struct ctlproto_cmd ctlproto_cmds[] = {
	{ CTL_SHOW_SUMMARY, { "show", "summary" }, 2, "", 0, 0, 0, 0,
	  "pools and backends at a glance" },
	{ CTL_SHOW_BACKENDS, { "show", "backends" }, 2, "", 0, 0, 0, 0x2,
	  "every backend: address, state, health, breaker, load" },
	{ CTL_SHOW_POOLS, { "show", "pools" }, 2, "", 0, 0, 0, 0,
	  "pools, their strategies and backends up" },
	{ CTL_SHOW_MODELS, { "show", "models" }, 2, "", 0, 0, 0, 0,
	  "models and the backends serving them" },
	{ CTL_SHOW_STATS, { "show", "stats" }, 2, "", 0, 0, 0, 0,
	  "request counters per backend, summed over workers" },
	{ CTL_SHOW_BREAKERS, { "show", "breakers" }, 2, "", 0, 0, 0, 0,
	  "circuit breaker state per backend" },
	{ CTL_SHOW_WORKERS, { "show", "workers" }, 2, "", 0, 0, 0, 0,
	  "worker, prober and syncer processes" },
	{ CTL_SHOW_CONFIG, { "show", "config" }, 2, "", 0, 0, 0, 0,
	  "the running configuration (secrets masked)" },
	{ CTL_SHOW_REGISTRY, { "show", "registry" }, 2, "", 0, 0, 0, 0,
	  "registry syncs, last success, backends by source" },
	{ CTL_SHOW_QUEUE, { "show", "queue" }, 2, "", 0, 0, 0, 0,
	  "the admission queue per pool and band, deadlines, the retry budget" },
	{ CTL_SHOW_TENANTS, { "show", "tenants" }, 2, "", 0, 0, 0, 0,
	  "tenants: requests, rate-limit refusals, tokens, queue waits" },
	{ CTL_EXPLAIN, { "explain" }, 1, "[N]", 0, 1, 0, 0,
	  "the last N routing decisions: candidates, scores, pick and why" },
	{ CTL_BACKEND_ENABLE, { "backend", "enable" }, 2, "NAME", 1, 1, 1, 0,
	  "let a disabled or draining backend take traffic again" },
	{ CTL_BACKEND_DISABLE, { "backend", "disable" }, 2, "NAME", 1, 1, 1, 0,
	  "take a backend out of rotation" },
	{ CTL_BACKEND_DRAIN, { "backend", "drain" }, 2, "NAME", 1, 1, 1, 0,
	  "no new requests; in-flight ones finish" },
	{ CTL_BACKEND_WEIGHT, { "backend", "weight" }, 2, "NAME N", 2, 2, 1, 0,
	  "set a backend's weight (1-1000) until the next reload" },
	{ CTL_BREAKER_OPEN, { "breaker", "open" }, 2, "NAME", 1, 1, 1, 0,
	  "force a backend's circuit breaker open" },
	{ CTL_BREAKER_CLOSE, { "breaker", "close" }, 2, "NAME", 1, 1, 1, 0,
	  "close a breaker and let it follow traffic again" },
	{ CTL_BREAKER_RELEASE, { "breaker", "release" }, 2, "NAME", 1, 1, 1, 0,
	  "end an order: the breaker follows traffic from its state now" },
	{ CTL_STRATEGY_SET, { "strategy", "set" }, 2, "[POOL] NAME", 1, 2, 1, 0,
	  "switch the balancing strategy of one pool or of all" },
	{ CTL_RELOAD, { "reload" }, 1, "", 0, 0, 1, 0,
	  "re-read the configuration file (SIGHUP)" },
	{ CTL_STOP, { "stop" }, 1, "", 0, 0, 1, 0,
	  "stop routerd (SIGTERM)" },
	{ CTL_LOG_VERBOSE, { "log", "verbose" }, 2, "", 0, 0, 1, 0,
	  "log debug messages in every process" },
	{ CTL_LOG_BRIEF, { "log", "brief" }, 2, "", 0, 0, 1, 0,
	  "stop logging debug messages" },
	{ CTL_LOG_REOPEN, { "log", "reopen" }, 2, "", 0, 0, 1, 0,
	  "reopen log files (SIGUSR1)" },
	{ CTL_MONITOR, { "monitor" }, 1, "", 0, 0, 0, 0,
	  "print health, breaker, registry and reload events as they happen" },
};
const size_t ctlproto_ncmds = sizeof(ctlproto_cmds) / sizeof(ctlproto_cmds[0]);

_Static_assert(sizeof(ctlproto_cmds) / sizeof(ctlproto_cmds[0]) == CTL_NCMDS,
    "one grammar row per command id");

int
ctlproto_frame_parse(const void *buf, size_t len, size_t max, size_t *plen)
{
	const uint8_t	*p = buf;
	size_t		 n;

	if (len < CTLPROTO_HDR)
		return 0;
	n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	if (n == 0 || n > max)
		return -1;
	if (len - CTLPROTO_HDR < n)
		return 0;
	*plen = n;
	return 1;
}

void
ctlproto_frame_hdr(uint8_t hdr[CTLPROTO_HDR], uint32_t len)
{
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
}

char *
ctlproto_frame_json(const json_t *v, size_t max, size_t *outlen)
{
	char	*s, *out;
	size_t	 n;

	if ((s = json_dumps(v, JSON_COMPACT)) == NULL)
		return NULL;
	n = strlen(s);
	if (n == 0 || n > max || (out = malloc(n + CTLPROTO_HDR)) == NULL) {
		free(s);
		return NULL;
	}
	ctlproto_frame_hdr((uint8_t *)out, (uint32_t)n);
	memcpy(out + CTLPROTO_HDR, s, n);
	free(s);
	*outlen = n + CTLPROTO_HDR;
	return out;
}

const struct ctlproto_cmd *
ctlproto_lookup(const char *const *w, size_t n)
{
	size_t	i;
	int	k;

	for (i = 0; i < ctlproto_ncmds; i++) {
		const struct ctlproto_cmd *c = &ctlproto_cmds[i];

		if ((size_t)c->nwords > n)
			continue;
		for (k = 0; k < c->nwords; k++)
			if (strcmp(c->words[k], w[k]) != 0)
				break;
		if (k == c->nwords)
			return c;
	}
	return NULL;
}

/* Words joined by spaces into buf (truncated to len). */
static void
ctlproto_words(const char *const *w, size_t n, char *buf, size_t len)
{
	size_t	i;

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i > 0)
			strlcat(buf, " ", len);
		strlcat(buf, w[i], len);
	}
}

int
ctlproto_request_parse(const char *p, size_t n, struct ctlproto_req *req,
    char *err, size_t errlen, int *fatal)
{
	const struct ctlproto_cmd *cmd;
	json_error_t	 jerr;
	json_t		*words, *w;
	char		 usage[128];
	size_t		 i, nw;

	memset(req, 0, sizeof(*req));
	*fatal = 0;
	if ((req->root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr)) == NULL ||
	    !json_is_object(req->root)) {
		snprintf(err, errlen, "bad request: %s", req->root == NULL ?
		    jerr.text : "not a JSON object");
		*fatal = 1;
		goto bad;
	}
	words = json_object_get(req->root, "cmd");
	if ((w = json_object_get(req->root, "json")) != NULL)
		req->json = json_is_true(w);
	if (!json_is_array(words) || (nw = json_array_size(words)) == 0 ||
	    nw > CTLPROTO_ARGS_MAX) {
		snprintf(err, errlen, "bad request: \"cmd\" must be an array of 1 "
		    "to %d strings", CTLPROTO_ARGS_MAX);
		goto bad;
	}
	json_array_foreach(words, i, w) {
		if ((req->argv[i] = json_string_value(w)) == NULL) {
			snprintf(err, errlen, "bad request: \"cmd\" must hold strings");
			goto bad;
		}
	}
	req->nw = (int)nw;
	ctlproto_words(req->argv, nw, req->text, sizeof(req->text));
	if ((cmd = ctlproto_lookup(req->argv, nw)) == NULL) {
		snprintf(err, errlen, "unknown command: %s", req->text);
		goto bad;
	}
	if ((int)nw - cmd->nwords < cmd->minargs ||
	    (int)nw - cmd->nwords > cmd->maxargs) {
		ctlproto_words(cmd->words, (size_t)cmd->nwords, usage, sizeof(usage));
		snprintf(err, errlen, "usage: %s%s%s", usage, cmd->args[0] ? " " : "",
		    cmd->args);
		goto bad;
	}
	req->cmd = cmd;
	return 0;
bad:
	ctlproto_request_free(req);
	return -1;
}

void
ctlproto_request_free(struct ctlproto_req *req)
{
	json_decref(req->root);
	memset(req, 0, sizeof(*req));
}

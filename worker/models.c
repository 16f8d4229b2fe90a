/* Model routing (strategy "model") and GET /v1/models, answered by routerd itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include <jansson.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "worker/jscan.h"
#include "worker/llm.h"
#include "worker/worker.h"

/*
 * models_wanted(): 1 when this request's backend depends on its model:
 * the pool balances by model and the request has (or, by its method,
 * should have) a body to read it from.
 * Such a body is held whole before routing (limits.hold); one that is not
 * is answered with an error by models_route(), never routed as if it
 * named no model.
 */
int
models_wanted(struct client *c)
{
	struct worker	*w = c->w;

	if (c->x.local_models || c->x.pool < 0 ||
	    (size_t)c->x.pool >= w->view.npools ||
	    shm_pool_strategy(w->shm, w->view.pools[c->x.pool].id) != STRAT_MODEL)
		return 0;
	/* a method that carries a body must name its model; GET and the like need not */
	return c->x.req_body != BODY_NONE || c->x.method == HTTP_POST ||
	    c->x.method == HTTP_PUT || c->x.method == HTTP_PATCH;
}

/* An OpenAI-style error (status, type, code, message) instead of a backend's answer. */
static void
models_error(struct client *c, int status, const char *type, const char *code,
    const char *param, const char *msg)
{
	json_t	*root;
	int	 close_it;

	root = json_pack("{s:{s:s, s:s, s:s, s:s?}}", "error", "message", msg,
	    "type", type, "code", code, "param", param);
	if (root == NULL) {
		client_reply(c, status, msg);
		return;
	}
	if (c->up != NULL)
		upstream_release(c->up, 0);
	if (c->out.data == NULL) {
		if ((c->out.data = worker_buf_get(c->w)) == NULL) {
			json_decref(root);
			client_close(c);
			return;
		}
		c->out.cap = WORKER_BUFSZ;
	}
	buf_reset(&c->out);
	close_it = !c->x.msg_done || c->x.close_after;
	if (reply_json(&c->out, status, root, close_it, c->x.rid) == -1) {
		json_decref(root);
		client_reply(c, status, msg);
		return;
	}
	json_decref(root);
	c->x.status = status;
	c->x.head_sent = 1;
	c->x.resp_done = 1;
	c->x.resp_close = close_it;
	c->phase = CP_REPLY;
}

/* An OpenAI-style 404 for a model no backend of the pool serves. */
static void
models_unknown(struct client *c, const char *model)
{
	char	 msg[256];

	snprintf(msg, sizeof(msg), "The model '%.128s' does not exist or no backend serves it",
	    model);
	models_error(c, 404, "invalid_request_error", "model_not_found", NULL, msg);
}

/*
 * The held body as one contiguous JSON text: the bytes after the head, or,
 * for a chunked body (held in the normalized chunks client.c writes), a
 * de-chunked copy in *copy that the caller frees.  NULL if not whole.
 */
static const char *
models_body(struct client *c, size_t *len, char **copy)
{
	const char	*p = c->fwd.data + c->x.fwd_head, *end = c->fwd.data + c->fwd.wpos;
	char		*d;
	size_t		 n = 0;

	*copy = NULL;
	if (c->x.req_body != BODY_CHUNKED) {
		*len = (size_t)(end - p);
		return p;
	}
	if ((d = malloc((size_t)(end - p) + 1)) == NULL)
		return NULL;
	while (p < end) {
		size_t	sz = 0;

		while (p < end && *p != '\r') {
			int h = *p >= 'a' ? *p - 'a' + 10 : *p - '0';

			sz = sz * 16 + (size_t)h;
			p++;
		}
		p += 2;			/* CRLF after the size */
		if (sz == 0)
			break;
		if (sz > (size_t)(end - p)) {
			free(d);
			return NULL;
		}
		memcpy(d + n, p, sz);
		n += sz;
		p += sz + 2;		/* the data's CRLF */
	}
	*copy = d;
	*len = n;
	return d;
}

/* 1 when some backend of c's pool lists the models it serves. */
static int
models_pool_lists(struct client *c)
{
	const struct wview	*v = &c->w->view;
	const struct wpool	*p = &v->pools[c->x.pool];
	size_t			 i;

	for (i = 0; i < p->n; i++)
		if (v->be[p->idx[i]].nmodels > 0)
			return 1;
	return 0;
}

/*
 * models_route(): read "model" from the held JSON body and narrow the
 * pick to backends serving it.  Returns 0 to go on (c->x.breq.model set, or
 * -1 when the body names none), -1 when c was answered (unknown model).
 *
 * A pool balanced by model needs the model: a body without one is
 * answered with an error.  A pool that ranks by the body (llm,
 * least_tokens) reads the same scan for its facts (worker/llm.c) and
 * narrows by the model only when its backends list models; a body it
 * cannot read is routed without facts.
 */
int
models_route(struct client *c)
{
	struct worker	*w = c->w;
	const char	*body;
	char		*copy, name[SHM_NAME_MAX * 4];
	size_t		 len;
	int		 id, r, blocks, reads, strict;

	strict = models_wanted(c);
	reads = llm_wants(c, &blocks);
	if (!strict && (!reads || c->x.req_body == BODY_NONE || !c->x.holding ||
	    !c->x.msg_done))
		return 0;
	if (c->x.req_body == BODY_NONE) {
		models_error(c, 400, "invalid_request_error", "missing_model", "model",
		    "model routing needs a \"model\" string in the request body, which is empty");
		return -1;
	}
	if (!c->x.holding || !c->x.msg_done) {
		/* the body streams: nothing tells which backends serve its model */
		if (c->x.hold_nomem) {
			models_error(c, 503, "server_error", "hold_memory_full", NULL,
			    "routerd has no memory free to read this request's model; try again");
			return -1;
		}
		models_error(c, 413, "invalid_request_error", "request_too_large", NULL,
		    "the request body is larger than limits.hold, so its model cannot be read");
		return -1;
	}
	if ((body = models_body(c, &len, &copy)) == NULL) {
		if (!strict)
			return 0;
		client_reply(c, 500, "held body unreadable");
		return -1;
	}
	r = reads ? llm_scan(c, blocks, body, len, name, sizeof(name)) :
	    jscan_model(body, len, name, sizeof(name));
	free(copy);
	if (!strict) {
		/* advice only: narrowed by model where the backends say what they serve */
		if (r != JSCAN_FOUND && r != JSCAN_TOOLONG)
			return 0;
		if (!models_pool_lists(c))
			return 0;
		if (r == JSCAN_TOOLONG)
			strlcpy(name + 64, "...", 4);
		id = r == JSCAN_FOUND ? shm_model_lookup(w->shm, name) : -1;
		if (id < 0 || !balance_pool_has_model(&w->view, (uint32_t)c->x.pool, id)) {
			models_unknown(c, name);
			return -1;
		}
		c->x.breq.model = id;
		return 0;
	}
	switch (r) {
	case JSCAN_FOUND:
		break;
	case JSCAN_TOOLONG:
		/* longer than any model name the table can hold: none serves it */
		strlcpy(name + 64, "...", 4);
		models_unknown(c, name);
		return -1;
	case JSCAN_NONE:
	case JSCAN_NOTSTRING:
		models_error(c, 400, "invalid_request_error", "missing_model", "model",
		    "model routing needs a \"model\" string in the request body");
		return -1;
	default:
		models_error(c, 400, "invalid_request_error", "invalid_json", NULL,
		    "model routing needs a JSON object body (with one \"model\"); this one is not");
		return -1;
	}
	id = shm_model_lookup(w->shm, name);
	if (id < 0 || !balance_pool_has_model(&w->view, (uint32_t)c->x.pool, id)) {
		models_unknown(c, name);
		return -1;
	}
	c->x.breq.model = id;
	return 0;
}

/*
 * models_declared(): 1 when some backend of the table lists its models.
 * Only then does routerd answer GET /v1/models itself; a fleet that lists
 * none gets the request forwarded, so a backend names what it serves.
 */
int
models_declared(const struct worker *w)
{
	uint32_t	 s;

	for (s = 0; s < w->shm->max_backends; s++)
		if (w->view.be[s].inuse && w->view.be[s].nmodels > 0)
			return 1;
	return 0;
}

/*
 * GET /v1/models: the union of the (backend, model) pairs that are in:
 * the models of every backend that is not down or disabled, less those
 * the prober took out there (models_down, models_open), in OpenAI's list
 * format (DESIGN "Interfaces").
 */
void
models_list(struct client *c)
{
	struct worker	*w = c->w;
	json_t		*root, *data;
	uint8_t		*seen;
	uint32_t	 s, k, n;
	char		 name[SHM_NAME_MAX];

	n = atomic_load_explicit(&w->shm->nmodels, memory_order_acquire);
	seen = calloc(n ? n : 1, 1);
	root = json_object();
	data = json_array();
	if (seen == NULL || root == NULL || data == NULL) {
		free(seen);
		json_decref(root);
		json_decref(data);
		client_reply(c, 500, "out of memory");
		return;
	}
	for (s = 0; s < w->shm->max_backends; s++) {
		const struct wbe *b = &w->view.be[s];
		uint32_t	 out;

		if (!b->inuse || (b->flags & SHM_F_DISABLED) ||
		    atomic_load_explicit(&shm_slot(w->shm, s)->health,
		    memory_order_relaxed) == SHM_HEALTH_DOWN)
			continue;
		/* pairs the prober took out (not listed there, breaker open) */
		out = shm_models_out(shm_slot(w->shm, s));
		for (k = 0; k < b->nmodels; k++) {
			uint32_t id = b->models[k];

			if (id >= n || seen[id] || ((out >> k) & 1) ||
			    shm_model_name(w->shm, id, name, sizeof(name)) == -1)
				continue;
			seen[id] = 1;
			json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}",
			    "id", name, "object", "model", "created", 0,
			    "owned_by", "routerd"));
		}
	}
	free(seen);
	json_object_set_new(root, "object", json_string("list"));
	json_object_set_new(root, "data", data);
	if (c->out.data == NULL && (c->out.data = worker_buf_get(w)) == NULL) {
		json_decref(root);
		client_close(c);
		return;
	}
	c->out.cap = c->out.cap ? c->out.cap : WORKER_BUFSZ;
	buf_reset(&c->out);
	if (reply_json(&c->out, 200, root, c->x.close_after, c->x.rid) == -1) {
		json_decref(root);
		client_reply(c, 500, "model list too large");
		return;
	}
	json_decref(root);
	c->x.status = 200;
	c->x.head_sent = 1;
	c->x.resp_done = 1;
	c->x.resp_close = c->x.close_after;
	c->phase = CP_REPLY;
}

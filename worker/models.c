/* Model routing (strategy "model") and GET /v1/models, answered by routerd itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "worker/worker.h"

/*
 * models_wanted(): 1 when this request's backend depends on its model and
 * the model can be read from its body: the pool balances by model and the
 * body has a Content-Length that fits in fwd.  The request then starts only
 * once its body is in (it is held there for retries anyway).
 */
int
models_wanted(struct client *c)
{
	struct worker	*w = c->w;

	if (c->local_models || c->pool < 0 ||
	    shm_pool_strategy(w->shm, (uint32_t)c->pool) != STRAT_MODEL)
		return 0;
	if (c->req_body != BODY_LENGTH)
		return 0;
	/* with room to spare for the parser margin of client.c */
	return c->parser.content_length + c->fwd_head + 128 < c->fwd.cap;
}

/* An OpenAI-style 404 for a model no backend of the pool serves. */
static void
models_unknown(struct client *c, const char *model)
{
	json_t	*root;
	char	 msg[256];

	snprintf(msg, sizeof(msg), "The model '%s' does not exist or no backend serves it",
	    model);
	root = json_pack("{s:{s:s, s:s, s:s, s:n}}", "error", "message", msg,
	    "type", "invalid_request_error", "code", "model_not_found", "param");
	if (root == NULL) {
		client_reply(c, 404, "unknown model");
		return;
	}
	if (c->up != NULL)
		upstream_release(c->up, 0);
	buf_reset(&c->out);
	if (reply_json(&c->out, 404, root, !c->msg_done || c->close_after, c->rid) == -1) {
		json_decref(root);
		client_reply(c, 404, "unknown model");
		return;
	}
	json_decref(root);
	c->status = 404;
	c->head_sent = 1;
	c->resp_done = 1;
	c->resp_close = !c->msg_done || c->close_after;
	c->phase = CP_REPLY;
}

/*
 * models_route(): read "model" from the held JSON body and narrow the
 * pick to backends serving it.  Returns 0 to go on (c->breq.model set, or
 * -1 when the body names none), -1 when c was answered (unknown model).
 */
int
models_route(struct client *c)
{
	struct worker	*w = c->w;
	json_t		*root, *m;
	json_error_t	 err;
	const char	*name;
	int		 id;

	if (c->out.data == NULL) {
		if ((c->out.data = worker_buf_get(w)) == NULL)
			return 0;
		c->out.cap = WORKER_BUFSZ;
		buf_reset(&c->out);
	}
	root = json_loadb(c->fwd.data + c->fwd_head, c->fwd.wpos - c->fwd_head,
	    JSON_DISABLE_EOF_CHECK, &err);
	if (root == NULL)
		return 0;	/* not JSON: the backends will say what they think of it */
	m = json_object_get(root, "model");
	if (!json_is_string(m)) {
		json_decref(root);
		return 0;
	}
	name = json_string_value(m);
	id = shm_model_lookup(w->shm, name);
	if (id < 0 || !balance_pool_has_model(&w->view, (uint32_t)c->pool, id)) {
		models_unknown(c, name);
		json_decref(root);
		return -1;
	}
	c->breq.model = id;
	json_decref(root);
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
 * GET /v1/models: the union of the models of every backend that is not
 * down, in OpenAI's list format (DESIGN "Interfaces").
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

		if (!b->inuse || (b->flags & SHM_F_DISABLED) ||
		    atomic_load_explicit(&shm_slot(w->shm, s)->health,
		    memory_order_relaxed) == SHM_HEALTH_DOWN)
			continue;
		for (k = 0; k < b->nmodels; k++) {
			uint32_t id = b->models[k];

			if (id >= n || seen[id] ||
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
	if (reply_json(&c->out, 200, root, c->close_after, c->rid) == -1) {
		json_decref(root);
		client_reply(c, 500, "model list too large");
		return;
	}
	json_decref(root);
	c->status = 200;
	c->head_sent = 1;
	c->resp_done = 1;
	c->resp_close = c->close_after;
	c->phase = CP_REPLY;
}

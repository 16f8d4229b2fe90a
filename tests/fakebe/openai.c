/* fakebe's OpenAI-compatible API: /v1/models, chat completions, completions and embeddings. */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "fakebe.h"

#define OA_TOKENS_MAX	100000
#define OA_DIM_MAX	4096

static int	model_known(const char *);
static int	oa_chat(struct fb_conn *, json_t *, const char *);
static int	oa_completion(struct fb_conn *, json_t *, const char *);
static int	oa_embeddings(struct fb_conn *, json_t *, const char *);
static int	oa_stream(struct fb_conn *, const char *, int, long long,
		    int);
static int	oa_event(struct fb_conn *, json_t *);
static void	oa_token(const struct fb_conn *, long long, char *, size_t);
static json_t	*oa_usage(long long, long long);
static long long prompt_tokens(json_t *);
static long long max_tokens(json_t *);
static int	include_usage(json_t *);

static int
model_known(const char *m)
{
	size_t	 i;

	for (i = 0; i < fb_nmodels; i++)
		if (strcmp(fb_models[i], m) == 0)
			return 1;
	return 0;
}

/*
 * An OpenAI-style error: {"error":{"message","type","param","code"}}; code
 * may be NULL (JSON null).  Returns what resp_json() returns.
 */
int
oa_error(struct fb_conn *c, int status, const char *type, const char *code,
    const char *msg)
{
	return resp_json(c, status, json_pack("{s:{s:s,s:s,s:n,s:o}}", "error",
	    "message", msg, "type", type, "param",
	    "code", code != NULL ? json_string(code) : json_null()), NULL);
}

/* GET /v1/models: every -m model in OpenAI's list format. */
int
oa_models(struct fb_conn *c)
{
	json_t	*data;
	size_t	 i;

	if ((data = json_array()) == NULL)
		return -1;
	for (i = 0; i < fb_nmodels; i++)
		json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}",
		    "id", fb_models[i], "object", "model", "created", 0,
		    "owned_by", "fakebe"));
	return resp_json(c, 200, json_pack("{s:s,s:o}", "object", "list",
	    "data", data), NULL);
}

/*
 * The body of a POST to /v1/chat/completions, /v1/completions or
 * /v1/embeddings is in c->req.jbuf: check it and the model, then answer.
 * Returns 0, or -1 to cut the connection.
 */
int
oa_end(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	json_t		*root, *jm;
	json_error_t	 jerr;
	char		 msg[512];
	const char	*model;
	int		 rv;

	if (r->jtoolarge)
		return oa_error(c, 413, "invalid_request_error", NULL,
		    "request body too large");
	root = json_loadb(r->jbuf != NULL ? r->jbuf : "", r->jlen, 0, &jerr);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		return oa_error(c, 400, "invalid_request_error", NULL,
		    "We could not parse the JSON body of your request.");
	}
	jm = json_object_get(root, "model");
	if ((model = json_string_value(jm)) == NULL) {
		json_decref(root);
		return oa_error(c, 400, "invalid_request_error", NULL,
		    "you must provide a model parameter");
	}
	if (!model_known(model)) {
		snprintf(msg, sizeof(msg), "The model `%s` does not exist or "
		    "you do not have access to it.", model);
		json_decref(root);
		return oa_error(c, 404, "invalid_request_error",
		    "model_not_found", msg);
	}
	switch (r->route) {
	case ROUTE_CHAT:
		rv = oa_chat(c, root, model);
		break;
	case ROUTE_COMPLETIONS:
		rv = oa_completion(c, root, model);
		break;
	default:
		rv = oa_embeddings(c, root, model);
		break;
	}
	json_decref(root);
	return rv;
}

static json_t *
oa_usage(long long prompt, long long completion)
{
	return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)prompt,
	    "completion_tokens", (json_int_t)completion,
	    "total_tokens", (json_int_t)(prompt + completion));
}

/* A rough token count of messages[].content or prompt: 1 per 4 bytes. */
static long long
prompt_tokens(json_t *root)
{
	json_t		*msgs, *m, *p;
	size_t		 i;
	long long	 bytes = 0;

	msgs = json_object_get(root, "messages");
	json_array_foreach(msgs, i, m)
		bytes += json_string_length(json_object_get(m, "content"));
	if ((p = json_object_get(root, "prompt")) != NULL)
		bytes += json_string_length(p);
	return bytes / 4 + 1;
}

/* max_tokens (or max_completion_tokens), clamped to 1..OA_TOKENS_MAX; 5 if absent. */
static long long
max_tokens(json_t *root)
{
	json_t		*t;
	json_int_t	 v;

	t = json_object_get(root, "max_tokens");
	if (!json_is_integer(t))
		t = json_object_get(root, "max_completion_tokens");
	if (!json_is_integer(t))
		return 5;
	v = json_integer_value(t);
	if (v < 1)
		return 1;
	return v > OA_TOKENS_MAX ? OA_TOKENS_MAX : v;
}

static int
include_usage(json_t *root)
{
	return json_is_true(json_object_get(json_object_get(root,
	    "stream_options"), "include_usage"));
}

static int
oa_chat(struct fb_conn *c, json_t *root, const char *model)
{
	char	 id[64], content[FB_NAME_MAX + 32];

	if (json_is_true(json_object_get(root, "stream")))
		return oa_stream(c, model, 1, max_tokens(root),
		    include_usage(root));
	snprintf(id, sizeof(id), "chatcmpl-fakebe-%llu",
	    (unsigned long long)atomic_fetch_add(&fb_seq, 1));
	snprintf(content, sizeof(content), "Hello from %s", c->name);
	return resp_json(c, 200, json_pack(
	    "{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s},s:n,s:s}],s:o,s:s}",
	    "id", id, "object", "chat.completion",
	    "created", (json_int_t)time(NULL), "model", model,
	    "choices", "index", 0, "message", "role", "assistant",
	    "content", content, "logprobs", "finish_reason", "stop",
	    "usage", oa_usage(prompt_tokens(root), 3),
	    "backend", c->name), NULL);
}

static int
oa_completion(struct fb_conn *c, json_t *root, const char *model)
{
	char	 id[64], text[FB_NAME_MAX + 32];

	if (json_is_true(json_object_get(root, "stream")))
		return oa_stream(c, model, 0, max_tokens(root),
		    include_usage(root));
	snprintf(id, sizeof(id), "cmpl-fakebe-%llu",
	    (unsigned long long)atomic_fetch_add(&fb_seq, 1));
	snprintf(text, sizeof(text), "Hello from %s", c->name);
	return resp_json(c, 200, json_pack(
	    "{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:s}],s:o,s:s}",
	    "id", id, "object", "text_completion",
	    "created", (json_int_t)time(NULL), "model", model,
	    "choices", "text", text, "index", 0, "logprobs",
	    "finish_reason", "stop",
	    "usage", oa_usage(prompt_tokens(root), 3),
	    "backend", c->name), NULL);
}

/* The array of numbers vec (stolen) as a base64 string of little-endian float32s. */
static json_t *
oa_base64(json_t *vec)
{
	size_t		 n = json_array_size(vec), k;
	unsigned char	*raw, *out;
	json_t		*str = NULL;

	raw = malloc(n * 4 + 1);
	out = malloc((n * 4 + 2) / 3 * 4 + 1);
	if (raw != NULL && out != NULL) {
		for (k = 0; k < n; k++) {
			float		f = (float)json_real_value(json_array_get(vec, k));
			uint32_t	u;

			memcpy(&u, &f, 4);
			raw[k * 4] = u & 0xff;
			raw[k * 4 + 1] = (u >> 8) & 0xff;
			raw[k * 4 + 2] = (u >> 16) & 0xff;
			raw[k * 4 + 3] = u >> 24;
		}
		EVP_EncodeBlock(out, raw, (int)(n * 4));
		str = json_string((char *)out);
	}
	free(raw);
	free(out);
	json_decref(vec);
	return str;
}

/*
 * input: a string or an array (one embedding per element); dimensions: 1..4096, default 8;
 * encoding_format: "float" (default) or "base64" (the floats as little-endian float32, as
 * OpenAI sends them and its SDKs ask by default).
 */
static int
oa_embeddings(struct fb_conn *c, json_t *root, const char *model)
{
	json_t		*in, *data, *vec, *d, *fmt;
	size_t		 n, i, k, dim = 8;
	long long	 ptok = 0;
	int		 b64 = 0;

	in = json_object_get(root, "input");
	if (json_is_string(in)) {
		n = 1;
		ptok = json_string_length(in) / 4 + 1;
	} else if (json_is_array(in) && json_array_size(in) > 0) {
		n = json_array_size(in);
		for (i = 0; i < n; i++)
			ptok += json_string_length(json_array_get(in, i)) / 4 + 1;
	} else
		return oa_error(c, 400, "invalid_request_error", NULL,
		    "input must be a string or a non-empty array");
	d = json_object_get(root, "dimensions");
	if (json_is_integer(d) && json_integer_value(d) >= 1 &&
	    json_integer_value(d) <= OA_DIM_MAX)
		dim = json_integer_value(d);
	fmt = json_object_get(root, "encoding_format");
	if (fmt != NULL && !json_is_null(fmt)) {
		if (json_is_string(fmt) && strcmp(json_string_value(fmt), "base64") == 0)
			b64 = 1;
		else if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "float") != 0)
			return oa_error(c, 400, "invalid_request_error", NULL,
			    "encoding_format must be \"float\" or \"base64\"");
	}

	if ((data = json_array()) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if ((vec = json_array()) == NULL) {
			json_decref(data);
			return -1;
		}
		/* Deterministic, so a test can compare two answers. */
		for (k = 0; k < dim; k++)
			json_array_append_new(vec, json_real(
			    (double)(((i + 1) * (k + 3)) % 17) / 17.0));
		if (b64 && (vec = oa_base64(vec)) == NULL) {
			json_decref(data);
			return -1;
		}
		json_array_append_new(data, json_pack("{s:s,s:I,s:o}",
		    "object", "embedding", "index", (json_int_t)i,
		    "embedding", vec));
	}
	return resp_json(c, 200, json_pack("{s:s,s:o,s:s,s:{s:I,s:I},s:s}",
	    "object", "list", "data", data, "model", model,
	    "usage", "prompt_tokens", (json_int_t)ptok,
	    "total_tokens", (json_int_t)ptok, "backend", c->name), NULL);
}

/* Token k of every stream: "Hello", " from", " NAME", then " again". */
static void
oa_token(const struct fb_conn *c, long long k, char *buf, size_t len)
{
	if (k == 0)
		snprintf(buf, len, "Hello");
	else if (k == 1)
		snprintf(buf, len, " from");
	else if (k == 2)
		snprintf(buf, len, " %s", c->name);
	else
		snprintf(buf, len, " again");
}

/* Send "data: <j>\n\n" (j stolen) as one chunk.  0 or -1. */
static int
oa_event(struct fb_conn *c, json_t *j)
{
	char	*s, *ev;
	size_t	 len;
	int	 rv;

	if (j == NULL)
		return -1;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		return -1;
	len = strlen(s);
	if ((ev = malloc(len + 9)) == NULL) {
		free(s);
		return -1;
	}
	memcpy(ev, "data: ", 6);
	memcpy(ev + 6, s, len);
	memcpy(ev + 6 + len, "\n\n", 2);
	rv = resp_body(c, ev, len + 8);
	free(ev);
	free(s);
	return rv;
}

/*
 * Stream ntok tokens as server-sent events, one event per chunk, the delay
 * (?delay_ms= or X-Fake-Delay-Ms, default 20 ms) between tokens, the first
 * after ?first_ms= or X-Fake-First-Ms (default 0); then a
 * finish event, a usage event if asked, and "data: [DONE]".  chat selects
 * chat.completion.chunk over text_completion objects.  0 or -1.
 */
static int
oa_stream(struct fb_conn *c, const char *model, int chat, long long ntok,
    int usage)
{
	struct fb_req	*r = &c->req;
	json_t		*j;
	json_int_t	 created = time(NULL);
	char		 id[64], tok[FB_NAME_MAX + 8], dh[32];
	const char	*obj = chat ? "chat.completion.chunk" :
			    "text_completion";
	long		 d = req_delay_ms(r, 20);
	long long	 k;

	snprintf(id, sizeof(id), "%s-fakebe-%llu", chat ? "chatcmpl" : "cmpl",
	    (unsigned long long)atomic_fetch_add(&fb_seq, 1));
	snprintf(dh, sizeof(dh), "Cache-Control: no-cache\r\n");
	if (resp_head(c, 200, "text/event-stream", FB_CHUNKED, dh) == -1)
		return -1;
	if (r->head_only)
		return 0;

	/* ?first_ms= or X-Fake-First-Ms: the prefill, before the first token */
	if ((k = req_ms(r, "first_ms", "X-Fake-First-Ms", 0)) > 0)
		fb_msleep((long)k);
	for (k = 0; k < ntok; k++) {
		if (k > 0)
			fb_msleep(d);
		oa_token(c, k, tok, sizeof(tok));
		/* As OpenAI does, only the first delta names the role. */
		if (chat && k == 0)
			j = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s},"
			    "s:n,s:n}]}", "id", id, "object", obj,
			    "created", created, "model", model, "choices",
			    "index", 0, "delta", "role", "assistant",
			    "content", tok, "logprobs", "finish_reason");
		else if (chat)
			j = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s},"
			    "s:n,s:n}]}", "id", id, "object", obj,
			    "created", created, "model", model, "choices",
			    "index", 0, "delta", "content", tok, "logprobs",
			    "finish_reason");
		else
			j = json_pack("{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:n}]}",
			    "id", id, "object", obj, "created", created,
			    "model", model, "choices", "text", tok, "index", 0,
			    "logprobs", "finish_reason");
		if (oa_event(c, j) == -1)
			return -1;
	}
	if (chat)
		j = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{},s:n,s:s}]}",
		    "id", id, "object", obj, "created", created, "model", model,
		    "choices", "index", 0, "delta", "logprobs",
		    "finish_reason", "stop");
	else
		j = json_pack("{s:s,s:s,s:I,s:s,s:[{s:s,s:i,s:n,s:s}]}",
		    "id", id, "object", obj, "created", created, "model", model,
		    "choices", "text", "", "index", 0, "logprobs",
		    "finish_reason", "stop");
	if (oa_event(c, j) == -1)
		return -1;
	if (usage) {
		j = json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", id,
		    "object", obj, "created", created, "model", model,
		    "choices", "usage", oa_usage(1, ntok));
		if (oa_event(c, j) == -1)
			return -1;
	}
	if (resp_body(c, "data: [DONE]\n\n", 14) == -1)
		return -1;
	return resp_end(c);
}

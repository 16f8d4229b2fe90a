/* libFuzzer harness: worker/jscan.c held to jansson's reading of the same text. */

/*
 * Whatever the input: when jansson (refusing duplicate keys) reads a JSON
 * object, jscan must find the same "model" (or none, or a non-string one);
 * when jscan refuses a text, jansson must refuse it too, unless it holds
 * "model" twice (jscan refuses that, jansson keeps the last one).  The one
 * divergence allowed the other way: jansson refuses numbers too large for
 * its types, which are valid JSON to jscan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "worker/jscan.h"
#include "tests/fuzz/common.h"

/* jansson read the object j: jscan's answer r (and out) must say the same of its "model". */
static void
agree(json_t *j, int r, const char *out, size_t outsz)
{
	json_t	*m = json_object_get(j, "model");

	if (m == NULL && r != JSCAN_NONE)
		abort();
	if (m != NULL && !json_is_string(m) && r != JSCAN_NOTSTRING)
		abort();
	if (m != NULL && json_is_string(m)) {
		const char *v = json_string_value(m);

		if (strlen(v) + 1 > outsz ? r != JSCAN_TOOLONG :
		    (r != JSCAN_FOUND || strcmp(v, out) != 0))
			abort();
	}
}

/*
 * jscan_request() must give jscan_model()'s verdict and model, stay in its
 * bounds, and, where jansson read the object, agree on max_tokens and
 * stream (for duplicate keys jansson keeps the last, jscan the first
 * prompt: those are not compared).
 */
static void
agree_request(const uint8_t *data, size_t size, int r, const char *out)
{
	struct jscan_req	 q;
	uint64_t		 blocks[8];
	char			 model[64];
	json_error_t		 err;
	json_t			*j, *v;
	int			 rq;

	q.block = 1 + (size % 13);
	q.max_blocks = 8;
	q.blocks = blocks;
	q.model = model;
	q.modelsz = sizeof(model);
	rq = jscan_request((const char *)data, size, &q);
	if (rq != r || (r == JSCAN_FOUND && strcmp(model, out) != 0))
		abort();
	if (q.nblocks > q.max_blocks || q.nblocks * q.block > q.chars * 2 + 2 * size)
		abort();
	if (r == JSCAN_BAD)
		return;
	{
		/* without blocks the validating pass counts the characters: the same count */
		struct jscan_req z = { .model = model, .modelsz = sizeof(model) };

		if (jscan_request((const char *)data, size, &z) != r || z.chars != q.chars ||
		    z.nblocks != 0)
			abort();
	}
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
	if (j == NULL || !json_is_object(j)) {
		json_decref(j);
		return;
	}
	v = json_object_get(j, "stream");
	if ((v != NULL && json_is_true(v)) != q.stream)
		abort();
	v = json_object_get(j, "max_completion_tokens");
	if (v == NULL)
		v = json_object_get(j, "max_tokens");
	if (v != NULL && json_is_integer(v) && json_integer_value(v) >= 0 &&
	    q.max_tokens != json_integer_value(v))
		abort();
	if ((v == NULL || !json_is_integer(v)) && q.max_tokens != -1)
		abort();
	if (json_object_get(j, "messages") == NULL && json_object_get(j, "prompt") == NULL &&
	    (q.nblocks != 0 || q.chars != 0))
		abort();
	json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t	 err;
	json_t		*j;
	char		 out[64];
	int		 r;

	r = jscan_model((const char *)data, size, out, sizeof(out));
	agree_request(data, size, r, out);
	if (memchr(data, '\0', size) != NULL) {
		/* jansson's reader steps over a NUL between tokens; JSON has none: jscan refuses */
		if (r != JSCAN_BAD)
			abort();
		return 0;
	}
	j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
	if (j != NULL && json_is_object(j)) {
		agree(j, r, out, sizeof(out));
		json_decref(j);
		return 0;
	}
	json_decref(j);
	if (r == JSCAN_BAD)
		return 0;
	/* jscan read an object jansson did not: duplicates, or a number it cannot hold */
	j = json_loadb((const char *)data, size, 0, &err);
	if (j != NULL && json_is_object(j)) {
		/* duplicate keys other than "model": jscan takes them, as jansson without the flag */
		agree(j, r, out, sizeof(out));
		json_decref(j);
		return 0;
	}
	json_decref(j);
	if (strstr(err.text, "too big") == NULL && strstr(err.text, "overflow") == NULL) {
		fprintf(stderr, "jscan %d, jansson: %s\n", r, err.text);
		abort();
	}
	return 0;
}

/* Unit tests of worker/jscan.c: finding "model", and its verdict on JSON held to jansson's. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "worker/jscan.h"

static int
scan(const char *s, char *out, size_t outsz)
{
	return jscan_model(s, strlen(s), out, outsz);
}

Test(jscan, finds_model)
{
	char	m[64];

	cr_assert_eq(scan("{\"model\":\"m1\",\"messages\":[]}", m, sizeof(m)), JSCAN_FOUND);
	cr_assert_str_eq(m, "m1");
	cr_assert_eq(scan(" \n{ \"messages\" : [ {\"role\":\"user\",\"content\":\"model\"} ] ,"
	    " \"model\" : \"llama-3.1-8b\" } \r\n", m, sizeof(m)), JSCAN_FOUND);
	cr_assert_str_eq(m, "llama-3.1-8b");
	/* a nested "model" is not the request's */
	cr_assert_eq(scan("{\"x\":{\"model\":\"inner\"}}", m, sizeof(m)), JSCAN_NONE);
	cr_assert_eq(scan("{\"x\":[{\"model\":\"inner\"}],\"model\":\"outer\"}", m, sizeof(m)),
	    JSCAN_FOUND);
	cr_assert_str_eq(m, "outer");
	/* escapes in the key and the value decode as a backend would read them */
	cr_assert_eq(scan("{\"mod\\u0065l\":\"a\\/b\\u00e9\\ud83d\\ude00\"}", m, sizeof(m)),
	    JSCAN_FOUND);
	cr_assert_str_eq(m, "a/b\xc3\xa9\xf0\x9f\x98\x80");
}

Test(jscan, other_answers)
{
	char	m[8];

	cr_assert_eq(scan("{}", m, sizeof(m)), JSCAN_NONE);
	cr_assert_eq(scan("{\"messages\":[]}", m, sizeof(m)), JSCAN_NONE);
	cr_assert_eq(scan("{\"model\":7}", m, sizeof(m)), JSCAN_NOTSTRING);
	cr_assert_eq(scan("{\"model\":null}", m, sizeof(m)), JSCAN_NOTSTRING);
	cr_assert_eq(scan("{\"model\":{\"a\":[1,2]}}", m, sizeof(m)), JSCAN_NOTSTRING);
	cr_assert_eq(scan("{\"model\":\"12345678\"}", m, sizeof(m)), JSCAN_TOOLONG);
	cr_assert_eq(scan("{\"model\":\"1234567\"}", m, sizeof(m)), JSCAN_FOUND);
	cr_assert_str_eq(m, "1234567");
	/* two models: which one would a backend take?  Refused. */
	cr_assert_eq(scan("{\"model\":\"a\",\"model\":\"b\"}", m, sizeof(m)), JSCAN_BAD);
	cr_assert_eq(scan("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", m, sizeof(m)), JSCAN_BAD);
}

/* Texts that are not JSON objects, each refused, as jansson refuses them. */
static const char *bad[] = {
	"", " ", "[]", "\"model\"", "1", "null", "{", "}", "{\"model\"}", "{\"model\":}",
	"{\"model\":\"m\",}", "{,}", "{\"a\":1 \"b\":2}", "{\"a\":01}", "{\"a\":1.}",
	"{\"a\":.5}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":nul}",
	"{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}", "{\"a\":{\"b\"}}", "{\"a\":\"\\x\"}",
	"{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}",
	"{\"a\":\"\\u0000\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"\xc3\"}",
	"{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}",
	"{\"a\":1}x", "{\"a\":1}{}", "{'a':1}", "{a:1}", "{\"a\":[}", "{\"a\":]}",
	"{\"a\":[1}", "{\"a\":{]}", "{\"model\":\"m\"", "\xef\xbb\xbf{}",
};

Test(jscan, refuses_what_jansson_refuses)
{
	char	m[64];
	size_t	i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_error_t	err;
		json_t		*j = json_loads(bad[i], 0, &err);
		int		jv = j != NULL && json_is_object(j);

		json_decref(j);
		cr_assert_eq(jv, 0, "jansson accepts case %zu", i);
		cr_assert_eq(scan(bad[i], m, sizeof(m)), JSCAN_BAD, "case %zu: %s", i, bad[i]);
	}
}

Test(jscan, depth_as_jansson)
{
	char	 m[8], *s;
	size_t	 i, n;

	s = malloc(2 * JSCAN_DEPTH + 64);
	cr_assert_not_null(s);
	/* around the limit, jscan refuses exactly the nesting jansson refuses */
	for (n = JSCAN_DEPTH - 3; n <= JSCAN_DEPTH + 2; n++) {
		json_error_t	 err;
		json_t		*j;
		int		 r;

		strcpy(s, "{\"a\":");
		for (i = 0; i < n; i++)
			strcat(s, "[");
		for (i = 0; i < n; i++)
			strcat(s, "]");
		strcat(s, ",\"model\":\"x\"}");
		j = json_loads(s, 0, &err);
		r = jscan_model(s, strlen(s), m, sizeof(m));
		cr_assert_eq(r == JSCAN_BAD, j == NULL, "depth %zu: jscan %d, jansson %s", n,
		    r, j ? "reads it" : "refuses it");
		json_decref(j);
	}
	free(s);
}

/* Random JSON-ish texts: whenever jansson reads an object, jscan agrees on "model". */
Test(jscan, agrees_with_jansson_on_random_texts)
{
	static const char *parts[] = {
		"{", "}", "[", "]", ",", ":", "\"model\"", "\"m1\"", "\"x\"", "1", "-2.5e3",
		"true", "null", " ", "\"\\u00e9\"", "\"mod\\u0065l\"", "{\"model\":\"q\"}",
		"\"a\\\"b\"", "0", "[1,2]",
	};
	unsigned	seed = 12345;
	int		i, k, agreed = 0;
	char		text[512], m[64];

	for (i = 0; i < 200000; i++) {
		size_t	len = 0;
		int	nparts = 1 + (int)((seed = seed * 1103515245 + 12345) >> 16) % 14;

		text[0] = '\0';
		for (k = 0; k < nparts; k++) {
			const char *p = parts[((seed = seed * 1103515245 + 12345) >> 16) %
			    (sizeof(parts) / sizeof(parts[0]))];

			if (len + strlen(p) + 1 >= sizeof(text))
				break;
			strcpy(text + len, p);
			len += strlen(p);
		}
		{
			json_error_t	 err;
			json_t		*j = json_loadb(text, len, 0, &err), *jm;
			int		 r = jscan_model(text, len, m, sizeof(m));

			if (j == NULL || !json_is_object(j)) {
				cr_assert_eq(r, JSCAN_BAD, "jansson refuses, jscan %d: %s", r, text);
				json_decref(j);
				continue;
			}
			jm = json_object_get(j, "model");
			if (r == JSCAN_BAD) {
				/* only a duplicated "model" (jansson keeps the last) */
				cr_assert(strstr(text, "model") != NULL, "jscan refuses: %s", text);
			} else if (jm == NULL)
				cr_assert_eq(r, JSCAN_NONE, "%s", text);
			else if (json_is_string(jm)) {
				cr_assert_eq(r, JSCAN_FOUND, "%s", text);
				cr_assert_str_eq(m, json_string_value(jm), "%s", text);
				agreed++;
			} else
				cr_assert_eq(r, JSCAN_NOTSTRING, "%s", text);
			json_decref(j);
		}
	}
	cr_assert_gt(agreed, 100, "the generator made too few objects with a model");
}

/* jscan_request(): the prompt's blocks, chained, seeded by the model. */
static size_t
blocks_of(const char *s, size_t block, uint64_t *b, size_t max, struct jscan_req *out)
{
	char			 m[64];
	struct jscan_req	 r = { .block = block, .max_blocks = max, .blocks = b,
				    .model = m, .modelsz = sizeof(m) };

	cr_assert_neq(jscan_request(s, strlen(s), &r), JSCAN_BAD, "%s", s);
	if (out != NULL)
		*out = r;
	return r.nblocks;
}

Test(jscan, request_prefix_blocks)
{
	uint64_t		 a[16], b[16], c[16];
	struct jscan_req	 r;
	size_t			 na, nb, nc, i;

	/* 8-byte blocks: "system prompt AAAA" + sep is 19 bytes, two whole blocks */
	na = blocks_of("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"prompt AAAA\"},"
	    "{\"role\":\"user\",\"content\":\"question one, a long one\"}]}", 8, a, 16, &r);
	cr_assert_eq(r.chars, strlen("system") + strlen("prompt AAAA") + strlen("user") +
	    strlen("question one, a long one"));
	cr_assert_eq(na, (r.chars + 4) / 8);
	/* the same system prompt, another question: the leading blocks agree, then differ */
	nb = blocks_of("{\"messages\":[{\"role\":\"system\",\"content\":\"prompt AAAA\"},"
	    "{\"role\":\"user\",\"content\":\"question two, a long one\"}],\"model\":\"m\"}", 8, b, 16, NULL);
	cr_assert_eq(na, nb);
	/* "system\x1eprompt AAAA\x1euser\x1equestion " is 33 bytes: 4 blocks agree */
	for (i = 0; i < 4; i++)
		cr_assert_eq(a[i], b[i], "block %zu", i);
	for (; i < na; i++)
		cr_assert_neq(a[i], b[i], "block %zu chained on the difference", i);
	/* another model: every block differs */
	nc = blocks_of("{\"model\":\"n\",\"messages\":[{\"role\":\"system\",\"content\":\"prompt AAAA\"},"
	    "{\"role\":\"user\",\"content\":\"question one, a long one\"}]}", 8, c, 16, NULL);
	cr_assert_eq(nc, na);
	for (i = 0; i < nc; i++)
		cr_assert_neq(a[i], c[i]);
	/* whitespace and key order outside the values do not change the prefix */
	nc = blocks_of(" { \"messages\" : [ { \"content\" : \"prompt AAAA\" } ] , \"model\" : \"m\" } ",
	    4, c, 16, NULL);
	nb = blocks_of("{\"model\":\"m\",\"messages\":[{\"content\":\"prompt AAAA\"}]}", 4, b, 16, NULL);
	cr_assert_eq(nb, nc);
	cr_assert_eq(nb, 3);
	cr_assert_arr_eq(b, c, nb * sizeof(b[0]));
	/* max_blocks bounds the blocks, not the count of characters */
	cr_assert_eq(blocks_of("{\"prompt\":\"0123456789abcdef0123\"}", 4, c, 2, &r), 2);
	cr_assert_eq(r.chars, 20);
	/* prompt as a list of token ids */
	cr_assert_eq(blocks_of("{\"prompt\":[101,2023,2003,1037,3231]}", 5, c, 16, &r), 4);
	cr_assert_eq(r.chars, 3 + 4 + 4 + 4 + 4);
	/* parts: text inside content arrays is prompt; keys are not */
	blocks_of("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
	    64, c, 16, &r);
	cr_assert_eq(r.chars, strlen("user") + strlen("text") + strlen("hi"));
}

Test(jscan, request_chars_without_blocks_as_with)
{
	static const char *bodies[] = {
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"h\\\"i\\u0041\"},"
		    "{\"role\":\"tool\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"n\":-1.5e3,"
		    "\"ok\":true,\"no\":null}]}",
		"{\"prompt\":\"abc\",\"messages\":[\"ignored: the first one counts\"]}",
		"{\"prompt\":[1,22,333]}",
		"{\"prompt\":\"\"}",
	};
	uint64_t		 b[64];
	struct jscan_req	 r, z;
	size_t			 i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		blocks_of(bodies[i], 4, b, 64, &r);
		memset(&z, 0, sizeof(z));
		cr_assert_neq(jscan_request(bodies[i], strlen(bodies[i]), &z), JSCAN_BAD);
		cr_assert_eq(z.chars, r.chars, "body %zu: %llu without blocks, %llu with", i,
		    (unsigned long long)z.chars, (unsigned long long)r.chars);
	}
	cr_assert_eq(z.chars, 0);
	blocks_of(bodies[2], 4, b, 64, &r);
	cr_assert_eq(r.chars, 6);
}

Test(jscan, request_max_tokens_and_stream)
{
	uint64_t		 b[4];
	struct jscan_req	 r;

	blocks_of("{\"model\":\"m\",\"max_tokens\":77,\"stream\":true}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, 77);
	cr_assert_eq(r.stream, 1);
	cr_assert_eq(r.chars, 0);
	cr_assert_eq(r.nblocks, 0);
	blocks_of("{\"max_tokens\":77,\"max_completion_tokens\":12,\"stream\":false}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, 12);
	cr_assert_eq(r.stream, 0);
	blocks_of("{\"max_completion_tokens\":12,\"max_tokens\":77}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, 12, "max_completion_tokens wins whatever the order");
	blocks_of("{\"max_tokens\":1.5,\"stream\":\"true\"}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, -1);
	cr_assert_eq(r.stream, 0);
	blocks_of("{\"max_tokens\":-3}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, -1);
	blocks_of("{\"max_tokens\":-0}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, 0, "-0 is zero, as jansson reads it (fuzz_jscan)");
	blocks_of("{\"max_tokens\":99999999999999999999999}", 8, b, 4, &r);
	cr_assert_eq(r.max_tokens, -1);
	/* an escaped key spelling is the same key */
	blocks_of("{\"max\\u005ftokens\":5,\"m\\u0065ssages\":[{\"content\":\"abcdefgh\"}]}", 4, b, 4, &r);
	cr_assert_eq(r.max_tokens, 5);
	cr_assert_eq(r.nblocks, 2);
}

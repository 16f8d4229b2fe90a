/* The parsers of prober/signals.h: vLLM's load names out of Prometheus text, a model list out of JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "prober/signals.h"

enum signals_which {
	SIG_WAITING = 0,
	SIG_RUNNING,
	SIG_KV,
	SIG_KV_OLD,
	SIG_N
};

static const char *const signals_names[SIG_N] = {
	"vllm:num_requests_waiting",
	"vllm:num_requests_running",
	"vllm:kv_cache_usage_perc",
	"vllm:gpu_cache_usage_perc"
};

static int
signals_namech(char c, int first)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	    c == ':')
		return 1;
	return !first && c >= '0' && c <= '9';
}

static const char *
signals_blank(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/*
 * Skip a label set "{a="x",b="y\"z"}" starting at p ('{'); returns the
 * byte after '}' or NULL when it is not one.  Values are not kept: we
 * sum or take the largest over every set, whatever it names.
 */
static const char *
signals_labels(const char *p, const char *e)
{
	p++;
	for (;;) {
		p = signals_blank(p, e);
		if (p < e && *p == '}')
			return p + 1;
		if (p >= e || !signals_namech(*p, 1) || *p == ':')
			return NULL;
		while (p < e && signals_namech(*p, 0) && *p != ':')
			p++;
		p = signals_blank(p, e);
		if (p >= e || *p++ != '=')
			return NULL;
		p = signals_blank(p, e);
		if (p >= e || *p++ != '"')
			return NULL;
		while (p < e && *p != '"') {
			if (*p == '\\' && ++p >= e)
				return NULL;
			p++;
		}
		if (p >= e)
			return NULL;
		p = signals_blank(p + 1, e);
		if (p < e && *p == ',')
			p++;
		else if (p >= e || *p != '}')
			return NULL;
	}
}

/* The sample value token [p, e): 0 with *v, -1 if it is not a finite number >= 0. */
static int
signals_value(const char *p, size_t n, double *v)
{
	char	 tok[64], *end;

	if (n == 0 || n >= sizeof(tok))
		return -1;
	memcpy(tok, p, n);
	tok[n] = '\0';
	*v = strtod(tok, &end);
	if (end != tok + n || !isfinite(*v) || *v < 0)
		return -1;
	return 0;
}

/*
 * One sample line [p, e) of a name we want (name already matched, p
 * after it): the value into *v.  0, or -1 when the line is malformed.
 */
static int
signals_sample(const char *p, const char *e, double *v)
{
	const char	*t;

	t = signals_blank(p, e);
	if (t < e && *t == '{') {
		if ((p = signals_labels(t, e)) == NULL)
			return -1;
		t = signals_blank(p, e);
	}
	if (t == p)
		return -1;		/* no blank before the value, or no value */
	p = t;
	for (t = p; t < e && *t != ' ' && *t != '\t'; t++)
		;
	if (signals_value(p, (size_t)(t - p), v) == -1)
		return -1;
	/* an optional timestamp, an integer of ms, then nothing */
	p = signals_blank(t, e);
	if (p < e && *p == '-')
		p++;
	while (p < e && *p >= '0' && *p <= '9')
		p++;
	p = signals_blank(p, e);
	return p == e ? 0 : -1;
}

static uint32_t
signals_count(double v)
{
	return v >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)(v + 0.5);
}

int
signals_prom_parse(const char *buf, size_t len, struct signals_load *out,
    const char **why)
{
	const char	*p = buf, *end = buf + len, *e, *n;
	double		 sum[SIG_N] = { 0 }, v;
	unsigned	 found = 0, k;
	const char	*dummy;

	if (why == NULL)
		why = &dummy;
	while (p < end) {
		if ((e = memchr(p, '\n', (size_t)(end - p))) == NULL)
			e = end;	/* the last line, without its newline */
		n = e;
		if (n > p && n[-1] == '\r')
			n--;
		p = signals_blank(p, n);
		if (p < n && *p != '#' && signals_namech(*p, 1)) {
			const char	*s = p;

			while (p < n && signals_namech(*p, 0))
				p++;
			for (k = 0; k < SIG_N; k++)
				if (strlen(signals_names[k]) == (size_t)(p - s) &&
				    memcmp(signals_names[k], s, (size_t)(p - s)) == 0)
					break;
			if (k < SIG_N) {
				if (signals_sample(p, n, &v) == -1) {
					*why = k == SIG_WAITING ?
					    "bad vllm:num_requests_waiting sample" :
					    k == SIG_RUNNING ?
					    "bad vllm:num_requests_running sample" :
					    "bad KV-cache usage sample";
					return -1;
				}
				if (k == SIG_KV || k == SIG_KV_OLD)
					sum[k] = (found & (1u << k)) && sum[k] > v ?
					    sum[k] : v;
				else
					sum[k] += v;
				found |= 1u << k;
			}
		}
		p = e + 1;
	}
	if (!(found & (1u << SIG_WAITING))) {
		*why = "no vllm:num_requests_waiting";
		return -1;
	}
	if (!(found & (1u << SIG_RUNNING))) {
		*why = "no vllm:num_requests_running";
		return -1;
	}
	if (!(found & (1u << SIG_KV | 1u << SIG_KV_OLD))) {
		*why = "no vllm:kv_cache_usage_perc";
		return -1;
	}
	v = (found & (1u << SIG_KV)) ? sum[SIG_KV] : sum[SIG_KV_OLD];
	out->waiting = signals_count(sum[SIG_WAITING]);
	out->running = signals_count(sum[SIG_RUNNING]);
	out->kv_ppm = v >= 1 ? 1000000 : (uint32_t)(v * 1e6 + 0.5);
	*why = "ok";
	return 0;
}

int
signals_models_parse(const char *buf, size_t len,
    const char (*names)[SHM_NAME_MAX], size_t n, uint32_t *down)
{
	json_t		*root, *data, *m, *id;
	json_error_t	 err;
	uint32_t	 listed = 0;
	size_t		 i, k;

	if (n > SHM_SLOT_MODELS)
		n = SHM_SLOT_MODELS;
	if ((root = json_loadb(buf, len, 0, &err)) == NULL)
		return -1;
	data = json_object_get(root, "data");
	if (!json_is_object(root) || !json_is_array(data)) {
		json_decref(root);
		return -1;
	}
	json_array_foreach(data, i, m) {
		id = json_object_get(m, "id");
		if (!json_is_string(id))
			continue;
		for (k = 0; k < n; k++)
			if (strcmp(json_string_value(id), names[k]) == 0)
				listed |= 1u << k;
	}
	json_decref(root);
	*down = ~listed & (n >= 32 ? UINT32_MAX : (1u << n) - 1);
	return 0;
}

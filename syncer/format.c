/* Registry answers (mech-compute, simple, etcd v3 gateway) parsed into a set of services, and their packed records. */
#include <sys/mman.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bsd/string.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "syncer/syncer.h"

/* What a record parser decided. */
#define REC_TAKEN	1
#define REC_FILTERED	0
#define REC_INVALID	(-1)

/*
 * jansson allocates every value, key and hash table on its own, and for a
 * 10,000-service answer malloc and free are most of the parse time.  In
 * the syncer the parse runs alone, so its JSON lives in an arena: bump
 * allocation, free is a no-op, and the whole arena is rewound once the
 * answer has been turned into a syncer_set.  Chunks are kept for the next
 * pull, up to ARENA_KEEP bytes.
 */
#define ARENA_CHUNK	(8U << 20)	/* mapped, huge pages where the kernel allows */
#define ARENA_KEEP	(64U << 20)

struct arena_chunk {
	struct arena_chunk	*next;
	size_t			 size, used;
	_Alignas(16) char	 data[];
};

static struct arena_chunk	*arena_first, *arena_cur;

/*
 * Big anonymous memory for the arena and the service set.  Huge pages
 * matter here: a first 10,000-service pull touches some 40 MiB, and
 * faulting that in 4 KiB pages costs more than the parse itself.
 */
static void *
syncer_map(size_t size)
{
	void	*p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
	    -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, size, MADV_HUGEPAGE);
	return p;
}
static int			 arena_on;

static void *
arena_malloc(size_t n)
{
	struct arena_chunk	*c;
	size_t			 size;
	void			*p;

	n = (n + 15) & ~(size_t)15;
	while (arena_cur != NULL && arena_cur->used + n > arena_cur->size &&
	    arena_cur->next != NULL) {
		arena_cur = arena_cur->next;
		arena_cur->used = 0;
	}
	if (arena_cur == NULL || arena_cur->used + n > arena_cur->size) {
		size = n + sizeof(*c) > ARENA_CHUNK ? n + sizeof(*c) : ARENA_CHUNK;
		if ((c = syncer_map(size)) == NULL)
			return NULL;
		size -= sizeof(*c);
		c->next = NULL;
		c->size = size;
		c->used = 0;
		if (arena_cur != NULL)
			arena_cur->next = c;
		else
			arena_first = c;
		arena_cur = c;
	}
	p = arena_cur->data + arena_cur->used;
	arena_cur->used += n;
	return p;
}

static void
arena_free(void *p)
{
	(void)p;
}

/* Rewind the arena: every JSON value made since is gone.  Keeps ARENA_KEEP bytes of chunks. */
static void
arena_rewind(void)
{
	struct arena_chunk	*c, *next;
	size_t			 kept = 0;

	if (!arena_on)
		return;
	for (c = arena_first; c != NULL; c = c->next) {
		kept += c->size;
		c->used = 0;
		if (c->next != NULL && kept + c->next->size > ARENA_KEEP) {
			for (next = c->next, c->next = NULL; next != NULL; next = c) {
				c = next->next;
				munmap(next, next->size + sizeof(*next));
			}
			break;
		}
	}
	arena_cur = arena_first;
}

void
syncer_json_arena(int on)
{
	struct arena_chunk	*c;

	if (on)
		json_set_alloc_funcs(arena_malloc, arena_free);
	else {
		json_set_alloc_funcs(malloc, free);
		while ((c = arena_first) != NULL) {
			arena_first = c->next;
			munmap(c, c->size + sizeof(*c));
		}
		arena_cur = NULL;
	}
	arena_on = on;
}

void
syncer_set_free(struct syncer_set *set)
{
	if (set->svc != NULL)
		munmap(set->svc, set->cap * sizeof(*set->svc));
	memset(set, 0, sizeof(*set));
}

/* Room for at least want services (contents kept).  0 or -1. */
static int
syncer_set_reserve(struct syncer_set *set, size_t want)
{
	struct syncer_svc	*n;
	size_t			 cap;

	if (want <= set->cap)
		return 0;
	for (cap = set->cap ? set->cap * 2 : 256; cap < want; cap *= 2)
		;
	if ((n = syncer_map(cap * sizeof(*n))) == NULL)
		return -1;
	if (set->n > 0)
		memcpy(n, set->svc, set->n * sizeof(*n));
	if (set->svc != NULL)
		munmap(set->svc, set->cap * sizeof(*set->svc));
	set->svc = n;
	set->cap = cap;
	return 0;
}

void
syncer_set_clear(struct syncer_set *set)
{
	set->n = 0;
	set->skipped = set->filtered = 0;
	set->revision = 0;
}

static struct syncer_svc *
syncer_set_next(struct syncer_set *set)
{
	struct syncer_svc	*n;

	if (set->n == set->cap && syncer_set_reserve(set, set->n + 1) == -1)
		return NULL;
	/* only what the parsers may leave unset: the record is large, mostly model room */
	n = &set->svc[set->n];
	n->name[0] = n->host[0] = n->region[0] = n->health_path[0] = '\0';
	n->port = n->weight = n->is_static = n->nmodels = 0;
	return n;
}

/* Copy a string field that must fit; 0, or -1 if too long. */
static int
fit(char *dst, size_t size, const char *src)
{
	return strlcpy(dst, src, size) < size ? 0 : -1;
}

/* A backend name: 1..63 printable bytes without blanks. */
static int
valid_name(const char *s)
{
	size_t	i;

	if (s[0] == '\0' || strlen(s) >= CONF_NAME_MAX)
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if (!isgraph((unsigned char)s[i]))
			return 0;
	return 1;
}

/* An optional string member: NULL when absent or null, "" sentinel err when not a string. */
static int
opt_str(json_t *o, const char *key, const char **out)
{
	json_t	*v = json_object_get(o, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

/* An id that may be a string or an integer, into buf; 0, or -1. */
static int
id_of(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return fit(buf, len, json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return 0;
	}
	return -1;
}

/* A port as an integer or a string of digits; 1..65535 or -1. */
static int
port_of(json_t *v)
{
	long long	 p;
	const char	*s;
	char		*end;

	if (json_is_integer(v))
		p = json_integer_value(v);
	else if (json_is_string(v)) {
		s = json_string_value(v);
		if (*s == '\0')
			return -1;
		errno = 0;
		p = strtoll(s, &end, 10);
		if (*end != '\0' || errno != 0)
			return -1;
	} else
		return -1;
	return p >= 1 && p <= 65535 ? (int)p : -1;
}

/* A host: an IP literal or a DNS name, no blanks, no brackets. */
static int
valid_host(const char *h)
{
	size_t	i;

	if (h[0] == '\0' || strlen(h) >= CONF_ADDR_MAX - 8)
		return 0;
	for (i = 0; h[i] != '\0'; i++)
		if (!isgraph((unsigned char)h[i]) || strchr("[]/@?#", h[i]) != NULL)
			return 0;
	return 1;
}

/*
 * Split "http://host:port/path" into host, port and path (path may be
 * NULL).  0, or -1 when it is not such a URL.
 */
static int
url_split(const char *url, char *host, size_t hostlen, int *port,
    const char **path)
{
	const char	*p, *hs, *he, *slash;
	char		 pbuf[8];
	size_t		 n;

	if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7, *port = 80;
	else if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8, *port = 443;
	else
		return -1;
	slash = strchr(p, '/');
	if (slash == NULL)
		slash = p + strlen(p);
	if (path != NULL)
		*path = *slash ? slash : NULL;
	if (*p == '[') {
		hs = p + 1;
		if ((he = memchr(hs, ']', (size_t)(slash - hs))) == NULL)
			return -1;
		p = he + 1;
	} else {
		hs = p;
		he = memchr(p, ':', (size_t)(slash - p));
		if (he == NULL)
			he = slash;
		p = he;
	}
	n = (size_t)(he - hs);
	if (n == 0 || n >= hostlen)
		return -1;
	memcpy(host, hs, n);
	host[n] = '\0';
	if (*p == ':') {
		n = (size_t)(slash - p - 1);
		if (n == 0 || n >= sizeof(pbuf))
			return -1;
		memcpy(pbuf, p + 1, n);
		pbuf[n] = '\0';
		if (pbuf[strspn(pbuf, "0123456789")] != '\0' ||
		    (*port = atoi(pbuf)) < 1 || *port > 65535)
			return -1;
	} else if (p != slash)
		return -1;
	return 0;
}

/* A health check given as a path or a URL: its path (query kept) into s; 0 or -1. */
static int
health_path_of(const char *v, struct syncer_svc *s)
{
	char		 host[CONF_ADDR_MAX];
	int		 port;
	const char	*path;

	if (v[0] == '\0')
		return 0;
	if (v[0] == '/')
		return fit(s->health_path, sizeof(s->health_path), v);
	if (url_split(v, host, sizeof(host), &port, &path) == -1)
		return -1;
	return path == NULL ? 0 : fit(s->health_path, sizeof(s->health_path), path);
}

/* Model names from an array; non-string entries are ignored, extra ones dropped. 0 or -1. */
static int
models_of(json_t *arr, struct syncer_svc *s)
{
	size_t	 i;
	json_t	*v;

	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return -1;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v) || json_string_length(v) == 0)
			continue;
		if (s->nmodels == CONF_MODELS_MAX)
			break;
		if (fit(s->models[s->nmodels], CONF_NAME_MAX, json_string_value(v)) == -1)
			return -1;
		s->nmodels++;
	}
	return 0;
}

/* metadata.weight (1..1000), metadata.static, metadata.models. 0 or -1. */
static int
metadata_of(json_t *md, struct syncer_svc *s, int *had_models)
{
	json_t	*v;

	*had_models = 0;
	if (md == NULL || json_is_null(md))
		return 0;
	if (!json_is_object(md))
		return -1;
	if ((v = json_object_get(md, "weight")) != NULL && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > CONF_WEIGHT_MAX)
			return -1;
		s->weight = (int)json_integer_value(v);
	}
	if ((v = json_object_get(md, "static")) != NULL && !json_is_null(v)) {
		if (json_is_boolean(v))
			s->is_static = json_is_true(v);
		else if (json_is_string(v))
			s->is_static = strcasecmp(json_string_value(v), "true") == 0;
		else
			return -1;
	}
	if ((v = json_object_get(md, "models")) != NULL && !json_is_null(v)) {
		*had_models = 1;
		if (models_of(v, s) == -1)
			return -1;
	}
	return 0;
}

/* The environment filter: 1 when the record's environment is wanted. */
static int
env_ok(const struct conf *cf, const char *env)
{
	if (cf->registry.environment[0] == '\0')
		return 1;
	return env != NULL && strcmp(env, cf->registry.environment) == 0;
}

/*
 * One service in the mech-compute shape (also the value of every etcd
 * key).  REC_TAKEN fills s; REC_FILTERED for a service not wanted
 * (status, environment); REC_INVALID for missing or bad fields.
 */
static int
parse_mech(const struct conf *cf, json_t *o, struct syncer_svc *s)
{
	const char	*status, *env, *ip, *region, *hc, *iurl;
	json_t		*v;
	int		 had_models;

	if (!json_is_object(o))
		return REC_INVALID;
	if (opt_str(o, "status", &status) == -1 || status == NULL)
		return REC_INVALID;
	if (opt_str(o, "environment", &env) == -1 ||
	    opt_str(o, "vmIp", &ip) == -1 ||
	    opt_str(o, "region", &region) == -1 ||
	    opt_str(o, "healthCheckEndpoint", &hc) == -1 ||
	    opt_str(o, "internalUrl", &iurl) == -1)
		return REC_INVALID;
	if ((v = json_object_get(o, "serviceId")) == NULL || json_is_null(v))
		v = json_object_get(o, "serviceName");
	if (v == NULL || id_of(v, s->name, sizeof(s->name)) == -1 ||
	    !valid_name(s->name))
		return REC_INVALID;
	s->weight = 1;
	if (ip != NULL && ip[0] != '\0') {
		if (fit(s->host, sizeof(s->host), ip) == -1 || !valid_host(s->host) ||
		    (s->port = port_of(json_object_get(o, "internalPort"))) == -1)
			return REC_INVALID;
	} else if (iurl == NULL || url_split(iurl, s->host, sizeof(s->host),
	    &s->port, NULL) == -1 || !valid_host(s->host))
		return REC_INVALID;
	if (region != NULL && fit(s->region, sizeof(s->region), region) == -1)
		return REC_INVALID;
	if (hc != NULL && health_path_of(hc, s) == -1)
		return REC_INVALID;
	if (metadata_of(json_object_get(o, "metadata"), s, &had_models) == -1)
		return REC_INVALID;
	if (!had_models && models_of(json_object_get(o, "capabilities"), s) == -1)
		return REC_INVALID;
	if (strcmp(status, "healthy") != 0 && strcmp(status, "degraded") != 0)
		return REC_FILTERED;
	if (!env_ok(cf, env))
		return REC_FILTERED;
	return REC_TAKEN;
}

/* One service of the simple format; same answers as parse_mech(). */
static int
parse_simple(const struct conf *cf, json_t *o, struct syncer_svc *s)
{
	const char	*host, *type = NULL, *env = NULL, *region = NULL, *bs = NULL;
	json_t		*v, *md;
	int		 had_models;

	if (!json_is_object(o))
		return REC_INVALID;
	if ((v = json_object_get(o, "id")) == NULL || json_is_null(v))
		v = json_object_get(o, "name");
	if (v == NULL || id_of(v, s->name, sizeof(s->name)) == -1 ||
	    !valid_name(s->name))
		return REC_INVALID;
	if (opt_str(o, "host", &host) == -1 || host == NULL ||
	    fit(s->host, sizeof(s->host), host) == -1 || !valid_host(s->host))
		return REC_INVALID;
	if ((s->port = port_of(json_object_get(o, "port"))) == -1)
		return REC_INVALID;
	s->weight = 1;
	md = json_object_get(o, "metadata");
	if (metadata_of(md, s, &had_models) == -1)
		return REC_INVALID;
	if (json_is_object(md) && (opt_str(md, "type", &type) == -1 ||
	    opt_str(md, "environment", &env) == -1 ||
	    opt_str(md, "region", &region) == -1 ||
	    opt_str(md, "babysitter_url", &bs) == -1))
		return REC_INVALID;
	if (env == NULL && opt_str(o, "environment", &env) == -1)
		return REC_INVALID;
	if (region == NULL && opt_str(o, "region", &region) == -1)
		return REC_INVALID;
	if (region != NULL && fit(s->region, sizeof(s->region), region) == -1)
		return REC_INVALID;
	if (bs != NULL && health_path_of(bs, s) == -1)
		return REC_INVALID;
	if ((v = json_object_get(o, "healthy")) != NULL && !json_is_null(v)) {
		if (!json_is_boolean(v))
			return REC_INVALID;
		if (!json_is_true(v))
			return REC_FILTERED;
	}
	if (cf->registry.type_filter[0] != '\0' &&
	    (type == NULL || strcmp(type, cf->registry.type_filter) != 0))
		return REC_FILTERED;
	if (!env_ok(cf, env))
		return REC_FILTERED;
	return REC_TAKEN;
}

/* Decode standard base64 into a malloc'd NUL-terminated buffer; NULL if bad. */
static char *
b64_decode(const char *in, size_t inlen, size_t *outlen)
{
	unsigned char	*out;
	int		 n, pad = 0;

	if (inlen % 4 != 0)
		return NULL;
	if ((out = malloc(inlen / 4 * 3 + 1)) == NULL)
		return NULL;
	if (inlen == 0) {
		*out = '\0';
		*outlen = 0;
		return (char *)out;
	}
	if ((n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)inlen)) < 0) {
		free(out);
		return NULL;
	}
	if (in[inlen - 1] == '=')
		pad++;
	if (inlen > 1 && in[inlen - 2] == '=')
		pad++;
	*outlen = (size_t)n - (size_t)pad;
	out[*outlen] = '\0';
	return (char *)out;
}

/* One etcd key-value: its value is a mech-compute record in base64. */
static int
parse_etcd_kv(const struct conf *cf, json_t *kv, struct syncer_svc *s)
{
	json_t	*v, *rec;
	char	*raw;
	size_t	 rawlen;
	int	 rc;

	if (!json_is_object(kv) || !json_is_string(v = json_object_get(kv, "value")))
		return REC_INVALID;
	if ((raw = b64_decode(json_string_value(v), json_string_length(v),
	    &rawlen)) == NULL)
		return REC_INVALID;
	rec = json_loadb(raw, rawlen, 0, NULL);
	free(raw);
	if (rec == NULL)
		return REC_INVALID;
	rc = parse_mech(cf, rec, s);
	json_decref(rec);
	return rc;
}

/* An etcd revision, sent as a string of digits by the JSON gateway. */
static int
revision_of(json_t *root, uint64_t *rev)
{
	json_t		*v;
	const char	*s;
	char		*end;

	v = json_object_get(json_object_get(root, "header"), "revision");
	if (json_is_integer(v)) {
		*rev = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	errno = 0;
	*rev = strtoull(s, &end, 10);
	return *s == '\0' || *end != '\0' || errno != 0 ? -1 : 0;
}

/* Count one parsed record into the set. */
static int
syncer_take(const struct conf *cf, json_t *item, struct syncer_set *set)
{
	struct syncer_svc	*s;
	int			 rc;

	if ((s = syncer_set_next(set)) == NULL)
		return -1;
	if (cf->registry.format == REGISTRY_SIMPLE)
		rc = parse_simple(cf, item, s);
	else
		rc = parse_mech(cf, item, s);
	if (rc == REC_TAKEN)
		set->n++;
	else if (rc == REC_FILTERED)
		set->filtered++;
	else
		set->skipped++;
	return 0;
}

static const char *
json_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/*
 * One JSON value at p, decoded alone: jansson stops after it and says how
 * many bytes it took.  NULL on a syntax error (err filled).
 */
static json_t *
json_one(const char **pp, const char *end, char *err, size_t errlen,
    const char *body)
{
	json_error_t	 jerr;
	json_t		*v;

	v = json_loadb(*pp, (size_t)(end - *pp),
	    JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &jerr);
	if (v == NULL) {
		snprintf(err, errlen, "invalid JSON at byte %zu: %s",
		    (size_t)(*pp - body) + (size_t)jerr.position, jerr.text);
		return NULL;
	}
	*pp += jerr.position;
	return v;
}

/*
 * The HTTP formats' answers, read as a stream: the top-level object (or,
 * for "simple", possibly a bare array) is walked key by key, and the
 * services array is decoded one record at a time, each freed before the
 * next.  A 10,000-service answer then never holds more than one record's
 * objects (the whole document in jansson is some 40 MiB), which is most of
 * a first pull's time.  Any syntax error anywhere rejects the answer whole,
 * as decoding it at once would.  0, or -1 with err.
 */
static int
syncer_parse_stream(const struct conf *cf, const char *body, size_t len,
    struct syncer_set *set, char *err, size_t errlen)
{
	const char	*p = body, *end = body + len;
	int		 fmt = cf->registry.format, seen_list = 0, success = 1;
	int		 top_array, comma = 0;

	p = json_ws(p, end);
	if (p == end || (*p != '{' && *p != '[')) {
		snprintf(err, errlen, "the answer is not a JSON object");
		return -1;
	}
	top_array = *p == '[';
	/*
	 * One allocation for the set instead of a doubling (and a copy) per
	 * power of two: a record of these formats takes some 250 bytes or
	 * more of JSON, so this is a close upper bound (and no more than the
	 * table can hold: past that the set still grows, but nothing applies).
	 */
	if (syncer_set_reserve(set, len / 250 + 16 < (size_t)cf->max_backends + 16 ?
	    len / 250 + 16 : (size_t)cf->max_backends + 16) == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (top_array && fmt != REGISTRY_SIMPLE) {
		snprintf(err, errlen, "no services array in the answer");
		return -1;
	}
	p++;
	for (;;) {
		json_t	*key = NULL, *v;
		int	 is_list;

		p = json_ws(p, end);
		if (p < end && *p == (top_array ? ']' : '}')) {
			if (comma) {
				snprintf(err, errlen, "invalid JSON: a value expected "
				    "after ',' at byte %zu", (size_t)(p - body));
				return -1;
			}
			p++;
			break;
		}
		if (!top_array) {
			if ((key = json_one(&p, end, err, errlen, body)) == NULL)
				return -1;
			if (!json_is_string(key)) {
				json_decref(key);
				snprintf(err, errlen, "invalid JSON: object key is not a string");
				return -1;
			}
			p = json_ws(p, end);
			if (p == end || *p != ':') {
				json_decref(key);
				snprintf(err, errlen, "invalid JSON: ':' expected at byte %zu",
				    (size_t)(p - body));
				return -1;
			}
			p = json_ws(p + 1, end);
		}
		is_list = top_array || strcmp(json_string_value(key), "services") == 0;
		if (is_list && !top_array && p < end && *p == '[' && !seen_list) {
			/* the services: one record at a time */
			seen_list = 1;
			p++;
			for (comma = 0;;) {
				json_t *item;

				p = json_ws(p, end);
				if (p < end && *p == ']') {
					if (comma) {
						json_decref(key);
						snprintf(err, errlen, "invalid JSON: a value "
						    "expected after ',' at byte %zu",
						    (size_t)(p - body));
						return -1;
					}
					p++;
					break;
				}
				if ((item = json_one(&p, end, err, errlen, body)) == NULL) {
					json_decref(key);
					return -1;
				}
				if (syncer_take(cf, item, set) == -1) {
					json_decref(item);
					json_decref(key);
					snprintf(err, errlen, "out of memory");
					return -1;
				}
				json_decref(item);
				arena_rewind();
				p = json_ws(p, end);
				if ((comma = p < end && *p == ','))
					p++;
				else if (p >= end || *p != ']') {
					json_decref(key);
					snprintf(err, errlen, "invalid JSON: ',' or ']' expected "
					    "at byte %zu", (size_t)(p - body));
					return -1;
				}
			}
		} else if (top_array) {
			/* a bare array of services ("simple"): each element is a record */
			seen_list = 1;
			if ((v = json_one(&p, end, err, errlen, body)) == NULL)
				return -1;
			if (syncer_take(cf, v, set) == -1) {
				json_decref(v);
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			json_decref(v);
			arena_rewind();
		} else {
			if ((v = json_one(&p, end, err, errlen, body)) == NULL) {
				json_decref(key);
				return -1;
			}
			if (strcmp(json_string_value(key), "success") == 0 &&
			    !json_is_true(v))
				success = 0;
			if (is_list)
				seen_list = -1;		/* "services" that is not an array */
			json_decref(v);
		}
		json_decref(key);
		p = json_ws(p, end);
		if ((comma = p < end && *p == ','))
			p++;
		else if (p >= end || *p != (top_array ? ']' : '}')) {
			snprintf(err, errlen, "invalid JSON: ',' expected at byte %zu",
			    (size_t)(p - body));
			return -1;
		}
	}
	if (json_ws(p, end) != end) {
		snprintf(err, errlen, "invalid JSON: data after the answer at byte %zu",
		    (size_t)(p - body));
		return -1;
	}
	if (fmt == REGISTRY_MECH_COMPUTE && !success) {
		snprintf(err, errlen, "registry answered success: false");
		return -1;
	}
	if (seen_list != 1) {
		snprintf(err, errlen, "no services array in the answer");
		return -1;
	}
	return 0;
}

int
syncer_parse(const struct conf *cf, const char *body, size_t len,
    struct syncer_set *set, char *err, size_t errlen)
{
	json_t		*root, *list, *v, *item;
	json_error_t	 jerr;
	size_t		 i;
	int		 fmt = cf->registry.format, rc;
	const char	*nul;

	/*
	 * JSON text has no NUL byte (a string says \u0000), but jansson skips
	 * one between tokens and then miscounts the bytes it took, which would
	 * put the stream below out of step with the answer.
	 */
	if ((nul = memchr(body, '\0', len)) != NULL) {
		snprintf(err, errlen, "invalid JSON: NUL byte at byte %zu",
		    (size_t)(nul - body));
		return -1;
	}
	if (fmt != REGISTRY_ETCD) {
		rc = syncer_parse_stream(cf, body, len, set, err, errlen);
		arena_rewind();
		return rc;
	}
	if ((root = json_loadb(body, len, 0, &jerr)) == NULL) {
		snprintf(err, errlen, "invalid JSON at line %d column %d: %s",
		    jerr.line, jerr.column, jerr.text);
		arena_rewind();
		return -1;
	}
	list = NULL;
	if (fmt == REGISTRY_ETCD) {
		if (!json_is_object(root) || revision_of(root, &set->revision) == -1) {
			snprintf(err, errlen, "not an etcd range answer");
			goto bad;
		}
		list = json_object_get(root, "kvs");
		if (list == NULL || json_is_null(list)) {
			json_decref(root);
			arena_rewind();
			return 0;	/* no key under the prefix */
		}
	} else if (fmt == REGISTRY_SIMPLE && json_is_array(root))
		list = root;
	else if (json_is_object(root)) {
		v = json_object_get(root, "success");
		if (fmt == REGISTRY_MECH_COMPUTE && v != NULL && !json_is_true(v)) {
			snprintf(err, errlen, "registry answered success: false");
			goto bad;
		}
		list = json_object_get(root, "services");
	}
	if (!json_is_array(list)) {
		snprintf(err, errlen, "no %s array in the answer",
		    fmt == REGISTRY_ETCD ? "kvs" : "services");
		goto bad;
	}
	syncer_set_reserve(set, json_array_size(list));
	json_array_foreach(list, i, item) {
		struct syncer_svc *s;

		if ((s = syncer_set_next(set)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto bad;
		}
		if (fmt == REGISTRY_ETCD)
			rc = parse_etcd_kv(cf, item, s);
		else if (fmt == REGISTRY_SIMPLE)
			rc = parse_simple(cf, item, s);
		else
			rc = parse_mech(cf, item, s);
		if (rc == REC_TAKEN)
			set->n++;
		else if (rc == REC_FILTERED)
			set->filtered++;
		else
			set->skipped++;
	}
	json_decref(root);
	arena_rewind();
	return 0;
bad:
	json_decref(root);
	arena_rewind();
	return -1;
}

int
syncer_etcd_range_body(const char *prefix, int count_only, char *buf,
    size_t len)
{
	unsigned char	 end[CONF_PATH_MAX];
	char		 k64[CONF_PATH_MAX * 2], e64[CONF_PATH_MAX * 2];
	size_t		 n = strlen(prefix);
	int		 w;

	if (n == 0) {
		/* key "\0" with range_end "\0": every key */
		strlcpy(k64, "AA==", sizeof(k64));
		strlcpy(e64, "AA==", sizeof(e64));
	} else {
		memcpy(end, prefix, n);
		while (n > 0 && end[n - 1] == 0xff)
			n--;
		if (n == 0) {
			end[0] = 0;
			n = 1;
		} else
			end[n - 1]++;
		EVP_EncodeBlock((unsigned char *)k64, (const unsigned char *)prefix,
		    (int)strlen(prefix));
		EVP_EncodeBlock((unsigned char *)e64, end, (int)n);
	}
	w = snprintf(buf, len, "{\"key\":\"%s\",\"range_end\":\"%s\"%s}", k64, e64,
	    count_only ? ",\"count_only\":true" : "");
	return w < 0 || (size_t)w >= len ? -1 : w;
}

int
syncer_etcd_revision(const char *body, size_t len, uint64_t *rev)
{
	json_t	*root;
	int	 rc;

	if ((root = json_loadb(body, len, 0, NULL)) == NULL) {
		arena_rewind();
		return -1;
	}
	rc = revision_of(root, rev);
	json_decref(root);
	arena_rewind();
	return rc;
}

int
syncer_resolve(const char *host, int port, void *sa, size_t *salen)
{
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct addrinfo		 hints, *res;
	char			 pbuf[8];

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, host, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		memcpy(sa, &sin, sizeof(sin));
		*salen = sizeof(sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)port);
		memcpy(sa, &sin6, sizeof(sin6));
		*salen = sizeof(sin6);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(pbuf, sizeof(pbuf), "%d", port);
	if (getaddrinfo(host, pbuf, &hints, &res) != 0)
		return -1;
	if (res->ai_addrlen > sizeof(sin6)) {
		freeaddrinfo(res);
		return -1;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Append a string and its NUL at *off; 0, or -1 when it does not fit. */
static int
pack_str(char *base, size_t cap, size_t *off, const char *s)
{
	size_t	n = strlen(s) + 1;

	if (*off + n > cap)
		return -1;
	memcpy(base + *off, s, n);
	*off += n;
	return 0;
}

int
syncer_pack(const struct syncer_svc *s, const void *sa, size_t salen,
    struct syncer_rec *rec, size_t cap)
{
	char	 addr[CONF_ADDR_MAX + 8];
	size_t	 off = offsetof(struct syncer_rec, strings);
	int	 i;

	if (cap < off || salen > sizeof(rec->sa))
		return -1;
	if (strchr(s->host, ':') != NULL)
		snprintf(addr, sizeof(addr), "[%s]:%d", s->host, s->port);
	else
		snprintf(addr, sizeof(addr), "%s:%d", s->host, s->port);
	if (strlen(addr) >= CONF_ADDR_MAX)
		return -1;
	memset(rec, 0, off);
	rec->weight = (uint16_t)(s->weight > 0 ? s->weight : 1);
	rec->flags = s->is_static ? SYNCER_REC_STATIC : 0;
	rec->nmodels = (uint8_t)s->nmodels;
	rec->salen = (uint16_t)salen;
	memcpy(rec->sa, sa, salen);
	if (pack_str((char *)rec, cap, &off, s->name) == -1 ||
	    pack_str((char *)rec, cap, &off, addr) == -1 ||
	    pack_str((char *)rec, cap, &off, s->region) == -1 ||
	    pack_str((char *)rec, cap, &off, s->health_path) == -1)
		return -1;
	for (i = 0; i < s->nmodels; i++)
		if (pack_str((char *)rec, cap, &off, s->models[i]) == -1)
			return -1;
	while (off % 8 != 0) {
		if (off == cap)
			return -1;
		((char *)rec)[off++] = '\0';
	}
	rec->len = (uint16_t)off;
	return (int)off;
}

/* The next string at *off within len bytes, if it ends there and fits max; NULL otherwise. */
static const char *
unpack_str(const char *base, size_t len, size_t *off, size_t max)
{
	const char	*s = base + *off, *nul;

	if (*off >= len || (nul = memchr(s, '\0', len - *off)) == NULL ||
	    (size_t)(nul - s) >= max)
		return NULL;
	*off += (size_t)(nul - s) + 1;
	return s;
}

int
syncer_unpack(const void *p, size_t avail, struct syncer_rec_view *v)
{
	const struct syncer_rec	*rec = p;
	const char		*base = p;
	size_t			 off = offsetof(struct syncer_rec, strings), len;
	int			 i;

	if (avail < off)
		return -1;
	len = rec->len;
	if (len < off || len > avail || len % 8 != 0 ||
	    rec->nmodels > CONF_MODELS_MAX || rec->salen > sizeof(rec->sa) ||
	    rec->weight < 1 || rec->weight > CONF_WEIGHT_MAX)
		return -1;
	v->rec = rec;
	if ((v->name = unpack_str(base, len, &off, CONF_NAME_MAX)) == NULL ||
	    (v->addr = unpack_str(base, len, &off, CONF_ADDR_MAX)) == NULL ||
	    (v->region = unpack_str(base, len, &off, CONF_NAME_MAX)) == NULL ||
	    (v->health_path = unpack_str(base, len, &off, CONF_PATH_MAX)) == NULL)
		return -1;
	if (v->name[0] == '\0')
		return -1;
	v->nmodels = rec->nmodels;
	for (i = 0; i < v->nmodels; i++)
		if ((v->models[i] = unpack_str(base, len, &off, CONF_NAME_MAX)) == NULL)
			return -1;
	return (int)len;
}

/* Build and send the messages of one batch; see syncer.h. */
int
syncer_batch_send(const struct syncer_set *set, uint32_t batch,
    struct syncer_stats *st, syncer_send_fn send_fn, void *arg)
{
	static _Alignas(8) char	 msg[SYNCER_MSG_MAX];
	struct syncer_msg_hdr	*h = (struct syncer_msg_hdr *)msg;
	size_t			 i, off;
	uint8_t			 sa[28];
	size_t			 salen;
	int			 n;

	memset(h, 0, sizeof(*h));
	h->type = SYNCER_MSG_BEGIN;
	h->len = sizeof(*h);
	h->batch = batch;
	h->count = (uint32_t)set->n;
	if (send_fn(arg, msg, h->len) == -1)
		return -1;
	off = sizeof(*h);
	h->type = SYNCER_MSG_SVC;
	h->count = 0;
	for (i = 0; i < set->n; i++) {
		if (syncer_resolve(set->svc[i].host, set->svc[i].port, sa,
		    &salen) == -1) {
			st->skipped++;
			st->listed--;
			continue;
		}
		n = syncer_pack(&set->svc[i], sa, salen,
		    (struct syncer_rec *)(msg + off), sizeof(msg) - off);
		if (n == -1 && h->count > 0) {
			h->len = (uint32_t)off;
			if (send_fn(arg, msg, off) == -1)
				return -1;
			off = sizeof(*h);
			h->count = 0;
			n = syncer_pack(&set->svc[i], sa, salen,
			    (struct syncer_rec *)(msg + off), sizeof(msg) - off);
		}
		if (n == -1) {
			st->skipped++;
			st->listed--;
			continue;
		}
		off += (size_t)n;
		h->count++;
	}
	if (h->count > 0) {
		h->len = (uint32_t)off;
		if (send_fn(arg, msg, off) == -1)
			return -1;
	}
	h->type = SYNCER_MSG_END;
	h->count = 0;
	h->len = sizeof(*h) + sizeof(*st);
	memcpy(msg + sizeof(*h), st, sizeof(*st));
	return send_fn(arg, msg, h->len);
}

int
syncer_status_send(uint32_t type, const struct syncer_stats *st,
    syncer_send_fn send_fn, void *arg)
{
	_Alignas(8) char	 msg[sizeof(struct syncer_msg_hdr) + sizeof(*st)];
	struct syncer_msg_hdr	*h = (struct syncer_msg_hdr *)msg;

	memset(h, 0, sizeof(*h));
	h->type = type;
	h->len = sizeof(msg);
	memcpy(msg + sizeof(*h), st, sizeof(*st));
	return send_fn(arg, msg, sizeof(msg));
}

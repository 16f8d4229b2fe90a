/* A validating, allocation-free JSON scan that finds the top-level "model" of a request body. */
#include <stddef.h>
#include <stdint.h>
#include <endian.h>
#include <string.h>

#include "worker/jscan.h"

/*
 * Why not jansson here: model routing reads the "model" of every request
 * it routes, and building a jansson tree of a 1 KB chat request costs more
 * than the rest of the proxying.  This scan checks the whole text against
 * RFC 8259 (UTF-8 included) as jansson would, but keeps nothing but the
 * one string it is after.  tests/fuzz/fuzz_jscan.c holds it to jansson's
 * verdict.  One difference is kept on purpose: a number too large for a
 * double or a 64-bit integer is valid JSON, which jansson refuses; jscan
 * lets the backend judge it.
 */

struct jscan {
	const unsigned char	*p, *end;
	int			 count;		/* js_value() adds its values' raw lengths to chars */
	uint64_t		 chars;
};

static int	js_key_is(const unsigned char *, const char *);

static void
js_ws(struct jscan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
js_hex4(const unsigned char *p, uint32_t *v)
{
	int	i;

	*v = 0;
	for (i = 0; i < 4; i++) {
		unsigned char c = p[i];

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

/* Appends code point cp as UTF-8 to out (if out is not NULL and it fits). */
static void
js_put(char *out, size_t outsz, size_t *n, uint32_t cp)
{
	unsigned char	b[4];
	size_t		k, i;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	for (i = 0; i < k; i++, (*n)++)
		if (out != NULL && *n + 1 < outsz)
			out[*n] = (char)b[i];
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), 0 if it is not one. */
static size_t
js_utf8(const unsigned char *p, const unsigned char *end)
{
	unsigned char	c = p[0];
	size_t		k, i;
	uint32_t	cp;

	if (c < 0xc2 || c > 0xf4)
		return 0;
	k = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if ((size_t)(end - p) < k)
		return 0;
	cp = c & (0x7f >> k);
	for (i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((k == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return k;
}

/*
 * A string at s->p (its opening quote).  Decoded into out when out is not
 * NULL (*n: its decoded length, which may exceed outsz).  0, or -1 if it is
 * not a valid JSON string.  A \u0000 is refused, as jansson refuses it.
 */
#define JS_ONES		0x0101010101010101ULL
#define JS_HI		0x8080808080808080ULL
#define JS_HASZERO(v)	(((v) - JS_ONES) & ~(v) & JS_HI)	/* some byte of v is 0 */

static int
js_string(struct jscan *s, char *out, size_t outsz, size_t *n)
{
	const unsigned char	*p = s->p + 1, *end = s->end;

	*n = 0;
	while (p < end) {
		unsigned char	c;

		if (out == NULL) {
			/* eight plain ASCII bytes at a time: no quote, backslash, control or high byte */
			while (end - p >= 8) {
				uint64_t	w;

				memcpy(&w, p, 8);
				if ((w & JS_HI) | ((w - JS_ONES * 0x20) & ~w & JS_HI) |
				    JS_HASZERO(w ^ (JS_ONES * '"')) | JS_HASZERO(w ^ (JS_ONES * '\\')))
					break;
				p += 8;
				*n += 8;
			}
			if (p == end)
				break;
		}
		c = *p;
		if (c == '"') {
			s->p = p + 1;
			if (out != NULL && outsz > 0)
				out[*n < outsz ? *n : outsz - 1] = '\0';
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			uint32_t	cp, lo;

			if (end - p < 2)
				return -1;
			switch (p[1]) {
			case '"': case '\\': case '/':
				cp = p[1];
				break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case 'n': cp = '\n'; break;
			case 'r': cp = '\r'; break;
			case 't': cp = '\t'; break;
			case 'u':
				if (end - p < 6 || js_hex4(p + 2, &cp) == -1)
					return -1;
				if (cp >= 0xd800 && cp <= 0xdbff) {
					/* a high surrogate must have its low half */
					if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
					    js_hex4(p + 8, &lo) == -1 ||
					    lo < 0xdc00 || lo > 0xdfff)
						return -1;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				} else if (cp >= 0xdc00 && cp <= 0xdfff)
					return -1;
				if (cp == 0)
					return -1;
				p += 4;
				break;
			default:
				return -1;
			}
			js_put(out, outsz, n, cp);
			p += 2;
			continue;
		}
		if (c < 0x80) {
			if (out != NULL && *n + 1 < outsz)
				out[*n] = (char)c;
			(*n)++;
			p++;
			continue;
		}
		{
			size_t	k = js_utf8(p, end), i;

			if (k == 0)
				return -1;
			for (i = 0; i < k; i++, (*n)++)
				if (out != NULL && *n + 1 < outsz)
					out[*n] = (char)p[i];
			p += k;
		}
	}
	return -1;
}

/* A number (RFC 8259 6): -? int frac? exp?.  0 or -1. */
static int
js_number(struct jscan *s)
{
	const unsigned char	*p = s->p, *end = s->end;

	if (p < end && *p == '-')
		p++;
	if (p == end)
		return -1;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	else
		return -1;
	if (p < end && *p == '.') {
		p++;
		if (p == end || *p < '0' || *p > '9')
			return -1;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || *p < '0' || *p > '9')
			return -1;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	s->p = p;
	return 0;
}

static int
js_lit(struct jscan *s, const char *w, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

/* A scalar value at s->p (not an object or array).  0 or -1. */
static int
js_scalar(struct jscan *s)
{
	size_t	n;

	switch (*s->p) {
	case '"': return js_string(s, NULL, 0, &n);
	case 't': return js_lit(s, "true", 4);
	case 'f': return js_lit(s, "false", 5);
	case 'n': return js_lit(s, "null", 4);
	default: return js_number(s);
	}
}

/*
 * Any value, nested containers included, without recursion: open
 * containers are a bit each in stack (1 = object), at most JSCAN_DEPTH.
 * In an object, each member is a string key, a colon, then a value.
 * 0 or -1.
 */
static int
js_value(struct jscan *s)
{
	uint64_t	stack[(JSCAN_DEPTH + 63) / 64] = { 0 };
	int		depth = 0, obj;

	for (;;) {
		js_ws(s);
		if (s->p == s->end)
			return -1;
		if (*s->p == '{' || *s->p == '[') {
			if (depth == JSCAN_DEPTH)
				return -1;
			obj = *s->p == '{';
			if (obj)
				stack[depth / 64] |= (uint64_t)1 << (depth % 64);
			else
				stack[depth / 64] &= ~((uint64_t)1 << (depth % 64));
			depth++;
			s->p++;
			js_ws(s);
			if (s->p < s->end && *s->p == (obj ? '}' : ']')) {
				s->p++;
				depth--;
				goto after;
			}
			if (obj)
				goto key;
			continue;
		}
		{
			const unsigned char *v = s->p;

			if (js_scalar(s) == -1)
				return -1;
			/* the prompt's characters: strings (raw, quotes off) and numbers */
			if (s->count && *v != 't' && *v != 'f' && *v != 'n')
				s->chars += (uint64_t)(s->p - v) - (*v == '"' ? 2 : 0);
		}
after:
		/* a value ended: a comma and the next one, or close containers */
		for (;;) {
			if (depth == 0)
				return 0;
			obj = (stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
			js_ws(s);
			if (s->p == s->end)
				return -1;
			if (*s->p == ',') {
				s->p++;
				if (obj)
					goto key;
				break;
			}
			if (*s->p != (obj ? '}' : ']'))
				return -1;
			s->p++;
			depth--;
		}
		continue;
key:
		{
			size_t	n;

			js_ws(s);
			if (s->p == s->end || *s->p != '"' ||
			    js_string(s, NULL, 0, &n) == -1)
				return -1;
			js_ws(s);
			if (s->p == s->end || *s->p != ':')
				return -1;
			s->p++;
		}
	}
}

/* The prompt's bytes, cut into blocks, each hashed and chained on the one before. */
struct jfeed {
	struct jscan_req	*r;
	uint64_t		 h;		/* chain so far */
	uint64_t		 acc;		/* bytes of the current 8-byte word */
	size_t			 nacc;
	size_t			 inblock;	/* bytes of the current block */
	uint64_t		 bh;		/* the current block's hash so far */
};

static inline uint64_t
js_mix(uint64_t x)
{
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ULL;
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ULL;
	x ^= x >> 32;
	return x;
}

static inline void
js_word(uint64_t *h, uint64_t w)
{
	*h = (*h ^ w) * 0x9e3779b97f4a7c15ULL;
	*h ^= *h >> 29;
}

uint64_t
jscan_hash(const void *v, size_t n, uint64_t seed)
{
	const unsigned char	*p = v;
	uint64_t		 h = seed ^ (n * 0xff51afd7ed558ccdULL), w;
	size_t			 i;

	for (; n >= 8; p += 8, n -= 8) {
		memcpy(&w, p, 8);
		js_word(&h, w);
	}
	for (w = 0, i = 0; i < n; i++)
		w |= (uint64_t)p[i] << (8 * i);
	js_word(&h, w ^ ((uint64_t)n << 59));
	return js_mix(h);
}

static void
jf_bytes(struct jfeed *f, const unsigned char *p, size_t n)
{
	struct jscan_req	*r = f->r;

	while (n > 0 && r->nblocks < r->max_blocks) {
		size_t take = r->block - f->inblock, i;

		if (take > n)
			take = n;
		for (i = 0; i < take; i++) {
			if (f->nacc == 0 && take - i >= 8) {
				/* a whole word at once: the bytes in the order the loop below takes them */
				uint64_t w;

				memcpy(&w, p + i, 8);
				js_word(&f->bh, le64toh(w));
				i += 7;
				continue;
			}
			f->acc |= (uint64_t)p[i] << (8 * f->nacc);
			if (++f->nacc == 8) {
				js_word(&f->bh, f->acc);
				f->acc = 0;
				f->nacc = 0;
			}
		}
		p += take;
		n -= take;
		f->inblock += take;
		if (f->inblock == r->block) {
			if (f->nacc > 0)
				js_word(&f->bh, f->acc ^ ((uint64_t)f->nacc << 59));
			f->h = js_mix(f->h ^ js_mix(f->bh));
			r->blocks[r->nblocks++] = f->h;
			f->bh = f->h;
			f->acc = 0;
			f->nacc = 0;
			f->inblock = 0;
		}
	}
}

/*
 * Feed the string and number values of the valid JSON text [p, end) to f,
 * in order, each followed by the separator 0x1e (a control byte, which a
 * JSON text cannot hold raw).  Keys and literals are not the prompt.
 */
static void
js_feed_values(const unsigned char *p, const unsigned char *end, struct jfeed *f)
{
	static const unsigned char sep = 0x1e;

	while (p < end) {
		const unsigned char *q, *r;
		ptrdiff_t n;

		if (*p == '"') {
			/* the closing quote: the first not escaped by an odd run of backslashes */
			for (q = p + 1;; q = r + 1) {
				r = memchr(q, '"', (size_t)(end - q));	/* the text is valid JSON */
				for (n = 0; r - n > q && r[-1 - n] == '\\'; n++)
					;
				if (n % 2 == 0)
					break;
			}
			q = r;
			for (r = q + 1; r < end && (*r == ' ' || *r == '\t' ||
			    *r == '\n' || *r == '\r'); r++)
				;
			if (r < end && *r == ':') {
				p = r + 1;	/* a key */
				continue;
			}
			f->r->chars += (uint64_t)(q - p - 1);
			jf_bytes(f, p + 1, (size_t)(q - p - 1));
			jf_bytes(f, &sep, 1);
			p = q + 1;
			continue;
		}
		if (*p == '-' || (*p >= '0' && *p <= '9')) {
			for (q = p; q < end && (*q == '-' || *q == '+' || *q == '.' ||
			    *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')); q++)
				;
			f->r->chars += (uint64_t)(q - p);
			jf_bytes(f, p, (size_t)(q - p));
			jf_bytes(f, &sep, 1);
			p = q;
			continue;
		}
		p++;
	}
}

/* A non-negative integer number at [p, end) (already a valid JSON number), else -1. */
static int64_t
js_int(const unsigned char *p, const unsigned char *end)
{
	int64_t	v = 0;

	if (p == end)
		return -1;
	if (*p == '-')
		return end - p == 2 && p[1] == '0' ? 0 : -1;	/* -0 is 0; the rest is negative */
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return p == end ? v : -1;
}

enum { JK_OTHER, JK_MODEL, JK_PROMPT, JK_MAXTOK, JK_MAXCOMP, JK_STREAM };

/* Which top-level key the string at key (quote included, checked, n decoded bytes) is. */
static int
js_top_key(const unsigned char *key, const unsigned char *after, size_t n)
{
	static const struct { const char *name; int kind; } keys[] = {
		{ "model", JK_MODEL }, { "messages", JK_PROMPT },
		{ "prompt", JK_PROMPT }, { "max_tokens", JK_MAXTOK },
		{ "max_completion_tokens", JK_MAXCOMP }, { "stream", JK_STREAM }
	};
	size_t	i, kl;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		kl = strlen(keys[i].name);
		if (n != kl)
			continue;
		/* spelled plainly, or with escapes that decode the same */
		if ((size_t)(after - key) == kl + 2 ? memcmp(key + 1, keys[i].name, kl) == 0 :
		    js_key_is(key, keys[i].name))
			return keys[i].kind;
	}
	return JK_OTHER;
}

int
jscan_request(const char *text, size_t len, struct jscan_req *r)
{
	struct jscan		 s = { .p = (const unsigned char *)text,
				    .end = (const unsigned char *)text + len };
	const unsigned char	*pv = NULL, *pe = NULL;
	int			 found = 0, toolong = 0, seen_max = 0;
	size_t			 i;

	r->nblocks = 0;
	r->chars = 0;
	r->max_tokens = -1;
	r->stream = 0;
	if (r->model != NULL && r->modelsz > 0)
		r->model[0] = '\0';
	js_ws(&s);
	if (s.p == s.end || *s.p != '{')
		return JSCAN_BAD;
	s.p++;
	js_ws(&s);
	if (s.p < s.end && *s.p == '}') {
		s.p++;
		goto end;
	}
	for (;;) {
		const unsigned char	*key, *v;
		size_t			 n;
		int			 kind;

		js_ws(&s);
		if (s.p == s.end || *s.p != '"')
			return JSCAN_BAD;
		key = s.p;
		if (js_string(&s, NULL, 0, &n) == -1)
			return JSCAN_BAD;
		kind = js_top_key(key, s.p, n);
		js_ws(&s);
		if (s.p == s.end || *s.p != ':')
			return JSCAN_BAD;
		s.p++;
		js_ws(&s);
		if (s.p == s.end)
			return JSCAN_BAD;
		v = s.p;
		if (kind == JK_MODEL) {
			if (found)
				return JSCAN_BAD;	/* which of two would a backend take? */
			found = -1;
			if (*s.p == '"') {
				if (js_string(&s, r->model, r->modelsz, &n) == -1)
					return JSCAN_BAD;
				found = 1;
				toolong = n + 1 > r->modelsz;
			} else if (js_value(&s) == -1)
				return JSCAN_BAD;
		} else {
			/* the first of messages and prompt is the prompt: counted on the way */
			s.count = kind == JK_PROMPT && pv == NULL;
			if (js_value(&s) == -1)
				return JSCAN_BAD;
			s.count = 0;
		}
		switch (kind) {
		case JK_PROMPT:
			if (pv == NULL) {
				pv = v;		/* the first of messages and prompt */
				pe = s.p;
			}
			break;
		case JK_MAXCOMP:
			r->max_tokens = js_int(v, s.p);
			seen_max = 1;
			break;
		case JK_MAXTOK:
			if (!seen_max)
				r->max_tokens = js_int(v, s.p);
			break;
		case JK_STREAM:
			r->stream = s.p - v == 4 && memcmp(v, "true", 4) == 0;
			break;
		}
		js_ws(&s);
		if (s.p == s.end)
			return JSCAN_BAD;
		if (*s.p == ',') {
			s.p++;
			continue;
		}
		if (*s.p != '}')
			return JSCAN_BAD;
		s.p++;
		break;
	}
end:
	js_ws(&s);
	if (s.p != s.end)
		return JSCAN_BAD;
	if (pv != NULL && r->block > 0 && r->blocks != NULL) {
		struct jfeed	f = { .r = r };
		uint64_t	mh;

		js_feed_values(pv, pe, &f);
		/* seeded by the model: the same prompt to another model is another prefix */
		mh = found == 1 && !toolong ? jscan_hash(r->model, strlen(r->model), 0x6d6f64656cULL) : 0;
		for (i = 0; i < r->nblocks; i++)
			r->blocks[i] = js_mix(r->blocks[i] ^ mh);
	} else if (pv != NULL)
		r->chars = s.chars;	/* counted by the validating pass */
	if (found == 1)
		return toolong ? JSCAN_TOOLONG : JSCAN_FOUND;
	return found == -1 ? JSCAN_NOTSTRING : JSCAN_NONE;
}

int
jscan_model(const char *text, size_t len, char *out, size_t outsz)
{
	struct jscan_req	r = { .model = out, .modelsz = outsz };

	return jscan_request(text, len, &r);
}

/* 1 if the JSON string at key (quote included, escapes allowed, already checked) decodes to name. */
static int
js_key_is(const unsigned char *key, const char *name)
{
	struct jscan	s = { .p = key, .end = key + 6 * strlen(name) + 2 };
	char		buf[64];
	size_t		n;
	const unsigned char *q;

	/* the string's end: a quote not escaped */
	for (q = key + 1; *q != '"'; q++)
		if (*q == '\\')
			q++;
	s.end = q + 1;
	if (js_string(&s, buf, sizeof(buf), &n) == -1 || n >= sizeof(buf))
		return 0;
	return n == strlen(name) && memcmp(buf, name, n) == 0;
}

/* A validating, allocation-free JSON scan that finds the top-level "model" of a request body. */
#include <stddef.h>
#include <stdint.h>
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
static int
js_string(struct jscan *s, char *out, size_t outsz, size_t *n)
{
	const unsigned char	*p = s->p + 1, *end = s->end;

	*n = 0;
	while (p < end) {
		unsigned char	c = *p;

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
		if (js_scalar(s) == -1)
			return -1;
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

int
jscan_model(const char *text, size_t len, char *out, size_t outsz)
{
	struct jscan	 s = { (const unsigned char *)text,
			    (const unsigned char *)text + len };
	int		 found = 0, toolong = 0;

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
		const unsigned char	*key;
		size_t			 n;
		int			 is_model;

		js_ws(&s);
		if (s.p == s.end || *s.p != '"')
			return JSCAN_BAD;
		key = s.p;
		if (js_string(&s, NULL, 0, &n) == -1)
			return JSCAN_BAD;
		/* "model" spelled plainly; an escaped spelling decodes the same */
		is_model = n == 5 && (s.p - key == 7 ? memcmp(key, "\"model\"", 7) == 0 :
		    js_key_is(key, "model"));
		js_ws(&s);
		if (s.p == s.end || *s.p != ':')
			return JSCAN_BAD;
		s.p++;
		js_ws(&s);
		if (s.p == s.end)
			return JSCAN_BAD;
		if (is_model) {
			if (found)
				return JSCAN_BAD;	/* which of two would a backend take? */
			found = -1;
			if (*s.p == '"') {
				if (js_string(&s, out, outsz, &n) == -1)
					return JSCAN_BAD;
				found = 1;
				toolong = n + 1 > outsz;
			} else if (js_value(&s) == -1)
				return JSCAN_BAD;
		} else if (js_value(&s) == -1)
			return JSCAN_BAD;
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
	if (found == 1)
		return toolong ? JSCAN_TOOLONG : JSCAN_FOUND;
	return found == -1 ? JSCAN_NOTSTRING : JSCAN_NONE;
}

/* 1 if the JSON string at key (quote included, escapes allowed, already checked) decodes to name. */
static int
js_key_is(const unsigned char *key, const char *name)
{
	struct jscan	s = { key, key + 6 * strlen(name) + 2 };
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

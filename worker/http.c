/* HTTP/1.1 head helpers: span bookkeeping for llhttp, Connection tokens, hop-by-hop, framing. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "worker/http.h"

void
head_reset(struct head *h)
{
	h->first.off = h->first.len = 0;
	h->n = 0;
	h->in_value = 0;
	h->too_many = 0;
	h->bytes = 0;
}

int
head_field(struct head *h, const char *base, const char *at, size_t len,
    int max_fields)
{
	h->bytes += len;
	if (h->n > 0 && !h->in_value) {
		h->f[h->n - 1].name.len += (uint32_t)len;	/* continued across reads */
		return 0;
	}
	if (h->n >= WORKER_HDR_MAX || h->n >= max_fields) {
		h->too_many = 1;
		return -1;
	}
	h->f[h->n].name.off = (uint32_t)(at - base);
	h->f[h->n].name.len = (uint32_t)len;
	h->f[h->n].value.off = (uint32_t)(at - base + len);
	h->f[h->n].value.len = 0;
	h->n++;
	h->in_value = 0;
	return 0;
}

void
head_field_done(struct head *h)
{
	h->in_value = 1;
}

void
head_value(struct head *h, const char *base, const char *at, size_t len)
{
	struct span	*v;

	h->bytes += len;
	if (h->n == 0)
		return;
	v = &h->f[h->n - 1].value;
	if (v->len == 0)
		v->off = (uint32_t)(at - base);
	v->len += (uint32_t)len;
}

int
span_ieq(const char *base, struct span s, const char *lname)
{
	size_t	n = strlen(lname);

	return s.len == n && strncasecmp(base + s.off, lname, n) == 0;
}

int
span_eq(const char *base, struct span s, const char *str)
{
	size_t	n = strlen(str);

	return s.len == n && memcmp(base + s.off, str, n) == 0;
}

void
http_conn_tokens(const char *base, const struct head *h, struct conn_tokens *ct)
{
	int	i;

	ct->n = ct->close = ct->keepalive = ct->overflow = 0;
	for (i = 0; i < h->n; i++) {
		const char	*p, *end;

		if (!span_ieq(base, h->f[i].name, "connection"))
			continue;
		p = base + h->f[i].value.off;
		end = p + h->f[i].value.len;
		while (p < end) {
			const char	*q;
			size_t		 n, k;

			while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
				p++;
			q = p;
			while (q < end && *q != ',' && *q != ' ' && *q != '\t')
				q++;
			n = (size_t)(q - p);
			if (n == 5 && strncasecmp(p, "close", 5) == 0)
				ct->close = 1;
			else if (n == 10 && strncasecmp(p, "keep-alive", 10) == 0)
				ct->keepalive = 1;
			if (n > 0 && ct->n == HTTP_CONN_TOKENS)
				ct->overflow = 1;
			else if (n > 0) {
				char	*t = ct->t[ct->n];

				if (n > 63) {
					n = 63;
					ct->overflow = 1;	/* a name we cannot match whole */
				}
				for (k = 0; k < n; k++)
					t[k] = (char)tolower((unsigned char)p[k]);
				t[n] = '\0';
				ct->n++;
			}
			p = q;
		}
	}
}

int
http_hop_by_hop(const char *base, struct span name, const struct conn_tokens *ct)
{
	static const char *const hop[] = {
		"connection", "keep-alive", "te", "transfer-encoding", "upgrade",
		"proxy-connection", "trailer", "proxy-authenticate", NULL
	};
	const char	*p = base + name.off;
	int		 i;

	/* cheap first-letter screen: most fields are not hop-by-hop */
	switch (p[0] | 0x20) {
	case 'c': case 'k': case 't': case 'u': case 'p':
		for (i = 0; hop[i] != NULL; i++)
			if (span_ieq(base, name, hop[i]))
				return 1;
		break;
	}
	for (i = 0; i < ct->n; i++)
		if (span_ieq(base, name, ct->t[i]))
			return 1;
	return 0;
}

int
http_bare_crlf(const char *p, size_t len)
{
	const char	*q = p, *end = p + len;

	while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		if (q == p || q[-1] != '\r')
			return 1;
		q++;
	}
	q = p;
	while ((q = memchr(q, '\r', (size_t)(end - q))) != NULL) {
		if (q + 1 < end && q[1] != '\n')
			return 1;
		q++;
	}
	return 0;
}

int
http_is_token(const char *p, size_t len)
{
	size_t	i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (isalnum(c))
			continue;
		if (strchr("!#$%&'*+-.^_`|~", c) == NULL || c == '\0')
			return 0;
	}
	return 1;
}

size_t
http_chunk_header(char *dst, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char		 tmp[16];
	size_t		 k = 0, i;

	do {
		tmp[k++] = hex[n & 0xf];
		n >>= 4;
	} while (n != 0);
	for (i = 0; i < k; i++)
		dst[i] = tmp[k - 1 - i];
	dst[k] = '\r';
	dst[k + 1] = '\n';
	return k + 2;
}

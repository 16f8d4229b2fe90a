/* The HTTP/1 codec: pure checks of request and response heads, and the heads routerd writes in their place. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "worker/h1.h"

/* Appending to a buffer that refuses to grow: past its room, nothing more is written. */
struct h1_out {
	struct buf	*b;
	size_t		 start;
	int		 over;
};

static void
out_put(struct h1_out *o, const void *p, size_t n)
{
	if (o->over || n > buf_room(o->b)) {
		o->over = 1;
		return;
	}
	buf_put(o->b, p, n);
}

static void
out_puts(struct h1_out *o, const char *s)
{
	out_put(o, s, strlen(s));
}

/* 0, or -1 with the buffer as it was before the head. */
static int
out_done(struct h1_out *o)
{
	if (!o->over)
		return 0;
	o->b->wpos = o->start;
	return -1;
}

int
h1_find(const char *base, const struct head *h, const char *lname, struct span *v)
{
	int	i, found = 0;

	for (i = 0; i < h->n; i++) {
		if (!span_ieq(base, h->f[i].name, lname))
			continue;
		if (found)
			return -1;
		*v = h->f[i].value;
		found = 1;
	}
	return found;
}

/* Host: reg-name / IPv4 / [IPv6], optional :port; no spaces, slashes or controls. */
static int
h1_host_ok(const char *p, size_t n)
{
	size_t	i;

	if (n == 0 || n > 255)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("/\\?#@\"<>{}|^`", ch) != NULL)
			return 0;
	}
	return 1;
}

/*
 * The Transfer-Encoding list: only "chunked", once and last, is accepted;
 * another coding before it is 501, anything else 400.  0 if acceptable.
 */
static int
h1_check_te(const char *base, const struct head *h)
{
	int	 i, chunked = 0, other = 0, last_chunked = 0, fields = 0;

	for (i = 0; i < h->n; i++) {
		const char	*p, *end;

		if (!span_ieq(base, h->f[i].name, "transfer-encoding"))
			continue;
		fields++;
		p = base + h->f[i].value.off;
		end = p + h->f[i].value.len;
		while (p < end) {
			const char	*q;

			while (p < end && (*p == ',' || *p == ' ' || *p == '\t'))
				p++;
			if (p == end)
				break;
			q = p;
			while (q < end && *q != ',')
				q++;
			while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
				q--;
			if ((size_t)(q - p) == 7 && strncasecmp(p, "chunked", 7) == 0) {
				chunked++;
				last_chunked = 1;
			} else {
				other++;
				last_chunked = 0;
			}
			while (q < end && *q != ',')
				q++;
			p = q;
		}
	}
	if (fields == 0)
		return 0;
	if (chunked == 0 && other == 0)
		return 400;		/* a Transfer-Encoding field with no coding */
	if (chunked > 1 || !last_chunked)
		return 400;
	if (other)
		return 501;
	return 0;
}

/* 1 if every Content-Length field is 1*DIGIT (19 digits at most) and there is at most one. */
static int
h1_check_cl(const char *base, const struct head *h)
{
	int	i, n = 0;

	for (i = 0; i < h->n; i++) {
		const char	*v;
		uint32_t	 k, len;

		if (!span_ieq(base, h->f[i].name, "content-length"))
			continue;
		if (++n > 1)
			return 0;
		v = base + h->f[i].value.off;
		len = h->f[i].value.len;
		while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
			len--;		/* OWS after the value is not part of it */
		if (len == 0 || len > 19)
			return 0;
		for (k = 0; k < len; k++)
			if (v[k] < '0' || v[k] > '9')
				return 0;
	}
	return 1;
}

static int
h1_idempotent(uint8_t m)
{
	switch (m) {
	case HTTP_GET: case HTTP_HEAD: case HTTP_PUT: case HTTP_DELETE:
	case HTTP_OPTIONS: case HTTP_TRACE:
		return 1;
	}
	return 0;
}

/* Field names are tokens; values hold no NUL and no CR/LF (llhttp 8 unfolds obs-fold); no bare CR/LF. */
static int
h1_fields_ok(const char *base, size_t wpos, const struct head *h)
{
	size_t	lastend = h->first.off + h->first.len;
	int	i;

	for (i = 0; i < h->n; i++) {
		const struct hfield *f = &h->f[i];
		size_t e = f->value.off + f->value.len, e2 = f->name.off + f->name.len;

		if (e > lastend)
			lastend = e;
		if (e2 > lastend)
			lastend = e2;
		if (!http_is_token(base + f->name.off, f->name.len))
			return 0;
		if (memchr(base + f->value.off, '\0', f->value.len) ||
		    memchr(base + f->value.off, '\r', f->value.len) ||
		    memchr(base + f->value.off, '\n', f->value.len))
			return 0;
	}
	lastend += 4;
	if (lastend > wpos)
		lastend = wpos;
	return !http_bare_crlf(base, lastend);
}

int
h1_request_check(const llhttp_t *p, const char *base, size_t wpos,
    const struct head *h, uint64_t body_max, struct h1_req *r)
{
	struct span	 v, target = h->first;
	const char	*path;
	size_t		 plen, k;
	int		 st;

	memset(r, 0, sizeof(*r));
	r->method = p->method;
	r->http10 = p->http_major == 1 && p->http_minor == 0;
	if (p->http_major != 1 || p->http_minor > 1)
		return p->http_major == 2 ? 505 : 400;
	r->is_head = p->method == HTTP_HEAD;
	r->idempotent = h1_idempotent(p->method);
	if (p->method == HTTP_CONNECT)
		return 405;
	if (!h1_fields_ok(base, wpos, h))
		return 400;

	/* framing */
	if ((p->flags & F_CHUNKED) && r->http10)
		return 400;
	if ((st = h1_check_te(base, h)) != 0)
		return st;
	if (!h1_check_cl(base, h))
		return 400;
	if ((p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) && (p->flags & F_CONTENT_LENGTH))
		return 400;
	if (h1_find(base, h, "transfer-encoding", &v) != 0 &&
	    h1_find(base, h, "content-length", &v) != 0)
		return 400;
	if (p->flags & F_CHUNKED)
		r->body = BODY_CHUNKED;
	else if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
		r->body = BODY_LENGTH;
		r->content_length = p->content_length;
	} else
		r->body = BODY_NONE;
	if (body_max && r->body == BODY_LENGTH && r->content_length > body_max)
		return 413;

	/* Host */
	r->nhost = h1_find(base, h, "host", &r->host);
	if (r->nhost == -1 || (r->nhost == 0 && !r->http10))
		return 400;
	if (r->nhost == 1 && !h1_host_ok(base + r->host.off, r->host.len))
		return 400;

	/* request target: origin-form, absolute-form, or * for OPTIONS */
	path = base + target.off;
	plen = target.len;
	for (k = 0; k < plen; k++) {
		unsigned char ch = (unsigned char)path[k];

		/* no fragment, no 8-bit, no controls: RFC 9112 3.2 */
		if (ch <= 0x20 || ch >= 0x7f || ch == '#')
			return 400;
	}
	r->path = target;
	if (plen > 0 && path[0] == '/') {
		/* origin-form */
	} else if (plen == 1 && path[0] == '*' && p->method == HTTP_OPTIONS) {
		/* asterisk-form */
	} else if (plen > 7 && (strncasecmp(path, "http://", 7) == 0 ||
	    (plen > 8 && strncasecmp(path, "https://", 8) == 0))) {
		const char *a = path + (path[4] == ':' ? 7 : 8), *e = path + plen;
		const char *s = a;

		while (s < e && *s != '/' && *s != '?')
			s++;
		if (s == a || !h1_host_ok(a, (size_t)(s - a)))
			return 400;
		r->host.off = (uint32_t)(a - base);
		r->host.len = (uint32_t)(s - a);
		r->nhost = 2;		/* the authority replaces any Host field */
		r->path.off = (uint32_t)(s - base);
		r->path.len = (uint32_t)(e - s);
		if (r->path.len == 0 || *s == '?')
			r->abs_slash = 1;	/* "http://h" and "http://h?q" mean "/" and "/?q" */
	} else
		return 400;

	/* Expect */
	if (h1_find(base, h, "expect", &v) != 0) {
		if (!span_ieq(base, v, "100-continue"))
			return 417;
		if (!r->http10 && r->body != BODY_NONE)
			r->expect_100 = 1;
	}
	return 0;
}

/* Fields routerd sets itself (besides hop-by-hop ones): never copied from the client. */
static int
h1_req_field_ours(const char *base, struct span name)
{
	switch (base[name.off] | 0x20) {
	case 'h':
		return span_ieq(base, name, "host");
	case 'c':
		return span_ieq(base, name, "content-length");
	case 'e':
		return span_ieq(base, name, "expect");
	case 'x':
		return span_ieq(base, name, "x-forwarded-for") ||
		    span_ieq(base, name, "x-forwarded-proto") ||
		    span_ieq(base, name, "x-request-id");
	}
	return 0;
}

int
h1_request_head(struct buf *f, const char *base, const struct head *h,
    const struct h1_req *r, const struct conn_tokens *ct, const char *ip,
    const char *rid)
{
	struct h1_out	 o = { f, f->wpos, 0 };
	char		 tmp[32];
	int		 i;

	out_puts(&o, llhttp_method_name((llhttp_method_t)r->method));
	out_put(&o, " ", 1);
	if (r->abs_slash)
		out_put(&o, "/", 1);
	out_put(&o, base + r->path.off, r->path.len);
	out_puts(&o, " HTTP/1.1\r\nHost: ");
	if (r->nhost > 0)
		out_put(&o, base + r->host.off, r->host.len);
	out_puts(&o, "\r\n");
	for (i = 0; i < h->n; i++) {
		const struct hfield *hf = &h->f[i];

		if (h1_req_field_ours(base, hf->name) ||
		    http_hop_by_hop(base, hf->name, ct))
			continue;
		out_put(&o, base + hf->name.off, hf->name.len);
		out_put(&o, ": ", 2);
		out_put(&o, base + hf->value.off, hf->value.len);
		out_put(&o, "\r\n", 2);
	}
	/* X-Forwarded-For: what earlier proxies said, then the client */
	out_puts(&o, "X-Forwarded-For: ");
	for (i = 0; i < h->n; i++) {
		if (!span_ieq(base, h->f[i].name, "x-forwarded-for") ||
		    h->f[i].value.len == 0)
			continue;
		out_put(&o, base + h->f[i].value.off, h->f[i].value.len);
		out_put(&o, ", ", 2);
	}
	out_puts(&o, ip);
	out_puts(&o, "\r\nX-Forwarded-Proto: http\r\nX-Request-Id: ");
	out_puts(&o, rid);
	out_puts(&o, "\r\n");
	if (r->body == BODY_LENGTH) {
		snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)r->content_length);
		out_puts(&o, "Content-Length: ");
		out_puts(&o, tmp);
		out_puts(&o, "\r\n");
	} else if (r->body == BODY_CHUNKED)
		out_puts(&o, "Transfer-Encoding: chunked\r\n");
	out_puts(&o, "\r\n");
	return out_done(&o);
}

int
h1_response_check(const llhttp_t *p, const char *base, const struct head *h)
{
	int	i;

	if (p->status_code < 100 || p->status_code > 599 || p->http_major != 1)
		return -1;
	if ((p->flags & F_CHUNKED) && (p->flags & F_CONTENT_LENGTH))
		return -1;
	for (i = 0; i < h->n; i++) {
		const char	*val = base + h->f[i].value.off;
		size_t		 vl = h->f[i].value.len;

		if (memchr(val, '\r', vl) || memchr(val, '\n', vl) ||
		    memchr(val, '\0', vl))
			return -1;
	}
	return 0;
}

int
h1_response_head(struct buf *b, const char *base, const struct head *h,
    const struct h1_resp *r, const struct conn_tokens *ct)
{
	struct h1_out	 o = { b, b->wpos, 0 };
	char		 tmp[32];
	int		 i, n;

	n = snprintf(tmp, sizeof(tmp), "HTTP/1.1 %03d ", r->status);
	out_put(&o, tmp, (size_t)n);
	if (h->first.len > 0 && h->first.len < 128)
		out_put(&o, base + h->first.off, h->first.len);
	else
		out_puts(&o, reply_reason(r->status));
	out_put(&o, "\r\n", 2);
	for (i = 0; i < h->n; i++) {
		const struct hfield *hf = &h->f[i];

		if (http_hop_by_hop(base, hf->name, ct))
			continue;
		/* RFC 9110 8.6: no Content-Length with a 204; passed on for HEAD and 304 */
		if (((r->body != BODY_LENGTH && !r->nobody) || r->status == 204) &&
		    span_ieq(base, hf->name, "content-length"))
			continue;
		out_put(&o, base + hf->name.off, hf->name.len);
		out_put(&o, ": ", 2);
		out_put(&o, base + hf->value.off, hf->value.len);
		out_put(&o, "\r\n", 2);
	}
	if (r->extra != NULL)
		out_puts(&o, r->extra);
	if (r->body == BODY_CHUNKED)
		out_puts(&o, "Transfer-Encoding: chunked\r\n");
	if (r->close)
		out_puts(&o, "Connection: close\r\n");
	else if (r->http10)
		out_puts(&o, "Connection: keep-alive\r\n");
	out_put(&o, "\r\n", 2);
	return out_done(&o);
}

size_t
h1_frame_step(const struct buf *out)
{
	size_t	room = buf_room(out);

	return room < H1_FRAME_MARGIN * 2 ? 0 : room - H1_FRAME_MARGIN;
}

int
h1_frame_chunk(struct h1_framer *fr, uint64_t size)
{
	if (fr->to != BODY_CHUNKED || size == 0)
		return 0;	/* the last chunk is written by h1_frame_end() */
	if (buf_room(fr->out) < 20)
		return -1;
	fr->out->wpos += http_chunk_header(fr->out->data + fr->out->wpos, (size_t)size);
	fr->chunk_open = 1;
	return 0;
}

int
h1_frame_data(struct h1_framer *fr, const char *p, size_t n)
{
	if (n + H1_FRAME_SLACK > buf_room(fr->out))
		return -1;
	if (fr->from_eof && fr->to == BODY_CHUNKED) {
		fr->out->wpos += http_chunk_header(fr->out->data + fr->out->wpos, n);
		buf_put(fr->out, p, n);
		buf_put(fr->out, "\r\n", 2);
		return 0;
	}
	buf_put(fr->out, p, n);
	return 0;
}

int
h1_frame_chunk_end(struct h1_framer *fr)
{
	if (!fr->chunk_open)
		return 0;
	if (buf_room(fr->out) < 2)
		return -1;
	buf_put(fr->out, "\r\n", 2);
	fr->chunk_open = 0;
	return 0;
}

int
h1_frame_end(struct h1_framer *fr)
{
	if (fr->to != BODY_CHUNKED)
		return 0;
	if (buf_room(fr->out) < 5)
		return -1;
	buf_puts(fr->out, "0\r\n\r\n");
	return 0;
}

int
h1_lines_bad(char *prevp, const char *p, size_t n)
{
	char	prev = *prevp;
	size_t	i;

	for (i = 0; i < n; i++) {
		char b = p[i];

		if ((b == '\n' && prev != '\r') || (prev == '\r' && b != '\n') ||
		    (prev == '\n' && (b == ' ' || b == '\t')))
			return 1;
		prev = b;
	}
	*prevp = prev;
	return 0;
}

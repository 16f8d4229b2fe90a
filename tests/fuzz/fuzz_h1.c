/* libFuzzer harness: worker/h1.c's head checks and head writers behind a strict llhttp parser. */

/*
 * The first byte picks request or response and the capacity of the
 * buffer the new head is written into (so heads are written into too
 * little room as often as into enough).  A head llhttp parses is checked
 * by h1_request_check() / h1_response_check(); a sound one is rewritten
 * by h1_request_head() / h1_response_head(), which must either refuse
 * (leaving the buffer as it was) or write within the capacity a head that
 * a strict llhttp parses again, with the same method, target and Host (or
 * status), and none of the hop-by-hop fields.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llhttp.h"
#include "worker/h1.h"
#include "worker/http.h"
#include "tests/fuzz/common.h"

struct fz {
	const char	*base;
	struct head	 h;
	int		 done;
};

static struct fz	 A, B;		/* struct head is large: not on the stack */
static char		 out[70000];

static int
fz_url(llhttp_t *p, const char *at, size_t len)
{
	struct fz *f = p->data;

	if (f->h.first.len == 0)
		f->h.first.off = (uint32_t)(at - f->base);
	f->h.first.len += (uint32_t)len;
	return 0;
}

static int
fz_field(llhttp_t *p, const char *at, size_t len)
{
	struct fz *f = p->data;

	return head_field(&f->h, f->base, at, len, WORKER_HDR_MAX);
}

static int
fz_field_done(llhttp_t *p)
{
	head_field_done(&((struct fz *)p->data)->h);
	return 0;
}

static int
fz_value(llhttp_t *p, const char *at, size_t len)
{
	struct fz *f = p->data;

	head_value(&f->h, f->base, at, len);
	return 0;
}

static int
fz_value_done(llhttp_t *p)
{
	((struct fz *)p->data)->h.in_value = 1;
	return 0;
}

static int
fz_headers_done(llhttp_t *p)
{
	((struct fz *)p->data)->done = 1;
	return HPE_PAUSED;
}

/* Parses a whole head at base[0, len) into f with p; 1 if it got to its end. */
static int
fz_parse(llhttp_t *p, llhttp_type_t type, struct fz *f, const char *base, size_t len)
{
	static llhttp_settings_t s;

	llhttp_settings_init(&s);
	s.on_url = fz_url;
	s.on_status = fz_url;
	s.on_header_field = fz_field;
	s.on_header_field_complete = fz_field_done;
	s.on_header_value = fz_value;
	s.on_header_value_complete = fz_value_done;
	s.on_headers_complete = fz_headers_done;
	memset(f, 0, sizeof(*f));
	head_reset(&f->h);
	f->base = base;
	llhttp_init(p, type, &s);
	p->data = f;
	return llhttp_execute(p, base, len) == HPE_PAUSED && f->done;
}

static int
has_field(const struct fz *f, const char *lname)
{
	int	i;

	for (i = 0; i < f->h.n; i++)
		if (span_ieq(f->base, f->h.f[i].name, lname))
			return 1;
	return 0;
}

static void
fz_request(const char *in, size_t len, size_t cap)
{
	llhttp_t		 p, q;
	struct h1_req		 r, r2;
	struct conn_tokens	 ct;
	struct buf		 b = { out, cap, 0, 0 };
	struct span		 host;

	if (!fz_parse(&p, HTTP_REQUEST, &A, in, len))
		return;
	/* routerd adds up to 4 fields: the re-parse below keeps WORKER_HDR_MAX, as the worker does */
	if (A.h.n > WORKER_HDR_MAX - 4)
		return;
	if (h1_request_check(&p, in, len, &A.h, 0, &r) != 0)
		return;
	http_conn_tokens(in, &A.h, &ct);
	if (ct.overflow)
		return;
	if (h1_request_head(&b, in, &A.h, &r, &ct, "192.0.2.1", "fuzz-rid") == -1) {
		if (b.wpos != 0)
			abort();	/* a refusal keeps nothing */
		return;
	}
	if (b.wpos > cap)
		abort();
	/* what we send a backend is a sound head, and says what the client asked */
	if (!fz_parse(&q, HTTP_REQUEST, &B, out, b.wpos))
		abort();
	/* an HTTP/1.0 request without Host goes on with an empty one (RFC 9112 3.2), which
	 * routerd itself refuses from an HTTP/1.1 client */
	if (h1_request_check(&q, out, b.wpos, &B.h, 0, &r2) != 0 && r.nhost != 0)
		abort();
	if (r.nhost == 0)
		return;
	if (r2.method != r.method || r2.body != r.body ||
	    (r.body == BODY_LENGTH && r2.content_length != r.content_length))
		abort();
	if (B.h.first.len != r.path.len + r.abs_slash ||
	    memcmp(out + B.h.first.off + r.abs_slash, in + r.path.off, r.path.len) != 0)
		abort();
	if (h1_find(out, &B.h, "host", &host) != 1 || host.len != (r.nhost ? r.host.len : 0) ||
	    (r.nhost && memcmp(out + host.off, in + r.host.off, host.len) != 0))
		abort();
	if (has_field(&B, "connection") || has_field(&B, "keep-alive") ||
	    has_field(&B, "upgrade") || has_field(&B, "proxy-connection") ||
	    has_field(&B, "te") || has_field(&B, "expect"))
		abort();
}

static void
fz_response(const char *in, size_t len, size_t cap, uint8_t sel)
{
	llhttp_t		 p, q;
	struct conn_tokens	 ct;
	struct h1_resp		 hr;
	struct buf		 b = { out, cap, 0, 0 };

	if (!fz_parse(&p, HTTP_RESPONSE, &A, in, len))
		return;
	if (p.status_code < 200 || h1_response_check(&p, in, &A.h) != 0)
		return;
	http_conn_tokens(in, &A.h, &ct);
	if (ct.overflow)
		return;
	hr.status = p.status_code;
	hr.nobody = p.status_code == 204 || p.status_code == 304 || (sel & 1);
	hr.body = hr.nobody ? BODY_NONE : (sel & 2) ? BODY_CHUNKED :
	    (p.flags & F_CONTENT_LENGTH) ? BODY_LENGTH : BODY_EOF;
	hr.close = (sel >> 2) & 1;
	hr.http10 = (sel >> 3) & 1;
	hr.extra = NULL;
	if (h1_response_head(&b, in, &A.h, &hr, &ct) == -1) {
		if (b.wpos != 0)
			abort();
		return;
	}
	if (b.wpos > cap)
		abort();
	if (!fz_parse(&q, HTTP_RESPONSE, &B, out, b.wpos) || q.status_code != p.status_code)
		abort();
	if (h1_response_check(&q, out, &B.h) != 0)
		abort();
	if (has_field(&B, "keep-alive") || has_field(&B, "upgrade") ||
	    (hr.status == 204 && has_field(&B, "content-length")) ||
	    (hr.body == BODY_CHUNKED && !(q.flags & F_CHUNKED)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t	cap;

	if (size < 2)
		return 0;
	/* capacity: anything from nothing to more than any head needs */
	cap = data[1] == 0xff ? sizeof(out) : (size_t)data[1] * 64;
	if (data[0] & 1)
		fz_response((const char *)data + 2, size - 2, cap, data[0] >> 1);
	else
		fz_request((const char *)data + 2, size - 2, cap);
	return 0;
}

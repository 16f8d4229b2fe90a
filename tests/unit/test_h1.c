/* Unit tests of worker/h1.c, row by row of DESIGN.md's "Errors and bad input" table (request and response heads). */
#include <criterion/criterion.h>
#include <string.h>

#include "llhttp.h"

#include "worker/h1.h"
#include "worker/http.h"

/* llhttp with the span collectors of worker/http.c, as the worker drives it. */
struct t_parse {
	llhttp_t	 p;
	struct head	 h;
	const char	*base;
	int		 done;
};

static int
t_url(llhttp_t *p, const char *at, size_t len)
{
	struct t_parse *t = p->data;

	if (t->h.first.len == 0)
		t->h.first.off = (uint32_t)(at - t->base);
	t->h.first.len += (uint32_t)len;
	return 0;
}

static int
t_field(llhttp_t *p, const char *at, size_t len)
{
	struct t_parse *t = p->data;

	return head_field(&t->h, t->base, at, len, WORKER_HDR_MAX);
}

static int
t_field_done(llhttp_t *p)
{
	head_field_done(&((struct t_parse *)p->data)->h);
	return 0;
}

static int
t_value(llhttp_t *p, const char *at, size_t len)
{
	struct t_parse *t = p->data;

	head_value(&t->h, t->base, at, len);
	return 0;
}

static int
t_value_done(llhttp_t *p)
{
	((struct t_parse *)p->data)->h.in_value = 1;
	return 0;
}

static int
t_headers_done(llhttp_t *p)
{
	((struct t_parse *)p->data)->done = 1;
	return HPE_PAUSED;
}

static llhttp_settings_t t_settings;

static void
t_init(struct t_parse *t, const char *base, llhttp_type_t type)
{
	llhttp_settings_init(&t_settings);
	t_settings.on_url = t_url;
	t_settings.on_status = t_url;
	t_settings.on_header_field = t_field;
	t_settings.on_header_field_complete = t_field_done;
	t_settings.on_header_value = t_value;
	t_settings.on_header_value_complete = t_value_done;
	t_settings.on_headers_complete = t_headers_done;
	memset(t, 0, sizeof(*t));
	llhttp_init(&t->p, type, &t_settings);
	t->p.data = t;
	t->base = base;
	head_reset(&t->h);
}

/*
 * The answer the worker gives a request head: 400 when llhttp refuses it
 * (the worker's default for a parser error), else h1_request_check()'s.
 */
static int
req_status(const char *raw, struct h1_req *r, uint64_t body_max)
{
	struct t_parse	 t;
	llhttp_errno_t	 e;

	t_init(&t, raw, HTTP_REQUEST);
	e = llhttp_execute(&t.p, raw, strlen(raw));
	if (e != HPE_PAUSED || !t.done)
		return e == HPE_OK ? -1 : 400;	/* -1: the head did not end */
	return h1_request_check(&t.p, raw, strlen(raw), &t.h, body_max, r);
}

struct row {
	const char	*why, *raw;
	int		 status;
};

#define H	"Host: a\r\n"

static const struct row rows[] = {
	/* CL + TE together; differing duplicate or listed CL; CL not 1*DIGIT or overflowing */
	{ "CL+TE", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "TE+CL", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400 },
	{ "two CL", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400 },
	{ "same CL twice", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400 },
	{ "listed CL", "POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n", 400 },
	{ "CL +5", "POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", 400 },
	{ "CL 5a", "POST / HTTP/1.1\r\n" H "Content-Length: 5a\r\n\r\n", 400 },
	{ "CL 0x5", "POST / HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\n", 400 },
	{ "CL empty", "POST / HTTP/1.1\r\n" H "Content-Length: \r\n\r\n", 400 },
	{ "CL 2^64", "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n", 400 },
	/* TE whose last coding is not chunked; chunked twice; TE in HTTP/1.0; unknown coding before chunked */
	{ "TE gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 400 },
	{ "TE chunked, gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400 },
	{ "TE chunked twice", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 400 },
	{ "TE chunked in two fields", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	{ "TE gzip, chunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501 },
	/* obs-fold, whitespace before colon, NUL or 8-bit/space in a field name, no colon */
	{ "obs-fold", "GET / HTTP/1.1\r\n" H "X-A: 1\r\n 2\r\n\r\n", 400 },
	{ "space before colon", "GET / HTTP/1.1\r\n" H "X-A : 1\r\n\r\n", 400 },
	{ "space in name", "GET / HTTP/1.1\r\n" H "X A: 1\r\n\r\n", 400 },
	{ "8-bit name", "GET / HTTP/1.1\r\n" H "X-\xe9: 1\r\n\r\n", 400 },
	{ "no colon", "GET / HTTP/1.1\r\n" H "X-A\r\n\r\n", 400 },
	{ "bare LF", "GET / HTTP/1.1\r\n" H "X-A: 1\n\r\n", 400 },
	{ "bare CR", "GET / HTTP/1.1\r\n" H "X-A: 1\r2\r\n\r\n", 400 },
	/* HTTP/1.1 without Host, two Hosts, bad version, bad request-target */
	{ "no Host", "GET / HTTP/1.1\r\n\r\n", 400 },
	{ "two Hosts", "GET / HTTP/1.1\r\n" H H "\r\n", 400 },
	{ "bad Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400 },
	{ "Host with @", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400 },
	{ "HTTP/1.2", "GET / HTTP/1.2\r\n" H "\r\n", 400 },
	{ "HTTP/2.0", "GET / HTTP/2.0\r\n" H "\r\n", 505 },
	{ "target with #", "GET /a#b HTTP/1.1\r\n" H "\r\n", 400 },
	{ "target 8-bit", "GET /\xe9 HTTP/1.1\r\n" H "\r\n", 400 },
	{ "target not origin-form", "GET a HTTP/1.1\r\n" H "\r\n", 400 },
	{ "asterisk for GET", "GET * HTTP/1.1\r\n" H "\r\n", 400 },
	{ "authority with userinfo", "GET http://u@h/ HTTP/1.1\r\n" H "\r\n", 400 },
	{ "empty authority", "GET http:///x HTTP/1.1\r\n" H "\r\n", 400 },
	/* Expect; CONNECT */
	{ "Expect: foo", "POST / HTTP/1.1\r\n" H "Expect: foo\r\nContent-Length: 1\r\n\r\n", 417 },
	{ "CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405 },
	/* sound heads */
	{ "GET", "GET /x?y=1 HTTP/1.1\r\n" H "\r\n", 0 },
	{ "HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0 },
	{ "OPTIONS *", "OPTIONS * HTTP/1.1\r\n" H "\r\n", 0 },
	{ "CL with OWS", "POST / HTTP/1.1\r\n" H "Content-Length: 5 \r\n\r\n", 0 },
	{ "chunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n", 0 },
	{ "Expect 100", "POST / HTTP/1.1\r\n" H "Expect: 100-Continue\r\nContent-Length: 1\r\n\r\n", 0 },
	{ "IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0 },
};

Test(h1, request_rows)
{
	struct h1_req	 r;
	size_t		 i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_expect_eq(req_status(rows[i].raw, &r, 0), rows[i].status,
		    "%s: got %d, want %d", rows[i].why, req_status(rows[i].raw, &r, 0),
		    rows[i].status);
}

Test(h1, request_facts)
{
	struct h1_req	 r;
	const char	*raw;

	raw = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n";
	cr_assert_eq(req_status(raw, &r, 0), 0);
	cr_assert_eq(r.body, BODY_LENGTH);
	cr_assert_eq(r.content_length, 12);
	cr_assert(r.expect_100 && !r.idempotent && !r.http10 && r.nhost == 1);
	cr_assert_eq(req_status(raw, &r, 11), 413, "body over limits.body");
	cr_assert_eq(req_status(raw, &r, 12), 0);
	/* Expect is not passed on to an HTTP/1.0 client's request, nor without a body */
	cr_assert_eq(req_status("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
	    &r, 0), 0);
	cr_assert(!r.expect_100 && r.http10);
	cr_assert_eq(req_status("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", &r, 0), 0);
	cr_assert(!r.expect_100 && r.idempotent && r.body == BODY_NONE);
	/* absolute-form: the authority is the host, the rest the origin-form target */
	raw = "GET http://Auth.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
	cr_assert_eq(req_status(raw, &r, 0), 0);
	cr_assert_eq(r.nhost, 2);
	cr_assert(span_eq(raw, r.host, "Auth.example:81"));
	cr_assert(span_eq(raw, r.path, "/p?q"));
	raw = "GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n";
	cr_assert_eq(req_status(raw, &r, 0), 0);
	cr_assert(r.abs_slash && span_eq(raw, r.path, "?q"));
}

static int
req_head(const char *raw, char *out, size_t cap, size_t *len)
{
	struct t_parse		 t;
	struct conn_tokens	 ct;
	struct h1_req		 r;
	struct buf		 b = { out, cap, 0, 0 };
	int			 rc;

	t_init(&t, raw, HTTP_REQUEST);
	cr_assert_eq(llhttp_execute(&t.p, raw, strlen(raw)), HPE_PAUSED);
	cr_assert_eq(h1_request_check(&t.p, raw, strlen(raw), &t.h, 0, &r), 0);
	http_conn_tokens(raw, &t.h, &ct);
	rc = h1_request_head(&b, raw, &t.h, &r, &ct, "10.1.2.3", "rid-1");
	out[b.wpos] = '\0';
	*len = b.wpos;
	return rc;
}

Test(h1, request_head_rewrite)
{
	char	 out[2048];
	size_t	 n, full;

	cr_assert_eq(req_head("POST http://h:1/p HTTP/1.1\r\nHost: x\r\n"
	    "Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
	    "Upgrade: h2c\r\nProxy-Connection: x\r\nTransfer-Encoding: chunked\r\n"
	    "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: ftp\r\n"
	    "X-Request-Id: theirs\r\nExpect: 100-continue\r\nX-Keep: yes\r\n\r\n",
	    out, sizeof(out), &n), 0);
	cr_assert_str_eq(out, "POST /p HTTP/1.1\r\nHost: h:1\r\nX-Keep: yes\r\n"
	    "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
	    "X-Request-Id: rid-1\r\nTransfer-Encoding: chunked\r\n\r\n");
	full = n;
	/* a buffer one byte short: refused, and nothing of it kept */
	cr_assert_eq(req_head("GET / HTTP/1.1\r\nHost: h\r\nX-Keep: yes\r\n\r\n", out,
	    sizeof(out), &n), 0);
	full = n;
	cr_assert_eq(req_head("GET / HTTP/1.1\r\nHost: h\r\nX-Keep: yes\r\n\r\n", out, full,
	    &n), 0);
	cr_assert_eq(req_head("GET / HTTP/1.1\r\nHost: h\r\nX-Keep: yes\r\n\r\n", out,
	    full - 1, &n), -1);
	cr_assert_eq(n, 0);
}

static int
resp_parse(const char *raw, struct t_parse *t)
{
	t_init(t, raw, HTTP_RESPONSE);
	if (llhttp_execute(&t->p, raw, strlen(raw)) != HPE_PAUSED || !t->done)
		return 502;	/* the worker answers a head llhttp refuses with 502 */
	return h1_response_check(&t->p, raw, &t->h) == 0 ? 0 : 502;
}

/* Backend heads: a bad status line, conflicting CL, CL+TE, obs-fold: 502. */
Test(h1, response_rows)
{
	static const struct row r[] = {
		{ "status 2x0", "HTTP/1.1 2x0 OK\r\n\r\n", 502 },
		{ "status 099", "HTTP/1.1 099 X\r\n\r\n", 502 },
		{ "status 600", "HTTP/1.1 600 X\r\n\r\n", 502 },
		{ "conflicting CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 502 },
		{ "CL+TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 502 },
		{ "obs-fold", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n", 502 },
		{ "HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", 502 },
		{ "sound", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0 },
		{ "sound 1.0", "HTTP/1.0 404 Nope\r\n\r\n", 0 },
	};
	struct t_parse	t;
	size_t		i;

	for (i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		cr_expect_eq(resp_parse(r[i].raw, &t), r[i].status, "%s", r[i].why);
}

Test(h1, response_head_rewrite)
{
	struct t_parse		 t;
	struct conn_tokens	 ct;
	struct h1_resp		 hr = { 200, BODY_CHUNKED, 0, 1, 0, NULL };
	char			 out[512];
	struct buf		 b = { out, sizeof(out), 0, 0 };
	const char		*raw = "HTTP/1.1 200 Fine\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
				    "Content-Length: 9\r\nKeep-Alive: timeout=5\r\nX-Keep: 2\r\n\r\n";
	size_t			 full;

	cr_assert_eq(resp_parse(raw, &t), 0);
	http_conn_tokens(raw, &t.h, &ct);
	cr_assert_eq(h1_response_head(&b, raw, &t.h, &hr, &ct), 0);
	out[b.wpos] = '\0';
	/* re-chunked for this client: its Content-Length goes, the framing is ours */
	cr_assert_str_eq(out, "HTTP/1.1 200 Fine\r\nX-Keep: 2\r\n"
	    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	hr.body = BODY_LENGTH;
	hr.close = 0;
	hr.http10 = 1;
	b.wpos = 0;
	cr_assert_eq(h1_response_head(&b, raw, &t.h, &hr, &ct), 0);
	out[b.wpos] = '\0';
	cr_assert_str_eq(out, "HTTP/1.1 200 Fine\r\nContent-Length: 9\r\nX-Keep: 2\r\n"
	    "Connection: keep-alive\r\n\r\n");
	full = b.wpos;
	/* no room: refused, the buffer as it was */
	b.wpos = 0;
	b.cap = full - 1;
	cr_assert_eq(h1_response_head(&b, raw, &t.h, &hr, &ct), -1);
	cr_assert_eq(b.wpos, 0);
	b.cap = full;
	cr_assert_eq(h1_response_head(&b, raw, &t.h, &hr, &ct), 0);
	cr_assert_eq(b.wpos, full);
}

/* The re-framer: normalized chunks, close-delimited pieces as chunks, and no write past the room. */
Test(h1, framer)
{
	char			 buf[256];
	struct buf		 b = { buf, sizeof(buf), 0, 0 };
	struct h1_framer	 fr = { &b, BODY_CHUNKED, 0, 0 };

	cr_assert_eq(h1_frame_chunk(&fr, 0x1F), 0);
	cr_assert_eq(h1_frame_data(&fr, "abc", 3), 0);
	cr_assert_eq(h1_frame_chunk_end(&fr), 0);
	cr_assert_eq(h1_frame_chunk_end(&fr), 0, "no chunk open: nothing written");
	cr_assert_eq(h1_frame_end(&fr), 0);
	buf[b.wpos] = '\0';
	cr_assert_str_eq(buf, "1f\r\nabc\r\n0\r\n\r\n");
	/* close-delimited to chunked: each piece is its own chunk */
	b.wpos = 0;
	fr.from_eof = 1;
	cr_assert_eq(h1_frame_data(&fr, "hello", 5), 0);
	cr_assert_eq(h1_frame_data(&fr, "!", 1), 0);
	cr_assert_eq(h1_frame_end(&fr), 0);
	buf[b.wpos] = '\0';
	cr_assert_str_eq(buf, "5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n");
	/* passed through as it is */
	b.wpos = 0;
	fr.to = BODY_LENGTH;
	fr.from_eof = 0;
	cr_assert_eq(h1_frame_chunk(&fr, 9), 0);
	cr_assert_eq(h1_frame_data(&fr, "xy", 2), 0);
	cr_assert_eq(h1_frame_end(&fr), 0);
	cr_assert_eq(b.wpos, 2);
	/* room: a piece must leave H1_FRAME_SLACK, and a step is the room less H1_FRAME_MARGIN */
	b.wpos = sizeof(buf) - 40;
	cr_assert_eq(h1_frame_data(&fr, "12345678", 8), 0);
	cr_assert_eq(h1_frame_data(&fr, "1", 1), -1);
	cr_assert_eq(b.wpos, sizeof(buf) - 32, "a refusal writes nothing");
	b.wpos = 0;
	cr_assert_eq(h1_frame_step(&b), sizeof(buf) - H1_FRAME_MARGIN);
	b.wpos = sizeof(buf) - 2 * H1_FRAME_MARGIN + 1;
	cr_assert_eq(h1_frame_step(&b), 0);
}

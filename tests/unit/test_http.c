/* Unit tests of the HTTP/1.1 head helpers in worker/http.c: spans, Connection, hop-by-hop, CRLF, tokens, chunk framing. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "llhttp.h"
#include "worker/http.h"

static struct head	 H;		/* 4 KB of spans: keep it off the stack */

/* A span [off, off + len) of base; off computed from a substring pointer. */
static struct span
sp(const char *base, const char *at, size_t len)
{
	struct span s = { (uint32_t)(at - base), (uint32_t)len };

	return s;
}

static void
assert_span(const char *base, struct span s, const char *want)
{
	cr_assert_eq(s.len, strlen(want), "span len %u, want \"%s\"", s.len, want);
	cr_assert(memcmp(base + s.off, want, s.len) == 0,
	    "span \"%.*s\", want \"%s\"", (int)s.len, base + s.off, want);
}

/* Feed one "Name: value" the way llhttp does: name, done, value (if any). */
static void
feed(const char *base, const char *name, const char *value)
{
	const char *n = strstr(base, name);

	cr_assert_not_null(n);
	cr_assert_eq(head_field(&H, base, n, strlen(name), WORKER_HDR_MAX), 0);
	head_field_done(&H);
	if (value != NULL && value[0] != '\0') {
		const char *v = strstr(n + strlen(name), value);

		cr_assert_not_null(v);
		head_value(&H, base, v, strlen(value));
	}
}

/* Span bookkeeping */

Test(http_head, reset_clears)
{
	H.n = 7;
	H.in_value = 1;
	H.too_many = 1;
	H.bytes = 99;
	H.first.off = 3;
	H.first.len = 4;
	head_reset(&H);
	cr_assert_eq(H.n, 0);
	cr_assert_eq(H.in_value, 0);
	cr_assert_eq(H.too_many, 0);
	cr_assert_eq(H.bytes, 0);
	cr_assert_eq(H.first.off, 0);
	cr_assert_eq(H.first.len, 0);
}

Test(http_head, fields_and_values)
{
	const char *b = "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

	head_reset(&H);
	feed(b, "Host", "example.com");
	feed(b, "Accept", "*/*");
	cr_assert_eq(H.n, 2);
	assert_span(b, H.f[0].name, "Host");
	assert_span(b, H.f[0].value, "example.com");
	assert_span(b, H.f[1].name, "Accept");
	assert_span(b, H.f[1].value, "*/*");
	cr_assert_eq(H.bytes, strlen("Host") + strlen("example.com") +
	    strlen("Accept") + strlen("*/*"));
	cr_assert_eq(H.too_many, 0);
}

Test(http_head, name_split_across_two_callbacks)
{
	const char *b = "GET / HTTP/1.1\r\nX-Long-Name: v1\r\nA: b\r\n\r\n";
	const char *n = strstr(b, "X-Long-Name");

	head_reset(&H);
	cr_assert_eq(head_field(&H, b, n, 4, WORKER_HDR_MAX), 0);		/* "X-Lo" */
	cr_assert_eq(head_field(&H, b, n + 4, 7, WORKER_HDR_MAX), 0);	/* "ng-Name" */
	head_field_done(&H);
	head_value(&H, b, strstr(b, "v1"), 2);
	feed(b, "A", "b");
	cr_assert_eq(H.n, 2, "a continued name is not a new field");
	assert_span(b, H.f[0].name, "X-Long-Name");
	assert_span(b, H.f[0].value, "v1");
	assert_span(b, H.f[1].name, "A");
	assert_span(b, H.f[1].value, "b");
}

Test(http_head, value_split_across_two_callbacks)
{
	const char *b = "GET / HTTP/1.1\r\nUser-Agent: curl/8.1\r\n\r\n";
	const char *v = strstr(b, "curl/8.1");

	head_reset(&H);
	cr_assert_eq(head_field(&H, b, strstr(b, "User-Agent"), 10, WORKER_HDR_MAX), 0);
	head_field_done(&H);
	head_value(&H, b, v, 3);
	head_value(&H, b, v + 3, 5);
	cr_assert_eq(H.n, 1);
	assert_span(b, H.f[0].value, "curl/8.1");
}

Test(http_head, empty_value)
{
	const char *b = "GET / HTTP/1.1\r\nX-Empty:\r\nNext: 1\r\n\r\n";

	head_reset(&H);
	feed(b, "X-Empty", NULL);	/* llhttp calls no value callback */
	feed(b, "Next", "1");
	cr_assert_eq(H.n, 2, "the field after an empty value is a new field");
	assert_span(b, H.f[0].name, "X-Empty");
	cr_assert_eq(H.f[0].value.len, 0);
	assert_span(b, H.f[1].name, "Next");
	assert_span(b, H.f[1].value, "1");
}

Test(http_head, value_before_any_field_is_ignored)
{
	const char *b = "xyz";

	head_reset(&H);
	head_value(&H, b, b, 3);
	cr_assert_eq(H.n, 0);
	cr_assert_eq(H.bytes, 3);
}

Test(http_head, too_many_fields)
{
	const char *b = "A: 1\r\n";
	int i;

	head_reset(&H);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(head_field(&H, b, b, 1, 3), 0);
		head_field_done(&H);
		head_value(&H, b, b + 3, 1);
	}
	cr_assert_eq(head_field(&H, b, b, 1, 3), -1);
	cr_assert_eq(H.too_many, 1);
	cr_assert_eq(H.n, 3);

	head_reset(&H);
	for (i = 0; i < WORKER_HDR_MAX; i++) {
		cr_assert_eq(head_field(&H, b, b, 1, 100000), 0);
		head_field_done(&H);
	}
	cr_assert_eq(head_field(&H, b, b, 1, 100000), -1, "WORKER_HDR_MAX caps the head");
	cr_assert_eq(H.n, WORKER_HDR_MAX);
}

/* The spans llhttp itself produces, fed one byte per execute call. */
static int
cb_field(llhttp_t *p, const char *at, size_t len)
{
	return head_field(&H, p->data, at, len, WORKER_HDR_MAX);
}

static int
cb_field_done(llhttp_t *p)
{
	head_field_done(&H);
	return 0;
}

static int
cb_value(llhttp_t *p, const char *at, size_t len)
{
	head_value(&H, p->data, at, len);
	return 0;
}

Test(http_head, llhttp_byte_by_byte)
{
	static char b[] = "GET /x HTTP/1.1\r\nHost: a.example\r\nX-Empty:\r\n"
	    "Content-Type: text/plain\r\nConnection: close\r\n\r\n";
	llhttp_settings_t s;
	llhttp_t	 p;
	size_t		 i, len = strlen(b);

	llhttp_settings_init(&s);
	s.on_header_field = cb_field;
	s.on_header_field_complete = cb_field_done;
	s.on_header_value = cb_value;
	llhttp_init(&p, HTTP_REQUEST, &s);
	p.data = b;
	head_reset(&H);
	for (i = 0; i < len; i++)
		cr_assert_eq(llhttp_execute(&p, b + i, 1), HPE_OK, "at byte %zu: %s",
		    i, llhttp_get_error_reason(&p));
	cr_assert_eq(H.n, 4);
	assert_span(b, H.f[0].name, "Host");
	assert_span(b, H.f[0].value, "a.example");
	assert_span(b, H.f[1].name, "X-Empty");
	cr_assert_eq(H.f[1].value.len, 0);
	assert_span(b, H.f[2].name, "Content-Type");
	assert_span(b, H.f[2].value, "text/plain");
	assert_span(b, H.f[3].name, "Connection");
	assert_span(b, H.f[3].value, "close");
}

/* span_ieq / span_eq */

Test(http_span, ieq)
{
	const char *b = "CoNnEcTiOn keep";

	cr_assert(span_ieq(b, sp(b, b, 10), "connection"));
	cr_assert_not(span_ieq(b, sp(b, b, 9), "connection"), "shorter span");
	cr_assert_not(span_ieq(b, sp(b, b, 11), "connection"), "longer span");
	cr_assert_not(span_ieq(b, sp(b, b, 10), "connectioN!"));
	cr_assert(span_ieq(b, sp(b, b + 11, 4), "keep"));
	cr_assert_not(span_ieq(b, sp(b, b + 11, 4), "kept"));
	cr_assert(span_ieq(b, sp(b, b, 0), ""));
	cr_assert_not(span_ieq(b, sp(b, b, 0), "c"));
}

Test(http_span, ieq_does_not_stop_at_nul)
{
	static const char b[] = { 't', 'e', '\0', 'x' };

	cr_assert_not(span_ieq(b, sp(b, b, 4), "te"));
	cr_assert_not(span_ieq(b, sp(b, b, 3), "te"));
}

Test(http_span, eq_is_case_sensitive)
{
	const char *b = "Host";

	cr_assert(span_eq(b, sp(b, b, 4), "Host"));
	cr_assert_not(span_eq(b, sp(b, b, 4), "host"));
	cr_assert_not(span_eq(b, sp(b, b, 3), "Host"));
}

/* http_conn_tokens */

/* Build a head from a block of "Name: value\r\n" lines in buf. */
static void
head_from(const char *buf)
{
	const char *p = buf;

	head_reset(&H);
	while (*p != '\0') {
		const char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
		const char *v;

		cr_assert(colon != NULL && eol != NULL && colon < eol);
		cr_assert_eq(head_field(&H, buf, p, (size_t)(colon - p), WORKER_HDR_MAX), 0);
		head_field_done(&H);
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		if (v < eol)
			head_value(&H, buf, v, (size_t)(eol - v));
		p = eol + 2;
	}
}

Test(http_conn, close)
{
	const char *b = "Host: a\r\nConnection: close\r\n";
	struct conn_tokens ct;

	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 1);
	cr_assert_str_eq(ct.t[0], "close");
	cr_assert_eq(ct.close, 1);
	cr_assert_eq(ct.keepalive, 0);
}

Test(http_conn, keep_alive_any_case)
{
	const char *b = "connection: Keep-Alive\r\n";
	struct conn_tokens ct;

	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 1);
	cr_assert_str_eq(ct.t[0], "keep-alive");
	cr_assert_eq(ct.keepalive, 1);
	cr_assert_eq(ct.close, 0);
}

Test(http_conn, none)
{
	const char *b = "Host: a\r\nX-Connection: close\r\n";
	struct conn_tokens ct;

	memset(&ct, 0x55, sizeof(ct));
	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 0);
	cr_assert_eq(ct.close, 0);
	cr_assert_eq(ct.keepalive, 0);
}

Test(http_conn, several_fields_and_list_whitespace)
{
	const char *b = "CONNECTION: Upgrade,\tX-Foo ,, \t\r\nHost: a\r\n"
	    "Connection: keep-alive , CLOSE\r\nConnection:\r\n";
	struct conn_tokens ct;

	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 4);
	cr_assert_str_eq(ct.t[0], "upgrade");
	cr_assert_str_eq(ct.t[1], "x-foo");
	cr_assert_str_eq(ct.t[2], "keep-alive");
	cr_assert_str_eq(ct.t[3], "close");
	cr_assert_eq(ct.close, 1);
	cr_assert_eq(ct.keepalive, 1);
}

Test(http_conn, long_token_truncated_to_63)
{
	char		 b[256], want[64];
	struct conn_tokens ct;

	memset(want, 'a', 63);
	want[63] = '\0';
	snprintf(b, sizeof(b), "Connection: %s%s, close\r\n", want, "BBBBBBBBBB");
	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 2);
	cr_assert_eq(strlen(ct.t[0]), 63);
	cr_assert_str_eq(ct.t[0], want);
	cr_assert_str_eq(ct.t[1], "close");
	cr_assert_eq(ct.close, 1);
}

Test(http_conn, token_of_exactly_63_kept_whole)
{
	char		 b[128], tok[64];
	struct conn_tokens ct;

	memset(tok, 'Z', 63);
	tok[63] = '\0';
	snprintf(b, sizeof(b), "Connection: %s\r\n", tok);
	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 1);
	cr_assert_eq(strlen(ct.t[0]), 63);
	cr_assert_eq(ct.t[0][0], 'z');
}

Test(http_conn, tokens_past_the_cap_flag_overflow)
{
	char		 b[1024];
	size_t		 o;
	int		 i;
	struct conn_tokens ct;

	o = (size_t)snprintf(b, sizeof(b), "Connection: ");
	for (i = 0; i < HTTP_CONN_TOKENS + 4; i++)
		o += (size_t)snprintf(b + o, sizeof(b) - o, "t%d,", i);
	snprintf(b + o, sizeof(b) - o, "\r\n");
	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, HTTP_CONN_TOKENS);
	cr_assert_str_eq(ct.t[0], "t0");
	cr_assert_str_eq(ct.t[15], "t15");
	/* the proxy refuses such a head rather than forward fields it could not check */
	cr_assert_eq(ct.overflow, 1);
}

/*
 * Regression: a "close" after the 16th Connection token used to be
 * missed, so the proxy kept a connection the peer asked to close.
 */
Test(http_conn, close_after_sixteen_tokens_still_closes)
{
	char		 b[512];
	size_t		 o;
	int		 i;
	struct conn_tokens ct;

	o = (size_t)snprintf(b, sizeof(b), "Connection: ");
	for (i = 0; i < 16; i++)
		o += (size_t)snprintf(b + o, sizeof(b) - o, "t%d, ", i);
	snprintf(b + o, sizeof(b) - o, "close\r\n");
	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.close, 1, "Connection: close lost after 16 tokens");
}

/* http_hop_by_hop */

static int
hop(const char *name, const struct conn_tokens *ct)
{
	return http_hop_by_hop(name, sp(name, name, strlen(name)), ct);
}

Test(http_hop, every_hop_by_hop_name_in_any_case)
{
	static const char *const names[] = {
		"Connection", "connection", "CONNECTION",
		"Keep-Alive", "keep-alive", "KEEP-ALIVE",
		"TE", "te", "Te",
		"Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING",
		"Upgrade", "upgrade", "UPGRADE",
		"Proxy-Connection", "proxy-connection", "PROXY-CONNECTION",
		"Trailer", "trailer", "TRAILER",
		"Proxy-Authenticate", "proxy-authenticate", "PROXY-AUTHENTICATE",
		"kEEP-aLIVE", "tRANSFER-eNCODING",
	};
	struct conn_tokens ct = { .n = 0 };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_assert_eq(hop(names[i], &ct), 1, "%s must be dropped", names[i]);
}

Test(http_hop, ordinary_fields_kept)
{
	static const char *const names[] = {
		"Host", "Content-Length", "Content-Type", "Accept", "Cookie",
		"Authorization", "User-Agent", "X-Forwarded-For", "Cache-Control",
		"Connections", "Tee", "T", "Upgrade-Insecure-Requests",
		"Proxy", "Keep", "Trailers-X", "Transfer-Encoding2", "Pragma",
		"Content-Encoding", "Via",
	};
	struct conn_tokens ct = { .n = 0 };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_assert_eq(hop(names[i], &ct), 0, "%s must be kept", names[i]);
}

Test(http_hop, fields_named_in_connection_dropped)
{
	const char *b = "Connection: X-Secret, cookie, Keep-Alive\r\n";
	struct conn_tokens ct;

	head_from(b);
	http_conn_tokens(b, &H, &ct);
	cr_assert_eq(ct.n, 3);
	cr_assert_eq(hop("X-Secret", &ct), 1);
	cr_assert_eq(hop("x-secret", &ct), 1);
	cr_assert_eq(hop("X-SECRET", &ct), 1);
	cr_assert_eq(hop("Cookie", &ct), 1, "even an ordinary field once named");
	cr_assert_eq(hop("X-Secret2", &ct), 0);
	cr_assert_eq(hop("X-Secre", &ct), 0);
	cr_assert_eq(hop("Host", &ct), 0);
	cr_assert_eq(hop("Accept", &ct), 0);
}

Test(http_hop, span_inside_a_larger_buffer)
{
	const char *b = "Upgraded: 1\r\nUpgrade: h2c\r\n";

	/* the span is "Upgrade" of "Upgraded": only its length decides */
	struct conn_tokens ct = { .n = 0 };

	cr_assert_eq(http_hop_by_hop(b, sp(b, b, 8), &ct), 0);
	cr_assert_eq(http_hop_by_hop(b, sp(b, b, 7), &ct), 1);
	cr_assert_eq(http_hop_by_hop(b, sp(b, strstr(b, "\r\n") + 2, 7), &ct), 1);
}

/* http_bare_crlf */

static int
bare(const char *s)
{
	return http_bare_crlf(s, strlen(s));
}

Test(http_crlf, good_heads)
{
	cr_assert_eq(bare("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	cr_assert_eq(bare("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: y\r\n\r\n"), 0);
	cr_assert_eq(bare(""), 0);
	cr_assert_eq(bare("\r\n"), 0);
	cr_assert_eq(bare("no line ends at all"), 0);
}

Test(http_crlf, bare_lf)
{
	cr_assert_eq(bare("GET / HTTP/1.1\nHost: a\r\n\r\n"), 1);
	cr_assert_eq(bare("GET / HTTP/1.1\r\nHost: a\n\r\n"), 1);
	cr_assert_eq(bare("GET / HTTP/1.1\r\nHost: a\r\n\n"), 1);
	cr_assert_eq(bare("\n"), 1, "LF as the first byte");
	cr_assert_eq(bare("a\r\n\n"), 1);
}

Test(http_crlf, bare_cr)
{
	cr_assert_eq(bare("GET / HTTP/1.1\rHost: a\r\n\r\n"), 1);
	cr_assert_eq(bare("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 1);
	cr_assert_eq(bare("\r\r\n"), 1);
	cr_assert_eq(bare("\rx"), 1, "CR as the first byte");
}

Test(http_crlf, cr_at_the_very_end)
{
	/* its LF may be the next byte, outside [0, len): not bare yet */
	cr_assert_eq(bare("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0);
	cr_assert_eq(bare("\r"), 0);
	/* but only the last byte gets that benefit */
	cr_assert_eq(bare("GET / HTTP/1.1\r\nHost: a\r\r"), 1);
}

Test(http_crlf, length_bounds_the_scan)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\nbody\nbare\r";

	cr_assert_eq(http_bare_crlf(s, strlen(s) - 10), 0, "body bytes not looked at");
	cr_assert_eq(http_bare_crlf(s, strlen(s)), 1);
	cr_assert_eq(http_bare_crlf(s, 0), 0);
}

/* http_is_token */

static int
tok(const char *s)
{
	return http_is_token(s, strlen(s));
}

Test(http_token, tchars)
{
	cr_assert_eq(tok("Content-Type"), 1);
	cr_assert_eq(tok("x-request_id.v2"), 1);
	cr_assert_eq(tok("!#$%&'*+-.^_`|~"), 1);
	cr_assert_eq(tok("AZaz09"), 1);
	cr_assert_eq(tok("a"), 1);
}

Test(http_token, non_tchars)
{
	static const char bad[] = "\"(),/:;<=>?@[\\]{} \t\x7f\x01\x80\xff";
	size_t i;
	char s[4];

	cr_assert_eq(http_is_token("", 0), 0, "empty is not a token");
	for (i = 0; i < sizeof(bad) - 1; i++) {
		s[0] = 'a';
		s[1] = bad[i];
		s[2] = 'b';
		s[3] = '\0';
		cr_assert_eq(http_is_token(s, 3), 0, "byte 0x%02x accepted",
		    (unsigned char)bad[i]);
	}
	cr_assert_eq(http_is_token("a\0b", 3), 0, "NUL is not a tchar");
	cr_assert_eq(http_is_token("ab\r\n", 4), 0);
	cr_assert_eq(http_is_token("ab\r\n", 2), 1, "only len bytes looked at");
}

/* http_chunk_header */

static void
chunk(size_t n, const char *want)
{
	char	 buf[32];
	size_t	 k;

	memset(buf, '#', sizeof(buf));
	k = http_chunk_header(buf, n);
	cr_assert_eq(k, strlen(want), "n=%zu: %zu bytes, want %zu", n, k, strlen(want));
	cr_assert(memcmp(buf, want, k) == 0, "n=%zu: \"%.*s\", want \"%s\"",
	    n, (int)k, buf, want);
	cr_assert_eq(buf[k], '#', "n=%zu: wrote past its return", n);
}

Test(http_chunk, header)
{
	chunk(0, "0\r\n");
	chunk(1, "1\r\n");
	chunk(9, "9\r\n");
	chunk(10, "a\r\n");
	chunk(15, "f\r\n");
	chunk(16, "10\r\n");
	chunk(255, "ff\r\n");
	chunk(256, "100\r\n");
	chunk(4096, "1000\r\n");
	chunk(65535, "ffff\r\n");
	chunk(0xffffffffu, "ffffffff\r\n");
	chunk((size_t)0x100000000ULL, "100000000\r\n");
	chunk((size_t)0x123456789abcdef0ULL, "123456789abcdef0\r\n");
	chunk(SIZE_MAX, "ffffffffffffffff\r\n");	/* 18 bytes: the documented maximum */
}

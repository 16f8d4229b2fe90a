/* libFuzzer harness: worker/http.c's head helpers behind a strict llhttp parser. */

/*
 * The helpers are called the way the worker calls them.  The first byte
 * picks request or response and how the input is cut into reads; the rest
 * is fed to a strict llhttp parser whose callbacks collect spans with head_field()/head_value().
 * At every end of head, the spans must lie in the input and match what
 * llhttp reported, and the Connection tokens, hop-by-hop test, bare CR/LF
 * scan and token test must agree with plain reference checks.  Chunk
 * headers are written for sizes taken from the input and read back.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llhttp.h"
#include "worker/http.h"
#include "tests/fuzz/common.h"

struct fuzz_http {
	const char	*base;
	size_t		 len;
	struct head	 h;
	size_t		 names, values;	/* bytes llhttp reported */
};

static struct fuzz_http	 F;	/* struct head is large: not on the stack */

static int
fh_begin(llhttp_t *p)
{
	head_reset(&F.h);
	F.names = F.values = 0;
	return 0;
}

static int
fh_field(llhttp_t *p, const char *at, size_t len)
{
	F.names += len;
	return head_field(&F.h, F.base, at, len, 100) == -1 ? -1 : 0;
}

static int
fh_field_done(llhttp_t *p)
{
	head_field_done(&F.h);
	return 0;
}

static int
fh_value(llhttp_t *p, const char *at, size_t len)
{
	F.values += len;
	head_value(&F.h, F.base, at, len);
	return 0;
}

static int
fh_value_done(llhttp_t *p)
{
	F.h.in_value = 1;
	return 0;
}

/* The reference bare CR/LF scan: a byte at a time. */
static int
ref_bare_crlf(const char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return 1;
		if (p[i] == '\r' && i + 1 < len && p[i + 1] != '\n')
			return 1;
	}
	return 0;
}

static int
ref_is_token(const char *p, size_t len)
{
	size_t	i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)p[i]) &&
		    (p[i] == '\0' || strchr("!#$%&'*+-.^_`|~", p[i]) == NULL))
			return 0;
	return 1;
}

static int
fh_headers_done(llhttp_t *p)
{
	struct conn_tokens	 ct;
	size_t			 names = 0, values = 0, end = 0, e;
	int			 i, k, hop;

	for (i = 0; i < F.h.n; i++) {
		const struct hfield *f = &F.h.f[i];

		/* an empty name is llhttp 8's to let through, the worker's to refuse */
		if ((size_t)f->name.off + f->name.len > F.len ||
		    (size_t)f->value.off + f->value.len > F.len)
			abort();
		names += f->name.len;
		values += f->value.len;
		e = (size_t)f->value.off + f->value.len;
		if (e > end)
			end = e;
		if (http_is_token(F.base + f->name.off, f->name.len) !=
		    ref_is_token(F.base + f->name.off, f->name.len))
			abort();
	}
	if (names != F.names || values != F.values)
		abort();
	http_conn_tokens(F.base, &F.h, &ct);
	if (ct.n < 0 || ct.n > HTTP_CONN_TOKENS)
		abort();
	for (k = 0; k < ct.n; k++) {
		if (ct.t[k][0] == '\0' || strlen(ct.t[k]) > 63)
			abort();
		for (i = 0; ct.t[k][i] != '\0'; i++)
			if (isupper((unsigned char)ct.t[k][i]) ||
			    strchr(", \t", ct.t[k][i]) != NULL)
				abort();
	}
	for (i = 0; i < F.h.n; i++) {
		const struct hfield *f = &F.h.f[i];

		hop = http_hop_by_hop(F.base, f->name, &ct);
		/* Connection itself, and every name it lists whole, must go */
		if (span_ieq(F.base, f->name, "connection") && !hop)
			abort();
		for (k = 0; k < ct.n; k++)
			if (f->name.len == strlen(ct.t[k]) &&
			    strncasecmp(F.base + f->name.off, ct.t[k],
			    f->name.len) == 0 && !hop)
				abort();
	}
	end = end + 4 < F.len ? end + 4 : F.len;
	if (http_bare_crlf(F.base, end) != ref_bare_crlf(F.base, end))
		abort();
	return 0;
}

/* Write a chunk header for n and read it back. */
static void
fuzz_chunk(uint64_t n)
{
	char		 buf[24], *endp;
	size_t		 w;

	memset(buf, 'x', sizeof(buf));
	w = http_chunk_header(buf, (size_t)n);
	if (w < 3 || w > 18 || buf[w - 2] != '\r' || buf[w - 1] != '\n' ||
	    buf[w] != 'x')
		abort();
	buf[w - 2] = '\0';
	if (strtoull(buf, &endp, 16) != n || *endp != '\0' ||
	    (buf[0] == '0' && n != 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	llhttp_settings_t	 s;
	llhttp_t		 p;
	llhttp_errno_t		 e = HPE_OK;
	uint64_t		 n;
	size_t			 off, step;
	uint8_t			 sel;

	if (size < 1)
		return 0;
	sel = data[0];
	F.base = (const char *)data + 1;
	F.len = size - 1;

	llhttp_settings_init(&s);
	s.on_message_begin = fh_begin;
	s.on_header_field = fh_field;
	s.on_header_field_complete = fh_field_done;
	s.on_header_value = fh_value;
	s.on_header_value_complete = fh_value_done;
	s.on_headers_complete = fh_headers_done;
	llhttp_init(&p, sel & 1 ? HTTP_RESPONSE : HTTP_REQUEST, &s);
	head_reset(&F.h);
	/* reads of 1..64 bytes, or the whole input at once */
	step = sel >> 2 == 0 ? F.len : (size_t)(sel >> 2);
	for (off = 0; off < F.len && e == HPE_OK; off += step) {
		size_t	chunk = F.len - off < step ? F.len - off : step;

		e = llhttp_execute(&p, F.base + off, chunk);
	}
	if (e == HPE_OK)
		(void)llhttp_finish(&p);

	fuzz_chunk(0);
	for (off = 0; off + 8 <= F.len && off < 64; off += 8) {
		memcpy(&n, F.base + off, sizeof(n));
		fuzz_chunk(n);
		fuzz_chunk(n >> (n & 63));
	}
	return 0;
}

/* libFuzzer harness: worker/h1.c's body re-framer (responses in upstream.c, request bodies in request.c), fed in steps bounded by the room. */

/*
 * From the input: a body, the backend's framing (Content-Length, chunked
 * with chunk sizes, extensions and a trailer of the input's choosing, or
 * close-delimited) and the client's (passed as it is, or normalized
 * chunks), the out buffer's capacity, and how the client drains it.  The
 * wire bytes go through a strict llhttp response parser whose callbacks are
 * upstream.c's: the head pauses the parser, then each step is fed at most
 * h1_frame_step() bytes.  Asserted: the framer never lacks room (it would
 * return -1, which upstream.c treats as a bug), and what the client got
 * decodes, by a strict decoder of our own, to exactly the body.  A mode
 * feeds the input as a chunked body as it is (mostly invalid): no room
 * error whatever llhttp accepts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llhttp.h"
#include "worker/h1.h"
#include "tests/fuzz/common.h"

static struct h1_framer	 FR;
static int		 headed, done;

static int
rf_headers(llhttp_t *p)
{
	headed = 1;
	return HPE_PAUSED;
}

static int
rf_body(llhttp_t *p, const char *at, size_t n)
{
	if (h1_frame_data(&FR, at, n) == -1)
		abort();
	return 0;
}

static int
rf_chunk(llhttp_t *p)
{
	if (h1_frame_chunk(&FR, p->content_length) == -1)
		abort();
	return 0;
}

static int
rf_chunk_end(llhttp_t *p)
{
	if (h1_frame_chunk_end(&FR) == -1)
		abort();
	return 0;
}

static int
rf_done(llhttp_t *p)
{
	if (h1_frame_end(&FR) == -1)
		abort();
	done = 1;
	return HPE_PAUSED;
}

static uint32_t	 rng;

static uint32_t
rnd(uint32_t n)
{
	rng = rng * 1103515245u + 12345u;
	return n ? (rng >> 8) % n : 0;
}

/* Strict decoder of normalized chunks: lowercase hex, no leading zero, no extension. */
static int
dechunk(const unsigned char *p, size_t n, unsigned char *dst, size_t *dn)
{
	size_t	i = 0;

	*dn = 0;
	for (;;) {
		size_t	sz = 0, start = i;

		while (i < n && ((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
			sz = sz * 16 + (size_t)(p[i] <= '9' ? p[i] - '0' : p[i] - 'a' + 10);
			i++;
		}
		if (i == start || (p[start] == '0' && i - start > 1))
			return -1;
		if (i + 2 > n || p[i] != '\r' || p[i + 1] != '\n')
			return -1;
		i += 2;
		if (sz == 0)
			return i + 2 == n && p[i] == '\r' && p[i + 1] == '\n' ? 0 : -1;
		if (i + sz + 2 > n || p[i + sz] != '\r' || p[i + sz + 1] != '\n')
			return -1;
		memcpy(dst + *dn, p + i, sz);
		*dn += sz;
		i += sz + 2;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	llhttp_settings_t	 s;
	llhttp_t		 p;
	unsigned char		*wire, *got, *dec;
	const unsigned char	*body;
	size_t			 blen, wlen = 0, glen = 0, dlen, off = 0, cap;
	struct buf		 out;
	int			 from, raw;
	llhttp_errno_t		 e;

	if (size < 4)
		return 0;
	from = data[0] % 3;			/* 0 CL, 1 chunked, 2 close-delimited */
	raw = from == 1 && (data[0] & 0x80);
	FR.to = from == 0 ? BODY_LENGTH : (data[0] & 4) ? BODY_CHUNKED : BODY_EOF;
	FR.from_eof = from == 2;
	FR.chunk_open = 0;
	cap = 128 + (size_t)data[1] * 128;	/* 128 .. 32768 */
	rng = data[2] | (uint32_t)data[3] << 8;
	body = data + 4;
	blen = size - 4;

	wire = malloc(blen * 20 + 256);
	got = malloc(blen * 8 + 64 * 1024);
	dec = malloc(blen + 64 * 1024);
	out.data = malloc(cap);
	if (wire == NULL || got == NULL || dec == NULL || out.data == NULL)
		abort();
	out.cap = cap;
	out.rpos = out.wpos = 0;
	FR.out = &out;

	/* the wire: a head, then the body in the backend's framing */
	if (from == 0)
		wlen = (size_t)sprintf((char *)wire, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", blen);
	else if (from == 1)
		wlen = (size_t)sprintf((char *)wire, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	else
		wlen = (size_t)sprintf((char *)wire, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
	if (from == 1 && !raw) {
		size_t	i = 0;

		while (i < blen) {
			size_t	k = 1 + rnd(rnd(2) ? 40000 : 300);

			if (k > blen - i)
				k = blen - i;
			wlen += (size_t)sprintf((char *)wire + wlen, rnd(4) == 0 ? "%04zX" : "%zx", k);
			if (rnd(8) == 0)
				wlen += (size_t)sprintf((char *)wire + wlen, ";ext=\"v\"");
			memcpy(wire + wlen, "\r\n", 2);
			memcpy(wire + wlen + 2, body + i, k);
			memcpy(wire + wlen + 2 + k, "\r\n", 2);
			wlen += k + 4;
			i += k;
		}
		wlen += (size_t)sprintf((char *)wire + wlen, rnd(4) == 0 ? "0\r\nX-T: 1\r\n\r\n" : "0\r\n\r\n");
	} else {
		memcpy(wire + wlen, body, blen);
		wlen += blen;
	}

	llhttp_settings_init(&s);
	s.on_headers_complete = rf_headers;
	s.on_body = rf_body;
	s.on_chunk_header = rf_chunk;
	s.on_chunk_complete = rf_chunk_end;
	s.on_message_complete = rf_done;
	llhttp_init(&p, HTTP_RESPONSE, &s);
	headed = done = 0;
	e = HPE_OK;
	while (!done && e == HPE_OK) {
		size_t	n = wlen - off, step = h1_frame_step(&out), take;

		if (headed && n > step)
			n = step;
		if (n > 0 && rnd(3) == 0)
			n = 1 + rnd((uint32_t)n);		/* a short read */
		if (off == wlen && headed)
			n = 0;
		e = llhttp_execute(&p, (const char *)wire + off, n);
		if (e == HPE_PAUSED) {
			off = (size_t)(llhttp_get_error_pos(&p) - (const char *)wire);
			llhttp_resume(&p);
			e = HPE_OK;
			if (headed && !done && off == wlen) {
				/* as upstream.c: step past a head that ends the input */
				e = llhttp_execute(&p, (const char *)wire + off, 0);
				if (e == HPE_PAUSED) {
					llhttp_resume(&p);
					e = HPE_OK;
				}
			}
		} else if (e == HPE_OK)
			off += n;
		/* the client takes some of what is there (all of it when nothing fits) */
		take = buf_len(&out);
		if (h1_frame_step(&out) != 0 && take > 0)
			take = rnd((uint32_t)take + 1);
		memcpy(got + glen, out.data + out.rpos, take);
		glen += take;
		out.rpos += take;
		buf_compact(&out);
		if (off == wlen && !done && e == HPE_OK && headed) {
			if (from != 2)
				break;			/* a short body (raw mode): nothing more to check */
			while (buf_room(&out) < 5) {	/* the last chunk waits for room, as upstream.c does */
				memcpy(got + glen, out.data + out.rpos, buf_len(&out));
				glen += buf_len(&out);
				out.rpos = out.wpos;
				buf_compact(&out);
			}
			e = llhttp_finish(&p);
			if (e == HPE_PAUSED)
				e = HPE_OK;
			if (!done)
				abort();		/* a close-delimited body ends at the close */
		}
	}
	memcpy(got + glen, out.data + out.rpos, buf_len(&out));
	glen += buf_len(&out);
	if (!raw) {
		if (!done || e != HPE_OK)
			abort();			/* a well-framed body must parse */
		if (FR.to == BODY_CHUNKED) {
			if (dechunk(got, glen, dec, &dlen) == -1 || dlen != blen ||
			    memcmp(dec, body, blen) != 0)
				abort();
		} else if (glen != blen || memcmp(got, body, blen) != 0)
			abort();
	}
	free(wire);
	free(got);
	free(dec);
	free(out.data);
	return 0;
}

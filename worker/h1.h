/* The HTTP/1 codec: pure checks of request and response heads, and the heads routerd writes in their place. */
#ifndef WORKER_H1_H
#define WORKER_H1_H

#include <stddef.h>
#include <stdint.h>

#include "llhttp.h"

#include "lib/buf.h"
#include "worker/http.h"
#include "worker/worker.h"

/* What a request head says, once h1_request_check() found it sound. */
struct h1_req {
	uint8_t		 method;	/* llhttp_method_t */
	unsigned	 http10:1, is_head:1, idempotent:1, expect_100:1,
			 abs_slash:1;	/* absolute-form without a path: "/" first */
	enum body_kind	 body;		/* BODY_NONE, BODY_LENGTH or BODY_CHUNKED */
	uint64_t	 content_length;
	struct span	 host;		/* Host, or the absolute-form's authority */
	int		 nhost;		/* 0: none (HTTP/1.0), 1: Host field, 2: authority */
	struct span	 path;		/* origin-form target (after the authority) */
};

/*
 * Checks a complete request head, as llhttp (strict) parsed it into p and
 * h over base[0, wpos), against DESIGN.md's errors table: version, method,
 * field syntax, bare CR/LF, framing (CL, TE), body_max (0 = none), Host,
 * request-target, Expect.  Returns 0 and fills r, or the status to answer
 * (400, 405, 413, 417, 501, 505).  Pure: no allocation, no I/O.
 */
int	 h1_request_check(const llhttp_t *p, const char *base, size_t wpos,
	    const struct head *h, uint64_t body_max, struct h1_req *r);

/*
 * Writes the upstream request head for r into f: request line in
 * origin-form, Host, the client's fields less hop-by-hop ones and those
 * routerd sets, X-Forwarded-For (the client's chain, then ip),
 * X-Forwarded-Proto, X-Request-Id, and the framing.  Never writes past
 * f->cap: returns 0, or -1 if the head does not fit (nothing is kept).
 */
int	 h1_request_head(struct buf *f, const char *base, const struct head *h,
	    const struct h1_req *r, const struct conn_tokens *ct, const char *ip,
	    const char *rid);

/*
 * Lines that llhttp 8 lets through leniently (a trailer section, a head
 * read in pieces): 1 if p[0, n) holds a CR not followed by LF, an LF
 * without its CR, or a line starting with SP/HTAB (obs-fold).  *prev is
 * the byte before p, updated so that the check carries over reads.
 */
int	 h1_lines_bad(char *prev, const char *p, size_t n);

/* The single field called lname: 1 found (its value in *v), 0 none, -1 more than one. */
int	 h1_find(const char *base, const struct head *h, const char *lname, struct span *v);

/*
 * Checks a final (>= 200) response head from a backend: a status llhttp
 * read as 100..599, HTTP/1.x, not CL and chunked together, no NUL or
 * CR/LF left in a value (llhttp 8 unfolds obs-fold).  0 or -1.
 */
int	 h1_response_check(const llhttp_t *p, const char *base, const struct head *h);

/* How a response goes to the client. */
struct h1_resp {
	int		 status;
	enum body_kind	 body;		/* framing towards the client */
	unsigned	 nobody:1, close:1, http10:1;
	const char	*extra;		/* our own header lines (each ending in CRLF), NULL none */
};

/*
 * Writes the response head for the client into o: the status line (the
 * backend's reason if sane), the backend's fields less hop-by-hop ones
 * (and Content-Length unless it is passed through), then the framing and
 * Connection fields r asks for.  Never writes past o->cap: 0, or -1 if it
 * does not fit (o is left as it was).
 */
int	 h1_response_head(struct buf *o, const char *base, const struct head *h,
	    const struct h1_resp *r, const struct conn_tokens *ct);

/*
 * Re-framing a response body for the client, piece by piece as llhttp
 * reports it, into a buffer that refuses to grow.  to is the framing
 * towards the client: BODY_LENGTH and BODY_EOF pass the bytes as they are,
 * BODY_CHUNKED writes normalized chunks (no extensions, no trailers); a
 * close-delimited body (from_eof) becomes one chunk per piece.  struct
 * h1_framer is in worker/worker.h (each upstream connection has one).
 */

/*
 * The room a parse step must leave: one step may add to its input the
 * rest of a chunk header begun in the step before (at most 18 bytes), a
 * chunk's CRLF and the last chunk.  A step fed at most h1_frame_step()
 * bytes never needs more room than it has.
 */
#define H1_FRAME_SLACK	32
#define H1_FRAME_MARGIN	64

/* How many input bytes one parse step may take with out as it is (0: wait for room). */
size_t	 h1_frame_step(const struct buf *out);
/* Each returns 0, or -1 if out has no room for it (nothing written): a caller's bug, not input. */
int	 h1_frame_chunk(struct h1_framer *, uint64_t size);	/* a chunk of size begins */
int	 h1_frame_data(struct h1_framer *, const char *, size_t);
int	 h1_frame_chunk_end(struct h1_framer *);
int	 h1_frame_end(struct h1_framer *);			/* the body is complete */

#endif

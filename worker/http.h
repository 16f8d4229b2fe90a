/* HTTP/1.1 head helpers on llhttp spans: collecting fields, hop-by-hop rules, chunk framing. */
#ifndef WORKER_HTTP_H
#define WORKER_HTTP_H

#include <stddef.h>

#include "worker/worker.h"

#define HTTP_CONN_TOKENS	32

/* Span collection for llhttp callbacks; base is the input buffer's start.  0 or -1 if too many fields. */
void	 head_reset(struct head *);
int	 head_field(struct head *, const char *base, const char *at, size_t len, int max_fields);
void	 head_field_done(struct head *);
void	 head_value(struct head *, const char *base, const char *at, size_t len);

/* Case-insensitive compare of a span with a NUL-terminated lower-case name. */
int	 span_ieq(const char *base, struct span, const char *lname);
int	 span_eq(const char *base, struct span, const char *s);

/* The tokens listed in every Connection field of h (lower-cased, truncated to 63 chars). */
struct conn_tokens {
	char	 t[HTTP_CONN_TOKENS][64];
	int	 n;
	int	 close, keepalive;
	int	 overflow;	/* more tokens than we keep: the head is refused */
};
void	 http_conn_tokens(const char *base, const struct head *, struct conn_tokens *);

/* 1 if the field must not be forwarded: hop-by-hop or named in Connection. */
int	 http_hop_by_hop(const char *base, struct span name, const struct conn_tokens *);

/* 1 if the head bytes [0, len) hold a CR not followed by LF or an LF not preceded by CR. */
int	 http_bare_crlf(const char *p, size_t len);

/* 1 if every byte of s is a tchar (RFC 9110 token). */
int	 http_is_token(const char *p, size_t len);

/* Appends "SIZE\r\n" in hex for a chunk of n bytes; returns bytes written (buffer must have 18). */
size_t	 http_chunk_header(char *dst, size_t n);

#endif

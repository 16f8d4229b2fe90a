/* Shared declarations of fakebe, the fake OpenAI-compatible backend that routerd's tests proxy to. */

#ifndef FAKEBE_H
#define FAKEBE_H

#include <sys/uio.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "llhttp.h"

#define FB_RBUF		65536		/* socket read size */
#define FB_IOCHUNK	65536		/* write size of generated bodies */
#define FB_URL_MAX	16384		/* longer request-target: 414 */
#define FB_HDR_BYTES	(256 * 1024)	/* larger header block: 431 */
#define FB_HDR_COUNT	1024		/* more fields: 431 */
#define FB_JSON_MAX	(1024 * 1024)	/* larger API request body: 413 */
#define FB_NAME_MAX	256

/* Content-Length argument of resp_head() that is not a length. */
#define FB_CHUNKED	(-1LL)		/* chunked (close-delimited for HTTP/1.0) */
#define FB_NOBODY	(-2LL)		/* 204/304: no body, no framing */
#define FB_CLOSE	(-3LL)		/* close-delimited: no CL, no TE, close */
/* 204/304 with a Content-Length of n but no body (n >= 0). */
#define FB_NOBODY_CL(n)	(-16LL - (long long)(n))

enum fb_fault {
	FAULT_NONE,
	FAULT_500,
	FAULT_HANG,
	FAULT_CLOSE,
	FAULT_SLOW
};

enum fb_route {
	ROUTE_DEFAULT,
	ROUTE_HEALTH,
	ROUTE_MODELS,
	ROUTE_CHAT,
	ROUTE_COMPLETIONS,
	ROUTE_EMBEDDINGS,
	ROUTE_BYTES,
	ROUTE_UPLOAD,
	ROUTE_ECHO,
	ROUTE_HEADERS,
	ROUTE_SSE,
	ROUTE_SLOW,
	ROUTE_HANG,
	ROUTE_STATUS,
	ROUTE_CLOSE,
	ROUTE_BAD,
	ROUTE_STATS,
	ROUTE_RESET,
	ROUTE_FAULT,
	ROUTE_FAULT500,		/* fault mode 500 replaced the route */
	ROUTE_METHOD,		/* known path, wrong method: 405 */
	ROUTE_EARLY		/* /bad?kind=early_answer*: already answered */
};

/* One received header field; offsets into fb_req.hbuf, NUL-terminated there. */
struct fb_hdr {
	size_t		 noff, nlen;
	size_t		 voff, vlen;
};

/* The request being parsed on a connection; reset by req_reset() per message. */
struct fb_req {
	char		 url[FB_URL_MAX + 1];	/* raw request-target */
	size_t		 urllen;
	char		 pathbuf[FB_URL_MAX + 1];
	const char	*path;			/* origin-form path, no query */
	const char	*query;			/* after '?', or "" */

	char		*hbuf;			/* header arena */
	size_t		 hlen, hcap;
	struct fb_hdr	*hdrs;
	size_t		 nhdrs, hdrcap;
	int		 hstate;		/* 0 between, 1 name, 2 value */

	enum fb_route	 route;
	const char	*allow;			/* Allow of a 405 */
	int		 control;		/* /__ path: exempt from faults */
	int		 method;		/* llhttp_method_t */
	int		 vmaj, vmin;
	int		 keepalive;		/* we may keep the connection */
	int		 head_only;		/* HEAD: head without body */
	int		 started;		/* response head sent */
	int		 chunked;		/* response is chunked */
	int		 status;		/* response status, for the log */
	long		 slow_ms;		/* fault slow:MS */

	uint64_t	 body_bytes;		/* request body bytes seen */
	EVP_MD_CTX	*sha;			/* /upload */
	char		*jbuf;			/* API request body */
	size_t		 jlen, jcap;
	int		 jtoolarge;
};

/* One client connection, owned by its thread. */
struct fb_conn {
	int		 fd;
	const char	*name;		/* X-Backend of the listener */
	llhttp_t	 parser;
	int		 close_after;	/* close once the current response is out */
	int		 abortive;	/* close at once, unread data and all */
	int		 hang;		/* never answer; wait for the peer to close */
	int		 errstatus;	/* our own parse limit hit: 414 or 431 */
	struct fb_req	 req;
	char		 rbuf[FB_RBUF];
};

struct fb_stats {
	atomic_ullong	 connections;	/* accepted since start or reset */
	atomic_ullong	 requests;	/* non-control requests */
	atomic_ullong	 health;	/* of which GET /health */
	atomic_llong	 open;		/* connections open now */
};

/* fakebe.c */
extern struct fb_stats	 fb_stats;
extern atomic_int	 fb_fault;
extern atomic_long	 fb_fault_ms;
extern atomic_ullong	 fb_seq;
extern int		 fb_debug;
extern char		**fb_models;
extern size_t		 fb_nmodels;
int		 fault_parse(const char *, int *, long *);
void		 fault_name(char *, size_t);
void		 fb_msleep(long);

/* conn.c */
void		*conn_main(void *);
int		 conn_write(struct fb_conn *, const void *, size_t);
int		 conn_writev(struct fb_conn *, struct iovec *, int);
int		 resp_head_fmt(struct fb_conn *, int, const char *, long long,
		    const char *, char *, size_t);
int		 resp_head(struct fb_conn *, int, const char *, long long,
		    const char *);
int		 resp_body(struct fb_conn *, const void *, size_t);
int		 resp_end(struct fb_conn *);
int		 resp_json(struct fb_conn *, int, json_t *, const char *);
const char	*req_header(const struct fb_req *, const char *);
int		 req_query(const struct fb_req *, const char *, char *, size_t);
long long	 req_query_ll(const struct fb_req *, const char *, long long);
long		 req_delay_ms(const struct fb_req *, long);
/* ?query= or the header field, in ms (0 to an hour), else def. */
long		 req_ms(const struct fb_req *, const char *query, const char *header, long def);
json_t		*fb_jstr(const char *, size_t);

/* routes.c */
void		 routes_init(void);
int		 route_begin(struct fb_conn *);
int		 route_body(struct fb_conn *, const char *, size_t);
int		 route_end(struct fb_conn *);

/* openai.c */
int		 oa_models(struct fb_conn *);
int		 oa_end(struct fb_conn *);
int		 oa_error(struct fb_conn *, int, const char *, const char *,
		    const char *);

#endif /* FAKEBE_H */

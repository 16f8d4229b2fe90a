/* fakebe's endpoints other than the OpenAI API: bytes, upload, echo, headers, SSE, faults, broken answers, stats. */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fakebe.h"

#define M_GET	0x01	/* GET and HEAD */
#define M_POST	0x02
#define M_PUT	0x04
#define M_ANY	0xff

static const struct {
	const char	*path;
	enum fb_route	 route;
	int		 methods;
	const char	*allow;		/* Allow field of the 405 */
} routes[] = {
	{ "/health",			ROUTE_HEALTH,		M_GET,	"GET, HEAD" },
	{ "/v1/models",			ROUTE_MODELS,		M_GET,	"GET, HEAD" },
	{ "/v1/chat/completions",	ROUTE_CHAT,		M_POST,	"POST" },
	{ "/v1/completions",		ROUTE_COMPLETIONS,	M_POST,	"POST" },
	{ "/v1/embeddings",		ROUTE_EMBEDDINGS,	M_POST,	"POST" },
	{ "/bytes",			ROUTE_BYTES,		M_GET,	"GET, HEAD" },
	{ "/upload",			ROUTE_UPLOAD,		M_POST | M_PUT, "POST, PUT" },
	{ "/echo",			ROUTE_ECHO,		M_ANY,	NULL },
	{ "/headers",			ROUTE_HEADERS,		M_ANY,	NULL },
	{ "/sse",			ROUTE_SSE,		M_ANY,	NULL },
	{ "/slow",			ROUTE_SLOW,		M_ANY,	NULL },
	{ "/hang",			ROUTE_HANG,		M_ANY,	NULL },
	{ "/status",			ROUTE_STATUS,		M_ANY,	NULL },
	{ "/close",			ROUTE_CLOSE,		M_ANY,	NULL },
	{ "/bad",			ROUTE_BAD,		M_ANY,	NULL },
	{ "/__stats",			ROUTE_STATS,		M_GET,	"GET, HEAD" },
	{ "/__reset",			ROUTE_RESET,		M_POST,	"POST" },
	{ "/__fault",			ROUTE_FAULT,		M_POST,	"POST" },
};

/* Byte i of every generated body; period 256, so each 64 KiB block is alike. */
#define PATTERN(i)	((unsigned char)(((i) * 31 + 7) & 0xff))

static unsigned char	 pattern[FB_IOCHUNK];

static int	method_bit(int);
static int	early_answer(struct fb_conn *, int);
static int	send_bytes(struct fb_conn *);
static int	send_sse(struct fb_conn *);
static int	send_headers(struct fb_conn *);
static int	send_status(struct fb_conn *);
static int	send_bad(struct fb_conn *);
static int	send_upload(struct fb_conn *);
static int	send_default(struct fb_conn *);
static int	send_stats(struct fb_conn *);
static int	send_fault(struct fb_conn *);
static int	raw_close(struct fb_conn *, const char *, size_t);

/* Fill the body pattern; main() calls this before any thread starts. */
void
routes_init(void)
{
	size_t	 i;

	for (i = 0; i < sizeof(pattern); i++)
		pattern[i] = PATTERN(i);
}

static int
method_bit(int m)
{
	switch (m) {
	case HTTP_GET:
	case HTTP_HEAD:
		return M_GET;
	case HTTP_POST:
		return M_POST;
	case HTTP_PUT:
		return M_PUT;
	default:
		return 0x80;
	}
}

/*
 * Called once the request head is parsed: count it, pick its route, apply
 * the fault mode, and start the responses that go out before the body is
 * read (/echo, early answers).  Returns 0, or -1 to cut the connection.
 */
int
route_begin(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	const char	*ex;
	char		 kind[32];
	size_t		 i;
	int		 fault, has_body;

	r->route = ROUTE_DEFAULT;
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(r->path, routes[i].path) != 0)
			continue;
		r->route = routes[i].route;
		if (!(routes[i].methods & method_bit(r->method))) {
			r->route = ROUTE_METHOD;
			r->allow = routes[i].allow;
		}
		break;
	}
	r->control = strncmp(r->path, "/__", 3) == 0;

	if (!r->control) {
		atomic_fetch_add(&fb_stats.requests, 1);
		if (r->route == ROUTE_HEALTH)
			atomic_fetch_add(&fb_stats.health, 1);
		fault = atomic_load(&fb_fault);
		switch (fault) {
		case FAULT_CLOSE:
			c->abortive = 1;
			c->close_after = 1;
			return 0;
		case FAULT_500:
			r->route = ROUTE_FAULT500;
			break;
		case FAULT_HANG:
			r->route = ROUTE_HANG;
			break;
		case FAULT_SLOW:
			r->slow_ms = atomic_load(&fb_fault_ms);
			break;
		default:
			break;
		}
	}

	if (r->route == ROUTE_BAD) {
		if (!req_query(r, "kind", kind, sizeof(kind)))
			kind[0] = '\0';
		if (strcmp(kind, "early_answer") == 0)
			return early_answer(c, 0);
		if (strcmp(kind, "early_answer_close") == 0)
			return early_answer(c, 1);
	}

	/* A client that waits for 100 Continue gets it once, if 1.1. */
	has_body = (c->parser.flags & F_CHUNKED) ||
	    ((c->parser.flags & F_CONTENT_LENGTH) &&
	    c->parser.content_length > 0);
	ex = req_header(r, "Expect");
	if (has_body && ex != NULL && strcasecmp(ex, "100-continue") == 0 &&
	    r->vmaj == 1 && r->vmin >= 1 && r->route != ROUTE_HANG) {
		if (conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) == -1)
			return -1;
	}

	switch (r->route) {
	case ROUTE_UPLOAD:
		if ((r->sha = EVP_MD_CTX_new()) == NULL ||
		    EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL) != 1)
			return -1;
		break;
	case ROUTE_ECHO:
		fb_msleep(r->slow_ms);
		/* Same framing as the request: its length, else chunked. */
		ex = req_header(r, "Content-Type");
		if (ex == NULL || strlen(ex) > 256)
			ex = "application/octet-stream";
		if (c->parser.flags & F_CHUNKED)
			return resp_head(c, 200, ex, FB_CHUNKED, NULL);
		if (c->parser.flags & F_CONTENT_LENGTH)
			return resp_head(c, 200, ex,
			    (long long)c->parser.content_length, NULL);
		return resp_head(c, 200, ex, 0, NULL);
	default:
		break;
	}
	return 0;
}

/*
 * /bad?kind=early_answer[_close]: answer 200 before reading the request
 * body.  early_answer then reads and discards the body and keeps serving
 * the connection; early_answer_close closes (after a lingering drain).
 */
static int
early_answer(struct fb_conn *c, int close_it)
{
	struct fb_req	*r = &c->req;

	r->route = ROUTE_EARLY;
	if (close_it)
		r->keepalive = 0;
	return resp_json(c, 200, json_pack("{s:s,s:b}", "backend", c->name,
	    "early", 1), NULL);
}

/* A piece of request body: hash it, echo it, keep it (API) or drop it.  0 or -1. */
int
route_body(struct fb_conn *c, const char *at, size_t len)
{
	struct fb_req	*r = &c->req;
	char		*nb;
	size_t		 ncap;

	switch (r->route) {
	case ROUTE_UPLOAD:
		return EVP_DigestUpdate(r->sha, at, len) == 1 ? 0 : -1;
	case ROUTE_ECHO:
		return resp_body(c, at, len);
	case ROUTE_CHAT:
	case ROUTE_COMPLETIONS:
	case ROUTE_EMBEDDINGS:
		if (r->jtoolarge)
			return 0;
		if (r->jlen + len > FB_JSON_MAX) {
			r->jtoolarge = 1;
			return 0;
		}
		if (r->jlen + len > r->jcap) {
			ncap = r->jcap ? r->jcap : 4096;
			while (ncap < r->jlen + len)
				ncap *= 2;
			if ((nb = realloc(r->jbuf, ncap)) == NULL)
				return -1;
			r->jbuf = nb;
			r->jcap = ncap;
		}
		memcpy(r->jbuf + r->jlen, at, len);
		r->jlen += len;
		return 0;
	default:
		return 0;
	}
}

/*
 * The whole request is in: answer it (or hang, or break the connection on
 * purpose).  Returns 0, or -1 to cut the connection.
 */
int
route_end(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	int		 rv;

	switch (r->route) {
	case ROUTE_ECHO:
		return resp_end(c);
	case ROUTE_EARLY:
		return 0;
	case ROUTE_HANG:
		c->hang = 1;
		return 0;
	default:
		break;
	}
	fb_msleep(r->slow_ms);

	switch (r->route) {
	case ROUTE_HEALTH:
		return resp_json(c, 200, json_pack("{s:s,s:s}", "status", "ok",
		    "backend", c->name), NULL);
	case ROUTE_MODELS:
		return oa_models(c);
	case ROUTE_CHAT:
	case ROUTE_COMPLETIONS:
	case ROUTE_EMBEDDINGS:
		return oa_end(c);
	case ROUTE_BYTES:
		return send_bytes(c);
	case ROUTE_UPLOAD:
		return send_upload(c);
	case ROUTE_HEADERS:
		return send_headers(c);
	case ROUTE_SSE:
		return send_sse(c);
	case ROUTE_SLOW:
		fb_msleep(req_query_ll(r, "ms", 0));
		return resp_json(c, 200, json_pack("{s:s,s:I}", "backend",
		    c->name, "slept_ms", (json_int_t)req_query_ll(r, "ms", 0)),
		    NULL);
	case ROUTE_STATUS:
		return send_status(c);
	case ROUTE_CLOSE:
		r->keepalive = 0;
		return send_default(c);
	case ROUTE_BAD:
		return send_bad(c);
	case ROUTE_STATS:
		return send_stats(c);
	case ROUTE_RESET:
		atomic_store(&fb_stats.connections, 0);
		atomic_store(&fb_stats.requests, 0);
		atomic_store(&fb_stats.health, 0);
		return send_stats(c);
	case ROUTE_FAULT:
		return send_fault(c);
	case ROUTE_FAULT500:
		return resp_json(c, 500, json_pack("{s:{s:s,s:s,s:s},s:s}",
		    "error", "message", "fault injected", "type", "server_error",
		    "code", "fault", "backend", c->name), NULL);
	case ROUTE_METHOD:
		{
			char	allow[128];

			snprintf(allow, sizeof(allow), "Allow: %s\r\n",
			    r->allow != NULL ? r->allow : "GET");
			rv = resp_json(c, 405, json_pack("{s:{s:s,s:s,s:n}}",
			    "error", "message", "method not allowed", "type",
			    "invalid_request_error", "code"), allow);
			return rv;
		}
	default:
		return send_default(c);
	}
}

#define FB_ONEWRITE_MAX	(64LL << 20)	/* largest /bytes?write=0 response */

/*
 * GET /bytes?n=N[&chunked=1][&framing=cl|chunked|close][&write=W][&chunk=C]:
 * N pattern bytes.  framing (default cl, or chunked with chunked=1): a
 * Content-Length, chunked, or close-delimited (no length, closed after).
 * Without write=, the head and then 64 KiB writes (the original behaviour);
 * write=0 sends head and whole body (chunk framing included) in one write;
 * write=W the head, then the body in writes of W bytes, each chunk its own
 * write.  chunk=C is the chunk size (default W, or 64 KiB).
 */
static int
send_bytes(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	long long	 n = req_query_ll(r, "n", 0), wsz, csz, clen, left, w, off;
	char		 framing[16], sz[32], *buf;
	size_t		 len, cap;
	int		 hl, rv;

	clen = req_query_ll(r, "chunked", 0) ? FB_CHUNKED : n;
	if (req_query(r, "framing", framing, sizeof(framing))) {
		if (strcmp(framing, "cl") == 0)
			clen = n;
		else if (strcmp(framing, "chunked") == 0)
			clen = FB_CHUNKED;
		else if (strcmp(framing, "close") == 0)
			clen = FB_CLOSE;
		else
			return resp_json(c, 400, json_pack("{s:{s:s,s:s}}",
			    "error", "message", "framing must be cl, chunked or "
			    "close", "type", "invalid_request_error"), NULL);
	}
	wsz = req_query_ll(r, "write", -1);
	csz = req_query_ll(r, "chunk", wsz > 0 ? wsz : FB_IOCHUNK);
	if (csz <= 0)
		csz = FB_IOCHUNK;
	if (wsz == 0 && n > FB_ONEWRITE_MAX)
		return resp_json(c, 400, json_pack("{s:{s:s,s:s}}", "error",
		    "message", "write=0 is for n up to 64 MiB", "type",
		    "invalid_request_error"), NULL);

	if (wsz != 0) {
		if (resp_head(c, 200, "application/octet-stream", clen,
		    NULL) == -1)
			return -1;
		if (r->head_only)
			return 0;
		if (wsz < 0) {
			for (left = n; left > 0; left -= w) {
				w = left < FB_IOCHUNK ? left : FB_IOCHUNK;
				if (resp_body(c, pattern, (size_t)w) == -1)
					return -1;
			}
			return resp_end(c);
		}
		/* W-byte writes; a chunk (csz bytes at most) never spans two */
		for (off = 0; off < n; off += w) {
			w = n - off < wsz ? n - off : wsz;
			if (r->chunked && w > csz)
				w = csz;
			if (w > FB_IOCHUNK - 256)
				w = FB_IOCHUNK - 256;
			if (resp_body(c, pattern + off % 256, (size_t)w) == -1)
				return -1;
		}
		return resp_end(c);
	}

	/* write=0: head, body and chunk framing in one buffer, one write */
	cap = 2048 + (r->head_only ? 0 : (size_t)n + ((size_t)n / csz + 2) * 24);
	if ((buf = malloc(cap)) == NULL)
		return -1;
	if ((hl = resp_head_fmt(c, 200, "application/octet-stream", clen, NULL,
	    buf, 2048)) == -1) {
		free(buf);
		return -1;
	}
	len = hl;
	for (off = 0; !r->head_only && off < n; off += w) {
		w = r->chunked && n - off > csz ? csz : n - off;
		if (r->chunked) {
			hl = snprintf(sz, sizeof(sz), "%llx\r\n", w);
			memcpy(buf + len, sz, hl);
			len += hl;
		}
		for (left = 0; left < w; left++)
			buf[len + left] = PATTERN(off + left);
		len += w;
		if (r->chunked) {
			memcpy(buf + len, "\r\n", 2);
			len += 2;
		}
	}
	if (!r->head_only && r->chunked) {
		memcpy(buf + len, "0\r\n\r\n", 5);
		len += 5;
	}
	rv = conn_write(c, buf, len);
	free(buf);
	return rv;
}

/* /sse?n=N&delay_ms=D: events "data: 1" .. "data: N", D ms apart. */
static int
send_sse(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	long long	 n = req_query_ll(r, "n", 5), i;
	long		 d = req_delay_ms(r, 20);
	char		 ev[64];
	int		 len;

	if (resp_head(c, 200, "text/event-stream", FB_CHUNKED,
	    "Cache-Control: no-cache\r\n") == -1)
		return -1;
	if (r->head_only)
		return 0;
	for (i = 1; i <= n; i++) {
		if (i > 1)
			fb_msleep(d);
		len = snprintf(ev, sizeof(ev), "data: %lld\n\n", i);
		if (resp_body(c, ev, len) == -1)
			return -1;
	}
	return resp_end(c);
}

/* /headers: the request line and every field, in order, as received. */
static int
send_headers(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	json_t		*j, *a;
	char		 ver[16];
	size_t		 i;

	snprintf(ver, sizeof(ver), "HTTP/%d.%d", r->vmaj, r->vmin);
	if ((a = json_array()) == NULL)
		return -1;
	for (i = 0; i < r->nhdrs; i++)
		json_array_append_new(a, json_pack("[o,o]",
		    fb_jstr(r->hbuf + r->hdrs[i].noff, r->hdrs[i].nlen),
		    fb_jstr(r->hbuf + r->hdrs[i].voff, r->hdrs[i].vlen)));
	j = json_pack("{s:s,s:o,s:s,s:o,s:s,s:I}",
	    "method", llhttp_method_name(r->method),
	    "path", fb_jstr(r->url, r->urllen),
	    "version", ver,
	    "headers", a,
	    "backend", c->name,
	    "body_bytes", (json_int_t)r->body_bytes);
	return resp_json(c, 200, j, NULL);
}

/*
 * /status?code=C[&cl=N]: status C (200-599) with a small JSON body; 204 and
 * 304 have none, and with cl=N say Content-Length: N all the same.
 */
static int
send_status(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	long long	 code = req_query_ll(r, "code", 200);
	long long	 cl = req_query_ll(r, "cl", -1);

	if (cl > (1LL << 50))
		cl = 1LL << 50;

	if (code < 200 || code > 599)
		return resp_json(c, 400, json_pack("{s:{s:s,s:s}}", "error",
		    "message", "code must be 200-599", "type",
		    "invalid_request_error"), NULL);
	if (code == 204 || code == 304) {
		if (resp_head(c, (int)code, NULL,
		    cl >= 0 ? FB_NOBODY_CL(cl) : FB_NOBODY, NULL) == -1)
			return -1;
		return 0;
	}
	return resp_json(c, (int)code, json_pack("{s:s,s:I}", "backend",
	    c->name, "status", (json_int_t)code),
	    code == 503 || code == 429 ? "Retry-After: 1\r\n" : NULL);
}

/* POST|PUT /upload: size and SHA-256 of the body, hashed as it streamed in. */
static int
send_upload(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen, i;
	char		 hex[EVP_MAX_MD_SIZE * 2 + 1];

	if (EVP_DigestFinal_ex(r->sha, md, &mdlen) != 1)
		return -1;
	for (i = 0; i < mdlen; i++)
		snprintf(hex + i * 2, 3, "%02x", md[i]);
	return resp_json(c, 200, json_pack("{s:I,s:s,s:s}", "bytes",
	    (json_int_t)r->body_bytes, "sha256", hex, "backend", c->name), NULL);
}

/* Anything else: who answered what. */
static int
send_default(struct fb_conn *c)
{
	struct fb_req	*r = &c->req;

	return resp_json(c, 200, json_pack("{s:s,s:o,s:s}", "backend", c->name,
	    "path", fb_jstr(r->url, r->urllen),
	    "method", llhttp_method_name(r->method)), NULL);
}

static int
send_stats(struct fb_conn *c)
{
	char	 f[32];

	fault_name(f, sizeof(f));
	return resp_json(c, 200, json_pack("{s:I,s:I,s:I,s:I,s:s,s:s}",
	    "connections", (json_int_t)atomic_load(&fb_stats.connections),
	    "requests", (json_int_t)atomic_load(&fb_stats.requests),
	    "open", (json_int_t)atomic_load(&fb_stats.open),
	    "health", (json_int_t)atomic_load(&fb_stats.health),
	    "fault", f, "backend", c->name), NULL);
}

/* POST /__fault?mode=M */
static int
send_fault(struct fb_conn *c)
{
	char	 mode[32], f[32];
	long	 ms;
	int	 kind;

	if (!req_query(&c->req, "mode", mode, sizeof(mode)) ||
	    fault_parse(mode, &kind, &ms) == -1)
		return resp_json(c, 400, json_pack("{s:{s:s,s:s}}", "error",
		    "message", "mode must be none, 500, hang, close or slow:MS",
		    "type", "invalid_request_error"), NULL);
	atomic_store(&fb_fault_ms, ms);
	atomic_store(&fb_fault, kind);
	fault_name(f, sizeof(f));
	return resp_json(c, 200, json_pack("{s:s,s:s}", "fault", f, "backend",
	    c->name), NULL);
}

/* Write raw bytes that are no valid response, then close.  0 or -1. */
static int
raw_close(struct fb_conn *c, const char *buf, size_t len)
{
	c->req.started = 1;
	c->req.keepalive = 0;
	c->close_after = 1;
	return conn_write(c, buf, len);
}

/*
 * /bad?kind=K: a deliberately broken response, then close.  Every kind
 * but close_early carries X-Backend so a test can tell who sent it.
 */
static int
send_bad(struct fb_conn *c)
{
	char		 kind[32], *buf;
	const char	*n = c->name;
	int		 len, rv;

	if (!req_query(&c->req, "kind", kind, sizeof(kind)))
		kind[0] = '\0';
	if (strcmp(kind, "close_early") == 0) {
		c->req.started = 1;
		c->abortive = 1;
		c->close_after = 1;
		return 0;
	}
	if (strcmp(kind, "huge_header") == 0) {
		/* One field line of 64 KiB. */
		if ((buf = malloc(65536 + 512)) == NULL)
			return -1;
		len = snprintf(buf, 512, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
		    "Content-Length: 2\r\nX-Huge: ", n);
		memset(buf + len, 'a', 65536);
		len += 65536;
		memcpy(buf + len, "\r\n\r\nok", 6);
		rv = raw_close(c, buf, len + 6);
		free(buf);
		return rv;
	}
	if ((buf = malloc(1024)) == NULL)
		return -1;
	len = -1;
	if (strcmp(kind, "status_line") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 2x0 Garbage\r\nX-Backend: %s\r\n"
		    "Content-Length: 2\r\n\r\nok", n);
	else if (strcmp(kind, "conflicting_cl") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
		    "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", n);
	else if (strcmp(kind, "cl_te") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
		    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "5\r\nhello\r\n0\r\n\r\n", n);
	else if (strcmp(kind, "obs_fold") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
		    "X-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok", n);
	else if (strcmp(kind, "short_cl") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
		    "Content-Length: 100\r\n\r\n0123456789", n);
	else if (strcmp(kind, "short_chunked") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 200 OK\r\nX-Backend: %s\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", n);
	else if (strcmp(kind, "bare_lf") == 0)
		len = snprintf(buf, 1024, "HTTP/1.1 200 OK\nX-Backend: %s\n"
		    "Content-Length: 2\n\nok", n);
	if (len < 0 || len >= 1024) {
		free(buf);
		return resp_json(c, 400, json_pack("{s:{s:s,s:s}}", "error",
		    "message", "kind must be status_line, conflicting_cl, cl_te, "
		    "obs_fold, short_cl, short_chunked, close_early, "
		    "early_answer, early_answer_close, bare_lf or huge_header",
		    "type", "invalid_request_error"), NULL);
	}
	rv = raw_close(c, buf, len);
	free(buf);
	return rv;
}

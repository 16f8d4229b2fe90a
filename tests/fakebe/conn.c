/* fakebe's connection thread: llhttp request parsing, keep-alive, pipelining and response writing. */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "fakebe.h"

static int	on_message_begin(llhttp_t *);
static int	on_url(llhttp_t *, const char *, size_t);
static int	on_header_field(llhttp_t *, const char *, size_t);
static int	on_header_field_complete(llhttp_t *);
static int	on_header_value(llhttp_t *, const char *, size_t);
static int	on_header_value_complete(llhttp_t *);
static int	on_headers_complete(llhttp_t *);
static int	on_body(llhttp_t *, const char *, size_t);
static int	on_message_complete(llhttp_t *);
static int	hbuf_append(struct fb_conn *, const char *, size_t);
static void	req_reset(struct fb_req *);
static void	req_free(struct fb_req *);
static void	req_split_url(struct fb_req *);
static void	conn_error(struct fb_conn *, llhttp_errno_t);
static void	conn_linger(struct fb_conn *);
static void	conn_drain(struct fb_conn *);
static const char *reason(int);

static llhttp_settings_t	settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/*
 * Thread body for one accepted connection (c, heap-allocated by the accept
 * loop and freed here).  Reads, parses every request in the buffer in order
 * and answers each from the parser callbacks, so pipelined requests are
 * answered in order; returns when the connection is done.
 */
void *
conn_main(void *arg)
{
	struct fb_conn	*c = arg;
	struct pollfd	 pfd;
	llhttp_errno_t	 err;
	char		 peek[64], *sp;
	ssize_t		 n;

	llhttp_init(&c->parser, HTTP_REQUEST, &settings);
	c->parser.data = c;

	/*
	 * Fault "close": drop the connection unread, unless its first request
	 * is for a control path (/__...), which must stay reachable.
	 */
	if (atomic_load(&fb_fault) == FAULT_CLOSE) {
		pfd.fd = c->fd;
		pfd.events = POLLIN;
		n = 0;
		if (poll(&pfd, 1, 1000) == 1)
			n = recv(c->fd, peek, sizeof(peek) - 1, MSG_PEEK);
		if (n > 0) {
			peek[n] = '\0';
			sp = strchr(peek, ' ');
			if (sp == NULL || strncmp(sp + 1, "/__", 3) != 0)
				n = 0;
		}
		if (n <= 0) {
			c->abortive = 1;
			goto done;
		}
	}

	for (;;) {
		n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* EOF between requests is normal; mid-request is not ours. */
			break;
		}
		err = llhttp_execute(&c->parser, c->rbuf, n);
		if (err == HPE_OK)
			continue;
		if (err == HPE_PAUSED && c->hang) {
			conn_drain(c);
			break;
		}
		if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
			c->close_after = 1;
			break;
		}
		conn_error(c, err);
		break;
	}
 done:
	if (c->abortive)
		close(c->fd);
	else {
		conn_linger(c);
		close(c->fd);
	}
	req_free(&c->req);
	free(c);
	atomic_fetch_sub(&fb_stats.open, 1);
	return NULL;
}

/*
 * Answer a request the parser rejected (400, or 414/431 for our own limits)
 * unless a response was already under way, in which case the connection is
 * just cut.  The caller closes.
 */
static void
conn_error(struct fb_conn *c, llhttp_errno_t err)
{
	struct fb_req	*r = &c->req;
	json_t		*j;
	int		 status;

	if (err == HPE_USER && c->errstatus == 0) {
		/* A write failed or a handler chose to cut: say nothing. */
		c->abortive = 1;
		return;
	}
	if (r->started) {
		c->abortive = 1;
		return;
	}
	status = c->errstatus ? c->errstatus : 400;
	if (fb_debug)
		fprintf(stderr, "fakebe %s: bad request: %s (%s)\n", c->name,
		    llhttp_errno_name(err), llhttp_get_error_reason(&c->parser));
	/* The message may have been cut anywhere: answer as HTTP/1.1, close. */
	r->vmaj = 1;
	r->vmin = 1;
	r->head_only = 0;
	r->keepalive = 0;
	j = json_pack("{s:{s:s,s:s,s:s}}", "error",
	    "message", status == 400 ? llhttp_get_error_reason(&c->parser) :
	    reason(status),
	    "type", "invalid_request_error",
	    "code", status == 400 ? llhttp_errno_name(err) : "limit");
	(void)resp_json(c, status, j, NULL);
}

/*
 * Close the sending side and read what the peer still sends for up to one
 * second, so a response followed by close is not destroyed by a reset.
 */
static void
conn_linger(struct fb_conn *c)
{
	struct pollfd	 pfd;
	struct timespec	 t0, t1;
	long		 left;
	ssize_t		 n;

	if (shutdown(c->fd, SHUT_WR) == -1)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pfd.fd = c->fd;
	pfd.events = POLLIN;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		left = 1000 - ((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
			return;
		n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
		if (n == 0 || (n == -1 && errno != EINTR))
			return;
	}
}

/* Read and discard until the peer closes: the "hang" behaviour. */
static void
conn_drain(struct fb_conn *c)
{
	ssize_t	 n;

	for (;;) {
		n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
		if (n == 0 || (n == -1 && errno != EINTR))
			return;
	}
}

/* Write all of buf.  Returns 0, or -1 if the peer is gone. */
int
conn_write(struct fb_conn *c, const void *buf, size_t len)
{
	struct iovec	 iov;

	iov.iov_base = (void *)(uintptr_t)buf;
	iov.iov_len = len;
	return conn_writev(c, &iov, 1);
}

/*
 * Write all of iov (modified in place) with as few system calls as the
 * kernel allows, so an SSE event leaves as one segment.  Returns 0 or -1.
 */
int
conn_writev(struct fb_conn *c, struct iovec *iov, int iovcnt)
{
	struct msghdr	 msg;
	ssize_t		 n;

	while (iovcnt > 0) {
		if (iov->iov_len == 0) {
			iov++;
			iovcnt--;
			continue;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = iovcnt;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (n > 0 && iovcnt > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= iov->iov_len;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= n;
				n = 0;
			}
		}
	}
	return 0;
}

static const char *
reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/*
 * Format the response head into h (size bytes).  clen is the Content-Length,
 * FB_CHUNKED (chunked for HTTP/1.1, close-delimited for HTTP/1.0),
 * FB_CLOSE (close-delimited), FB_NOBODY, or FB_NOBODY_CL(n): a 204/304
 * that says Content-Length: n but has no body.  extra holds complete
 * "Name: value\r\n" lines or is NULL.  Adds X-Backend and the Connection
 * field the keep-alive decision needs, and marks the response started.
 * Returns the head's length, or -1 if it does not fit.
 */
int
resp_head_fmt(struct fb_conn *c, int status, const char *ctype, long long clen,
    const char *extra, char *h, size_t size)
{
	struct fb_req	*r = &c->req;
	int		 n;

	r->chunked = 0;
	r->status = status;
	n = snprintf(h, size, "HTTP/1.1 %d %s\r\nX-Backend: %s\r\n",
	    status, reason(status), c->name);
	if (ctype != NULL)
		n += snprintf(h + n, size - n, "Content-Type: %s\r\n",
		    ctype);
	if (clen >= 0)
		n += snprintf(h + n, size - n, "Content-Length: %lld\r\n",
		    clen);
	else if (clen <= FB_NOBODY_CL(0))
		n += snprintf(h + n, size - n, "Content-Length: %lld\r\n",
		    FB_NOBODY_CL(0) - clen);
	else if (clen == FB_CHUNKED && r->vmaj == 1 && r->vmin >= 1) {
		n += snprintf(h + n, size - n,
		    "Transfer-Encoding: chunked\r\n");
		r->chunked = 1;
	} else if (clen == FB_CHUNKED || clen == FB_CLOSE)
		r->keepalive = 0;
	if (!r->keepalive)
		n += snprintf(h + n, size - n, "Connection: close\r\n");
	else if (r->vmin == 0)
		n += snprintf(h + n, size - n, "Connection: keep-alive\r\n");
	if (!r->keepalive)
		c->close_after = 1;
	if (extra != NULL)
		n += snprintf(h + n, size - n, "%s", extra);
	n += snprintf(h + n, size - n, "\r\n");
	if ((size_t)n >= size)
		return -1;
	r->started = 1;
	if (fb_debug)
		fprintf(stderr, "fakebe %s: %s %s -> %d\n", c->name,
		    llhttp_method_name(r->method), r->url, status);
	return n;
}

/* Format the response head (see resp_head_fmt) and send it.  Returns 0 or -1. */
int
resp_head(struct fb_conn *c, int status, const char *ctype, long long clen,
    const char *extra)
{
	char	 h[2048];
	int	 n;

	if ((n = resp_head_fmt(c, status, ctype, clen, extra, h,
	    sizeof(h))) == -1)
		return -1;
	return conn_write(c, h, n);
}

/* Send body bytes, framed as a chunk if the response is chunked.  0 or -1. */
int
resp_body(struct fb_conn *c, const void *buf, size_t len)
{
	struct iovec	 iov[3];
	char		 sz[32];

	if (c->req.head_only || len == 0)
		return 0;
	if (!c->req.chunked)
		return conn_write(c, buf, len);
	iov[0].iov_base = sz;
	iov[0].iov_len = snprintf(sz, sizeof(sz), "%zx\r\n", len);
	iov[1].iov_base = (void *)(uintptr_t)buf;
	iov[1].iov_len = len;
	iov[2].iov_base = (void *)(uintptr_t)"\r\n";
	iov[2].iov_len = 2;
	return conn_writev(c, iov, 3);
}

/* Finish the response body (the last chunk, if chunked).  0 or -1. */
int
resp_end(struct fb_conn *c)
{
	if (c->req.head_only || !c->req.chunked)
		return 0;
	return conn_write(c, "0\r\n\r\n", 5);
}

/* Send a complete application/json response of j (stolen).  0 or -1. */
int
resp_json(struct fb_conn *c, int status, json_t *j, const char *extra)
{
	char	*s;
	size_t	 len;
	int	 rv;

	if (j == NULL)
		return -1;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s == NULL)
		return -1;
	len = strlen(s);
	rv = resp_head(c, status, "application/json", (long long)len + 1, extra);
	if (rv == 0 && !c->req.head_only) {
		struct iovec	 iov[2];

		iov[0].iov_base = s;
		iov[0].iov_len = len;
		iov[1].iov_base = (void *)(uintptr_t)"\n";
		iov[1].iov_len = 1;
		rv = conn_writev(c, iov, 2);
	}
	free(s);
	return rv;
}

/* Value of the first header named name (any case), or NULL. */
const char *
req_header(const struct fb_req *r, const char *name)
{
	size_t	 i;

	for (i = 0; i < r->nhdrs; i++)
		if (strcasecmp(r->hbuf + r->hdrs[i].noff, name) == 0)
			return r->hbuf + r->hdrs[i].voff;
	return NULL;
}

/*
 * Copy the raw value of query parameter key into buf (NUL-terminated,
 * truncated to len).  Returns 1 if present, 0 if not.
 */
int
req_query(const struct fb_req *r, const char *key, char *buf, size_t len)
{
	const char	*p = r->query, *amp, *eq;
	size_t		 klen = strlen(key), vlen;

	while (p != NULL && *p != '\0') {
		amp = strchr(p, '&');
		if (amp == NULL)
			amp = p + strlen(p);
		eq = memchr(p, '=', amp - p);
		if ((eq != NULL && (size_t)(eq - p) == klen &&
		    strncmp(p, key, klen) == 0) ||
		    (eq == NULL && (size_t)(amp - p) == klen &&
		    strncmp(p, key, klen) == 0)) {
			vlen = eq != NULL ? (size_t)(amp - eq - 1) : 0;
			if (len > 0) {
				if (vlen >= len)
					vlen = len - 1;
				if (eq != NULL)
					memcpy(buf, eq + 1, vlen);
				buf[vlen] = '\0';
			}
			return 1;
		}
		p = *amp != '\0' ? amp + 1 : amp;
	}
	return 0;
}

/* Query parameter key as a non-negative integer, or def if absent or bad. */
long long
req_query_ll(const struct fb_req *r, const char *key, long long def)
{
	char		 buf[32], *end;
	long long	 v;

	if (!req_query(r, key, buf, sizeof(buf)) || buf[0] == '\0')
		return def;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (*end != '\0' || errno != 0 || v < 0)
		return def;
	return v;
}

/* ?delay_ms=, else X-Fake-Delay-Ms, else def. */
long
req_ms(const struct fb_req *r, const char *query, const char *header, long def)
{
	const char	*h;
	char		*end;
	long long	 v;
	long		 hv;

	if ((v = req_query_ll(r, query, -1)) >= 0)
		return v > 3600000 ? 3600000 : (long)v;
	if ((h = req_header(r, header)) != NULL) {
		hv = strtol(h, &end, 10);
		if (end != h && *end == '\0' && hv >= 0)
			return hv > 3600000 ? 3600000 : hv;
	}
	return def;
}

long
req_delay_ms(const struct fb_req *r, long def)
{
	return req_ms(r, "delay_ms", "X-Fake-Delay-Ms", def);
}

/*
 * A JSON string of wire bytes: as is when valid UTF-8, else with every
 * byte read as Latin-1, so a header with obs-text still shows in /headers.
 */
json_t *
fb_jstr(const char *s, size_t len)
{
	json_t	*j;
	char	*u;
	size_t	 i, n = 0;

	if ((j = json_stringn(s, len)) != NULL)
		return j;
	if ((u = malloc(len * 2 + 1)) == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		unsigned char	 b = s[i];

		if (b < 0x80)
			u[n++] = b;
		else {
			u[n++] = 0xc0 | (b >> 6);
			u[n++] = 0x80 | (b & 0x3f);
		}
	}
	j = json_stringn(u, n);
	free(u);
	return j;
}

static void
req_reset(struct fb_req *r)
{
	if (r->sha != NULL) {
		EVP_MD_CTX_free(r->sha);
		r->sha = NULL;
	}
	if (r->jcap > FB_RBUF) {
		free(r->jbuf);
		r->jbuf = NULL;
		r->jcap = 0;
	}
	r->jlen = 0;
	r->jtoolarge = 0;
	r->urllen = 0;
	r->url[0] = '\0';
	r->path = r->query = "";
	r->hlen = 0;
	r->nhdrs = 0;
	r->hstate = 0;
	r->route = ROUTE_DEFAULT;
	r->allow = NULL;
	r->control = 0;
	r->keepalive = 0;
	r->head_only = 0;
	r->started = 0;
	r->chunked = 0;
	r->status = 0;
	r->slow_ms = 0;
	r->body_bytes = 0;
}

static void
req_free(struct fb_req *r)
{
	req_reset(r);
	free(r->jbuf);
	free(r->hbuf);
	free(r->hdrs);
}

/* Split the request-target into path and query; absolute-form loses its authority. */
static void
req_split_url(struct fb_req *r)
{
	char	*p, *q;

	memcpy(r->pathbuf, r->url, r->urllen + 1);
	p = r->pathbuf;
	if (strncasecmp(p, "http://", 7) == 0 ||
	    strncasecmp(p, "https://", 8) == 0) {
		p = strstr(p, "://") + 3;
		p += strcspn(p, "/?");
		if (*p != '/') {
			/* "http://host" or "http://host?q": path is "/". */
			memmove(p + 1, p, strlen(p) + 1);
			*p = '/';
		}
	}
	if ((q = strchr(p, '?')) != NULL) {
		*q++ = '\0';
		r->query = q;
	} else
		r->query = "";
	r->path = p;
}

static int
hbuf_append(struct fb_conn *c, const char *at, size_t len)
{
	struct fb_req	*r = &c->req;
	char		*nb;
	size_t		 ncap;

	if (r->hlen + len + 1 > FB_HDR_BYTES) {
		c->errstatus = 431;
		return -1;
	}
	if (r->hlen + len + 1 > r->hcap) {
		ncap = r->hcap ? r->hcap : 4096;
		while (ncap < r->hlen + len + 1)
			ncap *= 2;
		if ((nb = realloc(r->hbuf, ncap)) == NULL)
			return -1;
		r->hbuf = nb;
		r->hcap = ncap;
	}
	memcpy(r->hbuf + r->hlen, at, len);
	r->hlen += len;
	return 0;
}

static int
on_message_begin(llhttp_t *p)
{
	struct fb_conn	*c = p->data;

	req_reset(&c->req);
	return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct fb_conn	*c = p->data;
	struct fb_req	*r = &c->req;

	if (r->urllen + len > FB_URL_MAX) {
		c->errstatus = 414;
		return -1;
	}
	memcpy(r->url + r->urllen, at, len);
	r->urllen += len;
	r->url[r->urllen] = '\0';
	return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct fb_conn	*c = p->data;
	struct fb_req	*r = &c->req;
	struct fb_hdr	*nh;

	if (r->hstate != 1) {
		if (r->nhdrs >= FB_HDR_COUNT) {
			c->errstatus = 431;
			return -1;
		}
		if (r->nhdrs == r->hdrcap) {
			nh = reallocarray(r->hdrs, r->hdrcap ? r->hdrcap * 2 : 32,
			    sizeof(*nh));
			if (nh == NULL)
				return -1;
			r->hdrs = nh;
			r->hdrcap = r->hdrcap ? r->hdrcap * 2 : 32;
		}
		memset(&r->hdrs[r->nhdrs], 0, sizeof(r->hdrs[0]));
		r->hdrs[r->nhdrs].noff = r->hlen;
		r->hstate = 1;
	}
	return hbuf_append(c, at, len);
}

static int
on_header_field_complete(llhttp_t *p)
{
	struct fb_conn	*c = p->data;
	struct fb_req	*r = &c->req;
	struct fb_hdr	*h = &r->hdrs[r->nhdrs];

	h->nlen = r->hlen - h->noff;
	if (hbuf_append(c, "", 1) == -1)
		return -1;
	h->voff = r->hlen;
	r->hstate = 2;
	return 0;
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	return hbuf_append(p->data, at, len);
}

static int
on_header_value_complete(llhttp_t *p)
{
	struct fb_conn	*c = p->data;
	struct fb_req	*r = &c->req;
	struct fb_hdr	*h = &r->hdrs[r->nhdrs];

	h->vlen = r->hlen - h->voff;
	if (hbuf_append(c, "", 1) == -1)
		return -1;
	r->nhdrs++;
	r->hstate = 0;
	return 0;
}

/*
 * The head is complete: set up the request and let the route start (some
 * answer here, before the body).  Pauses the parser when the connection
 * is to be closed.
 */
static int
on_headers_complete(llhttp_t *p)
{
	struct fb_conn	*c = p->data;
	struct fb_req	*r = &c->req;

	r->method = p->method;
	r->vmaj = p->http_major;
	r->vmin = p->http_minor;
	r->keepalive = llhttp_should_keep_alive(p);
	r->head_only = p->method == HTTP_HEAD;
	req_split_url(r);
	if (route_begin(c) == -1)
		return -1;
	if (c->close_after || c->hang)
		return HPE_PAUSED;
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct fb_conn	*c = p->data;

	c->req.body_bytes += len;
	return route_body(c, at, len);
}

static int
on_message_complete(llhttp_t *p)
{
	struct fb_conn	*c = p->data;

	if (route_end(c) == -1)
		return -1;
	if (!c->req.keepalive)
		c->close_after = 1;
	if (c->close_after || c->hang)
		return HPE_PAUSED;
	return 0;
}

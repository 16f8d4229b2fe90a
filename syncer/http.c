/* The syncer's HTTP/1.1 client: one bounded request over TCP or TLS (verified, with SNI), response parsed by llhttp. */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <bsd/string.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "shm/table.h"
#include "syncer/syncer.h"

struct hconn {
	int		 fd;
	SSL		*ssl;
	uint64_t	 deadline;	/* monotonic ms */
	char		*err;
	size_t		 errlen;
};

struct hresp {
	char		*body;
	size_t		 len, cap, max;
	int		 status;
	int		 done;
	int		 too_big;
};

static SSL_CTX	*syncer_ssl_ctx;

/* The TLS context, made once: system trust store, TLS 1.2 at least, peers verified. */
static SSL_CTX *
fetch_ssl_ctx(void)
{
	if (syncer_ssl_ctx != NULL)
		return syncer_ssl_ctx;
	if ((syncer_ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(syncer_ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(syncer_ssl_ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_set_default_verify_paths(syncer_ssl_ctx) != 1) {
		SSL_CTX_free(syncer_ssl_ctx);
		syncer_ssl_ctx = NULL;
	}
	return syncer_ssl_ctx;
}

void
syncer_fetch_cleanup(void)
{
	SSL_CTX_free(syncer_ssl_ctx);
	syncer_ssl_ctx = NULL;
}

static int	 fetch_watch_fd = -1;

void
syncer_fetch_watch(int fd)
{
	fetch_watch_fd = fd;
}

/*
 * Wait for events on c->fd until the deadline; 0, or -1 (timed out, or
 * the watched descriptor says the master is gone; reason set).
 */
static int
fetch_wait(struct hconn *c, short events)
{
	struct pollfd	pfd[2];
	uint64_t	now;
	int		n;

	for (;;) {
		now = shm_mono_ms();
		if (now >= c->deadline) {
			snprintf(c->err, c->errlen, "timed out");
			return -1;
		}
		pfd[0].fd = c->fd;
		pfd[0].events = events;
		pfd[0].revents = 0;
		pfd[1].fd = fetch_watch_fd;	/* poll() skips a negative fd */
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		n = poll(pfd, 2, (int)(c->deadline - now));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(c->err, c->errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (pfd[1].revents != 0) {
			/* the master sends nothing while we fetch: readable means closed */
			snprintf(c->err, c->errlen, "the master is gone");
			return -1;
		}
		if (pfd[0].revents != 0)
			return 0;
	}
}

/* One TLS step's outcome: wait for what it wants, or fail. 0 to retry, -1 failed. */
static int
fetch_ssl_retry(struct hconn *c, int rc, const char *what)
{
	unsigned long	e;

	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		return fetch_wait(c, POLLIN);
	case SSL_ERROR_WANT_WRITE:
		return fetch_wait(c, POLLOUT);
	case SSL_ERROR_ZERO_RETURN:
		snprintf(c->err, c->errlen, "%s: TLS connection closed", what);
		return -1;
	default:
		if (SSL_get_verify_result(c->ssl) != X509_V_OK)
			snprintf(c->err, c->errlen, "%s: certificate: %s", what,
			    X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
		else if ((e = ERR_peek_last_error()) != 0)
			snprintf(c->err, c->errlen, "%s: %s", what,
			    ERR_reason_error_string(e));
		else
			snprintf(c->err, c->errlen, "%s: TLS error%s%s", what,
			    errno ? ": " : "", errno ? strerror(errno) : "");
		ERR_clear_error();
		return -1;
	}
}

/* Connect to host:port (every address in turn) within the deadline. 0 or -1. */
static int
fetch_connect(struct hconn *c, const char *host, const char *port)
{
	struct addrinfo	 hints, *res, *ai;
	int		 rc, soerr;
	socklen_t	 sl;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(c->err, c->errlen, "resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	snprintf(c->err, c->errlen, "connect %s:%s: no address", host, port);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (c->fd == -1)
			continue;
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && fetch_wait(c, POLLOUT) == 0) {
			sl = sizeof(soerr);
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
			    soerr == 0)
				break;
			errno = soerr;
		}
		if (errno != 0)
			snprintf(c->err, c->errlen, "connect %s:%s: %s", host, port,
			    strerror(errno));
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	return c->fd == -1 ? -1 : 0;
}

/*
 * TLS handshake with certificate and host name checks, SNI for names.  0
 * or -1.  host is not const only because OpenSSL's
 * SSL_set_tlsext_host_name() macro casts it to void *.
 */
static int
fetch_tls(struct hconn *c, char *host)
{
	SSL_CTX		*ctx;
	struct in6_addr	 a6;
	int		 rc, is_ip;

	if ((ctx = fetch_ssl_ctx()) == NULL || (c->ssl = SSL_new(ctx)) == NULL) {
		snprintf(c->err, c->errlen, "TLS setup failed");
		return -1;
	}
	is_ip = inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1)
			goto fail;
	} else if (SSL_set_tlsext_host_name(c->ssl, host) != 1 ||
	    SSL_set1_host(c->ssl, host) != 1)
		goto fail;
	SSL_set_fd(c->ssl, c->fd);
	while ((rc = SSL_connect(c->ssl)) != 1)
		if (fetch_ssl_retry(c, rc, "TLS handshake") == -1)
			return -1;
	return 0;
fail:
	snprintf(c->err, c->errlen, "TLS setup for %s failed", host);
	return -1;
}

static int
fetch_write(struct hconn *c, const char *buf, size_t len)
{
	ssize_t	n;
	int	rc;

	while (len > 0) {
		if (c->ssl != NULL) {
			if ((rc = SSL_write(c->ssl, buf, (int)len)) <= 0) {
				if (fetch_ssl_retry(c, rc, "send") == -1)
					return -1;
				continue;
			}
			n = rc;
		} else if ((n = send(c->fd, buf, len, MSG_NOSIGNAL)) == -1) {
			if (errno == EAGAIN || errno == EINTR) {
				if (fetch_wait(c, POLLOUT) == -1)
					return -1;
				continue;
			}
			snprintf(c->err, c->errlen, "send: %s", strerror(errno));
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read some bytes: >0 count, 0 end of stream, -1 error or timeout. */
static ssize_t
fetch_read(struct hconn *c, char *buf, size_t len)
{
	ssize_t	n;
	int	rc;

	for (;;) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			if ((rc = SSL_read(c->ssl, buf, (int)len)) > 0)
				return rc;
			if (SSL_get_error(c->ssl, rc) == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (SSL_get_error(c->ssl, rc) == SSL_ERROR_SYSCALL &&
			    ERR_peek_error() == 0 && rc == 0)
				return 0;	/* closed without close_notify */
			if (fetch_ssl_retry(c, rc, "receive") == -1)
				return -1;
			continue;
		}
		if ((n = recv(c->fd, buf, len, 0)) >= 0)
			return n;
		if (errno != EAGAIN && errno != EINTR) {
			snprintf(c->err, c->errlen, "receive: %s", strerror(errno));
			return -1;
		}
		if (fetch_wait(c, POLLIN) == -1)
			return -1;
	}
}

static int
fetch_on_headers(llhttp_t *p)
{
	struct hresp	*r = p->data;

	r->status = p->status_code;
	return 0;
}

static int
fetch_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct hresp	*r = p->data;
	char		*nb;
	size_t		 cap;

	if (r->len + len > r->max) {
		r->too_big = 1;
		return -1;
	}
	if (r->len + len + 1 > r->cap) {
		cap = r->cap ? r->cap : 65536;
		while (cap < r->len + len + 1)
			cap *= 2;
		if ((nb = realloc(r->body, cap)) == NULL)
			return -1;
		r->body = nb;
		r->cap = cap;
	}
	memcpy(r->body + r->len, at, len);
	r->len += len;
	return 0;
}

static int
fetch_on_complete(llhttp_t *p)
{
	((struct hresp *)p->data)->done = 1;
	return HPE_PAUSED;
}

/* Read and parse the answer into r until it is complete.  0 or -1. */
static int
fetch_response(struct hconn *c, struct hresp *r)
{
	llhttp_t		 p;
	llhttp_settings_t	 s;
	char			 buf[65536];
	ssize_t			 n;
	llhttp_errno_t		 e;

	llhttp_settings_init(&s);
	s.on_headers_complete = fetch_on_headers;
	s.on_body = fetch_on_body;
	s.on_message_complete = fetch_on_complete;
	llhttp_init(&p, HTTP_RESPONSE, &s);
	p.data = r;
	while (!r->done) {
		if ((n = fetch_read(c, buf, sizeof(buf))) == -1)
			return -1;
		e = n == 0 ? llhttp_finish(&p) : llhttp_execute(&p, buf, (size_t)n);
		if (r->done)
			break;
		if (r->too_big) {
			snprintf(c->err, c->errlen, "answer larger than %zu bytes",
			    r->max);
			return -1;
		}
		if (e != HPE_OK) {
			snprintf(c->err, c->errlen, "bad HTTP answer: %s",
			    llhttp_get_error_reason(&p) ? llhttp_get_error_reason(&p) :
			    llhttp_errno_name(e));
			return -1;
		}
		if (n == 0) {
			snprintf(c->err, c->errlen, "connection closed before the "
			    "answer was complete");
			return -1;
		}
	}
	return 0;
}

/*
 * Split url into its parts: *tls, host (no brackets), port text and path
 * (with query).  0, or -1 when it is not an http(s) URL we can use.
 */
static int
fetch_url(const char *url, int *tls, char *host, size_t hostlen, char *port,
    size_t portlen, const char **path)
{
	const char	*p, *hs, *he, *slash;
	size_t		 n;

	if (strncasecmp(url, "http://", 7) == 0)
		*tls = 0, p = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		*tls = 1, p = url + 8;
	else
		return -1;
	if ((slash = strchr(p, '/')) == NULL)
		slash = p + strlen(p);
	*path = *slash ? slash : "/";
	if (*p == '[') {
		hs = p + 1;
		if ((he = memchr(hs, ']', (size_t)(slash - hs))) == NULL)
			return -1;
		p = he + 1;
	} else {
		hs = p;
		if ((he = memchr(p, ':', (size_t)(slash - p))) == NULL)
			he = slash;
		p = he;
	}
	if ((n = (size_t)(he - hs)) == 0 || n >= hostlen)
		return -1;
	memcpy(host, hs, n);
	host[n] = '\0';
	if (*p == ':') {
		if ((n = (size_t)(slash - p - 1)) == 0 || n >= portlen)
			return -1;
		memcpy(port, p + 1, n);
		port[n] = '\0';
	} else if (p == slash)
		strlcpy(port, *tls ? "443" : "80", portlen);
	else
		return -1;
	return 0;
}

int
syncer_fetch(const char *url, const char *body, const char *token,
    int timeout_ms, size_t max_size, char **out, size_t *outlen, char *err,
    size_t errlen)
{
	struct hconn	 c;
	struct hresp	 r;
	char		 host[CONF_ADDR_MAX], port[8], *req = NULL, clen[96];
	char		 hosthdr[CONF_ADDR_MAX + 10];
	const char	*path;
	int		 tls, rc = -1, n;
	size_t		 reqlen;

	*out = NULL;
	*outlen = 0;
	memset(&c, 0, sizeof(c));
	memset(&r, 0, sizeof(r));
	c.fd = -1;
	c.err = err;
	c.errlen = errlen;
	c.deadline = shm_mono_ms() + (uint64_t)timeout_ms;
	r.max = max_size;
	if (fetch_url(url, &tls, host, sizeof(host), port, sizeof(port), &path) == -1) {
		snprintf(err, errlen, "bad URL '%s'", url);
		return -1;
	}
	if (strchr(host, ':') != NULL)
		snprintf(hosthdr, sizeof(hosthdr), "[%s]", host);
	else
		strlcpy(hosthdr, host, sizeof(hosthdr));
	if ((strcmp(port, "80") != 0 && !tls) || (strcmp(port, "443") != 0 && tls)) {
		strlcat(hosthdr, ":", sizeof(hosthdr));
		strlcat(hosthdr, port, sizeof(hosthdr));
	}
	if (body != NULL)
		snprintf(clen, sizeof(clen), "Content-Type: application/json\r\n"
		    "Content-Length: %zu\r\n", strlen(body));
	else
		clen[0] = '\0';
	n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: routerd-syncer\r\nAccept: application/json\r\n"
	    "Connection: close\r\n%s%s%s%s\r\n%s",
	    body ? "POST" : "GET", path, hosthdr,
	    token && *token ? "X-Registry-Token: " : "", token && *token ? token : "",
	    token && *token ? "\r\n" : "", clen, body ? body : "");
	if (n == -1) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	reqlen = (size_t)n;
	if (fetch_connect(&c, host, port) == -1)
		goto done;
	if (tls && fetch_tls(&c, host) == -1)
		goto done;
	if (fetch_write(&c, req, reqlen) == -1 || fetch_response(&c, &r) == -1)
		goto done;
	if (r.status != 200) {
		snprintf(err, errlen, "HTTP status %d", r.status);
		goto done;
	}
	if (r.body == NULL && (r.body = malloc(1)) == NULL)
		goto done;
	r.body[r.len] = '\0';
	*out = r.body;
	*outlen = r.len;
	r.body = NULL;
	rc = 0;
done:
	if (c.ssl != NULL) {
		SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	ERR_clear_error();
	if (c.fd != -1)
		close(c.fd);
	free(r.body);
	free(req);
	return rc;
}

/* One active health check of prober/check.h: connect, send, parse the answer, time it, all non-blocking. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bsd/string.h>
#include <jansson.h>
#include <llhttp.h>

#include "prober/check.h"

static llhttp_settings_t	check_settings;
static int			check_settings_ready;

static uint64_t
check_now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static struct check *
check_of_timer(struct ev_timer *t)
{
	return (struct check *)((char *)t - offsetof(struct check, timer));
}

/* "Connection refused" -> "connection refused", to read well inside a log line. */
static void
check_strerror(char *buf, size_t len, const char *what, int err)
{
	snprintf(buf, len, "%s%s%s", what, *what ? ": " : "", strerror(err));
	if (!*what && buf[0] != '\0')
		buf[0] = (char)tolower((unsigned char)buf[0]);
}

static int
check_on_headers_complete(llhttp_t *p)
{
	struct check	*ck = p->data;

	/* interim 1xx answers are skipped: the final status is what counts */
	if (p->status_code >= 200)
		ck->status = p->status_code;
	return 0;
}

static int
check_on_message_complete(llhttp_t *p)
{
	struct check	*ck = p->data;

	if (p->status_code < 200)
		return 0;
	ck->complete = 1;
	return HPE_PAUSED;	/* nothing after it matters: stop parsing */
}

/*
 * Keep the body when asked to, growing the buffer by doubling up to
 * bodymax.  Past it, or out of memory, the parse stops (a user error
 * for llhttp) and check_read() says why.
 */
static int
check_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct check	*ck = p->data;
	size_t		 cap;
	char		*nb;

	if (ck->bodymax == 0 || p->status_code < 200)
		return 0;
	if (len > ck->bodymax - ck->bodylen) {
		ck->bodyover = 1;
		return -1;
	}
	if (ck->bodylen + len > ck->bodycap) {
		cap = ck->bodycap ? ck->bodycap : 4096;
		while (cap < ck->bodylen + len)
			cap *= 2;
		if (cap > ck->bodymax)
			cap = ck->bodymax;
		if ((nb = realloc(ck->body, cap)) == NULL) {
			ck->bodyover = 2;
			return -1;
		}
		ck->body = nb;
		ck->bodycap = cap;
	}
	memcpy(ck->body + ck->bodylen, at, len);
	ck->bodylen += len;
	return 0;
}

void
check_init(struct check *ck, check_done_cb done, void *arg)
{
	if (!check_settings_ready) {
		llhttp_settings_init(&check_settings);
		check_settings.on_headers_complete = check_on_headers_complete;
		check_settings.on_body = check_on_body;
		check_settings.on_message_complete = check_on_message_complete;
		check_settings_ready = 1;
	}
	memset(ck, 0, sizeof(*ck));
	ck->io.fd = -1;
	ck->done = done;
	ck->arg = arg;
	ev_timer_init(&ck->timer, NULL);
}

/* Stop watching and close; the check is idle afterwards. */
static void
check_stop(struct ev_loop *l, struct check *ck)
{
	ev_timer_stop(l, &ck->timer);
	if (ck->io.fd != -1) {
		ev_del(l, &ck->io);
		close(ck->io.fd);
		ck->io.fd = -1;
	}
	ck->running = 0;
}

static void
check_finish(struct ev_loop *l, struct check *ck, int ok, const char *why)
{
	char		 reason[CHECK_WHY_MAX];
	uint64_t	 lat;

	/* why may live in ck, which the callback may reuse */
	strlcpy(reason, why, sizeof(reason));
	check_stop(l, ck);
	lat = check_now_us() - ck->t0_us;
	ck->done(ck, ok, lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat, reason);
}

/* The final response is in: good if 2xx. */
static void
check_answered(struct ev_loop *l, struct check *ck)
{
	char	why[CHECK_WHY_MAX];

	if (ck->status >= 200 && ck->status <= 299) {
		check_finish(l, ck, 1, "ok");
		return;
	}
	snprintf(why, sizeof(why), "status %d", ck->status);
	check_finish(l, ck, 0, why);
}

static void
check_timeout(struct ev_loop *l, struct ev_timer *t)
{
	struct check	*ck = check_of_timer(t);
	char		 why[CHECK_WHY_MAX];

	if (ck->failed[0] != '\0') {
		/* an error found inside check_start(), reported from the loop */
		check_finish(l, ck, ck->local ? -1 : 0, ck->failed);
		return;
	}
	if (!ck->connected)
		snprintf(why, sizeof(why), "connect timed out after %d ms",
		    ck->timeout_ms);
	else if (ck->status == 0)
		snprintf(why, sizeof(why), "no response within %d ms",
		    ck->timeout_ms);
	else
		snprintf(why, sizeof(why), "response not finished within %d ms",
		    ck->timeout_ms);
	check_finish(l, ck, 0, why);
}

/*
 * Read what there is.  Returns 1 when the check finished (the callback
 * ran), 0 when it must wait for more.  The body is parsed and dropped,
 * its size bounded by the check's timeout, unless the target asked to
 * keep it (body_max): then check_on_body() bounds it.
 */
static int
check_read(struct ev_loop *l, struct check *ck)
{
	char		 buf[8192], why[CHECK_WHY_MAX];
	ssize_t		 n;
	llhttp_errno_t	 err;

	for (;;) {
		n = read(ck->io.fd, buf, sizeof(buf));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			check_strerror(why, sizeof(why), "", errno);
			check_finish(l, ck, 0, why);
			return 1;
		}
		if (n == 0) {
			llhttp_finish(&ck->parser);
			if (ck->complete)
				check_answered(l, ck);
			else
				check_finish(l, ck, 0, ck->status ?
				    "connection closed in mid-response" :
				    "connection closed before the response");
			return 1;
		}
		err = llhttp_execute(&ck->parser, buf, (size_t)n);
		if (ck->complete) {
			check_answered(l, ck);
			return 1;
		}
		if (err != HPE_OK && ck->bodyover) {
			if (ck->bodyover == 2) {
				check_finish(l, ck, -1, "no memory for the response body");
				return 1;
			}
			snprintf(why, sizeof(why), "response body over %zu bytes",
			    ck->bodymax);
			check_finish(l, ck, 0, why);
			return 1;
		}
		if (err != HPE_OK) {
			snprintf(why, sizeof(why), "bad response: %s",
			    llhttp_get_error_reason(&ck->parser));
			check_finish(l, ck, 0, why);
			return 1;
		}
	}
}

static void
check_io(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct check	*ck = (struct check *)io;
	char		 why[CHECK_WHY_MAX];
	ssize_t		 n;

	if (!ck->connected) {
		int		err = 0;
		socklen_t	elen = sizeof(err);

		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
			err = errno;
		if (err == 0 && !(ev & EPOLLOUT))
			err = ECONNRESET;
		if (err != 0) {
			check_strerror(why, sizeof(why), "", err);
			check_finish(l, ck, 0, why);
			return;
		}
		ck->connected = 1;
		if (ck->kind == CHECK_TCP) {
			check_finish(l, ck, 1, "ok");
			return;
		}
	}
	while (ck->reqoff < ck->reqlen) {
		n = send(io->fd, ck->req + ck->reqoff, ck->reqlen - ck->reqoff,
		    MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;		/* the next EPOLLOUT edge resumes */
			check_strerror(why, sizeof(why), "send", errno);
			check_finish(l, ck, 0, why);
			return;
		}
		ck->reqoff += (size_t)n;
	}
	/* edge-triggered: always drain, the answer may have come with this edge */
	check_read(l, ck);
}

/*
 * Errors that say this process is short of something (descriptors,
 * memory, local ports), not that the backend is: no verdict.
 */
static int
check_local_errno(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS ||
	    err == ENOMEM || err == EADDRNOTAVAIL;
}

/* The request text for t into ck->req; 0, or -1 if it does not fit. */
static int
check_request(struct check *ck, const struct check_target *t)
{
	char	 body[512];
	json_t	*j;
	size_t	 blen;
	int	 n;

	if (t->kind == CHECK_TCP) {
		ck->reqlen = 0;
		return 0;
	}
	if (t->kind == CHECK_HTTP || t->model[0] == '\0') {
		n = snprintf(ck->req, sizeof(ck->req),
		    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: routerd-prober\r\n"
		    "Accept: */*\r\nConnection: close\r\n\r\n",
		    t->kind == CHECK_HTTP ? t->path : "/v1/models", t->host);
	} else {
		j = json_pack("{s:s, s:[{s:s, s:s}], s:i}", "model", t->model,
		    "messages", "role", "user", "content", "ping",
		    "max_tokens", 1);
		if (j == NULL)
			return -1;
		blen = json_dumpb(j, body, sizeof(body), JSON_COMPACT);
		json_decref(j);
		if (blen == 0 || blen > sizeof(body))
			return -1;
		n = snprintf(ck->req, sizeof(ck->req),
		    "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\n"
		    "User-Agent: routerd-prober\r\nAccept: application/json\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
		    "Connection: close\r\n\r\n%.*s",
		    t->host, blen, (int)blen, body);
	}
	if (n < 0 || (size_t)n >= sizeof(ck->req))
		return -1;
	ck->reqlen = (size_t)n;
	return 0;
}

int
check_start(struct ev_loop *l, struct check *ck, const struct check_target *t)
{
	int	fd, one = 1;

	ck->kind = t->kind;
	ck->running = 1;
	ck->connected = 0;
	ck->status = 0;
	ck->complete = 0;
	ck->failed[0] = '\0';
	ck->local = 0;
	ck->reqoff = 0;
	ck->bodylen = 0;
	ck->bodymax = t->body_max;
	ck->bodyover = 0;
	ck->timeout_ms = t->timeout_ms;
	ck->t0_us = check_now_us();
	ck->timer.cb = check_timeout;
	ck->io.cb = check_io;
	llhttp_init(&ck->parser, HTTP_RESPONSE, &check_settings);
	ck->parser.data = ck;

	if (check_request(ck, t) == -1) {
		/* our request cannot be made: no fault of the backend's */
		ck->local = 1;
		strlcpy(ck->failed, "check request too long", sizeof(ck->failed));
		ev_timer_after(l, &ck->timer, 0);
		return 0;
	}
	fd = socket(t->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		ck->local = check_local_errno(errno);
		check_strerror(ck->failed, sizeof(ck->failed), "socket", errno);
		ev_timer_after(l, &ck->timer, 0);
		return 0;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&t->ss, t->sslen) == -1 &&
	    errno != EINPROGRESS) {
		ck->local = check_local_errno(errno);
		check_strerror(ck->failed, sizeof(ck->failed), "", errno);
		close(fd);
		ev_timer_after(l, &ck->timer, 0);
		return 0;
	}
	ck->io.fd = fd;
	if (ev_add(l, &ck->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) == -1) {
		ck->local = 1;
		check_strerror(ck->failed, sizeof(ck->failed), "epoll", errno);
		close(fd);
		ck->io.fd = -1;
		ev_timer_after(l, &ck->timer, 0);
		return 0;
	}
	/* epoll reports a socket that is already writable: check_io() takes it from here */
	ev_timer_after(l, &ck->timer, (uint64_t)t->timeout_ms);
	return 0;
}

void
check_cancel(struct ev_loop *l, struct check *ck)
{
	if (ck->running)
		check_stop(l, ck);
	free(ck->body);
	ck->body = NULL;
	ck->bodylen = ck->bodycap = 0;
}

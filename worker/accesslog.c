/* The access log: one line per request, buffered per worker, written once per loop pass. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "worker/worker.h"

#define ALOG_BUFSZ	(64 * 1024)

/*
 * (Re)open conf->access_log for appending.  Called at start and on
 * SIGUSR1 (logrotate's postrotate, `routerctl log reopen`): lines already
 * buffered go to the old file first.  A file that cannot be opened is
 * logged and the access log is off until the next reopen.
 */
void
accesslog_open(struct worker *w)
{
	int	fd;

	if (w->conf->access_log[0] == '\0')
		return;
	accesslog_flush(w);
	fd = open(w->conf->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1) {
		log_warn("access log %s", w->conf->access_log);
		return;
	}
	if (w->alog_fd != -1)
		close(w->alog_fd);
	w->alog_fd = fd;
	if (w->alog.data == NULL) {
		if ((w->alog.data = malloc(ALOG_BUFSZ)) == NULL) {
			close(fd);
			w->alog_fd = -1;
			return;
		}
		w->alog.cap = ALOG_BUFSZ;
		buf_reset(&w->alog);
	}
}

/* Write what is buffered.  A full disk loses lines, never requests. */
void
accesslog_flush(struct worker *w)
{
	ssize_t	n;

	while (w->alog_fd != -1 && buf_len(&w->alog) > 0) {
		n = write(w->alog_fd, w->alog.data + w->alog.rpos, buf_len(&w->alog));
		if (n <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			break;
		}
		w->alog.rpos += (size_t)n;
	}
	buf_reset(&w->alog);
}

/*
 * One line: time client "request" status bytes duration upstream retries id
 *   2026-11-22T04:51:00Z 127.0.0.1 "GET /v1/models" 200 512 3ms b1 0 6f2c...
 * Status 0 means the exchange ended before any status was sent.
 */
void
accesslog_request(struct client *c)
{
	struct worker	*w = c->w;
	struct timespec	 ts;
	int		 n;

	if (w->alog_fd == -1 || c->x.t_start == 0)
		return;
	if (buf_room(&w->alog) < 512)
		accesslog_flush(w);
	if (buf_room(&w->alog) < 512)
		return;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec != w->alog_sec) {
		struct tm tm;

		gmtime_r(&ts.tv_sec, &tm);
		strftime(w->alog_time, sizeof(w->alog_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
		w->alog_sec = ts.tv_sec;
	}
	n = snprintf(w->alog.data + w->alog.wpos, buf_room(&w->alog),
	    "%s %s \"%s\" %d %llu %llums %s %d %s\n", w->alog_time, c->ip,
	    c->x.logreq[0] ? c->x.logreq : "-", c->x.status,
	    (unsigned long long)c->x.bytes_out,
	    (unsigned long long)(w->loop.now - c->x.t_start),
	    c->x.slot >= 0 ? w->wb[c->x.slot].name : "-",
	    c->x.attempts > 1 ? c->x.attempts - 1 : 0, c->x.rid[0] ? c->x.rid : "-");
	if (n > 0 && (size_t)n < buf_room(&w->alog))
		w->alog.wpos += (size_t)n;
}

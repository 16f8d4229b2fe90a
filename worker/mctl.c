/* A worker's link to the master: control-protocol requests on a socketpair, answered in order, never waited for. */
#include <sys/queue.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/ctlproto.h"
#include "lib/log.h"
#include "worker/mctl.h"
#include "worker/worker.h"

/*
 * The master serves one request of a connection at a time and answers in
 * order, so the pending list is a FIFO: the first reply belongs to its
 * head.  A request that timed out stays in the list (cb cleared) until
 * its late reply arrives and is dropped, which keeps the pairing right.
 */

#define MCTL_PENDING_MAX	256
#define MCTL_RBUF		(CTLPROTO_HDR + 256 * 1024)

struct mreq {
	TAILQ_ENTRY(mreq)	 entry;
	mctl_cb			 cb;
	void			*arg;
	uint64_t		 deadline;
};
TAILQ_HEAD(mreqq, mreq);

static struct {
	struct worker	*w;
	struct ev_io	 io;
	struct ev_timer	 timer;		/* the head's deadline; also delivers 503s */
	struct mreqq	 pending;
	struct mreqq	 failed;	/* to be told 503 from the loop */
	size_t		 npending;
	char		*rbuf;
	size_t		 rlen;
	char		*wbuf;
	size_t		 woff, wlen, wcap;
	int		 dead;
} mc = { .io = { .fd = -1 } };

static void	mctl_io(struct ev_loop *, struct ev_io *, uint32_t);
static void	mctl_timer(struct ev_loop *, struct ev_timer *);

void
mctl_init(struct worker *w, int fd)
{
	mc.w = w;
	TAILQ_INIT(&mc.pending);
	TAILQ_INIT(&mc.failed);
	ev_timer_init(&mc.timer, mctl_timer);
	mc.io.fd = fd;
	mc.io.cb = mctl_io;
	mc.dead = fd == -1;
	if (fd == -1)
		return;
	if ((mc.rbuf = malloc(MCTL_RBUF)) == NULL ||
	    ev_add(&w->loop, &mc.io, EPOLLIN | EPOLLOUT | EPOLLET) == -1) {
		log_warn("worker: link to the master");
		close(fd);
		mc.io.fd = -1;
		mc.dead = 1;
	}
}

static void
mctl_arm(void)
{
	struct mreq	*q;
	uint64_t	 now = mc.w->loop.now, at = 0;

	if (!TAILQ_EMPTY(&mc.failed))
		at = now;
	TAILQ_FOREACH(q, &mc.pending, entry)
		if (q->cb != NULL && (at == 0 || q->deadline < at))
			at = q->deadline;
	if (at == 0)
		ev_timer_stop(&mc.w->loop, &mc.timer);
	else
		ev_timer_after(&mc.w->loop, &mc.timer, at > now ? at - now : 0);
}

/* The link broke: everything pending is answered 503 from the loop. */
static void
mctl_break(const char *why)
{
	struct mreq	*q;

	if (!mc.dead)
		log_warnx("worker: link to the master: %s", why);
	mc.dead = 1;
	if (mc.io.fd != -1) {
		ev_del(&mc.w->loop, &mc.io);
		close(mc.io.fd);
		mc.io.fd = -1;
	}
	while ((q = TAILQ_FIRST(&mc.pending)) != NULL) {
		TAILQ_REMOVE(&mc.pending, q, entry);
		mc.npending--;
		TAILQ_INSERT_TAIL(&mc.failed, q, entry);
	}
	mc.wlen = mc.woff = 0;
	mctl_arm();
}

static void
mctl_flush(void)
{
	ssize_t	n;

	while (!mc.dead && mc.woff < mc.wlen) {
		n = send(mc.io.fd, mc.wbuf + mc.woff, mc.wlen - mc.woff, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n == -1) {
			mctl_break("send failed");
			return;
		}
		mc.woff += (size_t)n;
	}
	if (mc.woff == mc.wlen)
		mc.woff = mc.wlen = 0;
}

int
mctl_send(const char *const *words, size_t nwords, mctl_cb cb, void *arg)
{
	struct mreq	*q;
	json_t		*req, *a;
	char		*frame;
	size_t		 len, i;

	if (mc.w == NULL || (q = calloc(1, sizeof(*q))) == NULL)
		return -1;	/* never set up (a unit test), or out of memory */
	q->cb = cb;
	q->arg = arg;
	q->deadline = mc.w->loop.now + MCTL_TIMEOUT_MS;
	if (mc.dead || mc.npending >= MCTL_PENDING_MAX) {
		TAILQ_INSERT_TAIL(&mc.failed, q, entry);
		mctl_arm();
		return 0;
	}
	a = json_array();
	for (i = 0; i < nwords; i++)
		json_array_append_new(a, json_string(words[i]));
	req = json_pack("{s:o, s:b}", "cmd", a, "json", 1);
	frame = req != NULL ? ctlproto_frame_json(req, CTLPROTO_REQ_MAX, &len) : NULL;
	json_decref(req);
	if (frame == NULL) {
		free(q);
		return -1;
	}
	if (mc.wlen + len > mc.wcap) {
		size_t	 ncap = mc.wcap ? mc.wcap : 4096;
		char	*nb;

		while (ncap < mc.wlen + len)
			ncap *= 2;
		if ((nb = realloc(mc.wbuf, ncap)) == NULL) {
			free(frame);
			free(q);
			return -1;
		}
		mc.wbuf = nb;
		mc.wcap = ncap;
	}
	memcpy(mc.wbuf + mc.wlen, frame, len);
	mc.wlen += len;
	free(frame);
	TAILQ_INSERT_TAIL(&mc.pending, q, entry);
	mc.npending++;
	mctl_flush();
	mctl_arm();
	return 0;
}

void
mctl_cancel(void *arg)
{
	struct mreq	*q;

	TAILQ_FOREACH(q, &mc.pending, entry)
		if (q->arg == arg)
			q->cb = NULL;
	TAILQ_FOREACH(q, &mc.failed, entry)
		if (q->arg == arg)
			q->cb = NULL;
}

/* One reply frame: it answers the head of the pending list. */
static void
mctl_reply(const char *p, size_t n)
{
	struct mreq	*q;
	json_t		*v;
	mctl_cb		 cb;
	void		*arg;

	if ((q = TAILQ_FIRST(&mc.pending)) == NULL) {
		mctl_break("a reply nobody asked for");
		return;
	}
	TAILQ_REMOVE(&mc.pending, q, entry);
	mc.npending--;
	cb = q->cb;
	arg = q->arg;
	free(q);
	v = json_loadb(p, n, 0, NULL);
	if (cb != NULL)
		cb(arg, v != NULL && json_is_object(v) ? v : NULL, v != NULL ? 200 : 502);
	json_decref(v);
}

static void
mctl_io(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	ssize_t	 r;
	size_t	 n;
	int	 rc, loops;

	if (mc.dead)
		return;
	if (events & EPOLLOUT)
		mctl_flush();
	for (loops = 0; loops < 1024 && !mc.dead; loops++) {
		r = read(mc.io.fd, mc.rbuf + mc.rlen, MCTL_RBUF - mc.rlen);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && errno == EAGAIN)
			break;
		if (r <= 0) {
			mctl_break(r == 0 ? "the master closed it" : "read failed");
			return;
		}
		mc.rlen += (size_t)r;
		for (;;) {
			rc = ctlproto_frame_parse(mc.rbuf, mc.rlen,
			    MCTL_RBUF - CTLPROTO_HDR, &n);
			if (rc == 0)
				break;
			if (rc == -1) {
				mctl_break("a frame too large");
				return;
			}
			mctl_reply(mc.rbuf + CTLPROTO_HDR, n);
			if (mc.dead)
				return;
			memmove(mc.rbuf, mc.rbuf + CTLPROTO_HDR + n,
			    mc.rlen - CTLPROTO_HDR - n);
			mc.rlen -= CTLPROTO_HDR + n;
		}
	}
	mctl_arm();
}

/* Deadlines passed and links broken: tell the callers. */
static void
mctl_timer(struct ev_loop *l, struct ev_timer *t)
{
	struct mreq	*q;
	mctl_cb		 cb;
	void		*arg;
	size_t		 k;

	for (k = 0; k < MCTL_PENDING_MAX && (q = TAILQ_FIRST(&mc.failed)) != NULL; k++) {
		TAILQ_REMOVE(&mc.failed, q, entry);
		cb = q->cb;
		arg = q->arg;
		free(q);
		if (cb != NULL)
			cb(arg, NULL, 503);
	}
	TAILQ_FOREACH(q, &mc.pending, entry) {
		if (q->cb == NULL || q->deadline > l->now)
			continue;
		cb = q->cb;
		q->cb = NULL;		/* its reply, if it comes, is dropped */
		log_warnx("worker: the master did not answer within %d ms",
		    MCTL_TIMEOUT_MS);
		cb(q->arg, NULL, 504);
	}
	mctl_arm();
}

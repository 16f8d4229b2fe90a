/* The control socket: routerctl's framed JSON requests, peer credentials, the command table, monitor events. */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/control.h"

#define CONTROL_CLIENTS_MAX	64
#define CONTROL_FRAME_MS	5000	/* a request must arrive whole within this */
#define CONTROL_IDLE_MS		60000	/* between requests on one connection */
#define CONTROL_WATCH_MS	10	/* monitor: how often the prober's log head is read */
#define CONTROL_MONITOR_BACKLOG	(1024 * 1024)	/* unsent events before a monitor is dropped */
#define CONTROL_RBUF		(CTLPROTO_HDR + CTLPROTO_REQ_MAX)

/* One connected routerctl. */
struct cclient {
	struct ev_io		 io;
	struct ev_timer		 timer;		/* frame or idle deadline */
	struct control		*ctl;
	TAILQ_ENTRY(cclient)	 entry;
	uid_t			 uid;
	pid_t			 pid;
	int			 may_write;
	int			 monitor;
	int			 worker;	/* a worker's admin API, over a socketpair */
	int			 closing;	/* close once the output is sent */
	int			 dead;		/* closed; freed by the gc timer */
	int			 partial;	/* timer is a frame deadline */
	uint32_t		 events;	/* epoll interest now */
	size_t			 rlen;
	char			*rbuf;		/* CONTROL_RBUF bytes */
	char			*wbuf;
	size_t			 woff, wlen, wcap;
};
TAILQ_HEAD(cclients, cclient);

/* What the monitor remembers of a slot between two polls. */
struct msnap {
	int		 inuse;
	uint32_t	 flags;
	uint32_t	 health;
	uint32_t	 breaker;
	uint32_t	 pool;
	uint64_t	 added_ms;
	char		 name[SHM_NAME_MAX];
};

struct control {
	struct master	*m;
	struct ev_io	 lio;
	struct ev_timer	 lpause;	/* accept paused after EMFILE */
	struct ev_timer	 gc;
	struct ev_timer	 poll;
	struct cclients	 clients;
	struct cclients	 dead;
	int		 nclients;
	int		 nmonitors;
	uid_t		 user_uid;	/* conf user:, or (uid_t)-1 */
	dev_t		 sdev;		/* the socket we made, to unlink only it */
	ino_t		 sino;
	char		 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	/* monitor baseline */
	struct msnap	*snap;
	uint32_t	 nsnap;
	uint64_t	 snap_gen;
	uint64_t	 plog_head;	/* the prober's log as far as the monitors saw it */
	uint32_t	 strat[SHM_POOLS_MAX];
};

/* For the fork handler: children must not hold the master's control descriptors. */
static struct control	*control_self;
static int		 control_atfork_done;

static void	 control_accept(struct ev_loop *, struct ev_io *, uint32_t);
static void	 control_client_io(struct ev_loop *, struct ev_io *, uint32_t);
static void	 control_client_kill(struct cclient *);
static void	 control_client_update(struct cclient *);
static void	 control_emit(struct control *, json_t *);
static void	 control_monitor_snapshot(struct control *);
static void	 control_gc(struct ev_loop *, struct ev_timer *);
static void	 control_poll(struct ev_loop *, struct ev_timer *);
static void	 control_resume(struct ev_loop *, struct ev_timer *);

#define CCLIENT_OF_TIMER(t) \
	((struct cclient *)((char *)(t) - offsetof(struct cclient, timer)))
#define CONTROL_OF(t, member) \
	((struct control *)((char *)(t) - offsetof(struct control, member)))

/* In a child just forked: close what belongs to the master, unlink nothing. */
static void
control_atfork_child(void)
{
	struct cclient	*cl;

	if (control_self == NULL)
		return;
	if (control_self->lio.fd != -1)
		close(control_self->lio.fd);
	TAILQ_FOREACH(cl, &control_self->clients, entry)
		if (cl->io.fd != -1)
			close(cl->io.fd);
	control_self = NULL;
}

/*
 * Prepare the socket path: refuse to take it from a live routerd (one
 * that answers connect()), remove a stale socket, make the missing last
 * directory.  0 or -1 (logged).
 */
static int
control_path_prepare(const char *path, const struct sockaddr_un *sun)
{
	struct stat	 st;
	char		 dir[sizeof(sun->sun_path)], *slash;
	int		 fd;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("control: %s exists and is not a socket", path);
			return -1;
		}
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
			log_warn("control: socket");
			return -1;
		}
		if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
			close(fd);
			log_warnx("control: %s: another routerd answers there", path);
			return -1;
		}
		close(fd);
		if (unlink(path) == -1) {
			log_warn("control: unlink stale %s", path);
			return -1;
		}
		return 0;
	}
	strlcpy(dir, path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
			log_warn("control: mkdir %s", dir);
			return -1;
		}
	}
	return 0;
}

/* What every control state needs, with or without a listening socket (fd -1). */
static void
control_setup(struct master *m, struct control *c, int fd)
{
	c->m = m;
	TAILQ_INIT(&c->clients);
	TAILQ_INIT(&c->dead);
	c->lio.fd = fd;
	c->lio.cb = control_accept;
	ev_timer_init(&c->lpause, control_resume);
	ev_timer_init(&c->gc, control_gc);
	ev_timer_init(&c->poll, control_poll);
	if (!control_atfork_done) {
		if (pthread_atfork(NULL, NULL, control_atfork_child) != 0)
			log_warnx("control: pthread_atfork failed");
		control_atfork_done = 1;
	}
	control_self = c;
	m->control = c;
}

int
control_init(struct master *m)
{
	struct control		*c;
	struct sockaddr_un	 sun;
	struct stat		 st;
	struct passwd		*pw;
	struct group		*gr;
	const char		*path = m->conf->control.socket;
	mode_t			 old;
	size_t			 i;
	int			 fd;

	m->control_fd = -1;
	m->control = NULL;
	for (i = 0; i < CTL_NCMDS; i++)
		if (control_handlers[i] == NULL || (size_t)ctlproto_cmds[i].id != i)
			fatalx("control: command table row %zu is broken", i);
	/*
	 * The state exists even with no socket (none configured, or it could
	 * not be made): the workers' admin writes come in all the same.
	 */
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("control: calloc");
		return -1;
	}
	control_setup(m, c, -1);
	if (path[0] == '\0') {
		log_info("control: no control.socket; routerctl is off");
		return 0;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path)) {
		log_warnx("control: %s: path too long", path);
		return -1;
	}
	if (control_path_prepare(path, &sun) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		log_warn("control: socket");
		return -1;
	}
	/* never a moment with wider permissions than 0660 */
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		log_warn("control: bind %s", path);
		close(fd);
		return -1;
	}
	umask(old);
	if (chmod(path, 0660) == -1 || stat(path, &st) == -1 ||
	    listen(fd, 16) == -1) {
		log_warn("control: %s", path);
		close(fd);
		unlink(path);
		return -1;
	}
	/* the configured group may connect and read (uid check below for writes) */
	if (m->conf->group[0] != '\0') {
		if ((gr = getgrnam(m->conf->group)) == NULL)
			log_warnx("control: unknown group %s", m->conf->group);
		else if (chown(path, (uid_t)-1, gr->gr_gid) == -1)
			log_warn("control: chown %s", path);
	}
	c->user_uid = (uid_t)-1;
	if (m->conf->user[0] != '\0' && (pw = getpwnam(m->conf->user)) != NULL)
		c->user_uid = pw->pw_uid;
	c->sdev = st.st_dev;
	c->sino = st.st_ino;
	strlcpy(c->path, path, sizeof(c->path));
	c->lio.fd = fd;
	if (ev_add(&m->loop, &c->lio, EPOLLIN) == -1) {
		log_warn("control: epoll");
		close(fd);
		unlink(path);
		c->lio.fd = -1;
		return -1;
	}
	m->control_fd = fd;
	log_info("control: listening on %s", path);
	return 0;
}

static void
control_client_free(struct cclient *cl)
{
	free(cl->rbuf);
	free(cl->wbuf);
	free(cl);
}

/* Free the clients closed since the last pass: no epoll event can name them now. */
static void
control_gc(struct ev_loop *l, struct ev_timer *t)
{
	struct control	*c = CONTROL_OF(t, gc);
	struct cclient	*cl;

	while ((cl = TAILQ_FIRST(&c->dead)) != NULL) {
		TAILQ_REMOVE(&c->dead, cl, entry);
		control_client_free(cl);
	}
}

void
control_close(struct master *m)
{
	struct control	*c = m->control;
	struct cclient	*cl;
	struct stat	 st;

	if (c == NULL)
		return;
	while ((cl = TAILQ_FIRST(&c->clients)) != NULL)
		control_client_kill(cl);
	control_gc(&m->loop, &c->gc);
	ev_timer_stop(&m->loop, &c->gc);
	ev_timer_stop(&m->loop, &c->poll);
	ev_timer_stop(&m->loop, &c->lpause);
	if (c->lio.fd != -1) {
		ev_del(&m->loop, &c->lio);
		close(c->lio.fd);
	}
	/* only our own socket: a newer routerd may own the path by now */
	if (stat(c->path, &st) == 0 && st.st_dev == c->sdev && st.st_ino == c->sino)
		unlink(c->path);
	free(c->snap);
	free(c);
	control_self = NULL;
	m->control = NULL;
	m->control_fd = -1;
}

/* Accepting again after a pause for lack of descriptors. */
static void
control_resume(struct ev_loop *l, struct ev_timer *t)
{
	struct control	*c = CONTROL_OF(t, lpause);

	if (ev_add(l, &c->lio, EPOLLIN) == -1)
		log_warn("control: epoll");
}

static void
control_client_timeout(struct ev_loop *l, struct ev_timer *t)
{
	struct cclient	*cl = CCLIENT_OF_TIMER(t);

	log_debug("control: uid %u pid %d: %s; closing", (unsigned)cl->uid,
	    (int)cl->pid, cl->partial ? "request not complete in time" : "idle");
	control_client_kill(cl);
}

static void
control_accept(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct control	*c = (struct control *)((char *)io - offsetof(struct control, lio));
	struct cclient	*cl;
	struct ucred	 cred;
	socklen_t	 clen;
	int		 fd;

	for (;;) {
		if ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("control: accept; pausing 100 ms");
				ev_del(l, io);
				ev_timer_after(l, &c->lpause, 100);
			} else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("control: accept");
			return;
		}
		clen = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == -1) {
			log_warn("control: SO_PEERCRED");
			close(fd);
			continue;
		}
		if (c->nclients >= CONTROL_CLIENTS_MAX) {
			log_warnx("control: %d clients already; refusing uid %u pid %d",
			    c->nclients, (unsigned)cred.uid, (int)cred.pid);
			close(fd);
			continue;
		}
		if ((cl = calloc(1, sizeof(*cl))) == NULL ||
		    (cl->rbuf = malloc(CONTROL_RBUF)) == NULL) {
			log_warn("control: calloc");
			free(cl);
			close(fd);
			continue;
		}
		cl->ctl = c;
		cl->uid = cred.uid;
		cl->pid = cred.pid;
		cl->may_write = cred.uid == 0 || cred.uid == getuid() ||
		    cred.uid == geteuid() || cred.uid == c->user_uid;
		cl->io.fd = fd;
		cl->io.cb = control_client_io;
		cl->events = EPOLLIN;
		if (ev_add(l, &cl->io, cl->events) == -1) {
			log_warn("control: epoll");
			control_client_free(cl);
			close(fd);
			continue;
		}
		ev_timer_init(&cl->timer, control_client_timeout);
		cl->partial = 1;
		ev_timer_after(l, &cl->timer, CONTROL_FRAME_MS);
		TAILQ_INSERT_TAIL(&c->clients, cl, entry);
		c->nclients++;
		log_debug("control: uid %u pid %d connected%s", (unsigned)cred.uid,
		    (int)cred.pid, cl->may_write ? "" : " (read-only)");
	}
}

/*
 * control_adopt(): the master's end of a worker's socketpair becomes a
 * control client that may write (the worker checked the admin token),
 * the way the admin API's writes reach the master (DESIGN "One control
 * plane").  It never idles out.  0, or -1 (fd closed).
 */
int
control_adopt(struct master *m, int fd, pid_t pid)
{
	struct control	*c = m->control;
	struct cclient	*cl = NULL;

	if (c == NULL || (cl = calloc(1, sizeof(*cl))) == NULL ||
	    (cl->rbuf = malloc(CONTROL_RBUF)) == NULL) {
		if (c != NULL)
			log_warn("control: calloc");
		free(cl);
		close(fd);
		return -1;
	}
	cl->ctl = c;
	cl->uid = getuid();
	cl->pid = pid;
	cl->may_write = 1;
	cl->worker = 1;
	cl->io.fd = fd;
	cl->io.cb = control_client_io;
	cl->events = EPOLLIN;
	ev_timer_init(&cl->timer, control_client_timeout);
	if (ev_add(&m->loop, &cl->io, cl->events) == -1) {
		log_warn("control: epoll");
		control_client_free(cl);
		close(fd);
		return -1;
	}
	/* not counted against CONTROL_CLIENTS_MAX: routerctl must still get in */
	TAILQ_INSERT_TAIL(&c->clients, cl, entry);
	return 0;
}

/*
 * Close a client now; its memory goes at the next gc pass, because an
 * event for it may still wait in the loop's current batch.
 */
static void
control_client_kill(struct cclient *cl)
{
	struct control	*c = cl->ctl;
	struct ev_loop	*l = &c->m->loop;

	if (cl->dead)
		return;
	cl->dead = 1;
	ev_timer_stop(l, &cl->timer);
	ev_del(l, &cl->io);
	close(cl->io.fd);
	cl->io.fd = -1;
	if (cl->monitor && --c->nmonitors == 0)
		ev_timer_stop(l, &c->poll);
	TAILQ_REMOVE(&c->clients, cl, entry);
	TAILQ_INSERT_TAIL(&c->dead, cl, entry);
	if (!cl->worker)
		c->nclients--;
	ev_timer_after(l, &c->gc, 0);
}

/* Queue bytes for the client.  0, or -1 when out of memory (the client is then killed). */
static int
control_queue(struct cclient *cl, const char *p, size_t n)
{
	char	*nb;
	size_t	 ncap;

	if (cl->woff > 0 && cl->woff == cl->wlen)
		cl->woff = cl->wlen = 0;
	if (cl->wlen + n > cl->wcap) {
		if (cl->woff > 0) {
			memmove(cl->wbuf, cl->wbuf + cl->woff, cl->wlen - cl->woff);
			cl->wlen -= cl->woff;
			cl->woff = 0;
		}
		for (ncap = cl->wcap ? cl->wcap : 4096; ncap < cl->wlen + n; ncap *= 2)
			;
		if (ncap > cl->wcap) {
			if ((nb = realloc(cl->wbuf, ncap)) == NULL) {
				log_warn("control: realloc");
				control_client_kill(cl);
				return -1;
			}
			cl->wbuf = nb;
			cl->wcap = ncap;
		}
	}
	memcpy(cl->wbuf + cl->wlen, p, n);
	cl->wlen += n;
	return 0;
}

/* Write what is queued without blocking.  0, or -1 if the client was killed. */
static int
control_flush(struct cclient *cl)
{
	ssize_t	w;

	while (cl->woff < cl->wlen) {
		w = send(cl->io.fd, cl->wbuf + cl->woff, cl->wlen - cl->woff,
		    MSG_NOSIGNAL);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && errno == EAGAIN)
			break;
		if (w == -1) {
			control_client_kill(cl);
			return -1;
		}
		cl->woff += (size_t)w;
	}
	if (cl->woff == cl->wlen) {
		cl->woff = cl->wlen = 0;
		if (cl->closing) {
			control_client_kill(cl);
			return -1;
		}
	}
	control_client_update(cl);
	return 0;
}

/* Interest follows state: read while there is room and no pending reply, write while output waits. */
static void
control_client_update(struct cclient *cl)
{
	uint32_t	want = 0;

	if (cl->dead)
		return;
	if (!cl->closing && cl->rlen < CONTROL_RBUF)
		want |= EPOLLIN;
	if (cl->woff < cl->wlen)
		want |= EPOLLOUT;
	if (want != cl->events) {
		cl->events = want;
		if (ev_mod(&cl->ctl->m->loop, &cl->io, want) == -1) {
			log_warn("control: epoll");
			control_client_kill(cl);
		}
	}
}

/* Queue one frame with v (a reference is taken over). */
static void
control_send(struct cclient *cl, json_t *v)
{
	char	*frame;
	size_t	 len;

	if (cl->dead) {
		json_decref(v);
		return;
	}
	frame = ctlproto_frame_json(v, CTLPROTO_REPLY_MAX, &len);
	json_decref(v);
	if (frame == NULL) {
		/* too large or no memory: say so, which surely fits */
		v = json_pack("{s:b, s:s}", "ok", 0, "error", "reply too large");
		frame = ctlproto_frame_json(v, CTLPROTO_REPLY_MAX, &len);
		json_decref(v);
		if (frame == NULL) {
			control_client_kill(cl);
			return;
		}
	}
	control_queue(cl, frame, len);
	free(frame);
}

static void
control_error(struct cclient *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
control_error(struct cclient *cl, const char *fmt, ...)
{
	char	buf[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	control_send(cl, json_pack("{s:b, s:s}", "ok", 0, "error", buf));
}

/*
 * One request: decode it (lib/ctlproto.c), check the peer's right to it,
 * run the handler, queue the reply.  A request that is not JSON ends the
 * connection after the error reply; a well-formed but wrong one (unknown,
 * bad arguments, refused) does not.
 */
static void
control_request(struct cclient *cl, const char *p, size_t n)
{
	struct master	*m = cl->ctl->m;
	const struct ctlproto_cmd *cmd;
	struct ctlproto_req rq;
	json_t		*data;
	char		 msg[512], *err;
	int		 fatal;

	if (ctlproto_request_parse(p, n, &rq, msg, sizeof(msg), &fatal) == -1) {
		control_error(cl, "%s", msg);
		if (fatal)
			cl->closing = 1;
		return;
	}
	cmd = rq.cmd;
	if (cmd->write && !cl->may_write) {
		log_warnx("control: uid %u pid %d: %s: permission denied",
		    (unsigned)cl->uid, (int)cl->pid, rq.text);
		control_error(cl, "permission denied");
		ctlproto_request_free(&rq);
		return;
	}
	if (cmd->write)
		log_info("control: %s %d: %s", cl->worker ? "admin API, worker pid" :
		    "uid", cl->worker ? (int)cl->pid : (int)cl->uid, rq.text);
	if ((err = calloc(1, 8192)) == NULL) {
		control_error(cl, "out of memory");
		ctlproto_request_free(&rq);
		return;
	}
	data = control_handlers[cmd->id](m, rq.argv + cmd->nwords,
	    rq.nw - cmd->nwords, rq.json, err, 8192);
	/* what the write changed reaches every monitor before its reply leaves */
	if (cmd->write && data != NULL)
		control_changed(m);
	if (data == NULL) {
		if (cmd->write)
			log_warnx("control: %s: %s", rq.text, err);
		control_send(cl, json_pack("{s:b, s:s}", "ok", 0, "error",
		    err[0] ? err : "failed"));
	} else
		control_send(cl, json_pack("{s:b, s:o}", "ok", 1, "data", data));
	free(err);
	ctlproto_request_free(&rq);
	if (data != NULL && cmd->id == CTL_MONITOR && !cl->monitor && !cl->dead) {
		cl->monitor = 1;
		if (cl->ctl->nmonitors++ == 0)
			control_monitor_snapshot(cl->ctl);
	}
	if (data != NULL && cmd->id == CTL_STOP) {
		/* the reply first: the stop may end the loop that would send it */
		control_flush(cl);
		master_stop(m, 0);
	}
}

/* Take the complete requests out of the input, one at a time (one reply in flight). */
static void
control_process(struct cclient *cl)
{
	struct ev_loop	*l = &cl->ctl->m->loop;
	size_t		 n, used;
	int		 rc;

	while (!cl->dead && !cl->closing && cl->woff == cl->wlen) {
		rc = ctlproto_frame_parse(cl->rbuf, cl->rlen, CTLPROTO_REQ_MAX, &n);
		if (rc == 0)
			break;
		if (rc == -1) {
			control_error(cl, "bad frame: length must be 1 to %d bytes",
			    CTLPROTO_REQ_MAX);
			cl->closing = 1;
			cl->rlen = 0;
			break;
		}
		control_request(cl, cl->rbuf + CTLPROTO_HDR, n);
		if (cl->dead)
			return;
		used = CTLPROTO_HDR + n;
		memmove(cl->rbuf, cl->rbuf + used, cl->rlen - used);
		cl->rlen -= used;
		if (control_flush(cl) == -1)
			return;
	}
	if (cl->dead)
		return;
	/* the deadline: a started request must finish in time; a quiet one idles longer */
	if (cl->rlen > 0 && !cl->partial) {
		cl->partial = 1;
		ev_timer_after(l, &cl->timer, CONTROL_FRAME_MS);
	} else if (cl->rlen == 0 && (cl->monitor || cl->worker)) {
		cl->partial = 0;
		ev_timer_stop(l, &cl->timer);
	} else if (cl->rlen == 0) {
		cl->partial = 0;
		ev_timer_after(l, &cl->timer, CONTROL_IDLE_MS);
	}
	control_flush(cl);
}

static void
control_client_io(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct cclient	*cl = (struct cclient *)io;
	ssize_t		 r;

	if (cl->dead)
		return;
	if ((events & EPOLLOUT) && control_flush(cl) == -1)
		return;
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !cl->closing) {
		while (cl->rlen < CONTROL_RBUF) {
			r = read(cl->io.fd, cl->rbuf + cl->rlen, CONTROL_RBUF - cl->rlen);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == -1 && errno == EAGAIN)
				break;
			if (r <= 0) {
				/* gone: a reply it did not wait for is dropped */
				control_client_kill(cl);
				return;
			}
			cl->rlen += (size_t)r;
		}
	} else if (events & (EPOLLHUP | EPOLLERR)) {
		control_client_kill(cl);
		return;
	}
	control_process(cl);
}

/* Queue an event frame for every monitor; a monitor too far behind is dropped. */
static void
control_emit(struct control *c, json_t *ev)
{
	struct cclient	*cl, *next;
	char		*frame;
	size_t		 len;
	json_t		*v;

	if (ev == NULL)
		return;
	v = json_pack("{s:b, s:o}", "ok", 1, "event", ev);
	frame = ctlproto_frame_json(v, CTLPROTO_REPLY_MAX, &len);
	json_decref(v);
	if (frame == NULL)
		return;
	for (cl = TAILQ_FIRST(&c->clients); cl != NULL; cl = next) {
		next = TAILQ_NEXT(cl, entry);
		if (!cl->monitor || cl->dead)
			continue;
		if (cl->wlen - cl->woff > CONTROL_MONITOR_BACKLOG) {
			log_warnx("control: monitor uid %u pid %d too slow; dropped",
			    (unsigned)cl->uid, (int)cl->pid);
			control_client_kill(cl);
			continue;
		}
		if (control_queue(cl, frame, len) == 0)
			control_flush(cl);
	}
	free(frame);
}

/* A new event object with its time and type. */
static json_t *
control_event_new(const char *type)
{
	char	now[40];

	control_time(shm_now_ms(), 1, now, sizeof(now));
	return json_pack("{s:s, s:s}", "time", now, "type", type);
}

void
control_event(struct master *m, const char *type, const char *fmt, ...)
{
	struct control	*c = m->control;
	json_t		*ev;
	char		 msg[1024];
	va_list		 ap;

	if (c == NULL || c->nmonitors == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((ev = control_event_new(type)) == NULL)
		return;
	json_object_set_new(ev, "message", json_string(msg));
	control_emit(c, ev);
}

static void
control_event_backend(struct control *c, const char *type, const char *name,
    uint32_t pool, const char *from, const char *to)
{
	json_t	*ev;
	char	 pname[SHM_NAME_MAX], msg[256];

	if ((ev = control_event_new(type)) == NULL)
		return;
	control_pool_name(c->m->shm, pool, pname, sizeof(pname));
	snprintf(msg, sizeof(msg), "%s (pool %s): %s -> %s", name,
	    pname[0] ? pname : "-", from, to);
	json_object_set_new(ev, "backend", json_string(name));
	json_object_set_new(ev, "pool", json_string(pname));
	json_object_set_new(ev, "from", json_string(from));
	json_object_set_new(ev, "to", json_string(to));
	json_object_set_new(ev, "message", json_string(msg));
	control_emit(c, ev);
}

/*
 * Compare the table with what the monitor saw last and emit one event
 * per change: membership and operator state (only when gen moved), health
 * and breaker words (every poll: the prober does not bump gen), pool
 * strategies.  With report == 0 it only records the baseline.
 */
static void
control_monitor_scan(struct control *c, int report)
{
	struct shm_hdr	*h = c->m->shm;
	struct shm_desc	 d;
	struct msnap	*s;
	uint32_t	 i, n, v, p;
	uint64_t	 gen = shm_gen(h);
	int		 descs = !report || gen != c->snap_gen;

	n = atomic_load_explicit(&h->nslots, memory_order_acquire);
	if (n > c->nsnap) {
		struct msnap *ns = reallocarray(c->snap, h->max_backends, sizeof(*ns));

		if (ns == NULL)
			return;
		memset(ns + c->nsnap, 0, (h->max_backends - c->nsnap) * sizeof(*ns));
		c->snap = ns;
		c->nsnap = h->max_backends;
	}
	for (i = 0; i < n; i++) {
		struct shm_slot *sl = shm_slot(h, i);

		s = &c->snap[i];
		if (descs) {
			shm_desc_read(sl, &d);
			if (!(d.flags & SHM_F_INUSE)) {
				if (s->inuse && report)
					control_event_backend(c, "backend", s->name,
					    s->pool, "present", "removed");
				s->inuse = 0;
				continue;
			}
			if (report && (!s->inuse || s->added_ms != d.added_ms ||
			    strcmp(s->name, d.name) != 0))
				control_event_backend(c, "backend", d.name, d.pool,
				    "absent", "added");
			else if (report && strcmp(control_state_word(s->flags),
			    control_state_word(d.flags)) != 0)
				control_event_backend(c, "backend", d.name, d.pool,
				    control_state_word(s->flags),
				    control_state_word(d.flags));
			if (!s->inuse || strcmp(s->name, d.name) != 0 ||
			    s->added_ms != d.added_ms) {
				/* a new backend starts from what the table says now */
				s->health = atomic_load_explicit(&sl->health,
				    memory_order_relaxed);
				s->breaker = atomic_load_explicit(&sl->breaker,
				    memory_order_relaxed);
			}
			s->inuse = 1;
			s->flags = d.flags;
			s->added_ms = d.added_ms;
			s->pool = d.pool;
			strlcpy(s->name, d.name, sizeof(s->name));
		}
		if (!s->inuse)
			continue;
		v = atomic_load_explicit(&sl->health, memory_order_relaxed);
		if (v != s->health && report)
			control_event_backend(c, "health", s->name, s->pool,
			    control_health_word(s->health), control_health_word(v));
		s->health = v;
		v = atomic_load_explicit(&sl->breaker, memory_order_relaxed);
		if (v != s->breaker && report)
			control_event_backend(c, "breaker", s->name, s->pool,
			    control_breaker_word(s->breaker), control_breaker_word(v));
		s->breaker = v;
	}
	for (; i < c->nsnap; i++) {
		if (c->snap[i].inuse && report)
			control_event_backend(c, "backend", c->snap[i].name,
			    c->snap[i].pool, "present", "removed");
		c->snap[i].inuse = 0;
	}
	for (p = 0; p < SHM_POOLS_MAX; p++) {
		char	name[SHM_NAME_MAX];
		json_t	*ev;

		v = shm_pool_strategy(h, p);
		if (report && v != c->strat[p]) {
			control_pool_name(h, p, name, sizeof(name));
			if (name[0] != '\0' && (ev = control_event_new("strategy")) != NULL) {
				char msg[256];

				snprintf(msg, sizeof(msg), "pool %s: %s -> %s", name,
				    conf_strategy_name(c->strat[p]),
				    conf_strategy_name(v));
				json_object_set_new(ev, "pool", json_string(name));
				json_object_set_new(ev, "from",
				    json_string(conf_strategy_name(c->strat[p])));
				json_object_set_new(ev, "to",
				    json_string(conf_strategy_name(v)));
				json_object_set_new(ev, "message", json_string(msg));
				control_emit(c, ev);
			}
		}
		c->strat[p] = v;
	}
	c->snap_gen = gen;
}

/*
 * The master's own writes (control commands, the registry, reloads) call
 * control_changed() right after they are made.  The prober's transitions
 * (health, breaker) reach the master only through the table: the watch
 * reads the head of the prober's log, which the prober bumps with every
 * slot it changes, every CONTROL_WATCH_MS (one atomic load when nothing
 * moved) and compares the table only when it moved.
 */
static void
control_poll(struct ev_loop *l, struct ev_timer *t)
{
	struct control	*c = CONTROL_OF(t, poll);
	uint64_t	 head;

	if (c->nmonitors == 0)
		return;
	head = atomic_load_explicit(&shm_plog(c->m->shm)->head,
	    memory_order_acquire);
	if (head != c->plog_head || shm_gen(c->m->shm) != c->snap_gen) {
		c->plog_head = head;
		control_monitor_scan(c, 1);
	}
	if (c->nmonitors > 0)
		ev_timer_after(l, &c->poll, CONTROL_WATCH_MS);
}

void
control_changed(struct master *m)
{
	struct control	*c = m->control;

	if (c == NULL || c->nmonitors == 0)
		return;
	control_monitor_scan(c, 1);
}

/* The first monitor: remember the table as it is, then watch the prober's log. */
static void
control_monitor_snapshot(struct control *c)
{
	c->plog_head = atomic_load_explicit(&shm_plog(c->m->shm)->head,
	    memory_order_acquire);
	control_monitor_scan(c, 0);
	ev_timer_after(&c->m->loop, &c->poll, CONTROL_WATCH_MS);
}

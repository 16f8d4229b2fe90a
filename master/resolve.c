/* Host names of a reloaded config, looked up in a helper process so that the master's loop never waits on DNS. */
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "master/master.h"

#define RESOLVE_NAMES_MAX	256	/* distinct host:port names per reload */
#define RESOLVE_TIMEOUT_MS	30000	/* the helper's answers, all of them */

/* One name and, once the helper answered, its address or why not. */
struct rname {
	char			 text[CONF_ADDR_MAX];	/* "host:port" */
	int			 asked;		/* a helper has it */
	int			 done, ok;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	char			 err[160];
};
_Static_assert(sizeof(struct rname) <= 4096, "a record is one atomic pipe write (PIPE_BUF)");

/*
 * Master only.  A reload that meets names it has no answer for records
 * them and fails softly; resolve_end() forks the helper with the list;
 * its answers come back over a pipe into names[]; the reload then runs
 * again with them ("final": what is still missing is an error) and they
 * are forgotten, so that every reload looks names up afresh, as a
 * restart would.
 */
static struct {
	struct master	*m;
	struct rname	*names;
	size_t		 n;
	size_t		 missing;	/* names of this pass without an answer */
	int		 final;		/* answers are in: missing ones are errors */
	int		 active;	/* between resolve_begin() and resolve_end() */
	pid_t		 pid;		/* the helper, 0: none */
	int		 fd;		/* its pipe, -1 */
	size_t		 got;		/* answers read */
	struct ev_io	 io;
	struct ev_timer	 timer;
} rs = { .fd = -1 };

static struct rname *
resolve_find(const char *text)
{
	size_t	i;

	for (i = 0; i < rs.n; i++)
		if (strcmp(rs.names[i].text, text) == 0)
			return &rs.names[i];
	return NULL;
}

/* conf_resolver_fn while a reload parses: answers, records, never blocks. */
static int
resolve_lookup(const char *text, const char *host, const char *port,
    struct conf_addr *a, char *err, size_t errlen)
{
	struct rname	*r;
	char		 key[CONF_ADDR_MAX];

	snprintf(key, sizeof(key), "%s:%s", host, port);
	if ((r = resolve_find(key)) != NULL && r->done) {
		if (!r->ok) {
			snprintf(err, errlen, "'%s': %s", text, r->err);
			return -1;
		}
		memcpy(&a->ss, &r->ss, r->sslen);
		a->sslen = r->sslen;
		return 0;
	}
	if (r != NULL && r->asked && rs.final) {
		snprintf(err, errlen, "'%s': cannot resolve '%s': no answer from "
		    "the resolver", text, host);
		return -1;
	}
	if (r == NULL) {
		if (rs.n == RESOLVE_NAMES_MAX) {
			snprintf(err, errlen, "'%s': more than %d host names in one "
			    "configuration", text, RESOLVE_NAMES_MAX);
			return -1;
		}
		r = &rs.names[rs.n++];
		memset(r, 0, sizeof(*r));
		strlcpy(r->text, key, sizeof(r->text));
	}
	/* never asked (new in the file, or met while a helper ran): another round */
	rs.missing++;
	snprintf(err, errlen, "'%s': '%s' not looked up yet", text, host);
	return -1;
}

static void
resolve_forget(void)
{
	rs.n = 0;
	rs.missing = 0;
	rs.final = 0;
}

/* The helper's life: look every name up (blocking is its job), one record each. */
static void __attribute__((noreturn))
resolve_child(int fd)
{
	struct conf_addr	 a;
	size_t			 i;

	conf_set_resolver(NULL);
	for (i = 0; i < rs.n; i++) {
		struct rname *r = &rs.names[i];

		if (!r->asked || r->done)
			continue;
		if (conf_parse_addr(r->text, &a, r->err, sizeof(r->err)) == 0) {
			r->ok = 1;
			memcpy(&r->ss, &a.ss, a.sslen);
			r->sslen = a.sslen;
		} else {
			/* the message names the text; the reload's line names it again */
			char *p = strstr(r->err, "': ");

			if (p != NULL)
				memmove(r->err, p + 3, strlen(p + 3) + 1);
		}
		r->done = 1;
		if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r))
			_exit(1);
	}
	_exit(0);
}

/* The helper is done (EOF), gone, or too slow: reload again with what it said. */
static void
resolve_done(const char *why)
{
	char	 err[4096];

	if (rs.fd != -1) {
		ev_del(&rs.m->loop, &rs.io);
		close(rs.fd);
		rs.fd = -1;
	}
	ev_timer_stop(&rs.m->loop, &rs.timer);
	if (rs.pid > 0 && why != NULL) {
		kill(rs.pid, SIGKILL);
		log_warnx("reload: host name lookups %s; unanswered names fail the reload",
		    why);
	}
	rs.pid = 0;
	rs.final = 1;
	log_debug("reload: %zu of %zu host names answered", rs.got, rs.n);
	master_reload(rs.m, err, sizeof(err));
	resolve_forget();	/* also when that reload stopped before parsing */
}

static void
resolve_readable(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct rname	 r;
	struct rname	*slot;
	ssize_t		 n;

	for (;;) {
		n = read(io->fd, &r, sizeof(r));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n != (ssize_t)sizeof(r)) {
			resolve_done(n == 0 ? NULL : "failed");
			return;
		}
		/* our own child, but still: only names we asked for, NUL-terminated */
		r.text[sizeof(r.text) - 1] = '\0';
		r.err[sizeof(r.err) - 1] = '\0';
		if ((slot = resolve_find(r.text)) == NULL || slot->done ||
		    r.sslen > sizeof(r.ss))
			continue;
		*slot = r;
		rs.got++;
	}
}

static void
resolve_timeout(struct ev_loop *l, struct ev_timer *t)
{
	resolve_done("took longer than 30s");
}

void
resolve_begin(struct master *m)
{
	rs.m = m;
	if (rs.names == NULL &&
	    (rs.names = calloc(RESOLVE_NAMES_MAX, sizeof(*rs.names))) == NULL)
		fatal("reload: calloc");
	rs.missing = 0;
	rs.active = 1;
	conf_set_resolver(resolve_lookup);
}

int
resolve_end(struct master *m, char *err, size_t errlen)
{
	int	p[2];
	pid_t	pid;
	size_t	i;

	conf_set_resolver(NULL);
	rs.active = 0;
	if (rs.missing == 0) {
		resolve_forget();
		return 0;
	}
	if (rs.pid > 0) {
		/* a reload during lookups: the one that follows them reads the file anew */
		snprintf(err, errlen, "reload waits for host name lookups already "
		    "running; it applies when they are done");
		return 1;
	}
	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "reload: pipe: %s", strerror(errno));
		resolve_forget();
		return -1;
	}
	for (i = 0; i < rs.n; i++)
		rs.names[i].asked = 1;
	rs.final = 0;
	if ((pid = master_fork_helper(m, "resolver", p[1])) == -1) {
		snprintf(err, errlen, "reload: fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		resolve_forget();
		return -1;
	}
	if (pid == 0)
		resolve_child(p[1]);
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	rs.pid = pid;
	rs.fd = p[0];
	rs.got = 0;
	rs.io.fd = p[0];
	rs.io.cb = resolve_readable;
	if (ev_add(&m->loop, &rs.io, EPOLLIN) == -1) {
		snprintf(err, errlen, "reload: epoll_ctl: %s", strerror(errno));
		kill(pid, SIGKILL);
		close(p[0]);
		rs.fd = -1;
		rs.pid = 0;
		resolve_forget();
		return -1;
	}
	ev_timer_init(&rs.timer, resolve_timeout);
	ev_timer_after(&m->loop, &rs.timer, RESOLVE_TIMEOUT_MS);
	log_info("reload: looking up %zu host name%s in a helper; the reload "
	    "applies when they are known", rs.n, rs.n == 1 ? "" : "s");
	snprintf(err, errlen, "reload deferred: looking up %zu host name%s "
	    "(the master does not wait on DNS); it applies when they are known",
	    rs.n, rs.n == 1 ? "" : "s");
	return 1;
}

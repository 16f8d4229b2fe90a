/* The master's life: bind listeners, fork and supervise workers, react to signals. */
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/libutil.h>
#include <bsd/string.h>
#include <bsd/unistd.h>

#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"
#include "prober/prober.h"
#include "worker/worker.h"

/* routerd -t refuses more workers than the stripes of two generations allow */
_Static_assert(CONF_WORKERS_MAX <= SHM_WORKERS_MAX / 2, "workers bound is half the stripes");

#define RESPAWN_MIN_MS	100
#define RESPAWN_MAX_MS	5000
#define STOP_GRACE_MS	5000

/* One SO_REUSEPORT socket per worker position, kept for the master's life. */
int
master_bind(const struct conf_addr *a)
{
	int	fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1 ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->sslen) == -1 ||
	    listen(fd, 4096) == -1) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
master_listen(struct master *m)
{
	size_t		i;
	uint32_t	p;

	m->nls = m->conf->nlisten;
	for (p = 0; p < SHM_WORKERS_MAX; p++)
		m->afds[p] = -1;
	if (m->conf->admin.addr.text[0] != '\0') {
		for (p = 0; p < m->nworkers; p++) {
			if ((m->afds[p] = master_bind(&m->conf->admin.addr)) == -1) {
				log_warn("master: admin listener on %s",
				    m->conf->admin.addr.text);
				return -1;
			}
		}
	}
	for (i = 0; i < m->nls; i++) {
		m->laddr[i] = m->conf->listen[i];
		for (p = 0; p < m->nworkers; p++) {
			if ((m->lfds[i][p] = master_bind(&m->laddr[i])) == -1) {
				log_warn("master: listen on %s", m->laddr[i].text);
				return -1;
			}
		}
	}
	return 0;
}

static uint32_t
master_free_stripe(struct master *m)
{
	uint32_t	s, i;

	for (s = 0; s < m->shm->max_workers; s++) {
		for (i = 0; i < SHM_WORKERS_MAX; i++)
			if (m->w[i].pid != 0 && m->w[i].stripe == s)
				break;
		if (i == SHM_WORKERS_MAX)
			return s;
	}
	return UINT32_MAX;
}

size_t	 master_argv0_len;

void
master_title(const char *title)
{
	/* "routerd: " is prepended by libbsd, so pad the rest to argv[0]'s length */
	int	pad = (int)master_argv0_len - (int)sizeof("routerd: ") + 1;

	setproctitle("%-*s", pad > 0 && pad < 256 ? pad : 0, title);
}

/*
 * Close every descriptor but 0-2 and the keep[] ones: a child holds only
 * what it serves with, so that the control socket, other positions'
 * listeners, the pidfile or the syncer's pair never live on in a process
 * that does not own them (a kept listener keeps a port bound after its
 * address left the config; a kept syncer pair hides the master's death).
 */
static void
master_close_fds(const int *keep, size_t nkeep)
{
	int		 sorted[CONF_LISTEN_MAX + 4];
	size_t		 i, j, n = 0;
	unsigned int	 lo = 3;

	for (i = 0; i < nkeep && n < sizeof(sorted) / sizeof(sorted[0]); i++) {
		if (keep[i] < 3)	/* stdio, or -1: none */
			continue;
		for (j = n; j > 0 && sorted[j - 1] > keep[i]; j--)
			sorted[j] = sorted[j - 1];
		sorted[j] = keep[i];
		n++;
	}
	log_fds_closing();
	for (i = 0; i < n; i++) {
		if ((unsigned int)sorted[i] > lo)
			close_range(lo, (unsigned int)sorted[i] - 1, 0);
		if ((unsigned int)sorted[i] >= lo)
			lo = (unsigned int)sorted[i] + 1;
	}
	if (close_range(lo, ~0U, 0) == -1)
		closefrom((int)lo);	/* kernels before 5.9 */
	log_fds_closed();
}

/* The child side of a fork: drop what belongs to the master, keeping only keep[] (and stdio). */
static void
master_child_setup(struct master *m, const char *title, const int *keep,
    size_t nkeep)
{
	sigset_t	 all;

	master_title(title);
	log_procname(title);
	ev_close(&m->loop);
	if (m->pfh != NULL)
		pidfile_close(m->pfh);
	master_close_fds(keep, nkeep);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
}

/*
 * After the privilege drop (which clears it), ask for SIGTERM when the
 * master dies, then check that it has not died already: a death before
 * prctl() sends nothing.  The liveness pipe tells the loops as well.
 */
static void
master_child_pdeathsig(struct master *m)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != m->pid)
		_exit(0);
}

pid_t
master_fork_helper(struct master *m, const char *title, int keep_fd)
{
	pid_t	pid;

	if ((pid = fork()) != 0)
		return pid;
	master_child_setup(m, title, &keep_fd, 1);
	if (priv_drop(&m->priv) == -1)
		_exit(1);
	master_child_pdeathsig(m);
	return 0;
}

static void
master_syncer_io(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct master	*m = (struct master *)((char *)io - offsetof(struct master, syncer_io));

	registry_readable(m, io->fd);
}

/*
 * The syncer talks to the master over a SOCK_SEQPACKET pair, made anew
 * for every syncer process, so a message is never half read.
 */
static int
master_syncer_pair(struct master *m, int *child_fd)
{
	int	sv[2];

	if (m->syncer_fd != -1) {
		ev_del(&m->loop, &m->syncer_io);
		close(m->syncer_fd);
		m->syncer_fd = -1;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("master: socketpair for the syncer");
		return -1;
	}
	m->syncer_fd = sv[0];
	m->syncer_io.fd = sv[0];
	m->syncer_io.cb = master_syncer_io;
	if (ev_add(&m->loop, &m->syncer_io, EPOLLIN) == -1) {
		log_warn("master: epoll_ctl syncer");
		close(sv[0]);
		close(sv[1]);
		m->syncer_fd = -1;
		return -1;
	}
	*child_fd = sv[1];
	return 0;
}

/* Fork a helper role (prober, syncer): it needs no listener. */
static int
master_spawn_role(struct master *m, struct mworker *mw)
{
	pid_t	pid;
	int	cfd = -1;

	if (mw->role == ROLE_SYNCER && master_syncer_pair(m, &cfd) == -1)
		return -1;
	switch (pid = fork()) {
	case -1:
		log_warn("master: fork");
		return -1;
	case 0:
		/* the syncer's liveness is its pair: the master holds the other end */
		master_child_setup(m, mw->role == ROLE_PROBER ? "prober" : "syncer",
		    mw->role == ROLE_SYNCER ? &cfd : &m->alive[0], 1);
		if (priv_drop(&m->priv) == -1)
			_exit(1);
		master_child_pdeathsig(m);
		if (mw->role == ROLE_SYNCER)
			_exit(syncer_main(m->conf, cfd));
		_exit(prober_main(m->conf, m->shm, m->alive[0]));
	}
	if (cfd != -1)
		close(cfd);
	mw->pid = pid;
	mw->started_ms = m->loop.now;
	mw->respawn_at = 0;
	return 0;
}

/* Fork the worker for mw->pos.  0, or -1 if fork failed (retried later). */
static int
master_spawn(struct master *m, struct mworker *mw)
{
	pid_t	pid;
	int	fds[CONF_LISTEN_MAX + 3], sv[2];
	size_t	i;

	if (mw->role != ROLE_WORKER)
		return master_spawn_role(m, mw);
	mw->stripe = master_free_stripe(m);
	if (mw->stripe == UINT32_MAX) {
		log_warnx("master: no free counter stripe for worker %u", mw->pos);
		return -1;
	}
	for (i = 0; i < m->nls; i++)
		fds[i] = m->lfds[i][mw->pos];
	/* the admin API's writes come to us on this pair (DESIGN "One control plane") */
	sv[0] = sv[1] = -1;
	if (m->afds[mw->pos] != -1 && socketpair(AF_UNIX, SOCK_STREAM |
	    SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
		log_warn("master: socketpair for worker %u's admin writes", mw->pos);
	switch (pid = fork()) {
	case -1:
		log_warn("master: fork");
		if (sv[0] != -1) {
			close(sv[0]);
			close(sv[1]);
		}
		return -1;
	case 0:
		if (sv[0] != -1)
			close(sv[0]);
		{
			char name[32];

			/* our position's listeners; the others' are the master's */
			fds[m->nls] = m->afds[mw->pos];
			fds[m->nls + 1] = m->alive[0];
			fds[m->nls + 2] = sv[1];	/* -1 without an admin listener */
			snprintf(name, sizeof(name), "worker %u", mw->pos);
			master_child_setup(m, name, fds, m->nls + 3);
		}
		_exit(worker_main(m->conf, m->shm, mw->stripe, mw->generation,
		    fds, m->nls, m->afds[mw->pos], sv[1], &m->priv, m->alive[0],
		    m->pid));
	}
	if (sv[0] != -1) {
		close(sv[1]);
		control_adopt(m, sv[0], pid);
	}
	mw->pid = pid;
	mw->started_ms = m->loop.now;
	mw->respawn_at = 0;
	atomic_store_explicit(&m->shm->workers[mw->stripe].pid, pid, memory_order_relaxed);
	log_debug("master: worker %u is pid %d", mw->pos, (int)pid);
	return 0;
}

/* Every child the master supervises, workers first; NULL past the end. */
static struct mworker *
master_child(struct master *m, int i)
{
	if (i < SHM_WORKERS_MAX)
		return &m->w[i];
	if (i == SHM_WORKERS_MAX)
		return &m->prober;
	if (i == SHM_WORKERS_MAX + 1)
		return &m->syncer;
	return NULL;
}

static void
master_kill_all(struct master *m, int sig)
{
	struct mworker	*mw;
	int		 i;

	for (i = 0; (mw = master_child(m, i)) != NULL; i++) {
		if (mw->pid <= 0)
			continue;
		/* helpers have nothing to drain: SIGQUIT stops them like SIGTERM */
		kill(mw->pid, mw->role == ROLE_WORKER || sig != SIGQUIT ? sig : SIGTERM);
	}
}

static int
master_nchildren(struct master *m)
{
	struct mworker	*mw;
	int		 i, n = 0;

	for (i = 0; (mw = master_child(m, i)) != NULL; i++)
		if (mw->pid > 0)
			n++;
	return n;
}

/*
 * A worker is gone, so its stripe has no writer: its in-flight counts are
 * requests that no longer exist.  Zero them, or least_connections would
 * shun those backends forever.  Totals stay for the metrics.
 */
static void
master_stripe_reset(struct master *m, uint32_t stripe)
{
	uint32_t	i, n;

	n = atomic_load_explicit(&m->shm->nslots, memory_order_acquire);
	/*
	 * The dead worker wrote this stripe; now we do, logged like any
	 * change.  Every slot, zero or not: the worker may have died between
	 * storing a word and logging it, so a zero here can be news.
	 */
	for (i = 0; i < n; i++)
		shm_inflight_set(m->shm, stripe, i, 0);
	/*
	 * Its queue went with it: the host-wide counts lose what it held,
	 * and no worker waits behind its first request any more.
	 */
	for (i = 0; i < SHM_POOLS_MAX; i++) {
		struct shm_poolq	*q = &m->shm->poolq[stripe][i];
		uint32_t		 w = atomic_load_explicit(&q->queued,
					    memory_order_relaxed);

		atomic_store_explicit(&q->head, 0, memory_order_relaxed);
		if (w == 0)
			continue;
		atomic_fetch_sub_explicit(&m->shm->qpool[i].queued, w,
		    memory_order_relaxed);
		atomic_store_explicit(&q->queued, 0, memory_order_relaxed);
		memset(q->band_queued, 0, sizeof(q->band_queued));
	}
	atomic_store_explicit(&m->shm->workers[stripe].queued, 0, memory_order_relaxed);
}

/*
 * The oldest config generation a worker still runs, or gen when none runs:
 * the pool ids of generations older than that may be given to new names.
 * A worker counts from its fork (its pid is set before the master can
 * reload again), so one that has not yet mapped its pools is counted.
 */
uint32_t
master_oldest_generation(const struct master *m, uint32_t gen)
{
	uint32_t	oldest = gen;
	size_t		i;

	for (i = 0; i < SHM_WORKERS_MAX; i++)
		if (m->w[i].pid > 0 && m->w[i].generation < oldest)
			oldest = m->w[i].generation;
	return oldest;
}

/* Reap children; a worker that died on its own is respawned with back-off. */
static void
master_reap(struct master *m)
{
	pid_t	pid;
	int	status, i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct mworker	*mw;

		for (i = 0; (mw = master_child(m, i)) != NULL; i++) {
			char	 what[32];

			if (mw->pid != pid)
				continue;
			if (mw->role == ROLE_WORKER) {
				master_stripe_reset(m, mw->stripe);
				atomic_store_explicit(&m->shm->workers[mw->stripe].pid, 0,
				    memory_order_relaxed);
				atomic_store_explicit(&m->shm->workers[mw->stripe].state, 0,
				    memory_order_relaxed);
				snprintf(what, sizeof(what), "worker %u", mw->pos);
			} else
				strlcpy(what, mw->role == ROLE_PROBER ? "prober" : "syncer",
				    sizeof(what));
			mw->pid = 0;
			if (mw->old) {
				/* a drained worker of an older generation: its entry is free */
				memset(mw, 0, sizeof(*mw));
				break;
			}
			if (m->stopping)
				break;
			if (WIFSIGNALED(status))
				log_warnx("master: %s (pid %d) killed by signal %d",
				    what, (int)pid, WTERMSIG(status));
			else
				log_warnx("master: %s (pid %d) exited with %d",
				    what, (int)pid, WEXITSTATUS(status));
			/* crash loop protection: back off while it dies young */
			if (m->loop.now - mw->started_ms < 1000)
				mw->backoff_ms = mw->backoff_ms ?
				    mw->backoff_ms * 2 : RESPAWN_MIN_MS;
			else
				mw->backoff_ms = 0;
			if (mw->backoff_ms > RESPAWN_MAX_MS)
				mw->backoff_ms = RESPAWN_MAX_MS;
			mw->respawn_at = m->loop.now + mw->backoff_ms;
			if (mw->respawn_at == 0)
				mw->respawn_at = 1;
			break;
		}
	}
}

static void
master_respawn_due(struct master *m)
{
	struct mworker	*mw;
	int		 i;

	for (i = 0; (mw = master_child(m, i)) != NULL; i++) {
		if (mw->role == ROLE_SYNCER && m->conf->registry.url[0] == '\0') {
			mw->respawn_at = 0;
			continue;
		}
		if (mw->pid == 0 && mw->respawn_at && mw->respawn_at <= m->loop.now &&
		    !m->stopping) {
			if (master_spawn(m, mw) == -1)
				mw->respawn_at = m->loop.now + RESPAWN_MAX_MS;
			else
				log_info("master: %s %u respawned as pid %d",
				    mw->role == ROLE_WORKER ? "worker" : "helper",
				    mw->pos, (int)mw->pid);
		}
	}
}

/* SIGUSR1, `routerctl log reopen`: every worker reopens its access log. */
void
master_log_reopen(struct master *m)
{
	size_t	i;

	log_info("master: reopening log files");
	for (i = 0; i < SHM_WORKERS_MAX; i++)
		if (m->w[i].pid > 0)
			kill(m->w[i].pid, SIGUSR1);
}

void
master_stop(struct master *m, int drain)
{
	if (!drain && m->stopping != 1) {
		log_info("master: stopping");
		m->stopping = 1;
		m->stop_deadline = m->loop.now + STOP_GRACE_MS;
		master_kill_all(m, SIGTERM);
	} else if (drain && !m->stopping) {
		log_info("master: draining, then stopping");
		m->stopping = 2;
		m->stop_deadline = m->loop.now +
		    (uint64_t)m->conf->timeout.drain_ms + STOP_GRACE_MS;
		master_kill_all(m, SIGQUIT);
	}
}

/* Counter stripes no live worker holds. */
uint32_t
master_free_stripes(struct master *m)
{
	uint32_t	p, n = 0;

	for (p = 0; p < m->shm->max_workers; p++)
		if (atomic_load_explicit(&m->shm->workers[p].pid, memory_order_relaxed) == 0)
			n++;
	return n;
}

/* Start a worker for every position of the current generation. */
void
master_spawn_generation(struct master *m)
{
	uint32_t	pos;
	size_t		i;

	for (pos = 0; pos < m->nworkers; pos++) {
		for (i = 0; i < SHM_WORKERS_MAX; i++)
			if (m->w[i].pid == 0 && !m->w[i].old && !m->w[i].respawn_at &&
			    !m->w[i].inuse)
				break;
		if (i == SHM_WORKERS_MAX)
			return;
		memset(&m->w[i], 0, sizeof(m->w[i]));
		m->w[i].inuse = 1;
		m->w[i].role = ROLE_WORKER;
		m->w[i].pos = pos;
		m->w[i].generation = m->generation;
		if (master_spawn(m, &m->w[i]) == -1)
			m->w[i].respawn_at = m->loop.now + RESPAWN_MIN_MS;
	}
}

struct msig {
	struct ev_io	 io;
	struct master	*m;
};

static void
master_signal(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct master		*m = ((struct msig *)io)->m;
	struct signalfd_siginfo	 si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			master_reap(m);
			break;
		case SIGTERM:
		case SIGINT:
			master_stop(m, 0);
			break;
		case SIGQUIT:
			master_stop(m, 1);
			break;
		case SIGHUP: {
			char	err[4096];

			log_info("master: SIGHUP: reloading");
			master_reload(m, err, sizeof(err));
			break;
		}
		case SIGUSR1:
			master_log_reopen(m);
			break;
		}
	}
}

/*
 * The master's loop.  The table is loaded and the listeners bound before
 * the first fork; afterwards the master only supervises.  Returns the
 * exit status.
 */
int
master_main(struct master *m)
{
	sigset_t	mask;
	struct msig	sig;

	{
		char	err[256];

		if (priv_lookup(m->conf->user, m->conf->group, &m->priv, err,
		    sizeof(err)) == -1) {
			log_warnx("master: %s", err);
			return 1;
		}
	}
	m->nworkers = (uint32_t)m->conf->workers;
	if (m->nworkers < 1)
		m->nworkers = 1;
	if (m->nworkers > SHM_WORKERS_MAX / 2)
		m->nworkers = SHM_WORKERS_MAX / 2;
	if (ev_init(&m->loop, 64) == -1)
		fatal("master: epoll");
	/* stripes for up to four generations at once: reloads overlap while old workers drain */
	m->shm = shm_create((uint32_t)m->conf->max_backends,
	    m->nworkers * 4 < SHM_WORKERS_MAX ? m->nworkers * 4 : SHM_WORKERS_MAX, NULL);
	if (m->shm == NULL)
		fatal("master: shared table");
	if (master_table_load(m->shm, m->conf, 1, 1) == -1)
		return 1;
	if (master_listen(m) == -1)
		return 1;
	m->syncer_fd = -1;
	m->control_fd = -1;
	/*
	 * Detach only now: a busy port or a bad user fails the start itself,
	 * with the reason on the operator's terminal (nginx does the same).
	 * The control socket comes after: daemon() forks, and the control
	 * code closes its descriptors in every forked child.
	 */
	if (!m->foreground) {
		if (daemon(0, 0) == -1)
			fatal("daemon");
		log_init(0, m->verbose);
		log_procname("master");
	}
	if (m->pfh != NULL)
		pidfile_write(m->pfh);
	/*
	 * Every child holds the read end of this pipe and nobody but the
	 * master the write end: the master's death is EOF in each child's
	 * loop, whoever the child's parent becomes (a subreaper, a
	 * container's init) and whatever its credentials did to PDEATHSIG.
	 */
	m->pid = getpid();
	if (pipe2(m->alive, O_CLOEXEC) == -1)
		fatal("master: pipe");
	if (control_init(m) == -1)
		log_warnx("master: no control socket; routerctl will not reach this routerd");

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((sig.io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("master: signalfd");
	sig.io.cb = master_signal;
	sig.m = m;
	ev_add(&m->loop, &sig.io, EPOLLIN);

	m->generation = 1;
	master_spawn_generation(m);
	m->prober.role = ROLE_PROBER;
	if (master_spawn(m, &m->prober) == -1)
		m->prober.respawn_at = m->loop.now + RESPAWN_MIN_MS;
	m->syncer.role = ROLE_SYNCER;
	registry_publish(m);
	if (m->conf->registry.url[0] != '\0' && master_spawn(m, &m->syncer) == -1)
		m->syncer.respawn_at = m->loop.now + RESPAWN_MIN_MS;
	log_info("master: %u workers, listening on %s%s", m->nworkers,
	    m->laddr[0].text, m->nls > 1 ? " and more" : "");

	for (;;) {
		if (ev_run_once(&m->loop, 100) == -1)
			fatal("master: epoll_wait");
		master_reap(m);
		master_respawn_due(m);
		master_reload_check(m);
		if (m->reload_pending && !m->stopping &&
		    master_free_stripes(m) >= m->nworkers) {
			char	err[4096];

			m->reload_pending = 0;
			master_reload(m, err, sizeof(err));
		}
		if (m->stopping) {
			if (master_nchildren(m) == 0)
				break;
			if (m->loop.now >= m->stop_deadline) {
				log_warnx("master: children still running; killing them");
				master_kill_all(m, SIGKILL);
				m->stop_deadline = m->loop.now + STOP_GRACE_MS;
			}
		}
	}
	control_close(m);
	if (m->pfh != NULL)
		pidfile_remove(m->pfh);
	log_info("master: stopped");
	/* give everything back, so that leak checkers see only real leaks */
	if (m->syncer_fd != -1)
		close(m->syncer_fd);
	close(m->alive[0]);
	close(m->alive[1]);
	ev_close(&m->loop);
	shm_destroy(m->shm);
	conf_free(m->conf);
	m->conf = NULL;
	return 0;
}

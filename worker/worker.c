/* The worker role: its event loop, listeners, buffer pools and view of the shared table. */
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "lib/priv.h"
#include "worker/admin.h"
#include "worker/mctl.h"
#include "worker/jscan.h"
#include "worker/worker.h"

/*
 * Free lists keep blocks for the next connection, not forever: past these
 * caps a block is freed, so a burst of connections does not leave its
 * memory parked in a worker.  Forward blocks are retries.buffer + 1k, so
 * their cap is in bytes as well as in blocks.
 */
#define MAX_FREE_BUFS	256			/* 8 MiB of 32k blocks */
#define MAX_FREE_FWD	64
#define MAX_FREE_FWD_BYTES (16 * 1024 * 1024)

/* routerd -t refuses what these sizes cannot hold (conf/conf.h). */
_Static_assert(CONF_HEAD_BUF == WORKER_BUFSZ, "limits.header_size bound is the head buffer");
_Static_assert(CONF_HEAD_FIELDS == WORKER_HDR_MAX, "limits.header_count bound is the parsed head");
_Static_assert(CONF_RETRIES_MAX == BAL_EXCLUDE_MAX, "retries.max bound is the exclusion set");

/* The free lists' lengths into our stripe, for routerctl show workers and /metrics. */
static void
worker_free_publish(struct worker *w)
{
	if (w->shm == NULL)
		return;
	atomic_store_explicit(&w->shm->workers[w->index].free_bufs,
	    (uint32_t)w->nfreebufs, memory_order_relaxed);
	atomic_store_explicit(&w->shm->workers[w->index].free_fwd,
	    (uint32_t)w->nfreefwd, memory_order_relaxed);
}

/* The most forward blocks of w->fwdsz bytes the free list keeps. */
size_t
worker_fwd_cap(const struct worker *w)
{
	size_t	n = w->fwdsz ? MAX_FREE_FWD_BYTES / w->fwdsz : MAX_FREE_FWD;

	return n < MAX_FREE_FWD ? n : MAX_FREE_FWD;
}

char *
worker_buf_get(struct worker *w)
{
	char	*b;

	if ((b = w->freebufs) != NULL) {
		w->freebufs = *(char **)b;
		w->nfreebufs--;
		worker_free_publish(w);
		return b;
	}
	return malloc(WORKER_BUFSZ);
}

int
worker_buf_grow(struct buf *b, size_t need)
{
	size_t	ncap = b->cap ? b->cap : WORKER_BUFSZ;
	char	*nd;

	if (b->wpos + need <= b->cap)
		return 0;
	while (ncap < b->wpos + need)
		ncap *= 2;
	if ((nd = realloc(b->data, ncap)) == NULL)
		return -1;
	b->data = nd;
	b->cap = ncap;
	return 0;
}

void
worker_buf_release(struct worker *w, struct buf *b)
{
	if (b->data == NULL)
		return;
	if (b->cap > WORKER_BUFSZ)
		free(b->data);
	else
		worker_buf_put(w, b->data);
	memset(b, 0, sizeof(*b));
}

void
worker_buf_put(struct worker *w, char *b)
{
	if (w->nfreebufs >= MAX_FREE_BUFS) {
		free(b);
		return;
	}
	*(char **)b = w->freebufs;
	w->freebufs = b;
	w->nfreebufs++;
	worker_free_publish(w);
}

char *
worker_fwd_get(struct worker *w)
{
	char	*b;

	if ((b = w->freefwd) != NULL) {
		w->freefwd = *(char **)b;
		w->nfreefwd--;
		worker_free_publish(w);
		return b;
	}
	return malloc(w->fwdsz);
}

void
worker_fwd_put(struct worker *w, char *b)
{
	if (w->nfreefwd >= worker_fwd_cap(w)) {
		free(b);
		return;
	}
	*(char **)b = w->freefwd;
	w->freefwd = b;
	w->nfreefwd++;
	worker_free_publish(w);
}

/* retries.on_status ("502,503,504", checked by conf/) as a bitmap. */
static void
worker_retry_statuses(struct worker *w)
{
	const char	*p = w->conf->retries.on_status;

	memset(w->retry_status, 0, sizeof(w->retry_status));
	while (*p != '\0') {
		char	*end;
		long	 v = strtol(p, &end, 10);

		if (end == p) {
			p++;
			continue;
		}
		if (v >= 100 && v < 600)
			w->retry_status[v / 8] |= (uint8_t)(1u << (v % 8));
		p = end;
	}
}

/*
 * Re-read the table after a generation change: descriptors are copied out
 * under their seqlocks, pools rebuilt, and idle connections to a backend
 * whose address changed are closed.  A descriptor names its pool by table
 * id; it joins the pool of this worker's config that has that id, or none
 * (a pool of a newer generation), so a request of ours never reaches
 * another pool's backends whatever a newer file reordered or renamed.
 */
void
worker_refresh(struct worker *w)
{
	struct shm_hdr	*h = w->shm;
	uint32_t	 nslots, i;
	size_t		 p;
	uint64_t	 gen;
	struct shm_desc	 d;

	gen = shm_gen(h);
	nslots = atomic_load_explicit(&h->nslots, memory_order_acquire);
	for (p = 0; p < w->view.npools; p++) {
		w->view.pools[p].n = 0;
		balance_pool_changed(&w->view.pools[p]);
	}
	for (i = 0; i < nslots && i < h->max_backends; i++) {
		struct wbe	*b = &w->view.be[i];
		struct wbackend	*wb = &w->wb[i];

		shm_desc_read(shm_slot(h, i), &d);
		if (!(d.flags & SHM_F_INUSE)) {
			if (b->inuse)
				upstream_close_idle(w, i);
			b->inuse = 0;
			continue;
		}
		if (d.salen != wb->salen || memcmp(d.sa, &wb->sa, d.salen) != 0) {
			upstream_close_idle(w, i);
			memset(&wb->sa, 0, sizeof(wb->sa));
			memcpy(&wb->sa, d.sa, d.salen);
			wb->salen = d.salen;
			wb->addr_gen++;
		}
		strlcpy(wb->name, d.name, sizeof(wb->name));
		if (!b->inuse || b->weight != d.weight)
			b->cur = 0;
		b->inuse = 1;
		b->pool = balance_view_pool_of(&w->view, d.pool);
		b->flags = d.flags;
		b->weight = d.weight ? d.weight : 1;
		b->max_conns = d.max_conns;
		b->nmodels = d.nmodels;
		b->hrw = jscan_hash(d.name, strlen(d.name), 0x6872770aULL);
		memcpy(b->models, d.models, sizeof(b->models));
		strlcpy(b->region, d.region, sizeof(b->region));
		if (b->pool < w->view.npools) {
			struct wpool *wp = &w->view.pools[b->pool];

			wp->idx[wp->n++] = i;
		}
	}
	w->gen = gen;
}

static void
worker_queue_tick(struct ev_loop *l, struct ev_timer *t)
{
	struct worker	*w = (struct worker *)((char *)t - offsetof(struct worker, queue_timer));

	exchange_queue_run(w);
	if (w->nwait > 0)
		ev_timer_after(l, t, EXCHANGE_QUEUE_TICK_MS);
}

static void
worker_down_tick(struct ev_loop *l, struct ev_timer *t)
{
	upstream_down_sweep((struct worker *)((char *)t - offsetof(struct worker, down_timer)));
}

static void
worker_resume_accept(struct ev_loop *l, struct ev_timer *t)
{
	struct worker	*w = (struct worker *)((char *)t - offsetof(struct worker, accept_timer));
	size_t		 i;

	if (w->draining || w->at_limit)
		return;
	for (i = 0; i < w->nls; i++)
		ev_add(&w->loop, &w->ls[i].io, EPOLLIN);
}

/*
 * limits.connections: at the limit the listeners leave the loop (new
 * connections wait in the kernel's listen queue, nothing is accepted and
 * closed); they come back as soon as a connection closes.  One line when
 * an episode starts, one when the queue is empty again below the limit.
 */
static void
worker_limit_reached(struct worker *w)
{
	size_t	i;

	if (!w->at_limit) {
		w->at_limit = 1;
		if (!ev_timer_armed(&w->accept_timer))
			for (i = 0; i < w->nls; i++)
				ev_del(&w->loop, &w->ls[i].io);
	}
	if (w->refusing)
		return;
	w->refusing = 1;
	w->refuse_since = w->loop.now;
	atomic_store_explicit(&w->shm->workers[w->index].accept_paused,
	    atomic_load_explicit(&w->shm->workers[w->index].accept_paused,
	    memory_order_relaxed) + 1, memory_order_relaxed);
	log_warnx("worker %u: %zu connections, limits.connections reached: "
	    "not accepting until one closes", w->index, w->nclients);
}

/* After a loop turn: a connection closed below the limit, so take the queue again. */
static void
worker_limit_check(struct worker *w)
{
	size_t	i;

	if (!w->at_limit || w->nclients >= (size_t)w->conf->limits.connections)
		return;
	w->at_limit = 0;
	if (w->draining || ev_timer_armed(&w->accept_timer))
		return;
	for (i = 0; i < w->nls; i++)
		ev_add(&w->loop, &w->ls[i].io, EPOLLIN);
}

static void
worker_limit_over(struct worker *w)
{
	if (!w->refusing)
		return;
	w->refusing = 0;
	log_info("worker %u: accepting again, below limits.connections after "
	    "%llu ms", w->index, (unsigned long long)(w->loop.now - w->refuse_since));
}

static void
worker_pause_accept(struct worker *w)
{
	size_t	i;

	if (ev_timer_armed(&w->accept_timer))
		return;
	for (i = 0; i < w->nls; i++)
		ev_del(&w->loop, &w->ls[i].io);
	ev_timer_after(&w->loop, &w->accept_timer, 100);
}

static void
worker_accept(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct listener		*ls = (struct listener *)io;
	struct worker		*w = ls->w;
	int			 i, fd;

	for (i = 0; i < 64 && !w->draining; i++) {
		struct sockaddr_storage	ss;
		socklen_t		len = sizeof(ss);

		if (w->nclients >= (size_t)w->conf->limits.connections) {
			worker_limit_reached(w);
			return;
		}
		fd = accept4(io->fd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN)
				worker_limit_over(w);	/* the queue is empty */
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* out of descriptors: stop accepting for a moment, or we spin */
				log_warn("worker: accept (pausing accepts for 100 ms)");
				worker_pause_accept(w);
				return;
			}
			continue;	/* ECONNABORTED and friends: the next one */
		}
		atomic_store_explicit(&w->shm->workers[w->index].accepted,
		    atomic_load_explicit(&w->shm->workers[w->index].accepted,
		    memory_order_relaxed) + 1, memory_order_relaxed);
		if (ls->admin)
			adminconn_accept(w, fd);	/* never the proxy's state machine */
		else
			client_accept(w, fd, &ss);
	}
}

/*
 * Drain: stop accepting (the master keeps the sockets, so queued
 * connections wait for our successor), finish what is in flight, and
 * answer the next request of each keep-alive connection with close.
 */
static void
worker_start_drain(struct worker *w)
{
	size_t	i;

	if (w->draining)
		return;
	w->draining = 1;
	w->drain_deadline = w->loop.now + (uint64_t)w->conf->timeout.drain_ms;
	ev_timer_stop(&w->loop, &w->accept_timer);
	for (i = 0; i < w->nls; i++) {
		ev_del(&w->loop, &w->ls[i].io);
		close(w->ls[i].io.fd);
	}
	w->nls = 0;
	atomic_store_explicit(&w->shm->workers[w->index].state, 2, memory_order_relaxed);
	adminconn_drain(w);
	log_info("worker %u: draining %zu connections", w->index, w->nclients);
}

/* The signalfd of a worker and the worker it steers. */
struct sigwatch {
	struct ev_io	 io;
	struct worker	*w;
};

static void
worker_signal(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct sigwatch		*sw = (struct sigwatch *)io;
	struct signalfd_siginfo	 si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			sw->w->stop = 1;
			break;
		case SIGQUIT:
			worker_start_drain(sw->w);
			break;
		case SIGUSR1:
			accesslog_open(sw->w);
			break;
		}
	}
}

/* The master's liveness pipe: readable only at EOF, when the master is gone. */
struct masterwatch {
	struct ev_io	 io;
	struct worker	*w;
};

static void
worker_master_gone(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct masterwatch	*mw = (struct masterwatch *)io;

	if (!mw->w->stop)
		log_warnx("worker %u: the master is gone; stopping", mw->w->index);
	mw->w->stop = 1;
	ev_del(l, io);
}

static void
worker_free_zombies(struct worker *w)
{
	struct client	*c;
	struct upconn	*u;

	while ((c = TAILQ_FIRST(&w->czombies)) != NULL) {
		TAILQ_REMOVE(&w->czombies, c, entry);
		free(c);
	}
	while ((u = TAILQ_FIRST(&w->uzombies)) != NULL) {
		TAILQ_REMOVE(&w->uzombies, u, entry);
		free(u);
	}
}

/*
 * The worker's life: accept on its own listeners (fds owned by the master),
 * proxy, follow the table's generation, drain on SIGQUIT, stop on SIGTERM.
 * Returns the process exit status.
 */
int
worker_main(struct conf *cf, struct shm_hdr *shm, uint32_t index,
    uint32_t generation, int *listen_fds, size_t nlisten, int admin_fd,
    int ctl_fd, const struct priv_id *priv, int master_fd, pid_t master_pid)
{
	struct worker		 w;
	sigset_t		 mask;
	struct sigwatch		 sig;
	struct masterwatch	 mwatch;
	size_t			 i;
	uint32_t		 npools = 0;
	const char		**pnames;

	memset(&w, 0, sizeof(w));
	w.conf = cf;
	w.shm = shm;
	w.index = index;
	w.generation = generation;
	TAILQ_INIT(&w.clients);
	TAILQ_INIT(&w.czombies);
	TAILQ_INIT(&w.uzombies);
	w.fwdsz = cf->retries.buffer > WORKER_BUFSZ ? cf->retries.buffer : WORKER_BUFSZ;
	w.fwdsz += 1024;
	w.alog_fd = -1;
	worker_retry_statuses(&w);
	flow_init(&w);
	if ((w.backup_pool = calloc(cf->npools ? cf->npools : 1, sizeof(int))) == NULL)
		fatal("worker: calloc");
	for (i = 0; i < cf->npools; i++)
		w.backup_pool[i] = cf->pools[i].backup_pool[0] ?
		    conf_pool_find(cf, cf->pools[i].backup_pool) : -1;
	accesslog_open(&w);	/* as root: the log directory need not be the user's */
	if (priv != NULL && priv_drop(priv) == -1)
		return 1;
	ev_timer_init(&w.accept_timer, worker_resume_accept);
	ev_timer_init(&w.queue_timer, worker_queue_tick);
	ev_timer_init(&w.down_timer, worker_down_tick);
	TAILQ_INIT(&w.waitq);
	request_settings(&w.req_settings);
	upstream_settings(&w.resp_settings);
	/* after priv_drop(): a credential change clears the parent-death signal */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (master_pid != 0 && getppid() != master_pid)
		return 0;	/* it died before prctl() */

	if (ev_init(&w.loop, 512) == -1)
		fatal("worker: epoll");
	w.view.shm = shm;
	w.view.nstripes = shm->max_workers;
	w.view.rng = ((uint64_t)getpid() << 32) ^ (uint64_t)w.loop.now ^ 0x9e3779b97f4a7c15ULL;
	strlcpy(w.view.region, cf->region, sizeof(w.view.region));
	w.view.windex = w.index;
	w.view.last_slot = -1;
	w.view.llm.affinity_limit = cf->llm.affinity_limit;
	w.view.llm.queue_limit = (uint32_t)cf->llm.queue_limit;
	w.view.llm.kv_ppm = (uint32_t)cf->llm.kv_limit * 10000;
	w.view.llm.load_factor = (uint32_t)cf->llm.load_factor;
	w.view.llm.block = (uint32_t)cf->llm.block;
	w.view.llm.metrics_ms = cf->health.metrics ? (uint64_t)cf->health.metrics_interval_ms : 0;
	w.view.be = calloc(shm->max_backends, sizeof(*w.view.be));
	w.wb = calloc(shm->max_backends, sizeof(*w.wb));
	/* our own config's pools, each mapped to its id in the table by name */
	npools = (uint32_t)(cf->npools < SHM_POOLS_MAX ? cf->npools : SHM_POOLS_MAX);
	w.view.npools = npools;
	w.view.pools = calloc(npools ? npools : 1, sizeof(*w.view.pools));
	pnames = calloc(npools ? npools : 1, sizeof(*pnames));
	if (w.view.be == NULL || w.wb == NULL || w.view.pools == NULL ||
	    pnames == NULL)
		fatal("worker: calloc");
	for (i = 0; i < npools; i++) {
		pnames[i] = cf->pools[i].name;
		w.view.pools[i].shadow = cf->pools[i].shadow_strategy < STRAT_COUNT ?
		    (uint32_t)cf->pools[i].shadow_strategy + 1 : 0;
		w.view.pools[i].filters = cf->pools[i].filters;
	}
	balance_view_pools(&w.view, pnames);
	free(pnames);
	for (i = 0; i < npools; i++)
		if ((w.view.pools[i].idx = calloc(shm->max_backends,
		    sizeof(uint32_t))) == NULL)
			fatal("worker: calloc");
	for (i = 0; i < shm->max_backends; i++)
		TAILQ_INIT(&w.wb[i].idle);
	worker_refresh(&w);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if ((sig.io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("worker: signalfd");
	sig.io.cb = worker_signal;
	sig.w = &w;
	ev_add(&w.loop, &sig.io, EPOLLIN);
	if (master_fd != -1) {
		mwatch.io.fd = master_fd;
		mwatch.io.cb = worker_master_gone;
		mwatch.w = &w;
		if (ev_add(&w.loop, &mwatch.io, EPOLLIN) == -1)
			fatal("worker: epoll_ctl master pipe");
	}

	if ((w.ls = calloc(nlisten + 1, sizeof(*w.ls))) == NULL)
		fatal("worker: calloc");
	for (i = 0; i < nlisten; i++) {
		w.ls[i].io.fd = listen_fds[i];
		w.ls[i].io.cb = worker_accept;
		w.ls[i].w = &w;
		if (ev_add(&w.loop, &w.ls[i].io, EPOLLIN) == -1)
			fatal("worker: epoll_ctl listener");
	}
	w.nls = nlisten;
	if (admin_fd != -1) {
		w.ls[i].io.fd = admin_fd;
		w.ls[i].io.cb = worker_accept;
		w.ls[i].w = &w;
		w.ls[i].admin = 1;
		if (ev_add(&w.loop, &w.ls[i].io, EPOLLIN) == -1)
			fatal("worker: epoll_ctl admin listener");
		w.nls++;
	}
	mctl_init(&w, ctl_fd);
	atomic_store_explicit(&shm->workers[index].generation, generation, memory_order_relaxed);
	atomic_store_explicit(&shm->workers[index].started_ms, shm_now_ms(), memory_order_relaxed);
	atomic_store_explicit(&shm->workers[index].state, 1, memory_order_release);
	log_debug("worker %u: ready", index);

	while (!w.stop) {
		if (ev_run_once(&w.loop, 1000) == -1)
			fatal("worker: epoll_wait");
		accesslog_flush(&w);
		if (w.queue_kick) {
			w.queue_kick = 0;
			exchange_queue_run(&w);
		}
		worker_free_zombies(&w);
		adminconn_free_zombies();
		worker_limit_check(&w);
		if (shm_gen(shm) != w.gen)
			worker_refresh(&w);
		if (w.draining && ((w.nclients == 0 && adminconn_count() == 0) ||
		    w.loop.now >= w.drain_deadline))
			break;
	}
	accesslog_flush(&w);
	atomic_store_explicit(&shm->workers[index].state, 0, memory_order_relaxed);
	return 0;
}

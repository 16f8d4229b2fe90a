/* The prober role: checks every backend on one epoll loop and drives the circuit breakers from the workers' counters. */
#include <sys/prctl.h>
#include <sys/signalfd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/ev.h"
#include "lib/log.h"
#include "prober/breaker.h"
#include "prober/check.h"
#include "prober/health.h"
#include "prober/prober.h"

struct prober;

/* What the prober keeps about one slot of the table. */
struct pslot {
	struct prober	*p;
	uint32_t	 idx;
	int		 ready;		/* check and timer initialised */
	int		 inuse;
	uint64_t	 added_ms;	/* identity: a new value is a new backend */
	struct shm_desc	 d;		/* the descriptor as last read */
	char		 model[SHM_NAME_MAX];	/* first model, for llm checks */
	struct health_stage hs;
	struct lat_window lw;
	struct breaker	 br;
	struct check	 ck;
	struct ev_timer	 next;		/* the next check */
	uint64_t	 started;	/* monotonic ms the last check started */
	int		 unchecked;	/* said once that we could not check it */
};

struct prober {
	struct conf	*cf;
	struct shm_hdr	*h;
	struct ev_loop	 loop;
	struct pslot	*s;		/* [max_backends] */
	uint32_t	 n;		/* slots looked at: a high-water mark */
	uint64_t	 gen;
	int		 started;	/* the first membership read is done */
	struct ev_timer	 tick;		/* breaker poll and membership */
	struct breaker_conf bc;
	struct breaker_stripe stripes[SHM_WORKERS_MAX];	/* scratch */
	uint32_t	 verbose;
	uint64_t	 rng;
	int		 stop;
};

struct prober_sig {
	struct ev_io	 io;
	struct prober	*p;
};

static uint64_t
prober_rand(struct prober *p)
{
	/* xorshift64*: jitter needs spread, not secrecy */
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return p->rng * 0x2545f4914f6cdd1dULL;
}

/* ms +/- 10 %, so checks of backends started together drift apart. */
static uint64_t
prober_jitter(struct prober *p, uint64_t ms)
{
	uint64_t	span = ms / 5;

	return ms - ms / 10 + (span ? prober_rand(p) % (span + 1) : 0);
}

static struct pslot *
prober_slot_of_timer(struct ev_timer *t)
{
	return (struct pslot *)((char *)t - offsetof(struct pslot, next));
}

/* A slot's prober words as for a backend nobody has checked yet. */
static void
prober_words_reset(struct shm_hdr *h, uint32_t i)
{
	struct shm_slot	*s = shm_slot(h, i);

	atomic_store_explicit(&s->breaker, SHM_BREAKER_CLOSED, memory_order_release);
	atomic_store_explicit(&s->trial_tickets, 0, memory_order_relaxed);
	atomic_store_explicit(&s->health, SHM_HEALTH_UNKNOWN, memory_order_release);
	atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
	atomic_store_explicit(&s->oks, 0, memory_order_relaxed);
	atomic_store_explicit(&s->lat_ewma_us, 0, memory_order_relaxed);
	atomic_store_explicit(&s->lat_p50_us, 0, memory_order_relaxed);
	atomic_store_explicit(&s->lat_p99_us, 0, memory_order_relaxed);
	atomic_store_explicit(&s->breaker_opens, 0, memory_order_relaxed);
	atomic_store_explicit(&s->last_check_ms, 0, memory_order_relaxed);
	atomic_store_explicit(&s->last_change_ms, 0, memory_order_relaxed);
	atomic_store_explicit(&s->breaker_change_ms, 0, memory_order_relaxed);
	shm_prober_note(h, i);
}

/*
 * Read what a breaker step needs for slot i.  Stripes of workers that
 * never started are all zero and skipped: with many backends the poll
 * stays a few thousand cache lines.  oks is read before consec: a worker
 * counts the status before it clears its run, so a reset is never seen
 * without the success that caused it.
 */
static void
prober_breaker_in(struct prober *p, uint32_t i, struct breaker_in *in)
{
	struct shm_hdr	*h = p->h;
	uint32_t	 w, nw = h->max_workers, st;

	if (nw > SHM_WORKERS_MAX)
		nw = SHM_WORKERS_MAX;
	memset(in, 0, sizeof(*in));
	for (w = 0; w < nw; w++) {
		struct breaker_stripe	*bs = &p->stripes[w];
		struct shm_counters	*k;

		if (atomic_load_explicit(&h->workers[w].started_ms,
		    memory_order_relaxed) == 0) {
			memset(bs, 0, sizeof(*bs));
			continue;
		}
		k = shm_ctr(h, w, i);
		bs->oks = 0;
		for (st = 1; st <= 4; st++)
			bs->oks += atomic_load_explicit(&k->status[st],
			    memory_order_acquire);
		bs->consec = atomic_load_explicit(&k->consec_fails,
		    memory_order_acquire);
		bs->fails = atomic_load_explicit(&k->fails, memory_order_relaxed);
		bs->requests = atomic_load_explicit(&k->requests,
		    memory_order_relaxed);
		in->inflight += atomic_load_explicit(&k->inflight,
		    memory_order_relaxed);
	}
	in->stripes = p->stripes;
	in->nstripes = nw;
	in->tickets = atomic_load_explicit(&shm_slot(h, i)->trial_tickets,
	    memory_order_relaxed);
	in->force = atomic_load_explicit(&shm_slot(h, i)->force_breaker,
	    memory_order_acquire);
	in->force_seq = atomic_load_explicit(&shm_slot(h, i)->force_seq,
	    memory_order_acquire);
	in->now = p->loop.now;
}

/* Publish one breaker step: tickets before a half-open state, after any other. */
static void
prober_breaker_publish(struct prober *p, struct pslot *ps,
    const struct breaker_out *out)
{
	struct shm_slot	*s = shm_slot(p->h, ps->idx);
	char		 why[128];

	if (out->set_tickets && out->state == SHM_BREAKER_HALF_OPEN)
		atomic_store_explicit(&s->trial_tickets, out->tickets,
		    memory_order_release);
	if (out->changed) {
		if (out->opened)
			atomic_store_explicit(&s->breaker_opens,
			    atomic_load_explicit(&s->breaker_opens,
			    memory_order_relaxed) + 1, memory_order_relaxed);
		atomic_store_explicit(&s->breaker_change_ms, shm_now_ms(),
		    memory_order_relaxed);
		atomic_store_explicit(&s->breaker, out->state, memory_order_release);
		shm_prober_note(p->h, ps->idx);
	}
	if (out->set_tickets && out->state != SHM_BREAKER_HALF_OPEN)
		atomic_store_explicit(&s->trial_tickets, 0, memory_order_release);
	if (out->why == BREAKER_WHY_NONE)
		return;
	breaker_describe(out, &p->bc, why, sizeof(why));
	if (out->opened)
		log_warnx("prober: %s breaker open: %s", ps->d.name, why);
	else
		log_info("prober: %s breaker %s: %s", ps->d.name,
		    breaker_state_name(out->state), why);
}

static void
prober_breakers(struct prober *p)
{
	struct breaker_in	 in;
	struct breaker_out	 out;
	uint32_t		 i;

	for (i = 0; i < p->n; i++) {
		if (!p->s[i].inuse)
			continue;
		prober_breaker_in(p, i, &in);
		breaker_step(&p->s[i].br, &p->bc, &in, &out);
		if (out.changed || out.set_tickets || out.why != BREAKER_WHY_NONE)
			prober_breaker_publish(p, &p->s[i], &out);
	}
}

/*
 * Build the check target of a slot: its address (or the babysitter's at
 * port + port_offset), its own health path or the global one, its first
 * model.  0, or -1 with why when the backend cannot be checked at all.
 */
static int
prober_target(struct prober *p, struct pslot *ps, struct check_target *t,
    char *why, size_t whylen)
{
	const struct conf	*cf = p->cf;
	const char		*colon;
	in_port_t		*portp;
	unsigned		 port;
	size_t			 hl;

	memset(t, 0, sizeof(*t));
	t->kind = cf->health.type == HEALTH_TCP ? CHECK_TCP :
	    cf->health.type == HEALTH_LLM ? CHECK_LLM : CHECK_HTTP;
	t->timeout_ms = cf->health.timeout_ms;
	if (ps->d.salen == 0 || ps->d.salen > sizeof(t->ss) ||
	    ps->d.salen > sizeof(ps->d.sa)) {
		snprintf(why, whylen, "no address");
		return -1;
	}
	memcpy(&t->ss, ps->d.sa, ps->d.salen);
	t->sslen = ps->d.salen;
	if (t->ss.ss_family == AF_INET)
		portp = &((struct sockaddr_in *)&t->ss)->sin_port;
	else if (t->ss.ss_family == AF_INET6)
		portp = &((struct sockaddr_in6 *)&t->ss)->sin6_port;
	else {
		snprintf(why, whylen, "address family %d", t->ss.ss_family);
		return -1;
	}
	port = ntohs(*portp) + (unsigned)cf->health.port_offset;
	if (port > 65535) {
		snprintf(why, whylen, "port %u out of range", port);
		return -1;
	}
	*portp = htons((in_port_t)port);

	/* Host: the name as configured, with the port really checked */
	colon = strrchr(ps->d.addr, ':');
	hl = colon != NULL ? (size_t)(colon - ps->d.addr) : 0;
	if (hl == 0 || hl >= sizeof(t->host) - 8) {
		char	num[INET6_ADDRSTRLEN];

		if (t->ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&t->ss)->sin6_addr,
			    num, sizeof(num));
		else
			inet_ntop(AF_INET, &((struct sockaddr_in *)&t->ss)->sin_addr,
			    num, sizeof(num));
		snprintf(t->host, sizeof(t->host),
		    t->ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", num, port);
	} else
		snprintf(t->host, sizeof(t->host), "%.*s:%u", (int)hl,
		    ps->d.addr, port);
	strlcpy(t->path, ps->d.health_path[0] != '\0' ? ps->d.health_path :
	    cf->health.path, sizeof(t->path));
	strlcpy(t->model, ps->model, sizeof(t->model));
	return 0;
}

static void
prober_schedule(struct prober *p, struct pslot *ps, uint64_t ms)
{
	ev_timer_after(&p->loop, &ps->next, ms);
}

/* A check's result: stage it, publish the words, commit a transition. */
static void
prober_result(struct pslot *ps, int ok, uint32_t lat_us, const char *why)
{
	struct prober	*p = ps->p;
	struct shm_slot	*s = shm_slot(p->h, ps->idx);
	uint64_t	 iv, took;

	if (ok < 0) {
		/* our own shortage: try again later, the backend is not judged */
		if (!ps->unchecked)
			log_warnx("prober: %s not checked: %s", ps->d.name, why);
		ps->unchecked = 1;
		goto next;
	}
	ps->unchecked = 0;
	if (ok) {
		lat_add(&ps->lw, lat_us);
		if (atomic_load_explicit(&s->lat_ewma_us, memory_order_relaxed) !=
		    ps->lw.ewma) {
			atomic_store_explicit(&s->lat_ewma_us, ps->lw.ewma,
			    memory_order_relaxed);
			shm_prober_note(p->h, ps->idx);
		}
		atomic_store_explicit(&s->lat_p50_us, lat_pct(&ps->lw, 50),
		    memory_order_relaxed);
		atomic_store_explicit(&s->lat_p99_us, lat_pct(&ps->lw, 99),
		    memory_order_relaxed);
	} else
		log_debug("prober: %s check failed: %s", ps->d.name, why);

	if (health_result(&ps->hs, ok, (uint32_t)p->cf->health.fall,
	    (uint32_t)p->cf->health.rise)) {
		atomic_store_explicit(&s->health, ps->hs.state, memory_order_release);
		shm_prober_note(p->h, ps->idx);
		atomic_store_explicit(&s->last_change_ms, shm_now_ms(),
		    memory_order_relaxed);
		if (ps->hs.state == SHM_HEALTH_DOWN)
			log_warnx("prober: %s down: %s, %u check%s", ps->d.name,
			    why, ps->hs.fails, ps->hs.fails == 1 ? "" : "s");
		else
			log_info("prober: %s up: %u check%s ok", ps->d.name,
			    ps->hs.oks, ps->hs.oks == 1 ? "" : "s");
	}
	atomic_store_explicit(&s->fails, ps->hs.fails, memory_order_relaxed);
	atomic_store_explicit(&s->oks, ps->hs.oks, memory_order_relaxed);
	atomic_store_explicit(&s->last_check_ms, shm_now_ms(), memory_order_relaxed);

next:
	/* the interval runs from one check's start to the next one's */
	iv = prober_jitter(p, (uint64_t)p->cf->health.interval_ms);
	took = p->loop.now - ps->started;
	prober_schedule(p, ps, iv > took ? iv - took : 0);
}

static void
prober_check_done(struct check *ck, int ok, uint32_t lat_us, const char *why)
{
	prober_result(ck->arg, ok, lat_us, why);
}

static void
prober_check_due(struct ev_loop *l, struct ev_timer *t)
{
	struct pslot		*ps = prober_slot_of_timer(t);
	struct check_target	 tg;
	char			 why[CHECK_WHY_MAX];

	if (!ps->inuse || ps->ck.running)
		return;
	ps->started = l->now;
	if (prober_target(ps->p, ps, &tg, why, sizeof(why)) == -1) {
		/* a descriptor we cannot reach counts as a failed check */
		prober_result(ps, 0, 0, why);
		return;
	}
	check_start(l, &ps->ck, &tg);
}

static void
prober_slot_model(struct prober *p, struct pslot *ps)
{
	ps->model[0] = '\0';
	if (ps->d.nmodels > 0)
		shm_model_name(p->h, ps->d.models[0], ps->model, sizeof(ps->model));
}

/* The slot no longer holds the backend we knew: stop its check. */
static void
prober_slot_stop(struct prober *p, struct pslot *ps)
{
	if (!ps->ready) {
		/* first use: set up here, so unused slots cost no memory */
		check_init(&ps->ck, prober_check_done, ps);
		ev_timer_init(&ps->next, prober_check_due);
		ps->ready = 1;
	}
	check_cancel(&p->loop, &ps->ck);
	ev_timer_stop(&p->loop, &ps->next);
	ps->inuse = 0;
}

/*
 * A backend we have not seen in this slot.  At start-up, words written
 * after the backend was added are a previous prober's (we were
 * restarted): adopt them, so a crash or a reload that changed the checks
 * does not make a down backend eligible again.  Otherwise they belong to
 * whoever held the slot before: reset them.
 */
static void
prober_slot_new(struct prober *p, struct pslot *ps, const struct shm_desc *d)
{
	struct shm_slot		*s = shm_slot(p->h, ps->idx);
	struct breaker_in	 in;
	uint64_t		 checked, changed, now_real, age;
	uint32_t		 state;

	prober_slot_stop(p, ps);
	ps->inuse = 1;
	ps->added_ms = d->added_ms;
	ps->d = *d;
	prober_slot_model(p, ps);
	memset(&ps->hs, 0, sizeof(ps->hs));
	memset(&ps->lw, 0, sizeof(ps->lw));
	prober_breaker_in(p, ps->idx, &in);

	checked = atomic_load_explicit(&s->last_check_ms, memory_order_relaxed);
	changed = atomic_load_explicit(&s->breaker_change_ms, memory_order_relaxed);
	if (p->started || (checked < d->added_ms && changed < d->added_ms)) {
		prober_words_reset(p->h, ps->idx);
		/* the counters are this backend's only if we just started */
		breaker_init(&ps->br, SHM_BREAKER_CLOSED, p->loop.now, &in,
		    p->started);
	} else {
		ps->hs.state = atomic_load_explicit(&s->health, memory_order_relaxed);
		ps->hs.fails = atomic_load_explicit(&s->fails, memory_order_relaxed);
		ps->hs.oks = atomic_load_explicit(&s->oks, memory_order_relaxed);
		ps->lw.ewma = atomic_load_explicit(&s->lat_ewma_us, memory_order_relaxed);
		state = atomic_load_explicit(&s->breaker, memory_order_relaxed);
		/* an open breaker keeps the time it has already served */
		now_real = shm_now_ms();
		age = now_real > changed ? now_real - changed : 0;
		breaker_init(&ps->br, state, p->loop.now > age ? p->loop.now - age : 0,
		    &in, state != SHM_BREAKER_CLOSED);
		log_debug("prober: %s: kept health %u, breaker %s", d->name,
		    ps->hs.state, breaker_state_name(state));
	}
	if (p->cf->health.type == HEALTH_NONE) {
		/* no checks: nothing may hold a backend down that no check will raise */
		memset(&ps->hs, 0, sizeof(ps->hs));
		atomic_store_explicit(&s->health, SHM_HEALTH_UNKNOWN, memory_order_release);
		shm_prober_note(p->h, ps->idx);
		atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
		atomic_store_explicit(&s->oks, 0, memory_order_relaxed);
		return;
	}
	/* the first check soon, spread over a tenth of the interval */
	prober_schedule(p, ps, prober_rand(p) %
	    ((uint64_t)p->cf->health.interval_ms / 10 + 1));
}

/*
 * Follow membership: called at start and whenever the master bumps gen.
 * gen is read first, so a change made while we read is seen next tick.
 */
static void
prober_refresh(struct prober *p)
{
	struct shm_desc	 d;
	struct pslot	*ps;
	uint32_t	 i, n;

	p->gen = shm_gen(p->h);
	n = atomic_load_explicit(&p->h->nslots, memory_order_acquire);
	if (n > p->h->max_backends)
		n = p->h->max_backends;
	if (n < p->n)
		n = p->n;
	for (i = 0; i < n; i++) {
		ps = &p->s[i];
		shm_desc_read(shm_slot(p->h, i), &d);
		if (!(d.flags & SHM_F_INUSE)) {
			if (ps->inuse) {
				prober_slot_stop(p, ps);
				prober_words_reset(p->h, i);
			}
			continue;
		}
		if (ps->inuse && ps->added_ms == d.added_ms) {
			/* the same backend, maybe at a new address or with new models */
			ps->d = d;
			prober_slot_model(p, ps);
			continue;
		}
		prober_slot_new(p, ps, &d);
	}
	p->n = n;
	p->started = 1;
}

static void
prober_tick(struct ev_loop *l, struct ev_timer *t)
{
	struct prober	*p = (struct prober *)((char *)t - offsetof(struct prober, tick));
	uint32_t	 v;

	if (shm_gen(p->h) != p->gen)
		prober_refresh(p);
	v = atomic_load_explicit(&p->h->verbose, memory_order_relaxed);
	if (v != p->verbose) {
		p->verbose = v;
		log_setverbose((int)v);
	}
	prober_breakers(p);
	ev_timer_after(l, t, BREAKER_POLL_MS);
}

static void
prober_signal(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct prober_sig	*ps = (struct prober_sig *)io;
	struct signalfd_siginfo	 si;

	while (read(io->fd, &si, sizeof(si)) == sizeof(si))
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT ||
		    si.ssi_signo == SIGQUIT)
			ps->p->stop = 1;
}

/* The master's liveness pipe: readable only at EOF, when the master is gone. */
static void
prober_master_gone(struct ev_loop *l, struct ev_io *io, uint32_t ev)
{
	struct prober_sig	*ps = (struct prober_sig *)io;

	if (!ps->p->stop)
		log_warnx("prober: the master is gone; stopping");
	ps->p->stop = 1;
	ev_del(l, io);
}

int
prober_main(struct conf *cf, struct shm_hdr *shm, int master_fd)
{
	struct prober		 p;
	struct prober_sig	 sig, mwatch;
	sigset_t		 mask;
	uint32_t		 i;

	memset(&p, 0, sizeof(p));
	p.cf = cf;
	p.h = shm;
	p.bc.threshold = (uint32_t)cf->breaker.threshold;
	p.bc.timeout_ms = (uint64_t)cf->breaker.timeout_ms;
	p.bc.half_open = (uint32_t)cf->breaker.half_open_requests;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);

	if (ev_init(&p.loop, 256) == -1)
		fatal("prober: epoll");
	if ((sig.io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("prober: signalfd");
	sig.io.cb = prober_signal;
	sig.p = &p;
	if (ev_add(&p.loop, &sig.io, EPOLLIN) == -1)
		fatal("prober: epoll_ctl");
	if (master_fd != -1) {
		mwatch.io.fd = master_fd;
		mwatch.io.cb = prober_master_gone;
		mwatch.p = &p;
		if (ev_add(&p.loop, &mwatch.io, EPOLLIN) == -1)
			fatal("prober: epoll_ctl master pipe");
	}
	p.rng = ((uint64_t)getpid() << 32) ^ shm_now_ms() ^ 0x9e3779b97f4a7c15ULL;
	if ((p.s = calloc(shm->max_backends, sizeof(*p.s))) == NULL)
		fatal("prober: calloc");
	for (i = 0; i < shm->max_backends; i++) {
		p.s[i].p = &p;
		p.s[i].idx = i;
	}
	p.verbose = atomic_load_explicit(&shm->verbose, memory_order_relaxed);
	prober_refresh(&p);
	ev_timer_init(&p.tick, prober_tick);
	ev_timer_after(&p.loop, &p.tick, BREAKER_POLL_MS);
	if (cf->health.type == HEALTH_NONE)
		log_info("prober: no active checks, breaker at %d failures",
		    cf->breaker.threshold);
	else
		log_info("prober: %s checks every %d ms, breaker at %d failures",
		    conf_health_type_name(cf->health.type), cf->health.interval_ms,
		    cf->breaker.threshold);

	while (!p.stop) {
		if (ev_run_once(&p.loop, 1000) == -1)
			fatal("prober: epoll_wait");
	}
	for (i = 0; i < p.n; i++)
		if (p.s[i].ready)
			check_cancel(&p.loop, &p.s[i].ck);
	free(p.s);
	close(sig.io.fd);
	ev_close(&p.loop);
	return 0;
}

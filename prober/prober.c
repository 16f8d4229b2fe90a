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
#include "prober/pairbrk.h"
#include "prober/prober.h"
#include "prober/signals.h"

/* The pair breakers are polled this often (every tenth breaker tick). */
#define PAIRBRK_POLL_MS		100

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

	/* health.metrics: GET health.metrics_path, at health.metrics_interval */
	struct check	 mck;
	struct ev_timer	 mnext;
	uint64_t	 mstarted;
	int		 mfailing;	/* said that the reads fail; say when they work */
	/* health.models: GET /v1/models, at health.interval */
	struct check	 vck;
	struct ev_timer	 vnext;
	uint64_t	 vstarted;
	int		 vfailing;
	/* the (backend, model) pairs' breakers, d.models[i] in pb[i] */
	struct pairbrk	 pb[SHM_SLOT_MODELS];
	uint32_t	 pb_n;		/* pairs set up, for d.models as in pb_models */
	uint32_t	 pb_models[SHM_SLOT_MODELS];
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
	uint32_t	 ticks;
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

static struct pslot *
prober_slot_of_mtimer(struct ev_timer *t)
{
	return (struct pslot *)((char *)t - offsetof(struct pslot, mnext));
}

static struct pslot *
prober_slot_of_vtimer(struct ev_timer *t)
{
	return (struct pslot *)((char *)t - offsetof(struct pslot, vnext));
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
	atomic_store_explicit(&s->m_ms, 0, memory_order_release);
	atomic_store_explicit(&s->m_waiting, 0, memory_order_relaxed);
	atomic_store_explicit(&s->m_running, 0, memory_order_relaxed);
	atomic_store_explicit(&s->m_kv_ppm, 0, memory_order_relaxed);
	atomic_store_explicit(&s->m_fails, 0, memory_order_relaxed);
	atomic_store_explicit(&s->m_reads, 0, memory_order_relaxed);
	atomic_store_explicit(&s->m_errors, 0, memory_order_relaxed);
	atomic_store_explicit(&s->models_down, 0, memory_order_release);
	atomic_store_explicit(&s->models_open, 0, memory_order_release);
	atomic_store_explicit(&s->models_ms, 0, memory_order_relaxed);
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
 * A pair's counters summed over the stripes of the workers that started.
 * Not shm_pair_sum(): it reads every field of every worker's stripe, and
 * the pairs stay sparse in the table (shm_create()); the three words a
 * breaker needs share the stripe's first cache line.
 */
static void
prober_pair_in(struct prober *p, uint32_t slot, uint32_t pair,
    struct pairbrk_in *in)
{
	struct shm_hdr	*h = p->h;
	uint32_t	 w, nw = h->max_workers;

	if (nw > SHM_WORKERS_MAX)
		nw = SHM_WORKERS_MAX;
	memset(in, 0, sizeof(*in));
	for (w = 0; w < nw; w++) {
		struct shm_pair	*sp;

		if (atomic_load_explicit(&h->workers[w].started_ms,
		    memory_order_relaxed) == 0)
			continue;
		sp = shm_pair(h, w, slot, pair);
		in->done += atomic_load_explicit(&sp->done, memory_order_relaxed);
		in->fails += atomic_load_explicit(&sp->fails, memory_order_relaxed);
		in->consec += atomic_load_explicit(&sp->consec_fails,
		    memory_order_relaxed);
	}
	in->now = p->loop.now;
}

static const char *
prober_model_of(struct prober *p, const struct pslot *ps, uint32_t i,
    char *buf, size_t len)
{
	if (i >= ps->d.nmodels || shm_model_name(p->h, ps->d.models[i], buf,
	    len) == -1)
		snprintf(buf, len, "#%u", i);
	return buf;
}

/*
 * Follow a change of the slot's models (bit i of models_down and
 * models_open, and pair i's counters, go with d.models[i]): a model that
 * stays keeps its bits and its breaker, one that moved to another
 * position starts a new baseline there, a new one starts closed and
 * listed.  adopt: a restarted prober's first look at a backend the table
 * already knew, whose bits are taken as they are.
 */
static void
prober_pairs_sync(struct prober *p, struct pslot *ps, int adopt)
{
	struct shm_slot		*s = shm_slot(p->h, ps->idx);
	struct pairbrk		 pb[SHM_SLOT_MODELS];
	struct pairbrk_in	 in;
	uint32_t		 down, open, ndown = 0, nopen = 0, i, j, n;

	n = ps->d.nmodels > SHM_SLOT_MODELS ? SHM_SLOT_MODELS : ps->d.nmodels;
	if (n == ps->pb_n && memcmp(ps->pb_models, ps->d.models,
	    n * sizeof(ps->d.models[0])) == 0)
		return;
	down = atomic_load_explicit(&s->models_down, memory_order_relaxed);
	open = atomic_load_explicit(&s->models_open, memory_order_relaxed);
	for (j = 0; j < n; j++) {
		prober_pair_in(p, ps->idx, j, &in);
		if (adopt && ps->pb_n == 0) {
			pairbrk_init(&pb[j], &in, (open >> j) & 1);
			ndown |= down & (1u << j);
			nopen |= open & (1u << j);
			continue;
		}
		for (i = 0; i < ps->pb_n; i++)
			if (ps->pb_models[i] == ps->d.models[j])
				break;
		if (i == ps->pb_n) {
			pairbrk_init(&pb[j], &in, 0);
			continue;
		}
		ndown |= ((down >> i) & 1) << j;
		nopen |= ((open >> i) & 1) << j;
		if (i == j)
			pb[j] = ps->pb[i];
		else
			pairbrk_init(&pb[j], &in, ps->pb[i].state == SHM_BREAKER_OPEN);
	}
	memcpy(ps->pb, pb, sizeof(pb));
	memcpy(ps->pb_models, ps->d.models, n * sizeof(ps->d.models[0]));
	ps->pb_n = n;
	if (ndown != down || nopen != open) {
		atomic_store_explicit(&s->models_down, ndown, memory_order_release);
		atomic_store_explicit(&s->models_open, nopen, memory_order_release);
		shm_prober_note(p->h, ps->idx);
	}
}

/* One poll of every pair breaker; models_open follows their states. */
static void
prober_pairs(struct prober *p)
{
	struct pairbrk_in	 in;
	const char		*why;
	char			 name[SHM_NAME_MAX];
	uint32_t		 i, k, open, nopen;

	for (i = 0; i < p->n; i++) {
		struct pslot	*ps = &p->s[i];
		struct shm_slot	*s = shm_slot(p->h, i);

		if (!ps->inuse || ps->pb_n == 0)
			continue;
		open = nopen = atomic_load_explicit(&s->models_open,
		    memory_order_relaxed);
		for (k = 0; k < ps->pb_n; k++) {
			prober_pair_in(p, i, k, &in);
			if (!pairbrk_step(&ps->pb[k], &p->bc, &in, &why))
				continue;
			prober_model_of(p, ps, k, name, sizeof(name));
			if (ps->pb[k].state == SHM_BREAKER_OPEN) {
				nopen |= 1u << k;
				log_warnx("prober: %s model %s breaker open: %s",
				    ps->d.name, name, why);
			} else {
				nopen &= ~(1u << k);
				log_info("prober: %s model %s breaker %s: %s",
				    ps->d.name, name,
				    breaker_state_name(ps->pb[k].state), why);
			}
		}
		if (nopen != open) {
			atomic_store_explicit(&s->models_open, nopen,
			    memory_order_release);
			shm_prober_note(p->h, i);
		}
	}
}

/*
 * Build the check target of a slot: its address (or, offset != 0, the
 * babysitter's at port + port_offset), its own health path or the global
 * one, its first model.  0, or -1 with why when the backend cannot be
 * checked at all.
 */
static int
prober_target(struct prober *p, struct pslot *ps, struct check_target *t,
    char *why, size_t whylen, int offset)
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
	port = ntohs(*portp) + (offset ? (unsigned)cf->health.port_offset : 0);
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
	if (prober_target(ps->p, ps, &tg, why, sizeof(why), 1) == -1) {
		/* a descriptor we cannot reach counts as a failed check */
		prober_result(ps, 0, 0, why);
		return;
	}
	check_start(l, &ps->ck, &tg);
}

/*
 * health.metrics: one /metrics read ended.  A good one publishes the
 * figures, then m_ms (release: a reader that sees the new time sees
 * figures at least that new); a bad one counts and leaves m_ms, so the
 * figures go stale by themselves.  Never a health verdict: the signals
 * are advice, and a backend whose /metrics fails may serve well.
 */
static void
prober_metrics_result(struct pslot *ps, int ok, const char *why)
{
	struct prober		*p = ps->p;
	struct shm_slot		*s = shm_slot(p->h, ps->idx);
	struct signals_load	 ld;
	uint64_t		 iv, took;

	if (ok < 0) {
		log_debug("prober: %s metrics not read: %s", ps->d.name, why);
		goto next;
	}
	if (ok && signals_prom_parse(ps->mck.body, ps->mck.bodylen, &ld,
	    &why) == 0) {
		atomic_store_explicit(&s->m_waiting, ld.waiting, memory_order_relaxed);
		atomic_store_explicit(&s->m_running, ld.running, memory_order_relaxed);
		atomic_store_explicit(&s->m_kv_ppm, ld.kv_ppm, memory_order_relaxed);
		atomic_store_explicit(&s->m_fails, 0, memory_order_relaxed);
		atomic_store_explicit(&s->m_reads, atomic_load_explicit(&s->m_reads,
		    memory_order_relaxed) + 1, memory_order_relaxed);
		atomic_store_explicit(&s->m_ms, shm_now_ms(), memory_order_release);
		if (ps->mfailing)
			log_info("prober: %s metrics read again", ps->d.name);
		ps->mfailing = 0;
	} else {
		atomic_store_explicit(&s->m_errors, atomic_load_explicit(&s->m_errors,
		    memory_order_relaxed) + 1, memory_order_relaxed);
		atomic_store_explicit(&s->m_fails, atomic_load_explicit(&s->m_fails,
		    memory_order_relaxed) + 1, memory_order_relaxed);
		if (!ps->mfailing)
			log_info("prober: %s metrics not read: %s", ps->d.name, why);
		else
			log_debug("prober: %s metrics not read: %s", ps->d.name, why);
		ps->mfailing = 1;
	}
next:
	iv = prober_jitter(p, (uint64_t)p->cf->health.metrics_interval_ms);
	took = p->loop.now - ps->mstarted;
	ev_timer_after(&p->loop, &ps->mnext, iv > took ? iv - took : 0);
}

/*
 * health.models: one /v1/models read ended.  A good one sets bit i of
 * models_down for each d.models[i] the list lacks; a bad one leaves the
 * bits as they were (a backend that cannot list its models for a moment
 * has not lost them) and judges nothing.
 */
static void
prober_models_result(struct pslot *ps, int ok, const char *why)
{
	struct prober	*p = ps->p;
	struct shm_slot	*s = shm_slot(p->h, ps->idx);
	char		 names[SHM_SLOT_MODELS][SHM_NAME_MAX];
	uint32_t	 i, n = ps->pb_n, down, old, diff;
	uint64_t	 iv, took;

	if (ok < 0) {
		log_debug("prober: %s models not read: %s", ps->d.name, why);
		goto next;
	}
	for (i = 0; i < n; i++)
		if (shm_model_name(p->h, ps->pb_models[i], names[i],
		    sizeof(names[i])) == -1)
			names[i][0] = '\0';
	if (ok && signals_models_parse(ps->vck.body, ps->vck.bodylen,
	    (const char (*)[SHM_NAME_MAX])names, n, &down) == 0) {
		old = atomic_load_explicit(&s->models_down, memory_order_relaxed);
		if ((diff = old ^ down) != 0) {
			atomic_store_explicit(&s->models_down, down,
			    memory_order_release);
			shm_prober_note(p->h, ps->idx);
			for (i = 0; i < n; i++)
				if (diff & (1u << i))
					log_info("prober: %s model %s %s", ps->d.name,
					    names[i], (down & (1u << i)) ?
					    "missing from its /v1/models: out" :
					    "listed again");
		}
		atomic_store_explicit(&s->models_ms, shm_now_ms(),
		    memory_order_relaxed);
		if (ps->vfailing)
			log_info("prober: %s models read again", ps->d.name);
		ps->vfailing = 0;
	} else {
		if (ok)
			why = "not a model list";
		if (!ps->vfailing)
			log_info("prober: %s models not read: %s", ps->d.name, why);
		else
			log_debug("prober: %s models not read: %s", ps->d.name, why);
		ps->vfailing = 1;
	}
next:
	iv = prober_jitter(p, (uint64_t)p->cf->health.interval_ms);
	took = p->loop.now - ps->vstarted;
	ev_timer_after(&p->loop, &ps->vnext, iv > took ? iv - took : 0);
}

static void
prober_metrics_done(struct check *ck, int ok, uint32_t lat_us, const char *why)
{
	prober_metrics_result(ck->arg, ok, why);
}

static void
prober_models_done(struct check *ck, int ok, uint32_t lat_us, const char *why)
{
	prober_models_result(ck->arg, ok, why);
}

/* Start a GET of path on the backend's own port (no port_offset), keeping the body. */
static void
prober_read_start(struct pslot *ps, struct check *ck, const char *path)
{
	struct check_target	 tg;
	char			 why[CHECK_WHY_MAX];

	if (prober_target(ps->p, ps, &tg, why, sizeof(why), 0) == -1) {
		ck->done(ck, 0, 0, why);
		return;
	}
	tg.kind = CHECK_HTTP;
	strlcpy(tg.path, path, sizeof(tg.path));
	tg.body_max = SIGNALS_BODY_MAX;
	check_start(&ps->p->loop, ck, &tg);
}

static void
prober_metrics_due(struct ev_loop *l, struct ev_timer *t)
{
	struct pslot	*ps = prober_slot_of_mtimer(t);

	if (!ps->inuse || ps->mck.running)
		return;
	ps->mstarted = l->now;
	prober_read_start(ps, &ps->mck, ps->p->cf->health.metrics_path);
}

static void
prober_models_due(struct ev_loop *l, struct ev_timer *t)
{
	struct pslot	*ps = prober_slot_of_vtimer(t);

	if (!ps->inuse || ps->vck.running)
		return;
	ps->vstarted = l->now;
	if (ps->pb_n == 0) {
		/* no model declared: nothing to take out; look again later */
		ev_timer_after(l, &ps->vnext, (uint64_t)ps->p->cf->health.interval_ms);
		return;
	}
	prober_read_start(ps, &ps->vck, "/v1/models");
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
		check_init(&ps->mck, prober_metrics_done, ps);
		ev_timer_init(&ps->mnext, prober_metrics_due);
		check_init(&ps->vck, prober_models_done, ps);
		ev_timer_init(&ps->vnext, prober_models_due);
		ps->ready = 1;
	}
	check_cancel(&p->loop, &ps->ck);
	ev_timer_stop(&p->loop, &ps->next);
	check_cancel(&p->loop, &ps->mck);
	ev_timer_stop(&p->loop, &ps->mnext);
	check_cancel(&p->loop, &ps->vck);
	ev_timer_stop(&p->loop, &ps->vnext);
	ps->inuse = 0;
	ps->mfailing = ps->vfailing = 0;
	ps->pb_n = 0;
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
	int			 adopt = 0;

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
		adopt = 1;
	}
	prober_pairs_sync(p, ps, adopt);
	/* load signals and model lists are read whatever health.type says */
	if (p->cf->health.metrics)
		ev_timer_after(&p->loop, &ps->mnext, prober_rand(p) %
		    ((uint64_t)p->cf->health.metrics_interval_ms / 10 + 1));
	if (p->cf->health.models)
		ev_timer_after(&p->loop, &ps->vnext, prober_rand(p) %
		    ((uint64_t)p->cf->health.interval_ms / 10 + 1));
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
			prober_pairs_sync(p, ps, 0);
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
	if (++p->ticks % (PAIRBRK_POLL_MS / BREAKER_POLL_MS) == 0)
		prober_pairs(p);
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
		if (p.s[i].ready) {
			check_cancel(&p.loop, &p.s[i].ck);
			check_cancel(&p.loop, &p.s[i].mck);
			check_cancel(&p.loop, &p.s[i].vck);
		}
	free(p.s);
	close(sig.io.fd);
	ev_close(&p.loop);
	return 0;
}

/* The master's side of the registry: reads the syncer's batches and applies them to the table, with grace periods. */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"
#include "syncer/syncer.h"

/*
 * What the master knows of one service the registry listed: the slot it
 * holds, and since when it is missing.  Master process only; the table
 * holds the rest (the descriptor is the truth about address, models...).
 */
struct regent {
	struct regent	*next;			/* hash chain */
	char		 name[CONF_NAME_MAX];
	int		 slot;			/* -1: not in the table */
	uint32_t	 epoch;			/* the last batch that listed it */
	uint64_t	 missing_since;		/* monotonic ms; 0: listed */
	int		 is_static;		/* metadata.static: never removed */
	int		 conflict;		/* a configured backend has the name */
};

/* A received batch: the records of its SVC messages, back to back. */
struct regbuf {
	char		*p;
	size_t		 len, cap;
	uint32_t	 nrecs;
	int		 valid;
};

static struct {
	struct master	*m;
	struct regent	**tab;
	size_t		 ntab, n;		/* buckets, entries */
	struct regbuf	 rx;			/* batch being received */
	struct regbuf	 cur;			/* last batch applied (for SAME) */
	uint32_t	 rxbatch;
	int		 receiving;
	uint32_t	 epoch;
	struct ev_timer	 grace;
	int		 grace_init;
	struct registry_stats st;
	uint64_t	 base_ok, base_failed;	/* counts of syncers that died */
	uint64_t	 rep_ok, rep_failed;	/* as the current syncer last said */
	int		 nopool_logged, full_logged;
} reg;

static uint64_t
regent_hash(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static struct regent *
regent_find(const char *name)
{
	struct regent	*e;

	if (reg.ntab == 0)
		return NULL;
	for (e = reg.tab[regent_hash(name) & (reg.ntab - 1)]; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* Grow the bucket array to keep chains short.  0 or -1. */
static int
regent_grow(void)
{
	struct regent	**nt, *e, *next;
	size_t		  nn = reg.ntab ? reg.ntab * 2 : 1024, i;

	if ((nt = calloc(nn, sizeof(*nt))) == NULL)
		return -1;
	for (i = 0; i < reg.ntab; i++)
		for (e = reg.tab[i]; e; e = next) {
			next = e->next;
			e->next = nt[regent_hash(e->name) & (nn - 1)];
			nt[regent_hash(e->name) & (nn - 1)] = e;
		}
	free(reg.tab);
	reg.tab = nt;
	reg.ntab = nn;
	return 0;
}

/* The entry for name, made when new; NULL when out of memory. */
static struct regent *
regent_get(const char *name)
{
	struct regent	*e;
	size_t		 b;

	if ((e = regent_find(name)) != NULL)
		return e;
	if (reg.n >= reg.ntab && regent_grow() == -1)
		return NULL;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	strlcpy(e->name, name, sizeof(e->name));
	e->slot = -1;
	b = regent_hash(name) & (reg.ntab - 1);
	e->next = reg.tab[b];
	reg.tab[b] = e;
	reg.n++;
	return e;
}

/* Unlink and free *ep (a link of a chain); *ep becomes the next entry. */
static void
regent_del(struct regent **ep)
{
	struct regent	*e = *ep;

	*ep = e->next;
	free(e);
	reg.n--;
}

void
registry_reset(void)
{
	size_t	i;

	for (i = 0; i < reg.ntab; i++)
		while (reg.tab[i] != NULL)
			regent_del(&reg.tab[i]);
	free(reg.tab);
	free(reg.rx.p);
	free(reg.cur.p);
	if (reg.m != NULL && reg.grace_init)
		ev_timer_stop(&reg.m->loop, &reg.grace);
	memset(&reg, 0, sizeof(reg));
}

/*
 * Does slot still hold our registry backend called name?  A reload may
 * have freed it (registry gone from the config) or given the name to a
 * configured backend.  Plain reads: the master is the descriptor's only
 * writer, so it cannot race itself.
 */
static int
registry_owns(struct shm_hdr *h, int slot, const char *name)
{
	const struct shm_desc	*d;

	if (slot < 0 || (uint32_t)slot >= atomic_load_explicit(&h->nslots,
	    memory_order_relaxed))
		return 0;
	d = &shm_slot(h, (uint32_t)slot)->d;
	return (d->flags & (SHM_F_INUSE | SHM_F_REGISTRY)) ==
	    (SHM_F_INUSE | SHM_F_REGISTRY) && strcmp(d->name, name) == 0;
}

/* Names of the configured backends, and the free slots, as one table pass sees them. */
struct regscan {
	char		(*cfg)[CONF_NAME_MAX];
	uint32_t	*cfgtab;		/* open addressing: index + 1, 0 = empty */
	size_t		 ncfg, cfgtabn;
	uint32_t	*freeslots;
	size_t		 nfree, nextfree;
};

static void
regscan_free(struct regscan *sc)
{
	free(sc->cfg);
	free(sc->cfgtab);
	free(sc->freeslots);
}

static int
regscan_build(struct shm_hdr *h, struct regscan *sc)
{
	uint32_t		 i, n = atomic_load_explicit(&h->nslots, memory_order_relaxed);
	const struct shm_desc	*d;
	size_t			 k;

	memset(sc, 0, sizeof(*sc));
	sc->freeslots = calloc(n ? n : 1, sizeof(*sc->freeslots));
	sc->cfg = calloc(n ? n : 1, sizeof(*sc->cfg));
	for (sc->cfgtabn = 16; sc->cfgtabn < 2 * (size_t)n; sc->cfgtabn *= 2)
		;
	sc->cfgtab = calloc(sc->cfgtabn, sizeof(*sc->cfgtab));
	if (sc->freeslots == NULL || sc->cfg == NULL || sc->cfgtab == NULL) {
		regscan_free(sc);
		return -1;
	}
	for (i = 0; i < n; i++) {
		d = &shm_slot(h, i)->d;
		if (!(d->flags & SHM_F_INUSE)) {
			sc->freeslots[sc->nfree++] = i;
			continue;
		}
		if (d->flags & SHM_F_REGISTRY)
			continue;
		strlcpy(sc->cfg[sc->ncfg], d->name, CONF_NAME_MAX);
		for (k = regent_hash(d->name) & (sc->cfgtabn - 1); sc->cfgtab[k];
		    k = (k + 1) & (sc->cfgtabn - 1))
			;
		sc->cfgtab[k] = (uint32_t)++sc->ncfg;
	}
	return 0;
}

static int
regscan_configured(const struct regscan *sc, const char *name)
{
	size_t	k;

	for (k = regent_hash(name) & (sc->cfgtabn - 1); sc->cfgtab[k];
	    k = (k + 1) & (sc->cfgtabn - 1))
		if (strcmp(sc->cfg[sc->cfgtab[k] - 1], name) == 0)
			return 1;
	return 0;
}

/*
 * A slot for a new registry backend: a free one seen by the scan, else
 * the next one past the high-water mark; -1 when the table is full.
 * master_slot_alloc() would rescan the table from slot 0 for every call,
 * which makes a 10,000-service first batch quadratic.
 */
static int
registry_slot_alloc(struct shm_hdr *h, struct regscan *sc)
{
	uint32_t	n;

	while (sc->nextfree < sc->nfree) {
		n = sc->freeslots[sc->nextfree++];
		if (!(shm_slot(h, n)->d.flags & SHM_F_INUSE))
			return (int)n;
	}
	n = atomic_load_explicit(&h->nslots, memory_order_relaxed);
	if (n >= h->max_backends)
		return -1;
	atomic_store_explicit(&h->nslots, n + 1, memory_order_release);
	return (int)n;
}

static void	registry_grace_fire(struct ev_loop *, struct ev_timer *);
static void	registry_events(struct master *);

/*
 * Free the backends whose grace is over and re-arm the timer for the next
 * one.  Returns 1 when a slot was freed (the caller bumps gen).
 */
static int
registry_expire(struct master *m)
{
	struct shm_hdr	 *h = m->shm;
	struct regent	**ep;
	uint64_t	  now = shm_mono_ms(), grace = (uint64_t)m->conf->registry.grace_ms;
	uint64_t	  next = 0;
	size_t		  i;
	int		  changed = 0;

	for (i = 0; i < reg.ntab; i++) {
		for (ep = &reg.tab[i]; *ep != NULL;) {
			struct regent *e = *ep;

			if (e->missing_since == 0 || e->is_static) {
				ep = &e->next;
				continue;
			}
			if (!registry_owns(h, e->slot, e->name)) {
				regent_del(ep);
				continue;
			}
			if (now - e->missing_since >= grace) {
				log_info("registry: %s removed: gone from the "
				    "registry for %llu ms", e->name,
				    (unsigned long long)(now - e->missing_since));
				master_slot_free(h, (uint32_t)e->slot);
				regent_del(ep);
				changed = 1;
				continue;
			}
			if (next == 0 || e->missing_since + grace < next)
				next = e->missing_since + grace;
			ep = &e->next;
		}
	}
	if (!reg.grace_init) {
		ev_timer_init(&reg.grace, registry_grace_fire);
		reg.grace.idx = SIZE_MAX;
		reg.grace_init = 1;
	}
	if (next != 0 && m->loop.epfd > 0) {
		ev_update_now(&m->loop);
		ev_timer_after(&m->loop, &reg.grace, next - now + 1);
	}
	return changed;
}

static void
registry_grace_fire(struct ev_loop *l, struct ev_timer *t)
{
	(void)l;
	(void)t;
	if (reg.m != NULL && registry_expire(reg.m))
		shm_gen_bump(reg.m->shm);
}

/*
 * Apply one whole batch b: add, update, mark missing.  Every record was
 * checked when it arrived.  Returns 1 when the table changed.
 */
static int
registry_apply(struct master *m, const struct regbuf *b)
{
	struct shm_hdr		*h = m->shm;
	struct regscan		 sc;
	struct syncer_rec_view	 v;
	struct conf_backend	 cb;
	struct shm_desc		 d, old;
	struct regent		*e, **ep;
	size_t			 off, i;
	uint64_t		 nowrt = shm_now_ms(), nowmono = shm_mono_ms();
	uint32_t		 added = 0, updated = 0, gone = 0, dups = 0;
	int			 pool, changed = 0, full = 0, k, slot;

	/* the pool's id in the table, not its place in the file (DESIGN "The shared table") */
	if (conf_pool_find(m->conf, m->conf->registry.pool) == -1 ||
	    (pool = shm_pool_find(h, m->conf->registry.pool)) == -1) {
		if (!reg.nopool_logged++)
			log_warnx("registry: no pool '%s'; registry ignored",
			    m->conf->registry.pool);
		return 0;
	}
	reg.nopool_logged = 0;
	if (regscan_build(h, &sc) == -1) {
		log_warnx("registry: out of memory; batch dropped");
		return 0;
	}
	reg.epoch++;
	/* our entries must still hold their slots: a reload may have taken them */
	for (i = 0; i < reg.ntab; i++)
		for (e = reg.tab[i]; e != NULL; e = e->next)
			if (e->slot >= 0 && !registry_owns(h, e->slot, e->name))
				e->slot = -1;

	for (off = 0; off < b->len; off += v.rec->len) {
		if (syncer_unpack(b->p + off, b->len - off, &v) == -1)
			break;	/* cannot happen: checked on arrival */
		if ((e = regent_get(v.name)) == NULL) {
			log_warnx("registry: out of memory");
			break;
		}
		if (e->epoch == reg.epoch) {
			dups++;
			continue;
		}
		e->epoch = reg.epoch;
		if (regscan_configured(&sc, v.name)) {
			if (!e->conflict)
				log_warnx("registry: service %s ignored: a configured "
				    "backend has that name", v.name);
			e->conflict = 1;
			e->missing_since = 0;
			continue;
		}
		e->conflict = 0;
		memset(&cb, 0, sizeof(cb));
		strlcpy(cb.name, v.name, sizeof(cb.name));
		strlcpy(cb.addr.text, v.addr, sizeof(cb.addr.text));
		memcpy(&cb.addr.ss, v.rec->sa, v.rec->salen);
		cb.addr.sslen = v.rec->salen;
		cb.weight = v.rec->weight;
		strlcpy(cb.region, v.region, sizeof(cb.region));
		strlcpy(cb.health_path, v.health_path, sizeof(cb.health_path));
		for (k = 0; k < v.nmodels; k++)
			strlcpy(cb.models[k], v.models[k], CONF_NAME_MAX);
		cb.nmodels = v.nmodels;
		e->is_static = (v.rec->flags & SYNCER_REC_STATIC) != 0;
		master_desc_from_conf(h, &cb, (uint32_t)pool, SHM_F_REGISTRY |
		    (e->is_static ? SHM_F_STATIC : 0), &d);
		d.last_seen_ms = nowrt;
		e->missing_since = 0;
		if (e->slot >= 0) {
			/* same slot: health history and in-flight requests stay */
			old = shm_slot(h, (uint32_t)e->slot)->d;
			d.added_ms = old.added_ms;
			d.flags |= old.flags & (SHM_F_DISABLED | SHM_F_DRAINING);
			old.last_seen_ms = d.last_seen_ms;
			if (memcmp(&d, &old, sizeof(d)) != 0) {
				log_debug("registry: %s updated (%s)", d.name, d.addr);
				updated++;
				changed = 1;
			}
			shm_desc_write(shm_slot(h, (uint32_t)e->slot), &d);
			continue;
		}
		if ((slot = registry_slot_alloc(h, &sc)) == -1) {
			full = 1;
			if (!reg.full_logged++)
				log_warnx("registry: table full (max_backends %u); "
				    "service %s and others left out", h->max_backends,
				    v.name);
			continue;
		}
		e->slot = slot;
		shm_desc_write(shm_slot(h, (uint32_t)slot), &d);
		log_debug("registry: %s added (%s)", d.name, d.addr);
		added++;
		changed = 1;
	}
	if (!full)
		reg.full_logged = 0;

	/* not listed this time: start the grace, or forget what is not in the table */
	for (i = 0; i < reg.ntab; i++) {
		for (ep = &reg.tab[i]; *ep != NULL;) {
			e = *ep;
			if (e->epoch == reg.epoch) {
				ep = &e->next;
				continue;
			}
			if (e->slot < 0 || e->conflict) {
				regent_del(ep);
				continue;
			}
			if (!e->is_static && e->missing_since == 0) {
				e->missing_since = nowmono;
				gone++;
				log_info("registry: %s gone from the registry; kept "
				    "for %d ms", e->name, m->conf->registry.grace_ms);
			}
			ep = &e->next;
		}
	}
	regscan_free(&sc);
	if (registry_expire(m))
		changed = 1;
	if (added || updated || gone || dups)
		log_info("registry: %u added, %u updated, %u gone, %u duplicate "
		    "names skipped", added, updated, gone, dups);
	return changed;
}

/* The syncer's counters, kept across syncer restarts. */
static void
registry_take_stats(const struct syncer_stats *s, int failing)
{
	if (s->syncs_ok < reg.rep_ok || s->syncs_failed < reg.rep_failed) {
		/* a new syncer counts from zero */
		reg.base_ok += reg.rep_ok;
		reg.base_failed += reg.rep_failed;
	}
	reg.rep_ok = s->syncs_ok;
	reg.rep_failed = s->syncs_failed;
	reg.st.syncs_ok = reg.base_ok + s->syncs_ok;
	reg.st.syncs_failed = reg.base_failed + s->syncs_failed;
	if (s->last_ok_ms)
		reg.st.last_ok_ms = s->last_ok_ms;
	if (s->last_fail_ms)
		reg.st.last_fail_ms = s->last_fail_ms;
	reg.st.failing = failing;
	strlcpy(reg.st.last_error, failing ? s->error : "", sizeof(reg.st.last_error));
	if (!failing) {
		reg.st.listed = s->listed;
		reg.st.skipped = s->skipped;
		reg.st.filtered = s->filtered;
	}
}

static int
regbuf_append(struct regbuf *b, const void *p, size_t len)
{
	char	*n;
	size_t	 cap;

	if (len == 0)
		return 0;	/* memcpy() to a buffer not yet made is undefined, even of nothing */
	if (b->len + len > b->cap) {
		for (cap = b->cap ? b->cap : 65536; cap < b->len + len; cap *= 2)
			;
		if ((n = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = n;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return 0;
}

/* Apply b and time it; bump gen once when anything changed. */
static void
registry_apply_timed(struct master *m, const struct regbuf *b)
{
	uint64_t	t0, t1;
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	if (registry_apply(m, b))
		shm_gen_bump(m->shm);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t1 = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	reg.st.applied++;
	reg.st.apply_us = t1 - t0;
}

int
registry_msg(struct master *m, const void *msg, size_t len)
{
	const struct syncer_msg_hdr	*hd = msg;
	const char			*p = msg;
	struct syncer_stats		 st;
	struct syncer_rec_view		 v;
	struct regbuf			 tmp;
	size_t				 off;
	uint32_t			 i;

	reg.m = m;
	if (len < sizeof(*hd) || hd->len != len)
		goto bad;
	switch (hd->type) {
	case SYNCER_MSG_BEGIN:
		reg.rx.len = 0;
		reg.rx.nrecs = 0;
		reg.rxbatch = hd->batch;
		reg.receiving = 1;
		return 0;
	case SYNCER_MSG_SVC:
		if (!reg.receiving || hd->batch != reg.rxbatch)
			goto bad;
		/* check every record now, so that apply can trust them */
		for (off = sizeof(*hd), i = 0; i < hd->count; i++) {
			int n = syncer_unpack(p + off, len - off, &v);

			if (n == -1)
				goto bad;
			off += (size_t)n;
		}
		if (off != len || regbuf_append(&reg.rx, p + sizeof(*hd),
		    len - sizeof(*hd)) == -1)
			goto bad;
		reg.rx.nrecs += hd->count;
		return 0;
	case SYNCER_MSG_END:
	case SYNCER_MSG_SAME:
	case SYNCER_MSG_FAIL:
		if (len != sizeof(*hd) + sizeof(st))
			goto bad;
		memcpy(&st, p + sizeof(*hd), sizeof(st));
		st.error[sizeof(st.error) - 1] = '\0';
		break;
	default:
		goto bad;
	}
	if (hd->type == SYNCER_MSG_FAIL) {
		registry_take_stats(&st, 1);
		return 0;
	}
	if (hd->type == SYNCER_MSG_END) {
		if (!reg.receiving || hd->batch != reg.rxbatch)
			goto bad;
		reg.receiving = 0;
		tmp = reg.cur;
		reg.cur = reg.rx;
		reg.cur.valid = 1;
		reg.rx = tmp;
		reg.rx.len = 0;
		reg.rx.valid = 0;
	}
	registry_take_stats(&st, 0);
	if (reg.cur.valid)
		registry_apply_timed(m, &reg.cur);
	return 0;
bad:
	log_warnx("registry: malformed message from the syncer (type %u, %zu "
	    "bytes); batch dropped", len >= sizeof(*hd) ? hd->type : 0, len);
	reg.receiving = 0;
	return -1;
}

/*
 * The master's loop calls this when the syncer's socket is readable: read
 * every message waiting (the socket is a SOCK_SEQPACKET and the loop edge
 * triggered) and handle each.  Never blocks.
 */
void
registry_readable(struct master *m, int fd)
{
	static _Alignas(8) char	 buf[SYNCER_MSG_MAX];
	ssize_t			 n;

	for (;;) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("registry: receive from the syncer");
			return;
		}
		if (n == 0)
			return;		/* the syncer's end closed: the master respawns it */
		if ((size_t)n > sizeof(buf)) {
			log_warnx("registry: %zd-byte message from the syncer; "
			    "dropped", n);
			reg.receiving = 0;
			continue;
		}
		registry_msg(m, buf, (size_t)n);
		registry_publish(m);
		registry_events(m);
	}
}

/*
 * Tell the monitors what the last message changed: backends added or
 * removed (control_changed() compares the table), and the sync going
 * from working to failing or back, once per change of state.
 */
static void
registry_events(struct master *m)
{
	static int	 known, was_failing;

	control_changed(m);
	if (reg.st.syncs_ok + reg.st.syncs_failed == 0)
		return;
	if (!known || was_failing != reg.st.failing) {
		if (reg.st.failing)
			control_event(m, "registry", "sync failing: %s (%llu failed, "
			    "last good set kept)", reg.st.last_error,
			    (unsigned long long)reg.st.syncs_failed);
		else
			control_event(m, "registry", "sync ok: %u services listed, "
			    "%llu syncs ok", reg.st.listed,
			    (unsigned long long)reg.st.syncs_ok);
	}
	known = 1;
	was_failing = reg.st.failing;
}

/*
 * Copy the counters into the table's registry block for the workers and
 * routerctl.  The master is that block's only writer; called after every
 * message of the syncer and at start.
 */
void
registry_publish(struct master *m)
{
	struct shm_registry	*r = &m->shm->registry;
	struct registry_stats	 st;

	registry_stats(m, &st);
	atomic_store_explicit(&r->enabled, m->conf->registry.url[0] != '\0',
	    memory_order_relaxed);
	atomic_store_explicit(&r->failing, (uint32_t)st.failing, memory_order_relaxed);
	atomic_store_explicit(&r->syncs_ok, st.syncs_ok, memory_order_relaxed);
	atomic_store_explicit(&r->syncs_failed, st.syncs_failed, memory_order_relaxed);
	atomic_store_explicit(&r->last_ok_ms, st.last_ok_ms, memory_order_relaxed);
	atomic_store_explicit(&r->last_fail_ms, st.last_fail_ms, memory_order_relaxed);
	atomic_store_explicit(&r->listed, st.listed, memory_order_relaxed);
	atomic_store_explicit(&r->in_grace, st.in_grace, memory_order_relaxed);
	atomic_store_explicit(&r->applied, st.applied, memory_order_release);
}

void
registry_stats(struct master *m, struct registry_stats *out)
{
	struct regent	*e;
	size_t		 i;
	uint32_t	 s, n;

	*out = reg.st;
	out->conflicts = out->backends = out->in_grace = out->statics = 0;
	out->configured = 0;
	for (i = 0; i < reg.ntab; i++)
		for (e = reg.tab[i]; e != NULL; e = e->next) {
			if (e->conflict)
				out->conflicts++;
			if (e->slot < 0 || !registry_owns(m->shm, e->slot, e->name))
				continue;
			out->backends++;
			if (e->missing_since)
				out->in_grace++;
			if (e->is_static)
				out->statics++;
		}
	n = atomic_load_explicit(&m->shm->nslots, memory_order_relaxed);
	for (s = 0; s < n; s++) {
		const struct shm_desc *d = &shm_slot(m->shm, s)->d;

		if ((d->flags & SHM_F_INUSE) && !(d->flags & SHM_F_REGISTRY))
			out->configured++;
	}
}

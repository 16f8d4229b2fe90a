/* The master's side of the shared table: writing pools and backend descriptors. */
#include <string.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "master/master.h"

/*
 * master_table_load() makes the table hold the pools and backends of cf,
 * the config of generation gen, at start and on every reload; oldest is
 * the oldest generation a running worker still runs (gen if none).  Pools
 * keep their ids by name (shm_pool_intern()): a worker of an older
 * generation keeps routing by its own pools whatever the order of the new
 * file, and a pool that left the file is retired, not renumbered.
 * Backends are matched by name, so a backend that stays keeps its slot,
 * and with it its health, breaker and counters; one that is new takes a
 * free slot; a configured one that is gone is freed (its in-flight
 * requests finish); one that moved to another pool gets that pool's id.
 * Registry-learned backends are the registry's: they stay, in the
 * registry pool (by name).  An operator's disable/drain survives.
 * Returns 0, or -1 if the table is full of backends or of pool ids
 * (logged; what fitted is applied).
 */
int
master_table_load(struct shm_hdr *h, const struct conf *cf, uint32_t gen,
    uint32_t oldest)
{
	uint32_t	 i, n, ids[SHM_POOLS_MAX];
	uint8_t		 live[SHM_POOLS_MAX];
	size_t		 p, b;
	int		 rc = 0, regpool, id;
	struct shm_desc	 d, old;

	memset(live, 0, sizeof(live));
	for (p = 0; p < cf->npools && p < SHM_POOLS_MAX; p++) {
		if ((id = shm_pool_intern(h, cf->pools[p].name, gen, oldest)) == -1) {
			/* every id may still be used by a draining generation */
			log_warnx("table: no pool id free for '%s' while older "
			    "workers drain; its backends are left out",
			    cf->pools[p].name);
			ids[p] = UINT32_MAX;
			rc = -1;
			continue;
		}
		ids[p] = (uint32_t)id;
		live[id] = 1;
		shm_pool_set(h, (uint32_t)id, cf->pools[p].name,
		    cf->pools[p].strategy, cf->pools[p].base_strategy);
	}
	for (p = cf->npools; p < SHM_POOLS_MAX; p++)
		ids[p] = UINT32_MAX;
	for (i = 0; i < SHM_POOLS_MAX; i++)
		if (!live[i] &&
		    atomic_load_explicit(&h->pools[i].inuse, memory_order_relaxed))
			shm_pool_retire(h, i);
	regpool = cf->registry.url[0] ? conf_pool_find(cf, cf->registry.pool) : -1;
	if (regpool >= 0 && ids[regpool] == UINT32_MAX)
		regpool = -1;

	/* configured backends that left the file; registry ones follow their pool */
	n = atomic_load_explicit(&h->nslots, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		int found = 0;

		shm_desc_read(shm_slot(h, i), &d);
		if (!(d.flags & SHM_F_INUSE))
			continue;
		if (d.flags & SHM_F_REGISTRY) {
			if (regpool < 0) {
				master_slot_free(h, i);
				continue;
			}
			if (d.pool != ids[regpool]) {
				d.pool = ids[regpool];
				shm_desc_write(shm_slot(h, i), &d);
			}
			continue;
		}
		for (p = 0; p < cf->npools && !found; p++)
			for (b = 0; b < cf->pools[p].nbackends && !found; b++)
				if (ids[p] != UINT32_MAX &&
				    strcmp(cf->pools[p].backends[b].name, d.name) == 0)
					found = 1;
		if (!found)
			master_slot_free(h, i);
	}
	for (p = 0; p < cf->npools; p++) {
		const struct conf_pool *cp = &cf->pools[p];

		if (ids[p] == UINT32_MAX)
			continue;
		for (b = 0; b < cp->nbackends; b++) {
			int	slot = master_slot_find(h, cp->backends[b].name);

			if (slot == -1 && (slot = master_slot_alloc(h)) == -1) {
				log_warnx("table: more than %u backends; raise max_backends",
				    h->max_backends);
				rc = -1;
				break;
			}
			master_desc_from_conf(h, &cp->backends[b], ids[p],
			    SHM_F_STATIC, &d);
			shm_desc_read(shm_slot(h, (uint32_t)slot), &old);
			if (old.flags & SHM_F_INUSE) {
				/* the same backend: keep its identity for the prober */
				d.added_ms = old.added_ms;
				d.flags |= old.flags & (SHM_F_DISABLED | SHM_F_DRAINING);
			}
			if (memcmp(&d, &old, sizeof(d)) != 0)
				shm_desc_write(shm_slot(h, (uint32_t)slot), &d);
		}
	}
	shm_gen_bump(h);
	return rc;
}

/* Slot of the backend called name, or -1.  Master only (reads its own writes). */
int
master_slot_find(struct shm_hdr *h, const char *name)
{
	uint32_t	i, n = atomic_load_explicit(&h->nslots, memory_order_relaxed);
	struct shm_desc	d;

	for (i = 0; i < n; i++) {
		shm_desc_read(shm_slot(h, i), &d);
		if ((d.flags & SHM_F_INUSE) && strcmp(d.name, name) == 0)
			return (int)i;
	}
	return -1;
}

/*
 * A free slot for a new backend, or -1 when the table is full.  A slot
 * that is reused starts with fresh prober words: the prober sees a new
 * added_ms and resets them itself (it is their only writer).
 */
int
master_slot_alloc(struct shm_hdr *h)
{
	uint32_t	i, n = atomic_load_explicit(&h->nslots, memory_order_relaxed);
	struct shm_desc	d;

	for (i = 0; i < n; i++) {
		shm_desc_read(shm_slot(h, i), &d);
		if (!(d.flags & SHM_F_INUSE))
			return (int)i;
	}
	if (n >= h->max_backends)
		return -1;
	atomic_store_explicit(&h->nslots, n + 1, memory_order_release);
	return (int)n;
}

/* Free a slot: workers stop picking it at the next generation; in-flight requests finish. */
void
master_slot_free(struct shm_hdr *h, uint32_t slot)
{
	struct shm_desc	d;

	memset(&d, 0, sizeof(d));
	shm_desc_write(shm_slot(h, slot), &d);
}

/* Fill a descriptor from a configured backend of pool id (models interned on the way). */
void
master_desc_from_conf(struct shm_hdr *h, const struct conf_backend *cb,
    uint32_t pool, uint32_t flags, struct shm_desc *d)
{
	int	k;

	memset(d, 0, sizeof(*d));
	strlcpy(d->name, cb->name, sizeof(d->name));
	strlcpy(d->addr, cb->addr.text, sizeof(d->addr));
	memcpy(d->sa, &cb->addr.ss, cb->addr.sslen <= SHM_SA_MAX ?
	    cb->addr.sslen : SHM_SA_MAX);
	d->salen = cb->addr.sslen;
	strlcpy(d->health_path, cb->health_path, sizeof(d->health_path));
	strlcpy(d->region, cb->region, sizeof(d->region));
	d->pool = pool;
	d->weight = (uint32_t)(cb->weight > 0 ? cb->weight : 1);
	d->max_conns = (uint32_t)cb->max_conns;
	d->flags = SHM_F_INUSE | flags | (cb->backup ? SHM_F_BACKUP : 0);
	for (k = 0; k < cb->nmodels && k < SHM_SLOT_MODELS; k++) {
		int id = shm_model_intern(h, cb->models[k]);

		if (id >= 0)
			d->models[d->nmodels++] = (uint32_t)id;
	}
	d->added_ms = shm_now_ms();
}

/* The master's side of the shared table: writing pools and backend descriptors. */
#include <string.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "master/master.h"

/*
 * master_table_load() publishes the pools and backends of cf: pool i of
 * the config is pool i of the table, backends take slots in config order.
 * Slots past the new set are freed.  Returns 0, or -1 if the table is too
 * small (logged).
 */
int
master_table_load(struct shm_hdr *h, const struct conf *cf)
{
	uint32_t	slot = 0, old, i;
	size_t		p, b;
	int		k;

	for (p = 0; p < cf->npools && p < SHM_POOLS_MAX; p++)
		shm_pool_set(h, (uint32_t)p, cf->pools[p].name,
		    cf->pools[p].strategy, cf->pools[p].base_strategy);
	for (p = 0; p < cf->npools; p++) {
		const struct conf_pool *cp = &cf->pools[p];

		for (b = 0; b < cp->nbackends; b++) {
			const struct conf_backend	*cb = &cp->backends[b];
			struct shm_desc			 d;

			if (slot >= h->max_backends) {
				log_warnx("table: more than %u backends; raise max_backends",
				    h->max_backends);
				return -1;
			}
			memset(&d, 0, sizeof(d));
			strlcpy(d.name, cb->name, sizeof(d.name));
			strlcpy(d.addr, cb->addr.text, sizeof(d.addr));
			memcpy(d.sa, &cb->addr.ss, cb->addr.sslen <= SHM_SA_MAX ?
			    cb->addr.sslen : SHM_SA_MAX);
			d.salen = cb->addr.sslen;
			strlcpy(d.health_path, cb->health_path, sizeof(d.health_path));
			strlcpy(d.region, cb->region, sizeof(d.region));
			d.pool = (uint32_t)p;
			d.weight = (uint32_t)(cb->weight > 0 ? cb->weight : 1);
			d.max_conns = (uint32_t)cb->max_conns;
			d.flags = SHM_F_INUSE | SHM_F_STATIC |
			    (cb->backup ? SHM_F_BACKUP : 0);
			for (k = 0; k < cb->nmodels && k < SHM_SLOT_MODELS; k++) {
				int id = shm_model_intern(h, cb->models[k]);

				if (id >= 0)
					d.models[d.nmodels++] = (uint32_t)id;
			}
			d.added_ms = shm_now_ms();
			shm_desc_write(shm_slot(h, slot), &d);
			slot++;
		}
	}
	old = atomic_load_explicit(&h->nslots, memory_order_relaxed);
	for (i = slot; i < old; i++) {
		struct shm_desc	d;

		memset(&d, 0, sizeof(d));
		shm_desc_write(shm_slot(h, i), &d);
	}
	if (slot > old)
		atomic_store_explicit(&h->nslots, slot, memory_order_release);
	shm_gen_bump(h);
	return 0;
}

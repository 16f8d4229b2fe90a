/* What flow control did, read from the table: routerctl show queue and show tenants, their admin API and /metrics. */
#ifndef WORKER_FLOWVIEW_H
#define WORKER_FLOWVIEW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "shm/table.h"

/* A band's priority: band 0 is -8, band SHM_BANDS - 1 is 7. */
#define FLOWVIEW_PRIO(b)	((int)(b) - SHM_BANDS / 2)

/* One pool id's admission queue, summed over every worker's row (plain numbers). */
struct flowview_pool {
	uint64_t	 waiting;			/* queued now */
	uint64_t	 band_waiting[SHM_BANDS];
	uint64_t	 band_admitted[SHM_BANDS];
	uint64_t	 wait_hist[SHM_LAT_BUCKETS];
	uint64_t	 waits, wait_ms, timeouts, rejected;
	uint64_t	 dropped, expired, limited;
};

/*
 * flowview_pool_sum() fills s for pool id from every worker's
 * poolq row.  flowview_band_shown() says whether band b is worth a line:
 * something waits there, or ever left it for a backend, or it is the
 * band of priority 0 (so a pool always has one).  Anyone may call them.
 */
void	 flowview_pool_sum(struct shm_hdr *, uint32_t pool, struct flowview_pool *s);
int	 flowview_band_shown(const struct flowview_pool *, unsigned b);

/* Retries the retry budget allowed and refused, every worker. */
void	 flowview_budget(struct shm_hdr *, uint64_t *retries, uint64_t *refused);

/* A tenant as shown: its label, and the figures of every entry with that label. */
struct flowview_tenant {
	char		 label[SHM_TENANT_LABEL];	/* printable ASCII, NUL-terminated */
	uint64_t	 queued;
	uint64_t	 requests, limited_req, limited_tok, tokens;
	uint64_t	 waits, wait_ms, dropped, last_ms;
};

/*
 * flowview_tenants() copies the table's tenants that have a label,
 * those of one label (two keys cut to the same ends) merged into one,
 * the busiest first (requests, then label).  Returns a malloc'd array
 * of *np entries, or NULL (*np 0) when there are none or no memory.
 */
struct flowview_tenant	*flowview_tenants(struct shm_hdr *, size_t *np);

/*
 * The JSON of routerctl show queue and GET /api/v1/router/queue:
 * {"pools": [{"pool", "waiting", "bands": [{"priority", "waiting",
 * "admitted"}], "waits", "wait_ms_avg", "timeouts", "rejected",
 * "deadline_dropped", "deadline_expired", "ratelimited"}],
 * "retry_budget": {"retries", "refused"}}, the live pools of the table
 * in id order, their bands highest priority first.  And of show tenants
 * and GET /api/v1/router/tenants: {"tenants": [{"tenant", "queued",
 * "requests", "limited_requests", "limited_tokens", "tokens", "waits",
 * "wait_ms_avg", "deadline_dropped", "last_seen"}]} in the order of
 * flowview_tenants().  wait_ms_avg is null before any wait.  For the
 * master and the workers alike; NULL when out of memory.
 */
json_t	*flowview_queue_json(struct shm_hdr *);
json_t	*flowview_tenants_json(struct shm_hdr *);

#endif

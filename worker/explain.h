/* routerctl explain and GET /api/v1/explain: the workers' last routing decisions as JSON. */
#ifndef WORKER_EXPLAIN_H
#define WORKER_EXPLAIN_H

#include <stddef.h>

#include <jansson.h>

#include "shm/table.h"

#define EXPLAIN_DEFAULT	10
#define EXPLAIN_MAX	(SHM_EXPLAIN_LEN * SHM_WORKERS_MAX)	/* every ring, whole */

/*
 * explain_json() returns {"decisions": [...]}: the newest n decisions of
 * this host's workers, newest first, each with its time, request id,
 * pool, model, strategy, reason, pick, shadow pick and candidates (their
 * match and score), names as the table gives them now.  NULL when out of
 * memory.  For the master (routerctl) and the workers (admin API) alike.
 */
json_t	*explain_json(struct shm_hdr *, size_t n);

/* The word for an enum bal_reason ("affinity"), "unknown" past the last. */
const char *explain_reason_name(unsigned);

#endif

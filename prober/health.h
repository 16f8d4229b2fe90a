/* Staging of check results into committed health, and check latency statistics: pure, no I/O. */
#ifndef PROBER_HEALTH_H
#define PROBER_HEALTH_H

#include <stdint.h>

/*
 * Stage, then commit: a backend's checks are counted here, and only a
 * change of `state` is published.  state is an enum shm_health.
 */
struct health_stage {
	uint32_t	 state;
	uint32_t	 fails;		/* consecutive failed checks */
	uint32_t	 oks;		/* consecutive good checks */
};

/*
 * health_result() counts one check (ok != 0: good) and returns 1 when the
 * committed state changed: `fall` failures in a row mark a backend down,
 * `rise` successes in a row mark it up.  From unknown (nothing known yet)
 * one success is enough to say up, while down still takes `fall`
 * failures, so a starting router neither trusts nor condemns on one check.
 */
int	 health_result(struct health_stage *, int ok, uint32_t fall, uint32_t rise);

#define LAT_WINDOW	64	/* checks the percentiles look back over */

struct lat_window {
	uint32_t	 v[LAT_WINDOW];	/* microseconds, a ring */
	uint32_t	 n;		/* samples held, <= LAT_WINDOW */
	uint32_t	 pos;		/* where the next one goes */
	uint32_t	 ewma;		/* microseconds; 0 until the first sample */
};

/*
 * lat_add() records one latency: into the ring, and into the EWMA with
 * alpha 1/5 (the first sample sets it), so a few slow checks show within
 * a few intervals while one outlier moves it by a fifth only.
 */
void	 lat_add(struct lat_window *, uint32_t us);

/* Nearest-rank percentile (1..100) of the window; 0 when it is empty. */
uint32_t lat_pct(const struct lat_window *, unsigned pct);

#endif

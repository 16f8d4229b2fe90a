/* Rise/fall staging and latency statistics of prober/health.h. */
#include <stdlib.h>
#include <string.h>

#include "prober/health.h"
#include "shm/table-t.h"

int
health_result(struct health_stage *hs, int ok, uint32_t fall, uint32_t rise)
{
	uint32_t	old = hs->state;

	if (ok) {
		hs->fails = 0;
		if (hs->oks < UINT32_MAX)
			hs->oks++;
		if (hs->state == SHM_HEALTH_UNKNOWN ||
		    (hs->state == SHM_HEALTH_DOWN && hs->oks >= rise))
			hs->state = SHM_HEALTH_UP;
	} else {
		hs->oks = 0;
		if (hs->fails < UINT32_MAX)
			hs->fails++;
		if (hs->state != SHM_HEALTH_DOWN && hs->fails >= fall)
			hs->state = SHM_HEALTH_DOWN;
	}
	return hs->state != old;
}

void
lat_add(struct lat_window *w, uint32_t us)
{
	w->v[w->pos] = us;
	w->pos = (w->pos + 1) % LAT_WINDOW;
	if (w->n < LAT_WINDOW)
		w->n++;
	if (w->ewma == 0)
		w->ewma = us ? us : 1;
	else
		w->ewma = (uint32_t)(((uint64_t)w->ewma * 4 + us) / 5);
}

static int
lat_cmp(const void *a, const void *b)
{
	uint32_t	x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

uint32_t
lat_pct(const struct lat_window *w, unsigned pct)
{
	uint32_t	s[LAT_WINDOW];
	uint32_t	rank;

	if (w->n == 0)
		return 0;
	if (pct > 100)
		pct = 100;
	memcpy(s, w->v, w->n * sizeof(s[0]));
	qsort(s, w->n, sizeof(s[0]), lat_cmp);
	/* nearest rank: the smallest value with pct % of the samples at or below it */
	rank = (pct * w->n + 99) / 100;
	if (rank == 0)
		rank = 1;
	return s[rank - 1];
}

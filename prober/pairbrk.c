/* The pair breaker of prober/pairbrk.h. */
#include <stddef.h>

#include "prober/pairbrk.h"

void
pairbrk_init(struct pairbrk *b, const struct pairbrk_in *in, int isopen)
{
	b->state = isopen ? SHM_BREAKER_OPEN : SHM_BREAKER_CLOSED;
	b->since = in->now;
	b->base = in->consec;
	b->done0 = in->done;
	b->fails0 = in->fails;
}

int
pairbrk_step(struct pairbrk *b, const struct breaker_conf *conf,
    const struct pairbrk_in *in, const char **why)
{
	const char	*dummy;
	uint64_t	 dd, df;

	if (why == NULL)
		why = &dummy;
	switch (b->state) {
	case SHM_BREAKER_CLOSED:
		if (in->consec < b->base)
			b->base = in->consec;
		if (in->consec - b->base < conf->threshold)
			return 0;
		*why = "consecutive failed requests";
		break;
	case SHM_BREAKER_OPEN:
		if (in->now - b->since < conf->timeout_ms)
			return 0;
		b->state = SHM_BREAKER_HALF_OPEN;
		b->since = in->now;
		b->done0 = in->done;
		b->fails0 = in->fails;
		*why = "open long enough";
		return 1;
	default:
		/* totals only grow; a stripe that was reset reads as no news */
		dd = in->done > b->done0 ? in->done - b->done0 : 0;
		df = in->fails > b->fails0 ? in->fails - b->fails0 : 0;
		if (dd > df) {
			b->state = SHM_BREAKER_CLOSED;
			b->since = in->now;
			b->base = in->consec;
			*why = "a trial succeeded";
			return 1;
		}
		if (df == 0)
			return 0;
		*why = "a trial failed";
		break;
	}
	b->state = SHM_BREAKER_OPEN;
	b->since = in->now;
	return 1;
}

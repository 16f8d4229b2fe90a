/* Unit tests of the prober's pure parts (prober/health.c): rise/fall staging and latency statistics. */
#include <string.h>

#include <criterion/criterion.h>

#include "prober/health.h"
#include "shm/table-t.h"

/* Feed a string of results ('+' good, '-' bad); returns how many committed a change. */
static int
feed(struct health_stage *hs, const char *r, uint32_t fall, uint32_t rise)
{
	int	n = 0;

	for (; *r; r++)
		n += health_result(hs, *r == '+', fall, rise);
	return n;
}

Test(health, unknown_up_on_one_success)
{
	struct health_stage	hs = { 0 };

	cr_assert(health_result(&hs, 1, 3, 2));
	cr_assert_eq(hs.state, SHM_HEALTH_UP);
	cr_assert_eq(hs.oks, 1);
}

Test(health, unknown_down_after_fall)
{
	struct health_stage	hs = { 0 };

	cr_assert_eq(feed(&hs, "--", 3, 2), 0);
	cr_assert_eq(hs.state, SHM_HEALTH_UNKNOWN);
	cr_assert(health_result(&hs, 0, 3, 2));
	cr_assert_eq(hs.state, SHM_HEALTH_DOWN);
	cr_assert_eq(hs.fails, 3);
}

Test(health, up_to_down_needs_fall_in_a_row)
{
	struct health_stage	hs = { 0 };

	feed(&hs, "+", 3, 2);
	cr_assert_eq(feed(&hs, "--+--+", 3, 2), 0);
	cr_assert_eq(hs.state, SHM_HEALTH_UP);
	cr_assert_eq(feed(&hs, "---", 3, 2), 1);
	cr_assert_eq(hs.state, SHM_HEALTH_DOWN);
	/* further failures change nothing, but keep counting */
	cr_assert_eq(feed(&hs, "--", 3, 2), 0);
	cr_assert_eq(hs.fails, 5);
}

Test(health, down_to_up_needs_rise_in_a_row)
{
	struct health_stage	hs = { 0 };

	feed(&hs, "---", 3, 2);
	cr_assert_eq(feed(&hs, "+-+-", 3, 2), 0);
	cr_assert_eq(hs.state, SHM_HEALTH_DOWN);
	cr_assert_not(health_result(&hs, 1, 3, 2));
	cr_assert(health_result(&hs, 1, 3, 2));
	cr_assert_eq(hs.state, SHM_HEALTH_UP);
	cr_assert_eq(hs.oks, 2);
	cr_assert_eq(hs.fails, 0);
}

Test(health, fall_and_rise_of_one)
{
	struct health_stage	hs = { 0 };

	cr_assert_eq(feed(&hs, "-+-+", 1, 1), 4);
	cr_assert_eq(hs.state, SHM_HEALTH_UP);
}

Test(latency, empty)
{
	struct lat_window	w = { 0 };

	cr_assert_eq(lat_pct(&w, 50), 0);
	cr_assert_eq(w.ewma, 0);
}

Test(latency, ewma)
{
	struct lat_window	w = { 0 };

	lat_add(&w, 1000);
	cr_assert_eq(w.ewma, 1000);
	lat_add(&w, 2000);
	cr_assert_eq(w.ewma, 1200);		/* a fifth of the way */
	lat_add(&w, 2000);
	cr_assert_eq(w.ewma, 1360);
}

Test(latency, percentiles_nearest_rank)
{
	struct lat_window	w = { 0 };
	uint32_t		i;

	for (i = 100; i >= 1; i--)
		if (i <= 64)
			lat_add(&w, i);
	/* 64 samples 1..64 */
	cr_assert_eq(w.n, 64);
	cr_assert_eq(lat_pct(&w, 50), 32);
	cr_assert_eq(lat_pct(&w, 99), 64);
	cr_assert_eq(lat_pct(&w, 100), 64);
	cr_assert_eq(lat_pct(&w, 1), 1);
}

Test(latency, few_samples)
{
	struct lat_window	w = { 0 };

	lat_add(&w, 30);
	lat_add(&w, 10);
	lat_add(&w, 20);
	cr_assert_eq(lat_pct(&w, 50), 20);
	cr_assert_eq(lat_pct(&w, 99), 30);
}

Test(latency, window_slides)
{
	struct lat_window	w = { 0 };
	int			i;

	for (i = 0; i < 64; i++)
		lat_add(&w, 1000000);
	for (i = 0; i < 64; i++)
		lat_add(&w, 10);
	/* the slow ones have left the window */
	cr_assert_eq(lat_pct(&w, 99), 10);
	cr_assert_eq(w.n, LAT_WINDOW);
	lat_add(&w, 500);
	cr_assert_eq(lat_pct(&w, 99), 500);
	cr_assert_eq(lat_pct(&w, 50), 10);
}

/* Unit tests of worker/worker.c: the block free lists stay under their caps. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "worker/worker.h"

static size_t
list_len(char *head)
{
	size_t	n = 0;

	for (; head != NULL && n < 100000; head = *(char **)head)
		n++;
	return n;
}

/* A burst of 2,000 connections gives its blocks back: the lists keep a bounded few. */
Test(worker, free_lists_are_capped)
{
	struct worker	 w;
	char		*b[2000];
	size_t		 i;

	memset(&w, 0, sizeof(w));
	w.fwdsz = 64 * 1024 + 1024;
	for (i = 0; i < 2000; i++) {
		b[i] = worker_buf_get(&w);
		cr_assert_not_null(b[i]);
	}
	for (i = 0; i < 2000; i++)
		worker_buf_put(&w, b[i]);
	cr_assert_leq(list_len(w.freebufs), 256);
	cr_assert_eq(list_len(w.freebufs), w.nfreebufs);

	for (i = 0; i < 2000; i++) {
		b[i] = worker_fwd_get(&w);
		cr_assert_not_null(b[i]);
	}
	for (i = 0; i < 2000; i++)
		worker_fwd_put(&w, b[i]);
	cr_assert_leq(list_len(w.freefwd), 64, "%zu fwd blocks kept", list_len(w.freefwd));
	cr_assert_leq(list_len(w.freefwd) * w.fwdsz, 16 * 1024 * 1024);
	cr_assert_gt(list_len(w.freefwd), 0, "the list still reuses blocks");

	/* a big retries.buffer keeps fewer blocks: the cap is in bytes too */
	while ((b[0] = w.freefwd) != NULL) {
		w.freefwd = *(char **)b[0];
		free(b[0]);
	}
	w.nfreefwd = 0;
	w.fwdsz = 4 * 1024 * 1024 + 1024;
	for (i = 0; i < 10; i++)
		b[i] = worker_fwd_get(&w);
	for (i = 0; i < 10; i++)
		worker_fwd_put(&w, b[i]);
	cr_assert_leq(list_len(w.freefwd), 3, "%zu 4 MiB blocks kept", list_len(w.freefwd));
}

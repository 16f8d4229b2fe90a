/* Unit tests for worker/retry.c: which failed attempts may be replayed elsewhere. */
#include <criterion/criterion.h>

#include "worker/retry.h"

static struct retry_facts
facts(enum up_err e, int idem)
{
	struct retry_facts f = { .err = e, .idempotent = idem, .held = 1,
	    .answered = 0, .complete = 1 };

	return f;
}

Test(retry, connect_failure_replays_any_method)
{
	struct retry_facts f = facts(UPE_CONNECT, 0);

	cr_assert(retry_replayable(&f), "a POST that never reached a backend moves on");
	f.idempotent = 1;
	cr_assert(retry_replayable(&f));
}

Test(retry, post_that_reached_a_backend_is_never_replayed)
{
	enum up_err e[] = { UPE_SEND, UPE_EMPTY, UPE_TIMEOUT, UPE_STATUS, UPE_BAD,
	    UPE_TRUNCATED };
	size_t i;

	for (i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		struct retry_facts f = facts(e[i], 0);

		cr_assert_not(retry_replayable(&f), "err %d replayed a POST", (int)e[i]);
	}
}

Test(retry, idempotent_without_answer_replays)
{
	enum up_err e[] = { UPE_SEND, UPE_EMPTY, UPE_TIMEOUT, UPE_STATUS };
	size_t i;

	for (i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		struct retry_facts f = facts(e[i], 1);

		cr_assert(retry_replayable(&f), "err %d not replayed for GET", (int)e[i]);
	}
}

Test(retry, broken_or_cut_responses_are_never_replayed)
{
	struct retry_facts f = facts(UPE_BAD, 1);

	cr_assert_not(retry_replayable(&f));
	f.err = UPE_TRUNCATED;
	cr_assert_not(retry_replayable(&f));
}

Test(retry, nothing_replays_once_the_client_got_bytes)
{
	struct retry_facts f = facts(UPE_CONNECT, 1);

	f.answered = 1;
	cr_assert_not(retry_replayable(&f), "a request is never answered twice");
}

Test(retry, nothing_replays_without_the_whole_body)
{
	struct retry_facts f = facts(UPE_CONNECT, 1);

	f.held = 0;
	cr_assert_not(retry_replayable(&f), "never half-sent to two backends");
}

Test(retry, timeout_while_the_client_sends_is_not_replayed)
{
	struct retry_facts f = facts(UPE_TIMEOUT, 1);

	f.complete = 0;
	cr_assert_not(retry_replayable(&f));
}

Test(retry, statuses_follow_the_bitmap_and_the_budget)
{
	uint8_t			 bm[600 / 8] = { 0 };
	struct retry_facts	 f = facts(UPE_STATUS, 1);

	bm[503 / 8] |= 1u << (503 % 8);
	cr_assert(retry_status_wanted(bm, 503, &f, 1, 3));
	cr_assert_not(retry_status_wanted(bm, 502, &f, 1, 3), "502 is not in the list");
	cr_assert_not(retry_status_wanted(bm, 503, &f, 4, 3), "out of retries");
	cr_assert_not(retry_status_wanted(bm, 42, &f, 1, 3));
	f.idempotent = 0;
	cr_assert_not(retry_status_wanted(bm, 503, &f, 1, 3), "a POST's 503 is forwarded");
	f.idempotent = 1;
	f.complete = 0;
	cr_assert_not(retry_status_wanted(bm, 503, &f, 1, 3));
}

Test(retry, held_llm_stream_failures)
{
	uint8_t			 bm[600 / 8] = { 0 };
	struct retry_facts	 f = facts(UPE_HELD, 1);
	int			 s;

	cr_assert(retry_replayable(&f), "broke after a held head: nothing shown");
	f.answered = 1;
	cr_assert_not(retry_replayable(&f), "the head went out: too late");
	f = facts(UPE_HELD, 0);
	cr_assert_not(retry_replayable(&f), "not replay-safe: stays");
	/* an LLM request of a holding pool: any 5xx is retried, not 4xx */
	f = facts(UPE_STATUS, 1);
	f.llm = 1;
	for (s = 100; s < 600; s++)
		cr_assert(retry_status_wanted(bm, s, &f, 1, 3) == (s >= 500),
		    "status %d", s);
	cr_assert_not(retry_status_wanted(bm, 500, &f, 4, 3), "out of retries");
	f.answered = 1;
	cr_assert_not(retry_status_wanted(bm, 500, &f, 1, 3), "shown already");
	f = facts(UPE_STATUS, 1);
	cr_assert_not(retry_status_wanted(bm, 500, &f, 1, 3), "not llm: on_status only");
}

/* Unit tests of prober/signals.c (Prometheus text, model lists) and prober/pairbrk.c (pair breakers). */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "prober/pairbrk.h"
#include "prober/signals.h"
#include "shm/table.h"

static int
prom(const char *text, struct signals_load *ld, const char **why)
{
	memset(ld, 0xff, sizeof(*ld));
	return signals_prom_parse(text, strlen(text), ld, why);
}

#define VLLM_OK \
	"# HELP vllm:num_requests_running Number of requests in model execution batches.\n" \
	"# TYPE vllm:num_requests_running gauge\n" \
	"vllm:num_requests_running{model_name=\"a\"} 2.0\n" \
	"vllm:num_requests_running{model_name=\"b\"} 3\n" \
	"vllm:num_requests_waiting{model_name=\"a\"} 4\n" \
	"vllm:num_requests_waiting{model_name=\"b\"} 1.0\n" \
	"vllm:kv_cache_usage_perc{model_name=\"a\"} 0.25\n" \
	"vllm:kv_cache_usage_perc{model_name=\"b\"} 0.5\n"

Test(prom, vllm_text_sums_counts_and_takes_the_largest_kv)
{
	struct signals_load	ld;
	const char		*why;

	cr_assert_eq(prom(VLLM_OK, &ld, &why), 0, "%s", why);
	cr_assert_eq(ld.running, 5);
	cr_assert_eq(ld.waiting, 5);
	cr_assert_eq(ld.kv_ppm, 500000);
}

Test(prom, labels_with_escapes_braces_and_spaces)
{
	struct signals_load	ld;
	const char		*why;

	cr_assert_eq(prom(
	    "  vllm:num_requests_running { model_name = \"a}\\\"b\\\\\" , x=\"\" , }\t7\n"
	    "vllm:num_requests_waiting 0 1712345678000\r\n"
	    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"q\"}   1e-1  \n",
	    &ld, &why), 0, "%s", why);
	cr_assert_eq(ld.running, 7);
	cr_assert_eq(ld.waiting, 0);
	cr_assert_eq(ld.kv_ppm, 100000);
}

Test(prom, other_families_never_fail_the_read)
{
	struct signals_load	ld;
	const char		*why;

	cr_assert_eq(prom(
	    "garbage line {{{\n"
	    "vllm:num_requests_waiting_total{x=\"1\"} NaN\n"
	    "vllm:num_requests_running_bucket{le=\"+Inf\"} +Inf\n"
	    "vllm:num_requests_runningx 9\n"
	    "other{a=\"b\" 3\n"
	    "\n#\n# comment vllm:num_requests_waiting 99\n"
	    VLLM_OK, &ld, &why), 0, "%s", why);
	cr_assert_eq(ld.waiting, 5);
	cr_assert_eq(ld.running, 5);
}

Test(prom, last_line_without_newline)
{
	struct signals_load	ld;

	cr_assert_eq(prom("vllm:num_requests_waiting 1\nvllm:num_requests_running 2\n"
	    "vllm:kv_cache_usage_perc 0.75", &ld, NULL), 0);
	cr_assert_eq(ld.kv_ppm, 750000);
}

Test(prom, old_gpu_name_stands_in_for_kv)
{
	struct signals_load	ld;

	cr_assert_eq(prom("vllm:num_requests_waiting 1\nvllm:num_requests_running 2\n"
	    "vllm:gpu_cache_usage_perc 0.5\n", &ld, NULL), 0);
	cr_assert_eq(ld.kv_ppm, 500000);
	/* with both, the new name wins */
	cr_assert_eq(prom("vllm:num_requests_waiting 1\nvllm:num_requests_running 2\n"
	    "vllm:gpu_cache_usage_perc 0.5\nvllm:kv_cache_usage_perc 0.125\n", &ld, NULL), 0);
	cr_assert_eq(ld.kv_ppm, 125000);
}

Test(prom, kv_over_one_is_clamped_counts_saturate)
{
	struct signals_load	ld;

	cr_assert_eq(prom("vllm:num_requests_waiting 1e12\nvllm:num_requests_running 2\n"
	    "vllm:kv_cache_usage_perc 1.5\n", &ld, NULL), 0);
	cr_assert_eq(ld.kv_ppm, 1000000);
	cr_assert_eq(ld.waiting, UINT32_MAX);
}

Test(prom, missing_names_fail)
{
	struct signals_load	ld;
	const char		*why;

	cr_assert_eq(prom("", &ld, &why), -1);
	cr_assert_str_eq(why, "no vllm:num_requests_waiting");
	cr_assert_eq(prom("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0\n",
	    &ld, &why), -1);
	cr_assert_str_eq(why, "no vllm:num_requests_running");
	cr_assert_eq(prom("vllm:num_requests_waiting 1\nvllm:num_requests_running 0\n",
	    &ld, &why), -1);
	cr_assert_str_eq(why, "no vllm:kv_cache_usage_perc");
	/* a failed parse leaves out as it was */
	cr_assert_eq(ld.waiting, UINT32_MAX);
}

Test(prom, bad_samples_of_our_names_fail)
{
	static const char *const bad[] = {
		"vllm:num_requests_waiting NaN\n",
		"vllm:num_requests_waiting +Inf\n",
		"vllm:num_requests_waiting -Inf\n",
		"vllm:num_requests_waiting -1\n",
		"vllm:num_requests_waiting\n",
		"vllm:num_requests_waiting \n",
		"vllm:num_requests_waiting 1x\n",
		"vllm:num_requests_waiting 1 2 3\n",
		"vllm:num_requests_waiting 1 12ab\n",
		"vllm:num_requests_waiting{model_name=\"a\"\n",
		"vllm:num_requests_waiting{model_name=\"a} 1\n",
		"vllm:num_requests_waiting{model_name=a} 1\n",
		"vllm:num_requests_waiting{=\"a\"} 1\n",
		"vllm:num_requests_waiting{a=\"1\"}1\n",
		"vllm:num_requests_waiting{a=\"1\" b=\"2\"} 1\n",
		"vllm:num_requests_waiting} 1\n",
		"vllm:num_requests_waiting 0x\n",
		"vllm:num_requests_waiting 11111111111111111111111111111111111111111111111111111111111111111111\n",
	};
	struct signals_load	ld;
	const char		*why;
	char			 text[512];
	size_t			 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "vllm:num_requests_running 1\n"
		    "vllm:kv_cache_usage_perc 0.1\n%s", bad[i]);
		cr_assert_eq(prom(text, &ld, &why), -1, "accepted: %s", bad[i]);
		cr_assert_str_eq(why, "bad vllm:num_requests_waiting sample", "%s", bad[i]);
	}
	cr_assert_eq(prom("vllm:num_requests_running 1\nvllm:num_requests_waiting 1\n"
	    "vllm:kv_cache_usage_perc NaN\n", &ld, &why), -1);
	cr_assert_str_eq(why, "bad KV-cache usage sample");
}

Test(prom, nul_bytes_and_a_cut_body)
{
	static const char text[] = "vllm:num_requests_waiting 1\n\0\0garbage\n"
	    "vllm:num_requests_running 2\nvllm:kv_cache_usage_perc 0.5\n";
	struct signals_load	 ld;
	size_t			 n;

	cr_assert_eq(signals_prom_parse(text, sizeof(text) - 1, &ld, NULL), 0);
	cr_assert_eq(ld.running, 2);
	/* every prefix of it parses or fails cleanly; the cut value "0." still reads */
	for (n = 0; n < sizeof(text) - 1; n++)
		(void)signals_prom_parse(text, n, &ld, NULL);
}

static const char model_names[3][SHM_NAME_MAX] = { "m1", "m2", "m3" };

Test(models, bits_for_the_models_not_listed)
{
	const char	*j = "{\"object\":\"list\",\"data\":[{\"id\":\"m2\"},{\"id\":\"x\"},"
	    "7,{\"id\":3},{\"nope\":1},{\"id\":\"m3\",\"object\":\"model\"}]}";
	uint32_t	 down = 0xdead;

	cr_assert_eq(signals_models_parse(j, strlen(j), model_names, 3, &down), 0);
	cr_assert_eq(down, 0x1);
	j = "{\"data\":[]}";
	cr_assert_eq(signals_models_parse(j, strlen(j), model_names, 3, &down), 0);
	cr_assert_eq(down, 0x7);
	cr_assert_eq(signals_models_parse(j, strlen(j), model_names, 0, &down), 0);
	cr_assert_eq(down, 0);
}

Test(models, not_a_list_leaves_the_bits)
{
	static const char *const bad[] = {
		"", "{", "[]", "{\"data\":{}}", "{\"object\":\"list\"}", "null",
		"{\"data\":[{\"id\":\"m1\"}]} trailing", "{\"data\":\"m1\"}",
	};
	uint32_t	down = 0x5;
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(signals_models_parse(bad[i], strlen(bad[i]), model_names,
		    3, &down), -1, "accepted: %s", bad[i]);
		cr_assert_eq(down, 0x5);
	}
}

static const struct breaker_conf pb_conf = { .threshold = 3, .timeout_ms = 1000 };

Test(pairbrk, opens_on_a_run_half_opens_after_timeout_closes_on_success)
{
	struct pairbrk		b;
	struct pairbrk_in	in = { .now = 100 };
	const char		*why;

	pairbrk_init(&b, &in, 0);
	cr_assert_eq(b.state, SHM_BREAKER_CLOSED);
	in.fails = in.consec = 2;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, &why), 0);
	in.fails = in.consec = 3;
	in.now = 200;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, &why), 1);
	cr_assert_eq(b.state, SHM_BREAKER_OPEN);
	in.now = 1199;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, &why), 0);
	in.now = 1200;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, &why), 1);
	cr_assert_eq(b.state, SHM_BREAKER_HALF_OPEN);
	/* no news: stays half-open */
	in.now = 5000;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, &why), 0);
	in.done = 1;
	in.consec = 0;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, &why), 1);
	cr_assert_eq(b.state, SHM_BREAKER_CLOSED);
	cr_assert_str_eq(why, "a trial succeeded");
}

Test(pairbrk, a_failed_trial_reopens_a_5xx_too)
{
	struct pairbrk		b;
	struct pairbrk_in	in = { .now = 0, .fails = 3, .consec = 3 };

	pairbrk_init(&b, &in, 1);
	cr_assert_eq(b.state, SHM_BREAKER_OPEN);
	in.now = 1000;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 1);
	cr_assert_eq(b.state, SHM_BREAKER_HALF_OPEN);
	/* a 5xx: a whole response, and a failure */
	in.done++;
	in.fails++;
	in.consec++;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 1);
	cr_assert_eq(b.state, SHM_BREAKER_OPEN);
	cr_assert_eq(b.since, 1000);
	/* a failure and two successes in one poll: some attempt succeeded */
	in.now = 2000;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 1);
	in.fails++;
	in.done += 2;
	in.consec = 0;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 1);
	cr_assert_eq(b.state, SHM_BREAKER_CLOSED);
}

Test(pairbrk, a_stale_run_is_not_held_twice)
{
	struct pairbrk		b;
	struct pairbrk_in	in = { .now = 0, .consec = 10, .fails = 10 };

	/* another worker's run of 10 was there when the pair closed */
	pairbrk_init(&b, &in, 0);
	in.consec = 12;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 0);
	/* that worker succeeds: its run is forgotten, the base follows */
	in.consec = 2;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 0);
	cr_assert_eq(b.base, 2);
	in.consec = 5;
	cr_assert_eq(pairbrk_step(&b, &pb_conf, &in, NULL), 1);
	cr_assert_eq(b.state, SHM_BREAKER_OPEN);
}

Test(shm, metrics_fresh_for_three_intervals)
{
	static struct shm_slot	s;

	cr_assert_eq(shm_metrics_fresh(&s, 1000, 100), 0, "never read");
	atomic_store(&s.m_ms, 1000);
	cr_assert_eq(shm_metrics_fresh(&s, 1000, 100), 1);
	cr_assert_eq(shm_metrics_fresh(&s, 1300, 100), 1);
	cr_assert_eq(shm_metrics_fresh(&s, 1301, 100), 0);
	cr_assert_eq(shm_metrics_fresh(&s, 900, 100), 1, "a clock behind the prober's");
	atomic_store(&s.models_down, 0x1);
	atomic_store(&s.models_open, 0x4);
	cr_assert_eq(shm_models_out(&s), 0x5);
}

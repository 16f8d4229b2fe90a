/* Backend load signals: pure parsers of a backend's Prometheus /metrics and its /v1/models, no I/O. */
#ifndef PROBER_SIGNALS_H
#define PROBER_SIGNALS_H

#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"

/* A backend's answer to either read is refused beyond this size. */
#define SIGNALS_BODY_MAX	(256 * 1024)

/* The figures one /metrics read gives, as the table keeps them. */
struct signals_load {
	uint32_t	 waiting;	/* vllm:num_requests_waiting, summed over label sets */
	uint32_t	 running;	/* vllm:num_requests_running, summed */
	uint32_t	 kv_ppm;	/* vllm:kv_cache_usage_perc, the largest, 0..1000000 */
};

/*
 * signals_prom_parse() reads the Prometheus text exposition (format
 * 0.0.4) in buf[0..len) for vLLM's three load names.  Samples of a name
 * may carry labels ({model_name="..."}): the counts are summed over
 * them, the KV-cache use is the largest.  vllm:gpu_cache_usage_perc
 * (vLLM before 0.10) stands in for vllm:kv_cache_usage_perc when that is
 * absent.  Lines of other names are skipped unread, so a backend's other
 * families cannot fail the read; a sample of one of ours that does not
 * parse, or whose value is NaN, infinite or negative, does: figures we
 * cannot read whole are not advice.  Returns 0 with out filled when all
 * three were found, -1 otherwise (why says which, in a short phrase).
 */
int	 signals_prom_parse(const char *buf, size_t len, struct signals_load *out,
	    const char **why);

/*
 * signals_models_parse() reads an OpenAI model list ({"data": [{"id":
 * "..."}, ...]}) and sets bit i of *down for each names[i] (i < n <=
 * SHM_SLOT_MODELS) the list does not hold.  Entries that are not objects
 * with a string "id" are skipped.  Returns 0, or -1 (and *down
 * untouched) when the text is not such a list.
 */
int	 signals_models_parse(const char *buf, size_t len,
	    const char (*names)[SHM_NAME_MAX], size_t n, uint32_t *down);

#endif

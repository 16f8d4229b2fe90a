/* libFuzzer harness: prober/signals.c's Prometheus text parser (and its model list reader) on any bytes. */

/*
 * Whatever the input: no crash, no read past it (ASan), figures in
 * range when the read is good, and the same answer with a comment line
 * put in front (a line the parser must skip cannot change what it reads).
 * The same bytes also go through the /v1/models reader, which must leave
 * the bits alone when it refuses the text and set none past the names.
 */
#include <stdlib.h>
#include <string.h>

#include "prober/signals.h"
#include "tests/fuzz/common.h"

static const char fuzz_names[3][SHM_NAME_MAX] = { "m1", "sim-model", "" };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char	 pre[] = "# HELP vllm:num_requests_waiting x\n";
	struct signals_load	 a, b;
	const char		*why;
	char			*buf;
	uint32_t		 down = 0xabcd;
	int			 ra, rb;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ra = signals_prom_parse((const char *)data, size, &a, &why);
	if (why == NULL || (ra != 0 && ra != -1))
		abort();
	if (ra == 0 && a.kv_ppm > 1000000)
		abort();
	if ((buf = malloc(sizeof(pre) - 1 + size)) == NULL)
		return 0;
	memcpy(buf, pre, sizeof(pre) - 1);
	memcpy(buf + sizeof(pre) - 1, data, size);
	rb = signals_prom_parse(buf, sizeof(pre) - 1 + size, &b, NULL);
	free(buf);
	if (ra != rb || (ra == 0 && memcmp(&a, &b, sizeof(a)) != 0))
		abort();

	if (signals_models_parse((const char *)data, size, fuzz_names, 3, &down) == -1) {
		if (down != 0xabcd)
			abort();
	} else if (down & ~0x7u)
		abort();
	return 0;
}

/* libFuzzer harness: the syncer's messages as the master reads them (registry_msg()), on a fresh table each input. */

/*
 * The syncer is our own process, but the master must still refuse what
 * does not parse rather than trust it (a syncer with a bug, a version
 * skew).  The input is a run of messages, each a 2-byte little-endian
 * length and that many bytes.  When the first byte is odd the harness
 * writes each header's len itself, so the fuzzer reaches past that check.
 */
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"
#include "shm/table.h"
#include "syncer/syncer.h"
#include "tests/fuzz/common.h"

static const char fuzz_regmsg_yaml[] =
    "listen:\n  - address: 127.0.0.1:1\nmax_backends: 32\n"
    "registry:\n  url: http://127.0.0.1:1\n  pool: llm\n  grace: 0\n"
    "pools:\n  llm:\n    strategy: model\n"
    "  other:\n    backends:\n      - { name: cfg1, address: 127.0.0.1:9 }\n";

static struct master		 M;
static _Alignas(8) uint8_t	 fuzz_msg[SYNCER_MSG_MAX];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int			 init;
	struct registry_stats		 rs;
	struct syncer_msg_hdr		*h = (struct syncer_msg_hdr *)fuzz_msg;
	size_t				 n;
	int				 fix;

	if (!init) {
		int nerr;

		log_init(1, 0);
		if ((M.conf = conf_load(fuzz_file(fuzz_regmsg_yaml,
		    strlen(fuzz_regmsg_yaml)), NULL, 0, stderr, &nerr)) == NULL ||
		    ev_init(&M.loop, 8) == -1)
			abort();
		init = 1;
	}
	if (size < 1)
		return 0;
	fix = data[0] & 1;
	data++, size--;
	if ((M.shm = shm_create(32, 2, NULL)) == NULL ||
	    master_table_load(M.shm, M.conf, 1, 1) == -1)
		abort();
	registry_reset();
	while (size >= 2) {
		n = (size_t)data[0] | (size_t)data[1] << 8;
		data += 2, size -= 2;
		if (n > size)
			n = size;
		/* the socket hands over whole messages in an aligned buffer */
		memcpy(fuzz_msg, data, n);
		if (fix && n >= sizeof(*h))
			h->len = (uint32_t)n;
		(void)registry_msg(&M, fuzz_msg, n);
		data += n, size -= n;
	}
	registry_stats(&M, &rs);
	if (rs.backends > 32 || rs.in_grace > rs.backends)
		abort();
	registry_reset();
	shm_destroy(M.shm);
	M.shm = NULL;
	return 0;
}

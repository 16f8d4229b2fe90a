/* libFuzzer harness: the control socket's input (frames, requests, command handlers) without the socket. */

/*
 * The bytes are a stream of frames (or, when the first byte is odd, one
 * payload that the harness frames): each goes through
 * ctlproto_frame_parse() and ctlproto_request_parse(), and a request that
 * decodes runs its real handler on a small real master (config, table),
 * whose reply must frame.  Reload, stop and log reopen are left out: they
 * fork, signal or end the process, which is not parsing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "lib/ctlproto.h"
#include "lib/log.h"
#include "master/control.h"
#include "master/master.h"
#include "shm/table.h"
#include "tests/fuzz/common.h"

static const char fuzz_control_yaml[] =
    "listen:\n  - address: 127.0.0.1:1\nmax_backends: 16\n"
    "admin:\n  token: secret\n"
    "pools:\n"
    "  llm:\n    strategy: model\n    backends:\n"
    "      - { name: gpu1, address: 127.0.0.1:9001, models: [llama, qwen] }\n"
    "      - { name: gpu2, address: 127.0.0.1:9002, weight: 5, region: nyc1 }\n"
    "  web:\n    strategy: least_connections\n    backends:\n"
    "      - { name: web1, address: 127.0.0.1:9003, backup: true }\n"
    "routes:\n  - { prefix: /v1/, pool: llm }\n  - { prefix: /, pool: web }\n";

static struct master	 M;
static uint8_t		 fuzz_buf[CTLPROTO_HDR + CTLPROTO_REQ_MAX];

/* One request payload, as control_request() takes it. */
static void
fuzz_control_request(const char *p, size_t n)
{
	struct ctlproto_req	 rq;
	json_t			*data, *reply;
	char			 msg[512], err[8192], *frame;
	size_t			 flen, plen;
	int			 fatal;

	if (ctlproto_request_parse(p, n, &rq, msg, sizeof(msg), &fatal) == -1) {
		if (msg[0] == '\0')
			abort();	/* the reply must say why */
		return;
	}
	if (rq.cmd == NULL || rq.nw < rq.cmd->nwords ||
	    rq.nw - rq.cmd->nwords < rq.cmd->minargs ||
	    rq.nw - rq.cmd->nwords > rq.cmd->maxargs)
		abort();
	switch (rq.cmd->id) {
	case CTL_RELOAD:
	case CTL_STOP:
	case CTL_LOG_REOPEN:
		ctlproto_request_free(&rq);
		return;
	default:
		break;
	}
	err[0] = '\0';
	data = control_handlers[rq.cmd->id](&M, rq.argv + rq.cmd->nwords,
	    rq.nw - rq.cmd->nwords, rq.json, err, sizeof(err));
	if (data == NULL)
		reply = json_pack("{s:b, s:s}", "ok", 0, "error", err[0] ? err : "failed");
	else
		reply = json_pack("{s:b, s:o}", "ok", 1, "data", data);
	if (reply == NULL)
		abort();
	if ((frame = ctlproto_frame_json(reply, CTLPROTO_REPLY_MAX, &flen)) == NULL ||
	    ctlproto_frame_parse(frame, flen, CTLPROTO_REPLY_MAX, &plen) != 1 ||
	    plen + CTLPROTO_HDR != flen)
		abort();
	free(frame);
	json_decref(reply);
	ctlproto_request_free(&rq);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	 init;
	const uint8_t	*p;
	size_t		 len, n;
	int		 nerr, rc;

	if (!init) {
		log_init(1, 0);
		if ((M.conf = conf_load(fuzz_file(fuzz_control_yaml,
		    strlen(fuzz_control_yaml)), NULL, 0, stderr, &nerr)) == NULL)
			abort();
		/* pretend processes, so show workers has rows to make */
		M.w[0].pid = 101, M.w[0].inuse = 1;
		M.w[1].pid = 102, M.w[1].inuse = 1, M.w[1].stripe = 1, M.w[1].pos = 1;
		M.prober.pid = 103;
		M.syncer.pid = 104;
		init = 1;
	}
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		/* one payload: frame it here, so the fuzzer need not learn the header */
		len = size - 1 < CTLPROTO_REQ_MAX ? size - 1 : CTLPROTO_REQ_MAX;
		ctlproto_frame_hdr(fuzz_buf, (uint32_t)len);
		memcpy(fuzz_buf + CTLPROTO_HDR, data + 1, len);
		p = fuzz_buf;
		len += CTLPROTO_HDR;
	} else {
		p = data + 1;
		len = size - 1;
	}
	/* every input on a fresh table: handlers change it */
	if ((M.shm = shm_create(16, 2, NULL)) == NULL ||
	    master_table_load(M.shm, M.conf, 1, 1) == -1)
		abort();
	M.nworkers = 2;
	while ((rc = ctlproto_frame_parse(p, len, CTLPROTO_REQ_MAX, &n)) == 1) {
		if (n == 0 || n > len - CTLPROTO_HDR)
			abort();
		fuzz_control_request((const char *)p + CTLPROTO_HDR, n);
		p += CTLPROTO_HDR + n;
		len -= CTLPROTO_HDR + n;
	}
	log_setverbose(0);
	shm_destroy(M.shm);
	M.shm = NULL;
	return 0;
}

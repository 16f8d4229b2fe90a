/* The control protocol shared by routerctl and the master: frames and the command grammar. */
#ifndef LIB_CTLPROTO_H
#define LIB_CTLPROTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * A frame is a 4-byte big-endian payload length followed by that many
 * bytes of JSON.  Requests are {"cmd": [words..., args...], "json": bool};
 * replies {"ok": true, "data": ...} or {"ok": false, "error": "..."};
 * monitor events {"ok": true, "event": {...}}.  Requests are small, so
 * the master caps them at CTLPROTO_REQ_MAX; replies (show backends over a
 * full table) may be larger.
 */
#define CTLPROTO_HDR		4
#define CTLPROTO_REQ_MAX	(64 * 1024)
#define CTLPROTO_REPLY_MAX	(16 * 1024 * 1024)
#define CTLPROTO_WORDS_MAX	2	/* keywords per command */
#define CTLPROTO_ARGS_MAX	16	/* strings in a request's "cmd", keywords included */
#define CTLPROTO_DEFAULT_SOCKET	"/run/routerd/routerd.sock"

/*
 * ctlproto_frame_parse() looks at the len bytes buffered at buf.  Returns
 * 1 when a whole frame is there (*plen gets its payload length; the
 * payload starts at buf + CTLPROTO_HDR), 0 when more bytes are needed,
 * -1 when the header announces an empty frame or one larger than max:
 * the stream cannot be trusted any more.
 */
int	 ctlproto_frame_parse(const void *buf, size_t len, size_t max, size_t *plen);
void	 ctlproto_frame_hdr(uint8_t hdr[CTLPROTO_HDR], uint32_t len);

/*
 * ctlproto_frame_json() serialises v (compact) behind a frame header.
 * Returns a malloc'd buffer of *outlen bytes, or NULL when out of memory
 * or when the payload would exceed max.
 */
char	*ctlproto_frame_json(const json_t *v, size_t max, size_t *outlen);

/* Every command; the master's handler table is indexed by these. */
enum ctlproto_id {
	CTL_SHOW_SUMMARY = 0,
	CTL_SHOW_BACKENDS,
	CTL_SHOW_POOLS,
	CTL_SHOW_MODELS,
	CTL_SHOW_STATS,
	CTL_SHOW_BREAKERS,
	CTL_SHOW_WORKERS,
	CTL_SHOW_CONFIG,
	CTL_SHOW_REGISTRY,
	CTL_SHOW_QUEUE,
	CTL_SHOW_TENANTS,
	CTL_EXPLAIN,
	CTL_BACKEND_ENABLE,
	CTL_BACKEND_DISABLE,
	CTL_BACKEND_DRAIN,
	CTL_BACKEND_WEIGHT,
	CTL_BREAKER_OPEN,
	CTL_BREAKER_CLOSE,
	CTL_BREAKER_RELEASE,
	CTL_STRATEGY_SET,
	CTL_RELOAD,
	CTL_STOP,
	CTL_LOG_VERBOSE,
	CTL_LOG_BRIEF,
	CTL_LOG_REOPEN,
	CTL_MONITOR,
	CTL_NCMDS
};

/*
 * One row of the grammar (STYLE 8): the keywords, the arguments that
 * follow them, whether the command changes anything (refused to peers
 * that may only read), and the help line.  No row's keywords are a
 * prefix of another row's.  prefer is a bit mask: bit i set means that
 * words[i] wins when an abbreviation at position i matches it and other
 * keywords too ("sh b" is show backends, not show breakers).
 */
struct ctlproto_cmd {
	enum ctlproto_id id;
	const char	*words[CTLPROTO_WORDS_MAX];	/* NULL after the last */
	int		 nwords;
	const char	*args;		/* "NAME N", "[POOL] NAME", "" */
	int		 minargs, maxargs;
	int		 write;
	unsigned	 prefer;
	const char	*help;
};

extern const struct ctlproto_cmd	ctlproto_cmds[];
extern const size_t			ctlproto_ncmds;

/*
 * ctlproto_lookup() finds the row whose keywords are exactly the first
 * words of the n strings in w (no abbreviations: routerctl expands them).
 * Returns the row or NULL.
 */
const struct ctlproto_cmd *ctlproto_lookup(const char *const *w, size_t n);

/*
 * A decoded request.  argv points into root: both live until
 * ctlproto_request_free().  The command's arguments are argv[cmd->nwords]
 * up to argv[nw - 1]; their count is already checked against the row.
 */
struct ctlproto_req {
	json_t				*root;
	const struct ctlproto_cmd	*cmd;
	const char			*argv[CTLPROTO_ARGS_MAX];
	int				 nw;
	int				 json;		/* "json": true */
	char				 text[512];	/* the words joined, for logs */
};

/*
 * ctlproto_request_parse() decodes the payload of one request frame (n
 * bytes at p): a JSON object whose "cmd" holds 1 to CTLPROTO_ARGS_MAX
 * strings, the keywords of a grammar row then its arguments.  Returns 0
 * with *req filled, or -1 with the reply's one-line reason in err and
 * nothing to free; *fatal is then 1 when the payload is not a JSON object
 * at all (the peer is not speaking the protocol), 0 when only the request
 * was wrong.  Pure: for the master and for a fuzzer.
 */
int	 ctlproto_request_parse(const char *p, size_t n, struct ctlproto_req *req,
	    char *err, size_t errlen, int *fatal);
void	 ctlproto_request_free(struct ctlproto_req *);

#endif

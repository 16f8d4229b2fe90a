/* The registry syncer's parts: HTTP(S) client, registry formats, and the framed messages it sends the master. */
#ifndef SYNCER_SYNCER_H
#define SYNCER_SYNCER_H

#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

/*
 * The wire between the syncer and the master: a SOCK_SEQPACKET socketpair,
 * so one send() is one message and the master never sees half of one.
 * Both ends run the same binary, so the structs travel as they are.
 *
 * A pull that worked is one batch:
 *	BEGIN(batch, nrecs)  SVC(batch, n recs) ...  END(batch, stats)
 * and the master applies the whole set on END (a batch that is cut short,
 * say because the syncer died, is never applied: the next BEGIN drops it).
 * SAME(stats) says the registry has not changed since the last batch
 * (etcd revision unchanged): the master refreshes last_seen only.
 * FAIL(stats, reason) says the pull failed: the master keeps its set.
 */
#define SYNCER_MSG_MAX		65536	/* bytes in one message */

enum syncer_msg_type {
	SYNCER_MSG_BEGIN = 1,
	SYNCER_MSG_SVC,
	SYNCER_MSG_END,
	SYNCER_MSG_SAME,
	SYNCER_MSG_FAIL
};

struct syncer_msg_hdr {
	uint32_t	 type;		/* enum syncer_msg_type */
	uint32_t	 len;		/* bytes of the message, header included */
	uint32_t	 batch;		/* batch number (BEGIN, SVC, END) */
	uint32_t	 count;		/* BEGIN: records in the batch; SVC: in this message */
};

/* The syncer's counters; the tail of END, SAME and FAIL. */
struct syncer_stats {
	uint64_t	 syncs_ok;
	uint64_t	 syncs_failed;
	uint64_t	 last_ok_ms;	/* CLOCK_REALTIME ms of the last good pull, 0: none */
	uint64_t	 last_fail_ms;
	uint32_t	 listed;	/* records taken from the last good answer */
	uint32_t	 skipped;	/* records invalid (missing or bad fields) */
	uint32_t	 filtered;	/* records valid but not wanted (status, env, type) */
	uint32_t	 pull_ms;	/* duration of the last pull */
	char		 error[160];	/* FAIL: why, "" otherwise */
};

/*
 * One service record inside an SVC message, records packed back to back,
 * each padded to 8 bytes.  strings holds, NUL-terminated and in this
 * order: name, address text ("host:port" as listed), region, health path,
 * then nmodels model names.  sa is the address resolved by the syncer (the
 * master never resolves names: its loop must not block).
 */
#define SYNCER_REC_STATIC	0x01

struct syncer_rec {
	uint16_t	 len;		/* bytes of this record, padding included */
	uint16_t	 weight;	/* 1..1000 */
	uint8_t		 flags;		/* SYNCER_REC_* */
	uint8_t		 nmodels;
	uint16_t	 salen;
	uint8_t		 sa[28];	/* struct sockaddr_in or sockaddr_in6 */
	char		 strings[];
};

/* A parsed service, before it is resolved and packed. */
struct syncer_svc {
	char		 name[CONF_NAME_MAX];
	char		 host[CONF_ADDR_MAX];
	int		 port;
	int		 weight;
	int		 is_static;
	char		 region[CONF_NAME_MAX];
	char		 health_path[CONF_PATH_MAX];
	char		 models[CONF_MODELS_MAX][CONF_NAME_MAX];
	int		 nmodels;
};

struct syncer_set {
	struct syncer_svc *svc;
	size_t		 n, cap;
	uint32_t	 skipped;	/* invalid records */
	uint32_t	 filtered;	/* valid but not wanted */
	uint64_t	 revision;	/* etcd: header.revision */
};

void	 syncer_set_free(struct syncer_set *);
void	 syncer_set_clear(struct syncer_set *);	/* empty it, keep its memory */

/*
 * syncer_json_arena(1) makes every jansson allocation of this process come
 * from an arena that syncer_parse() rewinds when it is done: for the
 * syncer process (and the benchmark), never where other code keeps JSON
 * values alive.  syncer_json_arena(0) goes back to malloc and frees it.
 */
void	 syncer_json_arena(int on);

/*
 * syncer_parse() reads a registry answer in the format cf->registry.format
 * into set (zeroed, or emptied with syncer_set_clear()).  Returns 0 when the
 * answer as a whole is good (records with missing or invalid fields are
 * counted in set->skipped and left out), or -1 with a reason in err when
 * it is not (not JSON, wrong shape, success: false): then the caller keeps
 * its last good set.  Pure: no I/O, no logging.
 */
int	 syncer_parse(const struct conf *, const char *body, size_t len,
	    struct syncer_set *set, char *err, size_t errlen);

/*
 * syncer_etcd_range_body() writes the JSON body of the etcd v3 range
 * request for every key under prefix ("" = every key) into buf; count_only
 * asks for the revision only.  Returns the length, or -1 if buf is short.
 */
int	 syncer_etcd_range_body(const char *prefix, int count_only, char *buf,
	    size_t len);

/* The etcd revision of a count_only range answer; -1 if the answer is bad. */
int	 syncer_etcd_revision(const char *body, size_t len, uint64_t *rev);

/*
 * syncer_pack() fills rec (room for cap bytes) from a service whose
 * address is already resolved into sa/salen.  Returns the record's length
 * (a multiple of 8), or -1 when it does not fit.
 */
int	 syncer_pack(const struct syncer_svc *, const void *sa, size_t salen,
	    struct syncer_rec *rec, size_t cap);

/*
 * syncer_unpack() checks a record taken from a message (at most avail
 * bytes) and points the out strings into it.  Returns the record's length
 * or -1 when it is malformed.  Used by the master.
 */
struct syncer_rec_view {
	const struct syncer_rec	*rec;
	const char	*name, *addr, *region, *health_path;
	const char	*models[CONF_MODELS_MAX];
	int		 nmodels;
};
int	 syncer_unpack(const void *p, size_t avail, struct syncer_rec_view *);

/*
 * syncer_resolve() turns host and port into a socket address: numeric
 * addresses at once, names with getaddrinfo (the syncer may block; the
 * master may not, which is why the syncer does it).  0 or -1.
 */
int	 syncer_resolve(const char *host, int port, void *sa, size_t *salen);

/*
 * syncer_batch_send() sends set as one batch (BEGIN, SVC..., END with st)
 * through send_fn, resolving every address on the way (a record that does
 * not resolve counts as skipped).  send_fn returns 0 or -1; so does this.
 * The bench and the tests pass a function that hands each message to the
 * master's registry_msg() directly.
 */
typedef int (*syncer_send_fn)(void *arg, const void *msg, size_t len);
int	 syncer_batch_send(const struct syncer_set *, uint32_t batch,
	    struct syncer_stats *st, syncer_send_fn, void *arg);
int	 syncer_status_send(uint32_t type, const struct syncer_stats *,
	    syncer_send_fn, void *arg);

/*
 * syncer_fetch() makes one HTTP or HTTPS request (GET, or POST when body
 * is not NULL) to url with the registry's token header, everything done
 * within timeout_ms, and returns the answer's body (status 200 only) in
 * *out (malloc'd, NUL-terminated, *outlen bytes).  Certificates and host
 * names are verified; SNI is sent.  Answers over max_size fail.  Returns
 * 0, or -1 with a reason in err.
 */
int	 syncer_fetch(const char *url, const char *body, const char *token,
	    int timeout_ms, size_t max_size, char **out, size_t *outlen,
	    char *err, size_t errlen);
void	 syncer_fetch_cleanup(void);
/* Let syncer_fetch() give up when fd (the master's pair) turns readable; -1: none. */
void	 syncer_fetch_watch(int fd);

#endif

/* A worker process: accepts clients on its listeners and proxies them to backends. */
#ifndef WORKER_WORKER_H
#define WORKER_WORKER_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <stdint.h>
#include <time.h>

#include "llhttp.h"

#include "conf/conf.h"
#include "lib/buf.h"
#include "lib/ev.h"
#include "shm/table.h"
#include "worker/balance.h"
#include "worker/flow.h"
#include "worker/retry.h"

#define WORKER_BUFSZ		(32 * 1024)	/* client in/out, upstream in */
#define WORKER_HDR_MAX		256		/* header fields kept per head */
#define WORKER_RID_LEN		32		/* generated X-Request-Id: hex chars */
#define WORKER_RID_MAX		128		/* a client's X-Request-Id we keep, at most */

/* An (offset, length) span into a connection's input buffer. */
struct span {
	uint32_t	 off, len;
};

struct hfield {
	struct span	 name, value;
};

/* The parsed head of a request or response, as spans into the input buffer. */
struct head {
	struct span	 first;		/* request target, or response reason */
	struct hfield	 f[WORKER_HDR_MAX];
	int		 n;
	int		 in_value;	/* last callback was a value */
	int		 too_many;
	size_t		 bytes;		/* head bytes seen so far */
};

enum body_kind {
	BODY_NONE = 0,
	BODY_LENGTH,		/* Content-Length: pass the bytes through */
	BODY_CHUNKED,		/* re-framed as normalized chunks */
	BODY_EOF		/* response delimited by the backend's close */
};

/* How a response body is re-framed for the client (worker/h1.c, h1_frame_*()). */
struct h1_framer {
	struct buf	*out;
	enum body_kind	 to;
	unsigned	 from_eof:1, chunk_open:1;
};

/* What the client side is doing with the current request. */
enum cphase {
	CP_IDLE = 0,		/* keep-alive: waiting for the first byte */
	CP_HEAD,		/* reading the request head */
	CP_WAIT,		/* head parsed; waiting for a backend connection */
	CP_BODY,		/* forwarding the request body */
	CP_SENT,		/* request complete; response may still be coming */
	CP_REPLY,		/* sending our own reply (error), then maybe close */
	CP_LINGER		/* shut down for writing; draining input before close */
};

struct upconn;
struct worker;
struct reply_extra;

/*
 * One request's life (DESIGN "exchange"): what the request is, where it
 * goes, how its attempts went, its timings and outcome.  It lives inside
 * its connection, one at a time, and is wiped whole between requests
 * (exchange_reset()), so that nothing of one request leaks into the next.
 */
struct exchange {
	/* the request */
	enum body_kind		 req_body;
	uint8_t			 method;	/* llhttp_method_t */
	uint64_t		 body_len;	/* request body bytes seen (decoded) */
	int64_t			 tok_prompt;	/* tokens the current attempt added to its backend's stripe */
	int64_t			 tok_output;
	int64_t			 tok_uncached;
	struct llm_req		*llm;		/* the scanned body (worker/llm.h), NULL none */
	uint32_t		 fwd_head;	/* bytes of the upstream head at the front of fwd */
	struct h1_framer	 fr;		/* the request body into fwd */
	uint32_t		 ext_len;	/* bytes of the current chunk-extension name */
	char			 trailer_prev;	/* last trailer-section byte seen */
	size_t			 hold_acct;	/* bytes of w->hold_used that are ours */
	unsigned		 msg_done:1,	/* the whole request is read */
				 fwd_whole:1,	/* fwd still holds the whole request (replayable) */
				 expect_100:1, http10:1, is_head:1, idempotent:1,
				 started:1,	/* routing began */
				 trailers:1, local_models:1,
				 infer:1,	/* POST to an inference endpoint (req_infer_path()) */
				 holding:1,	/* body received whole before routing */
				 hold_nomem:1,	/* not held: limits.hold_memory was spent */
				 hold_over:1,	/* the body outgrew limits.hold */
				 close_after:1;	/* the client or we close after this one */
	/* the route and the attempts */
	int			 pool;
	int			 slot;		/* backend of the current attempt, -1 */
	int			 attempts;
	struct bal_req		 breq;
	int			 ask_strategy;	/* X-Router-Strategy: 0 none, 1 + strategy, -1 unknown name */
	int			 fail_slot;	/* backend of the first failed attempt, -1 */
	uint64_t		 t_fail;	/* ms: that failure */
	uint64_t		 t_queued;	/* ms: entered the wait queue */
	unsigned		 queued:1, retry_wait:1, on_backup_pool:1,
				 retried_same:1,
				 budget_taken:1,	/* the retry budget counted the retry this failure asks for */
				 llm_replay:1;	/* an LLM request of a pool that holds heads:
						   replayable until its first event shows */
	/* flow control (worker/flow.c) */
	uint64_t		 tenant_key;	/* hash of its tenant's name */
	int32_t			 tenant;	/* its entry in the table's tenants + 1; 0 not looked up, -1 none */
	int16_t			 rule;		/* its ratelimits entry + 1, 0 none */
	uint8_t			 band;		/* admission band, 0 (priority -8) to SHM_BANDS - 1 */
	uint64_t		 deadline;	/* ms: X-Request-Deadline, 0 none */
	uint64_t		 qkey;		/* its order in the queue (flow_enqueue()) */
	uint64_t		 qstuck;	/* its pool's release epoch when it last found no backend */
	uint32_t		 qid;		/* the table id of the pool it waits for */
	int64_t			 tok_charged;	/* tokens charged to its tenant's tokens_per_minute */
	int64_t			 rl_left[2];	/* requests, tokens left in its tenant's buckets when admitted */
	int64_t			 rl_reset[2];	/* ns until they were full again */
	unsigned		 rl_set:1;	/* rl_* are set: its tenant is limited */
	char			 tlabel[SHM_TENANT_LABEL];	/* its tenant, as shown */
	/* the response */
	enum body_kind		 resp_body;	/* framing towards the client */
	unsigned		 resp_started:1, resp_done:1, head_sent:1,
				 resp_close:1,
				 cut:1,		/* the response broke: close once out is sent */
				 head_held:1,	/* out holds the head from hold_mark on, unsent */
				 mid_chunk:1,	/* the broken attempt stopped inside a chunk */
				 timed_out:1,	/* ...on its timer */
				 err_event:1;	/* a stream ended by our error event */
	uint32_t		 hold_mark;	/* out.wpos before the held head */
	int			 status;	/* final status sent to the client */
	uint64_t		 bytes_out;
	/* timings, ms, monotonic */
	uint64_t		 t_start;	/* request head began */
	uint64_t		 t_body;	/* request head ended, body began */
	uint64_t		 body_rx;	/* body bytes read from the client so far */
	uint64_t		 t_reply;
	char			 rid[WORKER_RID_MAX + 1];
	char			 logreq[160];	/* "METHOD /path" for the access log */
};

/* A client connection: its socket, buffers, timer, parser, and the exchange it carries. */
struct client {
	struct ev_io		 io;
	struct worker		*w;
	TAILQ_ENTRY(client)	 entry;
	llhttp_t		 parser;
	struct buf		 in, out, fwd;
	struct ev_timer		 timer;
	struct upconn		*up;		/* the current attempt's backend connection */
	struct head		 h;
	TAILQ_ENTRY(client)	 qentry;	/* worker's wait queue while CP_WAIT */
	enum cphase		 phase;
	unsigned		 rd_ready:1, wr_ready:1, closed:1, eof:1,
				 paused:1, hup:1;
	char			 ip[INET6_ADDRSTRLEN];
	uint64_t		 linger_until;
	struct exchange		 x;
};

enum uphase {
	UP_CONNECTING = 0,
	UP_BUSY,
	UP_IDLE
};

struct upconn {
	struct ev_io		 io;
	struct worker		*w;
	TAILQ_ENTRY(upconn)	 entry;		/* idle list of its backend, or zombies */
	struct client		*cl;
	llhttp_t		 parser;
	struct buf		 in;
	struct ev_timer		 timer;
	struct head		 h;
	enum uphase		 phase;
	uint32_t		 slot;
	uint64_t		 addr_gen;	/* backend address generation it was made for */
	unsigned		 rd_ready:1, wr_ready:1, closed:1, reused:1,
				 got_bytes:1, eof:1, no_reuse:1, interim:1,
				 head_done:1, parser_eof_body:1,
				 keepalive:1, hup:1, retry_status:1,
				 ft_armed:1;	/* the first_token deadline is set */
	struct h1_framer	 fr;		/* the response body towards the client */
	uint64_t		 t_sent;	/* ms: request fully handed to the socket */
	uint64_t		 nreq;
};

TAILQ_HEAD(upq, upconn);
TAILQ_HEAD(clientq, client);

/* Per-backend state private to this worker. */
struct wbackend {
	struct upq		 idle;
	int			 nidle;
	uint64_t		 addr_gen;	/* bumped when the address changes */
	struct sockaddr_storage	 sa;
	socklen_t		 salen;
	char			 name[SHM_NAME_MAX];
	int			 down;		/* the prober's DOWN was seen (and acted on) */
};

struct listener {
	struct ev_io		 io;
	struct worker		*w;
	int			 admin;		/* the admin API's listener */
};

struct worker {
	struct conf		*conf;
	struct shm_hdr		*shm;
	uint32_t		 index;		/* our counter stripe */
	uint32_t		 generation;
	struct ev_loop		 loop;
	struct listener		*ls;
	size_t			 nls;
	struct ev_timer		 accept_timer;	/* re-enables accept after EMFILE */
	int			 at_limit;	/* listeners off: limits.connections reached */
	int			 refusing;	/* between the two log lines of a limit episode */
	uint64_t		 refuse_since;	/* ms: that episode began */
	uint64_t		 gen;		/* table generation of our view */
	struct wview		 view;
	struct wbackend		*wb;
	struct clientq		 clients;
	size_t			 nclients;
	struct clientq		 czombies;
	struct clientq		 waitq;		/* requests waiting for a backend, in their order (flow_enqueue()) */
	size_t			 nwait;
	int			 queue_kick;
	struct ev_timer		 down_timer;	/* releases first-byte waiters at backends gone down */
	struct ev_timer		 queue_timer;	/* re-tries the queue: slots also free in other workers */
	struct upq		 uzombies;
	int			 draining;
	uint64_t		 drain_deadline;
	int			 stop;
	llhttp_settings_t	 req_settings, resp_settings;
	char			*freebufs;	/* free list of WORKER_BUFSZ blocks */
	size_t			 nfreebufs;
	char			*freefwd;	/* free list of fwd blocks */
	size_t			 nfreefwd;
	size_t			 fwdsz;
	uint64_t		 hold_used;	/* bytes of held request bodies (limits.hold_memory) */
	int			 sigfd;
	uint8_t			 retry_status[600 / 8];	/* bit per status: retries.on_status */
	int			*backup_pool;	/* [npools]: index of each pool's backup pool, -1 */
	struct flow_conf	 flow;		/* flow control's settings (flow_init()) */
	uint64_t		 defer_key[SHM_POOLS_MAX];	/* the other worker's head the queue waits for, per pool */
	uint64_t		 defer_ms[SHM_POOLS_MAX];	/* since when */
	int			 alog_fd;	/* access log, -1: off */
	struct buf		 alog;		/* lines waiting for the next flush */
	time_t			 alog_sec;	/* second the cached time text is for */
	char			 alog_time[32];
};

/* worker.c */
struct priv_id;
/*
 * Runs a worker; drops to priv (after opening the access log) before it
 * serves.  master_fd is the read end of the master's liveness pipe (EOF:
 * the master is gone, so stop), master_pid the parent it must still have
 * once PDEATHSIG is set; -1 and 0 for none.
 */
int	 worker_main(struct conf *, struct shm_hdr *, uint32_t index,
	    uint32_t generation, int *listen_fds, size_t nlisten, int admin_fd,
	    int ctl_fd, const struct priv_id *priv, int master_fd, pid_t master_pid);
/* Grow b to hold need more bytes (admin answers); 0 or -1.  Grown buffers are freed, not pooled. */
int	 worker_buf_grow(struct buf *, size_t need);
void	 worker_buf_release(struct worker *, struct buf *);
void	 worker_refresh(struct worker *);
char	*worker_buf_get(struct worker *);
void	 worker_buf_put(struct worker *, char *);
/*
 * Block free lists: get reuses a kept block or mallocs one (NULL: out of
 * memory); put keeps it while the list is under its cap (256 buffers;
 * worker_fwd_cap() forward blocks, at most 64 and 16 MiB), else frees it.
 */
char	*worker_fwd_get(struct worker *);
void	 worker_fwd_put(struct worker *, char *);
size_t	 worker_fwd_cap(const struct worker *);

/* client.c: the connection (calls into request.c and exchange.c, never back) */
void	 client_accept(struct worker *, int fd, const struct sockaddr_storage *);
void	 client_drive(struct client *);
void	 client_close(struct client *);
/* Our own answer (an error, a 503): nothing of a response may have gone out. */
void	 client_reply(struct client *, int status, const char *msg);
void	 client_reply_x(struct client *, int status, const char *msg,
	    const struct reply_extra *);
/* The response broke after its head went out: flush what is buffered, then close with no clean end. */
void	 client_cut(struct client *);
/* The request head is read: its body, if any, starts now (timers). */
void	 client_body_begin(struct client *);
/* Back from a wait of ours (queue, retry delay): the body gets a fresh allowance. */
void	 client_body_resume(struct client *);
const char *client_status_msg(int status);

/* request.c: the request side of the codec on a connection */
void	 request_settings(llhttp_settings_t *);
/* Feeds buffered request bytes to llhttp: 1 progress, 0 none, -1 if c was closed. */
int	 request_parse(struct client *);
void	 request_make_id(struct client *);

/* exchange.c: one request's life */
/* The head (and a held body) are in: route, pick, attach or queue. */
void	 exchange_start(struct client *);
#define EXCHANGE_QUEUE_TICK_MS	5	/* the queue runs this often while anything waits here */
#define EXCHANGE_QUEUE_FAILS	16	/* (pool, model)s a run of the queue finds full before it stops */
void	 exchange_queue_run(struct worker *);
/* A backend slot of pool (a view index) freed: the next waiting request, in any worker, may take it. */
void	 exchange_slot_freed(struct worker *, int pool);
void	 exchange_unqueue(struct client *);
struct shm_poolq *exchange_poolq(struct client *);
/* No other backend: try slot again after retries.delay.  0 if scheduled. */
int	 exchange_retry_later(struct client *, uint32_t slot);
void	 exchange_reset(struct client *);
int	 exchange_replay_ok(const struct client *);
int	 exchange_can_move(struct client *);
/* An attempt on slot failed (its connection released): retry it elsewhere, or answer the client. */
void	 exchange_failed(struct client *, uint32_t slot, enum up_err, int reused);

/* upstream.c */
int	 upstream_attach(struct client *);
int	 upstream_drive(struct upconn *);
void	 upstream_release(struct upconn *, int reuse);
void	 upstream_settings(llhttp_settings_t *);
void	 upstream_close_idle(struct worker *, uint32_t slot);
#define UPSTREAM_DOWN_TICK_MS	100
void	 upstream_down_sweep(struct worker *);
void	 upstream_down_seen(struct worker *);

/* accesslog.c */
void	 accesslog_open(struct worker *);
void	 accesslog_request(struct client *);
void	 accesslog_flush(struct worker *);

/* hold.c: request bodies held whole before routing (limits.hold) */
int	 hold_begin(struct client *, uint64_t want);
int	 hold_grow(struct client *, size_t need);
void	 hold_end(struct client *);
void	 hold_free_fwd(struct client *);

/* reply.c */
const char *reply_reason(int status);
/* What an error reply says beyond its status (all may be NULL). */
struct reply_extra {
	const char	*type;		/* the error's "type", else by the status */
	const char	*code;		/* its "code" (a string), else the status */
	const char	*headers;	/* header lines, each ending in CRLF */
};
int	 reply_build(struct buf *, int status, const char *msg, int close,
	    const char *rid, const struct reply_extra *);
struct json_t;
int	 reply_json(struct buf *, int status, struct json_t *root, int close,
	    const char *rid);

/* models.c: model routing and the proxy's own GET /v1/models */
int	 models_declared(const struct worker *);
int	 models_wanted(struct client *);
int	 models_route(struct client *);
void	 models_list(struct client *);

#endif

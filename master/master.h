/* The master role: listeners, the shared table's membership, worker supervision, signals. */
#ifndef MASTER_MASTER_H
#define MASTER_MASTER_H

#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "lib/ev.h"
#include "lib/priv.h"
#include "shm/table.h"

enum mrole {
	ROLE_WORKER = 0,
	ROLE_PROBER,
	ROLE_SYNCER
};

struct mworker {
	enum mrole	 role;
	pid_t		 pid;		/* 0: not running */
	uint32_t	 pos;		/* listener position: accepts on sockets [pos] */
	uint32_t	 stripe;	/* counter stripe in the table */
	uint32_t	 generation;
	uint64_t	 started_ms;	/* monotonic */
	uint64_t	 respawn_at;	/* monotonic ms; 0: no respawn pending */
	uint64_t	 backoff_ms;
	int		 old;		/* of a previous generation, draining */
	int		 inuse;		/* entry belongs to a worker of some generation */
	int		 told;		/* old, and sent SIGQUIT */
};

struct master {
	struct conf	*conf;
	const char	*conffile;	/* NULL: embedded default */
	struct conf_flag *flags;
	size_t		 nflags;
	int		 foreground;
	int		 verbose;
	struct shm_hdr	*shm;
	struct ev_loop	 loop;
	int		 lfds[CONF_LISTEN_MAX][SHM_WORKERS_MAX];
	int		 afds[SHM_WORKERS_MAX];	/* admin API listener per position, -1 */
	struct conf_addr laddr[CONF_LISTEN_MAX];
	size_t		 nls;
	uint32_t	 nworkers;
	struct mworker	 w[SHM_WORKERS_MAX];
	struct mworker	 prober;
	struct mworker	 syncer;
	int		 syncer_fd;	/* master's end of the syncer socketpair, -1 */
	struct ev_io	 syncer_io;
	int		 control_fd;	/* listening control socket, -1 */
	void		*control;	/* master/control.c's state */
	uint32_t	 generation;
	int		 stopping;	/* 1: SIGTERM sent, 2: draining (SIGQUIT) */
	uint64_t	 stop_deadline;
	struct pidfh	*pfh;
	uint64_t	 reload_deadline;
	int		 reload_pending;	/* a reload waits for old workers to free stripes */
	struct priv_id	 priv;		/* what the children run as */
	pid_t		 pid;		/* the master's own, for the children's checks */
	int		 alive[2];	/* pipe: children hold [0], the master alone [1] */
};

int	 master_main(struct master *);

/*
 * Set the process title ("routerd: worker 0").  libbsd marks a title
 * shorter than the original argv[0] with a '.' where argv[0] ended, which
 * ps shows; titles are padded with spaces to that length instead.
 */
extern size_t	 master_argv0_len;
void	 master_title(const char *);

/*
 * For the control socket and the registry (both run inside the master):
 * master_reload() parses the config file again and, if it is good,
 * applies it (new worker generation, old one drained); on a bad file it
 * keeps the running config, writes "FILE:LINE:COL: message" lines into
 * err and returns -1.  A file with host names returns 1 (err says so):
 * a helper looks them up and the reload runs again when it answers.  master_stop() is SIGTERM (drain = 0) or SIGQUIT
 * (drain = 1).  master_table_changed() bumps the table generation after
 * descriptor writes.
 */
int	 master_reload(struct master *, char *err, size_t errlen);
void	 master_reload_check(struct master *);
/* master.c, for reload.c */
int	 master_bind(const struct conf_addr *);
void	 master_spawn_generation(struct master *);
uint32_t master_free_stripes(struct master *);
void	 master_stop(struct master *, int drain);
void	 master_log_reopen(struct master *);

/*
 * Fork a short-lived helper ("routerd: TITLE"): in the child, every
 * descriptor but keep_fd (and stdio) is closed, privileges are dropped and
 * the parent-death signal set; it returns 0 there.  In the master it
 * returns the pid, or -1.  master_reap() reaps helpers like any child.
 */
pid_t	 master_fork_helper(struct master *, const char *title, int keep_fd);

/*
 * master/resolve.c: host names for a reload.  resolve_begin() before
 * conf_load() answers names from the last lookups (numeric addresses need
 * none); resolve_end() after it returns 0 (nothing was missing: use the
 * result), 1 (names were missing: a helper looks them up, and the reload
 * runs again when it is done; err says so) or -1 (err says why not).
 */
void	 resolve_begin(struct master *);
int	 resolve_end(struct master *, char *err, size_t errlen);

/* master/control.c: the control socket (routerctl).  init: 0 or -1 (logged). */
int	 control_init(struct master *);
void	 control_close(struct master *);
/* A worker's end of the control protocol (its admin API's writes); 0 or -1, fd closed. */
int	 control_adopt(struct master *, int fd, pid_t pid);

/*
 * control_event() sends one event to every `routerctl monitor`: type is
 * a word ("reload", "registry"), the rest a printf-style message.  Master
 * only; never blocks; a no-op while nobody monitors.
 */
void	 control_event(struct master *, const char *type, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/*
 * control_changed(): the master just wrote the table (membership,
 * operator state, strategy): push what changed to every monitor now.
 * A no-op while nobody monitors.
 */
void	 control_changed(struct master *);

/*
 * master/registry.c: applies the wanted backend set the syncer sends over
 * its socketpair.  registry_readable() is called when the socket has
 * bytes; it never blocks.
 */
int	 syncer_main(struct conf *, int fd);
void	 registry_readable(struct master *, int fd);

/*
 * Table membership (master only): write the pools and backends of cf, the
 * config of generation gen, into the table; oldest is the oldest
 * generation still running (master_oldest_generation()).
 */
int	 master_table_load(struct shm_hdr *, const struct conf *, uint32_t gen,
	    uint32_t oldest);
uint32_t master_oldest_generation(const struct master *, uint32_t gen);
int	 master_slot_find(struct shm_hdr *, const char *name);
int	 master_slot_alloc(struct shm_hdr *);
void	 master_slot_free(struct shm_hdr *, uint32_t slot);
void	 master_desc_from_conf(struct shm_hdr *, const struct conf_backend *,
	    uint32_t pool, uint32_t flags, struct shm_desc *);

#endif

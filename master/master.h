/* The master role: listeners, the shared table's membership, worker supervision, signals. */
#ifndef MASTER_MASTER_H
#define MASTER_MASTER_H

#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "lib/ev.h"
#include "shm/table.h"

struct mworker {
	pid_t		 pid;		/* 0: not running */
	uint32_t	 pos;		/* listener position: accepts on sockets [pos] */
	uint32_t	 stripe;	/* counter stripe in the table */
	uint32_t	 generation;
	uint64_t	 started_ms;	/* monotonic */
	uint64_t	 respawn_at;	/* monotonic ms; 0: no respawn pending */
	uint64_t	 backoff_ms;
	int		 old;		/* of a previous generation, draining */
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
	struct conf_addr laddr[CONF_LISTEN_MAX];
	size_t		 nls;
	uint32_t	 nworkers;
	struct mworker	 w[SHM_WORKERS_MAX];
	uint32_t	 generation;
	int		 stopping;	/* 1: SIGTERM sent, 2: draining (SIGQUIT) */
	uint64_t	 stop_deadline;
	struct pidfh	*pfh;
};

int	 master_main(struct master *);

/* Table membership (master only): write every backend of cf into the table. */
int	 master_table_load(struct shm_hdr *, const struct conf *);

#endif

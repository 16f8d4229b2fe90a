/* The prober role: active health checks, latency, circuit-breaker transitions. */
#ifndef PROBER_PROBER_H
#define PROBER_PROBER_H

#include "conf/conf.h"
#include "shm/table.h"

/*
 * prober_main() runs in its own process ("routerd: prober"), forked by
 * the master after the table is loaded.  It is the only writer of the
 * prober fields of every slot (health, breaker, latency, check times,
 * trial tickets when half-opening).  It follows the table's generation for
 * membership, exits 0 on SIGTERM or when the master dies (master_fd, the
 * read end of the master's liveness pipe, reports EOF; -1: not watched).
 * Never blocks: one epoll loop checks every backend concurrently.
 */
int	 prober_main(struct conf *, struct shm_hdr *, int master_fd);

#endif

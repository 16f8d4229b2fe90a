/* The master's view of the registry: what the syncer reported, and the backends it learned. */
#ifndef MASTER_REGISTRY_H
#define MASTER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct master;

/*
 * registry_stats() copies the registry's counters (for the admin API and
 * the metrics).  Master process only; every field is 0 before the first
 * report of the syncer.
 */
struct registry_stats {
	uint64_t	 syncs_ok;	/* pulls that worked, since the master started */
	uint64_t	 syncs_failed;	/* pulls that failed (the set was kept) */
	uint64_t	 last_ok_ms;	/* CLOCK_REALTIME ms of the last good pull; 0: none */
	uint64_t	 last_fail_ms;
	int		 failing;	/* the last pull failed */
	char		 last_error[160];	/* why it failed, "" when it did not */
	uint32_t	 listed;	/* services taken from the last good answer */
	uint32_t	 skipped;	/* records skipped there: missing or invalid fields */
	uint32_t	 filtered;	/* records not wanted there: status, environment, type */
	uint32_t	 conflicts;	/* services ignored: a configured backend has the name */
	uint32_t	 backends;	/* registry backends in the table, grace included */
	uint32_t	 in_grace;	/* of them: gone from the registry, waiting out registry.grace */
	uint32_t	 statics;	/* of them: metadata.static, never removed */
	uint32_t	 configured;	/* backends from the config file in the table */
	uint64_t	 applied;	/* batches applied */
	uint64_t	 apply_us;	/* time the last batch took to apply */
};

void	 registry_stats(struct master *, struct registry_stats *);
/* Write them into the table's registry block (master only). */
void	 registry_publish(struct master *);

/*
 * registry_msg() handles one framed message from the syncer (see
 * syncer/syncer.h); registry_readable() reads them off the socket and
 * calls it.  Exposed for the tests and the benchmark, which feed messages
 * without a socket.  Returns 0, or -1 for a malformed message (logged,
 * dropped with its batch).
 */
int	 registry_msg(struct master *, const void *msg, size_t len);

/* Drop every piece of registry state (tests, benchmark). */
void	 registry_reset(void);

#endif

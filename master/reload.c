/* Hot reload: a new config, the same listening sockets, a new worker generation, the old one drained. */
#include <sys/socket.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "master/master.h"
#include "master/registry.h"

#define RELOAD_READY_MS	10000	/* a new generation that is not ready by then is given up */

/* Did anything the prober reads change? */
static int
reload_prober_changed(const struct conf *a, const struct conf *b)
{
	return memcmp(&a->health, &b->health, sizeof(a->health)) != 0 ||
	    memcmp(&a->breaker, &b->breaker, sizeof(a->breaker)) != 0;
}

static int
reload_syncer_changed(const struct conf *a, const struct conf *b)
{
	return memcmp(&a->registry, &b->registry, sizeof(a->registry)) != 0;
}

static int
reload_same_addr(const struct conf_addr *a, const struct conf_addr *b)
{
	return a->sslen == b->sslen && memcmp(&a->ss, &b->ss, a->sslen) == 0;
}

/*
 * The listening sockets the new config needs, per position: an address
 * that stays keeps its sockets (connections queued on them are taken by
 * the new generation, never reset); a new one is bound.  On failure
 * nothing is changed and -1 is returned with the reason in err.
 */
static int
reload_listeners(struct master *m, const struct conf *nc, uint32_t nworkers,
    int nfds[CONF_LISTEN_MAX][SHM_WORKERS_MAX], int nafds[SHM_WORKERS_MAX],
    char *err, size_t errlen)
{
	size_t		i, j;
	uint32_t	p;

	for (i = 0; i < CONF_LISTEN_MAX; i++)
		for (p = 0; p < SHM_WORKERS_MAX; p++)
			nfds[i][p] = -1;
	for (p = 0; p < SHM_WORKERS_MAX; p++)
		nafds[p] = -1;
	for (i = 0; i < nc->nlisten; i++) {
		for (j = 0; j < m->nls; j++)
			if (reload_same_addr(&nc->listen[i], &m->laddr[j]))
				break;
		for (p = 0; p < nworkers; p++) {
			if (j < m->nls && p < m->nworkers)
				nfds[i][p] = m->lfds[j][p];
			else if ((nfds[i][p] = master_bind(&nc->listen[i])) == -1)
				goto fail;
		}
	}
	if (nc->admin.addr.text[0] != '\0') {
		int same = m->conf->admin.addr.text[0] != '\0' &&
		    reload_same_addr(&nc->admin.addr, &m->conf->admin.addr);

		for (p = 0; p < nworkers; p++) {
			if (same && p < m->nworkers && m->afds[p] != -1)
				nafds[p] = m->afds[p];
			else if ((nafds[p] = master_bind(&nc->admin.addr)) == -1)
				goto fail;
		}
	}
	return 0;
fail:
	snprintf(err, errlen, "reload: cannot listen: %s", strerror(errno));
	/* close only what this attempt bound */
	for (i = 0; i < CONF_LISTEN_MAX; i++)
		for (p = 0; p < SHM_WORKERS_MAX; p++) {
			int fd = nfds[i][p], old = 0;

			for (j = 0; j < m->nls && fd != -1; j++)
				if (p < m->nworkers && m->lfds[j][p] == fd)
					old = 1;
			if (fd != -1 && !old)
				close(fd);
		}
	for (p = 0; p < SHM_WORKERS_MAX; p++)
		if (nafds[p] != -1 && (p >= m->nworkers || nafds[p] != m->afds[p]))
			close(nafds[p]);
	return -1;
}

/* Close the master's copies of sockets the new config no longer uses. */
static void
reload_close_unused(struct master *m, int nfds[CONF_LISTEN_MAX][SHM_WORKERS_MAX],
    size_t nls, int nafds[SHM_WORKERS_MAX], uint32_t nworkers)
{
	size_t		i, j;
	uint32_t	p, q;

	for (j = 0; j < m->nls; j++)
		for (p = 0; p < m->nworkers; p++) {
			int fd = m->lfds[j][p], used = 0;

			for (i = 0; i < nls && !used; i++)
				for (q = 0; q < nworkers && !used; q++)
					if (nfds[i][q] == fd)
						used = 1;
			if (!used)
				close(fd);
		}
	for (p = 0; p < m->nworkers; p++) {
		int used = 0;

		if (m->afds[p] == -1)
			continue;
		for (q = 0; q < nworkers; q++)
			if (nafds[q] == m->afds[p])
				used = 1;
		if (!used)
			close(m->afds[p]);
	}
}

int
master_reload(struct master *m, char *err, size_t errlen)
{
	struct conf	*nc, *oc = m->conf;
	char		*text = NULL;
	size_t		 textlen = 0, i, freeslots = 0;
	FILE		*ef;
	int		 nerr = 0, rc;
	int		 nfds[CONF_LISTEN_MAX][SHM_WORKERS_MAX], nafds[SHM_WORKERS_MAX];
	uint32_t	 nworkers, p;
	const char	*name = m->conffile ? m->conffile : "<default>";

	if (m->stopping) {
		snprintf(err, errlen, "reload: routerd is stopping");
		return -1;
	}
	if ((ef = open_memstream(&text, &textlen)) == NULL) {
		snprintf(err, errlen, "reload: %s", strerror(errno));
		return -1;
	}
	/* host names come from a helper: the master's loop never waits on DNS */
	resolve_begin(m);
	nc = conf_load(m->conffile, m->flags, m->nflags, ef, &nerr);
	fclose(ef);
	if ((rc = resolve_end(m, err, errlen)) != 0) {
		if (nc != NULL)
			conf_free(nc);
		free(text);
		if (rc == -1)
			log_warnx("%s", err);
		return rc;
	}
	if (nc == NULL) {
		char *line, *save = NULL;

		log_warnx("reload: %s has %d error%s; the running configuration stays",
		    name, nerr, nerr == 1 ? "" : "s");
		for (line = strtok_r(text, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_warnx("reload: %s", line);
		snprintf(err, errlen, "%s", text ? text : "reload failed");
		free(text);
		control_event(m, "reload", "failed: %s has %d error%s; running configuration kept",
		    name, nerr, nerr == 1 ? "" : "s");
		return -1;
	}
	free(text);
	if ((uint32_t)nc->max_backends != m->shm->max_backends) {
		snprintf(err, errlen, "reload: max_backends cannot change without a restart "
		    "(running %u, file %d)", m->shm->max_backends, nc->max_backends);
		log_warnx("%s", err);
		conf_free(nc);
		return -1;
	}
	nworkers = (uint32_t)(nc->workers < 1 ? 1 : nc->workers);
	if (nworkers > SHM_WORKERS_MAX / 2)
		nworkers = SHM_WORKERS_MAX / 2;
	/* old and new generations overlap: both need counter stripes */
	for (p = 0; p < m->shm->max_workers; p++)
		if (atomic_load_explicit(&m->shm->workers[p].pid, memory_order_relaxed) == 0)
			freeslots++;
	if (nworkers > freeslots) {
		if (nworkers > m->shm->max_workers / 2) {
			snprintf(err, errlen, "reload: %u workers cannot run beside the "
			    "running ones (table has %u stripes); restart to grow",
			    nworkers, m->shm->max_workers);
			log_warnx("%s", err);
			conf_free(nc);
			return -1;
		}
		/*
		 * Older generations still drain: apply this reload (reading
		 * the file again, so the last one wins) once they are gone.
		 */
		m->reload_pending = 1;
		snprintf(err, errlen, "reload of %s deferred: older workers are still "
		    "draining; it applies as soon as they finish", name);
		log_info("%s", err);
		conf_free(nc);
		return 0;
	}
	if (reload_listeners(m, nc, nworkers, nfds, nafds, err, errlen) == -1) {
		log_warnx("%s", err);
		conf_free(nc);
		return -1;
	}

	/* committed from here on */
	master_table_load(m->shm, nc, m->generation + 1,
	    master_oldest_generation(m, m->generation + 1));
	reload_close_unused(m, nfds, nc->nlisten, nafds, nworkers);
	memcpy(m->lfds, nfds, sizeof(m->lfds));
	memcpy(m->afds, nafds, sizeof(m->afds));
	for (i = 0; i < nc->nlisten; i++)
		m->laddr[i] = nc->listen[i];
	m->nls = nc->nlisten;
	m->nworkers = nworkers;
	m->conf = nc;
	registry_publish(m);
	control_changed(m);
	m->generation++;
	for (i = 0; i < SHM_WORKERS_MAX; i++) {
		if (m->w[i].pid > 0) {
			m->w[i].old = 1;
			m->w[i].respawn_at = 0;
		} else {
			memset(&m->w[i], 0, sizeof(m->w[i]));
		}
	}
	master_spawn_generation(m);
	m->reload_deadline = m->loop.now + RELOAD_READY_MS;
	if (reload_prober_changed(oc, nc) && m->prober.pid > 0)
		kill(m->prober.pid, SIGTERM);	/* respawned on the new settings */
	if (reload_syncer_changed(oc, nc)) {
		if (m->syncer.pid > 0)
			kill(m->syncer.pid, SIGTERM);	/* respawned if a registry is still set */
		else if (nc->registry.url[0] != '\0')
			m->syncer.respawn_at = m->loop.now;
	}
	log_setverbose(m->verbose);
	log_info("reload: %s: generation %u, %u workers", name, m->generation,
	    nworkers);
	conf_free(oc);
	snprintf(err, errlen, "reloaded %s (generation %u)", name, m->generation);
	control_event(m, "reload", "ok: %s, generation %u, %u workers", name,
	    m->generation, nworkers);
	return 0;
}

/*
 * Once every worker of the newest generation says it is running, the
 * older ones are told to drain (SIGQUIT): they stop accepting, finish
 * what is in flight, and close keep-alive connections at their next
 * request.  Called from the master's loop.
 */
void
master_reload_check(struct master *m)
{
	size_t	i;
	int	ready = 1, old = 0;

	for (i = 0; i < SHM_WORKERS_MAX; i++) {
		struct mworker *mw = &m->w[i];

		if (mw->pid <= 0)
			continue;
		if (mw->old) {
			if (!mw->told)
				old++;
			continue;
		}
		if (atomic_load_explicit(&m->shm->workers[mw->stripe].state,
		    memory_order_acquire) != 1)
			ready = 0;
	}
	if (old == 0)
		return;
	if (!ready && m->loop.now < m->reload_deadline)
		return;
	if (!ready)
		log_warnx("reload: new workers not ready after %d ms; draining the old ones anyway",
		    RELOAD_READY_MS);
	for (i = 0; i < SHM_WORKERS_MAX; i++) {
		struct mworker *mw = &m->w[i];

		if (mw->pid > 0 && mw->old && !mw->told) {
			kill(mw->pid, SIGQUIT);
			mw->told = 1;
		}
	}
}

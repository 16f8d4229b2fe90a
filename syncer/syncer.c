/* The syncer role: pulls the service registry every registry.interval and sends the wanted backend set to the master. */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "master/master.h"
#include "shm/table.h"
#include "syncer/syncer.h"

struct syncer {
	struct conf		*cf;
	int			 fd;
	uint32_t		 batch;
	int			 state;		/* -1 unknown, 0 ok, 1 failing */
	int			 have_set;	/* a batch reached the master */
	uint64_t		 revision;	/* etcd: of the last batch sent */
	struct syncer_stats	 st;
	struct syncer_set	 set;		/* kept between pulls: no page faults */
};

/* Hand one message to the master; blocking is fine in this process. */
static int
syncer_send(void *arg, const void *msg, size_t len)
{
	struct syncer	*s = arg;
	ssize_t		 n;

	do
		n = send(s->fd, msg, len, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1) {
		log_warn("syncer: send to the master");
		return -1;
	}
	return 0;
}

/* The URL to pull for the configured format (the base URL without its trailing slashes). */
static void
syncer_url(const struct conf *cf, char *buf, size_t len)
{
	static const char *const paths[] = {
		[REGISTRY_MECH_COMPUTE] = "/api/v2/services/registry/services",
		[REGISTRY_SIMPLE] = "/services?healthy=true",
		[REGISTRY_ETCD] = "/v3/kv/range",
	};
	size_t	n;

	strlcpy(buf, cf->registry.url, len);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '/')
		buf[--n] = '\0';
	strlcat(buf, paths[cf->registry.format], len);
}

/*
 * One pull.  Returns 1 when a new set was parsed into set, 0 when the
 * registry is unchanged since the last batch (etcd revision), -1 on
 * failure with the reason in err.
 */
static int
syncer_pull(struct syncer *s, struct syncer_set *set, char *err, size_t errlen)
{
	const struct conf	*cf = s->cf;
	char			 url[CONF_PATH_MAX + 64], rbody[1200], *body = NULL;
	size_t			 len;
	uint64_t		 rev;
	int			 rc;

	syncer_url(cf, url, sizeof(url));
	if (cf->registry.format == REGISTRY_ETCD) {
		if (syncer_etcd_range_body(cf->registry.prefix, 1, rbody,
		    sizeof(rbody)) == -1) {
			snprintf(err, errlen, "registry.prefix too long");
			return -1;
		}
		if (syncer_fetch(url, rbody, cf->registry.token,
		    cf->registry.timeout_ms, cf->registry.max_size, &body, &len,
		    err, errlen) == -1)
			return -1;
		rc = syncer_etcd_revision(body, len, &rev);
		free(body);
		if (rc == -1) {
			snprintf(err, errlen, "not an etcd range answer");
			return -1;
		}
		if (s->have_set && rev == s->revision)
			return 0;
		syncer_etcd_range_body(cf->registry.prefix, 0, rbody, sizeof(rbody));
	}
	if (syncer_fetch(url, cf->registry.format == REGISTRY_ETCD ? rbody : NULL,
	    cf->registry.token, cf->registry.timeout_ms, cf->registry.max_size,
	    &body, &len, err, errlen) == -1)
		return -1;
	rc = syncer_parse(cf, body, len, set, err, errlen);
	free(body);
	return rc == -1 ? -1 : 1;
}

/* One round: pull, then tell the master.  0, or -1 when the master is gone. */
static int
syncer_round(struct syncer *s)
{
	struct syncer_set	*set = &s->set;
	char			 err[sizeof(s->st.error)];
	uint64_t		 t0 = shm_mono_ms();
	int			 rc;

	syncer_set_clear(set);
	err[0] = '\0';
	rc = syncer_pull(s, set, err, sizeof(err));
	s->st.pull_ms = (uint32_t)(shm_mono_ms() - t0);
	if (rc == -1) {
		s->st.syncs_failed++;
		s->st.last_fail_ms = shm_now_ms();
		strlcpy(s->st.error, err, sizeof(s->st.error));
		if (s->state != 1)
			log_warnx("syncer: registry %s failing: %s; keeping the "
			    "last good set", s->cf->registry.url, err);
		else
			log_debug("syncer: pull failed: %s", err);
		s->state = 1;
		return syncer_status_send(SYNCER_MSG_FAIL, &s->st, syncer_send, s);
	}
	s->st.syncs_ok++;
	s->st.last_ok_ms = shm_now_ms();
	s->st.error[0] = '\0';
	if (rc == 0) {
		log_debug("syncer: registry unchanged (revision %llu)",
		    (unsigned long long)s->revision);
		rc = syncer_status_send(SYNCER_MSG_SAME, &s->st, syncer_send, s);
	} else {
		s->st.listed = (uint32_t)set->n;
		s->st.skipped = set->skipped;
		s->st.filtered = set->filtered;
		rc = syncer_batch_send(set, ++s->batch, &s->st, syncer_send, s);
		if (rc == 0) {
			s->have_set = 1;
			s->revision = set->revision;
		}
		if (s->state != 0)
			log_info("syncer: registry %s%s: %u services (%u invalid "
			    "records skipped, %u not wanted)", s->cf->registry.url,
			    s->state == 1 ? " is back" : "", s->st.listed,
			    s->st.skipped, s->st.filtered);
		else
			log_debug("syncer: %u services, %u skipped, %u filtered in "
			    "%u ms", s->st.listed, s->st.skipped, s->st.filtered,
			    s->st.pull_ms);
	}
	s->state = 0;
	return rc;
}

/*
 * Wait until the next round is due.  Returns -1 when the master is gone:
 * its end of the pair closed (the master alone holds it, so this is its
 * death, whoever our parent is now).
 */
static int
syncer_sleep(struct syncer *s, uint64_t until)
{
	struct pollfd	pfd;
	uint64_t	now;
	char		c;

	while ((now = shm_mono_ms()) < until) {
		pfd.fd = s->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, (int)(until - now > 1000 ? 1000 : until - now)) > 0) {
			/* the master sends nothing: readable means closed */
			if (recv(s->fd, &c, 1, MSG_DONTWAIT) == 0 ||
			    (pfd.revents & (POLLHUP | POLLERR)))
				return -1;
		}
	}
	return 0;
}

/*
 * The syncer process ("routerd: syncer", forked by the master when
 * registry.url is set).  fd is its end of a SOCK_SEQPACKET socketpair to
 * the master.  Never touches the shared table.  Returns the exit status:
 * 0 when the master is gone or on SIGTERM (default action).
 */
int
syncer_main(struct conf *cf, int fd)
{
	struct syncer	s;
	int		fl;
	uint64_t	next;

	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	memset(&s, 0, sizeof(s));
	s.cf = cf;
	s.fd = fd;
	s.state = -1;
	if ((fl = fcntl(fd, F_GETFL)) != -1 && (fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	if (strpbrk(cf->registry.token, "\r\n") != NULL) {
		log_warnx("syncer: registry.token contains a line break; not sent");
		cf->registry.token[0] = '\0';
	}
	syncer_json_arena(1);
	syncer_fetch_watch(fd);
	log_debug("syncer: pulling %s every %d ms", cf->registry.url,
	    cf->registry.interval_ms);
	for (;;) {
		next = shm_mono_ms() + (uint64_t)cf->registry.interval_ms;
		if (syncer_round(&s) == -1)
			break;
		if (syncer_sleep(&s, next) == -1)
			break;
	}
	syncer_set_free(&s.set);
	syncer_fetch_cleanup();
	return 0;
}

/* fakebe's main: options, listeners, the accept loop, signals, counters and fault mode. */

#include <sys/types.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bsd/string.h>

#include "fakebe.h"

#define FB_LISTEN_MAX	64

struct fb_listener {
	int		 fd;
	char		 addr[NI_MAXHOST + NI_MAXSERV + 4]; /* as bound */
	const char	*name;
};

struct fb_stats	 fb_stats;
atomic_int	 fb_fault = FAULT_NONE;
atomic_long	 fb_fault_ms;
atomic_ullong	 fb_seq;
int		 fb_debug;
char		**fb_models;
size_t		 fb_nmodels;

static char *default_models[] = { "demo-model" };

static void	usage(void) __attribute__((noreturn));
static int	listener_open(const char *, struct fb_listener *);
static int	models_parse(char *);
static void	accept_one(const struct fb_listener *);

static void
usage(void)
{
	fprintf(stderr, "usage: fakebe [-d] [-F mode] -l addr:port [-l addr:port ...]"
	    " [-m model,...] [-n name ...]\n");
	exit(1);
}

/*
 * Parse a fault mode ("none", "500", "hang", "close", "slow:MS") into *kind
 * and *ms.  Returns 0, or -1 if the string is not a mode.
 */
int
fault_parse(const char *s, int *kind, long *ms)
{
	char	*end;
	long	 v;

	*ms = 0;
	if (strcmp(s, "none") == 0)
		*kind = FAULT_NONE;
	else if (strcmp(s, "500") == 0)
		*kind = FAULT_500;
	else if (strcmp(s, "hang") == 0)
		*kind = FAULT_HANG;
	else if (strcmp(s, "close") == 0)
		*kind = FAULT_CLOSE;
	else if (strncmp(s, "slow:", 5) == 0) {
		errno = 0;
		v = strtol(s + 5, &end, 10);
		if (s[5] == '\0' || *end != '\0' || errno != 0 || v < 0 ||
		    v > 3600 * 1000)
			return -1;
		*kind = FAULT_SLOW;
		*ms = v;
	} else
		return -1;
	return 0;
}

/* Write the current fault mode, in fault_parse()'s syntax, into buf. */
void
fault_name(char *buf, size_t len)
{
	switch (atomic_load(&fb_fault)) {
	case FAULT_500:
		snprintf(buf, len, "500");
		break;
	case FAULT_HANG:
		snprintf(buf, len, "hang");
		break;
	case FAULT_CLOSE:
		snprintf(buf, len, "close");
		break;
	case FAULT_SLOW:
		snprintf(buf, len, "slow:%ld", atomic_load(&fb_fault_ms));
		break;
	default:
		snprintf(buf, len, "none");
		break;
	}
}

/* Sleep ms milliseconds, whatever signals arrive. */
void
fb_msleep(long ms)
{
	struct timespec	 ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * Bind and listen on spec ("ADDR:PORT", "[V6]:PORT", ":PORT" or "*:PORT";
 * port 0 picks a free one) and fill l->fd and l->addr with what was bound.
 * Returns 0, or -1 with a message on stderr.
 */
static int
listener_open(const char *spec, struct fb_listener *l)
{
	struct addrinfo		 hints, *res;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof(ss);
	char			 host[FB_NAME_MAX], hbuf[NI_MAXHOST], pbuf[NI_MAXSERV];
	const char		*colon, *port;
	size_t			 hlen;
	int			 fd, on = 1, rv;

	if ((colon = strrchr(spec, ':')) == NULL) {
		fprintf(stderr, "fakebe: %s: want ADDR:PORT\n", spec);
		return -1;
	}
	port = colon + 1;
	hlen = colon - spec;
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		spec++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		fprintf(stderr, "fakebe: %s: address too long\n", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		strlcpy(host, "0.0.0.0", sizeof(host));

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rv = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "fakebe: %s: %s\n", spec, gai_strerror(rv));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
	    res->ai_protocol);
	if (fd == -1) {
		fprintf(stderr, "fakebe: socket: %s\n", strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 1024) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1) {
		fprintf(stderr, "fakebe: %s:%s: %s\n", host, port,
		    strerror(errno));
		freeaddrinfo(res);
		close(fd);
		return -1;
	}
	freeaddrinfo(res);
	if ((rv = getnameinfo((struct sockaddr *)&ss, sslen, hbuf, sizeof(hbuf),
	    pbuf, sizeof(pbuf), NI_NUMERICHOST | NI_NUMERICSERV)) != 0) {
		fprintf(stderr, "fakebe: getnameinfo: %s\n", gai_strerror(rv));
		close(fd);
		return -1;
	}
	if (ss.ss_family == AF_INET6)
		snprintf(l->addr, sizeof(l->addr), "[%s]:%s", hbuf, pbuf);
	else
		snprintf(l->addr, sizeof(l->addr), "%s:%s", hbuf, pbuf);
	l->fd = fd;
	return 0;
}

/* Split a comma-separated model list into fb_models.  Returns 0 or -1. */
static int
models_parse(char *s)
{
	char	*tok;

	fb_nmodels = 0;
	fb_models = NULL;
	while ((tok = strsep(&s, ",")) != NULL) {
		if (*tok == '\0')
			continue;
		fb_models = reallocarray(fb_models, fb_nmodels + 1,
		    sizeof(*fb_models));
		if (fb_models == NULL)
			return -1;
		fb_models[fb_nmodels++] = tok;
	}
	return fb_nmodels > 0 ? 0 : -1;
}

/*
 * Accept one connection on l and hand it to a detached thread of its own.
 * Transient accept failures (EMFILE, ECONNABORTED, ...) are survived.
 */
static void
accept_one(const struct fb_listener *l)
{
	pthread_attr_t	 attr;
	pthread_t	 tid;
	struct fb_conn	*c;
	int		 fd, on = 1;

	if ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) == -1) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)
			fb_msleep(10);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->name = l->name;
	atomic_fetch_add(&fb_stats.connections, 1);
	atomic_fetch_add(&fb_stats.open, 1);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 1024 * 1024);
	if (pthread_create(&tid, &attr, conn_main, c) != 0) {
		atomic_fetch_sub(&fb_stats.open, 1);
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

int
main(int argc, char *argv[])
{
	struct fb_listener	 ls[FB_LISTEN_MAX];
	struct pollfd		 pfd[FB_LISTEN_MAX + 1];
	const char		*specs[FB_LISTEN_MAX], *names[FB_LISTEN_MAX];
	char			*models = NULL;
	sigset_t		 mask;
	size_t			 nl = 0, nn = 0, i;
	long			 ms;
	int			 ch, kind, sfd;

	while ((ch = getopt(argc, argv, "dF:hl:m:n:")) != -1) {
		switch (ch) {
		case 'd':
			fb_debug = 1;
			break;
		case 'F':
			if (fault_parse(optarg, &kind, &ms) == -1) {
				fprintf(stderr, "fakebe: bad fault mode %s\n",
				    optarg);
				usage();
			}
			atomic_store(&fb_fault_ms, ms);
			atomic_store(&fb_fault, kind);
			break;
		case 'l':
			if (nl == FB_LISTEN_MAX)
				usage();
			specs[nl++] = optarg;
			break;
		case 'm':
			models = optarg;
			break;
		case 'n':
			if (nn == FB_LISTEN_MAX || strlen(optarg) >= FB_NAME_MAX ||
			    strpbrk(optarg, "\r\n") != NULL)
				usage();
			names[nn++] = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || nl == 0)
		usage();
	if (models != NULL) {
		if (models_parse(models) == -1) {
			fprintf(stderr, "fakebe: bad model list\n");
			return 1;
		}
	} else {
		fb_models = default_models;
		fb_nmodels = 1;
	}

	routes_init();

	/* Signals are taken synchronously by this thread only. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) == -1) {
		fprintf(stderr, "fakebe: signalfd: %s\n", strerror(errno));
		return 1;
	}

	for (i = 0; i < nl; i++) {
		if (listener_open(specs[i], &ls[i]) == -1)
			return 1;
		/* One -n names every listener; several name them in order. */
		if (nn == 1)
			ls[i].name = names[0];
		else if (i < nn)
			ls[i].name = names[i];
		else
			ls[i].name = ls[i].addr;
		pfd[i].fd = ls[i].fd;
		pfd[i].events = POLLIN;
	}
	pfd[nl].fd = sfd;
	pfd[nl].events = POLLIN;
	for (i = 0; i < nl; i++)
		printf("fakebe %s listening on %s\n", ls[i].name, ls[i].addr);
	fflush(stdout);

	for (;;) {
		if (poll(pfd, nl + 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "fakebe: poll: %s\n", strerror(errno));
			return 1;
		}
		if (pfd[nl].revents & POLLIN)
			break;
		for (i = 0; i < nl; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(&ls[i]);
	}
	for (i = 0; i < nl; i++)
		close(ls[i].fd);
	if (fb_debug)
		fprintf(stderr, "fakebe: exiting on signal\n");
	/*
	 * With no connection left, exit() runs the leak checker of SAN=1
	 * builds; otherwise skip atexit handlers that live threads may race.
	 */
	fflush(NULL);
	if (atomic_load(&fb_stats.open) == 0)
		exit(0);
	_exit(0);
}

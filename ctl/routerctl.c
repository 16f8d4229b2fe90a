/* routerctl: send one command to routerd's control socket and print the answer. */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "ctl/ctl.h"

#define CTL_TIMEOUT_S	60	/* a reload forks a generation: give it time */

static const char	*sockpath;

static void __attribute__((noreturn))
usage(int status)
{
	FILE	*fp = status ? stderr : stdout;

	fprintf(fp, "usage: routerctl [-j] [-s socket] command [argument ...]\n");
	if (status == 0) {
		fprintf(fp, "commands (any unambiguous prefix of each keyword):\n");
		ctl_usage(fp);
	}
	exit(status);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list	ap;

	fflush(stdout);
	fprintf(stderr, "routerctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int
ctl_connect(const char *path, int timeout_s)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { .tv_sec = timeout_s };
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path))
		die("%s: socket path too long", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		die("%s: %s", path, strerror(errno));
	if (timeout_s > 0 &&
	    (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1))
		die("setsockopt: %s", strerror(errno));
	return fd;
}

/* Read exactly n bytes.  1, 0 on EOF before the first byte, -1 on error or a short read. */
static int
ctl_read_full(int fd, void *p, size_t n)
{
	size_t	got = 0;
	ssize_t	r;

	while (got < n) {
		r = read(fd, (char *)p + got, n - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 0)
			return got == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

/* The next frame from the master as JSON; NULL at EOF (with *eof set) or on an error (die). */
static json_t *
ctl_recv(int fd, int *eof)
{
	uint8_t		 hdr[CTLPROTO_HDR];
	size_t		 n;
	char		*buf;
	json_t		*v;
	json_error_t	 jerr;
	int		 rc;

	*eof = 0;
	if ((rc = ctl_read_full(fd, hdr, sizeof(hdr))) == 0) {
		*eof = 1;
		return NULL;
	}
	if (rc == -1)
		die("%s: %s", sockpath, errno == EAGAIN ?
		    "timed out waiting for routerd" : errno ? strerror(errno) :
		    "connection closed");
	if (ctlproto_frame_parse(hdr, sizeof(hdr), CTLPROTO_REPLY_MAX, &n) == -1)
		die("%s: bad reply frame from routerd", sockpath);
	n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if ((buf = malloc(n)) == NULL)
		die("out of memory");
	if (ctl_read_full(fd, buf, n) != 1)
		die("%s: short reply from routerd", sockpath);
	v = json_loadb(buf, n, 0, &jerr);
	free(buf);
	if (v == NULL || !json_is_object(v))
		die("%s: bad reply from routerd: %s", sockpath, jerr.text);
	return v;
}

static void
ctl_send(int fd, const json_t *req)
{
	char	*frame;
	size_t	 len, off = 0;
	ssize_t	 w;

	if ((frame = ctlproto_frame_json(req, CTLPROTO_REQ_MAX, &len)) == NULL)
		die("request too large");
	while (off < len) {
		w = write(fd, frame + off, len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			die("%s: %s", sockpath, strerror(errno));
		off += (size_t)w;
	}
	free(frame);
}

/* The reply's data, or exit 1 with its error. */
static json_t *
ctl_check(json_t *reply)
{
	static char	 msg[8192];
	const char	*e;
	size_t		 n;

	if (json_is_true(json_object_get(reply, "ok")))
		return json_object_get(reply, "data");
	e = json_string_value(json_object_get(reply, "error"));
	strlcpy(msg, e != NULL ? e : "routerd refused the command", sizeof(msg));
	json_decref(reply);
	/* a bad reload has one FILE:LINE:COL line per error: print them as they are */
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	die("%s", msg);
}

static void
ctl_print_json(const json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

int
main(int argc, char *argv[])
{
	struct ctl_req	 req;
	json_t		*r, *reply, *data;
	char		 err[1024];
	int		 ch, json = 0, fd, eof;

	if ((sockpath = getenv("ROUTERD_SOCKET")) == NULL || *sockpath == '\0')
		sockpath = CTLPROTO_DEFAULT_SOCKET;
	while ((ch = getopt(argc, argv, "+hjs:")) != -1) {
		switch (ch) {
		case 'h':
			usage(0);
		case 'j':
			json = 1;
			break;
		case 's':
			sockpath = optarg;
			break;
		default:
			usage(1);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		usage(1);
	if (argc == 1 && strcmp(argv[0], "help") == 0)
		usage(0);
	if (ctl_parse(argc, argv, &req, err, sizeof(err)) == -1)
		die("%s", err);
	if ((r = ctl_request(&req, json)) == NULL)
		die("arguments must be UTF-8 text");
	signal(SIGPIPE, SIG_IGN);
	fd = ctl_connect(sockpath, req.cmd->id == CTL_MONITOR ? 0 : CTL_TIMEOUT_S);
	ctl_send(fd, r);
	json_decref(r);
	if ((reply = ctl_recv(fd, &eof)) == NULL)
		die("%s: routerd closed the connection", sockpath);
	data = ctl_check(reply);
	if (json)
		ctl_print_json(data);
	else
		ctl_show(stdout, req.cmd->id, data);
	json_decref(reply);
	if (req.cmd->id == CTL_MONITOR) {
		fflush(stdout);
		/* until routerd goes away or we are interrupted */
		while ((reply = ctl_recv(fd, &eof)) != NULL) {
			json_t *ev = json_object_get(reply, "event");

			if (ev != NULL) {
				if (json) {
					json_dumpf(ev, stdout, JSON_COMPACT);
					fputc('\n', stdout);
					fflush(stdout);
				} else
					ctl_event(stdout, ev);
			}
			json_decref(reply);
		}
		die("%s: routerd closed the connection", sockpath);
	}
	close(fd);
	if (fflush(stdout) == EOF)
		die("stdout: %s", strerror(errno));
	return 0;
}

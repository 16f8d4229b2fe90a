/* routerd's entry point: options, configuration check, daemonizing, then the master. */
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/libutil.h>
#include <bsd/unistd.h>

#include "conf/conf.h"
#include "lib/log.h"
#include "master/master.h"

#define DEFAULT_CONF	"/etc/routerd/routerd.yaml"

extern char **environ;

static void __attribute__((noreturn))
usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: routerd [-dhnTtv] [-f file] [--long-flag value ...]\n");
	if (status == 0) {
		size_t i;

		fprintf(stdout, "long flags:");
		for (i = 0; i < conf_ndirectives; i++)
			if (conf_directives[i].flag != NULL)
				fprintf(stdout, " --%s", conf_directives[i].flag);
		fprintf(stdout, "\n");
	}
	exit(status);
}

/* Every connection is a descriptor or two: take the hard limit, as nginx's worker_rlimit_nofile would. */
static void
raise_nofile(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit RLIMIT_NOFILE");
	}
}

int
main(int argc, char *argv[])
{
	struct master	 m;
	struct option	*lopts;
	struct conf_flag *flags;
	size_t		 nflags = 0, nl = 0, i;
	int		 ch, test = 0, dump = 0, verbose = 0, foreground = 0;
	int		 nerr = 0, idx, rc;
	const char	*file = NULL;
	pid_t		 other;

	setproctitle_init(argc, argv, environ);
	master_argv0_len = strlen(argv[0]);
	memset(&m, 0, sizeof(m));

	/* the long flags come from the directive table */
	lopts = calloc(conf_ndirectives + 2, sizeof(*lopts));
	flags = calloc((size_t)argc + 1, sizeof(*flags));
	if (lopts == NULL || flags == NULL)
		fatal("calloc");
	for (i = 0; i < conf_ndirectives; i++) {
		if (conf_directives[i].flag == NULL)
			continue;
		lopts[nl].name = conf_directives[i].flag;
		lopts[nl].has_arg = required_argument;
		lopts[nl].val = 0x100 + (int)i;
		nl++;
	}
	lopts[nl].name = "help";
	lopts[nl].val = 'h';

	while ((ch = getopt_long(argc, argv, "df:hnTtv", lopts, &idx)) != -1) {
		switch (ch) {
		case 'd':
			foreground = 1;
			break;
		case 'f':
			file = optarg;
			break;
		case 'h':
			usage(0);
		case 'n':
		case 't':
			test = 1;
			break;
		case 'T':
			dump = 1;
			break;
		case 'v':
			verbose++;
			break;
		default:
			if (ch >= 0x100) {
				flags[nflags].name = conf_directives[ch - 0x100].flag;
				flags[nflags].value = optarg;
				nflags++;
				break;
			}
			usage(1);
		}
	}
	if (optind != argc)
		usage(1);

	log_init(1, verbose);
	if (file == NULL && access(DEFAULT_CONF, F_OK) == 0)
		file = DEFAULT_CONF;
	m.conf = conf_load(file, flags, nflags, stderr, &nerr);
	if (m.conf == NULL) {
		fprintf(stderr, "routerd: %s: %d error%s\n",
		    file ? file : "<default>", nerr, nerr == 1 ? "" : "s");
		free(lopts);
		free(flags);
		return 1;
	}
	if (test || dump) {
		if (dump)
			conf_dump(m.conf, stdout);
		if (test)
			fprintf(stderr, "routerd: configuration %s is ok\n",
			    file ? file : "<default>");
		conf_free(m.conf);
		free(lopts);
		free(flags);
		return 0;
	}
	if (file == NULL)
		log_info("no %s: using the embedded default configuration", DEFAULT_CONF);
	m.conffile = file;
	m.flags = flags;
	m.nflags = nflags;
	m.foreground = foreground;
	m.verbose = verbose;

	if (m.conf->pidfile[0] != '\0') {
		m.pfh = pidfile_open(m.conf->pidfile, 0644, &other);
		if (m.pfh == NULL) {
			if (errno == EEXIST) {
				fprintf(stderr, "routerd: already running as pid %d (%s)\n",
				    (int)other, m.conf->pidfile);
				conf_free(m.conf);
				free(lopts);
				free(flags);
				return 1;
			}
			log_warn("pidfile %s", m.conf->pidfile);
		}
	}
	raise_nofile();
	master_title("master");
	log_procname("master");
	rc = master_main(&m);
	free(lopts);
	free(flags);
	return rc;
}

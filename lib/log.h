/* One logging API for every routerd process: stderr under -d, syslog otherwise. */
#ifndef LIB_LOG_H
#define LIB_LOG_H

#include <stdarg.h>

/*
 * log_init() picks the destination: to_stderr != 0 writes lines to stderr
 * (foreground, -d), otherwise syslog(3) with facility daemon.  verbose > 0
 * lets log_debug() through.  log_procname() sets the tag printed in front of
 * every line ("routerd", "worker 2", "prober") and may be called after fork.
 */
void	log_init(int to_stderr, int verbose);
void	log_procname(const char *name);
/*
 * A child that closes every descriptor it does not own calls
 * log_fds_closing() before and log_fds_closed() after: the syslog socket
 * is let go and made again, so syslog() never writes to (or closes) a
 * descriptor number that now belongs to something else.
 */
void	log_fds_closing(void);
void	log_fds_closed(void);
void	log_setverbose(int verbose);
int	log_getverbose(void);

/* log_warn() appends ": strerror(errno)"; the x variants do not. */
void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));

/*
 * fatal()/fatalx() log and exit(1).  Only for broken invariants between our
 * own processes or start-up failures; never for anything a peer sent.
 */
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif

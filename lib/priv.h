/* Dropping root in the children: the master binds and creates, the others run as the configured user. */
#ifndef LIB_PRIV_H
#define LIB_PRIV_H

#include <sys/types.h>

struct priv_id {
	int	 set;		/* 0: stay as started */
	uid_t	 uid;
	gid_t	 gid;
	char	 name[64];
};

/*
 * priv_lookup() resolves user (and group, or the user's primary group
 * when group is empty) once, in the master, before anything is forked:
 * 0, or -1 with a reason in err.  An empty user, or not running as root,
 * leaves id->set at 0.
 */
int	 priv_lookup(const char *user, const char *group, struct priv_id *id,
	    char *err, size_t errlen);

/* priv_drop() makes the calling process id for good: 0, or -1 (logged). */
int	 priv_drop(const struct priv_id *id);

#endif

/* Resolving and dropping to the configured user and group (lib/priv.h). */
#include <sys/types.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "lib/log.h"
#include "lib/priv.h"

int
priv_lookup(const char *user, const char *group, struct priv_id *id,
    char *err, size_t errlen)
{
	struct passwd	*pw;
	struct group	*gr;

	memset(id, 0, sizeof(*id));
	if (user == NULL || user[0] == '\0' || geteuid() != 0)
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen, "user \"%s\" does not exist", user);
		return -1;
	}
	id->uid = pw->pw_uid;
	id->gid = pw->pw_gid;
	if (group != NULL && group[0] != '\0') {
		if ((gr = getgrnam(group)) == NULL) {
			snprintf(err, errlen, "group \"%s\" does not exist", group);
			return -1;
		}
		id->gid = gr->gr_gid;
	}
	strlcpy(id->name, user, sizeof(id->name));
	id->set = 1;
	return 0;
}

int
priv_drop(const struct priv_id *id)
{
	if (!id->set)
		return 0;
	if (setgroups(1, &id->gid) == -1 || setresgid(id->gid, id->gid, id->gid) == -1 ||
	    setresuid(id->uid, id->uid, id->uid) == -1) {
		log_warn("cannot drop privileges to %s", id->name);
		return -1;
	}
	/* make sure there is no way back */
	if (setuid(0) != -1) {
		log_warnx("privileges of %s could be regained; refusing to run", id->name);
		return -1;
	}
	return 0;
}

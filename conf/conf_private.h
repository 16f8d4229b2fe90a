/* What the files of conf/ share with each other and with nobody else. */
#ifndef CONF_CONF_PRIVATE_H
#define CONF_CONF_PRIVATE_H

#include <stdio.h>

#include "conf.h"

#define CONF_LISTEN_DEFAULT	"0.0.0.0:8080"
#define CONF_DEFAULT_NAME	"<default>"	/* file name of conf_default_yaml */
#define CONF_ERR_MAX		256

/* Where a setting's value came from, so a later check can point at it. */
enum conf_origin_kind {
	ORIGIN_DEFAULT = 0,
	ORIGIN_FILE,
	ORIGIN_ENV,
	ORIGIN_FLAG
};

struct conf_origin {
	enum conf_origin_kind	 kind;
	int			 line, column;	/* 1-based, ORIGIN_FILE */
	const char		*name;		/* env var or flag, static */
};

struct conf_mark {
	int	 line, column;			/* 1-based; 0 = unknown */
};

/* One error waiting to be written, see conf_err(). */
struct conf_msg {
	int	 line, column;			/* INT_MAX: no file position */
	size_t	 seq;				/* order of discovery */
	char	*text;				/* the whole line, with \n */
};

/*
 * The state of one conf_load(): the object being built, the error sink and
 * what the file walk learnt that struct conf has no room for.
 */
struct conf_loader {
	struct conf		*conf;
	const char		*file;		/* for messages: path or "<default>" */
	void			*doc;		/* the yaml_document_t being read */
	FILE			*errf;
	int			 nerrors;
	struct conf_msg		*msgs;		/* kept for conf_msg_flush() */
	size_t			 nmsgs, msgcap;

	struct conf_origin	*origins;	/* one per conf_directives[] row */
	struct conf_mark	 listen_marks[CONF_LISTEN_MAX];
	int			 listen_given;	/* a listen: key was present */
	struct conf_mark	*pool_marks;	/* one per conf.pools, parallel */
	size_t			 pool_cap;
	struct conf_mark	*route_marks;	/* of each route's pool: value */
	char			(*route_pools)[CONF_NAME_MAX];
	size_t			 route_cap;
};

/* conf.c */
void	conf_err(struct conf_loader *, int line, int column, const char *, ...)
	    __attribute__((format(printf, 4, 5)));
void	conf_err_at(struct conf_loader *, const struct conf_origin *,
	    const char *, ...) __attribute__((format(printf, 3, 4)));
int	conf_pool_add(struct conf_loader *, const char *name,
	    struct conf_mark);

/* directives.c */
int	conf_directive_set(const struct conf_directive *, void *obj,
	    const char *text, char *err, size_t errlen);
int	conf_defaults(const struct conf_directive *, size_t, void *obj,
	    char *err, size_t errlen);
const struct conf_directive *conf_key_find(const struct conf_directive *,
	    size_t, const char *);
int	conf_is_section(const char *);
int	conf_type_quoted(const struct conf_directive *);
int	conf_name_check(const char *, char *, size_t);
extern const char *const conf_strategy_names[];

/* yaml.c */
int	conf_yaml_load(struct conf_loader *, FILE *fp, const char *text);

#endif

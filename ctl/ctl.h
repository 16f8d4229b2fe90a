/* routerctl's parts: the keyword parser (parse.c), output tables (show.c), the client (routerctl.c). */
#ifndef CTL_CTL_H
#define CTL_CTL_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "lib/ctlproto.h"

/* What ctl_parse() makes of a command line. */
struct ctl_req {
	const struct ctlproto_cmd *cmd;
	char		**args;		/* the words after the keywords (argv's) */
	int		  nargs;
};

/*
 * ctl_parse() matches argv against the grammar of lib/ctlproto.c, one
 * keyword at a time: an exact keyword wins, else an abbreviation that
 * starts exactly one keyword at that position (or one marked preferred).
 * The words after the keywords are the arguments, counted against the
 * row.  Returns 0 and fills req, or -1 with a one-line message in err:
 * "unknown command: X; valid commands: ...", "ambiguous command: X
 * (show, stop, strategy)", "incomplete command: ...; valid commands: ..."
 * or "usage: backend weight NAME N".  No I/O: unit-tested.
 */
int	 ctl_parse(int argc, char *argv[], struct ctl_req *req, char *err,
	    size_t errlen);

/* ctl_request() builds {"cmd": [keywords..., args...], "json": json}; NULL if out of memory. */
json_t	*ctl_request(const struct ctl_req *, int json);

/* ctl_usage() prints every command with its arguments and help line. */
void	 ctl_usage(FILE *);

/*
 * ctl_show() prints the data of a successful reply to cmd as the human
 * tables of routerctl (columns aligned); ctl_event() prints one monitor
 * event as one line.
 */
void	 ctl_show(FILE *, enum ctlproto_id cmd, const json_t *data);
void	 ctl_event(FILE *, const json_t *ev);

/*
 * ctl_table() prints rows (a JSON array of objects) with one column per
 * entry of cols: title, key in each row, and right alignment (numbers).
 * Strings print as they are, numbers in decimal (reals with one decimal),
 * arrays joined with ",", null and missing keys as "-".
 */
struct ctl_col {
	const char	*title;
	const char	*key;
	int		 right;
};
void	 ctl_table(FILE *, const struct ctl_col *, size_t ncols, const json_t *rows);

#endif

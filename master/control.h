/* Inside the control socket: what master/control.c (transport) and master/ctlcmd.c (commands) share. */
#ifndef MASTER_CONTROL_H
#define MASTER_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/ctlproto.h"
#include "master/master.h"

/*
 * A command handler runs in the master's loop and must not block.  args
 * are the request's words after the keywords, their count already
 * checked against the grammar row; json says the client wants data for
 * -j rather than for its tables (only show config differs).  Returns the
 * reply's data (a new reference, an object), or NULL with a one-line
 * reason in err (several lines for a bad reload).
 */
typedef json_t	*(*control_handler)(struct master *, const char *const *args,
		    int nargs, int json, char *err, size_t errlen);

/* Indexed by enum ctlproto_id; every entry is set (checked at control_init()). */
extern const control_handler	 control_handlers[CTL_NCMDS];

/* Words for the table's states. */
const char	*control_health_word(uint32_t);
const char	*control_breaker_word(uint32_t);
const char	*control_force_word(uint32_t);
const char	*control_state_word(uint32_t flags);

/* The name of pool idx in the table ("" if unused); master only (it is the writer). */
void		 control_pool_name(const struct shm_hdr *, uint32_t idx, char *buf,
		    size_t len);

/* RFC 3339 UTC text of CLOCK_REALTIME ms, with milliseconds when millis != 0. */
void		 control_time(uint64_t ms, int millis, char *buf, size_t len);

#endif

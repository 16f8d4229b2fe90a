/* A worker's link to the master's control protocol: the admin API's writes, forwarded without blocking. */
#ifndef WORKER_MCTL_H
#define WORKER_MCTL_H

#include <jansson.h>

struct worker;

#define MCTL_TIMEOUT_MS	3000	/* the master answers within this, or the write is 504 */

/*
 * The answer to one forwarded request: reply is the master's frame
 * ({"ok": ..., "data" | "error": ...}; borrowed, valid during the call),
 * or NULL when there is none: status then says why (503: no link to the
 * master, 504: no answer within MCTL_TIMEOUT_MS).
 */
typedef void	(*mctl_cb)(void *arg, json_t *reply, int status);

/* Takes the worker's end of its socketpair (-1: none, every request is then 503). */
void	 mctl_init(struct worker *, int fd);

/*
 * mctl_send() queues {"cmd": words} for the master and returns at once;
 * cb(arg, ...) is called exactly once from the worker's loop, never from
 * inside mctl_send().  0, or -1 (out of memory, or mctl_init() never
 * ran: cb is not called).
 */
int	 mctl_send(const char *const *words, size_t nwords, mctl_cb cb, void *arg);

/* Forget every pending callback with this arg (its owner is going away). */
void	 mctl_cancel(void *arg);

#endif

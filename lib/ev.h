/* A small edge-triggered epoll loop with a timer heap, one per process. */
#ifndef LIB_EV_H
#define LIB_EV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

struct ev_loop;
struct ev_io;
struct ev_timer;

typedef void	(*ev_io_cb)(struct ev_loop *, struct ev_io *, uint32_t events);
typedef void	(*ev_timer_cb)(struct ev_loop *, struct ev_timer *);

/* A file descriptor watched by the loop; embed it in the owner's struct. */
struct ev_io {
	int		 fd;
	ev_io_cb	 cb;
};

/*
 * A one-shot timer; embed it.  deadline is what the owner wants; key is
 * where the heap has it.  Moving a deadline later only updates deadline
 * (no heap work); the heap notices when key comes due and re-files it.
 */
struct ev_timer {
	uint64_t	 deadline;	/* monotonic ms, 0 = not armed */
	uint64_t	 key;
	size_t		 idx;		/* position in the heap, SIZE_MAX if none */
	ev_timer_cb	 cb;
};

struct ev_loop {
	int		 epfd;
	int		 stop;
	uint64_t	 now;		/* monotonic ms, refreshed each iteration */
	struct ev_timer	**heap;
	size_t		 nheap, heapcap;
	struct epoll_event *events;
	int		 maxevents;
};

/* 0 on success, -1 with errno. */
int	 ev_init(struct ev_loop *, int maxevents);
void	 ev_close(struct ev_loop *);

/* Register/modify/remove fd interest; events are EPOLL* bits.  0 or -1. */
int	 ev_add(struct ev_loop *, struct ev_io *, uint32_t events);
int	 ev_mod(struct ev_loop *, struct ev_io *, uint32_t events);
int	 ev_del(struct ev_loop *, struct ev_io *);

void	 ev_timer_init(struct ev_timer *, ev_timer_cb);
/* Arm (or re-arm) t to fire ms milliseconds from loop->now. */
void	 ev_timer_after(struct ev_loop *, struct ev_timer *, uint64_t ms);
void	 ev_timer_stop(struct ev_loop *, struct ev_timer *);

static inline int
ev_timer_armed(const struct ev_timer *t)
{
	return t->deadline != 0;
}

/* Wait at most max_ms (-1: until an event or timer) and dispatch.  Returns -1 on a loop failure. */
int	 ev_run_once(struct ev_loop *, int max_ms);
uint64_t ev_update_now(struct ev_loop *);

#endif

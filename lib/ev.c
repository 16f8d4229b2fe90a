/* The epoll loop and timer heap of lib/ev.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ev.h"

uint64_t
ev_update_now(struct ev_loop *l)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	l->now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	return l->now;
}

int
ev_init(struct ev_loop *l, int maxevents)
{
	memset(l, 0, sizeof(*l));
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return -1;
	l->maxevents = maxevents;
	if ((l->events = calloc((size_t)maxevents, sizeof(*l->events))) == NULL) {
		close(l->epfd);
		return -1;
	}
	ev_update_now(l);
	return 0;
}

void
ev_close(struct ev_loop *l)
{
	if (l->epfd != -1)
		close(l->epfd);
	free(l->events);
	free(l->heap);
	memset(l, 0, sizeof(*l));
	l->epfd = -1;
}

int
ev_add(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct epoll_event	ee = { .events = events, .data.ptr = io };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ee);
}

int
ev_mod(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct epoll_event	ee = { .events = events, .data.ptr = io };

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ee);
}

int
ev_del(struct ev_loop *l, struct ev_io *io)
{
	return epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* Heap helpers: a binary min-heap on key; each timer knows its index. */
static void
ev_heap_swap(struct ev_loop *l, size_t a, size_t b)
{
	struct ev_timer	*t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->idx = a;
	l->heap[b]->idx = b;
}

static void
ev_heap_up(struct ev_loop *l, size_t i)
{
	while (i > 0) {
		size_t	p = (i - 1) / 2;

		if (l->heap[p]->key <= l->heap[i]->key)
			break;
		ev_heap_swap(l, p, i);
		i = p;
	}
}

static void
ev_heap_down(struct ev_loop *l, size_t i)
{
	for (;;) {
		size_t	c = 2 * i + 1, m = i;

		if (c < l->nheap && l->heap[c]->key < l->heap[m]->key)
			m = c;
		if (c + 1 < l->nheap && l->heap[c + 1]->key < l->heap[m]->key)
			m = c + 1;
		if (m == i)
			break;
		ev_heap_swap(l, i, m);
		i = m;
	}
}

static int
ev_heap_push(struct ev_loop *l, struct ev_timer *t)
{
	if (l->nheap == l->heapcap) {
		size_t		 ncap = l->heapcap ? l->heapcap * 2 : 256;
		struct ev_timer	**nh;

		if ((nh = reallocarray(l->heap, ncap, sizeof(*nh))) == NULL)
			return -1;
		l->heap = nh;
		l->heapcap = ncap;
	}
	t->idx = l->nheap;
	l->heap[l->nheap++] = t;
	ev_heap_up(l, t->idx);
	return 0;
}

static void
ev_heap_remove(struct ev_loop *l, struct ev_timer *t)
{
	size_t	i = t->idx;

	if (i == SIZE_MAX)
		return;
	l->nheap--;
	if (i != l->nheap) {
		l->heap[i] = l->heap[l->nheap];
		l->heap[i]->idx = i;
		ev_heap_down(l, i);
		ev_heap_up(l, l->heap[i]->idx);
	}
	t->idx = SIZE_MAX;
}

void
ev_timer_init(struct ev_timer *t, ev_timer_cb cb)
{
	t->deadline = 0;
	t->key = 0;
	t->idx = SIZE_MAX;
	t->cb = cb;
}

void
ev_timer_after(struct ev_loop *l, struct ev_timer *t, uint64_t ms)
{
	uint64_t	d = l->now + ms;

	if (d == 0)
		d = 1;
	t->deadline = d;
	if (t->idx != SIZE_MAX) {
		if (d >= t->key)
			return;		/* lazily re-filed when the old key comes due */
		t->key = d;
		ev_heap_up(l, t->idx);
		return;
	}
	t->key = d;
	if (ev_heap_push(l, t) == -1)
		t->deadline = 0;	/* out of memory: the timer cannot be armed */
}

void
ev_timer_stop(struct ev_loop *l, struct ev_timer *t)
{
	ev_heap_remove(l, t);
	t->deadline = 0;
}

/* Fire every timer that is due; returns ms until the next one or -1. */
static int
ev_timers_run(struct ev_loop *l)
{
	while (l->nheap > 0) {
		struct ev_timer	*t = l->heap[0];

		if (t->key > l->now)
			return (int)(t->key - l->now);
		if (t->deadline != t->key) {
			/* moved later since it was filed: re-file, due or not, so due timers fire in deadline order */
			t->key = t->deadline;
			ev_heap_down(l, 0);
			continue;
		}
		ev_heap_remove(l, t);
		t->deadline = 0;
		t->cb(l, t);
	}
	return -1;
}

int
ev_run_once(struct ev_loop *l, int max_ms)
{
	int	n, i, wait;

	ev_update_now(l);
	wait = ev_timers_run(l);
	if (max_ms >= 0 && (wait < 0 || wait > max_ms))
		wait = max_ms;
	n = epoll_wait(l->epfd, l->events, l->maxevents, wait);
	if (n == -1)
		return errno == EINTR ? 0 : -1;
	ev_update_now(l);
	for (i = 0; i < n; i++) {
		struct ev_io	*io = l->events[i].data.ptr;

		io->cb(l, io, l->events[i].events);
	}
	ev_timers_run(l);
	return 0;
}

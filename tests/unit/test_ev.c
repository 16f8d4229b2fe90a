/* Unit tests of the epoll loop and timer heap in lib/ev.c. */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "lib/ev.h"

/*
 * Most timer tests need no waiting: ev_timer_after() counts from
 * loop->now, so arming with loop->now pushed into the past files
 * deadlines that are already due, and one ev_run_once(l, 0) fires them
 * all.  Only the lazy re-arm and the from-callback tests sleep, a few ms
 * each, bounded by a wall-clock guard so a bug becomes a failure, not a
 * hang (no criterion .timeout: see tests/unit/test_shm.c).
 */
#define PAST_MS		100000u		/* how far back "now" is pushed */
#define GUARD_MS	500u		/* longest any test waits for a timer */

struct rec_timer {
	struct ev_timer	 t;
	uint64_t	 want;		/* the deadline it was armed for */
	uint64_t	 fired_at;	/* loop->now in the callback */
	int		 id;
	int		 fired;
};

static int	 order[4096];
static int	 norder;

static struct rec_timer *
rec_of(struct ev_timer *t)
{
	return (struct rec_timer *)((char *)t - offsetof(struct rec_timer, t));
}

static void
rec_cb(struct ev_loop *l, struct ev_timer *t)
{
	struct rec_timer *r = rec_of(t);

	r->fired++;
	r->fired_at = l->now;
	if (norder < (int)(sizeof(order) / sizeof(order[0])))
		order[norder++] = r->id;
}

static void
loop_init(struct ev_loop *l)
{
	norder = 0;
	cr_assert_eq(ev_init(l, 16), 0, "ev_init: %s", strerror(errno));
}

/* Arm r to fire ms after a "now" pushed back by PAST_MS: already due. */
static void
arm_past(struct ev_loop *l, struct rec_timer *r, uint64_t ms)
{
	uint64_t real = ev_update_now(l);

	l->now = real - PAST_MS;
	ev_timer_after(l, &r->t, ms);
	r->want = l->now + ms;
	l->now = real;
}

/* Run the loop until done() or GUARD_MS of wall time; 1 if done. */
static int
run_until(struct ev_loop *l, const int *flag)
{
	uint64_t end = ev_update_now(l) + GUARD_MS;

	while (!*flag) {
		cr_assert_eq(ev_run_once(l, 20), 0);
		if (ev_update_now(l) > end)
			return 0;
	}
	return 1;
}

Test(ev_timer, init_state)
{
	struct rec_timer r = { .id = 1 };

	ev_timer_init(&r.t, rec_cb);
	cr_assert_not(ev_timer_armed(&r.t));
	cr_assert_eq(r.t.idx, SIZE_MAX);
	cr_assert_eq(r.t.cb, rec_cb);
}

Test(ev_timer, many_fire_in_deadline_order)
{
	enum { N = 1000 };		/* past the first heap growth (256) */
	static struct rec_timer r[N];
	struct ev_loop	 l;
	uint64_t	 seed = 88172645463325252ULL;
	int		 i;

	loop_init(&l);
	for (i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].id = i;
		ev_timer_init(&r[i].t, rec_cb);
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		arm_past(&l, &r[i], seed % 50000);
		cr_assert(ev_timer_armed(&r[i].t));
	}
	cr_assert_eq(l.nheap, (size_t)N);
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(norder, N, "fired %d of %d", norder, N);
	for (i = 0; i < N; i++) {
		cr_assert_eq(r[i].fired, 1, "timer %d fired %d times", i, r[i].fired);
		cr_assert_not(ev_timer_armed(&r[i].t));
		cr_assert_eq(r[i].t.idx, SIZE_MAX);
	}
	for (i = 1; i < N; i++)
		cr_assert_leq(r[order[i - 1]].want, r[order[i]].want,
		    "fire %d (deadline %llu) after one due at %llu", i,
		    (unsigned long long)r[order[i]].want,
		    (unsigned long long)r[order[i - 1]].want);
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, future_timers_do_not_fire_early)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 }, b = { .id = 1 };

	loop_init(&l);
	ev_timer_init(&a.t, rec_cb);
	ev_timer_init(&b.t, rec_cb);
	arm_past(&l, &a, 10);
	ev_timer_after(&l, &b.t, 60000);
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(b.fired, 0);
	cr_assert(ev_timer_armed(&b.t));
	cr_assert_eq(l.nheap, 1);
	ev_timer_stop(&l, &b.t);
	ev_close(&l);
}

Test(ev_timer, rearm_earlier_moves_up_the_heap)
{
	enum { N = 64 };
	static struct rec_timer r[N];
	struct ev_loop	 l;
	int		 i;

	loop_init(&l);
	for (i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].id = i;
		ev_timer_init(&r[i].t, rec_cb);
		ev_timer_after(&l, &r[i].t, 60000 + (uint64_t)i);
	}
	/* the last one, deepest in the heap, is made due right now */
	arm_past(&l, &r[N - 1], 5);
	cr_assert_eq(l.nheap, (size_t)N, "re-arm must not file the timer twice");
	cr_assert_eq(l.heap[0], &r[N - 1].t);
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(norder, 1);
	cr_assert_eq(order[0], N - 1);
	cr_assert_eq(l.nheap, (size_t)N - 1);
	for (i = 0; i < N - 1; i++)
		ev_timer_stop(&l, &r[i].t);
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, rearm_earlier_reorders_due_timers)
{
	struct ev_loop	 l;
	struct rec_timer r[3] = { { .id = 0 }, { .id = 1 }, { .id = 2 } };
	int		 i;

	loop_init(&l);
	for (i = 0; i < 3; i++)
		ev_timer_init(&r[i].t, rec_cb);
	arm_past(&l, &r[0], 100);
	arm_past(&l, &r[1], 200);
	arm_past(&l, &r[2], 300);
	arm_past(&l, &r[2], 50);	/* now the first */
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(norder, 3);
	cr_assert_eq(order[0], 2);
	cr_assert_eq(order[1], 0);
	cr_assert_eq(order[2], 1);
	ev_close(&l);
}

/*
 * Moving a deadline later leaves the heap key where it was; when the old
 * key comes due the loop must re-file, not fire.  The old deadline is
 * already past here, so firing on it would show at once.
 */
Test(ev_timer, rearm_later_is_lazy_and_fires_at_the_new_time)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 }, b = { .id = 1 };
	uint64_t	 key;

	loop_init(&l);
	ev_timer_init(&a.t, rec_cb);
	ev_timer_init(&b.t, rec_cb);
	arm_past(&l, &a, 50);			/* due long ago */
	key = a.t.key;
	ev_update_now(&l);
	ev_timer_after(&l, &a.t, 20);		/* later: lazy */
	a.want = l.now + 20;
	cr_assert_eq(a.t.key, key, "a later re-arm does no heap work");
	cr_assert_eq(a.t.deadline, a.want);
	cr_assert_eq(l.nheap, 1);
	ev_timer_after(&l, &b.t, 8);		/* due before a's new time */
	b.want = l.now + 8;

	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(a.fired, 0, "fired at the old deadline");
	cr_assert(ev_timer_armed(&a.t));
	cr_assert_eq(a.t.key, a.want, "re-filed at the new deadline");

	cr_assert(run_until(&l, &a.fired), "timer never fired");
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(b.fired, 1);
	cr_assert_geq(a.fired_at, a.want);
	cr_assert_geq(b.fired_at, b.want);
	cr_assert_eq(norder, 2);
	cr_assert_eq(order[0], 1, "b (8 ms) fires before a (20 ms)");
	cr_assert_eq(order[1], 0);
	ev_close(&l);
}

Test(ev_timer, rearm_later_twice_then_earlier_again)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 };
	uint64_t	 real;

	loop_init(&l);
	ev_timer_init(&a.t, rec_cb);
	real = ev_update_now(&l);
	ev_timer_after(&l, &a.t, 50000);
	ev_timer_after(&l, &a.t, 90000);	/* later: key stays */
	ev_timer_after(&l, &a.t, 70000);	/* still later than the key */
	cr_assert_eq(a.t.deadline, real + 70000);
	cr_assert_eq(a.t.key, real + 50000);
	arm_past(&l, &a, 0);			/* earlier than the key */
	cr_assert_eq(a.t.key, a.want);
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, stop_removes)
{
	enum { N = 40 };
	static struct rec_timer r[N];
	struct ev_loop	 l;
	int		 i;

	loop_init(&l);
	for (i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].id = i;
		ev_timer_init(&r[i].t, rec_cb);
		arm_past(&l, &r[i], (uint64_t)((i * 7919) % 1000));
	}
	for (i = 0; i < N; i += 3) {
		ev_timer_stop(&l, &r[i].t);
		cr_assert_not(ev_timer_armed(&r[i].t));
		cr_assert_eq(r[i].t.idx, SIZE_MAX);
		ev_timer_stop(&l, &r[i].t);	/* twice is harmless */
	}
	cr_assert_eq(l.nheap, (size_t)(N - (N + 2) / 3));
	cr_assert_eq(ev_run_once(&l, 0), 0);
	for (i = 0; i < N; i++)
		cr_assert_eq(r[i].fired, i % 3 == 0 ? 0 : 1, "timer %d", i);
	for (i = 1; i < norder; i++)
		cr_assert_leq(r[order[i - 1]].want, r[order[i]].want);
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, stop_unarmed_is_harmless)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 };

	loop_init(&l);
	ev_timer_init(&a.t, rec_cb);
	ev_timer_stop(&l, &a.t);
	cr_assert_not(ev_timer_armed(&a.t));
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

/* Callbacks that stop or arm timers. */
static struct rec_timer	*victim;
static struct rec_timer	*spawn;
static uint64_t		 spawn_ms;

static void
stopper_cb(struct ev_loop *l, struct ev_timer *t)
{
	rec_cb(l, t);
	ev_timer_stop(l, t);		/* itself: already off the heap */
	ev_timer_stop(l, &victim->t);
}

static void
spawner_cb(struct ev_loop *l, struct ev_timer *t)
{
	rec_cb(l, t);
	ev_timer_after(l, &spawn->t, spawn_ms);
	spawn->want = l->now + spawn_ms;
}

static int	 self_left;

static void
self_rearm_cb(struct ev_loop *l, struct ev_timer *t)
{
	struct rec_timer *r = rec_of(t);

	rec_cb(l, t);
	cr_assert_geq(l->now, r->want, "fired early");
	if (--self_left > 0) {
		ev_timer_after(l, t, 2);
		r->want = l->now + 2;
	}
}

Test(ev_timer, stop_inside_callback)
{
	struct ev_loop	 l;
	struct rec_timer r[5];
	int		 i;

	loop_init(&l);
	memset(r, 0, sizeof(r));
	for (i = 0; i < 5; i++) {
		r[i].id = i;
		ev_timer_init(&r[i].t, i == 1 ? stopper_cb : rec_cb);
		arm_past(&l, &r[i], (uint64_t)(10 * (i + 1)));
	}
	victim = &r[3];		/* due after the stopper: must not fire */
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(norder, 4);
	cr_assert_eq(order[0], 0);
	cr_assert_eq(order[1], 1);
	cr_assert_eq(order[2], 2);
	cr_assert_eq(order[3], 4);
	cr_assert_eq(r[3].fired, 0);
	cr_assert_not(ev_timer_armed(&r[3].t));
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, stop_inside_callback_of_a_timer_already_fired)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 }, b = { .id = 1 };

	loop_init(&l);
	ev_timer_init(&a.t, rec_cb);
	ev_timer_init(&b.t, stopper_cb);
	arm_past(&l, &a, 10);
	arm_past(&l, &b, 20);
	victim = &a;		/* fired first, then stopped again: no-op */
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(b.fired, 1);
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, armed_from_callback_due_now_fires_in_same_pass)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 }, s = { .id = 1 }, c = { .id = 2 };

	loop_init(&l);
	ev_timer_init(&a.t, spawner_cb);
	ev_timer_init(&s.t, rec_cb);
	ev_timer_init(&c.t, rec_cb);
	arm_past(&l, &a, 10);
	arm_past(&l, &c, 20);
	spawn = &s;
	spawn_ms = 0;
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(s.fired, 1);
	cr_assert_eq(c.fired, 1);
	cr_assert_eq(l.nheap, 0);
	ev_close(&l);
}

Test(ev_timer, armed_from_callback_fires_later)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 }, s = { .id = 1 };

	loop_init(&l);
	ev_timer_init(&a.t, spawner_cb);
	ev_timer_init(&s.t, rec_cb);
	arm_past(&l, &a, 10);
	spawn = &s;
	spawn_ms = 5;
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(s.fired, 0);
	cr_assert(ev_timer_armed(&s.t));
	cr_assert(run_until(&l, &s.fired), "spawned timer never fired");
	cr_assert_geq(s.fired_at, s.want);
	ev_close(&l);
}

Test(ev_timer, rearm_itself_from_callback)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 };
	int		 done = 0;
	uint64_t	 end;

	loop_init(&l);
	ev_timer_init(&a.t, self_rearm_cb);
	self_left = 3;
	arm_past(&l, &a, 0);
	end = ev_update_now(&l) + GUARD_MS;
	while (!done && ev_update_now(&l) <= end) {
		cr_assert_eq(ev_run_once(&l, 20), 0);
		done = self_left == 0;
	}
	cr_assert(done, "self re-arming timer stalled after %d fires", a.fired);
	cr_assert_eq(a.fired, 3);
	cr_assert_not(ev_timer_armed(&a.t));
	ev_close(&l);
}

/* I/O */
struct rec_io {
	struct ev_io	 io;
	int		 calls;
	uint32_t	 events;
};

static void
rec_io_cb(struct ev_loop *l, struct ev_io *io, uint32_t events)
{
	struct rec_io *r = (struct rec_io *)((char *)io - offsetof(struct rec_io, io));

	r->calls++;
	r->events |= events;
}

Test(ev_io, socketpair_edge_triggered)
{
	struct ev_loop	 l;
	struct rec_io	 r = { .io.cb = rec_io_cb };
	int		 sv[2];
	char		 buf[16];

	loop_init(&l);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	r.io.fd = sv[0];
	cr_assert_eq(ev_add(&l, &r.io, EPOLLIN | EPOLLET), 0);

	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(r.calls, 0, "nothing to read yet");

	cr_assert_eq(write(sv[1], "ab", 2), 2);
	cr_assert_eq(ev_run_once(&l, 100), 0);
	cr_assert_eq(r.calls, 1);
	cr_assert(r.events & EPOLLIN);

	/* edge-triggered: unread data does not report again */
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(r.calls, 1);

	/* a new edge does */
	cr_assert_eq(write(sv[1], "c", 1), 1);
	cr_assert_eq(ev_run_once(&l, 100), 0);
	cr_assert_eq(r.calls, 2);
	cr_assert_eq(read(sv[0], buf, sizeof(buf)), 3);

	/* switched to EPOLLOUT: a writable socket reports at once */
	r.events = 0;
	cr_assert_eq(ev_mod(&l, &r.io, EPOLLOUT | EPOLLET), 0);
	cr_assert_eq(ev_run_once(&l, 100), 0);
	cr_assert_eq(r.calls, 3);
	cr_assert(r.events & EPOLLOUT);
	cr_assert_not(r.events & EPOLLIN);

	/* removed: no more callbacks */
	cr_assert_eq(ev_del(&l, &r.io), 0);
	cr_assert_eq(write(sv[1], "d", 1), 1);
	cr_assert_eq(ev_run_once(&l, 0), 0);
	cr_assert_eq(r.calls, 3);
	cr_assert_eq(ev_del(&l, &r.io), -1);
	cr_assert_eq(errno, ENOENT);

	close(sv[0]);
	close(sv[1]);
	ev_close(&l);
}

Test(ev_io, pipe_delivers_in_and_hup)
{
	struct ev_loop	 l;
	struct rec_io	 rd = { .io.cb = rec_io_cb };
	int		 p[2];

	loop_init(&l);
	cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
	rd.io.fd = p[0];
	cr_assert_eq(ev_add(&l, &rd.io, EPOLLIN | EPOLLET | EPOLLRDHUP), 0);
	cr_assert_eq(ev_add(&l, &rd.io, EPOLLIN), -1, "added twice");
	cr_assert_eq(errno, EEXIST);

	cr_assert_eq(write(p[1], "x", 1), 1);
	cr_assert_eq(ev_run_once(&l, 100), 0);
	cr_assert_eq(rd.calls, 1);
	cr_assert(rd.events & EPOLLIN);

	rd.events = 0;
	close(p[1]);
	cr_assert_eq(ev_run_once(&l, 100), 0);
	cr_assert_eq(rd.calls, 2);
	cr_assert(rd.events & EPOLLHUP);

	close(p[0]);
	ev_close(&l);
}

Test(ev_io, add_bad_fd_fails)
{
	struct ev_loop	 l;
	struct rec_io	 r = { .io.fd = -1, .io.cb = rec_io_cb };

	loop_init(&l);
	cr_assert_eq(ev_add(&l, &r.io, EPOLLIN), -1);
	cr_assert_eq(errno, EBADF);
	ev_close(&l);
}

/* A due timer and a ready fd in the same iteration: both are served. */
Test(ev_io, io_and_timer_in_one_pass)
{
	struct ev_loop	 l;
	struct rec_io	 r = { .io.cb = rec_io_cb };
	struct rec_timer a = { .id = 0 };
	int		 sv[2];

	loop_init(&l);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	r.io.fd = sv[0];
	cr_assert_eq(ev_add(&l, &r.io, EPOLLIN | EPOLLET), 0);
	ev_timer_init(&a.t, rec_cb);
	arm_past(&l, &a, 1);
	cr_assert_eq(write(sv[1], "z", 1), 1);
	cr_assert_eq(ev_run_once(&l, 100), 0);
	cr_assert_eq(a.fired, 1);
	cr_assert_eq(r.calls, 1);
	close(sv[0]);
	close(sv[1]);
	ev_close(&l);
}

/* With no fd ready, a blocking wait (-1) ends when the next timer is due. */
Test(ev_io, infinite_wait_bounded_by_timer)
{
	struct ev_loop	 l;
	struct rec_timer a = { .id = 0 };

	alarm(5);		/* a wait that ignores the timer becomes a failure */
	loop_init(&l);
	ev_timer_init(&a.t, rec_cb);
	ev_update_now(&l);
	ev_timer_after(&l, &a.t, 3);
	a.want = l.now + 3;
	while (!a.fired)
		cr_assert_eq(ev_run_once(&l, -1), 0);
	cr_assert_geq(a.fired_at, a.want);
	alarm(0);
	ev_close(&l);
}

/* urm: io_uring version of epm: all clients multiplexed onto a few shared, pipelined upstream
 * connections (FIFO response matching), one coalesced SEND per upstream per loop iteration,
 * one io_uring_enter per iteration (SINGLE_ISSUER|DEFER_TASKRUN). Throwaway experiment only:
 * HOL blocking, unsafe for non-idempotent requests, client structs are never freed.
 * env URM_UP=N upstream connections per backend (default 1).  build: gcc -O2 -o urm urm.c */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>

#define BUFSZ 65536
#define ENTRIES 4096
#define QMAX 4096
struct cli { int fd, dead, rlen; char rbuf[BUFSZ]; char wbuf[BUFSZ]; };
struct up { int fd, alen, sending, rlen, dirty, qh, qt; char *acc, *snd; int slen, soff;
            struct cli *q[QMAX]; char b1[BUFSZ], b2[BUFSZ], rbuf[4 * BUFSZ]; };
static struct up *ups; static int nup;

static int ring_fd;
static unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes; static struct io_uring_cqe *cqes;
static unsigned sq_local_tail, to_submit;
static long enters, cqes_seen, nreq, usends;
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
static struct up *dirty_list[256]; static int ndirty;

static int sys_enter(unsigned submit, unsigned minc, unsigned flags) {
    return syscall(__NR_io_uring_enter, ring_fd, submit, minc, flags, NULL, 0);
}
static struct io_uring_sqe *get_sqe(void) {
    if (sq_local_tail - __atomic_load_n(sq_head, __ATOMIC_ACQUIRE) >= ENTRIES) {
        __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
        sys_enter(to_submit, 0, 0); enters++; to_submit = 0;
    }
    unsigned idx = sq_local_tail & *sq_mask;
    struct io_uring_sqe *s = &sqes[idx];
    memset(s, 0, sizeof *s); sq_array[idx] = idx;
    sq_local_tail++; to_submit++;
    return s;
}
/* user_data low bits: 0 client recv, 1 client send (errors only), 2 upstream recv, 3 upstream send; 4 accept */
#define UD_ACCEPT 4ull
static void q_op(int op, int fd, void *buf, unsigned len, uint64_t ud, int flags) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = op; s->fd = fd; s->addr = (uintptr_t)buf; s->len = len; s->user_data = ud;
    if (op == IORING_OP_RECV) s->ioprio = IORING_RECVSEND_POLL_FIRST;
    else s->msg_flags = MSG_NOSIGNAL | MSG_WAITALL;
    s->flags = flags;
}
static void cli_recv(struct cli *c) { q_op(IORING_OP_RECV, c->fd, c->rbuf + c->rlen, BUFSZ - c->rlen, (uintptr_t)c | 0, 0); }
static void up_recv(struct up *u) { q_op(IORING_OP_RECV, u->fd, u->rbuf + u->rlen, sizeof u->rbuf - u->rlen, (uintptr_t)u | 2, 0); }
static void up_send(struct up *u) { q_op(IORING_OP_SEND, u->fd, u->snd + u->soff, u->slen - u->soff, (uintptr_t)u | 3, 0); usends++; }
static void up_kick(struct up *u) { /* start sending the accumulated requests if idle */
    if (u->sending || !u->alen) return;
    char *t = u->snd; u->snd = u->acc; u->acc = t;
    u->slen = u->alen; u->soff = 0; u->alen = 0; u->sending = 1;
    up_send(u);
}
static void cli_kill(struct cli *c) { if (!c->dead) { c->dead = 1; close(c->fd); } }

int main(int argc, char **argv) {
    load_config(argc, argv);
    int per = getenv("URM_UP") ? atoi(getenv("URM_UP")) : 1;
    nup = per * nbe; ups = calloc(nup, sizeof *ups);
    int lfd = make_listener();
    struct io_uring_params p; memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    ring_fd = syscall(__NR_io_uring_setup, ENTRIES, &p);
    if (ring_fd < 0) { perror("urm: io_uring_setup"); return 1; }
    size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cqsz > sqsz) sqsz = cqsz;
    char *sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
    sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
    sq_head = (void *)(sq + p.sq_off.head); sq_tail = (void *)(sq + p.sq_off.tail);
    sq_mask = (void *)(sq + p.sq_off.ring_mask); sq_array = (void *)(sq + p.sq_off.array);
    cq_head = (void *)(sq + p.cq_off.head); cq_tail = (void *)(sq + p.cq_off.tail);
    cq_mask = (void *)(sq + p.cq_off.ring_mask); cqes = (void *)(sq + p.cq_off.cqes);
    sq_local_tail = *sq_tail;
    for (int i = 0; i < nup; i++) {
        struct up *u = &ups[i];
        u->fd = connect_backend_retry(); if (u->fd < 0) { perror("connect"); return 1; }
        u->acc = u->b1; u->snd = u->b2;
        up_recv(u);
    }
    { struct io_uring_sqe *s = get_sqe(); s->opcode = IORING_OP_ACCEPT; s->fd = lfd; s->ioprio = IORING_ACCEPT_MULTISHOT; s->user_data = UD_ACCEPT; }
    signal(SIGTERM, on_term);
    fprintf(stderr, "urm: %d upstream conns\n", nup);
    for (;;) {
        if (stop) { fprintf(stderr, "urm: requests %ld enters/req %.3f cqes/enter %.2f upstream sends/req %.3f\n", nreq, (double)enters / nreq, (double)cqes_seen / enters, (double)usends / nreq); return 0; }
        __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
        int r = sys_enter(to_submit, 1, IORING_ENTER_GETEVENTS); enters++;
        if (r < 0 && errno != EINTR && errno != EBUSY && errno != EAGAIN) { perror("io_uring_enter"); return 1; }
        if (r > 0) to_submit -= (unsigned)r < to_submit ? (unsigned)r : to_submit;
        unsigned head = *cq_head, tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &cqes[head & *cq_mask];
            uint64_t ud = cqe->user_data; int res = cqe->res; cqes_seen++;
            if (ud == UD_ACCEPT) {
                if (!(cqe->flags & IORING_CQE_F_MORE)) { struct io_uring_sqe *s = get_sqe(); s->opcode = IORING_OP_ACCEPT; s->fd = lfd; s->ioprio = IORING_ACCEPT_MULTISHOT; s->user_data = UD_ACCEPT; }
                if (res < 0) continue;
                int one = 1; setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct cli *c = calloc(1, sizeof *c); c->fd = res; cli_recv(c);
                continue;
            }
            void *ptr = (void *)(uintptr_t)(ud & ~7ull);
            switch (ud & 7) {
            case 0: { struct cli *c = ptr;
                if (c->dead) break;
                if (res == -EAGAIN || res == -EINTR) { cli_recv(c); break; }
                if (res <= 0) { cli_kill(c); break; }
                c->rlen += res; int m;
                while ((m = msg_len(c->rbuf, c->rlen)) > 0) {
                    struct up *u = &ups[rr++ % nup];
                    if (u->alen + m > BUFSZ) { fprintf(stderr, "urm: upstream buffer full\n"); return 1; }
                    memcpy(u->acc + u->alen, c->rbuf, m); u->alen += m;
                    u->q[u->qt++ % QMAX] = c; nreq++;
                    if (!u->dirty) { u->dirty = 1; dirty_list[ndirty++] = u; }
                    c->rlen -= m; if (c->rlen) memmove(c->rbuf, c->rbuf + m, c->rlen);
                }
                if (m < 0 || c->rlen == BUFSZ) { cli_kill(c); break; }
                cli_recv(c); break; }
            case 1: cli_kill(ptr); break; /* failed client send */
            case 2: { struct up *u = ptr;
                if (res <= 0) { fprintf(stderr, "urm: upstream recv %d\n", res); return 1; }
                u->rlen += res; int m, off = 0;
                while ((m = msg_len(u->rbuf + off, u->rlen - off)) > 0) {
                    struct cli *c = u->q[u->qh++ % QMAX];
                    if (!c->dead) { /* copy out: rbuf is reused by the next recv */
                        memcpy(c->wbuf, u->rbuf + off, m);
                        q_op(IORING_OP_SEND, c->fd, c->wbuf, m, (uintptr_t)c | 1, IOSQE_CQE_SKIP_SUCCESS);
                    }
                    off += m;
                }
                u->rlen -= off; if (u->rlen) memmove(u->rbuf, u->rbuf + off, u->rlen);
                up_recv(u); break; }
            case 3: { struct up *u = ptr;
                if (res < 0) { fprintf(stderr, "urm: upstream send %d\n", res); return 1; }
                u->soff += res;
                if (u->soff < u->slen) { up_send(u); break; }
                u->sending = 0; up_kick(u); break; }
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
        for (int i = 0; i < ndirty; i++) { dirty_list[i]->dirty = 0; up_kick(dirty_list[i]); }
        ndirty = 0;
    }
}

/* ur: minimal single-threaded io_uring HTTP/1.1 keep-alive proxy (throwaway experiment).
 * Raw syscalls, no liburing. One dedicated upstream connection per client, round robin.
 * One IORING_OP_RECV always outstanding per socket, IORING_OP_SEND for writes,
 * multishot IORING_OP_ACCEPT, exactly one io_uring_enter per loop iteration
 * (submit everything queued + wait for >= 1 completion).
 * env UR_FLAGS=0|1|2: 0 = plain, 1 = SINGLE_ISSUER|COOP_TASKRUN, 2 (default) = SINGLE_ISSUER|DEFER_TASKRUN
 * optional knobs (default off = the plain design above):
 *   UR_POLLFIRST=1  recv with IORING_RECVSEND_POLL_FIRST (skip the doomed inline attempt)
 *   UR_MSHOT=1      multishot recv from a provided-buffer ring (recv armed once per socket, data copied out)
 *   UR_SKIPSEND=1   sends with IOSQE_CQE_SKIP_SUCCESS|MSG_WAITALL (no CQE per send; buffer assumed free
 *                   once the peer answers -- only valid for strict request/response, throwaway)
 * build: gcc -O2 -o ur ur.c */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/io_uring.h>

#define BUFSZ 65536
#define ENTRIES 4096
struct conn;
struct half { int fd; struct half *peer; struct conn *c; int rlen, slen, soff, sending;
              char *rbuf, *sbuf; char bufa[BUFSZ], bufb[BUFSZ]; };
struct conn { struct half h[2]; int inflight, dead, closed; };

static int ring_fd;
static unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes; static struct io_uring_cqe *cqes;
static unsigned sq_local_tail, to_submit;
static long enters, cqes_seen, nreq;
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }
static int pollfirst, mshot, skipsend;
#define NBUF 1024
#define PBSZ 4096
#define BGID 7
static struct io_uring_buf_ring *br; static char *pbufs; static unsigned short br_tail;
static void br_add(unsigned bid) {
    struct io_uring_buf *b = &br->bufs[br_tail & (NBUF - 1)];
    b->addr = (uintptr_t)(pbufs + (size_t)bid * PBSZ); b->len = PBSZ; b->bid = bid;
    br_tail++;
}
static void br_publish(void) { __atomic_store_n(&br->tail, br_tail, __ATOMIC_RELEASE); }

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
    memset(s, 0, sizeof *s);
    sq_array[idx] = idx;
    sq_local_tail++; to_submit++;
    return s;
}

enum { OP_RECV = 0, OP_SEND = 1 };
#define UD_ACCEPT 1ull

static void q_recv(struct half *h) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_RECV; s->fd = h->fd;
    s->addr = (uintptr_t)(h->rbuf + h->rlen); s->len = BUFSZ - h->rlen;
    s->user_data = (uintptr_t)h | OP_RECV;
    if (pollfirst) s->ioprio |= IORING_RECVSEND_POLL_FIRST;
    if (mshot) { s->addr = 0; s->len = 0; s->ioprio |= IORING_RECV_MULTISHOT; s->flags |= IOSQE_BUFFER_SELECT; s->buf_group = BGID; }
    h->c->inflight++;
}
static void q_send(struct half *h) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_SEND; s->fd = h->peer->fd;
    s->addr = (uintptr_t)(h->sbuf + h->soff); s->len = h->slen - h->soff;
    s->msg_flags = MSG_NOSIGNAL;
    s->user_data = (uintptr_t)h | OP_SEND;
    if (skipsend) { s->flags |= IOSQE_CQE_SKIP_SUCCESS; s->msg_flags |= MSG_WAITALL; h->sending = 0; return; }
    h->c->inflight++;
}
static void q_accept(int lfd) {
    struct io_uring_sqe *s = get_sqe();
    s->opcode = IORING_OP_ACCEPT; s->fd = lfd;
    s->ioprio = IORING_ACCEPT_MULTISHOT;
    s->user_data = UD_ACCEPT;
}

static void kill_conn(struct conn *c) {
    if (c->dead) return;
    c->dead = 1;
    shutdown(c->h[0].fd, SHUT_RDWR); shutdown(c->h[1].fd, SHUT_RDWR); /* makes pending recvs complete */
}

static void maybe_free(struct conn *c) {
    /* with skipped send CQEs we cannot know when the conn is quiescent: close fds, leak the struct */
    if (skipsend) { if (c->dead && !c->closed) { c->closed = 1; close(c->h[0].fd); close(c->h[1].fd); } return; }
    if (c->dead && c->inflight == 0) { close(c->h[0].fd); close(c->h[1].fd); free(c); }
}

static void try_forward(struct half *h) {
    if (h->sending || h->c->dead) return;
    int m = msg_len(h->rbuf, h->rlen);
    if (m < 0 || (m == 0 && h->rlen == BUFSZ)) { kill_conn(h->c); return; }
    if (m == 0) return;
    char *t = h->sbuf; h->sbuf = h->rbuf; h->rbuf = t;
    if (h == &h->c->h[0]) nreq++;
    h->slen = m; h->soff = 0; h->sending = 1;
    h->rlen -= m;
    if (h->rlen) memcpy(h->rbuf, h->sbuf + m, h->rlen);
    q_send(h);
}

int main(int argc, char **argv) {
    load_config(argc, argv);
    int lfd = make_listener();
    const char *fe = getenv("UR_FLAGS"); int mode = fe ? atoi(fe) : 2;
    struct io_uring_params p; memset(&p, 0, sizeof p);
    if (mode == 1) p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    if (mode == 2) p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    ring_fd = syscall(__NR_io_uring_setup, ENTRIES, &p);
    if (ring_fd < 0) { perror("ur: io_uring_setup (io_uring disabled?)"); return 1; }
    size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) { fprintf(stderr, "ur: need IORING_FEAT_SINGLE_MMAP\n"); return 1; }
    if (cqsz > sqsz) sqsz = cqsz;
    char *sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
    sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
    sq_head = (void *)(sq + p.sq_off.head); sq_tail = (void *)(sq + p.sq_off.tail);
    sq_mask = (void *)(sq + p.sq_off.ring_mask); sq_array = (void *)(sq + p.sq_off.array);
    cq_head = (void *)(sq + p.cq_off.head); cq_tail = (void *)(sq + p.cq_off.tail);
    cq_mask = (void *)(sq + p.cq_off.ring_mask); cqes = (void *)(sq + p.cq_off.cqes);
    sq_local_tail = *sq_tail;
    fprintf(stderr, "ur: listening, %d backends, setup flags 0x%x (mode %d), features 0x%x\n", nbe, p.flags, mode, p.features);

    pollfirst = getenv("UR_POLLFIRST") && atoi(getenv("UR_POLLFIRST"));
    mshot = getenv("UR_MSHOT") && atoi(getenv("UR_MSHOT"));
    skipsend = getenv("UR_SKIPSEND") && atoi(getenv("UR_SKIPSEND"));
    if (mshot) {
        br = mmap(0, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        pbufs = malloc((size_t)NBUF * PBSZ);
        struct io_uring_buf_reg reg = { .ring_addr = (uintptr_t)br, .ring_entries = NBUF, .bgid = BGID };
        if (syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_PBUF_RING, &reg, 1)) { perror("REGISTER_PBUF_RING"); return 1; }
        for (unsigned i = 0; i < NBUF; i++) br_add(i);
        br_publish();
    }
    fprintf(stderr, "ur: pollfirst %d mshot %d skipsend %d\n", pollfirst, mshot, skipsend);
    q_accept(lfd);
    signal(SIGTERM, on_term);
    for (;;) {
        if (stop) { fprintf(stderr, "ur: requests %ld enters %ld cqes %ld enters/req %.3f cqes/enter %.2f\n", nreq, enters, cqes_seen, (double)enters / (nreq ? nreq : 1), (double)cqes_seen / (enters ? enters : 1)); return 0; }
        __atomic_store_n(sq_tail, sq_local_tail, __ATOMIC_RELEASE);
        int r = sys_enter(to_submit, 1, IORING_ENTER_GETEVENTS); enters++;
        if (r < 0 && errno != EINTR && errno != EBUSY && errno != EAGAIN) { perror("io_uring_enter"); return 1; }
        if (r > 0) to_submit -= (unsigned)r < to_submit ? (unsigned)r : to_submit;
        else if (r == 0) {} 
        unsigned head = *cq_head, tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &cqes[head & *cq_mask];
            uint64_t ud = cqe->user_data; int res = cqe->res; unsigned fl = cqe->flags;
            cqes_seen++;
            if (ud == UD_ACCEPT) {
                if (!(fl & IORING_CQE_F_MORE)) q_accept(lfd);
                if (res < 0) continue;
                int cfd = res, one = 1;
                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                int ufd = connect_backend();
                if (ufd < 0) { close(cfd); continue; }
                struct conn *c = calloc(1, sizeof *c);
                for (int i = 0; i < 2; i++) {
                    struct half *h = &c->h[i];
                    h->fd = i ? ufd : cfd; h->peer = &c->h[!i]; h->c = c;
                    h->rbuf = h->bufa; h->sbuf = h->bufb;
                    q_recv(h);
                }
                continue;
            }
            struct half *h = (void *)(uintptr_t)(ud & ~3ull); struct conn *c = h->c;
            if ((ud & 3) == OP_RECV && mshot) {
                if (!(fl & IORING_CQE_F_MORE)) c->inflight--;
                if (fl & IORING_CQE_F_BUFFER) {
                    unsigned bid = fl >> IORING_CQE_BUFFER_SHIFT;
                    if (res > 0 && !c->dead) {
                        if (res > BUFSZ - h->rlen) { kill_conn(c); }
                        else { memcpy(h->rbuf + h->rlen, pbufs + (size_t)bid * PBSZ, res); h->rlen += res; try_forward(h); }
                    }
                    br_add(bid); br_publish();
                }
                if (c->dead) { maybe_free(c); continue; }
                if (res == -ENOBUFS || ((fl & IORING_CQE_F_MORE) == 0 && res > 0)) { q_recv(h); continue; }
                if (res <= 0) { kill_conn(c); maybe_free(c); continue; }
                continue;
            }
            if (!(skipsend && (ud & 3) == OP_SEND)) c->inflight--;
            if ((ud & 3) == OP_RECV) {
                if (c->dead) { maybe_free(c); continue; }
                if (res == -EAGAIN || res == -EINTR) { q_recv(h); continue; }
                if (res <= 0) { kill_conn(c); maybe_free(c); continue; }
                h->rlen += res;
                try_forward(h);
                if (!c->dead) q_recv(h);
                maybe_free(c);
            } else {
                if (c->dead) { maybe_free(c); continue; }
                if (res < 0) { kill_conn(c); maybe_free(c); continue; }
                h->soff += res;
                if (h->soff < h->slen) { q_send(h); continue; }
                h->sending = 0;
                try_forward(h);
                maybe_free(c);
            }
        }
        __atomic_store_n(cq_head, head, __ATOMIC_RELEASE);
    }
}

/* epm: epoll proxy that MULTIPLEXES all clients onto a few shared upstream connections with
 * HTTP/1.1 pipelining (FIFO response matching) and one coalesced write per upstream per loop
 * iteration. Throwaway experiment for "can ANY single-threaded proxy reach 1.25x?" -- not a
 * design recommendation (head-of-line blocking, unsafe for non-idempotent requests).
 * env EPM_UP=N upstream connections per backend (default 1).  build: gcc -O2 -o epm epm.c */
#include "common.h"
#include <sys/epoll.h>
#include <stdint.h>

#define BUFSZ 65536
#define QMAX 4096
struct cli { int fd, dead, rlen, up; char rbuf[BUFSZ]; };
struct up { int fd, olen, rlen, dirty; int qh, qt; struct cli *q[QMAX]; char obuf[BUFSZ], rbuf[4 * BUFSZ]; };
static struct up *ups; static int nup;
static int epfd; static long nreq, nwait, uwrites, ureads;
static struct up *dirty_list[256]; static int ndirty;
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
static struct cli *grave[1024]; static int ngrave;

static void kill_cli(struct cli *c) { if (c->dead) return; c->dead = 1; close(c->fd); grave[ngrave++] = c; }

static void flush_up(struct up *u) {
    int off = 0;
    while (off < u->olen) {
        ssize_t w = write(u->fd, u->obuf + off, u->olen - off); uwrites++;
        if (w > 0) off += w; else if (w < 0 && errno == EAGAIN) continue; /* spin: throwaway */
        else { fprintf(stderr, "epm: upstream write failed\n"); exit(1); }
    }
    u->olen = 0; u->dirty = 0;
}

static void on_client(struct cli *c) {
    ssize_t n = read(c->fd, c->rbuf + c->rlen, BUFSZ - c->rlen);
    if (n <= 0) { if (n < 0 && errno == EAGAIN) return; kill_cli(c); return; }
    c->rlen += n; int m;
    while ((m = msg_len(c->rbuf, c->rlen)) > 0) {
        struct up *u = &ups[rr++ % nup];
        if (u->olen + m > BUFSZ) flush_up(u);
        memcpy(u->obuf + u->olen, c->rbuf, m); u->olen += m;
        u->q[u->qt++ % QMAX] = c; c->up++; nreq++;
        if (!u->dirty) { u->dirty = 1; dirty_list[ndirty++] = u; }
        c->rlen -= m; if (c->rlen) memmove(c->rbuf, c->rbuf + m, c->rlen);
    }
    if (m < 0 || c->rlen == BUFSZ) kill_cli(c);
}

static void on_up(struct up *u) {
    ssize_t n = read(u->fd, u->rbuf + u->rlen, sizeof u->rbuf - u->rlen); ureads++;
    if (n <= 0) { if (n < 0 && errno == EAGAIN) return; fprintf(stderr, "epm: upstream closed\n"); exit(1); }
    u->rlen += n; int m, off = 0;
    while ((m = msg_len(u->rbuf + off, u->rlen - off)) > 0) {
        struct cli *c = u->q[u->qh++ % QMAX]; c->up--;
        if (!c->dead) { ssize_t w = write(c->fd, u->rbuf + off, m); if (w != m) kill_cli(c); }
        off += m;
    }
    u->rlen -= off; if (u->rlen) memmove(u->rbuf, u->rbuf + off, u->rlen);
}

int main(int argc, char **argv) {
    load_config(argc, argv);
    int per = getenv("EPM_UP") ? atoi(getenv("EPM_UP")) : 1;
    nup = per * nbe; ups = calloc(nup, sizeof *ups);
    int lfd = make_listener(); fcntl(lfd, F_SETFL, O_NONBLOCK);
    epfd = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0 };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    for (int i = 0; i < nup; i++) {
        ups[i].fd = connect_backend_retry(); if (ups[i].fd < 0) { perror("connect"); return 1; }
        fcntl(ups[i].fd, F_SETFL, O_NONBLOCK);
        ev.events = EPOLLIN; ev.data.u64 = ((uint64_t)(uintptr_t)&ups[i]) | 1;
        epoll_ctl(epfd, EPOLL_CTL_ADD, ups[i].fd, &ev);
    }
    signal(SIGTERM, on_term);
    fprintf(stderr, "epm: %d upstream conns\n", nup);
    struct epoll_event evs[512];
    for (;;) {
        if (stop) { fprintf(stderr, "epm: requests %ld waits/req %.3f upstream writes/req %.3f reads/req %.3f\n", nreq, (double)nwait / nreq, (double)uwrites / nreq, (double)ureads / nreq); return 0; }
        int n = epoll_wait(epfd, evs, 512, -1); nwait++;
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == 0) {
                int cfd, one = 1;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct cli *c = calloc(1, sizeof *c); c->fd = cfd;
                    struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &e);
                }
            } else if (d & 1) on_up((struct up *)(uintptr_t)(d & ~1ull));
            else { struct cli *c = (void *)(uintptr_t)d; if (!c->dead) on_client(c); }
        }
        for (int i = 0; i < ndirty; i++) flush_up(dirty_list[i]);
        ndirty = 0;
        /* free dead clients only when no responses are pending for them */
        int k = 0;
        for (int i = 0; i < ngrave; i++) if (grave[i]->up == 0) free(grave[i]); else grave[k++] = grave[i];
        ngrave = k;
    }
}

/* ep: minimal single-threaded epoll HTTP/1.1 keep-alive proxy (throwaway experiment).
 * One dedicated upstream connection per client, round robin over backends.
 * Level-triggered; one read + one write per direction per request in the common case.
 * build: gcc -O2 -o ep ep.c */
#include "common.h"
#include <poll.h>
#include <sys/epoll.h>

#define BUFSZ 65536
struct half { int fd; int dead; struct half *peer; int rlen; char rbuf[BUFSZ]; };
static int epfd;
static long slow_writes, nreq, nwait, nev;
static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }
static struct half *graveyard[1024]; static int ngrave;

static void kill_pair(struct half *h) {
    if (h->dead) return;
    struct half *p = h->peer;
    h->dead = p->dead = 1;
    close(h->fd); close(p->fd);
    graveyard[ngrave++] = h < p ? h : p; /* pair allocated as one block */
}

static int write_all(int fd, const char *b, int n) {
    int off = 0;
    while (off < n) {
        ssize_t w = write(fd, b + off, n - off);
        if (w > 0) { off += w; continue; }
        if (w < 0 && errno == EAGAIN) { struct pollfd pf = { fd, POLLOUT, 0 }; slow_writes++; if (poll(&pf, 1, 1000) <= 0) return -1; continue; }
        if (w < 0 && errno == EINTR) continue;
        return -1;
    }
    return 0;
}

static void on_read(struct half *h) {
    ssize_t n = read(h->fd, h->rbuf + h->rlen, BUFSZ - h->rlen);
    if (n <= 0) { if (n < 0 && errno == EAGAIN) return; kill_pair(h); return; }
    h->rlen += n;
    int m;
    while ((m = msg_len(h->rbuf, h->rlen)) > 0) {
        if (h < h->peer) nreq++;
        if (write_all(h->peer->fd, h->rbuf, m)) { kill_pair(h); return; }
        h->rlen -= m;
        if (h->rlen) memmove(h->rbuf, h->rbuf + m, h->rlen);
    }
    if (m < 0 || h->rlen == BUFSZ) kill_pair(h);
}

static void add(struct half *h) {
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = h };
    fcntl(h->fd, F_SETFL, O_NONBLOCK);
    epoll_ctl(epfd, EPOLL_CTL_ADD, h->fd, &ev);
}

int main(int argc, char **argv) {
    load_config(argc, argv);
    int lfd = make_listener();
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    epfd = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "ep: listening, %d backends\n", nbe);
    struct epoll_event evs[512];
    signal(SIGTERM, on_term);
    for (;;) {
        if (stop) { fprintf(stderr, "ep: requests %ld epoll_waits %ld events %ld waits/req %.3f events/wait %.2f\n", nreq, nwait, nev, (double)nwait / (nreq ? nreq : 1), (double)nev / (nwait ? nwait : 1)); return 0; }
        int n = epoll_wait(epfd, evs, 512, -1); nwait++; if (n > 0) nev += n;
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct half *h = evs[i].data.ptr;
            if (!h) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK), one = 1;
                    if (cfd < 0) break;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    int ufd = connect_backend();
                    if (ufd < 0) { close(cfd); continue; }
                    struct half *pair = calloc(2, sizeof *pair);
                    pair[0].fd = cfd; pair[1].fd = ufd;
                    pair[0].peer = &pair[1]; pair[1].peer = &pair[0];
                    add(&pair[0]); add(&pair[1]);
                }
                continue;
            }
            if (h->dead) continue;
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_read(h);
        }
        for (int i = 0; i < ngrave; i++) free(graveyard[i]);
        ngrave = 0;
        if (slow_writes) { fprintf(stderr, "ep: %ld writes hit EAGAIN\n", slow_writes); slow_writes = 0; }
    }
}

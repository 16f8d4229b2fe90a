/* shared bits for ep.c / ur.c: config scan, HTTP framing */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define MAXBE 64
static struct sockaddr_in listen_addr, be_addr[MAXBE];
static int nbe, rr;

static int parse_addr(const char *s, struct sockaddr_in *a) {
    char host[256]; const char *c = strrchr(s, ':');
    if (!c || c - s >= (int)sizeof host) return -1;
    memcpy(host, s, c - s); host[c - s] = 0;
    memset(a, 0, sizeof *a); a->sin_family = AF_INET; a->sin_port = htons(atoi(c + 1));
    return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static void load_config(int argc, char **argv) {
    const char *file = NULL;
    for (int i = 1; i < argc; i++) if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
    if (!file) { fprintf(stderr, "usage: %s [-d] -f routerd.yaml\n", argv[0]); exit(2); }
    FILE *f = fopen(file, "r"); if (!f) { perror(file); exit(2); }
    char line[1024]; int n = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "address:"); if (!p) continue;
        p += 8; while (*p == ' ' || *p == '"' || *p == '\'') p++;
        char *e = p; while (*e && *e != '\n' && *e != ' ' && *e != '"' && *e != '\'' && *e != '\r') e++; *e = 0;
        struct sockaddr_in a; if (parse_addr(p, &a)) { fprintf(stderr, "bad address %s\n", p); exit(2); }
        if (n++ == 0) listen_addr = a; else if (nbe < MAXBE) be_addr[nbe++] = a;
    }
    fclose(f);
    if (n < 2) { fprintf(stderr, "need a listen address and >=1 backend\n"); exit(2); }
    signal(SIGPIPE, SIG_IGN);
}

static int make_listener(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (void *)&listen_addr, sizeof listen_addr) || listen(fd, 4096)) { perror("bind/listen"); exit(1); }
    return fd;
}

/* blocking connect on loopback (once per client connection), then the caller sets flags */
static int connect_backend(void) {
    struct sockaddr_in *a = &be_addr[rr++ % nbe];
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) return -1;
    if (connect(fd, (void *)a, sizeof *a)) { close(fd); return -1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* for the multiplexing variants: backends may start at the same time as the proxy */
__attribute__((unused)) static int connect_backend_retry(void) {
    for (int i = 0; i < 200; i++) { int fd = connect_backend(); if (fd >= 0) return fd; rr--; usleep(50000); }
    return -1;
}

static char *find_eoh(const char *b, int n) { return memmem(b, n, "\r\n\r\n", 4); }

/* request: complete message length (no bodies expected; honours Content-Length anyway), 0 if incomplete, -1 bad */
/* response: head + Content-Length */
static int msg_len(const char *b, int n) {
    char *e = find_eoh(b, n); if (!e) return 0;
    int head = e - b + 4; long cl = 0;
    for (const char *p = b; p < e; ) {
        const char *nl = memchr(p, '\n', e - p); if (!nl) nl = e;
        if (nl - p > 15 && !strncasecmp(p, "content-length:", 15)) cl = strtol(p + 15, NULL, 10);
        p = nl + 1;
    }
    if (cl < 0) return -1;
    return head + cl <= n ? head + (int)cl : 0;
}

/* Helpers linked into every libFuzzer harness: input as a file, numeric-only name resolution. */
#include <sys/mman.h>
#include <sys/types.h>
#include <netdb.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tests/fuzz/common.h"

const char *
fuzz_file(const void *p, size_t len)
{
	static char	 path[64];
	static int	 fd = -1;
	const char	*q = p;
	ssize_t		 w;

	if (fd == -1) {
		if ((fd = memfd_create("fuzz-input", 0)) == -1) {
			perror("fuzz_file: memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) == -1) {
		perror("fuzz_file: ftruncate");
		abort();
	}
	for (off_t off = 0; (size_t)off < len; off += w)
		if ((w = pwrite(fd, q + off, len - (size_t)off, off)) <= 0) {
			perror("fuzz_file: pwrite");
			abort();
		}
	return path;
}

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
    struct addrinfo **);

/*
 * Interposes libc's (and the sanitizer's) getaddrinfo(): names other
 * than localhost fail as if unknown, without a query.
 */
int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
    struct addrinfo **res)
{
	static gai_fn	 real;
	struct addrinfo	 h;

	if (real == NULL && (real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo")) == NULL)
		abort();
	if (hints != NULL)
		h = *hints;
	else {
		memset(&h, 0, sizeof(h));
		h.ai_family = AF_UNSPEC;
	}
	if (node != NULL && strcasecmp(node, "localhost") == 0)
		node = h.ai_family == AF_INET6 ? "::1" : "127.0.0.1";
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

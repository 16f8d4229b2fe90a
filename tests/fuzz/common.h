/* What the libFuzzer harnesses share: the entry point's prototype, input as a file, no DNS. */
#ifndef TESTS_FUZZ_COMMON_H
#define TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer calls this once per input; it must return 0. */
int	 LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * fuzz_file() replaces the contents of a memfd (made on the first call)
 * with the len bytes at p and returns a path that opens them,
 * "/proc/self/fd/N", for code that only reads files.  Aborts when the
 * memfd cannot be made or written: that is the harness, not the input.
 */
const char	*fuzz_file(const void *p, size_t len);

/*
 * The harnesses link a getaddrinfo() of their own (common.c) that only
 * resolves numeric addresses and "localhost": a fuzzer that writes host
 * names must not wait on DNS, and what resolves must not depend on the
 * network.
 */

#endif

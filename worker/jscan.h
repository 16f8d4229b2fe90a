/* Finding the top-level "model" of a JSON request body without building a tree. */
#ifndef WORKER_JSCAN_H
#define WORKER_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#define JSCAN_DEPTH	2047	/* containers inside the top-level object: jansson refuses 2048 levels in all */

enum {
	JSCAN_BAD = -1,		/* not valid JSON, not an object, or "model" twice */
	JSCAN_NONE = 0,		/* an object without "model" */
	JSCAN_FOUND = 1,	/* "model" is a string: decoded into out */
	JSCAN_NOTSTRING = 2,	/* "model" is there but not a string */
	JSCAN_TOOLONG = 3	/* "model" is a string longer than out can hold */
};

/*
 * Scans the whole of text[0, len) as RFC 8259 JSON (UTF-8 checked, \u0000
 * refused) and returns one of the values above.  On JSCAN_FOUND, out holds
 * the model's decoded name, NUL-terminated.  Pure: no allocation, no state.
 */
int	 jscan_model(const char *text, size_t len, char *out, size_t outsz);

/*
 * What the llm strategy reads of a request: its model as jscan_model()
 * finds it, and the prompt, named by the chained hashes of its blocks.
 * The prompt is the sequence of the string and number values inside the
 * top-level "messages" (roles, contents, parts, in order) or "prompt",
 * each as written in the body (escapes kept, so the same text sent the
 * same way names the same prefix) and followed by a separator byte.
 * Block i covers bytes [i * block, (i + 1) * block) of that sequence;
 * its hash is chained on block i - 1's, and every hash is mixed with the
 * model's at the end, so one prompt to two models names two prefixes.
 * Only whole blocks count, at most max_blocks of them.
 */
struct jscan_req {
	/* in */
	size_t		 block;		/* bytes per block, > 0 */
	size_t		 max_blocks;	/* room in blocks[] */
	char		*model;		/* out: the decoded model, as jscan_model() */
	size_t		 modelsz;
	/* out */
	uint64_t	*blocks;
	size_t		 nblocks;
	uint64_t	 chars;		/* bytes of the prompt sequence, separators excluded */
	int64_t		 max_tokens;	/* max_completion_tokens, else max_tokens; -1 none */
	int		 stream;	/* "stream": true */
};

/* As jscan_model(), filling r; r's outputs are meaningful for JSCAN_FOUND, NONE, NOTSTRING, TOOLONG. */
int	 jscan_request(const char *text, size_t len, struct jscan_req *r);

/* The 64-bit hash jscan_request() mixes with a model name's (also the backends' names for consistent hashing). */
uint64_t jscan_hash(const void *, size_t, uint64_t seed);

#endif

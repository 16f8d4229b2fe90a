/* Finding the top-level "model" of a JSON request body without building a tree. */
#ifndef WORKER_JSCAN_H
#define WORKER_JSCAN_H

#include <stddef.h>

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

#endif

/* libFuzzer harness: conf_load() on arbitrary YAML, and every config that loads must dump and load back the same. */

/*
 * The input is a config file.  Leading comment lines "#--NAME=VALUE" (or
 * "#--NAME") are also passed as flags and "#ROUTER_X=VALUE" set in the
 * environment, so the overrides are fuzzed too; YAML ignores them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "tests/fuzz/common.h"

#define FUZZ_OVERRIDES	8

static FILE	*devnull;
static char	 fuzz_text[FUZZ_OVERRIDES][256];
static char	*fuzz_env[FUZZ_OVERRIDES];
static size_t	 fuzz_nenv;

/* The override lines at the top of the input into flags and environment; returns nflags. */
static size_t
fuzz_conf_overrides(const uint8_t *data, size_t size, struct conf_flag *flags)
{
	const char	*p = (const char *)data, *end = p + size, *nl;
	char		*t, *eq;
	size_t		 n = 0, k = 0, len;

	fuzz_nenv = 0;
	while (k < FUZZ_OVERRIDES && p < end && *p == '#') {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		len = (size_t)(nl - p) - 1;
		if (len >= sizeof(fuzz_text[k]) || memchr(p + 1, '\0', len) != NULL)
			break;
		t = fuzz_text[k++];
		memcpy(t, p + 1, len);
		t[len] = '\0';
		p = nl + 1;
		eq = strchr(t, '=');
		if (strncmp(t, "--", 2) == 0) {
			if (eq != NULL)
				*eq = '\0';
			flags[n].name = t + 2;
			flags[n++].value = eq != NULL ? eq + 1 : NULL;
		} else if (strncmp(t, "ROUTER_", 7) == 0 && eq != NULL) {
			*eq = '\0';
			if (setenv(t, eq + 1, 1) == 0)
				fuzz_env[fuzz_nenv++] = t;
		}
	}
	return n;
}

static void
fuzz_conf_unsetenv(void)
{
	while (fuzz_nenv > 0)
		unsetenv(fuzz_env[--fuzz_nenv]);
}

/* Every scalar setting of a and b formats the same; the lists have the same shape. */
static int
fuzz_conf_same(const struct conf *a, const struct conf *b)
{
	char	 x[512], y[512];
	size_t	 i, k;

	for (i = 0; i < conf_ndirectives; i++) {
		if (conf_directive_format(&conf_directives[i], a, x, sizeof(x)) == -1)
			continue;
		conf_directive_format(&conf_directives[i], b, y, sizeof(y));
		if (strcmp(x, y) != 0) {
			fprintf(stderr, "%s: '%s' dumps and loads as '%s'\n",
			    conf_directives[i].name, x, y);
			return 0;
		}
	}
	if (a->nlisten != b->nlisten || a->npools != b->npools ||
	    a->nroutes != b->nroutes)
		return 0;
	for (i = 0; i < a->npools; i++) {
		if (strcmp(a->pools[i].name, b->pools[i].name) != 0 ||
		    a->pools[i].nbackends != b->pools[i].nbackends)
			return 0;
		for (k = 0; k < a->pools[i].nbackends; k++)
			if (strcmp(a->pools[i].backends[k].addr.text,
			    b->pools[i].backends[k].addr.text) != 0 ||
			    a->pools[i].backends[k].nmodels !=
			    b->pools[i].backends[k].nmodels)
				return 0;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_flag flags[FUZZ_OVERRIDES];
	struct conf	*cf, *again;
	char		*text = NULL;
	size_t		 len = 0, nflags;
	FILE		*fp;
	int		 nerr;

	/* FUZZ_CONF_ERRORS=1 shows why inputs are refused (to check a seed corpus) */
	if (devnull == NULL && (devnull = getenv("FUZZ_CONF_ERRORS") != NULL ?
	    stderr : fopen("/dev/null", "w")) == NULL)
		abort();
	/* the errors are written, so their formatting runs too */
	nflags = fuzz_conf_overrides(data, size, flags);
	cf = conf_load(fuzz_file(data, size), flags, nflags, devnull, &nerr);
	fuzz_conf_unsetenv();
	if (cf == NULL) {
		if (nerr < 1)
			abort();	/* a refusal must say why */
		return 0;
	}
	if (nerr != 0)
		abort();
	/* routerd -T prints a config that routerd must take back unchanged, on a clean slate */
	if ((fp = open_memstream(&text, &len)) == NULL)
		abort();
	conf_dump(cf, fp);
	if (fclose(fp) != 0)
		abort();
	if ((again = conf_load(fuzz_file(text, len), NULL, 0, stderr, &nerr)) == NULL ||
	    !fuzz_conf_same(cf, again)) {
		fprintf(stderr, "fuzz_conf: the dump does not load back:\n%s", text);
		abort();
	}
	conf_free(again);
	conf_free(cf);
	free(text);
	return 0;
}

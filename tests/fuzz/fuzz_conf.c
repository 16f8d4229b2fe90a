/* libFuzzer harness: conf_load() on arbitrary YAML, and every config that loads must dump and load back the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "tests/fuzz/common.h"

static FILE	*devnull;

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
	struct conf	*cf, *again;
	char		*text = NULL;
	size_t		 len = 0;
	FILE		*fp;
	int		 nerr;

	/* FUZZ_CONF_ERRORS=1 shows why inputs are refused (to check a seed corpus) */
	if (devnull == NULL && (devnull = getenv("FUZZ_CONF_ERRORS") != NULL ?
	    stderr : fopen("/dev/null", "w")) == NULL)
		abort();
	/* the errors are written, so their formatting runs too */
	if ((cf = conf_load(fuzz_file(data, size), NULL, 0, devnull, &nerr)) == NULL) {
		if (nerr < 1)
			abort();	/* a refusal must say why */
		return 0;
	}
	if (nerr != 0)
		abort();
	/* routerd -T prints a config that routerd must take back unchanged */
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

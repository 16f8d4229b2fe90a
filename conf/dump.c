/* conf_dump(): the effective config as YAML that conf_load() reads back. */
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "conf_private.h"

/* Double-quoted YAML scalar; strings hold no control characters. */
static void
conf_dump_quoted(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

static void
conf_dump_value(FILE *fp, const struct conf_directive *d, const void *obj)
{
	char	 buf[CONF_TOKEN_MAX + CONF_PATH_MAX];

	conf_directive_format(d, obj, buf, sizeof(buf));
	if (conf_type_quoted(d))
		conf_dump_quoted(fp, buf);
	else
		fputs(buf, fp);
}

/* Writes the text-settable rows of tab for obj, each line starting with lead. */
static void
conf_dump_keys(FILE *fp, const struct conf_directive *tab, size_t n,
    const void *obj, const char *first, const char *lead)
{
	size_t	 i;
	int	 nth = 0;

	for (i = 0; i < n; i++) {
		if (strcmp(tab[i].type, "list") == 0 ||
		    strcmp(tab[i].type, "backends") == 0 ||
		    strcmp(tab[i].type, "pool") == 0)
			continue;
		fprintf(fp, "%s%s: ", nth++ == 0 ? first : lead, tab[i].name);
		conf_dump_value(fp, &tab[i], obj);
		fputc('\n', fp);
	}
}

static void
conf_dump_pool(FILE *fp, const struct conf_pool *p)
{
	const struct conf_backend	*be;
	size_t				 i;
	int				 m;

	fputs("  ", fp);
	conf_dump_quoted(fp, p->name);
	fputs(":\n", fp);
	conf_dump_keys(fp, conf_pool_keys, conf_npool_keys, p, "    ",
	    "    ");
	if (p->nbackends == 0) {
		fputs("    backends: []\n", fp);
		return;
	}
	fputs("    backends:\n", fp);
	for (i = 0; i < p->nbackends; i++) {
		be = &p->backends[i];
		conf_dump_keys(fp, conf_backend_keys, conf_nbackend_keys, be,
		    "      - ", "        ");
		fputs("        models: [", fp);
		for (m = 0; m < be->nmodels; m++) {
			if (m > 0)
				fputs(", ", fp);
			conf_dump_quoted(fp, be->models[m]);
		}
		fputs("]\n", fp);
	}
}

/*
 * conf_dump() prints every setting, defaults included, grouped by section in
 * table order, then the pools and routes.  Secrets (admin.token,
 * registry.token) are printed too: this is what routerd -T shows to root.
 */
void
conf_dump(const struct conf *conf, FILE *fp)
{
	const struct conf_directive	*d;
	const char			*dot;
	char				 section[CONF_NAME_MAX];
	size_t				 i, len;

	fprintf(fp, "# routerd effective configuration, from %s\n",
	    conf->file[0] != '\0' ? conf->file : CONF_DEFAULT_NAME);
	fputs("listen:\n", fp);
	for (i = 0; i < conf->nlisten; i++) {
		fputs("  - address: ", fp);
		conf_dump_quoted(fp, conf->listen[i].text);
		fputc('\n', fp);
	}
	section[0] = '\0';
	for (i = 0; i < conf_ndirectives; i++) {
		d = &conf_directives[i];
		if ((dot = strchr(d->name, '.')) == NULL) {
			section[0] = '\0';
			fprintf(fp, "%s: ", d->name);
		} else {
			len = (size_t)(dot - d->name);
			if (strncmp(section, d->name, len) != 0 ||
			    section[len] != '\0') {
				snprintf(section, sizeof(section), "%.*s",
				    (int)len, d->name);
				fprintf(fp, "%s:\n", section);
			}
			fprintf(fp, "  %s: ", dot + 1);
		}
		conf_dump_value(fp, d, conf);
		fputc('\n', fp);
	}
	fputs(conf->npools == 0 ? "pools: {}\n" : "pools:\n", fp);
	for (i = 0; i < conf->npools; i++)
		conf_dump_pool(fp, &conf->pools[i]);
	fputs(conf->nroutes == 0 ? "routes: []\n" : "routes:\n", fp);
	for (i = 0; i < conf->nroutes; i++) {
		conf_dump_keys(fp, conf_route_keys, conf_nroute_keys,
		    &conf->routes[i], "  - ", "    ");
		fputs("    pool: ", fp);
		conf_dump_quoted(fp, conf->pools[conf->routes[i].pool].name);
		fputc('\n', fp);
	}
	fputs(conf->nratelimits == 0 ? "ratelimits: []\n" : "ratelimits:\n", fp);
	for (i = 0; i < conf->nratelimits; i++)
		conf_dump_keys(fp, conf_ratelimit_keys, conf_nratelimit_keys,
		    &conf->ratelimits[i], "  - ", "    ");
}

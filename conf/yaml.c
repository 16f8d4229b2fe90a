/* Walks a routerd YAML document (libyaml) into a struct conf, with positions. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>
#include <yaml.h>

#include "conf.h"
#include "conf_private.h"

#define CONF_KEYS_MAX	16	/* rows in the pool, backend and route tables */

/* libyaml marks are 0-based; people count from 1. */
static struct conf_mark
conf_yaml_mark(const yaml_node_t *n)
{
	struct conf_mark	 m;

	m.line = (int)n->start_mark.line + 1;
	m.column = (int)n->start_mark.column + 1;
	return m;
}

static void
conf_yaml_err(struct conf_loader *ld, const yaml_node_t *n, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static void
conf_yaml_err(struct conf_loader *ld, const yaml_node_t *n, const char *fmt,
    ...)
{
	char		 msg[CONF_ERR_MAX * 2];
	struct conf_mark m;
	va_list		 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	m = conf_yaml_mark(n);
	conf_err(ld, m.line, m.column, "%s", msg);
}

/*
 * conf_yaml_scalar() returns the text of a scalar node, with a plain null
 * ("", "~", "null") read as "" so that `token:` means an empty token; NULL
 * (after reporting it) if the node is a mapping or a sequence.
 */
static const char *
conf_yaml_scalar(struct conf_loader *ld, yaml_node_t *n, const char *what)
{
	const char	*s;

	if (n->type != YAML_SCALAR_NODE) {
		conf_yaml_err(ld, n, "%s: expected a single value, not a %s",
		    what, n->type == YAML_MAPPING_NODE ? "mapping" : "list");
		return NULL;
	}
	s = (const char *)n->data.scalar.value;
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0))
		return "";
	return s;
}

/* Is n a scalar that conf_yaml_scalar() reads as ""? */
static int
conf_yaml_empty(yaml_node_t *n)
{
	const char	*s;

	if (n->type != YAML_SCALAR_NODE)
		return 0;
	s = (const char *)n->data.scalar.value;
	return *s == '\0' || (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0));
}

/*
 * conf_yaml_pairs() checks that n is a mapping whose keys are scalars, each
 * once.  Returns the number of pairs and sets *pairs, or -1 after reporting.
 * Bad keys are reported here; conf_yaml_key() then skips them.
 */
static int
conf_yaml_pairs(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n,
    const char *what, yaml_node_pair_t **pairs)
{
	yaml_node_pair_t	*p, *q;
	yaml_node_t		*k, *k2;

	if (n->type != YAML_MAPPING_NODE) {
		conf_yaml_err(ld, n, "%s must be a mapping (key: value)", what);
		return -1;
	}
	*pairs = n->data.mapping.pairs.start;
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	    p++) {
		k = yaml_document_get_node(doc, p->key);
		if (k->type != YAML_SCALAR_NODE) {
			conf_yaml_err(ld, k, "%s: keys must be plain names",
			    what);
			continue;
		}
		for (q = n->data.mapping.pairs.start; q < p; q++) {
			k2 = yaml_document_get_node(doc, q->key);
			if (k2->type == YAML_SCALAR_NODE &&
			    strcmp((char *)k->data.scalar.value,
			    (char *)k2->data.scalar.value) == 0) {
				conf_yaml_err(ld, k, "duplicate key '%s' in %s "
				    "(first at line %d)",
				    (char *)k->data.scalar.value, what,
				    conf_yaml_mark(k2).line);
				break;
			}
		}
	}
	return (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* The key of a pair if it is usable (a scalar not seen before in the map). */
static const char *
conf_yaml_key(yaml_document_t *doc, yaml_node_t *map, yaml_node_pair_t *p)
{
	yaml_node_pair_t	*q;
	yaml_node_t		*k, *k2;

	k = yaml_document_get_node(doc, p->key);
	if (k->type != YAML_SCALAR_NODE)
		return NULL;
	for (q = map->data.mapping.pairs.start; q < p; q++) {
		k2 = yaml_document_get_node(doc, q->key);
		if (k2->type == YAML_SCALAR_NODE &&
		    strcmp((char *)k->data.scalar.value,
		    (char *)k2->data.scalar.value) == 0)
			return NULL;
	}
	return (const char *)k->data.scalar.value;
}

/* A list of scalars as one comma-separated text (for the name-list types). */
static int
conf_yaml_join(struct conf_loader *ld, yaml_node_t *v, const char *label,
    char *buf, size_t len)
{
	yaml_node_item_t	*it;
	yaml_node_t		*e;
	const char		*s;

	buf[0] = '\0';
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	    it++) {
		e = yaml_document_get_node((yaml_document_t *)ld->doc, *it);
		if (e == NULL || (s = conf_yaml_scalar(ld, e, label)) == NULL)
			return -1;
		if ((buf[0] != '\0' && strlcat(buf, ",", len) >= len) ||
		    strlcat(buf, s, len) >= len) {
			conf_yaml_err(ld, v, "%s: list too long", label);
			return -1;
		}
	}
	return 0;
}

/* Sets row d of a table from node v; reports "where: name: why" at v. */
static int
conf_yaml_set(struct conf_loader *ld, const struct conf_directive *d,
    void *obj, yaml_node_t *v, const char *label)
{
	char		 err[CONF_ERR_MAX], joined[256];
	const char	*text;

	if (v->type == YAML_SEQUENCE_NODE && (strcmp(d->type, "strategies") == 0 ||
	    strcmp(d->type, "filters") == 0)) {
		if (conf_yaml_join(ld, v, label, joined, sizeof(joined)) == -1)
			return -1;
		text = joined;
	} else if ((text = conf_yaml_scalar(ld, v, label)) == NULL)
		return -1;
	if (conf_directive_set(d, obj, text, err, sizeof(err)) == -1) {
		conf_yaml_err(ld, v, "%s: %s", label, err);
		return -1;
	}
	return 0;
}

/*
 * conf_yaml_object() sets obj's fields from mapping n by table tab: every
 * key must have a row; rows without a text setter (structural ones) are
 * left to the caller, which finds every key's value node in found[] (one
 * slot per row, NULL if absent).  what names the object in messages.
 */
static void
conf_yaml_object(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n,
    const struct conf_directive *tab, size_t ntab, void *obj, const char *what,
    yaml_node_t **found)
{
	const struct conf_directive	*d;
	yaml_node_pair_t		*pairs;
	yaml_node_t			*v;
	const char			*key;
	char				 label[CONF_NAME_MAX * 2];
	int				 i, npairs;

	memset(found, 0, ntab * sizeof(found[0]));
	if ((npairs = conf_yaml_pairs(ld, doc, n, what, &pairs)) == -1)
		return;
	for (i = 0; i < npairs; i++) {
		if ((key = conf_yaml_key(doc, n, &pairs[i])) == NULL)
			continue;
		v = yaml_document_get_node(doc, pairs[i].value);
		if ((d = conf_key_find(tab, ntab, key)) == NULL) {
			conf_yaml_err(ld, yaml_document_get_node(doc,
			    pairs[i].key), "unknown key '%s' in %s", key, what);
			continue;
		}
		found[d - tab] = v;
		if (strcmp(d->type, "list") == 0 ||
		    strcmp(d->type, "backends") == 0 ||
		    strcmp(d->type, "pool") == 0)
			continue;
		snprintf(label, sizeof(label), "%s", key);
		conf_yaml_set(ld, d, obj, v, label);
	}
}

/* models: [a, b] of one backend. */
static void
conf_yaml_models(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n,
    struct conf_backend *be)
{
	yaml_node_item_t	*it;
	yaml_node_t		*v;
	const char		*s;
	char			 err[CONF_ERR_MAX];
	int			 i;

	if (n->type != YAML_SEQUENCE_NODE) {
		conf_yaml_err(ld, n, "models must be a list of model names");
		return;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	    it++) {
		v = yaml_document_get_node(doc, *it);
		if ((s = conf_yaml_scalar(ld, v, "models")) == NULL)
			continue;
		if (conf_name_check(s, err, sizeof(err)) == -1) {
			conf_yaml_err(ld, v, "models: %s", err);
			continue;
		}
		for (i = 0; i < be->nmodels; i++)
			if (strcmp(be->models[i], s) == 0)
				break;
		if (i < be->nmodels) {
			conf_yaml_err(ld, v, "models: '%s' listed twice", s);
			continue;
		}
		if (be->nmodels == CONF_MODELS_MAX) {
			conf_yaml_err(ld, v, "models: at most %d per backend",
			    CONF_MODELS_MAX);
			return;
		}
		strlcpy(be->models[be->nmodels++], s, CONF_NAME_MAX);
	}
}

/* One backend of pool p, from mapping n; appended even if it has errors. */
static void
conf_yaml_backend(struct conf_loader *ld, yaml_document_t *doc,
    yaml_node_t *n, struct conf_pool *p)
{
	struct conf_backend	*be, *nb;
	yaml_node_t		*found[CONF_KEYS_MAX];
	const struct conf_directive *d;
	char			 err[CONF_ERR_MAX];
	struct conf_mark	 m;

	nb = reallocarray(p->backends, p->nbackends + 1, sizeof(*nb));
	if (nb == NULL) {
		conf_yaml_err(ld, n, "out of memory");
		return;
	}
	p->backends = nb;
	be = &p->backends[p->nbackends++];
	memset(be, 0, sizeof(*be));
	m = conf_yaml_mark(n);
	be->line = m.line;
	be->column = m.column;
	if (conf_defaults(conf_backend_keys, conf_nbackend_keys, be, err,
	    sizeof(err)) == -1)
		conf_yaml_err(ld, n, "%s", err);

	conf_yaml_object(ld, doc, n, conf_backend_keys, conf_nbackend_keys, be,
	    "backend", found);
	if (n->type != YAML_MAPPING_NODE)
		return;
	d = conf_key_find(conf_backend_keys, conf_nbackend_keys, "models");
	if (found[d - conf_backend_keys] != NULL)
		conf_yaml_models(ld, doc, found[d - conf_backend_keys], be);
	d = conf_key_find(conf_backend_keys, conf_nbackend_keys, "address");
	if (found[d - conf_backend_keys] == NULL) {
		conf_yaml_err(ld, n, "backend%s%s: address is required",
		    be->name[0] != '\0' ? " " : "", be->name);
		return;
	}
	if (be->addr.text[0] == '\0') {
		if (conf_yaml_empty(found[d - conf_backend_keys]))
			conf_yaml_err(ld, found[d - conf_backend_keys],
			    "address: must not be empty");
		return;
	}
	d = conf_key_find(conf_backend_keys, conf_nbackend_keys, "name");
	if (found[d - conf_backend_keys] == NULL) {
		if (conf_name_check(be->addr.text, err, sizeof(err)) == -1)
			conf_yaml_err(ld, n, "backend needs a name: %s", err);
		else
			strlcpy(be->name, be->addr.text, sizeof(be->name));
	}
}

static void
conf_yaml_backends(struct conf_loader *ld, yaml_document_t *doc,
    yaml_node_t *n, struct conf_pool *p)
{
	yaml_node_item_t	*it;

	if (n->type != YAML_SEQUENCE_NODE) {
		conf_yaml_err(ld, n, "backends must be a list");
		return;
	}
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	    it++)
		conf_yaml_backend(ld, doc, yaml_document_get_node(doc, *it), p);
}

/* One entry of pools: named by key node k, described by mapping n. */
static void
conf_yaml_pool(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *k,
    yaml_node_t *n)
{
	struct conf_pool	*p;
	yaml_node_t		*found[CONF_KEYS_MAX];
	const struct conf_directive *d;
	const char		*name;
	char			 what[CONF_NAME_MAX + 16];
	int			 i;

	name = (const char *)k->data.scalar.value;
	snprintf(what, sizeof(what), "pool '%s'", name);
	if (n->type != YAML_MAPPING_NODE) {
		conf_yaml_err(ld, n, "%s must be a mapping (key: value)", what);
		return;
	}
	if ((i = conf_pool_add(ld, name, conf_yaml_mark(k))) == -1)
		return;
	p = &ld->conf->pools[i];
	conf_yaml_object(ld, doc, n, conf_pool_keys, conf_npool_keys, p, what,
	    found);
	d = conf_key_find(conf_pool_keys, conf_npool_keys, "backends");
	if (found[d - conf_pool_keys] != NULL)
		conf_yaml_backends(ld, doc, found[d - conf_pool_keys], p);
}

static void
conf_yaml_pools(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n)
{
	yaml_node_pair_t	*pairs;
	const char		*key;
	int			 i, npairs;

	if ((npairs = conf_yaml_pairs(ld, doc, n, "pools", &pairs)) == -1)
		return;
	for (i = 0; i < npairs; i++) {
		if ((key = conf_yaml_key(doc, n, &pairs[i])) == NULL)
			continue;
		conf_yaml_pool(ld, doc, yaml_document_get_node(doc,
		    pairs[i].key), yaml_document_get_node(doc,
		    pairs[i].value));
	}
}

/* The shorthand: a top-level backends: list is the pool "default". */
static void
conf_yaml_shorthand(struct conf_loader *ld, yaml_document_t *doc,
    yaml_node_t *k, yaml_node_t *n)
{
	int	 i;

	if (n->type != YAML_SEQUENCE_NODE) {
		conf_yaml_err(ld, n, "backends must be a list");
		return;
	}
	if ((i = conf_pool_add(ld, "default", conf_yaml_mark(k))) == -1)
		return;
	conf_yaml_backends(ld, doc, n, &ld->conf->pools[i]);
}

/* ratelimits: a list of tenant entries (conf_ratelimit_keys[]). */
static void
conf_yaml_ratelimits(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n)
{
	struct conf			*conf = ld->conf;
	struct conf_ratelimit		*r;
	yaml_node_item_t		*it;
	yaml_node_t			*v, *found[CONF_KEYS_MAX];
	const struct conf_directive	*d;
	size_t				 i;
	char				 err[CONF_ERR_MAX];

	if (n->type != YAML_SEQUENCE_NODE) {
		conf_yaml_err(ld, n, "ratelimits must be a list");
		return;
	}
	d = conf_key_find(conf_ratelimit_keys, conf_nratelimit_keys, "tenant");
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	    it++) {
		v = yaml_document_get_node(doc, *it);
		if (conf->nratelimits == CONF_RATELIMITS_MAX) {
			conf_yaml_err(ld, v, "ratelimits: at most %d entries",
			    CONF_RATELIMITS_MAX);
			return;
		}
		r = &conf->ratelimits[conf->nratelimits++];
		memset(r, 0, sizeof(*r));
		if (conf_defaults(conf_ratelimit_keys, conf_nratelimit_keys, r,
		    err, sizeof(err)) == -1)
			conf_yaml_err(ld, v, "%s", err);
		conf_yaml_object(ld, doc, v, conf_ratelimit_keys,
		    conf_nratelimit_keys, r, "ratelimit", found);
		if (v->type != YAML_MAPPING_NODE)
			continue;
		if (found[d - conf_ratelimit_keys] == NULL) {
			conf_yaml_err(ld, v, "ratelimit: tenant is required");
			continue;
		}
		for (i = 0; i + 1 < conf->nratelimits; i++)
			if (strcmp(conf->ratelimits[i].tenant, r->tenant) == 0) {
				conf_yaml_err(ld, found[d - conf_ratelimit_keys],
				    "ratelimit: tenant '%s' is listed twice", r->tenant);
				break;
			}
	}
}

static void
conf_yaml_routes(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n)
{
	struct conf			*conf = ld->conf;
	struct conf_route		*r;
	yaml_node_item_t		*it;
	yaml_node_t			*v, *found[CONF_KEYS_MAX];
	const struct conf_directive	*d;
	const char			*s;
	size_t				 want, i;
	void				*np;
	char				 err[CONF_ERR_MAX];

	if (n->type != YAML_SEQUENCE_NODE) {
		conf_yaml_err(ld, n, "routes must be a list");
		return;
	}
	want = conf->nroutes +
	    (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (want > ld->route_cap) {
		if ((np = reallocarray(conf->routes, want,
		    sizeof(*conf->routes))) == NULL)
			goto nomem;
		conf->routes = np;
		if ((np = reallocarray(ld->route_marks, want,
		    sizeof(*ld->route_marks))) == NULL)
			goto nomem;
		ld->route_marks = np;
		if ((np = reallocarray(ld->route_pools, want,
		    sizeof(*ld->route_pools))) == NULL)
			goto nomem;
		ld->route_pools = np;
		ld->route_cap = want;
	}
	d = conf_key_find(conf_route_keys, conf_nroute_keys, "pool");
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	    it++) {
		v = yaml_document_get_node(doc, *it);
		i = conf->nroutes++;
		r = &conf->routes[i];
		memset(r, 0, sizeof(*r));
		r->pool = -1;
		ld->route_pools[i][0] = '\0';
		ld->route_marks[i] = conf_yaml_mark(v);
		if (conf_defaults(conf_route_keys, conf_nroute_keys, r, err,
		    sizeof(err)) == -1)
			conf_yaml_err(ld, v, "%s", err);
		conf_yaml_object(ld, doc, v, conf_route_keys, conf_nroute_keys,
		    r, "route", found);
		if (v->type != YAML_MAPPING_NODE)
			continue;
		if (found[d - conf_route_keys] == NULL) {
			conf_yaml_err(ld, v, "route: pool is required");
			continue;
		}
		v = found[d - conf_route_keys];
		ld->route_marks[i] = conf_yaml_mark(v);
		if ((s = conf_yaml_scalar(ld, v, "pool")) == NULL)
			continue;
		if (strlcpy(ld->route_pools[i], s, CONF_NAME_MAX) >=
		    CONF_NAME_MAX) {
			conf_yaml_err(ld, v, "pool: unknown pool '%s'", s);
			ld->route_pools[i][0] = '\0';
		} else if (*s == '\0')
			conf_yaml_err(ld, v, "pool: must not be empty");
	}
	return;
nomem:
	conf_yaml_err(ld, n, "out of memory");
}

/* listen: a list of {address: ...} (a bare "host:port" item is accepted). */
static void
conf_yaml_listen(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n)
{
	static const struct conf_directive	 tab[] = {
		{ "address", "addr", NULL, NULL, NULL,
		  "host:port, :port or port to accept clients on",
		  0, sizeof(struct conf_addr), 0, 0, NULL },
	};
	struct conf		*conf = ld->conf;
	struct conf_addr	 a;
	yaml_node_item_t	*it;
	yaml_node_t		*v, *found[1];

	ld->listen_given = 1;
	if (n->type != YAML_SEQUENCE_NODE) {
		conf_yaml_err(ld, n, "listen must be a list of {address: ...}");
		return;
	}
	if (n->data.sequence.items.top == n->data.sequence.items.start)
		conf_yaml_err(ld, n, "listen: at least one address is needed");
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	    it++) {
		v = yaml_document_get_node(doc, *it);
		memset(&a, 0, sizeof(a));
		/* "" is the addr type's "none": not a listen address */
		if (v->type == YAML_SCALAR_NODE && conf_yaml_empty(v))
			conf_yaml_err(ld, v, "listen: address must not be empty");
		else if (v->type == YAML_SCALAR_NODE)
			conf_yaml_set(ld, &tab[0], &a, v, "listen");
		else {
			conf_yaml_object(ld, doc, v, tab, 1, &a, "listen",
			    found);
			if (v->type == YAML_MAPPING_NODE && found[0] == NULL)
				conf_yaml_err(ld, v,
				    "listen: address is required");
			else if (found[0] != NULL && conf_yaml_empty(found[0]))
				conf_yaml_err(ld, found[0],
				    "address: must not be empty");
		}
		if (a.text[0] == '\0')
			continue;
		if (conf->nlisten == CONF_LISTEN_MAX) {
			conf_yaml_err(ld, v, "listen: at most %d addresses",
			    CONF_LISTEN_MAX);
			return;
		}
		ld->listen_marks[conf->nlisten] = conf_yaml_mark(v);
		conf->listen[conf->nlisten++] = a;
	}
}

/* A section such as health: its keys are rows "health.KEY". */
static void
conf_yaml_section(struct conf_loader *ld, yaml_document_t *doc,
    const char *section, yaml_node_t *n)
{
	const struct conf_directive	*d;
	yaml_node_pair_t		*pairs;
	yaml_node_t			*v;
	const char			*key;
	char				 name[CONF_NAME_MAX * 2];
	struct conf_mark		 m;
	int				 i, npairs;

	if ((npairs = conf_yaml_pairs(ld, doc, n, section, &pairs)) == -1)
		return;
	for (i = 0; i < npairs; i++) {
		if ((key = conf_yaml_key(doc, n, &pairs[i])) == NULL)
			continue;
		snprintf(name, sizeof(name), "%s.%s", section, key);
		if ((d = conf_directive_find(name)) == NULL) {
			conf_yaml_err(ld, yaml_document_get_node(doc,
			    pairs[i].key), "unknown key '%s' in %s", key,
			    section);
			continue;
		}
		v = yaml_document_get_node(doc, pairs[i].value);
		if (conf_yaml_set(ld, d, ld->conf, v, name) == 0) {
			m = conf_yaml_mark(v);
			ld->origins[d - conf_directives] = (struct conf_origin){
			    ORIGIN_FILE, m.line, m.column, NULL };
		}
	}
}

static void
conf_yaml_root(struct conf_loader *ld, yaml_document_t *doc, yaml_node_t *n)
{
	const struct conf_directive	*d;
	yaml_node_pair_t		*pairs;
	yaml_node_t			*k, *v;
	const char			*key;
	struct conf_mark		 m;
	int				 i, npairs;

	if ((npairs = conf_yaml_pairs(ld, doc, n, "the top level",
	    &pairs)) == -1)
		return;
	for (i = 0; i < npairs; i++) {
		if ((key = conf_yaml_key(doc, n, &pairs[i])) == NULL)
			continue;
		k = yaml_document_get_node(doc, pairs[i].key);
		v = yaml_document_get_node(doc, pairs[i].value);
		if (strcmp(key, "listen") == 0)
			conf_yaml_listen(ld, doc, v);
		else if (strcmp(key, "backends") == 0)
			conf_yaml_shorthand(ld, doc, k, v);
		else if (strcmp(key, "pools") == 0)
			conf_yaml_pools(ld, doc, v);
		else if (strcmp(key, "routes") == 0)
			conf_yaml_routes(ld, doc, v);
		else if (strcmp(key, "ratelimits") == 0)
			conf_yaml_ratelimits(ld, doc, v);
		else if ((d = conf_directive_find(key)) != NULL) {
			if (conf_yaml_set(ld, d, ld->conf, v, key) == 0) {
				m = conf_yaml_mark(v);
				ld->origins[d - conf_directives] =
				    (struct conf_origin){ ORIGIN_FILE, m.line,
				    m.column, NULL };
			}
		} else if (conf_is_section(key))
			conf_yaml_section(ld, doc, key, v);
		else
			conf_yaml_err(ld, k, "unknown key '%s'", key);
	}
}

/*
 * conf_yaml_load() reads one YAML document from fp, or from text when fp is
 * NULL, into ld->conf.  Returns 0 if the document could be parsed (its
 * content may still have had errors, counted in ld), -1 on a syntax error.
 */
int
conf_yaml_load(struct conf_loader *ld, FILE *fp, const char *text)
{
	yaml_parser_t	 parser;
	yaml_document_t	 doc, extra;
	yaml_node_t	*root;
	int		 rv = 0;

	if (!yaml_parser_initialize(&parser)) {
		conf_err(ld, 1, 1, "out of memory");
		return -1;
	}
	if (fp != NULL)
		yaml_parser_set_input_file(&parser, fp);
	else
		yaml_parser_set_input_string(&parser,
		    (const unsigned char *)text, strlen(text));
	if (!yaml_parser_load(&parser, &doc)) {
		if (parser.context != NULL)
			conf_err(ld, (int)parser.problem_mark.line + 1,
			    (int)parser.problem_mark.column + 1,
			    "syntax error: %s (%s at line %d)", parser.problem,
			    parser.context, (int)parser.context_mark.line + 1);
		else
			conf_err(ld, (int)parser.problem_mark.line + 1,
			    (int)parser.problem_mark.column + 1,
			    "syntax error: %s", parser.problem != NULL ?
			    parser.problem : "unreadable input");
		yaml_parser_delete(&parser);
		return -1;
	}
	if ((root = yaml_document_get_root_node(&doc)) != NULL) {
		ld->doc = &doc;
		conf_yaml_root(ld, &doc, root);
		/* A second document would be silently ignored: say so. */
		if (!yaml_parser_load(&parser, &extra)) {
			conf_err(ld, (int)parser.problem_mark.line + 1,
			    (int)parser.problem_mark.column + 1,
			    "syntax error: %s", parser.problem != NULL ?
			    parser.problem : "unreadable input");
			rv = -1;
		} else {
			if ((root = yaml_document_get_root_node(&extra)) !=
			    NULL)
				conf_yaml_err(ld, root,
				    "only one YAML document is allowed");
			yaml_document_delete(&extra);
		}
	}
	ld->doc = NULL;
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rv;
}

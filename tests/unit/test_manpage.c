/* Unit tests of man/: every directive, variable, flag and control command has its entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conf/conf.h"
#include "lib/ctlproto.h"

/*
 * The pages are read from man/ under the directory the suite runs in
 * (make test runs it from the top of the tree), or from $ROUTERD_MAN_DIR.
 */
static char *
man_read(const char *name)
{
	const char	*dir = getenv("ROUTERD_MAN_DIR");
	char		 path[512];
	char		*text;
	FILE		*fp;
	long		 n;

	snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : "man", name);
	fp = fopen(path, "r");
	cr_assert(fp != NULL, "cannot open %s (run from the top of the tree)", path);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	text = calloc(1, (size_t)n + 2);
	cr_assert(text != NULL);
	text[0] = '\n';		/* every line, the first too, follows a newline */
	cr_assert(fread(text + 1, 1, (size_t)n, fp) == (size_t)n);
	fclose(fp);
	return text;
}

/*
 * The text of a section: from the line ".Sh title" to the next ".Sh",
 * copied with the escapes \- and \& resolved, so that "Fl \-workers"
 * reads "Fl -workers" (Fl adds the first hyphen).  NULL if there is no
 * such section.
 */
static char *
man_section(const char *text, const char *title)
{
	char		 head[128];
	const char	*s, *e, *p;
	char		*out, *o;

	snprintf(head, sizeof(head), "\n.Sh %s\n", title);
	if ((s = strstr(text, head)) == NULL)
		return NULL;
	s += 1;
	if ((e = strstr(s + 1, "\n.Sh ")) == NULL)
		e = s + strlen(s);
	out = calloc(1, (size_t)(e - s) + 2);
	cr_assert(out != NULL);
	o = out;
	*o++ = '\n';
	for (p = s; p < e; p++) {
		if (p[0] == '\\' && p + 1 < e && (p[1] == '-' || p[1] == '&')) {
			if (p[1] == '-')
				*o++ = '-';
			p++;
			continue;
		}
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

/*
 * The entry of key in a section: from its line "MARK key" (mark such as
 * ".It Ic", key followed by a blank or the end of the line) to the next
 * line that starts with mark, a ".Ss" or the end, as a new string; NULL
 * when the key has no entry.
 */
static char *
man_entry(const char *sec, const char *mark, const char *key)
{
	char		 head[160], next[32];
	const char	*s, *e, *e2;
	size_t		 hl;

	snprintf(head, sizeof(head), "\n%s %s", mark, key);
	snprintf(next, sizeof(next), "\n%s ", mark);
	hl = strlen(head);
	for (s = strstr(sec, head); s != NULL; s = strstr(s + 1, head))
		if (s[hl] == ' ' || s[hl] == '\n')
			break;
	if (s == NULL)
		return NULL;
	s++;
	e = strstr(s, next);
	e2 = strstr(s, "\n.Ss ");
	if (e == NULL || (e2 != NULL && e2 < e))
		e = e2;
	if (e == NULL)
		e = s + strlen(s);
	return strndup(s, (size_t)(e - s) + (*e == '\n'));	/* with its last newline */
}

/* Is w in text as a word of its own (not inside a longer name)? */
static int
has_word(const char *text, const char *w)
{
	const char	*p;
	size_t		 n = strlen(w);

	for (p = strstr(text, w); p != NULL; p = strstr(p + 1, w)) {
		int	before = p == text || strchr(" \n\t(", p[-1]) != NULL;
		int	after = p[n] == '\0' || strchr(" \n\t,.;)", p[n]) != NULL;

		if (before && after)
			return 1;
	}
	return 0;
}

/* Does the ".Ic" key of an entry line belong to tab (or is it one of extra)? */
static int
known_key(const struct conf_directive *tab, size_t n, const char *key,
    const char *const *extra)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(tab[i].name, key) == 0)
			return 1;
	for (i = 0; extra != NULL && extra[i] != NULL; i++)
		if (strcmp(extra[i], key) == 0)
			return 1;
	return 0;
}

/*
 * Checks that every row of tab has an entry in section title of
 * routerd.yaml.5 with its default, variable and flag; that enum rows name
 * each of their values (when check_enum); and that the section has no
 * entry for a key that does not exist.
 */
static void
check_table(const char *title, const struct conf_directive *tab, size_t n,
    const char *const *extra, int check_enum)
{
	char		*text, *sec, *e, want[256];
	const char	*p;
	size_t		 i, k;

	text = man_read("routerd.yaml.5");
	sec = man_section(text, title);
	cr_assert(sec != NULL, "routerd.yaml.5 has no section %s", title);
	for (i = 0; i < n; i++) {
		const struct conf_directive *d = &tab[i];

		e = man_entry(sec, ".It Ic", d->name);
		cr_expect(e != NULL, "routerd.yaml.5, %s: no entry \".It Ic %s\" "
		    "(%s)", title, d->name, d->help);
		if (e == NULL)
			continue;
		if (d->def != NULL && d->def[0] == '\0')
			cr_expect(strstr(e, "Default: empty") != NULL,
			    "routerd.yaml.5: %s: default should read \"Default: "
			    "empty\"", d->name);
		else if (d->def != NULL) {
			snprintf(want, sizeof(want), "Default:\n.Ql %s", d->def);
			p = strstr(e, want);
			cr_expect(p != NULL && strchr(" \n", p[strlen(want)]) != NULL,
			    "routerd.yaml.5: %s: default should read "
			    "\"Default:\" \".Ql %s\"", d->name, d->def);
		}
		if (d->env != NULL) {
			snprintf(want, sizeof(want), ".Ev %s", d->env);
			cr_expect(has_word(e, want + 4) && strstr(e, want) != NULL,
			    "routerd.yaml.5: %s: environment variable %s not "
			    "named", d->name, d->env);
		}
		if (d->flag != NULL) {
			snprintf(want, sizeof(want), ".Fl -%s", d->flag);
			p = strstr(e, want);
			cr_expect(p != NULL && strchr(" \n", p[strlen(want)]) != NULL,
			    "routerd.yaml.5: %s: flag --%s not named", d->name,
			    d->flag);
		}
		if (check_enum && d->names != NULL)
			for (k = 0; d->names[k] != NULL; k++)
				cr_expect(has_word(e, d->names[k]),
				    "routerd.yaml.5: %s: value %s not described",
				    d->name, d->names[k]);
		free(e);
	}
	/* and the other way round: no entry for a key that is gone */
	for (p = strstr(sec, "\n.It Ic "); p != NULL; p = strstr(p + 1, "\n.It Ic ")) {
		char	 key[128];

		k = strcspn(p + 8, " \n");
		snprintf(key, sizeof(key), "%.*s", (int)k, p + 8);
		cr_expect(known_key(tab, n, key, extra),
		    "routerd.yaml.5, %s: entry for unknown key %s", title, key);
	}
	free(sec);
	free(text);
}

Test(manpage, settings)
{
	static const char *const extra[] = { "listen", NULL };

	check_table("SETTINGS", conf_directives, conf_ndirectives, extra, 1);
}

Test(manpage, pools)
{
	check_table("POOLS", conf_pool_keys, conf_npool_keys, NULL, 0);
}

Test(manpage, backends)
{
	check_table("BACKENDS", conf_backend_keys, conf_nbackend_keys, NULL, 0);
}

Test(manpage, routes)
{
	check_table("ROUTES", conf_route_keys, conf_nroute_keys, NULL, 0);
}

/* The ENVIRONMENT table of routerd.yaml.5 maps each variable to its key. */
Test(manpage, environment)
{
	char	*text, *sec, want[256];
	size_t	 i;

	text = man_read("routerd.yaml.5");
	sec = man_section(text, "ENVIRONMENT");
	cr_assert(sec != NULL, "routerd.yaml.5 has no ENVIRONMENT section");
	for (i = 0; i < conf_ndirectives; i++) {
		const struct conf_directive *d = &conf_directives[i];

		if (d->env == NULL)
			continue;
		snprintf(want, sizeof(want), "\n.It Ev %s Ta Ic %s\n", d->env,
		    d->name);
		cr_expect(strstr(sec, want) != NULL,
		    "routerd.yaml.5, ENVIRONMENT: no row \"%s\"", want + 1);
	}
	free(sec);
	free(text);
}

/* routerd.8 lists every long flag with the key it sets. */
Test(manpage, routerd_flags)
{
	char	*text, *sec, *e, want[256];
	size_t	 i;

	text = man_read("routerd.8");
	sec = man_section(text, "DESCRIPTION");
	cr_assert(sec != NULL, "routerd.8 has no DESCRIPTION section");
	for (i = 0; i < conf_ndirectives; i++) {
		const struct conf_directive *d = &conf_directives[i];

		if (d->flag == NULL)
			continue;
		snprintf(want, sizeof(want), "-%s", d->flag);
		e = man_entry(sec, ".It Fl", want);
		cr_expect(e != NULL, "routerd.8: no entry \".It Fl \\-%s\"",
		    d->flag);
		if (e == NULL)
			continue;
		snprintf(want, sizeof(want), "\n.Ic %s\n", d->name);
		cr_expect(strstr(e, want) != NULL,
		    "routerd.8: --%s should say that it sets %s", d->flag,
		    d->name);
		free(e);
	}
	free(sec);
	free(text);
}

/*
 * routerctl.8 has an entry ".It Cm WORDS" for every command of the
 * grammar, with one Ar per argument, and none for a command that is gone.
 */
Test(manpage, routerctl_commands)
{
	char		*text, *sec, *e, words[128], *tok, *save;
	const char	*p;
	size_t		 i, k;
	int		 nar;

	text = man_read("routerctl.8");
	sec = man_section(text, "DESCRIPTION");
	cr_assert(sec != NULL, "routerctl.8 has no DESCRIPTION section");
	for (i = 0; i < ctlproto_ncmds; i++) {
		const struct ctlproto_cmd *c = &ctlproto_cmds[i];

		snprintf(words, sizeof(words), "%s%s%s", c->words[0],
		    c->nwords > 1 ? " " : "", c->nwords > 1 ? c->words[1] : "");
		e = man_entry(sec, ".It Cm", words);
		cr_expect(e != NULL, "routerctl.8: no entry \".It Cm %s\" (%s)",
		    words, c->help);
		if (e == NULL)
			continue;
		/* the entry's first line: ".It Cm backend weight Ar name weight" */
		e[strcspn(e, "\n")] = '\0';
		nar = 0;
		for (tok = strtok_r(e + strlen(".It Cm ") + strlen(words), " ",
		    &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
			if (strcmp(tok, "Ar") != 0 && strcmp(tok, "Oo") != 0 &&
			    strcmp(tok, "Oc") != 0 && strcmp(tok, "Op") != 0)
				nar++;
		cr_expect(nar == c->maxargs, "routerctl.8: %s takes %d "
		    "argument%s (%s), its entry shows %d", words, c->maxargs,
		    c->maxargs == 1 ? "" : "s", c->args, nar);
		free(e);
	}
	for (p = strstr(sec, "\n.It Cm "); p != NULL; p = strstr(p + 1, "\n.It Cm ")) {
		const char *const	*w;
		const char		*v[CTLPROTO_WORDS_MAX + 1];
		char			 line[128];
		size_t			 n = 0;

		k = strcspn(p + 8, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)k, p + 8);
		for (tok = strtok_r(line, " ", &save); tok != NULL &&
		    n < CTLPROTO_WORDS_MAX && strcmp(tok, "Ar") != 0 &&
		    strcmp(tok, "Oo") != 0; tok = strtok_r(NULL, " ", &save))
			v[n++] = tok;
		v[n] = NULL;
		w = v;
		cr_expect(ctlproto_lookup(w, n) != NULL &&
		    ctlproto_lookup(w, n)->nwords == (int)n,
		    "routerctl.8: entry for unknown command \"%.*s\"", (int)k, p + 8);
	}
	free(sec);
	free(text);
}

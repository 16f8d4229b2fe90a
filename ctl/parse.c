/* routerctl's keyword tree: prefix matching and generated help over lib/ctlproto.c's grammar. */
#include <stdio.h>
#include <string.h>

#include <bsd/string.h>

#include "ctl/ctl.h"

/* set[i] != 0: row i is still a candidate. */
struct ctl_set {
	unsigned char	 in[CTL_NCMDS];
};

/* Appends the distinct keywords at position pos of the candidates, comma separated. */
static void
ctl_words(const struct ctl_set *s, int pos, const char *only_prefix,
    char *buf, size_t len)
{
	size_t	i, j;
	int	dup;

	buf[0] = '\0';
	for (i = 0; i < ctlproto_ncmds; i++) {
		const char *w;

		if (!s->in[i] || ctlproto_cmds[i].nwords <= pos)
			continue;
		w = ctlproto_cmds[i].words[pos];
		if (only_prefix != NULL &&
		    strncmp(w, only_prefix, strlen(only_prefix)) != 0)
			continue;
		for (dup = 0, j = 0; j < i && !dup; j++)
			dup = s->in[j] && ctlproto_cmds[j].nwords > pos &&
			    strcmp(ctlproto_cmds[j].words[pos], w) == 0;
		if (dup)
			continue;
		if (buf[0] != '\0')
			strlcat(buf, ", ", len);
		strlcat(buf, w, len);
	}
}

/* The keywords typed so far, expanded, for messages ("show "). */
static void
ctl_path(const struct ctl_set *s, int upto, char *buf, size_t len)
{
	size_t	i;
	int	k;

	buf[0] = '\0';
	for (i = 0; i < ctlproto_ncmds; i++) {
		if (!s->in[i])
			continue;
		for (k = 0; k < upto; k++) {
			strlcat(buf, ctlproto_cmds[i].words[k], len);
			strlcat(buf, " ", len);
		}
		return;
	}
}

/*
 * Narrow the candidates at keyword position pos to the rows whose keyword
 * there is the one tok stands for.  Returns 0, or -1 with err filled.
 */
static int
ctl_match(struct ctl_set *s, int pos, const char *tok, char *err, size_t errlen)
{
	const char	*pick = NULL;
	char		 words[512], path[128];
	size_t		 i, tlen = strlen(tok);
	int		 nmatch = 0, npref = 0;
	const char	*pref = NULL;

	for (i = 0; i < ctlproto_ncmds; i++) {
		const struct ctlproto_cmd *c = &ctlproto_cmds[i];

		if (!s->in[i] || c->nwords <= pos)
			continue;
		if (strcmp(c->words[pos], tok) == 0) {
			pick = c->words[pos];
			nmatch = 1;
			break;
		}
		if (tlen > 0 && strncmp(c->words[pos], tok, tlen) == 0 &&
		    (pick == NULL || strcmp(pick, c->words[pos]) != 0)) {
			if (pick == NULL || nmatch == 0)
				pick = c->words[pos];
			nmatch++;
			if ((c->prefer & (1u << pos)) &&
			    (pref == NULL || strcmp(pref, c->words[pos]) != 0)) {
				pref = c->words[pos];
				npref++;
			}
		}
	}
	ctl_path(s, pos, path, sizeof(path));
	if (nmatch > 1 && npref == 1)
		pick = pref;
	else if (nmatch > 1) {
		ctl_words(s, pos, tok, words, sizeof(words));
		snprintf(err, errlen, "ambiguous command: %s%s (%s)", path, tok,
		    words);
		return -1;
	}
	if (pick == NULL) {
		ctl_words(s, pos, NULL, words, sizeof(words));
		snprintf(err, errlen, "unknown command: %s%s; valid commands: %s",
		    path, tok, words);
		return -1;
	}
	for (i = 0; i < ctlproto_ncmds; i++)
		if (s->in[i] && (ctlproto_cmds[i].nwords <= pos ||
		    strcmp(ctlproto_cmds[i].words[pos], pick) != 0))
			s->in[i] = 0;
	return 0;
}

int
ctl_parse(int argc, char *argv[], struct ctl_req *req, char *err, size_t errlen)
{
	struct ctl_set	 s;
	const struct ctlproto_cmd *c = NULL;
	char		 words[512], path[128];
	size_t		 i, n;
	int		 pos;

	memset(&s, 1, sizeof(s));
	for (pos = 0;; pos++) {
		for (n = 0, i = 0; i < ctlproto_ncmds; i++)
			if (s.in[i]) {
				n++;
				c = &ctlproto_cmds[i];
			}
		/* no row is a prefix of another: one left and complete means done */
		if (n == 1 && c->nwords == pos)
			break;
		if (pos >= argc) {
			ctl_words(&s, pos, NULL, words, sizeof(words));
			ctl_path(&s, pos, path, sizeof(path));
			/* path ends in a blank: "show " */
			if (pos == 0)
				snprintf(err, errlen, "missing command; valid "
				    "commands: %s", words);
			else
				snprintf(err, errlen, "incomplete command: %.*s; "
				    "valid commands: %s", (int)strlen(path) - 1,
				    path, words);
			return -1;
		}
		if (ctl_match(&s, pos, argv[pos], err, errlen) == -1)
			return -1;
	}
	req->cmd = c;
	req->args = argv + pos;
	req->nargs = argc - pos;
	if (req->nargs < c->minargs || req->nargs > c->maxargs) {
		ctl_path(&s, pos, path, sizeof(path));
		snprintf(err, errlen, "usage: %s%s", path, c->args);
		/* drop the trailing blank of a command without arguments */
		n = strlen(err);
		if (n > 0 && err[n - 1] == ' ')
			err[n - 1] = '\0';
		return -1;
	}
	return 0;
}

json_t *
ctl_request(const struct ctl_req *req, int json)
{
	json_t	*cmd, *r;
	int	 k;

	if ((cmd = json_array()) == NULL)
		return NULL;
	for (k = 0; k < req->cmd->nwords; k++)
		json_array_append_new(cmd, json_string(req->cmd->words[k]));
	for (k = 0; k < req->nargs; k++)
		if (json_array_append_new(cmd, json_string(req->args[k])) == -1) {
			/* not UTF-8: jansson refuses it, and so would the master */
			json_decref(cmd);
			return NULL;
		}
	r = json_pack("{s:o, s:b}", "cmd", cmd, "json", json);
	return r;
}

void
ctl_usage(FILE *fp)
{
	size_t	i;
	char	line[128];

	for (i = 0; i < ctlproto_ncmds; i++) {
		const struct ctlproto_cmd *c = &ctlproto_cmds[i];

		snprintf(line, sizeof(line), "%s%s%s%s%s", c->words[0],
		    c->nwords > 1 ? " " : "", c->nwords > 1 ? c->words[1] : "",
		    c->args[0] ? " " : "", c->args);
		fprintf(fp, "  %-28s %s\n", line, c->help);
	}
}

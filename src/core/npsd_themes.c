/*
 * npsd_themes — keyword lexicon that tags comments with themes.
 *
 * The lexicon is parsed once into keywords bucketed by their first byte so
 * that matching a comment only tries the keywords that can start at each
 * word boundary; matching allocates nothing (it runs once per response on
 * the hot path).
 */
#include "npsd/npsd_themes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPSD_THEME_NAME_MAX 64
#define NPSD_KEYWORD_MAX 128

typedef struct npsd_keyword_s {
        char *text;     /* lower case, inner whitespace runs as one ' ' */
        size_t len;     /* without the '*' */
        int prefix;     /* keyword ended in '*': may be followed by letters */
        int theme;      /* index into names[] */
} npsd_keyword_t;

struct npsd_themes_s {
        int cnt;
        char *names[NPSD_THEMES_MAX];   /* owned */
        npsd_keyword_t *kws;            /* owned, sorted by first byte */
        size_t kw_cnt;
        size_t kw_size;
        /* kws[first[c] .. first[c + 1]) start with byte c */
        size_t first[257];
};

/* Kept byte for byte equal to config/themes.conf (a unit test checks). */
static const char npsd_themes_default[] =
        "# npsd theme lexicon: tags survey comments with themes (SPEC, NPS metrics).\n"
        "#\n"
        "# One theme per line:   theme_name = keyword, another keyword, ...\n"
        "# Matching is case-insensitive (ASCII) on whole words or phrases: a keyword\n"
        "# matches only where it is not part of a longer word (\"cost\" does not match\n"
        "# \"costume\"). A trailing '*' makes a keyword a prefix (\"integrat*\" matches\n"
        "# integration, integrations, integrate). Spaces inside a phrase match any run\n"
        "# of whitespace. '#' starts a comment line. At most 64 themes.\n"
        "#\n"
        "# Point themes.file at a copy of this file to use your own lexicon; the\n"
        "# built-in default is identical to this file.\n"
        "\n"
        "pricing = price, prices, pricing, priced, expensive, overpriced, cost, costs, costly, too costly, licen*, subscription fee, value for money, cheaper, discount*\n"
        "reliability = outage*, downtime, down time, crash*, unstable, unreliable, reliab*, bug, bugs, buggy, data loss, goes down, keeps failing, broken\n"
        "performance = slow, slowness, sluggish, laggy, lag, latency, performance, load time*, loading time*, takes forever, timeout*, timed out, speed, faster\n"
        "support = support, customer service, help desk, helpdesk, ticket, tickets, response time, no response, csm, account manager, success team, responsive, unresponsive\n"
        "onboarding = onboarding, onboard*, setup, set up, getting started, implementation, training, learning curve, ramp up, first week, kickoff\n"
        "integrations = integrat*, api, apis, webhook*, salesforce, hubspot, slack, jira, zapier, connector*, sso, sync*\n"
        "usability = usability, ui, ux, user interface, intuitive, unintuitive, confusing, clunky, hard to use, easy to use, user friendly, user-friendly, navigation, cluttered, design\n"
        "missing_features = missing, feature request*, lacks, lacking, wish it had, would love, roadmap, no way to, doesn't support, does not support, not supported, needs more, limited functionality\n"
        "documentation = documentation, docs, doc, knowledge base, help center, help articles, tutorial*, guide, guides, examples, outdated docs, manual\n"
        "billing = billing, invoice*, billed, charged, overcharged, double charged, refund*, payment*, credit card, receipt*, renewal notice, auto-renew*\n";

const char *npsd_themes_default_text(void) {
        return npsd_themes_default;
}

static int npsd_is_alnum(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9');
}

static int npsd_is_space(unsigned char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
               c == '\f' || c == '\v';
}

static unsigned char npsd_lower(unsigned char c) {
        return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Trims [*s, *e) of surrounding whitespace in place. */
static void npsd_trim(const char **s, const char **e) {
        while (*s < *e && npsd_is_space((unsigned char)**s))
                (*s)++;
        while (*e > *s && npsd_is_space((unsigned char)(*e)[-1]))
                (*e)--;
}

static int npsd_kw_cmp(const void *a, const void *b) {
        const npsd_keyword_t *ka = a, *kb = b;
        unsigned char ca = (unsigned char)ka->text[0];
        unsigned char cb = (unsigned char)kb->text[0];

        if (ca != cb)
                return ca < cb ? -1 : 1;
        /* stable enough for matching; keep file order within a bucket */
        if (ka->theme != kb->theme)
                return ka->theme < kb->theme ? -1 : 1;
        return strcmp(ka->text, kb->text);
}

/* Adds keyword [s, e) of theme idx, normalised. Returns 0, or -1 with a
 * reason in errstr. */
static int npsd_themes_add_kw(npsd_themes_t *th, int idx, const char *s,
                              const char *e, int line, char *errstr,
                              size_t errstr_size) {
        char buf[NPSD_KEYWORD_MAX + 2];
        size_t n = 0;
        int prefix = 0;
        const char *p;
        npsd_keyword_t *kw;

        npsd_trim(&s, &e);
        if (s == e) {
                snprintf(errstr, errstr_size, "themes line %d: empty keyword",
                         line);
                return -1;
        }
        if (e[-1] == '*') {
                prefix = 1;
                e--;
                npsd_trim(&s, &e);
        }
        for (p = s; p < e; p++) {
                unsigned char c = (unsigned char)*p;

                if (c == '*') {
                        snprintf(errstr, errstr_size,
                                 "themes line %d: '*' is only allowed at the "
                                 "end of a keyword", line);
                        return -1;
                }
                if (npsd_is_space(c)) {
                        if (n > 0 && buf[n - 1] == ' ')
                                continue;
                        c = ' ';
                }
                if (n >= NPSD_KEYWORD_MAX) {
                        snprintf(errstr, errstr_size,
                                 "themes line %d: keyword longer than %d bytes",
                                 line, NPSD_KEYWORD_MAX);
                        return -1;
                }
                buf[n++] = (char)npsd_lower(c);
        }
        if (n == 0) {
                snprintf(errstr, errstr_size,
                         "themes line %d: keyword '*' matches everything", line);
                return -1;
        }
        buf[n] = '\0';

        if (th->kw_cnt == th->kw_size) {
                size_t nsize = th->kw_size ? th->kw_size * 2 : 64;
                npsd_keyword_t *nk = realloc(th->kws, nsize * sizeof(*nk));

                if (!nk)
                        goto oom;
                th->kws = nk;
                th->kw_size = nsize;
        }
        kw = &th->kws[th->kw_cnt];
        if (!(kw->text = strdup(buf)))
                goto oom;
        kw->len = n;
        kw->prefix = prefix;
        kw->theme = idx;
        th->kw_cnt++;
        return 0;

oom:
        snprintf(errstr, errstr_size, "themes: out of memory");
        return -1;
}

/* Parses one non-comment line "name = kw, kw, ...". */
static int npsd_themes_parse_line(npsd_themes_t *th, const char *s,
                                  const char *e, int line, char *errstr,
                                  size_t errstr_size) {
        const char *eq = memchr(s, '=', (size_t)(e - s));
        const char *ns = s, *ne, *p, *kw;
        int idx;

        if (!eq) {
                snprintf(errstr, errstr_size,
                         "themes line %d: expected 'theme = keyword, ...'",
                         line);
                return -1;
        }
        ne = eq;
        npsd_trim(&ns, &ne);
        if (ns == ne || ne - ns > NPSD_THEME_NAME_MAX) {
                snprintf(errstr, errstr_size,
                         "themes line %d: theme name must be 1-%d characters",
                         line, NPSD_THEME_NAME_MAX);
                return -1;
        }
        for (p = ns; p < ne; p++) {
                unsigned char c = (unsigned char)*p;

                if (!npsd_is_alnum(c) && c != '_' && c != '-') {
                        snprintf(errstr, errstr_size,
                                 "themes line %d: theme name '%.*s' may only "
                                 "hold letters, digits, '_' and '-'",
                                 line, (int)(ne - ns), ns);
                        return -1;
                }
        }
        for (idx = 0; idx < th->cnt; idx++) {
                if (strlen(th->names[idx]) == (size_t)(ne - ns) &&
                    !memcmp(th->names[idx], ns, (size_t)(ne - ns))) {
                        snprintf(errstr, errstr_size,
                                 "themes line %d: theme '%.*s' defined twice",
                                 line, (int)(ne - ns), ns);
                        return -1;
                }
        }
        if (th->cnt == NPSD_THEMES_MAX) {
                snprintf(errstr, errstr_size,
                         "themes line %d: more than %d themes", line,
                         NPSD_THEMES_MAX);
                return -1;
        }
        if (!(th->names[th->cnt] = strndup(ns, (size_t)(ne - ns)))) {
                snprintf(errstr, errstr_size, "themes: out of memory");
                return -1;
        }
        idx = th->cnt++;

        for (kw = p = eq + 1; ; p++) {
                if (p == e || *p == ',') {
                        if (npsd_themes_add_kw(th, idx, kw, p, line, errstr,
                                               errstr_size) == -1)
                                return -1;
                        if (p == e)
                                break;
                        kw = p + 1;
                }
        }
        return 0;
}

npsd_themes_t *npsd_themes_new(const char *text, size_t len, char *errstr,
                               size_t errstr_size) {
        npsd_themes_t *th;
        const char *p = text, *end = text + len;
        int line = 0;
        size_t i;
        int c;

        if (!(th = calloc(1, sizeof(*th)))) {
                snprintf(errstr, errstr_size, "themes: out of memory");
                return NULL;
        }

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *s = p, *e = nl ? nl : end;

                line++;
                p = nl ? nl + 1 : end;
                npsd_trim(&s, &e);
                if (s == e || *s == '#')
                        continue;
                if (memchr(s, '\0', (size_t)(e - s))) {
                        snprintf(errstr, errstr_size,
                                 "themes line %d: NUL byte", line);
                        goto fail;
                }
                if (npsd_themes_parse_line(th, s, e, line, errstr,
                                           errstr_size) == -1)
                        goto fail;
        }
        if (th->cnt == 0) {
                snprintf(errstr, errstr_size, "themes: no theme defined");
                goto fail;
        }

        /* Bucket the keywords by first byte for npsd_themes_match(). */
        if (th->kw_cnt > 0)
                qsort(th->kws, th->kw_cnt, sizeof(*th->kws), npsd_kw_cmp);
        for (c = 0, i = 0; c < 256; c++) {
                th->first[c] = i;
                while (i < th->kw_cnt &&
                       (unsigned char)th->kws[i].text[0] == (unsigned char)c)
                        i++;
        }
        th->first[256] = th->kw_cnt;
        return th;

fail:
        npsd_themes_destroy(th);
        return NULL;
}

void npsd_themes_destroy(npsd_themes_t *th) {
        size_t i;
        int t;

        if (!th)
                return;
        for (i = 0; i < th->kw_cnt; i++)
                free(th->kws[i].text);
        free(th->kws);
        for (t = 0; t < th->cnt; t++)
                free(th->names[t]);
        free(th);
}

int npsd_themes_count(const npsd_themes_t *th) {
        return th ? th->cnt : 0;
}

const char *npsd_themes_name(const npsd_themes_t *th, int idx) {
        if (!th || idx < 0 || idx >= th->cnt)
                return NULL;
        return th->names[idx];
}

/* Returns the end offset of keyword kw matched at s[i], or 0 when it does
 * not match there. A ' ' in the keyword matches any whitespace run. */
static size_t npsd_kw_match_at(const npsd_keyword_t *kw, const char *s,
                               size_t len, size_t i) {
        size_t k;

        for (k = 0; k < kw->len; k++) {
                unsigned char c;

                if (i >= len)
                        return 0;
                c = (unsigned char)s[i];
                if (kw->text[k] == ' ') {
                        if (!npsd_is_space(c))
                                return 0;
                        while (i < len && npsd_is_space((unsigned char)s[i]))
                                i++;
                        continue;
                }
                if (npsd_lower(c) != (unsigned char)kw->text[k])
                        return 0;
                i++;
        }
        if (!kw->prefix && i < len && npsd_is_alnum((unsigned char)s[i]))
                return 0;
        return i;
}

uint64_t npsd_themes_match(const npsd_themes_t *th, const char *comment,
                           size_t len) {
        uint64_t bits = 0, all;
        size_t i, k;

        if (!th || !comment || th->cnt == 0)
                return 0;
        all = th->cnt >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << th->cnt) - 1);

        for (i = 0; i < len && bits != all; i++) {
                unsigned char c = npsd_lower((unsigned char)comment[i]);

                /* a keyword may not start inside a word */
                if (i > 0 && npsd_is_alnum((unsigned char)comment[i - 1]))
                        continue;
                for (k = th->first[c]; k < th->first[c + 1]; k++) {
                        const npsd_keyword_t *kw = &th->kws[k];

                        if (bits & ((uint64_t)1 << kw->theme))
                                continue;
                        if (npsd_kw_match_at(kw, comment, len, i))
                                bits |= (uint64_t)1 << kw->theme;
                }
        }
        return bits;
}

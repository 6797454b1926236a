/*
 * npsd_themes — keyword lexicon that tags comments with themes (pure).
 *
 * Lexicon text format (config/themes.conf): one theme per line,
 *   theme_name = keyword, another keyword, ...
 * '#' starts a comment. Matching is case-insensitive (ASCII) on whole words
 * or phrases (a keyword matches where it is not part of a longer word).
 */
#ifndef NPSD_THEMES_H
#define NPSD_THEMES_H

#include <stddef.h>
#include <stdint.h>

#define NPSD_THEMES_MAX 64

typedef struct npsd_themes_s npsd_themes_t;

/* Builds a lexicon from its text. Returns NULL and fills errstr on a syntax
 * error (line number included). Must be destroyed with npsd_themes_destroy(). */
npsd_themes_t *npsd_themes_new(const char *text, size_t len, char *errstr,
                               size_t errstr_size);
void npsd_themes_destroy(npsd_themes_t *themes);

/* The built-in default lexicon text (same content as config/themes.conf). */
const char *npsd_themes_default_text(void);

int npsd_themes_count(const npsd_themes_t *themes);
const char *npsd_themes_name(const npsd_themes_t *themes, int idx);

/* Bit i set when theme i occurs in the comment. */
uint64_t npsd_themes_match(const npsd_themes_t *themes, const char *comment,
                           size_t len);

#endif

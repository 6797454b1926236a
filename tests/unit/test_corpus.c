/*
 * The shared contract corpus (tests/contract/corpus/<topic>/ examples) through
 * npsd's parser: every valid-*.json example is accepted, every
 * <reason>-*.json example is rejected with that reason. The same files are
 * checked against the input JSON Schemas by tests/contract/test_contract.py,
 * so the parser and the published schemas cannot drift apart unnoticed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_event.h"
#include "npsd/npsd_time.h"

#define CORPUS_DIR NPSD_SOURCE_DIR "/tests/contract/corpus"
#define NOW "2026-11-20T10:00:00Z" /* the corpus's "now" */

static const struct {
        const char *topic;
        npsd_kind_t kind;
} corpus_topics[] = {
        {"nps.responses", NPSD_KIND_RESPONSE},
        {"product.usage", NPSD_KIND_USAGE},
        {"accounts", NPSD_KIND_ACCOUNT},
        {"nps.followups", NPSD_KIND_FOLLOWUP},
};

/* Reads a whole file; NULL on error. The caller frees. A file of 0 bytes
 * gives a non-NULL buffer of length 0 (an empty message, not a tombstone). */
static char *read_file(const char *path, size_t *lenp) {
        FILE *fp = fopen(path, "rb");
        char *buf = NULL;
        long n;

        if (!fp)
                return NULL;
        if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 ||
            fseek(fp, 0, SEEK_SET))
                goto done;
        if (!(buf = malloc((size_t)n + 1)))
                goto done;
        if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
                free(buf);
                buf = NULL;
                goto done;
        }
        buf[n] = '\0';
        *lenp = (size_t)n;
done:
        fclose(fp);
        return buf;
}

/* The reason a file name announces: "valid" or a reject reason name, the
 * part before the first '-'. Returns 0, or -1 for a name outside the
 * convention (which fails the test: a typo must not skip a file). */
static int expected_of(const char *name, char *buf, size_t size) {
        const char *dash = strchr(name, '-');
        size_t n = dash ? (size_t)(dash - name) : 0;

        if (!n || n >= size)
                return -1;
        memcpy(buf, name, n);
        buf[n] = '\0';
        return 0;
}

static void test_corpus(void **state) {
        npsd_parse_limits_t limits;
        int seen[NPSD_REJECT__CNT] = {0};
        int64_t now_ms;
        size_t t;

        (void)state;
        npsd_parse_limits_default(&limits);
        assert_int_equal(npsd_time_parse_rfc3339(NOW, strlen(NOW), &now_ms), 0);

        for (t = 0; t < sizeof(corpus_topics) / sizeof(corpus_topics[0]); t++) {
                char dir[512];
                struct dirent *de;
                DIR *d;
                int valid = 0, rejects = 0;

                snprintf(dir, sizeof(dir), "%s/%s", CORPUS_DIR,
                         corpus_topics[t].topic);
                if (!(d = opendir(dir)))
                        fail_msg("cannot open corpus directory %s", dir);
                while ((de = readdir(d))) {
                        char path[1024], want[64];
                        npsd_event_t ev;
                        npsd_reject_t rj;
                        size_t len = 0, nlen = strlen(de->d_name);
                        char *buf;
                        int r;

                        if (nlen < 6 || strcmp(de->d_name + nlen - 5, ".json"))
                                continue;
                        if (expected_of(de->d_name, want, sizeof(want)) < 0)
                                fail_msg("%s/%s: name is not <valid|reason>-"
                                         "<what>.json", dir, de->d_name);
                        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                        if (!(buf = read_file(path, &len)))
                                fail_msg("cannot read %s", path);
                        r = npsd_event_parse(corpus_topics[t].kind, buf, len,
                                             now_ms, &limits, &ev, &rj);
                        if (!strcmp(want, "valid")) {
                                if (r != 0)
                                        fail_msg("%s: rejected (%s, field %s: "
                                                 "%s), expected valid",
                                                 path,
                                                 npsd_reject_reason_name(
                                                         rj.reason),
                                                 rj.field, rj.detail);
                                valid++;
                        } else {
                                if (r == 0)
                                        fail_msg("%s: accepted, expected %s",
                                                 path, want);
                                if (strcmp(npsd_reject_reason_name(rj.reason),
                                           want))
                                        fail_msg("%s: rejected as %s (field "
                                                 "%s: %s), expected %s",
                                                 path,
                                                 npsd_reject_reason_name(
                                                         rj.reason),
                                                 rj.field, rj.detail, want);
                                seen[rj.reason]++;
                                rejects++;
                        }
                        npsd_event_clear(&ev);
                        free(buf);
                }
                closedir(d);
                /* an emptied or misplaced corpus must not pass */
                if (valid < 1 || rejects < 1)
                        fail_msg("%s: %d valid and %d rejected examples, "
                                 "expected at least one of each",
                                 dir, valid, rejects);
        }
        for (int r = NPSD_REJECT_NONE + 1; r < NPSD_REJECT__CNT; r++)
                if (!seen[r])
                        fail_msg("no corpus example of reason %s",
                                 npsd_reject_reason_name(
                                         (npsd_reject_reason_t)r));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_corpus),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

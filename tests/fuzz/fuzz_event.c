/*
 * libFuzzer target for the input parsers and the DLQ builder.
 *
 * Input layout: byte 0 selects the kind (mod 4), the rest is the payload.
 * Every input must either parse into an event that clears cleanly, or be
 * rejected with a reason and a detail that build into a DLQ record which
 * is itself valid JSON (a DLQ record that cannot be read is a lost message).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_event.h"
#include "npsd/npsd_time.h"

#define FUZZ_NOW_MS 1795168800000LL /* 2026-11-20T10:00:00Z */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        npsd_parse_limits_t limits;
        npsd_event_t ev;
        npsd_reject_t rj;
        npsd_kind_t kind;
        char tbuf[NPSD_TIME_BUFSZ];
        size_t outlen = 0;
        char *out;
        json_t *o;

        if (size < 1)
                return 0;
        kind = (npsd_kind_t)(data[0] % 4);
        data++;
        size--;

        npsd_parse_limits_default(&limits);
        limits.max_comment_bytes = 16; /* exercise truncation often */

        if (npsd_event_parse(kind, data, size, FUZZ_NOW_MS, &limits, &ev,
                             &rj) == 0) {
                if (!ev.root)
                        abort();
                if (kind == NPSD_KIND_RESPONSE) {
                        const npsd_response_t *r = &ev.u.response;

                        if (!r->event_id || !r->account_id || !r->user_id ||
                            r->score < 0 || r->score > 10 ||
                            r->submitted_at_ms > FUZZ_NOW_MS + 3600000)
                                abort();
                        if (r->comment &&
                            (r->comment_len > limits.max_comment_bytes ||
                             strlen(r->comment) != r->comment_len ||
                             !npsd_utf8_valid(r->comment, r->comment_len)))
                                abort();
                        npsd_time_format(r->submitted_at_ms, tbuf);
                }
                npsd_event_clear(&ev);
                return 0;
        }

        if (rj.reason <= NPSD_REJECT_NONE || rj.reason >= NPSD_REJECT__CNT ||
            !rj.detail[0] || !memchr(rj.field, '\0', sizeof(rj.field)) ||
            !memchr(rj.detail, '\0', sizeof(rj.detail)) || ev.root ||
            ev.comment_copy)
                abort();

        /* Use the first bytes of the payload as the message key too, so the
         * key encoding paths get exercised. */
        out = npsd_dlq_build(&rj, "nps.responses", 0, 42, data,
                             size < 8 ? size : 8, data, size, FUZZ_NOW_MS,
                             &outlen);
        if (!out)
                abort();
        if (!(o = json_loadb(out, outlen, 0, NULL)))
                abort();
        json_decref(o);
        free(out);
        return 0;
}

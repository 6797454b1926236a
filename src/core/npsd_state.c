/*
 * npsd_state — an account's state record (see include/npsd/npsd_state.h).
 */
#include "npsd/npsd_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_codec.h"

#define NPSD_STATE_RECENT_MAX 8
#define NPSD_STATE_ITEMS_MAX 100000 /* loops or pending follow-ups */

void npsd_state_init(npsd_state_t *st) {
        memset(st, 0, sizeof(*st));
        npsd_buckets_init(&st->buckets);
        st->context_updated_ms = -1;
        st->last_response_ms = -1;
        st->last_activity_ms = -1;
        st->views_day = NPSD_DAY_NONE;
        st->counted_day = NPSD_DAY_NONE;
}

void npsd_state_free(npsd_state_t *st) {
        npsd_buckets_free(&st->buckets);
        free(st->loops);
        free(st->pending);
        for (int i = 0; i < st->recent_n; i++)
                free(st->recent[i].comment);
        npsd_state_init(st);
}

/* Grows an array of elsz-byte elements to hold one more. */
static void *npsd_state_grow(void *arr, size_t cnt, size_t *size,
                             size_t elsz) {
        size_t nsize;
        void *p;

        if (cnt < *size)
                return arr;
        nsize = *size ? *size * 2 : 4;
        if (!(p = realloc(arr, nsize * elsz)))
                return NULL;
        *size = nsize;
        return p;
}

npsd_state_loop_t *npsd_state_loop_add(npsd_state_t *st,
                                       const npsd_state_loop_t *lp) {
        npsd_state_loop_t *v = npsd_state_grow(st->loops, st->loop_cnt,
                                               &st->loop_size, sizeof(*v));

        if (!v)
                return NULL;
        st->loops = v;
        v[st->loop_cnt] = *lp;
        return &v[st->loop_cnt++];
}

npsd_state_pending_t *npsd_state_pending_add(npsd_state_t *st,
                                             const npsd_state_pending_t *p) {
        npsd_state_pending_t *v = npsd_state_grow(
                st->pending, st->pending_cnt, &st->pending_size, sizeof(*v));

        if (!v)
                return NULL;
        st->pending = v;
        v[st->pending_cnt] = *p;
        return &v[st->pending_cnt++];
}

npsd_state_loop_t *npsd_state_loop_find(npsd_state_t *st, const char *rid) {
        for (size_t i = 0; i < st->loop_cnt; i++)
                if (!strcmp(st->loops[i].rid, rid))
                        return &st->loops[i];
        return NULL;
}

void npsd_state_loop_remove(npsd_state_t *st, size_t i) {
        if (i < st->loop_cnt)
                st->loops[i] = st->loops[--st->loop_cnt];
}

void npsd_state_pending_remove(npsd_state_t *st, size_t i) {
        if (i < st->pending_cnt)
                st->pending[i] = st->pending[--st->pending_cnt];
}

int npsd_state_recent_push(npsd_state_t *st, int score, npsd_role_t role,
                           const char *submitted_at, const char *comment,
                           int keep) {
        npsd_state_recent_t r = {.score = score, .role = role};

        if (keep > NPSD_STATE_RECENT_MAX)
                keep = NPSD_STATE_RECENT_MAX;
        if (keep <= 0)
                return 0;
        if (comment && *comment && !(r.comment = strdup(comment)))
                return -1;
        snprintf(r.submitted_at, sizeof(r.submitted_at), "%s", submitted_at);
        while (st->recent_n >= keep)
                free(st->recent[--st->recent_n].comment);
        memmove(&st->recent[1], &st->recent[0],
                (size_t)st->recent_n * sizeof(st->recent[0]));
        st->recent[0] = r;
        st->recent_n++;
        return 0;
}

int npsd_state_errors_add(npsd_state_t *st, int32_t day, int64_t n,
                          int32_t today) {
        int i, k = 0;

        /* drop days no 7-day count will reach again (kept 31 days, as the
         * usage windows are) */
        for (i = 0; i < st->err_n; i++)
                if (st->err_day[i] > today - 31) {
                        st->err_day[k] = st->err_day[i];
                        st->err_cnt[k++] = st->err_cnt[i];
                }
        st->err_n = k;
        for (i = 0; i < st->err_n; i++)
                if (st->err_day[i] == day) {
                        st->err_cnt[i] += n;
                        return 0;
                }
        if (st->err_n == NPSD_STATE_ERR_DAYS)
                return -1;
        st->err_day[st->err_n] = day;
        st->err_cnt[st->err_n++] = n;
        return 0;
}

int64_t npsd_state_errors_7d(const npsd_state_t *st, int32_t today) {
        int64_t sum = 0;

        for (int i = 0; i < st->err_n; i++)
                if (st->err_day[i] > today - 7 && st->err_day[i] <= today)
                        sum += st->err_cnt[i];
        return sum;
}

/* ---- the record -------------------------------------------------------- */

static void npsd_state_put_loop(npsd_codec_writer_t *w,
                                const npsd_state_loop_t *lp) {
        npsd_codec_put_str(w, lp->rid);
        npsd_codec_put_str(w, lp->owner);
        npsd_codec_put_int(w, lp->submitted_ms);
        npsd_codec_put_str(w, lp->submitted_at);
        for (int s = 0; s < 3; s++) {
                npsd_codec_put_int(w, lp->due_ms[s]);
                npsd_codec_put_str(w, lp->met_at[s]);
                npsd_codec_put_uint(w, lp->status[s]);
        }
        npsd_codec_put_uint(w, (uint64_t)lp->overdue | (uint64_t)lp->closed << 1);
}

size_t npsd_state_encode(const npsd_state_t *st, unsigned char *buf,
                         size_t size) {
        npsd_codec_writer_t w = {.buf = buf, .size = size};
        size_t blen;

        npsd_codec_put_uint(&w, NPSD_STATE_FORMAT);
        npsd_codec_put_int(&w, st->context_updated_ms);
        npsd_codec_put_int(&w, st->last_response_ms);
        npsd_codec_put_str(&w, st->last_response_at);
        npsd_codec_put_int(&w, st->last_score);
        npsd_codec_put_uint(&w, st->settings_digest);

        blen = npsd_buckets_encode(&st->buckets, NULL, 0);
        npsd_codec_put_uint(&w, blen);
        if (w.off + blen <= w.size)
                npsd_buckets_encode(&st->buckets, w.buf + w.off, blen);
        w.off += blen;

        npsd_codec_put_int(&w, st->last_activity_ms);
        npsd_codec_put_str(&w, st->last_activity_at);
        npsd_codec_put_int(&w, st->tickets_opened);
        npsd_codec_put_int(&w, st->tickets_closed);
        npsd_codec_put_uint(&w, (uint64_t)st->err_n);
        for (int i = 0; i < st->err_n; i++) {
                npsd_codec_put_int(&w, st->err_day[i]);
                npsd_codec_put_int(&w, st->err_cnt[i]);
        }

        npsd_codec_put_uint(&w, st->loop_cnt);
        for (size_t i = 0; i < st->loop_cnt; i++)
                npsd_state_put_loop(&w, &st->loops[i]);
        npsd_codec_put_uint(&w, st->pending_cnt);
        for (size_t i = 0; i < st->pending_cnt; i++) {
                const npsd_state_pending_t *p = &st->pending[i];
                npsd_codec_put_str(&w, p->rid);
                npsd_codec_put_str(&w, p->event_id);
                npsd_codec_put_uint(&w, p->level);
                npsd_codec_put_int(&w, p->at_ms);
                npsd_codec_put_str(&w, p->at);
        }
        npsd_codec_put_int(&w, st->open_detractors);
        npsd_codec_put_int(&w, st->overdue_followups);
        npsd_codec_put_int(&w, st->loops_closed);
        npsd_codec_put_int(&w, st->loops_closed_on_time);

        npsd_codec_put_uint(&w, (uint64_t)st->role_gap_on |
                                        (uint64_t)st->nps_drop_on << 1 |
                                        (uint64_t)st->usage_drop_on << 2);
        npsd_codec_put_uint(&w, (uint64_t)st->band);
        for (int t = 0; t < NPSD_STATE_ALERT_TYPES; t++)
                npsd_codec_put_uint(&w, st->alert_n[t]);

        npsd_codec_put_uint(&w, (uint64_t)st->recent_n);
        for (int i = 0; i < st->recent_n; i++) {
                const npsd_state_recent_t *r = &st->recent[i];
                npsd_codec_put_uint(&w, (uint64_t)r->score);
                npsd_codec_put_uint(&w, (uint64_t)r->role);
                npsd_codec_put_str(&w, r->submitted_at);
                npsd_codec_put_str(&w, r->comment);
        }
        npsd_codec_put_uint(&w, st->gseq);
        npsd_codec_put_int(&w, st->views_day);
        npsd_codec_put_int(&w, st->counted_day);
        npsd_codec_put_int(&w, st->active_users_7d);
        npsd_codec_put_int(&w, st->active_users_30d);
        npsd_codec_put_int(&w, st->active_users_prev_7d);
        npsd_codec_put_int(&w, st->features_30d);
        npsd_codec_put_uint(&w, st->loops_ever);
        return w.off;
}

static void npsd_state_get_loop(npsd_codec_reader_t *r,
                                npsd_state_loop_t *lp) {
        uint64_t flags;

        memset(lp, 0, sizeof(*lp));
        npsd_codec_get_str(r, lp->rid, sizeof(lp->rid));
        npsd_codec_get_str(r, lp->owner, sizeof(lp->owner));
        lp->submitted_ms = npsd_codec_get_int(r);
        npsd_codec_get_str(r, lp->submitted_at, sizeof(lp->submitted_at));
        for (int s = 0; s < 3; s++) {
                lp->due_ms[s] = npsd_codec_get_int(r);
                npsd_codec_get_str(r, lp->met_at[s], sizeof(lp->met_at[s]));
                lp->status[s] = (uint8_t)npsd_codec_get_uint_max(
                        r, NPSD_STAGE_CLEARED);
        }
        flags = npsd_codec_get_uint_max(r, 3);
        lp->overdue = flags & 1;
        lp->closed = (flags >> 1) & 1;
}

int npsd_state_decode(npsd_state_t *st, const unsigned char *buf,
                      size_t len, char *errstr, size_t errstr_size) {
        npsd_codec_reader_t r = {.buf = buf, .len = len};
        uint64_t format, blen, n, flags;

        npsd_state_free(st);
        format = npsd_codec_get_uint(&r);
        if (r.err || format != NPSD_STATE_FORMAT) {
                snprintf(errstr, errstr_size,
                         "state record: format %llu, expected %d",
                         (unsigned long long)format, NPSD_STATE_FORMAT);
                return -1;
        }
        st->context_updated_ms = npsd_codec_get_int(&r);
        st->last_response_ms = npsd_codec_get_int(&r);
        npsd_codec_get_str(&r, st->last_response_at,
                           sizeof(st->last_response_at));
        st->last_score = (int)npsd_codec_get_int(&r);
        st->settings_digest = npsd_codec_get_uint(&r);

        blen = npsd_codec_get_uint_max(&r, len - r.off);
        if (!r.err) {
                if (npsd_buckets_decode(&st->buckets, buf + r.off,
                                        (size_t)blen) != blen)
                        r.err = 1;
                r.off += (size_t)blen;
        }

        st->last_activity_ms = npsd_codec_get_int(&r);
        npsd_codec_get_str(&r, st->last_activity_at,
                           sizeof(st->last_activity_at));
        st->tickets_opened = npsd_codec_get_int(&r);
        st->tickets_closed = npsd_codec_get_int(&r);
        st->err_n = (int)npsd_codec_get_uint_max(&r, NPSD_STATE_ERR_DAYS);
        for (int i = 0; i < st->err_n && !r.err; i++) {
                st->err_day[i] = (int32_t)npsd_codec_get_int(&r);
                st->err_cnt[i] = npsd_codec_get_int(&r);
        }

        n = npsd_codec_get_uint_max(&r, NPSD_STATE_ITEMS_MAX);
        for (uint64_t i = 0; i < n && !r.err; i++) {
                npsd_state_loop_t lp;
                npsd_state_get_loop(&r, &lp);
                if (!r.err && !npsd_state_loop_add(st, &lp))
                        r.err = 1;
        }
        n = npsd_codec_get_uint_max(&r, NPSD_STATE_ITEMS_MAX);
        for (uint64_t i = 0; i < n && !r.err; i++) {
                npsd_state_pending_t p;
                memset(&p, 0, sizeof(p));
                npsd_codec_get_str(&r, p.rid, sizeof(p.rid));
                npsd_codec_get_str(&r, p.event_id, sizeof(p.event_id));
                p.level = (uint8_t)npsd_codec_get_uint_max(&r, 3);
                p.at_ms = npsd_codec_get_int(&r);
                npsd_codec_get_str(&r, p.at, sizeof(p.at));
                if (!r.err && !npsd_state_pending_add(st, &p))
                        r.err = 1;
        }
        st->open_detractors = npsd_codec_get_int(&r);
        st->overdue_followups = npsd_codec_get_int(&r);
        st->loops_closed = npsd_codec_get_int(&r);
        st->loops_closed_on_time = npsd_codec_get_int(&r);

        flags = npsd_codec_get_uint_max(&r, 7);
        st->role_gap_on = flags & 1;
        st->nps_drop_on = (flags >> 1) & 1;
        st->usage_drop_on = (flags >> 2) & 1;
        st->band = (npsd_band_t)npsd_codec_get_uint_max(&r, NPSD_BAND_GREEN);
        for (int t = 0; t < NPSD_STATE_ALERT_TYPES; t++)
                st->alert_n[t] = npsd_codec_get_uint(&r);

        n = npsd_codec_get_uint_max(&r, NPSD_STATE_RECENT_MAX);
        for (uint64_t i = 0; i < n && !r.err; i++) {
                npsd_state_recent_t *rc = &st->recent[i];
                uint64_t clen;
                rc->score = (int)npsd_codec_get_uint_max(&r, 10);
                rc->role = (npsd_role_t)npsd_codec_get_uint_max(
                        &r, NPSD_ROLE__CNT - 1);
                npsd_codec_get_str(&r, rc->submitted_at,
                                   sizeof(rc->submitted_at));
                /* the comment: sized by its own length prefix */
                clen = npsd_codec_get_uint_max(&r, len - r.off);
                if (r.err)
                        break;
                if (clen) {
                        if (!(rc->comment = malloc((size_t)clen + 1))) {
                                r.err = 1;
                                break;
                        }
                        memcpy(rc->comment, buf + r.off, (size_t)clen);
                        rc->comment[clen] = '\0';
                        r.off += (size_t)clen;
                }
                st->recent_n = (int)i + 1;
        }
        st->gseq = npsd_codec_get_uint(&r);
        st->views_day = (int32_t)npsd_codec_get_int(&r);
        st->counted_day = (int32_t)npsd_codec_get_int(&r);
        st->active_users_7d = npsd_codec_get_int(&r);
        st->active_users_30d = npsd_codec_get_int(&r);
        st->active_users_prev_7d = npsd_codec_get_int(&r);
        st->features_30d = npsd_codec_get_int(&r);
        st->loops_ever = (uint8_t)npsd_codec_get_uint_max(&r, 1);
        if (r.err || r.off != len) {
                snprintf(errstr, errstr_size,
                         "state record: malformed at byte %zu of %zu", r.off,
                         len);
                npsd_state_free(st);
                return -1;
        }
        return 0;
}

/* Builds the JSON members of one loop (npsctl account --state). */
static json_t *npsd_state_loop_json(const npsd_state_loop_t *lp) {
        static const char *stages[3] = {"acknowledge", "route", "close"};
        static const char *status[3] = {"open", "missed", "cleared"};
        json_t *o = json_object();

        if (!o)
                return NULL;
        json_object_set_new(o, "rid", json_string(lp->rid));
        json_object_set_new(o, "owner", json_string(lp->owner));
        json_object_set_new(o, "submitted_ms", json_integer(lp->submitted_ms));
        json_object_set_new(o, "submitted_at", json_string(lp->submitted_at));
        for (int s = 0; s < 3; s++) {
                json_t *st = json_object();
                json_object_set_new(st, "due_ms", json_integer(lp->due_ms[s]));
                if (lp->met_at[s][0])
                        json_object_set_new(st, "met_at",
                                            json_string(lp->met_at[s]));
                json_object_set_new(st, "status",
                                    json_string(status[lp->status[s] % 3]));
                json_object_set_new(o, stages[s], st);
        }
        json_object_set_new(o, "overdue", json_boolean(lp->overdue));
        json_object_set_new(o, "closed", json_boolean(lp->closed));
        return o;
}

json_t *npsd_state_json(const npsd_state_t *st) {
        json_t *o = json_object(), *a;
        char digest[24];

        if (!o)
                return NULL;
        json_object_set_new(o, "format", json_integer(NPSD_STATE_FORMAT));
        json_object_set_new(o, "context_updated_ms",
                            json_integer(st->context_updated_ms));
        json_object_set_new(o, "last_response_ms",
                            json_integer(st->last_response_ms));
        json_object_set_new(o, "last_response_at",
                            json_string(st->last_response_at));
        json_object_set_new(o, "last_score", json_integer(st->last_score));
        snprintf(digest, sizeof(digest), "%016llx",
                 (unsigned long long)st->settings_digest);
        json_object_set_new(o, "settings_digest", json_string(digest));
        json_object_set_new(o, "views_day", json_integer(st->views_day));
        a = json_array();
        for (size_t i = 0; i < st->buckets.cnt; i++) {
                const npsd_bucket_t *b = &st->buckets.v[i];
                json_array_append_new(a, json_pack("[iii]", (int)b->day,
                                                   (int)b->slot,
                                                   (int)b->count));
        }
        json_object_set_new(o, "buckets", a);
        json_object_set_new(o, "last_activity_ms",
                            json_integer(st->last_activity_ms));
        json_object_set_new(o, "tickets_opened",
                            json_integer(st->tickets_opened));
        json_object_set_new(o, "tickets_closed",
                            json_integer(st->tickets_closed));
        a = json_array();
        for (int i = 0; i < st->err_n; i++)
                json_array_append_new(a, json_pack("[iI]", (int)st->err_day[i],
                                                   (json_int_t)st->err_cnt[i]));
        json_object_set_new(o, "errors", a);
        json_object_set_new(o, "counted_day", json_integer(st->counted_day));
        json_object_set_new(o, "active_users_7d",
                            json_integer(st->active_users_7d));
        json_object_set_new(o, "active_users_30d",
                            json_integer(st->active_users_30d));
        json_object_set_new(o, "active_users_prev_7d",
                            json_integer(st->active_users_prev_7d));
        json_object_set_new(o, "features_30d", json_integer(st->features_30d));
        a = json_array();
        for (size_t i = 0; i < st->loop_cnt; i++)
                json_array_append_new(a, npsd_state_loop_json(&st->loops[i]));
        json_object_set_new(o, "loops", a);
        a = json_array();
        for (size_t i = 0; i < st->pending_cnt; i++) {
                const npsd_state_pending_t *p = &st->pending[i];
                json_array_append_new(
                        a, json_pack("{sssssisIss}", "rid", p->rid, "event_id",
                                     p->event_id, "level", (int)p->level,
                                     "at_ms", (json_int_t)p->at_ms, "at",
                                     p->at));
        }
        json_object_set_new(o, "pending", a);
        json_object_set_new(o, "open_detractors",
                            json_integer(st->open_detractors));
        json_object_set_new(o, "overdue_followups",
                            json_integer(st->overdue_followups));
        json_object_set_new(o, "loops_closed", json_integer(st->loops_closed));
        json_object_set_new(o, "loops_closed_on_time",
                            json_integer(st->loops_closed_on_time));
        json_object_set_new(o, "role_gap_on", json_boolean(st->role_gap_on));
        json_object_set_new(o, "nps_drop_on", json_boolean(st->nps_drop_on));
        json_object_set_new(o, "usage_drop_on",
                            json_boolean(st->usage_drop_on));
        json_object_set_new(o, "band", json_integer(st->band));
        a = json_array();
        for (int t = 0; t < NPSD_STATE_ALERT_TYPES; t++)
                json_array_append_new(a, json_integer((json_int_t)st->alert_n[t]));
        json_object_set_new(o, "alert_n", a);
        a = json_array();
        for (int i = 0; i < st->recent_n; i++) {
                const npsd_state_recent_t *r = &st->recent[i];
                json_t *e = json_pack("{sisiss}", "score", r->score, "role",
                                      (int)r->role, "submitted_at",
                                      r->submitted_at);
                if (e && r->comment)
                        json_object_set_new(e, "comment",
                                            json_string(r->comment));
                json_array_append_new(a, e);
        }
        json_object_set_new(o, "recent", a);
        json_object_set_new(o, "gseq", json_integer((json_int_t)st->gseq));
        json_object_set_new(o, "loops_ever", json_boolean(st->loops_ever));
        return o;
}

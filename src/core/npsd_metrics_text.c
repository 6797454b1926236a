/*
 * npsd_metrics_text — the pure half of npsd_metrics (see npsd_metrics.h):
 * histograms, the Prometheus text rendering of a snapshot, the health
 * verdict and the librdkafka statistics parser. No I/O.
 */
#include "npsd/npsd_metrics.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *npsd_stage_name(npsd_stage_t stage) {
        static const char *const names[NPSD_STAGE__CNT] = {
                "parse",   "redis",  "enrich", "deliver",
                "commit",  "alerts", "timers"};

        return (unsigned)stage < NPSD_STAGE__CNT ? names[stage] : "unknown";
}

static const double npsd_hist_redis_apply[] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double npsd_hist_batch_size[] = {
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000};
static const double npsd_hist_e2e_latency[] = {
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,
        2.5,   5,    10,    30,   60,  300,  900, 3600};

#define NPSD_ARRAY_CNT(a) (sizeof(a) / sizeof((a)[0]))

const double *npsd_hist_bounds(npsd_hist_kind_t kind, size_t *cnt) {
        switch (kind) {
        case NPSD_HIST_REDIS_APPLY:
                *cnt = NPSD_ARRAY_CNT(npsd_hist_redis_apply);
                return npsd_hist_redis_apply;
        case NPSD_HIST_BATCH_SIZE:
                *cnt = NPSD_ARRAY_CNT(npsd_hist_batch_size);
                return npsd_hist_batch_size;
        case NPSD_HIST_E2E_LATENCY:
        default:
                *cnt = NPSD_ARRAY_CNT(npsd_hist_e2e_latency);
                return npsd_hist_e2e_latency;
        }
}

void npsd_hist_observe(npsd_hist_t *h, npsd_hist_kind_t kind, double v) {
        size_t cnt, i;
        const double *bounds = npsd_hist_bounds(kind, &cnt);

        /* NaN compares false everywhere and lands in +Inf */
        for (i = 0; i < cnt && !(v <= bounds[i]); i++)
                ;
        h->counts[i]++;
        h->count++;
        if (v == v)
                h->sum += v;
}

/* ---- rendering ----------------------------------------------------------- */

typedef struct npsd_buf_s {
        char *p;
        size_t len, size;
        int oom;
} npsd_buf_t;

static void npsd_buf_printf(npsd_buf_t *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void npsd_buf_printf(npsd_buf_t *b, const char *fmt, ...) {
        va_list ap;
        int n;

        if (b->oom)
                return;
        for (;;) {
                va_start(ap, fmt);
                n = vsnprintf(b->p + b->len, b->size - b->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        b->oom = 1;
                        return;
                }
                if ((size_t)n < b->size - b->len) {
                        b->len += (size_t)n;
                        return;
                }
                {
                        size_t size = b->size * 2 + (size_t)n;
                        char *p = realloc(b->p, size);
                        if (!p) {
                                b->oom = 1;
                                return;
                        }
                        b->p = p;
                        b->size = size;
                }
        }
}

/* A label value with \, " and newline escaped (exposition format). */
static void npsd_buf_label(npsd_buf_t *b, const char *s) {
        for (; *s; s++) {
                if (*s == '\\')
                        npsd_buf_printf(b, "\\\\");
                else if (*s == '"')
                        npsd_buf_printf(b, "\\\"");
                else if (*s == '\n')
                        npsd_buf_printf(b, "\\n");
                else
                        npsd_buf_printf(b, "%c", *s);
        }
}

static void npsd_buf_head(npsd_buf_t *b, const char *name, const char *type,
                          const char *help) {
        npsd_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

/* One sample of a counter with one label: name{label="value"} v. */
static void npsd_buf_sample(npsd_buf_t *b, const char *name,
                            const char *label, const char *value, uint64_t v) {
        npsd_buf_printf(b, "%s{%s=\"", name, label);
        npsd_buf_label(b, value);
        npsd_buf_printf(b, "\"} %" PRIu64 "\n", v);
}

static void npsd_buf_counter(npsd_buf_t *b, const char *name,
                             const char *help, uint64_t v) {
        npsd_buf_head(b, name, "counter", help);
        npsd_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void npsd_buf_gauge(npsd_buf_t *b, const char *name, const char *help,
                           long long v) {
        npsd_buf_head(b, name, "gauge", help);
        npsd_buf_printf(b, "%s %lld\n", name, v);
}

/* Writes h as a histogram family: cumulative _bucket lines, _sum, _count. */
static void npsd_buf_hist(npsd_buf_t *b, const char *name, const char *help,
                          const npsd_hist_t *h, npsd_hist_kind_t kind) {
        size_t cnt;
        const double *bounds = npsd_hist_bounds(kind, &cnt);
        uint64_t cum = 0;

        npsd_buf_head(b, name, "histogram", help);
        for (size_t i = 0; i < cnt; i++) {
                cum += h->counts[i];
                npsd_buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                                bounds[i], cum);
        }
        npsd_buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name,
                        h->count);
        npsd_buf_printf(b, "%s_sum %.9g\n", name, h->sum);
        npsd_buf_printf(b, "%s_count %" PRIu64 "\n", name, h->count);
}

char *npsd_metrics_render(const npsd_metrics_snapshot_t *s, size_t *lenp) {
        npsd_buf_t b = {NULL, 0, 4096, 0};

        if (!(b.p = malloc(b.size)))
                return NULL;
        b.p[0] = '\0';
        npsd_buf_counter(&b, "npsd_messages_consumed_total",
                         "Input messages taken from Kafka.", s->consumed);
        npsd_buf_counter(&b, "npsd_responses_accepted_total",
                         "Responses counted into the Redis state for the "
                         "first time.",
                         s->accepted);
        npsd_buf_counter(&b, "npsd_responses_duplicate_total",
                         "Responses skipped as duplicates (event_id already "
                         "counted).",
                         s->duplicates);
        npsd_buf_head(&b, "npsd_messages_rejected_total", "counter",
                      "Input messages rejected to the DLQ, by reason.");
        for (int r = 0; r < NPSD_REJECT__CNT; r++)
                if (r != NPSD_REJECT_NONE)
                        npsd_buf_sample(&b, "npsd_messages_rejected_total",
                                        "reason",
                                        npsd_reject_reason_name(
                                                (npsd_reject_reason_t)r),
                                        s->rejected[r]);
        npsd_buf_counter(&b, "npsd_messages_produced_total",
                         "Output messages acknowledged by the broker "
                         "(classified and DLQ).",
                         s->produced);
        npsd_buf_counter(&b, "npsd_batches_total",
                         "Poll batches processed.", s->batches);
        npsd_buf_counter(&b, "npsd_delivery_retries_total",
                         "Output messages produced again after a failed "
                         "delivery.",
                         s->delivery_retries);
        npsd_buf_counter(&b, "npsd_redis_errors_total",
                         "Failed Redis round trips of a batch (each is "
                         "retried).",
                         s->redis_errors);
        npsd_buf_counter(&b, "npsd_version_conflicts_total",
                         "Account writes refused because another writer "
                         "changed the account since it was read (each is "
                         "read and computed again).",
                         s->version_conflicts);
        npsd_buf_head(&b, "npsd_alerts_raised_total", "counter",
                      "Account alerts published on the alerts topic, by "
                      "type.");
        for (int t = 0; t < NPSD_ALERT__CNT; t++)
                npsd_buf_sample(&b, "npsd_alerts_raised_total", "type",
                                npsd_alert_type_name((npsd_alert_type_t)t),
                                s->alerts[t]);
        npsd_buf_counter(&b, "npsd_timer_runs_total",
                         "Timer passes completed (windows rolled, follow-up "
                         "deadlines checked, alert outbox drained).",
                         s->timer_runs);
        npsd_buf_head(&b, "npsd_loop_stage_seconds_total", "counter",
                      "Wall seconds the main loop spent per stage: where a "
                      "batch's time goes.");
        for (int st = 0; st < NPSD_STAGE__CNT; st++)
                npsd_buf_printf(&b,
                                "npsd_loop_stage_seconds_total{stage=\"%s\"} "
                                "%.6f\n",
                                npsd_stage_name((npsd_stage_t)st),
                                s->stage_seconds[st]);
        npsd_buf_hist(&b, "npsd_redis_apply_duration_seconds",
                      "Duration of one batch's Redis round trip (store "
                      "apply), failed ones included.",
                      &s->hist[NPSD_HIST_REDIS_APPLY], NPSD_HIST_REDIS_APPLY);
        npsd_buf_hist(&b, "npsd_batch_size_messages",
                      "Messages per poll batch.",
                      &s->hist[NPSD_HIST_BATCH_SIZE], NPSD_HIST_BATCH_SIZE);
        npsd_buf_hist(&b, "npsd_processing_latency_seconds",
                      "End-to-end latency of each input message: from its "
                      "Kafka timestamp to its batch's outputs acknowledged.",
                      &s->hist[NPSD_HIST_E2E_LATENCY], NPSD_HIST_E2E_LATENCY);
        npsd_buf_head(&b, "npsd_consumer_lag", "gauge",
                      "Messages between the committed offset and the end of "
                      "each assigned partition (librdkafka statistics).");
        for (size_t i = 0; i < s->lag_cnt; i++) {
                npsd_buf_printf(&b, "npsd_consumer_lag{topic=\"");
                npsd_buf_label(&b, s->lags[i].topic);
                npsd_buf_printf(&b, "\",partition=\"%" PRId32 "\"} %" PRId64
                                    "\n",
                                s->lags[i].partition, s->lags[i].lag);
        }
        npsd_buf_gauge(&b, "npsd_kafka_up",
                       "1 while the Kafka brokers are reachable.",
                       s->kafka_up ? 1 : 0);
        npsd_buf_gauge(&b, "npsd_redis_up", "1 while Redis is reachable.",
                       s->redis_up ? 1 : 0);
        npsd_buf_head(&b, "npsd_build_info", "gauge",
                      "Versions of npsd, the libraries it was built with, "
                      "and the Redis server (\"unknown\" until connected).");
        npsd_buf_printf(&b, "npsd_build_info{version=\"");
        npsd_buf_label(&b, s->build.version);
        npsd_buf_printf(&b, "\",librdkafka=\"");
        npsd_buf_label(&b, s->build.librdkafka);
        npsd_buf_printf(&b, "\",hiredis=\"");
        npsd_buf_label(&b, s->build.hiredis);
        npsd_buf_printf(&b, "\",redis_server=\"");
        npsd_buf_label(&b, *s->build.redis_server ? s->build.redis_server
                                                   : "unknown");
        npsd_buf_printf(&b, "\"} 1\n");
        if (s->process.ok) {
                const npsd_metrics_process_t *p = &s->process;

                npsd_buf_head(&b, "process_cpu_seconds_total", "counter",
                              "Total user and system CPU time spent in "
                              "seconds.");
                npsd_buf_printf(&b, "process_cpu_seconds_total %.2f\n",
                                p->cpu_seconds);
                npsd_buf_head(&b, "process_resident_memory_bytes", "gauge",
                              "Resident memory size in bytes.");
                npsd_buf_printf(&b, "process_resident_memory_bytes %.0f\n",
                                p->resident_bytes);
                npsd_buf_head(&b, "process_virtual_memory_bytes", "gauge",
                              "Virtual memory size in bytes.");
                npsd_buf_printf(&b, "process_virtual_memory_bytes %.0f\n",
                                p->virtual_bytes);
                npsd_buf_head(&b, "process_start_time_seconds", "gauge",
                              "Start time of the process since unix epoch "
                              "in seconds.");
                npsd_buf_printf(&b, "process_start_time_seconds %.2f\n",
                                p->start_time_s);
        }
        if (s->process.open_fds >= 0 && s->process.ok)
                npsd_buf_gauge(&b, "process_open_fds",
                               "Number of open file descriptors.",
                               s->process.open_fds);
        if (s->process.max_fds >= 0 && s->process.ok)
                npsd_buf_gauge(&b, "process_max_fds",
                               "Maximum number of open file descriptors.",
                               s->process.max_fds);
        if (b.oom) {
                free(b.p);
                return NULL;
        }
        *lenp = b.len;
        return b.p;
}

int npsd_metrics_live(const npsd_metrics_snapshot_t *s, int64_t now_ms,
                      int64_t stall_ms, char *reason, size_t reason_size) {
        int64_t beat = s->published ? s->published_ms : s->started_ms;

        if (now_ms - beat > stall_ms) {
                snprintf(reason, reason_size,
                         "npsd: main loop has not come round for %lld s "
                         "(limit %lld s)",
                         (long long)((now_ms - beat) / 1000),
                         (long long)(stall_ms / 1000));
                return 0;
        }
        if (reason_size)
                *reason = '\0';
        return 1;
}

/* /proc/<pid>/stat: "pid (comm) state ppid ...". comm may hold spaces and
 * parentheses, so fields are counted from the last ')'. */
int npsd_metrics_parse_proc_stat(const char *text, long clk_tck,
                                 long page_size, double boot_time_s,
                                 npsd_metrics_process_t *out) {
        const char *p = strrchr(text, ')');
        unsigned long long v[22];
        int field;

        out->ok = 0;
        if (!p || clk_tck <= 0 || page_size <= 0)
                return -1;
        p++;
        /* v[0] is field 3 (state, skipped), v[k] field k + 3 */
        for (field = 0; field < 22; field++) {
                char *end;

                while (*p == ' ')
                        p++;
                if (!*p)
                        return -1;
                if (field == 0) {
                        while (*p && *p != ' ')
                                p++;
                        v[0] = 0;
                        continue;
                }
                /* every field used here is unsigned; ppid and others may
                 * be -1, read them as 0 */
                if (*p == '-') {
                        v[field] = 0;
                        while (*p && *p != ' ')
                                p++;
                        continue;
                }
                v[field] = strtoull(p, &end, 10);
                if (end == p)
                        return -1;
                p = end;
        }
        /* utime 14, stime 15, starttime 22, vsize 23, rss 24 */
        out->cpu_seconds = (double)(v[11] + v[12]) / (double)clk_tck;
        out->start_time_s = boot_time_s + (double)v[19] / (double)clk_tck;
        out->virtual_bytes = (double)v[20];
        out->resident_bytes = (double)v[21] * (double)page_size;
        out->ok = 1;
        return 0;
}

int npsd_metrics_health(const npsd_metrics_snapshot_t *s, int64_t now_ms,
                        int64_t stale_ms, char *reason, size_t reason_size) {
        if (!s->published) {
                snprintf(reason, reason_size, "npsd: starting");
                return 0;
        }
        if (now_ms - s->published_ms > stale_ms) {
                snprintf(reason, reason_size,
                         "npsd: main loop stalled for %lld s",
                         (long long)((now_ms - s->published_ms) / 1000));
                return 0;
        }
        if (s->kafka_up && s->redis_up) {
                if (reason_size)
                        *reason = '\0';
                return 1;
        }
        if (*s->reason)
                snprintf(reason, reason_size, "%s", s->reason);
        else
                snprintf(reason, reason_size, "%s",
                         !s->redis_up ? "redis: unreachable"
                                      : "kafka: unreachable");
        /* one line, whatever the error text held */
        for (char *p = reason; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        return 0;
}

/* ---- librdkafka statistics ----------------------------------------------- */

static int npsd_lag_cmp(const void *a, const void *b) {
        const npsd_metrics_lag_t *x = a, *y = b;
        int c = strcmp(x->topic, y->topic);

        if (c)
                return c;
        return (x->partition > y->partition) - (x->partition < y->partition);
}

int npsd_metrics_parse_stats(const char *json, size_t len,
                             npsd_metrics_lag_t **lagsp, size_t *cntp,
                             int *brokers_up) {
        json_error_t jerr;
        json_t *root = json_loadb(json, len, 0, &jerr);
        json_t *topics, *brokers, *t, *p, *br;
        npsd_metrics_lag_t *lags = NULL;
        size_t cnt = 0, size = 0;
        const char *tname, *pkey, *bname;
        int up = 0;

        *lagsp = NULL;
        *cntp = 0;
        if (brokers_up)
                *brokers_up = 0;
        if (!json_is_object(root)) {
                json_decref(root);
                return -1;
        }
        topics = json_object_get(root, "topics");
        json_object_foreach(topics, tname, t) {
                json_t *parts = json_object_get(t, "partitions");
                if (strlen(tname) >= NPSD_METRICS_TOPIC_MAX)
                        continue;
                json_object_foreach(parts, pkey, p) {
                        json_t *jid = json_object_get(p, "partition");
                        json_t *jlag = json_object_get(p, "consumer_lag");
                        json_int_t id = json_is_integer(jid)
                                                ? json_integer_value(jid)
                                                : strtoll(pkey, NULL, 10);
                        json_int_t lag;

                        if (!json_is_integer(jlag) || id < 0 ||
                            id > INT32_MAX)
                                continue;
                        if ((lag = json_integer_value(jlag)) < 0)
                                continue;
                        if (cnt == size) {
                                size_t nsize = size ? size * 2 : 16;
                                npsd_metrics_lag_t *n =
                                        realloc(lags, nsize * sizeof(*lags));
                                if (!n)
                                        goto done; /* keep what we have */
                                lags = n;
                                size = nsize;
                        }
                        snprintf(lags[cnt].topic, sizeof(lags[cnt].topic),
                                 "%s", tname);
                        lags[cnt].partition = (int32_t)id;
                        lags[cnt].lag = (int64_t)lag;
                        cnt++;
                }
        }
done:
        brokers = json_object_get(root, "brokers");
        json_object_foreach(brokers, bname, br) {
                json_t *node = json_object_get(br, "nodeid");
                const char *state =
                        json_string_value(json_object_get(br, "state"));
                if (json_is_integer(node) && json_integer_value(node) >= 0 &&
                    state && !strcmp(state, "UP"))
                        up++;
        }
        json_decref(root);
        if (cnt)
                qsort(lags, cnt, sizeof(*lags), npsd_lag_cmp);
        else {
                free(lags);
                lags = NULL;
        }
        *lagsp = lags;
        *cntp = cnt;
        if (brokers_up)
                *brokers_up = up;
        return 0;
}

/*
 * Unit tests for npsd_metrics_text: histograms, the Prometheus text
 * rendering of a snapshot (exposition format 0.0.4), build and process
 * metrics, the /livez and /readyz verdicts, the /proc stat parser and the
 * librdkafka statistics parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_metrics.h"

/* ---- helpers ------------------------------------------------------------- */

static char *render(const npsd_metrics_snapshot_t *s) {
        size_t len = 0;
        char *out = npsd_metrics_render(s, &len);

        assert_non_null(out);
        assert_int_equal(len, strlen(out));
        assert_true(len > 0 && out[len - 1] == '\n');
        return out;
}

/* True when text holds line as a whole line. */
static int has_line(const char *text, const char *line) {
        size_t n = strlen(line);

        for (const char *p = text; (p = strstr(p, line)); p++)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return 1;
        return 0;
}

static int is_name_char(int c, int first) {
        return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

/* Checks every line against the exposition format: "# HELP name text",
 * "# TYPE name counter|gauge|histogram" (once per family, before its
 * samples), or `name{label="value",...} number` where name belongs to the
 * family last declared (histograms: _bucket with le, _sum, _count). */
static void check_exposition(const char *text) {
        char family[128] = "", type[32] = "", declared[64][128];
        size_t declared_cnt = 0;
        const char *p = text;

        while (*p) {
                const char *eol = strchr(p, '\n');
                char line[1024], name[128];
                size_t len, i = 0;

                assert_non_null(eol);
                len = (size_t)(eol - p);
                assert_true(len < sizeof(line));
                memcpy(line, p, len);
                line[len] = '\0';
                p = eol + 1;
                if (!strncmp(line, "# HELP ", 7)) {
                        assert_true(strlen(line) > 8);
                        continue;
                }
                if (!strncmp(line, "# TYPE ", 7)) {
                        assert_int_equal(sscanf(line, "# TYPE %127s %31s",
                                                family, type),
                                         2);
                        assert_true(!strcmp(type, "counter") ||
                                    !strcmp(type, "gauge") ||
                                    !strcmp(type, "histogram"));
                        for (size_t d = 0; d < declared_cnt; d++)
                                assert_string_not_equal(declared[d], family);
                        assert_true(declared_cnt < 64);
                        strcpy(declared[declared_cnt++], family);
                        continue;
                }
                assert_true(line[0] != '#');
                /* metric name */
                while (is_name_char((unsigned char)line[i], i == 0))
                        i++;
                assert_true(i > 0 && i < sizeof(name));
                memcpy(name, line, i);
                name[i] = '\0';
                if (!strcmp(type, "histogram")) {
                        size_t fl = strlen(family);
                        assert_memory_equal(name, family, fl);
                        assert_true(!strcmp(name + fl, "_bucket") ||
                                    !strcmp(name + fl, "_sum") ||
                                    !strcmp(name + fl, "_count"));
                        if (!strcmp(name + fl, "_bucket"))
                                assert_memory_equal(line + i, "{le=\"", 5);
                } else {
                        assert_string_equal(name, family);
                }
                /* labels */
                if (line[i] == '{') {
                        i++;
                        for (;;) {
                                size_t start = i;
                                while (is_name_char((unsigned char)line[i],
                                                    i == start))
                                        i++;
                                assert_true(i > start);
                                assert_memory_equal(line + i, "=\"", 2);
                                i += 2;
                                while (line[i] && line[i] != '"') {
                                        if (line[i] == '\\') {
                                                i++;
                                                assert_true(line[i] == '\\' ||
                                                            line[i] == '"' ||
                                                            line[i] == 'n');
                                        }
                                        i++;
                                }
                                assert_int_equal(line[i], '"');
                                i++;
                                if (line[i] == ',') {
                                        i++;
                                        continue;
                                }
                                assert_int_equal(line[i], '}');
                                i++;
                                break;
                        }
                }
                /* value */
                assert_int_equal(line[i], ' ');
                {
                        char *end;
                        strtod(line + i + 1, &end);
                        assert_true(end != line + i + 1);
                        assert_int_equal(*end, '\0');
                }
        }
}

/* A snapshot with every counter distinct and some observations. */
static void fill(npsd_metrics_snapshot_t *s) {
        memset(s, 0, sizeof(*s));
        s->published = 1;
        s->published_ms = 1000;
        s->consumed = 10;
        s->accepted = 5;
        s->duplicates = 1;
        s->produced = 9;
        s->batches = 3;
        s->rejected[NPSD_REJECT_INVALID_JSON] = 2;
        s->rejected[NPSD_REJECT_MISSING_FIELD] = 1;
        s->redis_errors = 4;
        s->delivery_retries = 6;
        s->alerts[NPSD_ALERT_HEALTH_BAND] = 8;
        s->timer_runs = 7;
        s->kafka_up = 1;
        s->redis_up = 1;
}

/* Asserts that out holds a series metric{label="value"}. */
static void assert_series(const char *out, const char *metric,
                          const char *label, const char *value) {
        char want[160];

        snprintf(want, sizeof(want), "%s{%s=\"%s\"}", metric, label, value);
        assert_non_null(strstr(out, want));
}

/* ---- histograms ---------------------------------------------------------- */

static void test_hist_bounds(void **state) {
        (void)state;
        for (int k = 0; k < NPSD_HIST__CNT; k++) {
                size_t cnt = 0;
                const double *b = npsd_hist_bounds((npsd_hist_kind_t)k, &cnt);
                assert_non_null(b);
                assert_true(cnt >= 2 && cnt <= NPSD_HIST_BOUNDS_MAX);
                for (size_t i = 1; i < cnt; i++)
                        assert_true(b[i] > b[i - 1]);
        }
}

static void test_hist_observe(void **state) {
        npsd_hist_t h;
        size_t cnt;
        const double *b = npsd_hist_bounds(NPSD_HIST_BATCH_SIZE, &cnt);

        (void)state;
        memset(&h, 0, sizeof(h));
        npsd_hist_observe(&h, NPSD_HIST_BATCH_SIZE, 1);     /* le="1" */
        npsd_hist_observe(&h, NPSD_HIST_BATCH_SIZE, 0);     /* le="1" */
        npsd_hist_observe(&h, NPSD_HIST_BATCH_SIZE, 1.5);   /* le="2" */
        npsd_hist_observe(&h, NPSD_HIST_BATCH_SIZE, b[cnt - 1]);
        npsd_hist_observe(&h, NPSD_HIST_BATCH_SIZE, 1e9);   /* +Inf */
        npsd_hist_observe(&h, NPSD_HIST_BATCH_SIZE, NAN);   /* +Inf, no sum */
        assert_int_equal(h.counts[0], 2);
        assert_int_equal(h.counts[1], 1);
        assert_int_equal(h.counts[cnt - 1], 1);
        assert_int_equal(h.counts[cnt], 2);
        assert_int_equal(h.count, 6);
        assert_true(fabs(h.sum - (1 + 0 + 1.5 + b[cnt - 1] + 1e9)) < 1e-3);
}

/* ---- rendering ----------------------------------------------------------- */

static void test_render_counters(void **state) {
        npsd_metrics_snapshot_t s;
        char *out;

        (void)state;
        fill(&s);
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "npsd_messages_consumed_total 10"));
        assert_true(has_line(out, "npsd_responses_accepted_total 5"));
        assert_true(has_line(out, "npsd_responses_duplicate_total 1"));
        assert_true(has_line(out, "npsd_messages_produced_total 9"));
        assert_true(has_line(out, "npsd_batches_total 3"));
        assert_true(has_line(out, "npsd_redis_errors_total 4"));
        assert_true(has_line(out, "npsd_delivery_retries_total 6"));
        assert_true(has_line(out, "npsd_alerts_raised_total"
                                  "{type=\"health_band\"} 8"));
        /* every type has a series, from the start */
        for (int t = 0; t < NPSD_ALERT__CNT; t++)
                assert_series(out, "npsd_alerts_raised_total", "type",
                              npsd_alert_type_name((npsd_alert_type_t)t));
        assert_true(has_line(out, "npsd_alerts_raised_total"
                                  "{type=\"role_gap\"} 0"));
        assert_true(has_line(out, "npsd_timer_runs_total 7"));
        assert_true(has_line(out, "# TYPE npsd_timer_runs_total counter"));
        assert_true(has_line(out, "# TYPE npsd_messages_consumed_total "
                                  "counter"));
        assert_true(has_line(out, "npsd_messages_rejected_total"
                                  "{reason=\"invalid_json\"} 2"));
        assert_true(has_line(out, "npsd_messages_rejected_total"
                                  "{reason=\"missing_field\"} 1"));
        /* every reason has a series, from the start */
        for (int r = 1; r < NPSD_REJECT__CNT; r++)
                assert_series(out, "npsd_messages_rejected_total", "reason",
                              npsd_reject_reason_name(
                                      (npsd_reject_reason_t)r));
        assert_null(strstr(out, "reason=\"none\""));
        assert_true(has_line(out, "npsd_kafka_up 1"));
        assert_true(has_line(out, "npsd_redis_up 1"));
        assert_true(has_line(out, "# TYPE npsd_kafka_up gauge"));
        free(out);

        s.redis_up = 0;
        out = render(&s);
        assert_true(has_line(out, "npsd_redis_up 0"));
        free(out);
}

static void test_render_stages(void **state) {
        npsd_metrics_snapshot_t s;
        char *out;

        (void)state;
        fill(&s);
        s.stage_seconds[NPSD_STAGE_REDIS] = 12.5;
        s.stage_seconds[NPSD_STAGE_DELIVER] = 0.000125;
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "# TYPE npsd_loop_stage_seconds_total "
                                  "counter"));
        assert_true(has_line(out, "npsd_loop_stage_seconds_total"
                                  "{stage=\"redis\"} 12.500000"));
        assert_true(has_line(out, "npsd_loop_stage_seconds_total"
                                  "{stage=\"deliver\"} 0.000125"));
        /* every stage has a series, from the start */
        for (int st = 0; st < NPSD_STAGE__CNT; st++)
                assert_series(out, "npsd_loop_stage_seconds_total", "stage",
                              npsd_stage_name((npsd_stage_t)st));
        assert_string_equal(npsd_stage_name(NPSD_STAGE_TIMERS), "timers");
        assert_string_equal(npsd_stage_name(NPSD_STAGE__CNT), "unknown");
        free(out);
}

static void test_render_histograms(void **state) {
        npsd_metrics_snapshot_t s;
        char *out;

        (void)state;
        fill(&s);
        npsd_hist_observe(&s.hist[NPSD_HIST_REDIS_APPLY],
                          NPSD_HIST_REDIS_APPLY, 0.0004);
        npsd_hist_observe(&s.hist[NPSD_HIST_REDIS_APPLY],
                          NPSD_HIST_REDIS_APPLY, 0.003);
        npsd_hist_observe(&s.hist[NPSD_HIST_REDIS_APPLY],
                          NPSD_HIST_REDIS_APPLY, 60);
        npsd_hist_observe(&s.hist[NPSD_HIST_BATCH_SIZE], NPSD_HIST_BATCH_SIZE,
                          7);
        npsd_hist_observe(&s.hist[NPSD_HIST_E2E_LATENCY],
                          NPSD_HIST_E2E_LATENCY, 0.2);
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "# TYPE npsd_redis_apply_duration_seconds "
                                  "histogram"));
        /* cumulative buckets */
        assert_true(has_line(out, "npsd_redis_apply_duration_seconds_bucket"
                                  "{le=\"0.0005\"} 1"));
        assert_true(has_line(out, "npsd_redis_apply_duration_seconds_bucket"
                                  "{le=\"0.0025\"} 1"));
        assert_true(has_line(out, "npsd_redis_apply_duration_seconds_bucket"
                                  "{le=\"0.005\"} 2"));
        assert_true(has_line(out, "npsd_redis_apply_duration_seconds_bucket"
                                  "{le=\"10\"} 2"));
        assert_true(has_line(out, "npsd_redis_apply_duration_seconds_bucket"
                                  "{le=\"+Inf\"} 3"));
        assert_true(has_line(out, "npsd_redis_apply_duration_seconds_count 3"));
        assert_true(has_line(out,
                             "npsd_redis_apply_duration_seconds_sum 60.0034"));
        assert_true(has_line(out, "npsd_batch_size_messages_bucket"
                                  "{le=\"5\"} 0"));
        assert_true(has_line(out, "npsd_batch_size_messages_bucket"
                                  "{le=\"10\"} 1"));
        assert_true(has_line(out, "npsd_batch_size_messages_bucket"
                                  "{le=\"100000\"} 1"));
        assert_true(has_line(out, "npsd_processing_latency_seconds_bucket"
                                  "{le=\"0.1\"} 0"));
        assert_true(has_line(out, "npsd_processing_latency_seconds_bucket"
                                  "{le=\"0.25\"} 1"));
        assert_true(has_line(out, "npsd_processing_latency_seconds_count 1"));
        free(out);
}

static void test_render_lag(void **state) {
        npsd_metrics_lag_t lags[2];
        npsd_metrics_snapshot_t s;
        char *out;

        (void)state;
        fill(&s);
        out = render(&s);
        /* no partition known yet: the family is declared, with no sample */
        assert_true(has_line(out, "# TYPE npsd_consumer_lag gauge"));
        assert_null(strstr(out, "npsd_consumer_lag{"));
        free(out);

        memset(lags, 0, sizeof(lags));
        strcpy(lags[0].topic, "nps.responses");
        lags[0].partition = 3;
        lags[0].lag = 42;
        strcpy(lags[1].topic, "we\"ird\\topic\n");
        lags[1].partition = 0;
        lags[1].lag = 0;
        s.lags = lags;
        s.lag_cnt = 2;
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "npsd_consumer_lag{topic=\"nps.responses\","
                                  "partition=\"3\"} 42"));
        assert_true(has_line(out, "npsd_consumer_lag{topic=\"we\\\"ird\\\\"
                                  "topic\\n\",partition=\"0\"} 0"));
        free(out);
}

/* npsd_build_info: one series, labels escaped, "unknown" before Redis. */
static void test_render_build_info(void **state) {
        npsd_metrics_snapshot_t s;
        char *out;

        (void)state;
        fill(&s);
        strcpy(s.build.version, "0.1.0");
        strcpy(s.build.librdkafka, "2.0.2");
        strcpy(s.build.hiredis, "0.14.1");
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "# TYPE npsd_build_info gauge"));
        assert_true(has_line(out, "npsd_build_info{version=\"0.1.0\","
                                  "librdkafka=\"2.0.2\",hiredis=\"0.14.1\","
                                  "redis_server=\"unknown\"} 1"));
        free(out);
        strcpy(s.build.redis_server, "7.0.\"15\"");
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "npsd_build_info{version=\"0.1.0\","
                                  "librdkafka=\"2.0.2\",hiredis=\"0.14.1\","
                                  "redis_server=\"7.0.\\\"15\\\"\"} 1"));
        free(out);
}

/* process_*: rendered when read, with the types Prometheus' client
 * libraries use; left out when /proc could not be read. */
static void test_render_process(void **state) {
        npsd_metrics_snapshot_t s;
        char *out;

        (void)state;
        fill(&s);
        s.process.open_fds = s.process.max_fds = -1;
        out = render(&s);
        assert_null(strstr(out, "process_"));
        free(out);

        s.process.ok = 1;
        s.process.cpu_seconds = 1.25;
        s.process.resident_bytes = 8388608;
        s.process.virtual_bytes = 104857600;
        s.process.start_time_s = 1795000000.5;
        s.process.open_fds = 17;
        s.process.max_fds = 1024;
        out = render(&s);
        check_exposition(out);
        assert_true(has_line(out, "# TYPE process_cpu_seconds_total counter"));
        assert_true(has_line(out, "process_cpu_seconds_total 1.25"));
        assert_true(has_line(out, "# TYPE process_resident_memory_bytes "
                                  "gauge"));
        assert_true(has_line(out, "process_resident_memory_bytes 8388608"));
        assert_true(has_line(out, "process_virtual_memory_bytes 104857600"));
        assert_true(has_line(out, "process_start_time_seconds "
                                  "1795000000.50"));
        assert_true(has_line(out, "process_open_fds 17"));
        assert_true(has_line(out, "process_max_fds 1024"));
        free(out);
        /* an unknown limit is left out, the rest stays */
        s.process.max_fds = -1;
        out = render(&s);
        assert_null(strstr(out, "process_max_fds"));
        assert_true(has_line(out, "process_open_fds 17"));
        free(out);
}

static void test_parse_proc_stat(void **state) {
        /* shaped like /proc/self/stat on Linux 6.1, with a space and a
         * parenthesis in comm so that fields must be counted from the
         * last ')' */
        static const char line[] =
                "4242 (np sd) x) S 1 4242 4242 0 -1 4194560 2190 0 0 0 "
                "150 50 0 0 20 0 5 0 123400 209715200 2048 "
                "18446744073709551615 1 1 0 0 0 0 0 4096 17920 0 0 0 17 1 "
                "0 0 0 0 0\n";
        npsd_metrics_process_t p;

        (void)state;
        memset(&p, 0, sizeof(p));
        assert_int_equal(npsd_metrics_parse_proc_stat(line, 100, 4096,
                                                      1790000000.0, &p),
                         0);
        assert_int_equal(p.ok, 1);
        assert_true(fabs(p.cpu_seconds - 2.0) < 1e-9);  /* (150+50)/100 */
        assert_true(fabs(p.start_time_s - 1790001234.0) < 1e-6);
        assert_true(p.virtual_bytes == 209715200.0);
        assert_true(p.resident_bytes == 2048.0 * 4096);

        assert_int_equal(npsd_metrics_parse_proc_stat("garbage", 100, 4096,
                                                      0, &p),
                         -1);
        assert_int_equal(p.ok, 0);
        assert_int_equal(npsd_metrics_parse_proc_stat("1 (x) S 1 2 3", 100,
                                                      4096, 0, &p),
                         -1);
        assert_int_equal(npsd_metrics_parse_proc_stat(line, 0, 4096, 0, &p),
                         -1);
}

/* ---- health -------------------------------------------------------------- */

/* /livez: the heartbeat only; Redis and Kafka do not matter. */
static void test_live(void **state) {
        npsd_metrics_snapshot_t s;
        char reason[NPSD_METRICS_REASON_MAX];

        (void)state;
        memset(&s, 0, sizeof(s));
        s.started_ms = 100000; /* monotonic: far from 0 */
        /* starting: alive for the stall time from the server's start */
        assert_int_equal(npsd_metrics_live(&s, 105000, 60000, reason,
                                           sizeof(reason)),
                         1);
        assert_string_equal(reason, "");
        assert_int_equal(npsd_metrics_live(&s, 160001, 60000, reason,
                                           sizeof(reason)),
                         0);
        fill(&s); /* published at 1000 */
        s.started_ms = 500;
        s.redis_up = 0;
        s.kafka_up = 0;
        assert_int_equal(npsd_metrics_live(&s, 3000, 2000, reason,
                                           sizeof(reason)),
                         1);
        assert_int_equal(npsd_metrics_live(&s, 3001, 2000, reason,
                                           sizeof(reason)),
                         0);
        assert_string_equal(reason, "npsd: main loop has not come round for "
                                    "2 s (limit 2 s)");
        /* the limit decides, not a constant */
        assert_int_equal(npsd_metrics_live(&s, 3001, 60000, reason,
                                           sizeof(reason)),
                         1);
}

static void test_health(void **state) {
        npsd_metrics_snapshot_t s;
        char reason[NPSD_METRICS_REASON_MAX];

        (void)state;
        memset(&s, 0, sizeof(s));
        assert_int_equal(npsd_metrics_health(&s, 0, 30000, reason,
                                             sizeof(reason)),
                         0);
        assert_string_equal(reason, "npsd: starting");

        fill(&s); /* published at 1000, both up */
        assert_int_equal(npsd_metrics_health(&s, 2000, 30000, reason,
                                             sizeof(reason)),
                         1);
        assert_string_equal(reason, "");
        /* the loop stopped publishing */
        assert_int_equal(npsd_metrics_health(&s, 32000, 30000, reason,
                                             sizeof(reason)),
                         0);
        assert_string_equal(reason, "npsd: main loop stalled for 31 s");

        s.redis_up = 0;
        strcpy(s.reason, "redis connect 127.0.0.1:6379: Connection refused");
        assert_int_equal(npsd_metrics_health(&s, 2000, 30000, reason,
                                             sizeof(reason)),
                         0);
        assert_string_equal(reason,
                            "redis connect 127.0.0.1:6379: Connection refused");
        /* one line, even when the error text had several */
        strcpy(s.reason, "redis: a\r\nb");
        npsd_metrics_health(&s, 2000, 30000, reason, sizeof(reason));
        assert_string_equal(reason, "redis: a  b");
        /* no reason given: a generic one naming the service */
        s.reason[0] = '\0';
        npsd_metrics_health(&s, 2000, 30000, reason, sizeof(reason));
        assert_string_equal(reason, "redis: unreachable");
        s.redis_up = 1;
        s.kafka_up = 0;
        assert_int_equal(npsd_metrics_health(&s, 2000, 30000, reason,
                                             sizeof(reason)),
                         0);
        assert_string_equal(reason, "kafka: unreachable");
        /* a small buffer cuts, never overflows */
        strcpy(s.reason, "kafka: all brokers down");
        npsd_metrics_health(&s, 2000, 30000, reason, 6);
        assert_string_equal(reason, "kafka");
}

/* ---- librdkafka statistics ----------------------------------------------- */

/* Trimmed from a real librdkafka 2.0 consumer statistics document. */
static const char stats_json[] =
        "{\"name\":\"npsd#consumer-1\",\"type\":\"consumer\",\"ts\":1,"
        "\"brokers\":{"
        " \"GroupCoordinator\":{\"name\":\"GroupCoordinator\",\"nodeid\":-1,"
        "  \"state\":\"UP\"},"
        " \"127.0.0.1:9092/1\":{\"name\":\"127.0.0.1:9092/1\",\"nodeid\":1,"
        "  \"state\":\"UP\"},"
        " \"127.0.0.1:9093/2\":{\"name\":\"127.0.0.1:9093/2\",\"nodeid\":2,"
        "  \"state\":\"DOWN\"}},"
        "\"topics\":{"
        " \"nps.responses\":{\"topic\":\"nps.responses\",\"partitions\":{"
        "  \"1\":{\"partition\":1,\"consumer_lag\":7,\"hi_offset\":9},"
        "  \"0\":{\"partition\":0,\"consumer_lag\":0},"
        "  \"2\":{\"partition\":2,\"consumer_lag\":-1},"
        "  \"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"
        " \"accounts\":{\"topic\":\"accounts\",\"partitions\":{"
        "  \"3\":{\"partition\":3,\"consumer_lag\":12},"
        "  \"4\":{\"consumer_lag\":5},"
        "  \"5\":{\"partition\":5,\"consumer_lag\":\"x\"}}},"
        " \"empty\":{\"topic\":\"empty\"}}}";

static void test_parse_stats(void **state) {
        npsd_metrics_lag_t *lags = NULL;
        size_t cnt = 99;
        int up = -1;

        (void)state;
        assert_int_equal(npsd_metrics_parse_stats(stats_json,
                                                  strlen(stats_json), &lags,
                                                  &cnt, &up),
                         0);
        assert_int_equal(up, 1);
        assert_int_equal(cnt, 4);
        /* sorted by topic, then partition */
        assert_string_equal(lags[0].topic, "accounts");
        assert_int_equal(lags[0].partition, 3);
        assert_int_equal(lags[0].lag, 12);
        assert_string_equal(lags[1].topic, "accounts");
        assert_int_equal(lags[1].partition, 4); /* id from the key */
        assert_int_equal(lags[1].lag, 5);
        assert_string_equal(lags[2].topic, "nps.responses");
        assert_int_equal(lags[2].partition, 0);
        assert_int_equal(lags[2].lag, 0);
        assert_string_equal(lags[3].topic, "nps.responses");
        assert_int_equal(lags[3].partition, 1);
        assert_int_equal(lags[3].lag, 7);
        free(lags);
}

static void test_parse_stats_edges(void **state) {
        npsd_metrics_lag_t *lags = (void *)1;
        size_t cnt = 99;
        int up = -1;
        char *big;
        size_t n;

        (void)state;
        /* not JSON, not an object */
        assert_int_equal(npsd_metrics_parse_stats("{", 1, &lags, &cnt, &up),
                         -1);
        assert_null(lags);
        assert_int_equal(cnt, 0);
        assert_int_equal(npsd_metrics_parse_stats("[1]", 3, &lags, &cnt, NULL),
                         -1);
        /* no topics, no brokers */
        assert_int_equal(npsd_metrics_parse_stats("{}", 2, &lags, &cnt, &up),
                         0);
        assert_null(lags);
        assert_int_equal(cnt, 0);
        assert_int_equal(up, 0);
        /* wrong types everywhere are skipped, not fatal */
        {
                const char *j = "{\"topics\":[1],\"brokers\":{\"b\":3}}";
                assert_int_equal(npsd_metrics_parse_stats(j, strlen(j), &lags,
                                                          &cnt, &up),
                                 0);
                assert_int_equal(cnt, 0);
                assert_int_equal(up, 0);
        }
        /* a topic name too long for the label buffer is skipped */
        n = NPSD_METRICS_TOPIC_MAX + 64;
        big = malloc(n + 128);
        assert_non_null(big);
        strcpy(big, "{\"topics\":{\"");
        memset(big + strlen(big), 'a', NPSD_METRICS_TOPIC_MAX);
        big[12 + NPSD_METRICS_TOPIC_MAX] = '\0';
        strcat(big, "\":{\"partitions\":{\"0\":{\"partition\":0,"
                    "\"consumer_lag\":1}}}}}");
        assert_int_equal(npsd_metrics_parse_stats(big, strlen(big), &lags,
                                                  &cnt, &up),
                         0);
        assert_int_equal(cnt, 0);
        free(big);
        /* many partitions: the array grows */
        {
                char doc[65536];
                size_t off = 0;
                off += (size_t)snprintf(doc + off, sizeof(doc) - off,
                                        "{\"topics\":{\"t\":{\"partitions\":{");
                for (int i = 0; i < 100; i++)
                        off += (size_t)snprintf(
                                doc + off, sizeof(doc) - off,
                                "%s\"%d\":{\"partition\":%d,"
                                "\"consumer_lag\":%d}",
                                i ? "," : "", i, i, i * 2);
                snprintf(doc + off, sizeof(doc) - off, "}}}}");
                assert_int_equal(npsd_metrics_parse_stats(doc, strlen(doc),
                                                          &lags, &cnt, NULL),
                                 0);
                assert_int_equal(cnt, 100);
                for (int i = 0; i < 100; i++) {
                        assert_int_equal(lags[i].partition, i);
                        assert_int_equal(lags[i].lag, i * 2);
                }
                free(lags);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hist_bounds),
                cmocka_unit_test(test_hist_observe),
                cmocka_unit_test(test_render_counters),
                cmocka_unit_test(test_render_stages),
                cmocka_unit_test(test_render_histograms),
                cmocka_unit_test(test_render_lag),
                cmocka_unit_test(test_render_build_info),
                cmocka_unit_test(test_render_process),
                cmocka_unit_test(test_parse_proc_stat),
                cmocka_unit_test(test_live),
                cmocka_unit_test(test_health),
                cmocka_unit_test(test_parse_stats),
                cmocka_unit_test(test_parse_stats_edges),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * npsd_metrics — observability over HTTP (`http.listen`): Prometheus text
 * metrics (GET /metrics), liveness (GET /livez: the main loop comes round)
 * and readiness (GET /readyz, alias /healthz: Kafka and Redis reachable).
 *
 * The HTTP server runs in its own thread (libmicrohttpd) and never touches
 * npsd's live structures: the main loop publishes a snapshot (a copy, taken
 * under a mutex) about once a second and after every batch, and each request
 * is answered from the last snapshot.
 *
 * The pure part (histograms, the text rendering of a snapshot, the health
 * verdict, the parser of librdkafka statistics) lives in npsd_metrics_text.c
 * (core, unit-tested); the server in npsd_metrics.c (shell).
 */
#ifndef NPSD_METRICS_H
#define NPSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_alert.h"
#include "npsd/npsd_event.h"

/* ---- histograms (fixed bucket bounds per kind) --------------------------- */

#define NPSD_HIST_BOUNDS_MAX 16

typedef enum {
        NPSD_HIST_REDIS_APPLY = 0, /* seconds per npsd_store_apply() call */
        NPSD_HIST_BATCH_SIZE,      /* messages per batch */
        NPSD_HIST_E2E_LATENCY,     /* seconds, Kafka timestamp to outputs acked */
        NPSD_HIST__CNT
} npsd_hist_kind_t;

/* Stages of the main loop whose wall time /metrics reports
 * (npsd_loop_stage_seconds_total{stage}): where a batch's time goes. */
typedef enum {
        NPSD_STAGE_PARSE = 0, /* parse and validate, DLQ records built */
        NPSD_STAGE_REDIS,     /* the batch's Redis pipeline, retries included */
        NPSD_STAGE_ENRICH,    /* classified outputs built */
        NPSD_STAGE_DELIVER,   /* produce and wait for every acknowledgement */
        NPSD_STAGE_COMMIT,    /* offsets committed */
        NPSD_STAGE_ALERTS,    /* the alert outbox published */
        NPSD_STAGE_TIMERS,    /* window roll, loop deadlines, cohort views */
        NPSD_STAGE__CNT
} npsd_stage_t;

/* "parse", "redis", ... */
const char *npsd_stage_name(npsd_stage_t stage);

/* Counts per bucket, NOT cumulative: counts[i] holds the observations
 * v <= bounds[i] (and > bounds[i-1]); counts[bound_cnt] holds the rest
 * (+Inf). Zero-initialised is empty. */
typedef struct npsd_hist_s {
        uint64_t counts[NPSD_HIST_BOUNDS_MAX + 1];
        uint64_t count;
        double sum;
} npsd_hist_t;

/* The upper bounds of kind's buckets, ascending; *cnt set to their number
 * (<= NPSD_HIST_BOUNDS_MAX). Static storage. */
const double *npsd_hist_bounds(npsd_hist_kind_t kind, size_t *cnt);

/* Adds one observation v of the given kind to h. */
void npsd_hist_observe(npsd_hist_t *h, npsd_hist_kind_t kind, double v);

/* ---- snapshot, rendering, health ---------------------------------------- */

#define NPSD_METRICS_TOPIC_MAX 256 /* Kafka topic names are <= 249 bytes */
#define NPSD_METRICS_REASON_MAX 256

/* Consumer lag of one partition (messages behind the committed offset). */
typedef struct npsd_metrics_lag_s {
        char topic[NPSD_METRICS_TOPIC_MAX];
        int32_t partition;
        int64_t lag;
} npsd_metrics_lag_t;

/* Versions behind npsd_build_info: npsd, librdkafka, hiredis (of the
 * build) and the Redis server (INFO server; "" until first connected). */
typedef struct npsd_metrics_build_s {
        char version[32], librdkafka[32], hiredis[32], redis_server[64];
} npsd_metrics_build_t;

/* The standard process_* metrics, from /proc/self (ok 0: not rendered). */
typedef struct npsd_metrics_process_s {
        int ok;
        double cpu_seconds;      /* user + system */
        double resident_bytes, virtual_bytes;
        double start_time_s;     /* since the Unix epoch */
        long long open_fds, max_fds; /* -1 when unknown: not rendered */
} npsd_metrics_process_t;

/* What /metrics and the probes are answered from. */
typedef struct npsd_metrics_snapshot_s {
        int published;        /* 0 until the main loop published once */
        int64_t published_ms; /* monotonic ms of the last publish: the main
                               * loop's heartbeat */
        int64_t started_ms;   /* monotonic ms the server started */
        uint64_t consumed, accepted, duplicates, produced, batches;
        uint64_t rejected[NPSD_REJECT__CNT];
        uint64_t redis_errors, delivery_retries, timer_runs;
        uint64_t version_conflicts;
        uint64_t alerts[NPSD_ALERT__CNT]; /* published, by type */
        npsd_hist_t hist[NPSD_HIST__CNT];
        double stage_seconds[NPSD_STAGE__CNT];
        int kafka_up, redis_up;
        char reason[NPSD_METRICS_REASON_MAX]; /* why down, "" when up */
        const npsd_metrics_lag_t *lags;       /* not owned by the snapshot */
        size_t lag_cnt;
        npsd_metrics_build_t build;
        npsd_metrics_process_t process;
} npsd_metrics_snapshot_t;

/* Renders snap in the Prometheus text exposition format 0.0.4. Returns a
 * NUL-terminated buffer the caller must free(), *lenp its length; NULL when
 * out of memory. */
char *npsd_metrics_render(const npsd_metrics_snapshot_t *snap, size_t *lenp);

/* The /livez verdict for snap at monotonic time now_ms: 1 while the main
 * loop came round (published) within stall_ms, counting from the server's
 * start before the first publish; else 0 with a one-line reason. Redis or
 * Kafka being away does not matter here: a batch waiting for them still
 * comes round. */
int npsd_metrics_live(const npsd_metrics_snapshot_t *snap, int64_t now_ms,
                      int64_t stall_ms, char *reason, size_t reason_size);

/* Parses the text of /proc/<pid>/stat into out (cpu, memory, start time;
 * open_fds and max_fds are left as they are). clk_tck and page_size as
 * sysconf() gives them, boot_time_s the "btime" of /proc/stat. Returns 0,
 * or -1 when text is not a stat line (out->ok set to 0). */
int npsd_metrics_parse_proc_stat(const char *text, long clk_tck,
                                 long page_size, double boot_time_s,
                                 npsd_metrics_process_t *out);

/* The /readyz (and /healthz) verdict for snap at monotonic time now_ms: 1
 * when healthy, else 0 with a one-line reason ("redis: ...", "kafka: ...",
 * "npsd: ...") written to reason. A snapshot older than stale_ms means the main loop is
 * stuck: unhealthy. */
int npsd_metrics_health(const npsd_metrics_snapshot_t *snap, int64_t now_ms,
                        int64_t stale_ms, char *reason, size_t reason_size);

/* Parses one librdkafka statistics document (stats_cb JSON): the
 * consumer_lag of every partition with id >= 0 and consumer_lag >= 0, and
 * the number of brokers (nodeid >= 0) in state UP. Returns 0 with *lagsp a
 * malloc'd array the caller must free() (NULL when *cntp is 0), or -1 when
 * the document is not a JSON object (nothing allocated). brokers_up may be
 * NULL. */
int npsd_metrics_parse_stats(const char *json, size_t len,
                             npsd_metrics_lag_t **lagsp, size_t *cntp,
                             int *brokers_up);

/* ---- the HTTP server (shell) --------------------------------------------- */

typedef struct npsd_metrics_s npsd_metrics_t;
struct npsd_pipeline_stats_s;

/* Starts the HTTP server on listen ("host:port", "[v6]:port", ":port" for
 * every interface). build (copied; redis_server may be "") labels
 * npsd_build_info; stall_ms is the /livez limit. Returns NULL with errstr
 * when the address cannot be resolved or bound, or when npsd was built
 * without libmicrohttpd. Until the first publish, /readyz answers 503
 * "npsd: starting" and /livez 200 (for stall_ms). Must be destroyed with
 * npsd_metrics_destroy(). */
npsd_metrics_t *npsd_metrics_new(const char *listen,
                                 const npsd_metrics_build_t *build,
                                 int64_t stall_ms, char *errstr,
                                 size_t errstr_size);

/* Changes the /livez limit (a reloaded http.livez.stall.s). NULL metrics
 * is a no-op. */
void npsd_metrics_set_stall(npsd_metrics_t *metrics, int64_t stall_ms);

/* Stops the server (waits for requests in flight) and frees everything.
 * NULL is a no-op. */
void npsd_metrics_destroy(npsd_metrics_t *metrics);

/* Publishes a copy of st (not kept) and the reachability of Kafka and
 * Redis; reason (may be NULL) says why one is down; redis_version (may be
 * NULL or "": not known yet, the last known one stays) is the server's.
 * now_ms is monotonic: the heartbeat /livez checks. NULL metrics is a
 * no-op. Main thread only. */
void npsd_metrics_publish(npsd_metrics_t *metrics,
                          const struct npsd_pipeline_stats_s *st,
                          int kafka_up, int redis_up, const char *reason,
                          const char *redis_version, int64_t now_ms);

/* Replaces the published consumer lags; takes ownership of lags (malloc'd,
 * may be NULL with cnt 0), freed by the metrics handle. NULL metrics frees
 * lags. */
void npsd_metrics_publish_lag(npsd_metrics_t *metrics,
                              npsd_metrics_lag_t *lags, size_t cnt);

#endif

/*
 * npsd_metrics — the HTTP server of /metrics and /healthz (see
 * include/npsd/npsd_metrics.h). libmicrohttpd serves requests from its own
 * thread, answering from the last published snapshot only.
 */
#include "npsd/npsd_metrics.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef NPSD_HAVE_MHD
#include <microhttpd.h>
#endif

#include "npsd/npsd_log.h"
#include "npsd/npsd_pipeline.h"

/* A snapshot older than this means the main loop is stuck: /healthz 503. */
#define NPSD_METRICS_STALE_MS 30000

struct npsd_metrics_s {
        pthread_mutex_t lock; /* guards snap and lags */
        npsd_metrics_snapshot_t snap;
        npsd_metrics_lag_t *lags; /* owned; snap.lags points here */
#ifdef NPSD_HAVE_MHD
        struct MHD_Daemon *daemon;
#endif
};

void npsd_metrics_publish(npsd_metrics_t *m,
                          const struct npsd_pipeline_stats_s *st,
                          int kafka_up, int redis_up, const char *reason,
                          int64_t now_ms) {
        npsd_metrics_snapshot_t *s;

        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        s = &m->snap;
        s->published = 1;
        s->published_ms = now_ms;
        s->consumed = st->consumed;
        s->accepted = st->accepted;
        s->duplicates = st->duplicates;
        s->produced = st->produced;
        s->batches = st->batches;
        memcpy(s->rejected, st->rejected, sizeof(s->rejected));
        s->redis_errors = st->redis_errors;
        s->delivery_retries = st->delivery_retries;
        s->alerts = st->alerts;
        s->timer_runs = st->timer_runs;
        s->hist[NPSD_HIST_REDIS_APPLY] = st->redis_apply;
        s->hist[NPSD_HIST_BATCH_SIZE] = st->batch_size;
        s->hist[NPSD_HIST_E2E_LATENCY] = st->e2e_latency;
        memcpy(s->stage_seconds, st->stage_seconds, sizeof(s->stage_seconds));
        s->kafka_up = kafka_up;
        s->redis_up = redis_up;
        snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
        pthread_mutex_unlock(&m->lock);
}

void npsd_metrics_publish_lag(npsd_metrics_t *m, npsd_metrics_lag_t *lags,
                              size_t cnt) {
        npsd_metrics_lag_t *old;

        if (!m) {
                free(lags);
                return;
        }
        pthread_mutex_lock(&m->lock);
        old = m->lags;
        m->lags = lags;
        m->snap.lags = lags;
        m->snap.lag_cnt = lags ? cnt : 0;
        pthread_mutex_unlock(&m->lock);
        free(old);
}

#ifdef NPSD_HAVE_MHD

static int64_t npsd_metrics_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Queues a response; body is taken over (malloc'd) or copied (static). */
static enum MHD_Result npsd_metrics_reply(struct MHD_Connection *conn,
                                          unsigned int status,
                                          const char *ctype, char *body,
                                          size_t len, int owned) {
        struct MHD_Response *resp;
        enum MHD_Result rc;

        resp = MHD_create_response_from_buffer(
                len, body,
                owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
        if (!resp) {
                if (owned)
                        free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-store");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                        "GET, HEAD");
        rc = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return rc;
}

/* Runs on libmicrohttpd's thread: reads the snapshot under the lock only. */
static enum MHD_Result npsd_metrics_handler(void *cls,
                                            struct MHD_Connection *conn,
                                            const char *url,
                                            const char *method,
                                            const char *version,
                                            const char *upload_data,
                                            size_t *upload_data_size,
                                            void **con_cls) {
        static const char text[] = "text/plain; charset=utf-8";
        npsd_metrics_t *m = cls;

        if (strcmp(method, MHD_HTTP_METHOD_GET) &&
            strcmp(method, MHD_HTTP_METHOD_HEAD))
                return npsd_metrics_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                          text, "method not allowed\n", 19,
                                          0);
        if (!strcmp(url, "/metrics")) {
                size_t len = 0;
                char *body;

                pthread_mutex_lock(&m->lock);
                body = npsd_metrics_render(&m->snap, &len);
                pthread_mutex_unlock(&m->lock);
                if (!body)
                        return npsd_metrics_reply(
                                conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text,
                                "out of memory\n", 14, 0);
                return npsd_metrics_reply(
                        conn, MHD_HTTP_OK,
                        "text/plain; version=0.0.4; charset=utf-8", body, len,
                        1);
        }
        if (!strcmp(url, "/healthz")) {
                char reason[NPSD_METRICS_REASON_MAX + 2];
                int ok;

                pthread_mutex_lock(&m->lock);
                ok = npsd_metrics_health(&m->snap, npsd_metrics_mono_ms(),
                                         NPSD_METRICS_STALE_MS, reason,
                                         sizeof(reason) - 1);
                pthread_mutex_unlock(&m->lock);
                if (ok)
                        return npsd_metrics_reply(conn, MHD_HTTP_OK, text,
                                                  "ok\n", 3, 0);
                strcat(reason, "\n");
                return npsd_metrics_reply(conn,
                                          MHD_HTTP_SERVICE_UNAVAILABLE, text,
                                          reason, strlen(reason), 0);
        }
        return npsd_metrics_reply(conn, MHD_HTTP_NOT_FOUND, text,
                                  "not found: try /metrics or /healthz\n", 36,
                                  0);
}

static void npsd_metrics_mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        size_t len;

        vsnprintf(buf, sizeof(buf), fmt, ap);
        len = strlen(buf);
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                buf[--len] = '\0';
        for (char *p = buf; *p; p++)
                if (*p == '"')
                        *p = '\'';
        npsd_warn("msg=\"http server\" detail=\"%s\"", buf);
}

/* Splits "host:port", "[v6]:port" or ":port" into host (may be "") and
 * port. Returns 0 or -1. */
static int npsd_metrics_split(const char *addr, char *host,
                              size_t host_size, char *port,
                              size_t port_size) {
        const char *colon = strrchr(addr, ':');
        size_t hlen;

        if (!colon || !colon[1])
                return -1;
        hlen = (size_t)(colon - addr);
        if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
                addr++;
                hlen -= 2;
        }
        if (hlen >= host_size || strlen(colon + 1) >= port_size)
                return -1;
        memcpy(host, addr, hlen);
        host[hlen] = '\0';
        snprintf(port, port_size, "%s", colon + 1);
        return 0;
}

/* Resolves, binds and listens; returns the socket or -1 with errstr. Our
 * own socket (rather than MHD's) gives precise bind errors. */
static int npsd_metrics_listen(const char *addr, char *errstr,
                               size_t errstr_size) {
        struct addrinfo hints, *res = NULL, *ai;
        char host[256], port[16];
        int fd = -1, err = 0, one = 1, gai;

        if (npsd_metrics_split(addr, host, sizeof(host), port,
                               sizeof(port))) {
                snprintf(errstr, errstr_size,
                         "http.listen '%s': expected host:port", addr);
                return -1;
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        if ((gai = getaddrinfo(*host ? host : NULL, port, &hints, &res))) {
                snprintf(errstr, errstr_size, "http.listen '%s': %s", addr,
                         gai_strerror(gai));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                            ai->ai_protocol);
                if (fd == -1) {
                        err = errno;
                        continue;
                }
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
                    listen(fd, 64) == 0)
                        break;
                err = errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd == -1)
                snprintf(errstr, errstr_size,
                         "http.listen '%s': cannot listen: %s", addr,
                         strerror(err ? err : EADDRNOTAVAIL));
        return fd;
}

#endif /* NPSD_HAVE_MHD */

npsd_metrics_t *npsd_metrics_new(const char *addr, char *errstr,
                                 size_t errstr_size) {
#ifdef NPSD_HAVE_MHD
        npsd_metrics_t *m = calloc(1, sizeof(*m));
        int fd = -1;

        if (!m) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&m->lock, NULL);
        if ((fd = npsd_metrics_listen(addr, errstr, errstr_size)) == -1)
                goto fail;
        m->daemon = MHD_start_daemon(
                MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                NULL, npsd_metrics_handler, m,
                /* the logger first, so that it sees every message */
                MHD_OPTION_EXTERNAL_LOGGER, npsd_metrics_mhd_log, NULL,
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned int)32,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                MHD_OPTION_END);
        if (!m->daemon) {
                snprintf(errstr, errstr_size,
                         "http.listen '%s': cannot start the HTTP server",
                         addr);
                goto fail;
        }
        return m; /* the daemon owns fd now and closes it when stopped */

fail:
        if (fd != -1)
                close(fd);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return NULL;
#else
        snprintf(errstr, errstr_size,
                 "http.listen '%s': npsd was built without libmicrohttpd "
                 "(set http.listen to \"\" to run without /metrics)",
                 addr);
        return NULL;
#endif
}

void npsd_metrics_destroy(npsd_metrics_t *m) {
        if (!m)
                return;
#ifdef NPSD_HAVE_MHD
        if (m->daemon)
                MHD_stop_daemon(m->daemon);
#endif
        pthread_mutex_destroy(&m->lock);
        free(m->lags);
        free(m);
}

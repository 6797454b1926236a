/*
 * npsd_metrics — the HTTP server of /metrics, /livez, /readyz and /healthz
 * (see include/npsd/npsd_metrics.h). libmicrohttpd serves requests from its
 * own thread, answering from the last published snapshot only (and, for
 * the process_* metrics, from /proc/self at the time of the request).
 */
#include "npsd/npsd_metrics.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>

#ifdef NPSD_HAVE_MHD
#include <microhttpd.h>
#endif

#include "npsd/npsd_log.h"
#include "npsd/npsd_pipeline.h"

/* A snapshot older than this means the main loop is stuck: /readyz 503.
 * (/livez has its own limit, http.livez.stall.s.) */
#define NPSD_METRICS_STALE_MS 30000

struct npsd_metrics_s {
        pthread_mutex_t lock; /* guards snap, lags and stall_ms */
        int64_t stall_ms;
        npsd_metrics_snapshot_t snap;
        npsd_metrics_lag_t *lags; /* owned; snap.lags points here */
#ifdef NPSD_HAVE_MHD
        struct MHD_Daemon *daemon;
#endif
};

void npsd_metrics_publish(npsd_metrics_t *m,
                          const struct npsd_pipeline_stats_s *st,
                          int kafka_up, int redis_up, const char *reason,
                          const char *redis_version, int64_t now_ms) {
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
        s->version_conflicts = st->version_conflicts;
        s->delivery_retries = st->delivery_retries;
        memcpy(s->alerts, st->alerts, sizeof(s->alerts));
        s->timer_runs = st->timer_runs;
        s->hist[NPSD_HIST_REDIS_APPLY] = st->redis_apply;
        s->hist[NPSD_HIST_BATCH_SIZE] = st->batch_size;
        s->hist[NPSD_HIST_E2E_LATENCY] = st->e2e_latency;
        memcpy(s->stage_seconds, st->stage_seconds, sizeof(s->stage_seconds));
        s->kafka_up = kafka_up;
        s->redis_up = redis_up;
        snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
        if (redis_version && *redis_version)
                snprintf(s->build.redis_server, sizeof(s->build.redis_server),
                         "%s", redis_version);
        pthread_mutex_unlock(&m->lock);
}

void npsd_metrics_set_stall(npsd_metrics_t *m, int64_t stall_ms) {
        if (!m)
                return;
        pthread_mutex_lock(&m->lock);
        m->stall_ms = stall_ms;
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

/* "btime" of /proc/stat: the boot time process start times count from.
 * Read once: it does not change while the system runs. */
static double npsd_metrics_boot_time(void) {
        static double btime = -1;
        char line[256];
        FILE *fp;

        if (btime >= 0)
                return btime;
        if (!(fp = fopen("/proc/stat", "r")))
                return 0;
        while (fgets(line, sizeof(line), fp)) {
                if (!strncmp(line, "btime ", 6)) {
                        btime = strtod(line + 6, NULL);
                        break;
                }
        }
        fclose(fp);
        return btime >= 0 ? btime : 0;
}

/* The process_* metrics from /proc/self, the way Prometheus' client
 * libraries report them, so that standard dashboards work on npsd. */
static void npsd_metrics_read_process(npsd_metrics_process_t *p) {
        char buf[1024];
        struct rlimit rl;
        struct dirent *de;
        size_t n;
        FILE *fp;
        DIR *dir;

        memset(p, 0, sizeof(*p));
        p->open_fds = p->max_fds = -1;
        if (!(fp = fopen("/proc/self/stat", "r")))
                return;
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        if (npsd_metrics_parse_proc_stat(buf, sysconf(_SC_CLK_TCK),
                                         sysconf(_SC_PAGESIZE),
                                         npsd_metrics_boot_time(), p))
                return;
        if ((dir = opendir("/proc/self/fd"))) {
                long long cnt = 0;

                while ((de = readdir(dir)))
                        if (de->d_name[0] != '.')
                                cnt++;
                closedir(dir);
                p->open_fds = cnt - 1; /* not the directory stream's own */
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
                p->max_fds = (long long)rl.rlim_cur;
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
                npsd_metrics_process_t proc;
                size_t len = 0;
                char *body;

                /* /proc is read outside the lock: the loop never waits on
                 * it */
                npsd_metrics_read_process(&proc);
                pthread_mutex_lock(&m->lock);
                m->snap.process = proc;
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
        if (!strcmp(url, "/livez") || !strcmp(url, "/readyz") ||
            !strcmp(url, "/healthz")) {
                char reason[NPSD_METRICS_REASON_MAX + 2];
                int ok;

                pthread_mutex_lock(&m->lock);
                if (!strcmp(url, "/livez"))
                        ok = npsd_metrics_live(&m->snap,
                                               npsd_metrics_mono_ms(),
                                               m->stall_ms, reason,
                                               sizeof(reason) - 1);
                else
                        ok = npsd_metrics_health(&m->snap,
                                                 npsd_metrics_mono_ms(),
                                                 NPSD_METRICS_STALE_MS,
                                                 reason, sizeof(reason) - 1);
                pthread_mutex_unlock(&m->lock);
                if (ok)
                        return npsd_metrics_reply(conn, MHD_HTTP_OK, text,
                                                  "ok\n", 3, 0);
                strcat(reason, "\n");
                return npsd_metrics_reply(conn,
                                          MHD_HTTP_SERVICE_UNAVAILABLE, text,
                                          reason, strlen(reason), 0);
        }
        {
                static const char nf[] = "not found: try /metrics, /livez, "
                                         "/readyz or /healthz\n";

                return npsd_metrics_reply(conn, MHD_HTTP_NOT_FOUND, text,
                                          (char *)nf, sizeof(nf) - 1, 0);
        }
}

static void npsd_metrics_mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        size_t len;

        vsnprintf(buf, sizeof(buf), fmt, ap);
        len = strlen(buf);
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                buf[--len] = '\0';
        npsd_warn("msg=\"http server\" detail=\"%s\"",
                  npsd_log_quote_safe(buf));
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

npsd_metrics_t *npsd_metrics_new(const char *addr,
                                 const npsd_metrics_build_t *build,
                                 int64_t stall_ms, char *errstr,
                                 size_t errstr_size) {
#ifdef NPSD_HAVE_MHD
        npsd_metrics_t *m = calloc(1, sizeof(*m));
        int fd = -1;

        if (!m) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&m->lock, NULL);
        m->snap.build = *build;
        m->snap.started_ms = npsd_metrics_mono_ms();
        m->stall_ms = stall_ms;
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
        (void)build;
        (void)stall_ms;
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

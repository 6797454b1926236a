/*
 * npsd_store_alerts — alerts waiting in the accounts' outboxes: handed to
 * the pipeline to publish, acknowledged (taken out of the outbox) once
 * the broker has them.
 */
#include "npsd_store_int.h"

/* ---- alerts --------------------------------------------------------------- */

int npsd_store_alert_keep(npsd_store_t *store, const char *id,
                          const char *account, const char *payload,
                          size_t len) {
        npsd_store_pending_alert_t *p;

        if (npsd_store_grow((void **)&store->alerts, &store->alert_size,
                            store->alert_cnt + 1, sizeof(*store->alerts)))
                return -1;
        p = &store->alerts[store->alert_cnt];
        p->id = strdup(id);
        p->account = strdup(account);
        p->payload = malloc(len + 1);
        if (!p->id || !p->account || !p->payload) {
                free(p->id);
                free(p->account);
                free(p->payload);
                return -1;
        }
        memcpy(p->payload, payload, len);
        p->payload[len] = '\0';
        p->len = len;
        store->alert_cnt++;
        return 0;
}

size_t npsd_store_outbox_len(const npsd_store_t *store) {
        return store->alert_cnt;
}

int npsd_store_outbox_fetch(npsd_store_t *store, int max,
                            npsd_store_alert_t *alerts, char *errstr,
                            size_t errstr_size) {
        size_t n = store->alert_cnt < (size_t)max ? store->alert_cnt
                                                  : (size_t)max;

        (void)errstr;
        (void)errstr_size;
        for (size_t i = 0; i < n; i++) {
                alerts[i].id = store->alerts[i].id;
                alerts[i].payload = store->alerts[i].payload;
                alerts[i].len = store->alerts[i].len;
        }
        store->alerts_handed = n;
        return (int)n;
}

int npsd_store_outbox_ack(npsd_store_t *store,
                          const npsd_store_alert_t *alerts, size_t cnt,
                          char *errstr, size_t errstr_size) {
        if (!cnt)
                return 0;
        npsd_arena_reset(&store->arena);
        npsd_cluster_begin(store->cl);
        for (size_t i = 0; i < cnt && i < store->alerts_handed; i++) {
                const char *argv[3] = {"HDEL", NULL, alerts[i].id};
                if (!(argv[1] = npsd_store_akey(store,
                                                store->alerts[i].account,
                                                "outbox")) ||
                    npsd_store_cmd(store, 3, argv, NULL) < 0) {
                        snprintf(errstr, errstr_size, "redis: out of memory");
                        return -1;
                }
        }
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        npsd_store_alerts_drop(store, cnt < store->alerts_handed
                                              ? cnt
                                              : store->alerts_handed);
        store->alerts_handed = 0;
        return 0;
}

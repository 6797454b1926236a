/*
 * npsd_enrich — priority, playbook, follow-up deadlines and the classified
 * output message of SPEC §6 (pure, no I/O).
 */
#ifndef NPSD_ENRICH_H
#define NPSD_ENRICH_H

#include <jansson.h>
#include <stdint.h>

#include "npsd/npsd_event.h"
#include "npsd/npsd_themes.h"

typedef enum { NPSD_PRIORITY_P1 = 1, NPSD_PRIORITY_P2, NPSD_PRIORITY_P3 } npsd_priority_t;

typedef struct npsd_enrich_conf_s {
        int p1_renewal_days;    /* detractor renewing within this many days: p1 (90) */
        double p1_arr;          /* detractor with arr >= this: p1 (100000) */
        const char *p1_segment; /* detractor of this segment: p1 ("enterprise") */
        int p2_renewal_days;    /* passive renewing within this many days: p2 (90) */
        int64_t ack_ms;         /* acknowledge within (48 h) */
        int64_t route_ms;       /* route within (7 days) */
        int64_t close_ms;       /* close within (30 days) */
} npsd_enrich_conf_t;

void npsd_enrich_conf_default(npsd_enrich_conf_t *conf);

/* What the priority rules need to know about the account. */
typedef struct npsd_account_facts_s {
        const char *segment;  /* NULL when unknown */
        int has_arr;
        double arr;
        int has_days_to_renewal;
        int days_to_renewal;  /* renewal day - today; negative when past */
} npsd_account_facts_t;

npsd_priority_t npsd_priority_of(npsd_category_t cat,
                                 const npsd_account_facts_t *facts,
                                 const npsd_enrich_conf_t *conf);
const char *npsd_priority_name(npsd_priority_t prio); /* "p1" .. "p3" */
/* detractor: "retention" (p1) or "recovery"; passive "nudge"; promoter "advocacy". */
const char *npsd_playbook_of(npsd_category_t cat, npsd_priority_t prio);

/* Builds the classified response message. `snapshot` is the store's record
 * of this response (see npsd_store.h): {"processed_at": ms, "metrics": {...},
 * "account": {...hash fields as strings...}, "previous": [...]}.
 * theme_bits come from npsd_themes_match(). Returns a malloc'd JSON string
 * the caller must free(), *lenp its length; NULL on allocation failure. */
char *npsd_enrich_build(const npsd_response_t *resp, const json_t *snapshot,
                        const npsd_themes_t *themes, uint64_t theme_bits,
                        const npsd_enrich_conf_t *conf, int64_t now_ms,
                        size_t *lenp);

#endif

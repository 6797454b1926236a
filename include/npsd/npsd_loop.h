/*
 * npsd_loop — closed-loop SLA arithmetic of SPEC §5 (pure, no I/O).
 *
 * A detractor response opens a loop with three deadlines counted from its
 * submitted_at: acknowledge (48 h), route (7 days), close (30 days). A
 * follow-up action meets its own stage and every earlier one (closing
 * early also acknowledges and routes). A deadline that passes unmet, or a
 * stage met after its deadline, is missed: one followup_overdue alert per
 * stage, ever. A loop with a missed stage that is not closed is overdue.
 *
 * These are the rules npsd runs: npsd_step applies them to the loops kept
 * in the account's state record (npsd_state_loop_t), for follow-ups and on
 * timer ticks, and sets the account's timer from npsd_loop_next_timer().
 * The unit tests pin them. Deadlines are plain UTC millisecond
 * arithmetic: a "day" is 86 400 000 ms, no calendar months, no DST.
 */
#ifndef NPSD_LOOP_H
#define NPSD_LOOP_H

#include <stdint.h>

#include "npsd/npsd_alert.h"
#include "npsd/npsd_event.h"

struct npsd_conf_s;

typedef enum {
        NPSD_LOOP_ACKNOWLEDGE = 0,
        NPSD_LOOP_ROUTE,
        NPSD_LOOP_CLOSE,
        NPSD_LOOP__CNT,
} npsd_loop_stage_t;

/* Deadlines after submitted_at (config keys followup.*). */
typedef struct npsd_loop_conf_s {
        int64_t due_ms[NPSD_LOOP__CNT]; /* 48 h, 7 d, 30 d */
} npsd_loop_conf_t;

/* One loop's state. */
typedef struct npsd_loop_s {
        int64_t submitted_ms;
        int64_t due_ms[NPSD_LOOP__CNT];
        int met[NPSD_LOOP__CNT];        /* a follow-up met the stage */
        int64_t met_ms[NPSD_LOOP__CNT]; /* when (the follow-up's `at`) */
        int missed[NPSD_LOOP__CNT];     /* its alert was raised */
        int overdue;                    /* counted in overdue_followups */
        int closed;
} npsd_loop_t;

/* What one step changed: the alerts to raise and the counter moves of
 * the account summary and nps:csm:<owner>. */
typedef struct npsd_loop_effect_s {
        unsigned missed;     /* bit (1 << stage): raise followup_overdue */
        int overdue_delta;   /* overdue_followups: +1, -1 or 0 */
        int open_delta;      /* open_detractors: -1 when closed now */
        int closed;          /* loops_closed +1 */
        int closed_on_time;  /* loops_closed_on_time +1 */
} npsd_loop_effect_t;

void npsd_loop_conf_default(npsd_loop_conf_t *lc);
void npsd_loop_conf_from(npsd_loop_conf_t *lc, const struct npsd_conf_s *conf);

/* The deadline of stage after submitted_ms. */
int64_t npsd_loop_due(int64_t submitted_ms, npsd_loop_stage_t stage,
                      const npsd_loop_conf_t *lc);

/* How many stages, from acknowledge on, an action meets: acknowledged 1,
 * routed 2 (acknowledge, route), closed 3 (all). */
int npsd_loop_stages_met(npsd_followup_action_t action);

/* A stage met at at_ms is late when at_ms is after its deadline; exactly
 * at the deadline is on time. */
int npsd_loop_late(int64_t at_ms, int64_t due_ms);

/* Opens a loop for a detractor submitted at submitted_ms. */
void npsd_loop_open(npsd_loop_t *lp, int64_t submitted_ms,
                    const npsd_loop_conf_t *lc);

/* Applies a follow-up action taken at at_ms. Stages already met stay as
 * they were (the first follow-up of a stage, or a later one, meets it). */
void npsd_loop_apply(npsd_loop_t *lp, npsd_followup_action_t action,
                     int64_t at_ms, npsd_loop_effect_t *eff);

/* The timer: every unmet stage whose deadline lies before now_ms is
 * missed. A stage exactly at its deadline can still be met on time, so it
 * is not missed yet. */
void npsd_loop_tick(npsd_loop_t *lp, int64_t now_ms, npsd_loop_effect_t *eff);

/* When a loop ends: midnight UTC of the day its detractor's day leaves the
 * long window of long_days (then its record goes, closed or not). */
int64_t npsd_loop_end_ms(const npsd_loop_t *lp, int long_days);

/* The loop's next timer: the earliest of its end and the deadlines of the
 * stages neither met nor missed yet. On a tie a stage comes before the
 * end, and an earlier stage before a later one. Returns the instant and
 * sets *stage, NPSD_LOOP__CNT meaning the end. */
int64_t npsd_loop_next_timer(const npsd_loop_t *lp, int long_days,
                             npsd_loop_stage_t *stage);

/* The loop has missed a deadline and is not closed. */
int npsd_loop_is_overdue(const npsd_loop_t *lp);

/* Severity of the followup_overdue alert of a stage: close high, the
 * others medium. */
npsd_severity_t npsd_loop_severity(npsd_loop_stage_t stage);

/* "acknowledge", "route", "close": the stage names of the alert details
 * and of the Redis loop hash fields (<stage>_due_at, <stage>_at, ...). */
const char *npsd_loop_stage_name(npsd_loop_stage_t stage);

#endif

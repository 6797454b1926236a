/*
 * npsd_loop — closed-loop SLA arithmetic (SPEC §5).
 *
 * What npsd runs for every loop, called by npsd_step (follow-ups, timer
 * ticks, the account's next timer). Pure and allocation free.
 */
#include "npsd/npsd_loop.h"

#include <string.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_time.h"

void npsd_loop_conf_default(npsd_loop_conf_t *lc) {
        lc->due_ms[NPSD_LOOP_ACKNOWLEDGE] = 48 * 3600000LL;
        lc->due_ms[NPSD_LOOP_ROUTE] = 7 * NPSD_MS_PER_DAY;
        lc->due_ms[NPSD_LOOP_CLOSE] = 30 * NPSD_MS_PER_DAY;
}

void npsd_loop_conf_from(npsd_loop_conf_t *lc,
                         const struct npsd_conf_s *conf) {
        lc->due_ms[NPSD_LOOP_ACKNOWLEDGE] =
                (int64_t)conf->followup_ack_hours * 3600000LL;
        lc->due_ms[NPSD_LOOP_ROUTE] =
                (int64_t)conf->followup_route_days * NPSD_MS_PER_DAY;
        lc->due_ms[NPSD_LOOP_CLOSE] =
                (int64_t)conf->followup_close_days * NPSD_MS_PER_DAY;
}

int64_t npsd_loop_due(int64_t submitted_ms, npsd_loop_stage_t stage,
                      const npsd_loop_conf_t *lc) {
        return submitted_ms + lc->due_ms[stage];
}

int npsd_loop_stages_met(npsd_followup_action_t action) {
        switch (action) {
        case NPSD_FOLLOWUP_ACKNOWLEDGED:
                return 1;
        case NPSD_FOLLOWUP_ROUTED:
                return 2;
        case NPSD_FOLLOWUP_CLOSED:
                return 3;
        }
        return 0;
}

int npsd_loop_late(int64_t at_ms, int64_t due_ms) {
        return at_ms > due_ms;
}

void npsd_loop_open(npsd_loop_t *lp, int64_t submitted_ms,
                    const npsd_loop_conf_t *lc) {
        memset(lp, 0, sizeof(*lp));
        lp->submitted_ms = submitted_ms;
        for (int s = 0; s < NPSD_LOOP__CNT; s++)
                lp->due_ms[s] = npsd_loop_due(submitted_ms,
                                              (npsd_loop_stage_t)s, lc);
}

/* A stage becomes missed once: its alert is raised and, unless the loop
 * is closed already, the loop turns overdue (counted once per loop, not
 * per stage: the counter is of overdue detractors). */
static void npsd_loop_miss(npsd_loop_t *lp, int s, npsd_loop_effect_t *eff) {
        if (lp->missed[s])
                return;
        lp->missed[s] = 1;
        eff->missed |= 1u << s;
        if (!lp->overdue && !lp->closed) {
                lp->overdue = 1;
                eff->overdue_delta++;
        }
}

void npsd_loop_apply(npsd_loop_t *lp, npsd_followup_action_t action,
                     int64_t at_ms, npsd_loop_effect_t *eff) {
        int level = npsd_loop_stages_met(action);

        memset(eff, 0, sizeof(*eff));
        for (int s = 0; s < level; s++) {
                if (lp->met[s])
                        continue;
                lp->met[s] = 1;
                lp->met_ms[s] = at_ms;
                if (npsd_loop_late(at_ms, lp->due_ms[s])) {
                        npsd_loop_miss(lp, s, eff);
                } else if (lp->missed[s]) {
                        /* met on time, but the timer saw it missing first
                         * (the follow-up arrived late): the alert stands,
                         * the overdue state goes once no stage is missed */
                        int still = 0;
                        lp->missed[s] = 0;
                        for (int o = 0; o < NPSD_LOOP__CNT; o++)
                                still |= lp->missed[o];
                        if (!still && lp->overdue && !lp->closed) {
                                lp->overdue = 0;
                                eff->overdue_delta--;
                        }
                }
        }
        if (level == NPSD_LOOP__CNT && !lp->closed) {
                lp->closed = 1;
                eff->open_delta--;
                if (lp->overdue)
                        eff->overdue_delta--; /* no longer an open overdue */
                eff->closed = 1;
                eff->closed_on_time =
                        !npsd_loop_late(at_ms, lp->due_ms[NPSD_LOOP_CLOSE]);
        }
}

void npsd_loop_tick(npsd_loop_t *lp, int64_t now_ms,
                    npsd_loop_effect_t *eff) {
        memset(eff, 0, sizeof(*eff));
        for (int s = 0; s < NPSD_LOOP__CNT; s++)
                if (!lp->met[s] && npsd_loop_late(now_ms, lp->due_ms[s]))
                        npsd_loop_miss(lp, s, eff);
}

int64_t npsd_loop_end_ms(const npsd_loop_t *lp, int long_days) {
        return ((int64_t)npsd_time_day(lp->submitted_ms) + long_days) *
               NPSD_MS_PER_DAY;
}

/* One timer per loop (not one per deadline) keeps the schedule small; the
 * stages are scanned from the last to the first so that on a tie the
 * earlier one is the one scheduled. */
int64_t npsd_loop_next_timer(const npsd_loop_t *lp, int long_days,
                             npsd_loop_stage_t *stage) {
        int64_t best = npsd_loop_end_ms(lp, long_days);

        *stage = NPSD_LOOP__CNT;
        for (int s = NPSD_LOOP__CNT - 1; s >= 0; s--)
                if (!lp->met[s] && !lp->missed[s] && lp->due_ms[s] <= best) {
                        best = lp->due_ms[s];
                        *stage = (npsd_loop_stage_t)s;
                }
        return best;
}

int npsd_loop_is_overdue(const npsd_loop_t *lp) {
        return lp->overdue && !lp->closed;
}

npsd_severity_t npsd_loop_severity(npsd_loop_stage_t stage) {
        return stage == NPSD_LOOP_CLOSE ? NPSD_SEVERITY_HIGH
                                        : NPSD_SEVERITY_MEDIUM;
}

const char *npsd_loop_stage_name(npsd_loop_stage_t stage) {
        static const char *names[NPSD_LOOP__CNT] = {"acknowledge", "route",
                                                    "close"};
        if ((int)stage < 0 || stage >= NPSD_LOOP__CNT)
                return NULL;
        return names[stage];
}

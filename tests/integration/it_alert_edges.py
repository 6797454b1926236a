"""`nps_drop` and `usage_drop` are edge-triggered (SPEC §6): raised on the
transition, once, re-armed when the condition clears.

The clock is pinned at T. acct-d1 has 10 responses in the previous 90-day
period (5 promoters, 5 passives: NPS 50.0). Its current responses arrive
in steps; each step is produced, committed by npsd and its alerts drained
from the outbox before the next one, so every step is its own script call:

  step 1  3 P, 6 Pa (n = 9):   NPS 33.3, trend -16.7, but n < 10: nothing
  step 2  + 1 Pa (n = 10):     NPS 30.0, trend -20.0: nps_drop #1, high
  step 3  + 1 Pa (n = 11):     NPS 27.3, trend -22.7: still on, nothing
  step 4  + 7 P  (n = 18):     NPS 55.6, trend +5.6: cleared (re-armed)
  step 5  + 1 Pa, 1 D (n = 20): NPS 45.0, trend -5.0: nps_drop #2, medium

acct-d2 has 9 responses in the previous period (promoters: NPS 100.0) and,
in step 1, 10 current detractors (trend -200.0): nothing, the previous
period has fewer than 10; in step 2 a 10th previous-period response
arrives: nps_drop.

Usage (active users of the last 7 days against the 7 days before):
  acct-u1  step 1: 3 now, 4 before (fewer than 5 before): nothing
           step 2: a 5th user before: 3 < 0.7 x 5 = 3.5: usage_drop
           step 3: a 6th user before: still on, nothing
  acct-u2  step 1: 7 now; step 2: 10 before: 7 < 7.0 is false: nothing

Side effect computed by hand: acct-d1's health (nps component only until
its detractor) moves from yellow to green during step 4, one health_band
alert. After every step the whole alert set (per type and account, and the
total) is compared with the expectation."""
import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from harness import Stack, main, read_topic, wait_for, wait_processed, outbox_len

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
TOPICS = ("accounts", "nps.responses", "product.usage")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Seq:
    def __init__(self):
        self.n = 0

    def resp(self, score, at, acct="acct-d1"):
        self.n += 1
        return (acct, json.dumps(
            {"event_id": "%s-%d" % (acct, self.n), "account_id": acct,
             "user_id": "user-%d" % self.n, "score": score,
             "submitted_at": iso(at)}))

    def use(self, acct, user, days_ago):
        self.n += 1
        return (acct, json.dumps(
            {"event_id": "use-%d" % self.n, "account_id": acct,
             "user_id": user, "type": "session",
             "occurred_at": iso(T - timedelta(days=days_ago, hours=2))}))


def alerts(st):
    return [json.loads(m.value()) for m in read_topic(st, "nps.alerts")]


def run_step(st, q, responses=(), usage=()):
    """Produces one step and waits for positive evidence that npsd handled
    it: the group committed the end of every input topic (so the state
    change, and any alert it raised into the outbox, is in Redis) and the
    outbox is empty (so every alert raised is on nps.alerts)."""
    if responses:
        st.produce("nps.responses", list(responses))
    if usage:
        st.produce("product.usage", list(usage))
    wait_processed(st, "npsd", TOPICS, timeout=60)
    wait_for(lambda: outbox_len(st.r) == 0, 30, "outbox drained")
    got = alerts(st)
    return got, Counter((a["type"], a["account_id"]) for a in got)


def flags(st, acct):
    return st.r.hgetall("nps:{%s}:alerts" % acct)


def test(build):
    st = Stack(build, name="alert-edges")
    npsd = None
    q = Seq()
    try:
        npsd = st.npsd(now=iso(T))
        cur = T - timedelta(hours=3)
        prev = T - timedelta(days=100)   # day 100 before today: previous
        # ---- step 1
        rs = [q.resp(10, prev) for _ in range(5)] + \
             [q.resp(8, prev) for _ in range(5)] + \
             [q.resp(10, cur) for _ in range(3)] + \
             [q.resp(7, cur) for _ in range(6)] + \
             [q.resp(10, prev, "acct-d2") for _ in range(9)] + \
             [q.resp(0, cur, "acct-d2") for _ in range(10)]
        us = [q.use("acct-u1", "c%d" % i, 1) for i in range(3)] + \
             [q.use("acct-u1", "p%d" % i, 8 + i) for i in range(4)] + \
             [q.use("acct-u2", "c%d" % i, 2) for i in range(7)]
        got, by = run_step(st, q, rs, us)
        s = st.r.hgetall("nps:{acct-d1}:summary")
        assert (s["responses_90d"], s["nps_90d"], s["nps_prev_90d"],
                s["trend_90d"]) == ("9", "33.3", "50", "-16.7"), s
        s2 = st.r.hgetall("nps:{acct-d2}:summary")
        assert (s2["responses_90d"], s2["trend_90d"]) == ("10", "-200"), s2
        assert by == Counter(), "step 1: %s" % got
        assert flags(st, "acct-d2").get("nps_drop") == "0"
        # the rules ran (state written) and found nothing
        assert flags(st, "acct-d1").get("nps_drop") == "0", flags(st, "acct-d1")
        assert flags(st, "acct-u1").get("usage_drop") == "0"
        u1 = st.r.hgetall("nps:{acct-u1}:summary")
        assert (u1["active_users_7d"], u1["active_users_prev_7d"]) == \
            ("3", "4"), u1

        # ---- step 2: the 10th current response, the 5th user before
        # acct-u2's 10 users of the week before arrive now (7 < 7.0 false)
        tenth = q.resp(7, cur)
        prev10 = q.resp(9, prev - timedelta(days=20), "acct-d2")
        got, by = run_step(
            st, q, [tenth, prev10],
            [q.use("acct-u1", "p4", 12)] +
            [q.use("acct-u2", "p%d" % i, 7 + i % 7) for i in range(10)])
        want = Counter({("nps_drop", "acct-d1"): 1,
                        ("nps_drop", "acct-d2"): 1,
                        ("usage_drop", "acct-u1"): 1})
        assert by == want, "step 2: %s" % by
        drop = [a for a in got if a["type"] == "nps_drop" and
                a["account_id"] == "acct-d1"][0]
        assert drop["severity"] == "high", drop        # -20 <= 2 x -4
        assert drop["details"] == {"trend": -20, "nps": 30, "nps_prev": 50,
                                   "responses": 10, "responses_prev": 10,
                                   "window": "90d"}, drop
        assert drop["alert_id"].startswith("nps_drop:acct-d1:1:"), drop
        assert drop["event_id"] == json.loads(tenth[1])["event_id"], drop
        d2 = [a for a in got if a["type"] == "nps_drop" and
              a["account_id"] == "acct-d2"][0]
        assert d2["details"] == {"trend": -200, "nps": -100, "nps_prev": 100,
                                 "responses": 10, "responses_prev": 10,
                                 "window": "90d"}, d2
        assert d2["event_id"] == json.loads(prev10[1])["event_id"], d2
        ud = [a for a in got if a["type"] == "usage_drop"][0]
        assert ud["details"] == {"active_users_7d": 3,
                                 "active_users_prev_7d": 5}, ud
        assert ud["severity"] == "medium", ud
        u2 = st.r.hgetall("nps:{acct-u2}:summary")
        assert (u2["active_users_7d"], u2["active_users_prev_7d"]) == \
            ("7", "10"), u2
        assert flags(st, "acct-u2").get("usage_drop") == "0"

        # ---- step 3: both conditions still hold: nothing new
        got, by = run_step(st, q, [q.resp(8, cur)],
                           [q.use("acct-u1", "p5", 9)])
        s = st.r.hgetall("nps:{acct-d1}:summary")
        assert (s["responses_90d"], s["trend_90d"]) == ("11", "-22.7"), s
        u1 = st.r.hgetall("nps:{acct-u1}:summary")
        assert u1["active_users_prev_7d"] == "6", u1
        assert by == want, "step 3: %s" % by
        assert flags(st, "acct-d1").get("nps_drop") == "1"
        assert flags(st, "acct-u1").get("usage_drop") == "1"

        # ---- step 4: 7 promoters: trend +5.6, the condition clears
        got, by = run_step(st, q, [q.resp(9, cur) for _ in range(7)])
        s = st.r.hgetall("nps:{acct-d1}:summary")
        assert (s["responses_90d"], s["nps_90d"], s["trend_90d"]) == \
            ("18", "55.6", "5.6"), s
        assert flags(st, "acct-d1").get("nps_drop") == "0", \
            "nps_drop re-armed: %s" % flags(st, "acct-d1")
        # health: (55.6 + 100) / 2 = 77.8 -> 78, green (was 64, yellow)
        want[("health_band", "acct-d1")] = 1
        assert by == want, "step 4: %s" % by
        hb = [a for a in got if a["type"] == "health_band"][0]
        assert hb["details"] == {"from": "yellow", "to": "green",
                                 "health": 78}, hb

        # ---- step 5: a passive and a detractor: NPS 45.0, trend -5.0
        got, by = run_step(st, q, [q.resp(8, cur), q.resp(4, cur)])
        s = st.r.hgetall("nps:{acct-d1}:summary")
        assert (s["responses_90d"], s["nps_90d"], s["trend_90d"]) == \
            ("20", "45", "-5"), s
        want[("nps_drop", "acct-d1")] = 2
        assert by == want, "step 5: %s" % by
        drops = sorted((a for a in got if a["type"] == "nps_drop" and
                        a["account_id"] == "acct-d1"),
                       key=lambda a: a["alert_id"])
        assert drops[1]["alert_id"].startswith("nps_drop:acct-d1:2:"), drops
        assert drops[1]["severity"] == "medium", drops[1]   # -8 < -5 <= -4
        assert drops[1]["details"] == {"trend": -5, "nps": 45, "nps_prev": 50,
                                       "responses": 20, "responses_prev": 10,
                                       "window": "90d"}, drops[1]
        assert sum(by.values()) == 5, by
        assert len({a["alert_id"] for a in got}) == len(got), got
        st.stop_clean(npsd)
        npsd = None
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

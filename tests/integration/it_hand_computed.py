"""Hand-computed NPS, interval, role gap and health through the real npsd
(SPEC §4, §5, §6, §7).

The expected numbers below are literals worked out by hand from the SPEC's
formulas (the working is in the comments), not computed by code: a bug
shared by npsd and a reference implementation cannot hide here. With a
pinned clock T every response lies in both windows (30d and 90d):

  acct-h1  50 promoters, 30 passives, 20 detractors (n = 100), no context
  acct-h2  n = 5: 3 promoters (2 of them transactional), 1 passive,
           1 detractor: small-n interval, low_confidence, a clamped ci_high
  acct-h3  end users 3 promoters, decision makers 2 promoters + 1
           detractor: role gap 66.7, flagged
  acct-h4  end users 2 promoters, executives 2 detractors: gap 200, not
           flagged (fewer than 3 responses per side)
  acct-h5  stated account (smb, 10 seats) with usage, tickets, errors and a
           detractor: every health component and the weighted total

Checked in nps:{A}:w:30d / w:90d, nps:{A}:summary and in the metrics of
each account's last classified message."""
import json
from datetime import datetime, timedelta, timezone

from harness import (Stack, engine_settled, main, read_topic, wait_for,
                     wait_processed)

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
TOPICS = ("accounts", "nps.responses", "product.usage")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def resp(eid, acct, score, minutes_ago, role=None, survey_type=None):
    r = {"event_id": eid, "account_id": acct, "user_id": "u-" + eid,
         "score": score, "submitted_at": iso(T - timedelta(minutes=minutes_ago))}
    if role:
        r["role"] = role
    if survey_type:
        r["survey_type"] = survey_type
    return r


def use(eid, user, days_ago, typ="session"):
    return {"event_id": eid, "account_id": "acct-h5", "user_id": user,
            "occurred_at": iso(T - timedelta(days=days_ago, hours=1)),
            "type": typ}


# ---- acct-h1: n = 100, P = 50, Pa = 30, D = 20, no role, relationship
#   NPS = 100 * (50 - 20) / 100 = 30.0
#   p = 0.5, d = 0.2: p + d - (p - d)^2 = 0.7 - 0.09 = 0.61
#   moe = 1.96 * 100 * sqrt(0.61 / 100) = 196 * 0.078102 = 15.308 -> 15.3
#   adjusted Wald: n' = 103, p' = 50.75 / 103 = 0.492718,
#   d' = 20.75 / 103 = 0.201456; p' - d' = 0.291262, p' + d' = 0.694175
#   half = 1.96 * sqrt((0.694175 - 0.084834) / 103)
#        = 1.96 * sqrt(0.0059159) = 1.96 * 0.076915 = 0.150753
#   ci_low = 100 * (0.291262 - 0.150753) = 14.05 -> 14.1
#   ci_high = 100 * (0.291262 + 0.150753) = 44.20 -> 44.2
#   low_confidence = 0 (n = 100 >= 50)
H1 = {"responses": 100, "promoters": 50, "passives": 30, "detractors": 20,
      "nps": 30.0, "moe": 15.3, "ci_low": 14.1, "ci_high": 44.2,
      "low_confidence": 0}

# ---- acct-h2: n = 5, P = 3, Pa = 1, D = 1
#   NPS = 100 * 2 / 5 = 40.0
#   p = 0.6, d = 0.2: 0.8 - 0.16 = 0.64; moe = 196 * sqrt(0.128)
#       = 196 * 0.357771 = 70.12 -> 70.1
#   n' = 8, p' = 3.75 / 8 = 0.46875, d' = 1.75 / 8 = 0.21875
#   p' - d' = 0.25, p' + d' = 0.6875; (0.6875 - 0.0625) / 8 = 0.078125
#   half = 1.96 * 0.279508 = 0.547836
#   ci_low = 100 * (0.25 - 0.547836) = -29.78 -> -29.8
#   ci_high = 100 * (0.25 + 0.547836) = 79.78 -> 79.8; low_confidence = 1
H2 = {"responses": 5, "promoters": 3, "passives": 1, "detractors": 1,
      "nps": 40.0, "moe": 70.1, "ci_low": -29.8, "ci_high": 79.8,
      "low_confidence": 1}
#   transactional slice: the 2 promoters. NPS 100.0, p = 1, d = 0:
#   moe = 196 * sqrt((1 - 1) / 2) = 0.0
#   n' = 5, p' = 2.75 / 5 = 0.55, d' = 0.75 / 5 = 0.15; p' - d' = 0.4,
#   p' + d' = 0.7; (0.7 - 0.16) / 5 = 0.108; half = 1.96 * 0.328634
#   = 0.644122; ci_low = 100 * (0.4 - 0.644122) = -24.41 -> -24.4;
#   ci_high = 100 * 1.044122 = 104.4 -> clamped to 100.0
H2_TRANS = {"responses": 2, "promoters": 2, "passives": 0, "detractors": 0,
            "nps": 100.0, "moe": 0.0, "ci_low": -24.4, "ci_high": 100.0,
            "low_confidence": 1}
#   relationship slice: 1 P, 1 Pa, 1 D. NPS 0.0; p = d = 1/3:
#   moe = 196 * sqrt((2/3 - 0) / 3) = 196 * 0.471405 = 92.40 -> 92.4
#   n' = 6, p' = d' = 1.75 / 6 = 0.291667; (0.583333 - 0) / 6 = 0.097222
#   half = 1.96 * 0.311805 = 0.611138 -> ci -61.1 .. 61.1
H2_REL = {"responses": 3, "promoters": 1, "passives": 1, "detractors": 1,
          "nps": 0.0, "moe": 92.4, "ci_low": -61.1, "ci_high": 61.1,
          "low_confidence": 1}


def plan():
    out = []
    # acct-h1: categories interleaved, 100 distinct users, all within the
    # last 100 minutes (no follow-up deadline of its 20 detractors passes)
    cats = [10] * 50 + [7] * 30 + [3] * 20
    order = sorted(range(100), key=lambda i: (i * 37) % 100)
    for k, i in enumerate(order):
        out.append(resp("h1-%03d" % k, "acct-h1", cats[i], 100 - k))
    # acct-h2
    out += [resp("h2-1", "acct-h2", 9, 50, survey_type="transactional"),
            resp("h2-2", "acct-h2", 10, 40),
            resp("h2-3", "acct-h2", 8, 30, survey_type="relationship"),
            resp("h2-4", "acct-h2", 0, 20),
            resp("h2-5", "acct-h2", 10, 10, survey_type="transactional")]
    # acct-h3: end_user 3 P -> 100.0; decision_maker 2 P, 1 D -> 33.3
    out += [resp("h3-%d" % i, "acct-h3", s, 60 - i, role=r) for i, (s, r) in
            enumerate([(10, "end_user"), (9, "decision_maker"),
                       (9, "user"), (2, "buyer"), (10, "end_user"),
                       (10, "decision_maker")])]
    # acct-h4: end_user 2 P -> 100.0; decision_maker 2 D -> -100.0
    out += [resp("h4-%d" % i, "acct-h4", s, 60 - i, role=r) for i, (s, r) in
            enumerate([(10, "end_user"), (0, "executive"), (9, "end_user"),
                       (1, "executive")])]
    # acct-h5: relationship 1 P + 1 D (NPS 0.0), transactional 1 P
    out += [resp("h5-1", "acct-h5", 10, 90),
            resp("h5-2", "acct-h5", 2, 60, survey_type="relationship"),
            resp("h5-3", "acct-h5", 9, 30, survey_type="transactional")]
    return out


def usage():
    # 7d (days 0-6): a, b, c; the 7 days before (7-13): a, b, c, d
    # 30d users: a, b, c, d; errors in 7d: 3 (one more 10 days ago does not
    # count); tickets opened 2, closed 1 -> 1 open
    return [use("h5-u1", "a", 1), use("h5-u2", "b", 1), use("h5-u3", "c", 2),
            use("h5-u4", "a", 8), use("h5-u5", "b", 9), use("h5-u6", "c", 9),
            use("h5-u7", "d", 12),
            use("h5-u8", "a", 2, "error"), use("h5-u9", "a", 2, "error"),
            use("h5-u10", "b", 3, "error"), use("h5-u11", "d", 10, "error"),
            use("h5-u12", "b", 3, "ticket_opened"),
            use("h5-u13", "c", 11, "ticket_opened"),
            use("h5-u14", "c", 2, "ticket_closed")]


def check_hash(what, h, exp, prefix=""):
    for k, v in exp.items():
        got = h.get(prefix + k)
        assert got is not None, "%s: %s%s missing (%s)" % (what, prefix, k, h)
        assert float(got) == float(v), "%s %s%s: redis %s, expected %s" % (
            what, prefix, k, got, v)


def absent(what, h, fields):
    stray = [f for f in fields if f in h]
    assert not stray, "%s: fields without data present: %s" % (what, stray)


SLICE_FIELDS = ("responses", "promoters", "passives", "detractors", "nps",
                "moe", "ci_low", "ci_high", "low_confidence")


def no_slice(what, h, sl):
    absent(what, h, ["%s.%s" % (sl, f) for f in SLICE_FIELDS])


def test(build):
    st = Stack(build, name="hand")
    npsd = None
    try:
        st.produce("accounts", [("acct-h5", json.dumps(
            {"account_id": "acct-h5", "name": "Hand Five", "segment": "smb",
             "seats": 10, "updated_at": iso(T - timedelta(days=3))}))])
        st.produce("product.usage", [(e["account_id"], json.dumps(e))
                                     for e in usage()])
        npsd = st.npsd(now=iso(T))
        # usage first, so that the classified messages' health (usage as
        # of before their batch) includes it
        wait_processed(st, "npsd", TOPICS, timeout=60)
        rs = plan()
        st.produce("nps.responses", [(r["account_id"], json.dumps(r))
                                     for r in rs])
        wait_processed(st, "npsd", TOPICS, timeout=60)

        r = st.r
        # ---- acct-h1: n = 100
        for w in ("30d", "90d"):
            h = r.hgetall("nps:{acct-h1}:w:%s" % w)
            check_hash("acct-h1 " + w, h, H1)
            check_hash("acct-h1 " + w, h, H1, "relationship.")
            check_hash("acct-h1 " + w, h, H1, "other.")
            for sl in ("transactional", "end_user", "admin", "decision_maker"):
                no_slice("acct-h1 " + w, h, sl)
        s1 = r.hgetall("nps:{acct-h1}:summary")
        # health: nps component (30.0 + 100) / 2 = 65.0 (weight 40);
        # follow-up 100 - 34 x 0 overdue = 100.0 (weight 15, 20 detractors
        # in 90d, none overdue); no usage, no seats: adoption, engagement
        # and support absent, the weights rescale:
        # (40 x 65 + 15 x 100) / 55 = 4100 / 55 = 74.55 -> 75, green
        # benchmark: no segment -> all 38; delta 30.0 - 38 = -8.0
        check_hash("acct-h1 summary", s1, {
            "nps_30d": 30.0, "nps_90d": 30.0, "responses_90d": 100,
            "moe_90d": 15.3, "benchmark": 38, "benchmark_delta": -8.0,
            "role_gap_flag": 0, "health": 75, "health.nps": 65.0,
            "health.followup": 100.0, "open_detractors": 20})
        assert s1["health_band"] == "green", s1
        # counters appear with their first change: none overdue yet
        assert s1.get("overdue_followups", "0") == "0", s1
        absent("acct-h1 summary", s1, [
            "trend_90d", "nps_prev_90d", "role_gap_90d", "health.adoption",
            "health.engagement", "health.support"])

        # ---- acct-h2: small n
        for w in ("30d", "90d"):
            h = r.hgetall("nps:{acct-h2}:w:%s" % w)
            check_hash("acct-h2 " + w, h, H2)
            check_hash("acct-h2 " + w, h, H2, "other.")
            check_hash("acct-h2 " + w, h, H2_TRANS, "transactional.")
            check_hash("acct-h2 " + w, h, H2_REL, "relationship.")
        s2 = r.hgetall("nps:{acct-h2}:summary")
        # health: nps component from the relationship slice (0.0):
        # (0 + 100) / 2 = 50.0; follow-up 100.0;
        # (40 x 50 + 15 x 100) / 55 = 3500 / 55 = 63.64 -> 64, yellow
        check_hash("acct-h2 summary", s2, {
            "nps_90d": 40.0, "moe_90d": 70.1, "responses_90d": 5,
            "benchmark_delta": 2.0, "health": 64, "health.nps": 50.0,
            "health.followup": 100.0})
        assert s2["health_band"] == "yellow", s2

        # ---- role gap: 100.0 - 33.3 = 66.7 > 15, 3 responses per side
        h3 = r.hgetall("nps:{acct-h3}:w:90d")
        check_hash("acct-h3 90d", h3, {"end_user.responses": 3,
                                       "end_user.nps": 100.0,
                                       "decision_maker.responses": 3,
                                       "decision_maker.nps": 33.3})
        s3 = r.hgetall("nps:{acct-h3}:summary")
        check_hash("acct-h3 summary", s3, {"role_gap_90d": 66.7,
                                           "role_gap_flag": 1})
        # 100.0 - (-100.0) = 200.0, but only 2 responses per side: no flag
        s4 = r.hgetall("nps:{acct-h4}:summary")
        check_hash("acct-h4 summary", s4, {"role_gap_90d": 200.0,
                                           "role_gap_flag": 0})

        # ---- acct-h5: a stated account's health
        s5 = r.hgetall("nps:{acct-h5}:summary")
        # usage: 7d {a,b,c} = 3, before {a,b,c,d} = 4, 30d 4, errors 7d 3,
        # open tickets 2 - 1 = 1
        # nps        (0.0 + 100) / 2          = 50.0  x 40 = 2000
        #            (relationship NPS: 1 P, 1 D; all responses would
        #            give 33.3)
        # adoption   100 x 4 / 10 seats       = 40.0  x 20 =  800
        # engagement 100 x 3 / 4              = 75.0  x 15 = 1125
        # support    100 - 15 x 1 - 2 x 3     = 79.0  x 10 =  790
        # follow-up  100 - 34 x 0             = 100.0 x 15 = 1500
        # health = 6215 / 100 = 62.15 -> 62, yellow (40 <= 62 < 70)
        check_hash("acct-h5 summary", s5, {
            "nps_90d": 33.3, "responses_90d": 3, "active_users_7d": 3,
            "active_users_30d": 4, "errors_7d": 3, "open_tickets": 1,
            "health.nps": 50.0, "health.adoption": 40.0,
            "health.engagement": 75.0, "health.support": 79.0,
            "health.followup": 100.0, "health": 62,
            "benchmark": 42, "benchmark_delta": -8.7})
        assert s5["health_band"] == "yellow", s5
        # the ranks follow the summaries within about a second
        wait_for(lambda: engine_settled(r), 30, "global views settled")
        assert r.zscore("nps:rank:health", "acct-h5") == 62

        # ---- the same figures in each account's last classified message
        last = {}
        for t in ("nps.detractors", "nps.passives", "nps.promoters"):
            for m in read_topic(st, t):
                v = json.loads(m.value())
                cur = last.get(v["account_id"])
                if cur is None or v["metrics"]["responses_90d"] > \
                        cur["metrics"]["responses_90d"]:
                    last[v["account_id"]] = v
        want = {
            "acct-h1": {"nps_30d": 30.0, "nps_90d": 30.0, "responses_90d": 100,
                        "moe_90d": 15.3, "benchmark_delta": -8.0,
                        "health": 75, "health_band": "green",
                        "role_gap_flag": 0},
            "acct-h2": {"nps_90d": 40.0, "responses_90d": 5, "moe_90d": 70.1,
                        "health": 64, "health_band": "yellow"},
            "acct-h3": {"role_gap_90d": 66.7, "role_gap_flag": 1},
            "acct-h4": {"role_gap_90d": 200.0, "role_gap_flag": 0},
            "acct-h5": {"nps_90d": 33.3, "responses_90d": 3, "health": 62,
                        "health_band": "yellow", "benchmark_delta": -8.7},
        }
        for acct, exp in want.items():
            m = last[acct]["metrics"]
            for k, v in exp.items():
                assert m.get(k) == v, "%s message metrics %s: %s, expected %s" \
                    % (acct, k, m.get(k), v)
            assert "trend_90d" not in m, (acct, m)
        st.stop_clean(npsd)
        npsd = None
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

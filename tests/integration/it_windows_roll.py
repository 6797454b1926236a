"""Windows roll by themselves (SPEC §3 "Windows", §7).

Responses dated at both sides of every window boundary are processed with a
pinned clock T. npsd is then restarted with the clock at T + 1 day (half an
hour past midnight: a response must leave its window within an hour of its
day leaving it) and at T + 11 days, and NO new event is sent: the roll timer
alone must move responses out of 30d / 90d / the previous period exactly on
the right day, keep summaries, ranks, cohorts and themes in step, and drop
nps_90d (absent, never 0) and the rank of an account whose 90d window
empties.
"""
import json
from datetime import datetime, timedelta, timezone

from harness import (Stack, main, nps_fields, produce_tracked, round1,
                     wait_for, wait_processed, window_problems)

T = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
DAY0 = int(T.timestamp()) // 86400
STAGES = [  # (clock, days after T's date)
    (T, 0),
    (datetime(2026, 11, 21, 0, 30, tzinfo=timezone.utc), 1),
    (T + timedelta(days=11), 11),
]

# account -> [(days before T's date, score, role, comment)]
PLAN = {
    "acct-a": [(0, 10, "end_user", None), (20, 3, "admin", "outage again"),
               (28, 9, "decision_maker", None),
               (29, 2, "end_user", "far too expensive"),
               (30, 8, "admin", None), (88, 1, "buyer", "pricing is absurd"),
               (89, 10, None, None), (95, 6, "end_user", None),
               (170, 9, "end_user", None), (179, 0, "admin", None),
               (180, 10, "admin", None)],
    "acct-b": [(89, 10, "end_user", None)],        # 90d empties at T+1
    "acct-c": [(170, 2, "admin", None)],           # only ever in prev
    "acct-d": [(5, 9, "end_user", None), (40, 4, "user", None),
               (60, 7, "executive", None)],
}
SEGMENT = {"acct-a": "enterprise", "acct-b": "smb", "acct-c": "mid_market"}
BENCH = {"enterprise": 32, "smb": 42, "mid_market": 35}


def fmt(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def responses():
    out = []
    for acct, rows in PLAN.items():
        for i, (ago, score, role, comment) in enumerate(rows):
            r = {"event_id": "roll-%s-%d" % (acct, i), "account_id": acct,
                 "user_id": "u-%s-%d" % (acct, i), "score": score,
                 "submitted_at": fmt(T - timedelta(days=ago, hours=1))}
            if role:
                r["role"] = role
            if comment:
                r["comment"] = comment
            r["_day"] = DAY0 - ago
            out.append(r)
    return out


def expect(rs, today):
    w30 = [r for r in rs if today - 30 < r["_day"] <= today]
    w90 = [r for r in rs if today - 90 < r["_day"] <= today]
    prev = [r for r in rs if today - 180 < r["_day"] <= today - 90]
    return w30, w90, prev


def pde(rs):
    from harness import category
    c = [0, 0, 0]
    for r in rs:
        c[{"promoter": 0, "passive": 1, "detractor": 2}[category(r["score"])]] += 1
    return c


def stage_problems(st, rs, today, now_str):
    """Every difference between Redis and the expectation at day today."""
    probs = []
    by = {}
    for r in rs:
        by.setdefault(r["account_id"], []).append(r)
    for acct, ars in by.items():
        w30, w90, prev = expect(ars, today)
        for w, inw in ((30, w30), (90, w90)):
            key = "nps:{%s}:w:%dd" % (acct, w)
            probs += ["%s %s" % (key, p)
                      for p in window_problems(st.r.hgetall(key), inw)]
        s = st.r.hgetall("nps:{%s}:summary" % acct)
        f30 = nps_fields(*pde(w30))
        f90 = nps_fields(*pde(w90))
        fp = nps_fields(*pde(prev))
        exp = {
            "nps_30d": f30 and f30["nps"], "nps_90d": f90 and f90["nps"],
            "moe_90d": f90 and f90["moe"], "responses_90d": len(w90),
            "nps_prev_90d": fp and fp["nps"],
            "trend_90d": (f90 and fp) and round1(f90["nps"] - fp["nps"]),
        }
        bench = BENCH.get(SEGMENT.get(acct), 38)
        exp["benchmark"] = bench
        exp["benchmark_delta"] = f90 and round1(f90["nps"] - bench)
        for k, v in exp.items():
            got = s.get(k)
            if v is None or v is False:
                if got is not None:
                    probs.append("%s summary %s=%s, expected absent" % (
                        acct, k, got))
            elif got is None or float(got) != float(v):
                probs.append("%s summary %s=%s, expected %s" % (acct, k, got, v))
        # an account whose windows changed was rewritten at this clock
        if acct == "acct-a" and s.get("updated_at") != now_str:
            probs.append("%s summary updated_at=%s, expected %s" % (
                acct, s.get("updated_at"), now_str))
        rank = st.r.zscore("nps:rank:nps_90d", acct)
        if (rank is None) != (f90 is None) or (f90 and rank != f90["nps"]):
            probs.append("%s rank nps_90d=%s, expected %s" % (
                acct, rank, f90 and f90["nps"]))
    for w in (30, 90):
        inw = [r for r in rs if today - w < r["_day"] <= today]
        key = "nps:cohort:all:all:w:%dd" % w
        probs += ["%s %s" % (key, p)
                  for p in window_problems(st.r.hgetall(key), inw)]
        key = "nps:cohort:segment:enterprise:w:%dd" % w
        ent = [r for r in inw if SEGMENT.get(r["account_id"]) == "enterprise"]
        probs += ["%s %s" % (key, p)
                  for p in window_problems(st.r.hgetall(key), ent)]
        # detractor themes of the window
        themes = {}
        for r in inw:
            c = (r.get("comment") or "")
            if r["score"] <= 6 and c:
                th = "pricing" if ("expensive" in c or "pricing" in c) \
                    else "reliability"
                themes[th] = themes.get(th, 0) + 1
        key = "nps:themes:detractor:w:%dd" % w
        got = {k: int(v) for k, v in st.r.zrange(key, 0, -1, withscores=True)}
        if got != themes:
            probs.append("%s=%s, expected %s" % (key, got, themes))
    return probs


def wait_stage(st, rs, today, now_str, timeout=30):
    last = []

    def ok():
        last[:] = stage_problems(st, rs, today, now_str)
        return not last
    try:
        wait_for(ok, timeout, "state of day %+d" % (today - DAY0), interval=0.3)
    except AssertionError as e:
        raise AssertionError("%s:\n  %s" % (e, "\n  ".join(last[:25])))


def test(build):
    st = Stack(build, name="roll")
    try:
        rs = responses()
        produce_tracked(st, "accounts", [
            (a, json.dumps({"account_id": a, "segment": s, "name": a,
                            "updated_at": "2026-01-01T00:00:00Z"}).encode())
            for a, s in SEGMENT.items()])

        for i, (clock, plus) in enumerate(STAGES):
            npsd = st.npsd("roll.interval.s=1", now=fmt(clock),
                           log="npsd-%d.log" % i)
            if i == 0:
                # the context first: a response counts in the segment
                # cohort of its account as of when it is counted, and the
                # topics are read independently
                wait_processed(st, "npsd", ("accounts",), timeout=60)
                produce_tracked(st, "nps.responses", [
                    (r["account_id"], json.dumps(
                        {k: v for k, v in r.items() if k != "_day"}).encode())
                    for r in rs])
                wait_processed(st, "npsd", timeout=60)
            wait_stage(st, rs, DAY0 + plus, fmt(clock))
            assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"

        # spot checks of the boundaries the stages crossed
        s = st.r.hgetall("nps:{acct-b}:summary")
        assert "nps_90d" not in s and s["responses_90d"] == "0", s
        assert not st.r.exists("nps:{acct-b}:w:90d")
        assert st.r.zscore("nps:rank:nps_90d", "acct-b") is None
        assert "nps_prev_90d" not in st.r.hgetall("nps:{acct-c}:summary")
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

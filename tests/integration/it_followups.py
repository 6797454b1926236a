"""Closed loop end to end (SPEC §5), the clock pinned and moved by
restarting npsd with a later --now (no traffic needed for a deadline to
pass):

  T        detractor r-f1 submitted at T-1h (csm dana), acknowledged on time
           follow-ups for r-f2 arrive BEFORE r-f2 itself (kept pending,
           applied when it arrives: closed on time, csm erin)
  T+3d     nothing due (acknowledge met; route due at +7d): no alert
  T+8d     route missed with no event: one followup_overdue (route, due_at)
           a late `routed` afterwards raises nothing new
  ~T+30d   a late `closed`: one followup_overdue (close, met_at), loop closed
  T+31d    nothing more; a detractor counted 10 days late raises its
           acknowledge and route deadlines at once
  T+200d   its close deadline passes, then every loop's day leaves the
           90-day window: the loops end and leave the counters
  then     a loop open while the long window is cut to 28 days: closed on
           time, it ends when its day leaves the new window

The account summary, nps:csm:<owner> and health.followup are checked at
every step; the loops, the follow-ups waiting for their response and
the account's timer are read from its state record (npsctl account
--state) and nps:{g}:timers."""
import json
import os
from datetime import datetime, timedelta, timezone

from harness import (Stack, engine_settled, main, state_record, timers_ran,
                     wait_for, wait_processed)

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
GROUP = "npsd"
TOPICS = ("accounts", "nps.responses", "nps.followups", "product.usage")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


S1 = T - timedelta(hours=1)          # r-f1 submitted
ROUTE_DUE = S1 + timedelta(days=7)
CLOSE_DUE = S1 + timedelta(days=30)


DAY_MS = 86400000
STAGES = ("acknowledge", "route", "close")
# an account with alerts raised in its last write is due again this long
# after them, while they wait for the broker
OUTBOX_RETRY_MS = 30000


def ms(dt):
    return int(dt.timestamp() * 1000)


def record(st, acct):
    rec = state_record(st, acct)
    assert rec is not None, "%s has no state record" % acct
    return rec


def loops_of(st, acct):
    """{rid: loop} of the account's state record: open loops, and closed
    ones waiting for their end."""
    return {lp["rid"]: lp for lp in record(st, acct)["loops"]}


def open_loops(st, acct):
    return sorted(r for r, lp in loops_of(st, acct).items()
                  if not lp["closed"])


def pending_of(st, acct, rid):
    """Event ids of the follow-ups of response rid waiting for it."""
    return sorted(p["event_id"] for p in record(st, acct)["pending"]
                  if p["rid"] == rid)


def loop_end(lp, long_days):
    """Midnight UTC when the loop's day leaves the long window."""
    return (lp["submitted_ms"] // DAY_MS + long_days) * DAY_MS


def loop_timer(rec, long_days):
    """When the account's loops next need the timer (epoch ms), from its
    state record: per loop its earliest deadline neither met nor missed
    yet, or its end when that comes first; +1 ms, a deadline passing
    strictly after it. None without loops."""
    best = None
    for lp in rec["loops"]:
        t = loop_end(lp, long_days)
        for s in STAGES:
            if "met_at" not in lp[s] and lp[s]["status"] == "open":
                t = min(t, lp[s]["due_ms"])
        best = t + 1 if best is None else min(best, t + 1)
    return best


def window_timer(rec, now, windows):
    """The account's next window change (epoch ms), from its state record:
    a minute past the midnight UTC when one of its response days enters or
    leaves a window or the period before the long one; the next midnight
    while it had usage in the last 31 days. None when nothing changes."""
    today, long_days = ms(now) // DAY_MS, max(windows)
    cands = [c for d, _, _ in rec["buckets"] if d > today - 2 * long_days
             for c in [d] + [d + w for w in windows] + [d + 2 * long_days]
             if c > today]
    nxt = min(cands) if cands else None
    act = rec["last_activity_ms"]
    if act >= 0 and act // DAY_MS > today - 31 and \
            (nxt is None or nxt > today + 1):
        nxt = today + 1
    return None if nxt is None else nxt * DAY_MS + 60000


def check_timer(st, acct, now, windows=(30, 90), alerts_raised=False):
    """nps:{g}:timers holds the account due at the earliest of its loops'
    next deadlines or ends (+1 ms), computed from its state record, unless
    its next window change comes first, or the outbox retry when its last
    write raised alerts. Returns the loops' moment."""
    # the timer entry is a global delta: it follows the account's record
    # within about a second
    wait_for(lambda: engine_settled(st.r), 30, "global deltas applied")
    rec = record(st, acct)
    lt = loop_timer(rec, max(windows))
    want = [t for t in (lt, window_timer(rec, now, windows)) if t is not None]
    if alerts_raised:
        want.append(ms(now) + OUTBOX_RETRY_MS)
    score = st.r.zscore("nps:{g}:timers", acct)
    assert score is not None and int(score) == min(want), (
        "%s timer %s, expected %s (loops %s, window %s)\n%s" % (
            acct, score, min(want), lt, window_timer(rec, now, windows),
            rec["loops"]))
    return lt


def summary(st, acct):
    return st.r.hgetall("nps:{%s}:summary" % acct)


def counters(h):
    return {k: int(h.get(k, 0)) for k in
            ("open_detractors", "overdue_followups", "loops_closed",
             "loops_closed_on_time")}


def expect(st, acct, owner, want, followup):
    s = summary(st, acct)
    assert counters(s) == want, "%s summary %s, expected %s" % (
        acct, counters(s), want)
    # the owner counters follow the account within about a second
    wait_for(lambda: engine_settled(st.r), 30, "global deltas applied")
    c = st.r.hgetall("nps:csm:%s" % owner)
    assert counters(c) == want, "csm %s %s, expected %s" % (
        owner, counters(c), want)
    assert float(s["health.followup"]) == followup, \
        "%s health.followup %s, expected %s" % (acct, s["health.followup"],
                                                followup)
    return s


def alerts(st):
    return [json.loads(m.value()) for m in st.consume_all("nps.alerts")]


def run(st, now, *sets):
    p = st.npsd("roll.interval.s=1", *sets, now=iso(now),
                log="npsd-%s.log" % iso(now).replace(":", ""), metrics=True)
    return p


def stop(st, p):
    """Stops an instance once it holds its partitions: one stopped while
    still joining the group can leave the (development) broker waiting
    for it, and the next instance's join with it."""
    st.wait_log(p, "partitions assigned", 60)
    assert st.stop(p) == 0, "npsd must exit 0 on SIGTERM"


def follow(fid, acct, rid, action, at):
    return (acct, json.dumps({"event_id": fid, "account_id": acct,
                              "response_event_id": rid, "action": action,
                              "at": iso(at), "owner": "ops", "team": "cs"}))


def resp(eid, acct, score, at):
    return (acct, json.dumps({"event_id": eid, "account_id": acct,
                              "user_id": "user-" + eid, "score": score,
                              "role": "admin", "submitted_at": iso(at),
                              "comment": "too slow"}))


def test(build):
    st = Stack(build, name="followups")
    npsd = None
    try:
        st.produce("accounts", [
            ("acct-f1", json.dumps({"account_id": "acct-f1", "name": "F1",
                                    "segment": "smb", "csm_owner": "dana",
                                    "updated_at": iso(T - timedelta(days=2))})),
            ("acct-f2", json.dumps({"account_id": "acct-f2", "name": "F2",
                                    "segment": "smb", "csm_owner": "erin",
                                    "updated_at": iso(T - timedelta(days=2))})),
        ])
        # ---- T: the loop opens, acknowledged on time
        # The owner is the account's csm_owner when the loop opens: the
        # context is processed first (topics are read independently).
        npsd = run(st, T)
        wait_processed(st, GROUP, ("accounts",))
        st.produce("nps.responses", [resp("r-f1", "acct-f1", 2, S1)])
        # usage keeps the account's windows rolling daily: each restart's
        # timer then visibly refreshes it (updated_at), alerts or not
        st.produce("product.usage", [("acct-f1", json.dumps(
            {"event_id": "use-f1", "account_id": "acct-f1", "user_id": "x",
             "occurred_at": iso(T - timedelta(hours=2)), "type": "session"}))])
        wait_processed(st, GROUP, TOPICS)
        zero = {"open_detractors": 0, "overdue_followups": 0,
                "loops_closed": 0, "loops_closed_on_time": 0}
        expect(st, "acct-f1", "dana", dict(zero, open_detractors=1), 100)
        lp = loops_of(st, "acct-f1")["r-f1"]
        assert lp["acknowledge"]["due_ms"] == ms(
            S1 + timedelta(hours=48)), lp
        assert lp["route"]["due_ms"] == ms(ROUTE_DUE), lp
        assert lp["close"]["due_ms"] == ms(CLOSE_DUE), lp
        assert open_loops(st, "acct-f1") == ["r-f1"]
        det = [json.loads(m.value()) for m in st.consume_all("nps.detractors")]
        assert det[0]["followup"] == {
            "acknowledge_by": iso(S1 + timedelta(hours=48)),
            "route_by": iso(ROUTE_DUE), "close_by": iso(CLOSE_DUE)}, det

        st.produce("nps.followups", [follow("f1-ack", "acct-f1", "r-f1",
                                            "acknowledged",
                                            T - timedelta(minutes=30))])
        wait_processed(st, GROUP, TOPICS)
        lp = loops_of(st, "acct-f1")["r-f1"]
        assert lp["acknowledge"].get("met_at") == iso(
            T - timedelta(minutes=30)), lp
        assert lp["acknowledge"]["status"] == "open" and \
            not lp["overdue"], lp
        expect(st, "acct-f1", "dana", dict(zero, open_detractors=1), 100)

        # follow-ups before their response: pending, then matched
        st.produce("nps.followups", [
            follow("f2-ack", "acct-f2", "r-f2", "acknowledged",
                   T - timedelta(minutes=15)),
            follow("f2-close", "acct-f2", "r-f2", "closed",
                   T - timedelta(minutes=10))])
        wait_processed(st, GROUP, TOPICS)
        assert pending_of(st, "acct-f2", "r-f2") == ["f2-ack", "f2-close"]
        assert "r-f2" not in loops_of(st, "acct-f2")
        st.produce("nps.responses", [resp("r-f2", "acct-f2", 1,
                                          T - timedelta(minutes=20))])
        wait_processed(st, GROUP, TOPICS)
        assert pending_of(st, "acct-f2", "r-f2") == []
        lp2 = loops_of(st, "acct-f2")["r-f2"]
        assert lp2["acknowledge"].get("met_at") == iso(
            T - timedelta(minutes=15)), lp2
        assert lp2["route"].get("met_at") == iso(
            T - timedelta(minutes=10)), lp2
        assert lp2["close"].get("met_at") == iso(
            T - timedelta(minutes=10)), lp2
        assert lp2["closed"] is True, lp2
        assert open_loops(st, "acct-f2") == []
        closed_on_time = dict(zero, loops_closed=1, loops_closed_on_time=1)
        expect(st, "acct-f2", "erin", closed_on_time, 100)
        # the timer ran since, and the outbox is empty: nothing was raised
        timers_ran(st, npsd)
        stop(st, npsd)
        npsd = None
        assert alerts(st) == [], "no deadline was missed"

        # ---- T+3d: nothing due; the timer ran (the windows rolled)
        t3 = T + timedelta(days=3)
        npsd = run(st, t3)
        wait_for(lambda: summary(st, "acct-f1").get("updated_at") == iso(t3),
                 30, "the T+3d timer")
        expect(st, "acct-f1", "dana", dict(zero, open_detractors=1), 100)
        timers_ran(st, npsd)
        stop(st, npsd)
        npsd = None
        assert alerts(st) == []

        # ---- T+8d: route missed, raised by the timer alone
        t8 = T + timedelta(days=8)
        npsd = run(st, t8)
        got = wait_for(lambda: alerts(st) or None, 30,
                       "the route followup_overdue alert")
        assert len(got) == 1, got
        a = got[0]
        assert a["type"] == "followup_overdue" and a["severity"] == "medium"
        assert a["account_id"] == "acct-f1" and a["fired_at"] == iso(t8)
        assert a["details"]["stage"] == "route", a
        assert a["details"]["response_event_id"] == "r-f1"
        assert a["details"]["due_at"] == iso(ROUTE_DUE), a
        assert "met_at" not in a["details"], a
        assert a["event_id"] is None, "raised by the timer, not an event"
        assert a["account"]["csm_owner"] == "dana"
        wait_for(lambda: counters(summary(st, "acct-f1"))["overdue_followups"]
                 == 1, 10, "overdue counted")
        expect(st, "acct-f1", "dana",
               dict(zero, open_detractors=1, overdue_followups=1), 66)
        lp = loops_of(st, "acct-f1")["r-f1"]
        assert lp["route"]["status"] == "missed" and lp["overdue"], lp
        assert "met_at" not in lp["route"], lp
        # more timer passes (seen to run) raise nothing more
        timers_ran(st, npsd)
        assert len(alerts(st)) == 1

        # a late routed: met late, already raised, nothing new
        st.produce("nps.followups", [follow("f1-route", "acct-f1", "r-f1",
                                            "routed", t8 - timedelta(hours=1))])
        wait_processed(st, GROUP, TOPICS)
        lp = loops_of(st, "acct-f1")["r-f1"]
        assert lp["route"].get("met_at") == iso(t8 - timedelta(hours=1)), lp
        timers_ran(st, npsd)
        assert len(alerts(st)) == 1
        expect(st, "acct-f1", "dana",
               dict(zero, open_detractors=1, overdue_followups=1), 66)
        # npsctl account shows the loop and the alert
        out = st.npsctl("account", "acct-f1", "--redis-port",
                        str(st.redis_port)).stdout
        for text in ("follow-ups       1 open", "r-f1", "overdue",
                     "met late " + iso(t8 - timedelta(hours=1)),
                     "due " + iso(ROUTE_DUE), "followup_overdue",
                     "route due " + iso(ROUTE_DUE)):
            assert text in out, "npsctl account lacks %r:\n%s" % (text, out)
        if os.environ.get("IT_SHOW"):
            print(out)
        js = json.loads(st.npsctl("account", "acct-f1", "--json",
                                  "--redis-port", str(st.redis_port)).stdout)
        assert js["followups"][0]["response_event_id"] == "r-f1"
        assert js["followups"][0]["route_due_at"] == iso(ROUTE_DUE)
        assert js["alerts"][0]["alert_id"] == a["alert_id"]
        stop(st, npsd)
        npsd = None

        # ---- just before the close deadline: closed 15 min after it
        tc = CLOSE_DUE - timedelta(minutes=30)
        npsd = run(st, tc)
        st.produce("nps.followups", [follow("f1-close", "acct-f1", "r-f1",
                                            "closed",
                                            CLOSE_DUE + timedelta(minutes=15))])
        wait_processed(st, GROUP, TOPICS)
        got = wait_for(lambda: len(alerts(st)) == 2 and alerts(st), 30,
                       "the close followup_overdue alert")
        b = [x for x in got if x["alert_id"] != a["alert_id"]][0]
        assert b["type"] == "followup_overdue" and b["severity"] == "high"
        assert b["details"]["stage"] == "close"
        assert b["details"]["due_at"] == iso(CLOSE_DUE)
        assert b["details"]["met_at"] == iso(CLOSE_DUE + timedelta(minutes=15))
        assert b["event_id"] == "f1-close"
        lp = loops_of(st, "acct-f1")["r-f1"]
        assert lp["closed"] is True, lp
        assert open_loops(st, "acct-f1") == []
        expect(st, "acct-f1", "dana", dict(zero, loops_closed=1), 100)
        stop(st, npsd)
        npsd = None

        # ---- T+31d: every deadline passed, the loop is closed: nothing
        t31 = T + timedelta(days=31)
        npsd = run(st, t31)
        wait_for(lambda: summary(st, "acct-f1").get("updated_at") == iso(t31),
                 30, "the T+31d timer")
        timers_ran(st, npsd)
        assert len(alerts(st)) == 2
        expect(st, "acct-f1", "dana", dict(zero, loops_closed=1), 100)
        expect(st, "acct-f2", "erin", closed_on_time, 100)
        assert st.r.hget("nps:csm:dana", "accounts") == "1"
        # the closed loops wait only for their end
        for acct, rid in (("acct-f1", "r-f1"), ("acct-f2", "r-f2")):
            loops = loops_of(st, acct)
            assert list(loops) == [rid], loops
            lp = loops[rid]
            assert lp["closed"] is True, lp
            assert all("met_at" in lp[s] for s in STAGES), lp
            assert check_timer(st, acct, t31) == loop_end(lp, 90) + 1, lp

        # a detractor counted 10 days after it was submitted: its
        # acknowledge and route deadlines have passed, raised at once
        s3 = t31 - timedelta(days=10)
        st.produce("accounts", [("acct-f3", json.dumps(
            {"account_id": "acct-f3", "name": "F3", "segment": "smb",
             "csm_owner": "finn", "updated_at": iso(s3)}))])
        wait_processed(st, GROUP, ("accounts",))
        st.produce("nps.responses", [resp("r-f3", "acct-f3", 0, s3)])
        wait_processed(st, GROUP, TOPICS)
        got = wait_for(lambda: len(alerts(st)) == 4 and alerts(st), 30,
                       "acknowledge and route overdue of r-f3")
        f3 = [x for x in got if x["account_id"] == "acct-f3"]
        assert sorted(x["details"]["stage"] for x in f3) == [
            "acknowledge", "route"], f3
        wait_for(lambda: counters(summary(st, "acct-f3"))[
            "overdue_followups"] == 1, 10, "r-f3 overdue counted")
        expect(st, "acct-f3", "finn",
               dict(zero, open_detractors=1, overdue_followups=1), 66)
        close3 = s3 + timedelta(days=30)
        lp3 = loops_of(st, "acct-f3")["r-f3"]
        for s in ("acknowledge", "route"):
            assert lp3[s]["status"] == "missed" and "met_at" not in lp3[s], \
                lp3
        assert lp3["close"]["status"] == "open", lp3
        assert "met_at" not in lp3["close"], lp3
        assert lp3["close"]["due_ms"] == ms(close3), lp3
        assert lp3["overdue"] and not lp3["closed"], lp3
        # its next deadline is the close; its last write raised alerts
        assert check_timer(st, "acct-f3", t31, alerts_raised=True) == \
            ms(close3) + 1
        assert {a: list(loops_of(st, a)) for a in (
            "acct-f1", "acct-f2", "acct-f3")} == {
            "acct-f1": ["r-f1"], "acct-f2": ["r-f2"], "acct-f3": ["r-f3"]}
        stop(st, npsd)
        npsd = None

        # ---- T+200d: r-f3's close deadline passed, then every loop's day
        # left the 90-day window: the loops end, their counts with them
        t200 = T + timedelta(days=200)
        npsd = run(st, t200)
        wait_for(lambda: not any(loops_of(st, a) for a in (
            "acct-f1", "acct-f2", "acct-f3")), 30, "the loops' end")
        got = wait_for(lambda: len(alerts(st)) >= 5 and alerts(st), 30,
                       "the close followup_overdue of r-f3")
        timers_ran(st, npsd)
        assert len(alerts(st)) == 5, alerts(st)
        c3 = [x for x in got if x["account_id"] == "acct-f3" and
              x["details"]["stage"] == "close"]
        assert len(c3) == 1 and c3[0]["details"]["due_at"] == iso(close3), c3
        for acct, owner, want in (
                ("acct-f1", "dana", dict(zero, loops_closed=1)),
                ("acct-f2", "erin", closed_on_time),
                ("acct-f3", "finn", zero)):
            wait_for(lambda: counters(summary(st, acct)) == want, 10,
                     "%s counters after the end" % acct)
            wait_for(lambda: engine_settled(st.r), 30,
                     "global deltas applied")
            assert counters(st.r.hgetall("nps:csm:%s" % owner)) == want
        for acct, rid in (("acct-f1", "r-f1"), ("acct-f2", "r-f2"),
                          ("acct-f3", "r-f3")):
            assert not loops_of(st, acct), (rid, loops_of(st, acct))

        # ---- the long window shortened while a loop is open: its timer
        # follows it (the close is met, the end comes at the new window)
        s4 = t200 - timedelta(hours=1)
        st.produce("nps.responses", [resp("r-f4", "acct-f1", 3, s4)])
        wait_processed(st, GROUP, TOPICS)
        st.produce("nps.followups", [follow("f4-route", "acct-f1", "r-f4",
                                            "routed", t200)])
        wait_processed(st, GROUP, TOPICS)
        lp4 = loops_of(st, "acct-f1")["r-f4"]
        for s in ("acknowledge", "route"):
            assert lp4[s].get("met_at") == iso(t200), lp4
            assert lp4[s]["status"] == "open", lp4
        assert "met_at" not in lp4["close"] and not lp4["closed"], lp4
        assert not lp4["overdue"], lp4
        assert {a: list(loops_of(st, a)) for a in (
            "acct-f1", "acct-f2", "acct-f3")} == {
            "acct-f1": ["r-f4"], "acct-f2": [], "acct-f3": []}
        # waiting for its close deadline (unless a window change comes
        # first)
        assert check_timer(st, "acct-f1", t200) == \
            lp4["close"]["due_ms"] + 1
        stop(st, npsd)
        npsd = None
        t227 = s4 + timedelta(days=27)
        npsd = run(st, t227, "windows=7d,28d")
        st.produce("nps.followups", [follow("f4-close", "acct-f1", "r-f4",
                                            "closed", t227)])
        wait_processed(st, GROUP, TOPICS)
        lp4 = loops_of(st, "acct-f1")["r-f4"]
        assert lp4["closed"] is True, lp4
        assert lp4["close"].get("met_at") == iso(t227), lp4
        end4 = (int(s4.timestamp()) // 86400 + 28) * 86400000
        assert {a: list(loops_of(st, a)) for a in (
            "acct-f1", "acct-f2", "acct-f3")} == {
            "acct-f1": ["r-f4"], "acct-f2": [], "acct-f3": []}
        # only its end is left, at the 28-day window
        assert check_timer(st, "acct-f1", t227, windows=(7, 28)) == end4 + 1
        stop(st, npsd)
        npsd = None
        npsd = run(st, s4 + timedelta(days=29), "windows=7d,28d")
        wait_for(lambda: "r-f4" not in loops_of(st, "acct-f1"), 30,
                 "r-f4's end at the 28-day window")
        assert not any(loops_of(st, a) for a in (
            "acct-f1", "acct-f2", "acct-f3"))
        timers_ran(st, npsd)
        stop(st, npsd)
        npsd = None
        assert len(alerts(st)) == 5, "r-f4 met every deadline"
        assert st.count("nps.dlq") == 0, "nothing was rejected"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

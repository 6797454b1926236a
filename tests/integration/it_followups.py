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
every step."""
import json
import os
from datetime import datetime, timedelta, timezone

from harness import Stack, main, timers_ran, wait_for, wait_processed

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
GROUP = "npsd"
TOPICS = ("accounts", "nps.responses", "nps.followups", "product.usage")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


S1 = T - timedelta(hours=1)          # r-f1 submitted
ROUTE_DUE = S1 + timedelta(days=7)
CLOSE_DUE = S1 + timedelta(days=30)


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
        lk1 = "nps:{acct-f1}:loop:r-f1"
        lp = st.r.hgetall(lk1)
        assert int(lp["acknowledge_due"]) == int(
            (S1 + timedelta(hours=48)).timestamp() * 1000), lp
        assert int(lp["route_due"]) == int(ROUTE_DUE.timestamp() * 1000)
        assert int(lp["close_due"]) == int(CLOSE_DUE.timestamp() * 1000)
        assert st.r.smembers("nps:{acct-f1}:loops") == {"r-f1"}
        det = [json.loads(m.value()) for m in st.consume_all("nps.detractors")]
        assert det[0]["followup"] == {
            "acknowledge_by": iso(S1 + timedelta(hours=48)),
            "route_by": iso(ROUTE_DUE), "close_by": iso(CLOSE_DUE)}, det

        st.produce("nps.followups", [follow("f1-ack", "acct-f1", "r-f1",
                                            "acknowledged",
                                            T - timedelta(minutes=30))])
        wait_processed(st, GROUP, TOPICS)
        lp = st.r.hgetall(lk1)
        assert lp.get("acknowledge_at") == iso(T - timedelta(minutes=30)), lp
        assert "acknowledge_missed" not in lp and "overdue" not in lp, lp
        expect(st, "acct-f1", "dana", dict(zero, open_detractors=1), 100)

        # follow-ups before their response: pending, then matched
        st.produce("nps.followups", [
            follow("f2-ack", "acct-f2", "r-f2", "acknowledged",
                   T - timedelta(minutes=15)),
            follow("f2-close", "acct-f2", "r-f2", "closed",
                   T - timedelta(minutes=10))])
        wait_processed(st, GROUP, TOPICS)
        assert st.r.llen("nps:{acct-f2}:fpend:r-f2") == 2
        assert not st.r.exists("nps:{acct-f2}:loop:r-f2")
        st.produce("nps.responses", [resp("r-f2", "acct-f2", 1,
                                          T - timedelta(minutes=20))])
        wait_processed(st, GROUP, TOPICS)
        assert not st.r.exists("nps:{acct-f2}:fpend:r-f2")
        lp2 = st.r.hgetall("nps:{acct-f2}:loop:r-f2")
        assert lp2.get("acknowledge_at") == iso(T - timedelta(minutes=15)), lp2
        assert lp2.get("route_at") == iso(T - timedelta(minutes=10)), lp2
        assert lp2.get("close_at") == iso(T - timedelta(minutes=10)), lp2
        assert lp2.get("closed") == "1", lp2
        assert not st.r.smembers("nps:{acct-f2}:loops")
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
        lp = st.r.hgetall(lk1)
        assert lp.get("route_missed") == "1" and lp.get("overdue") == "1", lp
        assert "route_at" not in lp
        # more timer passes (seen to run) raise nothing more
        timers_ran(st, npsd)
        assert len(alerts(st)) == 1

        # a late routed: met late, already raised, nothing new
        st.produce("nps.followups", [follow("f1-route", "acct-f1", "r-f1",
                                            "routed", t8 - timedelta(hours=1))])
        wait_processed(st, GROUP, TOPICS)
        lp = st.r.hgetall(lk1)
        assert lp.get("route_at") == iso(t8 - timedelta(hours=1)), lp
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
        lp = st.r.hgetall(lk1)
        assert lp.get("closed") == "1", lp
        assert not st.r.smembers("nps:{acct-f1}:loops")
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
        assert st.r.zrange("nps:loops", 0, -1) == [
            "acct-f1\tr-f1\tend", "acct-f2\tr-f2\tend"]

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
        assert st.r.zscore("nps:loops", "acct-f3\tr-f3\tclose") == \
            close3.timestamp() * 1000
        assert st.r.zcard("nps:loops") == 3, st.r.zrange("nps:loops", 0, -1)
        stop(st, npsd)
        npsd = None

        # ---- T+200d: r-f3's close deadline passed, then every loop's day
        # left the 90-day window: the loops end, their counts with them
        t200 = T + timedelta(days=200)
        npsd = run(st, t200)
        wait_for(lambda: st.r.zcard("nps:loops") == 0, 30, "the loops' end")
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
            assert counters(st.r.hgetall("nps:csm:%s" % owner)) == want
        for acct, rid in (("acct-f1", "r-f1"), ("acct-f2", "r-f2"),
                          ("acct-f3", "r-f3")):
            assert not st.r.exists("nps:{%s}:loop:%s" % (acct, rid))
            assert not st.r.smembers("nps:{%s}:loops" % acct)

        # ---- the long window shortened while a loop is open: its timer
        # follows it (the close is met, the end comes at the new window)
        s4 = t200 - timedelta(hours=1)
        st.produce("nps.responses", [resp("r-f4", "acct-f1", 3, s4)])
        wait_processed(st, GROUP, TOPICS)
        st.produce("nps.followups", [follow("f4-route", "acct-f1", "r-f4",
                                            "routed", t200)])
        wait_processed(st, GROUP, TOPICS)
        assert st.r.zrange("nps:loops", 0, -1) == ["acct-f1\tr-f4\tclose"]
        stop(st, npsd)
        npsd = None
        t227 = s4 + timedelta(days=27)
        npsd = run(st, t227, "windows=7d,28d")
        st.produce("nps.followups", [follow("f4-close", "acct-f1", "r-f4",
                                            "closed", t227)])
        wait_processed(st, GROUP, TOPICS)
        assert st.r.hget("nps:{acct-f1}:loop:r-f4", "closed") == "1"
        end4 = (int(s4.timestamp()) // 86400 + 28) * 86400000
        assert st.r.zrange("nps:loops", 0, -1, withscores=True) == [
            ("acct-f1\tr-f4\tend", end4)], st.r.zrange("nps:loops", 0, -1)
        stop(st, npsd)
        npsd = None
        npsd = run(st, s4 + timedelta(days=29), "windows=7d,28d")
        wait_for(lambda: not st.r.exists("nps:{acct-f1}:loop:r-f4"), 30,
                 "r-f4's end at the 28-day window")
        assert st.r.zcard("nps:loops") == 0
        timers_ran(st, npsd)
        stop(st, npsd)
        npsd = None
        assert len(alerts(st)) == 5, "r-f4 met every deadline"
        assert st.count("nps.dlq") == 0, "nothing was rejected"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

"""Product usage end to end: hand-made product.usage events for three
accounts with known distinct users per day, errors, tickets and features,
some event_ids sent twice (in one batch and again later), through the real
npsd with a pinned clock. The summary's usage fields (per-day
HyperLogLogs: exact at these sizes) and health with every component are
checked against an independent computation of SPEC §5."""
import json
import os
from datetime import datetime, timedelta, timezone
from fractions import Fraction

from harness import (Stack, engine_settled, health_reference, main,
                     npsd_events, round1, wait_for, wait_processed,
                     outbox_len)

NOW = "2026-11-20T12:00:00Z"
NOW_DT = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
GROUP = "npsd"
TOPICS = ("accounts", "product.usage", "nps.responses")
WEIGHTS = {"nps": 40, "adoption": 20, "engagement": 15, "support": 10,
           "followup": 15}


def at(days_ago, hh, mm=0):
    t = (NOW_DT - timedelta(days=days_ago)).replace(hour=hh, minute=mm)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ms(ts):
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00"))
               .timestamp() * 1000)


class Events:
    """Builds usage events with distinct ids, keeping what was sent."""

    def __init__(self, account):
        self.account, self.n, self.sent = account, 0, []

    def add(self, days_ago, hh, user, typ="session", feature=None,
            epoch_ms=False, mm=0):
        self.n += 1
        ts = at(days_ago, hh, mm)
        ev = {"event_id": "%s-u%03d" % (self.account, self.n),
              "account_id": self.account, "user_id": user,
              "occurred_at": ms(ts) if epoch_ms else ts, "type": typ}
        if feature:
            ev["feature"] = feature
        self.sent.append(ev)
        return ev


def expected_usage(events):
    """SPEC §5 usage inputs from the distinct events (first per event_id),
    computed here without Redis."""
    first = {}
    for e in events:
        first.setdefault(e["event_id"], e)
    today = NOW_DT.date()
    au7, au30, prev7, feats = set(), set(), set(), set()
    errors7 = opened = closed = 0
    last = None
    for e in first.values():
        ts = e["occurred_at"]
        t = (datetime.fromtimestamp(ts / 1000, timezone.utc)
             if isinstance(ts, int) else
             datetime.fromisoformat(ts.replace("Z", "+00:00")))
        age = (today - t.date()).days
        if 0 <= age <= 6:
            au7.add(e["user_id"])
        if 0 <= age <= 29:
            au30.add(e["user_id"])
            if e["type"] == "feature_used" and e.get("feature"):
                feats.add(e["feature"])
        if 7 <= age <= 13:
            prev7.add(e["user_id"])
        if e["type"] == "error" and 0 <= age <= 6:
            errors7 += 1
        opened += e["type"] == "ticket_opened"
        closed += e["type"] == "ticket_closed"
        if last is None or t > last:
            last = t
    return {"active_users_7d": len(au7), "active_users_30d": len(au30),
            "active_users_prev_7d": len(prev7), "errors_7d": errors7,
            "open_tickets": max(0, opened - closed),
            "features_30d": len(feats),
            "last_activity_at": last.strftime("%Y-%m-%dT%H:%M:%SZ")}


def expected_health(u, seats=None, rel_nps=None, nps=None, detractors=0,
                    overdue=0):
    """SPEC §5 read as written, each component an exact fraction:
    returns (health or None, band, components). The nps component takes
    the published one-decimal NPS (README "Health")."""
    c = {}
    base = rel_nps if rel_nps is not None else nps
    if base is not None:                   # >= 1 response in 90 days
        c["nps"] = (Fraction(repr(float(base))) + 100) / 2
    had_usage = u["active_users_30d"] >= 1
    if seats and had_usage:                # seats known, usage in 30 days
        c["adoption"] = min(Fraction(100),
                            Fraction(100 * u["active_users_30d"], seats))
    if u["active_users_prev_7d"] >= 1:     # the 7 days before had a user
        c["engagement"] = min(Fraction(100),
                              Fraction(100 * u["active_users_7d"],
                                       u["active_users_prev_7d"]))
    if had_usage:
        c["support"] = Fraction(max(0, 100 - 15 * u["open_tickets"]
                                    - 2 * u["errors_7d"]))
    if detractors >= 1:                    # a detractor in 90 days
        c["followup"] = Fraction(max(0, 100 - 34 * overdue))
    h, band = health_reference(c, WEIGHTS)
    return h, band, c


def check_summary(st, acct, u, health):
    # the ranks follow the summaries within about a second
    wait_for(lambda: engine_settled(st.r), 30, "global views settled")
    s = st.r.hgetall("nps:{%s}:summary" % acct)
    for k, v in u.items():
        assert k in s, "%s: summary lacks %s (%s)" % (acct, k, s)
        if k == "last_activity_at":
            assert s[k] == v, "%s %s: redis %s, expected %s" % (acct, k, s[k], v)
        else:
            assert int(s[k]) == v, "%s %s: redis %s, expected %s" % (
                acct, k, s[k], v)
    h, band, comps = health
    if h is None:
        assert "health" not in s and "health_band" not in s, s
    else:
        assert int(s["health"]) == h, "%s health: redis %s, expected %s (%s)" % (
            acct, s["health"], h, comps)
        assert s["health_band"] == band, (acct, s["health_band"], band)
        assert st.r.zscore("nps:rank:health", acct) == h
    for name in WEIGHTS:
        f = "health." + name
        if name in comps:
            assert f in s, "%s: %s missing" % (acct, f)
            assert float(s[f]) == round1(comps[name]), \
                "%s %s: redis %s, expected %s" % (acct, f, s[f],
                                                  round1(comps[name]))
        else:
            assert f not in s, "%s: %s present without data" % (acct, f)
    return s


def test(build):
    st = Stack(build, name="usage")
    npsd = None
    try:
        # -- account context: seats known for u1 and u3, not for u2
        accounts = [
            {"account_id": "acct-u1", "name": "Umbra", "segment": "smb",
             "seats": 20, "csm_owner": "carol", "updated_at": at(1, 8)},
            {"account_id": "acct-u2", "name": "Ursa", "segment": "mid_market",
             "updated_at": at(1, 8)},
            {"account_id": "acct-u3", "name": "Uvula", "segment": "enterprise",
             "seats": 10, "updated_at": at(1, 8)},
        ]
        st.produce("accounts", [(a["account_id"], json.dumps(a))
                                for a in accounts])

        # -- acct-u1: every kind of event, windows' edges on both sides
        u1 = Events("acct-u1")
        u1.add(0, 9, "u1")
        u1.add(0, 9, "u2", mm=10)
        u1.add(0, 9, "u3", "page_view", mm=20)         # other type: activity
        u1.add(0, 10, "u1", "feature_used", "reports")
        u1.add(0, 10, "u2", "feature_used", "export", mm=5)
        u1.add(0, 10, "u1", "feature_used", "reports", mm=10)  # same feature
        err = u1.add(0, 10, "u1", "error", mm=30)
        u1.add(0, 10, "u1", "error", mm=31)
        tick = u1.add(0, 11, "u2", "ticket_opened")     # latest activity
        u1.add(3, 8, "u1")
        u1.add(3, 8, "u4")
        u1.add(3, 9, "u4", "error")
        u1.add(3, 9, "u4", "ticket_opened", mm=30)
        u1.add(6, 7, "u5", epoch_ms=True)               # last day of 7d
        u1.add(7, 7, "u6")                              # first day before
        u1.add(7, 8, "u7", "feature_used", "admin-console")
        u1.add(7, 9, "u6", "error")                     # not in errors_7d
        u1.add(13, 7, "u8")                             # last day before
        u1.add(13, 8, "u8", "ticket_opened")
        u1.add(14, 7, "u9")                             # only in 30d
        u1.add(14, 8, "u9", "ticket_closed")
        u1.add(29, 7, "u10", "feature_used", "legacy")  # last day of 30d
        u1.add(30, 7, "u11")                            # out of every window
        u1.add(30, 8, "u11", "feature_used", "ancient")
        # duplicates within the first send: same event twice, and a reused
        # event_id with another user (counted once, as the first)
        dup_other = dict(u1.sent[0], user_id="u99")
        sends = list(u1.sent) + [err, tick, dup_other]

        # -- acct-u2: the week before had 6 users, this week 2 (usage
        # drop); more tickets closed than opened
        u2 = Events("acct-u2")
        for i, d in enumerate((8, 9, 10, 11, 12, 12)):
            u2.add(d, 10, "v%d" % (i + 1))
        u2.add(1, 10, "v1")
        u2.add(2, 10, "v2")
        u2.add(1, 11, "v1", "ticket_opened")
        u2.add(1, 12, "v1", "ticket_closed")
        u2.add(2, 12, "v2", "ticket_closed")
        u2.add(9, 12, "v3", "ticket_closed")

        # -- acct-u3: usage only 35 days ago: no usage in 30 days
        u3 = Events("acct-u3")
        u3.add(35, 10, "w1")
        u3.add(35, 11, "w1", "ticket_opened")
        u3.add(35, 12, "w1", "ticket_opened")

        sends += u2.sent + u3.sent
        st.produce("product.usage", [(e["account_id"], json.dumps(e))
                                     for e in sends])

        # -- acct-u1 responses: a relationship promoter, a transactional
        # detractor: health.nps uses the relationship NPS (100), not all (0)
        responses = [
            {"event_id": "r-u1-1", "account_id": "acct-u1", "user_id": "u1",
             "score": 10, "role": "end_user", "survey_type": "relationship",
             "submitted_at": at(0, 10)},
            {"event_id": "r-u1-2", "account_id": "acct-u1", "user_id": "u2",
             "score": 3, "role": "admin", "survey_type": "transactional",
             "submitted_at": at(0, 10, 15)},
        ]
        st.produce("nps.responses", [(r["account_id"], json.dumps(r))
                                     for r in responses])

        npsd = st.npsd(now=NOW)
        wait_processed(st, GROUP, TOPICS, timeout=60)

        exp1 = expected_usage(u1.sent)
        assert exp1 == {"active_users_7d": 5, "active_users_30d": 10,
                        "active_users_prev_7d": 3, "errors_7d": 3,
                        "open_tickets": 2, "features_30d": 4,
                        "last_activity_at": at(0, 11)}, exp1
        exp2 = expected_usage(u2.sent)
        assert exp2["active_users_7d"] == 2 and \
            exp2["active_users_prev_7d"] == 6 and exp2["open_tickets"] == 0
        exp3 = expected_usage(u3.sent)
        assert exp3["active_users_30d"] == 0 and exp3["open_tickets"] == 2

        h1 = expected_health(exp1, seats=20, rel_nps=100, nps=0, detractors=1)
        assert h1[0] == 86, h1   # (4000 + 1000 + 1500 + 640 + 1500) / 100
        h2 = expected_health(exp2)
        assert h2[0] == 60, h2   # (15 * 33.3 + 10 * 100) / 25
        h3 = expected_health(exp3, seats=10)
        assert h3[0] is None, h3

        s1 = check_summary(st, "acct-u1", exp1, h1)
        s2 = check_summary(st, "acct-u2", exp2, h2)
        s3 = check_summary(st, "acct-u3", exp3, h3)
        assert float(s1["nps_90d"]) == 0.0  # all responses: 1 P, 1 D

        # usage_drop raised once for acct-u2 (2 < 0.7 x 6), never for u1
        wait_for(lambda: outbox_len(st.r) == 0, 20, "outbox drained")
        alerts = [json.loads(m.value())
                  for m in st.consume_all("nps.alerts")]
        drops = [a for a in alerts if a["type"] == "usage_drop"]
        assert [a["account_id"] for a in drops] == ["acct-u2"], drops
        assert drops[0]["details"] == {"active_users_7d": 2,
                                       "active_users_prev_7d": 6}, drops

        # -- the same events again, later (another batch): nothing changes
        st.produce("product.usage", [(e["account_id"], json.dumps(e))
                                     for e in u1.sent[::3] + u2.sent[:4] +
                                     u3.sent])
        wait_processed(st, GROUP, TOPICS, timeout=60)
        assert st.r.hgetall("nps:{acct-u1}:summary") == s1
        assert st.r.hgetall("nps:{acct-u2}:summary") == s2
        assert st.r.hgetall("nps:{acct-u3}:summary") == s3

        # -- npsctl account shows the usage and the health components
        out = st.npsctl("account", "acct-u1", "--redis-port",
                        str(st.redis_port)).stdout
        for text in ("active users 7d 5 (7d before 3)", "30d 10",
                     "features 30d 4", "open tickets 2", "errors 7d 3",
                     "last activity " + at(0, 11), "adoption 50",
                     "engagement 100", "support 64", "followup 100",
                     "1 open"):
            assert text in out, "npsctl account lacks %r:\n%s" % (text, out)
        js = json.loads(st.npsctl("account", "acct-u1", "--json",
                                  "--redis-port", str(st.redis_port)).stdout)
        assert js["summary"] == s1
        assert [f["response_event_id"] for f in js["followups"]] == ["r-u1-2"]
        assert js["alerts"] == [] or all(a["account_id"] == "acct-u1"
                                         for a in js["alerts"])
        js2 = json.loads(st.npsctl("account", "acct-u2", "--json",
                                   "--redis-port", str(st.redis_port)).stdout)
        assert "usage_drop" in [a["type"] for a in js2["alerts"]], js2["alerts"]

        if os.environ.get("IT_SHOW"):
            print(out)
            print(st.npsctl("account", "acct-u2", "--redis-port",
                            str(st.redis_port)).stdout)

        # -- later batches of the same day, each moving one window only:
        # the counts of today are partly reused, the moved ones recounted
        steps = (
            # a new feature by a user already counted: features_30d only
            (lambda: u1.add(0, 12, "u1", "feature_used", "billing"),
             {"features_30d": 5}),
            # a new user 10 days ago: the 30 days and the 7 before, not 7d
            (lambda: u1.add(10, 12, "u12"),
             {"active_users_30d": 11, "active_users_prev_7d": 4}),
            # a new user today: the 7 and the 30 days
            (lambda: u1.add(0, 13, "u13"),
             {"active_users_7d": 6, "active_users_30d": 12}),
        )
        for make, moved in steps:
            before = expected_usage(u1.sent)
            ev = make()
            st.produce("product.usage", [(ev["account_id"], json.dumps(ev))])
            wait_processed(st, GROUP, TOPICS, timeout=60)
            exp = expected_usage(u1.sent)
            assert {k: v for k, v in exp.items() if before[k] != v and
                    k != "last_activity_at"} == moved, (exp, before)
            check_summary(st, "acct-u1", exp,
                          expected_health(exp, seats=20, rel_nps=100, nps=0,
                                          detractors=1))

        # -- an apply that fails after its PFADDs landed (the guarded write
        # refused: Redis' ACL denies the scripts and EXEC for a while). The
        # retry's PFADD moves no register, yet the new user must be counted.
        before = expected_usage(u1.sent)
        st.r.execute_command("ACL", "SETUSER", "default", "-evalsha", "-eval",
                             "-exec")
        try:
            ev = u1.add(0, 11, "u14", mm=50)
            st.produce("product.usage", [(ev["account_id"], json.dumps(ev))])
            wait_for(lambda: npsd_events(st.log(npsd),
                                         "redis unavailable") == 1,
                     30, "the write refused")
        finally:
            st.r.execute_command("ACL", "SETUSER", "default", "+evalsha",
                                 "+eval", "+exec")
        wait_processed(st, GROUP, TOPICS, timeout=60)
        exp = expected_usage(u1.sent)
        assert exp["active_users_7d"] == before["active_users_7d"] + 1 and \
            exp["active_users_30d"] == before["active_users_30d"] + 1, exp
        check_summary(st, "acct-u1", exp,
                      expected_health(exp, seats=20, rel_nps=100, nps=0,
                                      detractors=1))
        assert st.stop(npsd) == 0
        npsd = None
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

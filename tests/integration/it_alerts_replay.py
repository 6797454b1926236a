"""Alerts are raised once per occurrence, replays raise none (SPEC §3, §6).

A stream with a pinned clock raises several alert types:
  acct-a1  role_gap          3 end-user promoters vs 3 decision-maker detractors
  acct-a2  usage_drop        6 active users the week before, 1 this week
  acct-a3  health_band       green (a promoter) then red (detractors)
  acct-a4  followup_overdue  acknowledge missed: by the timer (no event) for
                             one detractor, by a late follow-up that arrived
                             before its response for another
Then the whole input is replayed under a new consumer group: no alert is
raised again (nps.alerts unchanged, outbox empty), no summary, alert state
or csm counter changes. Every alert carries a unique alert_id, type,
severity, account_id, fired_at, details, account and event_id."""
import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from harness import (Stack, main, outbox_len, scrape, state_record,
                     timers_ran, wait_for, wait_processed)

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
TOPICS = ("accounts", "nps.responses", "nps.followups", "product.usage")
ACCTS = ("acct-a1", "acct-a2", "acct-a3", "acct-a4")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def resp(eid, acct, score, role, at):
    return (acct, json.dumps({"event_id": eid, "account_id": acct,
                              "user_id": "u-" + eid, "score": score,
                              "role": role, "submitted_at": iso(at)}))


def usage(eid, acct, user, at):
    return (acct, json.dumps({"event_id": eid, "account_id": acct,
                              "user_id": user, "occurred_at": iso(at),
                              "type": "session"}))


def alerts(st):
    return [json.loads(m.value()) for m in st.consume_all("nps.alerts")]


def tally(got):
    """Distinct alerts per (type, account), per type, and in total."""
    ids = {a["alert_id"]: a for a in got}
    per = Counter((a["type"], a["account_id"]) for a in ids.values())
    per_type = Counter(a["type"] for a in ids.values())
    return {"per_account": per, "per_type": per_type, "total": len(ids),
            "ids": set(ids)}


def same_tally(a, b, when):
    for k in ("per_account", "per_type", "total", "ids"):
        assert a[k] == b[k], "%s: %s changed:\n%s\n%s" % (when, k, a[k], b[k])


def pending_of(st, acct, rid):
    """Event ids of the follow-ups of response rid waiting for it (the
    account's state record)."""
    rec = state_record(st, acct) or {"pending": []}
    return sorted(p["event_id"] for p in rec["pending"] if p["rid"] == rid)


def state(st):
    """Everything the alert rules and counters keep, per account: the
    loops, waiting follow-ups and alert occurrence counts from its state
    record."""
    out = {}
    for a in ACCTS:
        for k in ("summary", "alerts"):
            out["%s:%s" % (a, k)] = st.r.hgetall("nps:{%s}:%s" % (a, k))
        # entries are packed: compared as bytes
        out[a + ":alert_log"] = st.r.execute_command(
            "LRANGE", "nps:{%s}:alert_log" % a, 0, -1, NEVER_DECODE=True)
        rec = state_record(st, a) or {}
        for k in ("loops", "pending", "alert_n"):
            out["%s:%s" % (a, k)] = rec.get(k)
    for o in ("olga", "piet"):
        out["csm:" + o] = st.r.hgetall("nps:csm:" + o)
    return out


def stop(st, p):
    st.wait_log(p, "partitions assigned", 60)
    assert st.stop(p) == 0, "npsd must exit 0 on SIGTERM"


TYPES = ("role_gap", "nps_drop", "health_band", "usage_drop",
         "followup_overdue")


def published_by_type(p):
    """npsd p's npsd_alerts_raised_total per type (every type has one)."""
    m = scrape(p)
    return {t: m['npsd_alerts_raised_total{type="%s"}' % t] for t in TYPES}


def test(build):
    st = Stack(build, name="alerts-replay")
    npsd = None
    try:
        acc = [{"account_id": a, "name": a.upper(), "segment": "enterprise",
                "csm_owner": "olga" if a in ("acct-a1", "acct-a3") else "piet",
                "arr": 250000, "updated_at": iso(T - timedelta(days=5))}
               for a in ACCTS]
        st.produce("accounts", [(a["account_id"], json.dumps(a)) for a in acc])
        # a late acknowledgement that arrives before its response
        st.produce("nps.followups", [("acct-a4", json.dumps(
            {"event_id": "fu-a4-2", "account_id": "acct-a4",
             "response_event_id": "r-a4-2", "action": "acknowledged",
             "at": iso(T - timedelta(hours=1))}))])
        st.produce("nps.responses", [resp("r-a3-0", "acct-a3", 10,
                                          "end_user", T - timedelta(hours=5))])
        npsd = st.npsd("roll.interval.s=1", now=iso(T), metrics=True)
        wait_processed(st, "npsd", TOPICS)
        assert st.r.hget("nps:{acct-a3}:summary", "health_band") == "green"
        assert pending_of(st, "acct-a4", "r-a4-2") == ["fu-a4-2"]

        rs = []
        for i in range(3):
            rs.append(resp("r-a1-eu%d" % i, "acct-a1", 10, "end_user",
                           T - timedelta(hours=2, minutes=i)))
            rs.append(resp("r-a1-dm%d" % i, "acct-a1", 0, "executive",
                           T - timedelta(hours=3, minutes=i)))
        for i in range(5):
            rs.append(resp("r-a3-d%d" % i, "acct-a3", 0, "admin",
                           T - timedelta(hours=4, minutes=i)))
        rs.append(resp("r-a4-1", "acct-a4", 3, "admin", T - timedelta(days=3)))
        rs.append(resp("r-a4-2", "acct-a4", 4, "admin",
                       T - timedelta(days=3, hours=1)))
        rs.append(rs[0])  # a duplicate send
        st.produce("nps.responses", rs)
        us = [usage("use-a2-p%d" % i, "acct-a2", "p%d" % i,
                    T - timedelta(days=8 + i % 3, hours=i)) for i in range(6)]
        us.append(usage("use-a2-c0", "acct-a2", "p0", T - timedelta(days=1)))
        st.produce("product.usage", us)
        wait_processed(st, "npsd", TOPICS)

        def complete():
            got = alerts(st)
            kinds = {(a["type"], a["account_id"]) for a in got}
            overdue = [a for a in got if a["type"] == "followup_overdue"]
            if len(overdue) >= 2 and outbox_len(st.r) == 0 and {
                    ("role_gap", "acct-a1"), ("usage_drop", "acct-a2"),
                    ("health_band", "acct-a3")} <= kinds:
                return got
            return None
        seen = wait_for(complete, 30, "every alert type raised and published")
        # positive evidence that later timer passes ran (and the outbox is
        # empty) before judging that they raised nothing new
        timers_ran(st, npsd)
        first = alerts(st)
        assert len(first) == len({a["alert_id"] for a in first}), \
            "an alert published twice in one run: %s" % first
        same_tally(tally(seen), tally(first), "later timer passes")

        ids = [a["alert_id"] for a in first]
        assert len(ids) == len(set(ids)), "alert ids are unique: %s" % ids
        sent_ids = {json.loads(v)["event_id"] for _, v in rs + us} | {"fu-a4-2"}
        for a in first:
            for k in ("alert_id", "type", "severity", "account_id",
                      "fired_at", "details", "account", "event_id"):
                assert k in a, "alert lacks %s: %s" % (k, a)
            assert a["severity"] in ("high", "medium", "low"), a
            assert a["fired_at"] == iso(T), a
            assert isinstance(a["details"], dict) and a["details"], a
            assert a["account"]["name"] == a["account_id"].upper(), a
            assert a["alert_id"].startswith(a["type"] + ":" + a["account_id"]
                                            + ":"), a
            if a["event_id"] is not None:
                assert a["event_id"] in sent_ids, a

        by = Counter((a["type"], a["account_id"]) for a in first)
        assert by[("role_gap", "acct-a1")] == 1, by
        rg = [a for a in first if a["type"] == "role_gap"][0]
        assert rg["severity"] == "medium"
        assert rg["details"]["role_gap"] == 200, rg
        assert rg["details"]["end_user_nps"] == 100
        assert rg["details"]["decision_maker_nps"] == -100
        assert by[("usage_drop", "acct-a2")] == 1, by
        ud = [a for a in first if a["type"] == "usage_drop"][0]
        assert ud["details"] == {"active_users_7d": 1,
                                 "active_users_prev_7d": 6}, ud
        # health_band: one alert per band change of each account, so each
        # account's alerts form a chain (from = the previous to, from != to)
        # ending at the band its summary holds. acct-a3 went green -> red,
        # through yellow when its detractors came in two batches.
        for acct in ACCTS:
            hb = sorted((a for a in first if a["type"] == "health_band"
                         and a["account_id"] == acct),
                        key=lambda a: int(a["alert_id"].split(":")[2]))
            band = st.r.hget("nps:{%s}:summary" % acct, "health_band")
            for x, y in zip(hb, hb[1:]):
                assert x["details"]["to"] == y["details"]["from"], hb
            for x in hb:
                assert x["details"]["from"] != x["details"]["to"], x
                assert x["severity"] == {"red": "high", "yellow": "medium",
                                         "green": "low"}[x["details"]["to"]], x
            if hb:
                assert hb[-1]["details"]["to"] == band, (acct, band, hb)
        hb = sorted((a for a in first if a["type"] == "health_band"
                     and a["account_id"] == "acct-a3"),
                    key=lambda a: int(a["alert_id"].split(":")[2]))
        assert 1 <= len(hb) <= 2, hb
        assert hb[0]["details"]["from"] == "green", hb
        assert hb[-1]["details"]["to"] == "red" and hb[-1]["severity"] == "high"
        assert st.r.hget("nps:{acct-a3}:summary", "health_band") == "red"
        # totals: exactly one of each other type per account that raised it
        t1 = tally(first)
        assert t1["per_type"]["role_gap"] == 1, t1
        assert t1["per_type"]["usage_drop"] == 1, t1
        assert t1["per_type"]["followup_overdue"] == 2, t1
        assert t1["per_type"]["nps_drop"] == 0, t1
        assert set(t1["per_type"]) <= {"role_gap", "usage_drop",
                                       "followup_overdue", "health_band"}, t1
        # this one npsd published them all: its counter per type agrees
        pub = published_by_type(npsd)
        assert pub == {t: t1["per_type"].get(t, 0) for t in TYPES}, (pub, t1)
        od = sorted((a for a in first if a["type"] == "followup_overdue"),
                    key=lambda a: a["details"]["response_event_id"])
        assert [(a["account_id"], a["details"]["response_event_id"],
                 a["details"]["stage"]) for a in od] == [
            ("acct-a4", "r-a4-1", "acknowledge"),
            ("acct-a4", "r-a4-2", "acknowledge")], od
        assert od[0]["event_id"] is None, "r-a4-1: raised by the timer"
        assert od[0]["details"]["due_at"] == iso(T - timedelta(days=1))
        assert od[1]["event_id"] == "fu-a4-2", "r-a4-2: by the late follow-up"
        assert od[1]["details"]["met_at"] == iso(T - timedelta(hours=1))
        assert int(st.r.hget("nps:{acct-a4}:summary",
                             "overdue_followups")) == 2
        assert int(st.r.hget("nps:csm:piet", "overdue_followups")) == 2

        before = state(st)
        stop(st, npsd)
        npsd = None

        # ---- full replay under a new consumer group
        npsd = st.npsd("roll.interval.s=1", "kafka.group.id=other",
                       now=iso(T), log="npsd-replay.log", metrics=True)
        wait_processed(st, "other", TOPICS)
        # the replaying instance's timer passes ran and drained the outbox
        timers_ran(st, npsd)
        assert outbox_len(st.r) == 0, {
            k: st.r.hgetall(k) for k in st.r.scan_iter("nps:*:outbox")}
        again = alerts(st)
        same_tally(t1, tally(again), "the replay")
        # Publication is at-least-once (an outbox entry published just before
        # a stop may go out again, under the same id): the replay must raise
        # no alert with a new id, and every copy of an id must be identical.
        new_ids = {a["alert_id"] for a in again} - set(ids)
        assert not new_ids, "new alerts on replay: %s" % new_ids
        by_id = {a["alert_id"]: a for a in first}
        for a in again:
            assert a == by_id[a["alert_id"]], "a copy differs: %s" % a
        # the replaying instance published nothing but copies of old ids
        pub = published_by_type(npsd)
        assert sum(pub.values()) == len(again) - len(first), (pub, again)
        after = state(st)
        for k in before:
            assert before[k] == after[k], "%s changed on replay:\n%s\n%s" % (
                k, before[k], after[k])
        stop(st, npsd)
        npsd = None
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

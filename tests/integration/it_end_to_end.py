"""End to end: generated traffic through the real npsd; every account's
window hashes, summary and cohorts are checked against an independent
computation from the generator's own record of what it sent."""
import json
import os
import re
from collections import defaultdict

from harness import (ROLE_ALIASES, Stack, assert_hash_matches, category,
                     epoch_day, main, nps_fields, round1, wait_for,
                     wait_processed)

NOW = "2026-11-20T12:00:00Z"
TODAY = epoch_day(NOW)
SLICES = ["relationship", "transactional", "end_user", "admin",
          "decision_maker", "other"]
BENCH = {"smb": 42, "mid_market": 35, "enterprise": 32}
SURVEY_BENCH = {"relationship": 35, "transactional": 50}


def expected_from(lines):
    accounts, responses = {}, []
    for ln in lines:
        rec = json.loads(ln)
        v = json.loads(rec["value"])
        if rec["topic"] == "accounts":
            accounts[v["account_id"]] = v
        elif rec["topic"] == "nps.responses":
            responses.append(v)
    return accounts, responses


def counts(rs):
    c = defaultdict(lambda: [0, 0, 0])  # slice -> [p, s, d]
    for r in rs:
        cat = category(r["score"])
        idx = {"promoter": 0, "passive": 1, "detractor": 2}[cat]
        role = ROLE_ALIASES.get(r.get("role"), "other")
        for sl in ("all", r.get("survey_type", "relationship"), role):
            c[sl][idx] += 1
    return c


def in_window(r, n, prev=False):
    d = epoch_day(r["submitted_at"])
    if prev:
        return TODAY - 2 * n < d <= TODAY - n
    return TODAY - n < d <= TODAY


def check_window(h, rs):
    c = counts(rs)
    assert_hash_matches(h, nps_fields(*c["all"]) if rs else None)
    for sl in SLICES:
        exp = nps_fields(*c[sl]) if sl in c else None
        assert_hash_matches(h, exp, sl + ".")


def test(build):
    st = Stack(build, name="e2e")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        gen = ("--accounts", "25", "--rate", "0", "--seed", "7", "--days",
               "200", "--now", NOW)
        # Account context first: a response counts in the cohorts of its
        # account's context as of when it is counted, and the two topics'
        # partitions are read independently. The same seed makes the second
        # run repeat the accounts and the first response (deduplicated).
        st.gen(*gen, "--count", "1")
        npsd = st.npsd("roll.interval.s=1", now=NOW)
        wait_processed(st, "npsd")
        wait_for(lambda: all(st.r.exists("nps:{acct-%04d}:account" % i)
                             for i in range(1, 26)), 30, "account contexts")
        # Dashboards read the cohort and theme views while npsd rewrites
        # them: Redis' keyspace events show every DEL and RENAME of a key
        # while the 3,000 responses go through.
        st.r.config_set("notify-keyspace-events", "Eg")
        events = st.r.pubsub()
        events.subscribe("__keyevent@0__:del", "__keyevent@0__:rename_to")
        st.gen(*gen, "--count", "3000", "--out", out)
        with open(out) as f:
            accounts, responses = expected_from(f.readlines())
        assert len(responses) == 3000, len(responses)

        outs = wait_for(lambda: _outputs(st, len(responses)), 120,
                        "one classified message per response")
        by_id = {}
        for m in outs:
            v = json.loads(m.value())
            assert m.key().decode() == v["account_id"], "keyed by account"
            by_id[v["event_id"]] = (m.topic(), v)
        assert len(by_id) == len(responses)
        for r in responses:
            topic, msg = by_id[r["event_id"]]
            cat = category(r["score"])
            assert topic == "nps.%ss" % cat, (topic, cat)
            assert msg["category"] == cat and msg["score"] == r["score"]
            assert msg["account_id"] == r["account_id"]
            if cat == "detractor":
                assert set(msg["followup"]) == {"acknowledge_by", "route_by", "close_by"}

        by_acct = defaultdict(list)
        for r in responses:
            by_acct[r["account_id"]].append(r)
        seen_types = set()
        for acct, rs in by_acct.items():
            w30 = [r for r in rs if in_window(r, 30)]
            w90 = [r for r in rs if in_window(r, 90)]
            prev = [r for r in rs if in_window(r, 90, prev=True)]
            check_window(st.r.hgetall("nps:{%s}:w:30d" % acct), w30)
            check_window(st.r.hgetall("nps:{%s}:w:90d" % acct), w90)
            s = st.r.hgetall("nps:{%s}:summary" % acct)
            c90, cprev = counts(w90), counts(prev)
            f90 = nps_fields(*c90["all"]) if w90 else None
            fprev = nps_fields(*cprev["all"]) if prev else None
            assert int(s["responses_90d"]) == len(w90)
            if f90:
                assert float(s["nps_90d"]) == f90["nps"]
                assert float(s["moe_90d"]) == f90["moe"]
                bench = BENCH.get(accounts[acct].get("segment"), 38)
                assert float(s["benchmark"]) == bench
                assert float(s["benchmark_delta"]) == round1(f90["nps"] - bench)
            else:
                assert "nps_90d" not in s and "moe_90d" not in s
            # survey-type medians, per slice with responses
            for typ, median in SURVEY_BENCH.items():
                c = c90.get(typ)
                if c:
                    seen_types.add(typ)
                    assert float(s["benchmark." + typ]) == median, (acct, s)
                    assert float(s["benchmark_delta." + typ]) == round1(
                        nps_fields(*c)["nps"] - median), (acct, typ, c, s)
                else:
                    assert "benchmark." + typ not in s, (acct, s)
                    assert "benchmark_delta." + typ not in s, (acct, s)
            if f90 and fprev:
                assert float(s["trend_90d"]) == round1(f90["nps"] - fprev["nps"])
            else:
                assert "trend_90d" not in s
            eu, dm = c90.get("end_user"), c90.get("decision_maker")
            if eu and dm:
                gap = round1(nps_fields(*eu)["nps"] - nps_fields(*dm)["nps"])
                assert float(s["role_gap_90d"]) == gap
                flag = 1 if abs(gap) > 15 and sum(eu) >= 3 and sum(dm) >= 3 else 0
                assert int(s["role_gap_flag"]) == flag, (acct, gap, eu, dm)
            last_ms = max(_ms(r["submitted_at"]) for r in rs)
            assert int(s["last_score"]) in {r["score"] for r in rs
                                             if _ms(r["submitted_at"]) == last_ms}
            rank = st.r.zscore("nps:rank:nps_90d", acct)
            assert (rank is None) == (f90 is None)
            if f90:
                assert rank == f90["nps"]

        assert seen_types == set(SURVEY_BENCH), seen_types
        # cohorts converge within a few timer ticks
        allw90 = [r for r in responses if in_window(r, 90)]
        exp = nps_fields(*counts(allw90)["all"])
        wait_for(lambda: _cohort_ok(st, "nps:cohort:all:all:w:90d", exp), 30,
                 "cohort all:all")
        # A response counts in the segment of its account's context as of
        # its counting (its snapshot's account, which its classified
        # message shows). The first run's single response may have been
        # counted before its account's first context record (topics are
        # read independently); every other one was counted after the
        # contexts were in.
        def seg_at_count(r):
            return by_id[r["event_id"]][1]["account"].get("segment")
        first_ids = {responses[0]["event_id"]}
        for r in responses:
            if r["event_id"] not in first_ids:
                assert seg_at_count(r) == \
                    accounts[r["account_id"]].get("segment"), r["event_id"]
        for seg in ("smb", "mid_market", "enterprise"):
            rs = [r for r in allw90 if seg_at_count(r) == seg]
            if rs:
                wait_for(lambda: _cohort_ok(
                    st, "nps:cohort:segment:%s:w:90d" % seg,
                    nps_fields(*counts(rs)["all"])), 30, "cohort " + seg)
        assert st.r.zcard("nps:themes:detractor:w:90d") > 0

        # A view with data was never deleted (a reader would have found it
        # missing until it was written again): it was replaced whole
        dels, renamed = [], set()
        while True:
            m = events.get_message(timeout=1.0)
            if m is None:
                break
            if m["type"] != "message":
                continue
            if m["channel"].endswith(":del"):
                dels.append(m["data"])
            else:
                renamed.add(m["data"])
        events.close()
        views = [k for k in dels if re.match(r"nps:(cohort|themes):.*:w:", k)
                 and st.r.exists(k)]
        assert not views, "views deleted while they had data: %s" % views[:5]
        assert "nps:cohort:all:all:w:90d" in renamed and \
            "nps:themes:detractor:w:90d" in renamed, sorted(renamed)[:10]
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
    finally:
        st.close()


def _ms(ts):
    from datetime import datetime
    if isinstance(ts, int):
        return ts
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def _cohort_ok(st, key, exp):
    h = st.r.hgetall(key)
    try:
        assert_hash_matches(h, exp)
        return True
    except AssertionError:
        return False


def _outputs(st, n):
    topics = ("nps.detractors", "nps.passives", "nps.promoters")
    if sum(st.count(t) for t in topics) < n:
        return None
    return [m for t in topics for m in st.consume_all(t)]


if __name__ == "__main__":
    main(test)

"""Incremental views equal a full recomputation.

For speed, npsd writes only what a batch changed: it computes the views the
account's state stood for before the batch and after it, and writes the
fields that differ. This test runs a mixed stream (responses, usage,
account context, follow-ups, some duplicates), then deletes every derived
view and makes npsd rebuild each one whole from the state records: a timer
tick of every account (a tick writes the account's views whole) and a new
"rolled day" for every cohort and theme ranking. Every derived key must
come out byte for byte as the increments left it.

Then npsd restarts with other segment benchmarks and health weights and
only usage events arrive: the field diffs must notice that the settings
changed. Then it restarts with a 7d window added and a few responses
arrive: the new window's views and theme rankings must appear. The same
rebuild comparison follows each phase.
"""
import json
import os

from harness import (Stack, engine_settled, gen_stream, main,
                     produce_tracked, wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"
TOPICS = ("nps.responses", "accounts", "product.usage", "nps.followups")


def views(r):
    """Every derived view npsd writes, as comparable Python values."""
    out = {}
    for pat in ("nps:{*}:w:*", "nps:cohort:*:w:*", "nps:{*}:summary"):
        for k in r.scan_iter(match=pat, count=1000):
            h = r.hgetall(k)
            h.pop("updated_at", None)  # the instant of the last write
            out[k] = h
    for pat in ("nps:themes:*:w:*", "nps:rank:*"):
        for k in r.scan_iter(match=pat, count=1000):
            out[k] = r.zrange(k, 0, -1, withscores=True)
    return out


def settled(st):
    return engine_settled(st.r)


def rebuild_matches(st, before):
    """Deletes every derived view, makes npsd rebuild them from its state
    records, and asserts the result equals before."""
    accts = [k[len("nps:{"):-len("}:summary")]
             for k in before if k.endswith(":summary")]
    st.r.delete(*before.keys())
    assert not views(st.r), "views left after the delete"
    st.r.zadd("nps:{g}:timers", {a: 0 for a in accts})
    st.r.delete("nps:{g}:rolled")
    wait_for(lambda: st.r.zcount("nps:{g}:timers", 0, 0) == 0 and
             settled(st), 60, "every account and cohort rebuilt")
    after = views(st.r)
    assert set(after) == set(before), set(after) ^ set(before)
    diffs = [k for k in before if before[k] != after[k]]
    for k in diffs[:5]:
        print("DIFF", k, "\n  incremental:", before[k],
              "\n  recomputed: ", after[k])
    assert not diffs, "%d views differ after a full recomputation" % \
        len(diffs)
    return accts


def test(build):
    st = Stack(build, name="recompute")
    try:
        npsd = st.npsd("roll.interval.s=1", now=NOW)
        st.wait_log(npsd, "partitions assigned", timeout=30)
        out = os.path.join(st.dir, "sent.jsonl")
        gen = gen_stream(st, out, 1500, 0, 23, NOW, accounts=30,
                         extra=["--usage-per-response", "3",
                                "--followup-ratio", "0.6",
                                "--dup-ratio", "0.05"])
        _, err = gen.communicate(timeout=120)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", TOPICS, timeout=120)
        wait_for(lambda: settled(st), 60, "cohort queue drained")
        before = views(st.r)
        n_acct = sum(1 for k in before if k.endswith(":summary"))
        n_cohort = sum(1 for k in before if k.startswith("nps:cohort:"))
        assert n_acct == 30, n_acct
        assert n_cohort > 20, n_cohort
        assert any("active_users_30d" in v for k, v in before.items()
                   if k.endswith(":summary")), "no usage counted"

        # Throw the caches away and make every view rebuild from buckets.
        accts = rebuild_matches(st, before)
        assert npsd.poll() is None, "npsd exited"
        st.stop(npsd)

        # Other settings, same windows; usage only: the health shortcuts
        # must notice the settings changed. Then compare again.
        npsd = st.npsd("roll.interval.s=1", "benchmark.smb=50",
                       "benchmark.enterprise=20",
                       "health.weight.adoption=40", now=NOW,
                       log="npsd2.log")
        st.wait_log(npsd, "partitions assigned", timeout=30)
        items = []
        for i, a in enumerate(accts):
            for k in range(2):  # a new user, then the same one again
                items.append((a.encode(), json.dumps({
                    "event_id": "u-recompute-%d-%d" % (i, k),
                    "account_id": a, "user_id": "u-new-%d" % i,
                    "type": "session",
                    "occurred_at": "2026-11-20T11:00:00Z"}).encode()))
        produce_tracked(st, "product.usage", items)
        wait_processed(st, "npsd", TOPICS, timeout=60)
        wait_for(lambda: settled(st), 60, "cohort views settled")
        before = views(st.r)
        bench = {v.get("benchmark") for k, v in before.items()
                 if k.endswith(":summary")}
        assert "42" not in bench and "32" not in bench, bench
        rebuild_matches(st, before)
        assert npsd.poll() is None, "npsd exited"
        st.stop(npsd)

        # A 7d window added, and some responses with themes: the theme
        # rankings have no cache signature and must be rebuilt.
        npsd = st.npsd("roll.interval.s=1", "windows=7d,30d,90d", now=NOW,
                       log="npsd3.log")
        st.wait_log(npsd, "partitions assigned", timeout=30)
        gen = gen_stream(st, os.path.join(st.dir, "sent3.jsonl"), 60, 0, 29,
                         NOW, accounts=30)
        _, err = gen.communicate(timeout=120)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", TOPICS, timeout=60)
        wait_for(lambda: settled(st), 60, "cohort views settled")
        before = views(st.r)
        assert any(k.endswith(":w:7d") for k in before), "no 7d window"
        assert any(k.startswith("nps:themes:") and k.endswith(":w:7d")
                   for k in before), "no 7d theme ranking"
        rebuild_matches(st, before)
        assert npsd.poll() is None, "npsd exited"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

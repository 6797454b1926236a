"""npsctl reset / replay (SPEC §8: "replays or resets state").

reset and replay change nothing without --yes; replay refuses while an npsd
of the group runs; after npsd stops, replay --yes empties Redis and rewinds
the group, and the restarted npsd rebuilds exactly the same state: every
key under the prefix, dumped by type, equal before and after, except the
volatile keys and fields listed in harness.VOLATILE with the reason.
"""
import os

from harness import (FaultStack, check_exact, dump_differences,
                     engine_settled, main,
                     redis_dump, wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"


def settled(st):
    """The cohort timer has nothing left to do."""
    return engine_settled(st.r)


# The development broker waits session.timeout.ms - 1 s for missing members
# at each rebalance, and a client gives up on its JoinGroup request after
# its own session.timeout.ms + 3 s: every member of the group (npsd and
# npsctl replay) uses the same short session timeout.
GROUP = ("kafka.session.timeout.ms=6000", "kafka.heartbeat.interval.ms=500")


def test(build):
    st = FaultStack(build, name="replay")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        st.gen("--accounts", "10", "--count", "800", "--rate", "0",
               "--seed", "3", "--days", "200", "--now", NOW, "--out", out)
        sets = ("roll.interval.s=1", "http.listen=") + GROUP
        npsd = st.npsd(*sets, now=NOW, log="npsd-1.log")
        wait_processed(st, "npsd", timeout=60)
        assert not check_exact(st, out, NOW)
        wait_for(lambda: settled(st), 30, "the cohort views settled")
        before = redis_dump(st.r, with_ttl=True)
        kinds = {t for t, _, _ in before.values()}
        assert {"hash", "zset", "set"} <= kinds and len(before) > 100, \
            (kinds, len(before))
        keys = st.r.dbsize()
        redis_opt = ["--redis-port", str(st.redis_port)]

        # without --yes: a count, nothing changed
        for cmd in (["reset"], ["replay", "--bootstrap", st.bootstrap]):
            r = st.npsctl(*cmd, *redis_opt, check=False)
            assert r.returncode == 2, (cmd, r.returncode, r.stdout, r.stderr)
            assert "would delete %d keys" % keys in r.stdout, r.stdout
            assert st.r.dbsize() == keys

        # an npsd of the group is running: refused, nothing changed
        r = st.npsctl("replay", "--yes", "--bootstrap", st.bootstrap,
                      "--timeout", "20", "-X", "session.timeout.ms=6000",
                      *redis_opt, check=False)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "other active members" in r.stderr, r.stderr
        assert st.r.dbsize() == keys

        assert st.stop(npsd) == 0
        r = st.npsctl("replay", "--yes", "--bootstrap", st.bootstrap,
                      "-X", "session.timeout.ms=6000", *redis_opt,
                      check=False)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert "deleted %d keys" % keys in r.stdout, r.stdout
        assert st.r.dbsize() == 0
        for t in ("nps.responses", "accounts"):
            got = st.committed("npsd", t, 4)
            assert all(o == 0 for o in got.values()), (t, got)

        npsd = st.npsd(*sets, now=NOW, log="npsd-2.log")
        wait_processed(st, "npsd", timeout=60)
        probs = check_exact(st, out, NOW)
        assert not probs, probs[:10]
        wait_for(lambda: settled(st), 30, "the cohort views settled")
        d = dump_differences(before, redis_dump(st.r, with_ttl=True))
        assert not d, "the replay rebuilt another state:\n" + "\n".join(d)
        assert st.stop(npsd) == 0

        r = st.npsctl("reset", "--yes", *redis_opt)
        assert "deleted" in r.stdout and st.r.dbsize() == 0, r.stdout
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

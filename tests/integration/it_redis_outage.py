"""Redis outage mid-stream (SPEC §3 Faults): consumption pauses, retries
with capped backoff and resumes by itself; nothing is lost, nothing is
counted twice, npsd never exits, and the outage is logged once when it
starts and once when it ends (no per-message logging).

redis-server runs with appendonly yes / appendfsync always so that its
state survives the restart on the same port. The outage lasts
IT_OUTAGE_SECONDS (default 15; the production-readiness issue asks for a
minute: IT_OUTAGE_SECONDS=60).
"""
import os
import time

from harness import (FaultStack, check_exact, committed_sum, gen_stream,
                     main, npsd_events, wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"
COUNT = 6000
OUTAGE = float(os.environ.get("IT_OUTAGE_SECONDS", "15"))


def test(build):
    st = FaultStack(build, name="redis-outage", persist=True)
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        npsd = st.npsd("roll.interval.s=1", "http.listen=", now=NOW)
        st.wait_log(npsd, "partitions assigned", timeout=30)
        gen = gen_stream(st, out, COUNT, 500, 11, NOW)
        wait_for(lambda: committed_sum(st, "npsd", "nps.responses") >= 1000,
                 60, "1000 responses committed")
        assert gen.poll() is None, "the stream ended before the outage"

        st.stop_redis()
        at_stop = committed_sum(st, "npsd", "nps.responses")
        time.sleep(OUTAGE)
        assert npsd.poll() is None, "npsd exited during the outage"
        during = committed_sum(st, "npsd", "nps.responses")
        # at most the batch in flight when Redis went away may commit
        assert during - at_stop <= 2000, (at_stop, during)
        log = st.log(npsd)
        assert npsd_events(log, "redis unavailable") == 1, \
            "expected one 'redis unavailable' line:\n" + log[-3000:]
        assert npsd_events(log, "redis back") == 0
        st.start_redis()

        _, err = gen.communicate(timeout=90)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", timeout=90)
        assert npsd.poll() is None, "npsd exited"
        probs = check_exact(st, out, NOW)
        assert not probs, probs[:10]

        log = st.log(npsd)
        assert npsd_events(log, "redis unavailable") == 1, log[-3000:]
        assert npsd_events(log, "redis back") == 1, log[-3000:]
        # one line per state change, not per message or retry
        warns = [ln for ln in log.splitlines() if "level=warn" in ln
                 or "level=error" in ln]
        assert len(warns) <= 5, "\n".join(warns[:20])
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
        print("outage %.0fs, %d committed before it" % (OUTAGE, at_stop))
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

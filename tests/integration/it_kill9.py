"""kill -9 npsd mid-batch (SPEC §3): with a stream flowing, npsd is killed
without warning while it holds a batch it consumed but could not apply
(Redis briefly refuses writes) and is started again in the same group.
The uncommitted batch is delivered again, shown by the counters: the two
instances together consumed more messages than the input topics hold.
Redis must equal the independent computation (nothing counted twice),
every response must be published at least once, and the group must end
up committed to the end of the input topics.
"""
import os
import signal

from harness import (FaultStack, check_exact, committed_sum, counter,
                     gen_stream, input_total, kill_holding_batch, main,
                     wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"
COUNT = 10000
# a dead member holds its partitions until the session times out: keep
# that short so that the restarted instance gets them quickly
GROUP = ("kafka.session.timeout.ms=6000", "kafka.heartbeat.interval.ms=500")


def test(build):
    st = FaultStack(build, name="kill9")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        sets = ("roll.interval.s=1", "http.listen=") + GROUP
        npsd = st.npsd(*sets, now=NOW, log="npsd-1.log", metrics=True)
        st.wait_log(npsd, "partitions assigned", timeout=30)
        # 500/s: the stream lasts 20 s, so that a sanitized build (about
        # a third as fast) is still mid-stream at the kill, which follows
        # a Redis timeout and a retry (at 800/s a CI run ended first)
        gen = gen_stream(st, out, COUNT, 500, 9, NOW,
                         extra=["--dup-ratio", "0.05"])
        wait_for(lambda: committed_sum(st, "npsd", "nps.responses") >= 2000,
                 60, "2000 responses committed")
        assert gen.poll() is None, "the stream ended before the kill"
        consumed1, committed1 = kill_holding_batch(st, npsd)
        assert npsd.returncode == -signal.SIGKILL
        assert consumed1 > committed1, (consumed1, committed1)
        at_kill = committed_sum(st, "npsd", "nps.responses")
        assert gen.poll() is None, "the stream ended before the kill"

        npsd = st.npsd(*sets, now=NOW, log="npsd-2.log", metrics=True)
        _, err = gen.communicate(timeout=90)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", timeout=90)
        assert npsd.poll() is None, "restarted npsd exited"
        probs = check_exact(st, out, NOW)
        assert not probs, probs[:10]
        assert "level=error" not in st.log(npsd), st.log(npsd)[-3000:]
        # the redelivery: consumed > produced over both instances
        consumed2 = counter(npsd, "npsd_messages_consumed_total")
        total = input_total(st)
        assert consumed1 + consumed2 > total, (consumed1, consumed2, total)
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
        print("killed with %d responses committed; consumed %d + %d of %d "
              "input messages (%d again)" % (
                  at_kill, consumed1, consumed2, total,
                  consumed1 + consumed2 - total))
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

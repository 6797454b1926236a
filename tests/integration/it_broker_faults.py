"""Broker faults (SPEC §3: "Broker down: retried, no crash"), injected
through `npsctl broker --control` while a stream flows: the broker goes
down for a few seconds and comes back (npsd must log that every broker is
down); then Produce requests fail with retriable errors
(NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT) and Fetch requests fail;
then, with the stream and npsd paused so that npsd's own outputs are the
only Produce requests, five Produce requests fail for good
(TOPIC_AUTHORIZATION_FAILED): npsd must see the failed deliveries and
produce again (npsd_delivery_retries_total, "producing again" logged);
then every request takes 500 ms longer. npsd must not crash, lose or
double count: every acknowledged input reaches nps.responses, Redis equals
the independent computation and every response is published at least
once.
"""
import json
import os
import signal
import time

from harness import (FaultStack, check_exact, committed_sum, counter,
                     gen_stream, load_sent, main, npsd_events, topic_responses,
                     wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"
COUNT = 8000
DOWN_SECONDS = float(os.environ.get("IT_BROKER_DOWN_SECONDS", "5"))
# How long npsd gets to catch up after a fault: a retried request can wait
# up to librdkafka's socket.timeout.ms (60 s), so 60 s left no margin. (A
# CI run timed out at 60 s once; the likelier cause, a partition never
# fetched after an assignment followed by a pause, is fixed in npsd_kafka.)
CATCH_UP = 150


def own_responses(n):
    """Responses produced by the test itself while npsd is paused."""
    return [("acct-bf-%d" % (i % 3), json.dumps(
        {"event_id": "bf-%d" % i, "account_id": "acct-bf-%d" % (i % 3),
         "user_id": "u-bf-%d" % i, "score": i % 11,
         "submitted_at": "2026-11-19T10:00:00Z"})) for i in range(n)]


def test(build):
    st = FaultStack(build, name="broker-faults", control=True)
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        assert st.broker_cmd("bogus").startswith("error: unknown command")
        assert st.broker_cmd("down 7").startswith("error: broker id")
        assert st.broker_cmd("errors Nope 1 REQUEST_TIMED_OUT").startswith(
            "error: unknown ApiKey")
        npsd = st.npsd("roll.interval.s=1", now=NOW, metrics=True)
        st.wait_log(npsd, "partitions assigned", timeout=30)
        # The input producer is at-least-once without idempotence: with
        # idempotence on, a CI run saw the development broker acknowledge
        # two inputs under these faults that nps.responses never held
        # (librdkafka 2.0.2's idempotent sequence handling after "possibly
        # persisted" errors against the mock cluster), lost before npsd
        # could see them. Retries may duplicate an input instead, which
        # npsd must count once anyway.
        gen = gen_stream(st, out, COUNT, 500, 17, NOW,
                         extra=("-X", "enable.idempotence=false",
                                "-X", "acks=all"))

        def progress(n):
            wait_for(lambda: committed_sum(st, "npsd", "nps.responses") >= n,
                     60, "%d responses committed" % n)

        progress(1000)
        st.broker_ok("down 1")
        # the outage reached npsd: it reports every broker down
        st.wait_log(npsd, "kafka brokers down", timeout=30)
        time.sleep(DOWN_SECONDS)
        assert npsd.poll() is None, "npsd exited while the broker was down"
        st.broker_ok("up 1")
        progress(2500)

        st.broker_ok("errors Produce 20 NOT_LEADER_FOR_PARTITION")
        progress(3000)
        st.broker_ok("errors Produce 10 REQUEST_TIMED_OUT")
        st.broker_ok("errors Fetch 10 NOT_LEADER_FOR_PARTITION")
        progress(3500)

        # Failed deliveries of npsd's own outputs: with the stream paused
        # and npsd caught up and paused, the test's responses are acked
        # before the errors are set, so npsd's outputs are the only
        # Produce requests that can meet them.
        # (a slow build may have sent the whole stream by now)
        running = gen.poll() is None
        if running:
            gen.send_signal(signal.SIGSTOP)
        try:
            wait_processed(st, "npsd", timeout=CATCH_UP)
            retries0 = counter(npsd, "npsd_delivery_retries_total")
            npsd.send_signal(signal.SIGSTOP)
            try:
                st.produce("nps.responses", own_responses(30))
                st.broker_ok("errors Produce 5 TOPIC_AUTHORIZATION_FAILED")
            finally:
                npsd.send_signal(signal.SIGCONT)
            wait_for(lambda: counter(npsd, "npsd_delivery_retries_total")
                     > retries0, 60, "npsd to produce failed outputs again")
            wait_processed(st, "npsd", timeout=CATCH_UP)
        finally:
            if running:
                gen.send_signal(signal.SIGCONT)
        assert npsd_events(st.log(npsd), "producing again") >= 1

        st.broker_ok("rtt 1 500")
        time.sleep(5)
        st.broker_ok("clear")
        assert npsd.poll() is None, "npsd exited"

        _, err = gen.communicate(timeout=90)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", timeout=CATCH_UP)
        assert npsd.poll() is None, "npsd exited"
        # Every input the broker acknowledged is in nps.responses (nothing
        # lost before npsd), then judged: Redis and the outputs.
        sent = set(json.loads(v)["event_id"] for t, k, v in load_sent(out)
                   if t == "nps.responses")
        sent |= {json.loads(v)["event_id"] for k, v in own_responses(30)}
        held = set(r["event_id"] for r in topic_responses(st))
        assert held == sent, "acknowledged but not in nps.responses: %d " \
            "(e.g. %s); in it but never sent: %s" % (
                len(sent - held), sorted(sent - held)[:5],
                sorted(held - sent)[:5])
        probs = check_exact(st, out, NOW, source="topic")
        assert not probs, probs[:10]
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

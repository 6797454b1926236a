"""npsd throughput benchmark: one machine, a private redis-server and the
embedded broker, npsd fed by `npsctl gen` at full speed.

    /usr/bin/python3 tests/bench/run.py [--build build] [--responses N]
        [--usage N] [--accounts N] [--partitions N] [--instances N]

Each scenario first produces its whole input (so the broker is not the
generator's bottleneck), then starts npsd and times how long it takes until
every input offset is committed by npsd's consumer group. The run verifies
its counts before it reports a number: every response must have its
classified output, and the group's committed offsets must equal the topics'
end offsets. Prints a table; nothing here is a pass/fail test.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
from harness import Stack, wait_for  # noqa: E402

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

OUT_TOPICS = ("nps.detractors", "nps.passives", "nps.promoters")


def end_offsets(st, topic):
    c = Consumer({"bootstrap.servers": st.bootstrap, "group.id": "bench-probe"})
    md = c.list_topics(topic, timeout=10)
    ends = {}
    for p in md.topics[topic].partitions:
        ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    c.close()
    return ends


def lag(st, topics, partitions):
    total = 0
    for t in topics:
        ends = end_offsets(st, t)
        committed = st.committed("npsd", t, partitions)
        for p, e in ends.items():
            c = committed.get(p, -1)
            total += e - (c if c is not None and c >= 0 else 0)
    return total


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def scenario(build, name, responses, usage_per_response, accounts, partitions,
             instances):
    st = Stack(build, partitions=partitions, name="bench")
    try:
        st.gen("--accounts", str(accounts), "--count", str(responses),
               "--rate", "0", "--seed", "11", "--days", "30",
               "--usage-per-response", str(usage_per_response))
        inputs = ["nps.responses", "accounts"]
        if usage_per_response:
            inputs.append("product.usage")
        total = sum(st.count(t) for t in inputs)
        procs = [st.npsd("batch.max=5000", "batch.wait.ms=20",
                         log="npsd-%d.log" % i) for i in range(instances)]
        for p in procs:
            st.wait_log(p, "partitions assigned", timeout=60)
        t0 = time.time()
        c0 = [cpu_seconds(p.pid) for p in procs]
        wait_for(lambda: lag(st, inputs, partitions) == 0, 1800,
                 "npsd to commit every input offset", interval=0.5)
        elapsed = time.time() - t0
        cpu = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, c0))
        outs = sum(st.count(t) for t in OUT_TOPICS)
        assert outs >= responses, "only %d outputs for %d responses" % (
            outs, responses)
        rss = max(rss_kb(p.pid) or 0 for p in procs)
        cs = st.r.info("commandstats").get("cmdstat_evalsha", {})
        mem = st.r.info("memory")["used_memory"]
        return {"scenario": name, "events": total, "seconds": elapsed,
                "rate": total / elapsed, "cpu_s_per_m": cpu / total * 1e6,
                "rss_mb": rss / 1024.0,
                "redis_us_per_call": cs.get("usec_per_call", 0),
                "redis_calls": cs.get("calls", 0),
                "redis_mb": mem / 1048576.0}
    finally:
        st.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--responses", type=int, default=30000)
    ap.add_argument("--usage", type=int, default=0,
                    help="usage events per response in the mix scenario")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--instances", type=int, default=1)
    a = ap.parse_args()
    rows = [scenario(a.build, "responses", a.responses, 0, a.accounts,
                     a.partitions, a.instances)]
    if a.usage:
        rows.append(scenario(a.build, "mix 1:%d" % a.usage,
                             a.responses // a.usage or 1, a.usage, a.accounts,
                             a.partitions, a.instances))
    print("%-12s %9s %8s %10s %10s %8s %12s %9s" % (
        "scenario", "events", "seconds", "events/s", "cpu s/M", "rss MB",
        "redis us/call", "redis MB"))
    for r in rows:
        print("%-12s %9d %8.1f %10.0f %10.1f %8.1f %12.0f %9.1f" % (
            r["scenario"], r["events"], r["seconds"], r["rate"],
            r["cpu_s_per_m"], r["rss_mb"], r["redis_us_per_call"],
            r["redis_mb"]))


if __name__ == "__main__":
    main()

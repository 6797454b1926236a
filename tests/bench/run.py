"""npsd benchmark: one command, one machine.

    /usr/bin/python3 tests/bench/run.py            # full run, ~10-15 min
    /usr/bin/python3 tests/bench/run.py --quick    # smoke run, a few minutes

Every scenario starts its own private redis-server (free port, no
persistence; `cluster` starts three cluster-enabled ones) and development
broker (`npsctl broker`, librdkafka's mock cluster) and tears them down
afterwards. Method and results: docs/benchmarks.md.

Scenarios (--quick runs them with a tenth of the input):

  responses   pre-produced survey responses only
  usage       pre-produced product.usage events only (and account records)
  mix         1 response per 200 usage events, interleaved across accounts
  scale2      the responses input consumed by 2 npsd instances in one group
  rss100k     99,999 accounts (npsctl gen's maximum): npsd peak RSS
  latency     `npsctl gen --rate 2000` while npsd runs: end-to-end latency
  latency500  the same at 500 responses/s
  memory90    90 days of synthetic history: Redis bytes per active account
  cluster     the responses and the usage inputs on a Redis Cluster of 3
              primaries (redis.cluster=on): Redis CPU per event per node
  redis       Redis' own rate: redis-benchmark for the commands the store
              issues, and a captured npsd run (responses, then usage)
              replayed on an empty Redis: Redis CPU per event as npsd sent
              it, and with every write.lua call replaced by the commands it
              ran (what the guard script itself costs). Until the state
              engine moved into C this scenario timed apply.lua per call
              and per mode, and its commands without Lua; apply.lua is gone.

Throughput scenarios pre-produce their whole input with `npsctl gen --rate 0`
(so the generator does not compete for the 2 cores while npsd is timed),
then run the pass-through ceiling (build/npsd_passthrough, npsd's librdkafka
settings, no work) and npsd on the same input, one after the other, each in
its own consumer group. "Sustained" is the rate between the moments 10 % and
90 % of the input was committed (start-up and the last partial batches
excluded). The development broker keeps at most 5 MiB or 100k messages per
partition, so topics get many partitions (--partitions, default 64) and the
run checks that nothing was trimmed.

CPU and rates are taken up to the moment the group committed its last
offset, as in every run before the state engine moved into C. npsd applies
global effects (cohort, theme and owner deltas, view refreshes) within about
a second after that, so npsd keeps running until the engine has settled (no
`nps:*:gq` key, `SCARD nps:{g}:dirty` = 0, `nps:{g}:rolled` present, every
account's outbox empty) and the CPU up to that moment is printed too.

Every number is printed only after the run verified its counts: input topics
hold exactly what the generator delivered (low watermarks 0), the consumer
group committed every end offset, npsd's /metrics counted every message once
(consumed == input, accepted == responses, rejected == 0), every response has
exactly one classified output, Redis independently holds every response
(sum of the accounts' 90d window counts) and every usage event (the usage
dedupe sets), and the engine settled. A scenario that fails a check prints
FAILED with the reason and no numbers; the others still run, and the command
exits 1.

Nothing here is a pass/fail test of performance: targets are compared and
shown, never asserted.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import REPO, Stack, epoch_day, free_port, wait_for  # noqa: E402
from rcluster import RedisCluster  # noqa: E402

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

OUT_TOPICS = ("nps.detractors", "nps.passives", "nps.promoters")
PT_OUT = "pt.out"
TARGETS = {"responses": 50000, "usage": 150000, "mix_fraction": 0.5,
           "p99_ms": 25, "rss_mib": 64, "redis_kib_per_account": 16}
VERBOSE = True
EXTRA_SETS = []  # --set
# The development broker answers a fetch that found no data only after
# fetch.wait.max.ms (librdkafka default 500), even when data arrives in the
# meantime; Kafka answers at once. Both consumers, npsd and the
# pass-through, get the same lower wait so that the latency figures measure
# npsd rather than that wait.
FETCH_WAIT_MS = 10


def log(*a):
    if VERBOSE:
        print("  ..", *a, flush=True)


# ---- processes and the stack -----------------------------------------------

def proc_cpu(pid):
    """utime + stime of a process (all threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid, key):
    """A kB field of /proc/<pid>/status (VmHWM, VmRSS), in MiB."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def cpu_jiffies():
    """(steal, total) jiffies of all CPUs: a virtual machine's host may
    take CPU away (steal), which slows every process here."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[7], sum(v[:8])


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class BenchStack(Stack):
    """Stack whose broker also creates extra topics (prefixed generator
    topics, the pass-through output) with the same partition count, and
    whose Redis may log every command to SLOWLOG (profile runs)."""

    def __init__(self, build, partitions, extra_topics=()):
        self.extra_topics = [PT_OUT] + list(extra_topics)
        self.partitions = partitions
        super().__init__(build, partitions=partitions, name="bench")
        self.probe = Consumer({"bootstrap.servers": self.bootstrap,
                               "group.id": "bench-probe",
                               "enable.auto.commit": False})
        self.groups = {}

    def _spawn(self, argv, logname, env=None):
        if logname == "broker.log":
            argv = list(argv) + ["--topics", ",".join(self.extra_topics)]
        return Stack._spawn(self, argv, logname, env)

    def close(self):
        for c in list(self.groups.values()) + [self.probe]:
            try:
                c.close()
            except Exception:
                pass
        Stack.close(self)

    def watermarks(self, topic):
        """{partition: (low, high)}"""
        md = self.probe.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        return {p: self.probe.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10) for p in parts}

    def ends(self, topics):
        return {(t, p): hi for t in topics
                for p, (lo, hi) in self.watermarks(t).items()}

    def committed_map(self, group, tps):
        c = self.groups.get(group)
        if c is None:
            c = self.groups[group] = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": group,
                "enable.auto.commit": False})
        got = c.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in got}

    def check_untrimmed(self, topics):
        for t in topics:
            for p, (lo, hi) in self.watermarks(t).items():
                if lo != 0:
                    raise AssertionError(
                        "%s[%d] was trimmed by the development broker "
                        "(low watermark %d): use more --partitions or a "
                        "smaller input" % (t, p, lo))

    def high_sum(self, topics):
        return sum(hi for t in topics for lo, hi in self.watermarks(t).values())

    def nodes(self):
        """[(port, client, pid)] of every Redis primary: one here."""
        return [(self.redis_port, self.r, self.redis_proc.pid)]

    def npsd_bench(self, sets, log_name, http_port=None):
        """npsd with the shipped batch defaults (the harness lowers
        batch.wait.ms for tests) and, given a port, /metrics (the harness
        sets http.listen= first; the last --set wins)."""
        argv = ["batch.max=2000", "batch.wait.ms=20",
                "kafka.fetch.wait.max.ms=%d" % FETCH_WAIT_MS] + EXTRA_SETS + \
            list(sets)
        if http_port:
            argv.append("http.listen=127.0.0.1:%d" % http_port)
        return self.npsd(*argv, log=log_name)

    def passthrough(self, group, topics):
        argv = [os.path.join(self.build, "npsd_passthrough"), "--bootstrap",
                self.bootstrap, "--group", group, "--out", PT_OUT,
                "--batch", "2000", "--wait-ms", "20",
                "-X", "session.timeout.ms=6000",
                "-X", "fetch.wait.max.ms=%d" % FETCH_WAIT_MS] + list(topics)
        logf = open(os.path.join(self.dir, "passthrough-%s.log" % group), "ab")
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=logf,
                             cwd=REPO, text=True)
        p.logname = logf.name
        self.procs.append(p)
        return p


class ClusterBenchStack(BenchStack):
    """BenchStack whose Redis is a Redis Cluster of 3 primaries on this
    machine (tests/integration/rcluster.py); npsd gets one node's port
    and redis.cluster=on. self.r is a plain client of that node only:
    per-account keys go through nodes()."""

    def start_redis(self):
        self.cluster = RedisCluster(primaries=3, name="bench-cluster")
        self.redis_port = self.cluster.ports[0]
        self.redis_proc = self.cluster.procs[self.redis_port]

    def stop_redis(self):
        raise NotImplementedError("a cluster node is not stopped here")

    def nodes(self):
        if not getattr(self, "_nodes", None):  # no failover here: once
            self._nodes = [(port, self.cluster.client(port),
                            self.cluster.procs[port].pid)
                           for port in sorted(self.cluster.primaries())]
        return self._nodes

    def npsd_bench(self, sets, log_name, http_port=None):
        return BenchStack.npsd_bench(self, ["redis.cluster=on"] + list(sets),
                                     log_name, http_port)

    def close(self):
        try:
            BenchStack.close(self)
        finally:
            self.cluster.close()


def gen(st, *args):
    """npsctl gen; returns {topic: produced} after checking it delivered
    everything."""
    r = st.gen(*[str(a) for a in args])
    line = r.stderr.strip().splitlines()[-1]
    m = re.search(r"delivered=(\d+) failed=(\d+) undelivered=(\d+)", line)
    if not m or m.group(2) != "0" or m.group(3) != "0":
        raise AssertionError("npsctl gen did not deliver everything: " + line)
    head = line.split("|")[0].replace("npsctl gen:", "")
    counts = {k: int(v) for k, v in (kv.split("=") for kv in head.split())}
    log("gen", " ".join(str(a) for a in args[:12]), "->", line.split("|")[2]
        .strip())
    return counts


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as f:
        text = f.read().decode()
    out = {}
    for ln in text.splitlines():
        if ln.startswith("#") or not ln.strip():
            continue
        k, v = ln.rsplit(" ", 1)
        out[k] = float(v)
    return out


STAGES = ("parse", "redis", "enrich", "deliver", "commit", "alerts",
          "timers")


def stage_split(ms):
    """npsd_loop_stage_seconds_total per stage, summed over instances'
    /metrics dicts, as shares of their total."""
    secs = {st: sum(m.get('npsd_loop_stage_seconds_total{stage="%s"}' % st,
                          0) for m in ms) for st in STAGES}
    tot = sum(secs.values()) or 1
    return {st: v / tot for st, v in secs.items()}


def fmt_split(split):
    return ", ".join("%s %.0f %%" % (k, 100 * v) for k, v in split.items()
                     if v >= 0.005)


def hist_quantile(m, name, q):
    """Upper bound of the bucket holding quantile q of a histogram."""
    buckets = sorted((float(k.split('le="')[1].rstrip('"}'))
                      if "+Inf" not in k else float("inf"), v)
                     for k, v in m.items() if k.startswith(name + "_bucket"))
    total = m.get(name + "_count", 0)
    if not total:
        return None
    for le, cum in buckets:
        if cum >= q * total:
            return le
    return float("inf")


def node_cpu(client):
    """A Redis node's own CPU seconds so far (user + system, all
    threads)."""
    i = client.info("cpu")
    return i["used_cpu_user"] + i["used_cpu_sys"]


def nodes_cpu(st):
    """{port: CPU seconds} of every Redis primary of the stack."""
    return {port: node_cpu(c) for port, c, pid in st.nodes()}


def commandstats(st):
    """{command: (calls, usec)} summed over the primaries; commands run by
    scripts count too (and inside their EVAL's time)."""
    out = {}
    for port, c, pid in st.nodes():
        for k, v in c.info("commandstats").items():
            name = k[len("cmdstat_"):]
            calls, usec = out.get(name, (0, 0))
            out[name] = (calls + v["calls"], usec + v["usec"])
    return out


def eval_stats(c):
    """(calls, usec) of EVAL and EVALSHA on one node: write.lua calls."""
    cs = c.info("commandstats")
    calls = usec = 0
    for k in ("cmdstat_eval", "cmdstat_evalsha"):
        calls += cs.get(k, {}).get("calls", 0)
        usec += cs.get(k, {}).get("usec", 0)
    return calls, usec


# ---- the engine's settle state, on every node -------------------------------

def scan_nodes(st, pattern):
    """(client, key) of every key matching pattern on every primary."""
    for port, c, pid in st.nodes():
        for k in c.scan_iter(pattern, count=10000):
            yield c, k


def node_of(st, key):
    """The client of the primary that holds key's slot."""
    nodes = st.nodes()
    if len(nodes) == 1:
        return nodes[0][1]
    c0 = nodes[0][1]
    slot = c0.execute_command("CLUSTER", "KEYSLOT", key)
    for lo, hi, primary, *_ in c0.execute_command("CLUSTER", "SLOTS"):
        if lo <= slot <= hi:
            for port, c, pid in nodes:
                if port == int(primary[1]):
                    return c
    raise AssertionError("no primary holds slot %d of %s" % (slot, key))


def outbox_total(st):
    """Alerts waiting for the broker: HLEN summed over every account's
    outbox (nps:{A}:outbox)."""
    return sum(c.hlen(k) for c, k in scan_nodes(st, "nps:*:outbox"))


def settle_cheap(st):
    """The settle conditions that cost Redis nothing to check: no
    cohort, theme or owner view waiting for its refresh (SCARD
    nps:{g}:dirty = 0), the daily roll done (nps:{g}:rolled exists)."""
    g = node_of(st, "nps:{g}:dirty")
    why = []
    dirty = g.scard("nps:{g}:dirty")
    if dirty:
        why.append("SCARD nps:{g}:dirty = %d" % dirty)
    if not g.exists("nps:{g}:rolled"):
        why.append("no nps:{g}:rolled")
    return why


def settle_state(st):
    """What still keeps the engine from having settled: a list of reasons,
    empty when settled (settle_cheap(), and no global delta waiting in any
    account's nps:{A}:gq: a SCAN of every key)."""
    why = settle_cheap(st)
    gq = sum(1 for _ in scan_nodes(st, "nps:*:gq"))
    if gq:
        why.append("%d accounts with global deltas waiting (nps:*:gq)" % gq)
    return why


def wait_settled(st, snap, timeout=120):
    """Waits for the engine to settle and every outbox to drain. snap()
    returns the CPU readings to keep: they are taken when the cheap
    conditions hold, just before the SCANs of every key that check the
    others (about a microsecond of Redis per key), and a SCAN pass that
    found work left is measured and taken out of the readings, so the
    figures hold npsd's work and not the benchmark's checks. Returns
    (seconds waited, alerts still in the outboxes, (npsd CPU, {port:
    Redis CPU})). The outbox only drains when the broker acknowledged the
    alerts (retried after 30 s): an outbox still holding some at the
    timeout is reported, not failed; the engine not settled fails."""
    t0 = time.time()
    deadline = t0 + timeout
    spent = {}  # port -> Redis CPU of SCAN passes that found work left
    while True:
        why = settle_cheap(st)
        if not why:
            npsd_cpu, ncpu = snap()
            why = settle_state(st)
            box = outbox_total(st)
            if not why and not box:
                return time.time() - t0, 0, (npsd_cpu, {
                    port: v - spent.get(port, 0) for port, v in ncpu.items()})
            after = nodes_cpu(st)
            for port in ncpu:
                spent[port] = spent.get(port, 0) + after[port] - ncpu[port]
            if time.time() > deadline and not why:
                return time.time() - t0, box, (npsd_cpu, {
                    port: v - spent.get(port, 0) for port, v in ncpu.items()})
        if time.time() > deadline:
            raise AssertionError("the engine did not settle within %d s: "
                                 "%s" % (timeout, "; ".join(why)))
        time.sleep(0.2)


# ---- one timed consumer run -----------------------------------------------

def timed_run(st, kind, group, topics, ends, instances=1, sets=(),
              perf=None, timeout=900):
    """Runs npsd (kind "npsd", `instances` of them) or the pass-through
    (kind "pt") in `group` until it committed every end offset in `ends`.
    Returns the timings, CPU and RSS figures; for npsd also the CPU until
    the engine settled afterwards (npsd still running)."""
    total = sum(ends.values())
    tps = sorted(ends)
    nodes = st.nodes()
    for port, c, pid in nodes:
        c.config_resetstat()
    ports = []
    procs = []
    for i in range(instances):
        if kind == "npsd":
            port = free_port()
            ports.append(port)
            procs.append(st.npsd_bench(
                ["kafka.group.id=" + group] + list(sets),
                "npsd-%s-%d.log" % (group, i), http_port=port))
        else:
            procs.append(st.passthrough(group, topics))
    for p in procs:
        if kind == "npsd":
            st.wait_log(p, "partitions assigned", timeout=60)
        else:
            wait_for(lambda: "partitions assigned" in open(p.logname).read(),
                     60, "pass-through assignment")
    perf_procs = []
    if perf:
        for pid, name in ((procs[0].pid, kind), (st.redis_proc.pid, "redis")):
            out = os.path.join(perf, "%s-%s.data" % (group, name))
            cg = ["--call-graph", "dwarf,16384"] if name == "npsd" else []
            perf_procs.append(subprocess.Popen(
                ["perf", "record", "-F", "499"] + cg +
                ["-p", str(pid), "-o", out],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    t0 = time.time()
    j0 = cpu_jiffies()
    c0 = [proc_cpu(p.pid) for p in procs]
    r0, b0 = nodes_cpu(st), proc_cpu(st.broker.pid)
    e0 = {port: eval_stats(c) for port, c, pid in nodes}
    samples = []
    deadline = t0 + timeout
    while True:
        got = st.committed_map(group, tps)
        done = sum(min(got.get(tp, 0), ends[tp]) for tp in tps)
        samples.append((time.time(), done))
        if done >= total:
            break
        if time.time() > deadline:
            raise AssertionError("%s: %d of %d committed after %ds" % (
                kind, done, total, timeout))
        for p in procs:
            if p.poll() is not None:
                raise AssertionError("%s exited early (%s): see %s" % (
                    kind, p.returncode, p.logname))
        time.sleep(0.2)
    t1 = time.time()
    j1 = cpu_jiffies()
    cpu = sum(proc_cpu(p.pid) - c for p, c in zip(procs, c0))
    r1, bcpu = nodes_cpu(st), proc_cpu(st.broker.pid) - b0
    node_rcpu = {port: r1[port] - r0[port] for port in r0}
    rcpu = sum(node_rcpu.values())
    e1 = {port: eval_stats(c) for port, c, pid in nodes}
    node_eval = {port: (e1[port][0] - e0[port][0], e1[port][1] - e0[port][1])
                 for port in e0}
    cstats = commandstats(st)  # reset at the start of the run
    for pp in perf_procs:
        pp.send_signal(signal.SIGINT)
        pp.wait(60)
    rss = max(proc_status(p.pid, "VmHWM") or 0 for p in procs)
    res = {"kind": kind, "group": group, "instances": instances,
           "events": total, "seconds": t1 - t0,
           "rate_total": total / (t1 - t0),
           "rate": sustained(samples, total), "cpu": cpu,
           "cpu_s_per_m": cpu / total * 1e6,
           "redis_cpu_s_per_m": rcpu / total * 1e6,
           "node_redis_cpu_s_per_m": {port: v / total * 1e6
                                      for port, v in node_rcpu.items()},
           "broker_cpu_s_per_m": bcpu / total * 1e6,
           "rss_mib": rss,
           "eval_calls": sum(v[0] for v in node_eval.values()),
           "eval_usec": sum(v[1] for v in node_eval.values()),
           "node_eval": node_eval,
           "steal": (j1[0] - j0[0]) / max(1, j1[1] - j0[1]),
           "commandstats": cstats}
    if kind == "npsd":
        # /metrics is published after each batch returns, a moment after
        # its (asynchronous) commit reached the broker
        def scrape():
            ms = [metrics(port) for port in ports]
            return ms if sum(m.get("npsd_messages_consumed_total", 0)
                             for m in ms) >= total else None
        try:
            ms = wait_for(scrape, 15, "npsd /metrics to count every message",
                          interval=0.2)
        except AssertionError:
            ms = [metrics(port) for port in ports]
        res["metrics"] = {k: sum(m.get(k, 0) for m in ms) for k in (
            "npsd_messages_consumed_total", "npsd_responses_accepted_total",
            "npsd_responses_duplicate_total", "npsd_messages_produced_total",
            "npsd_batches_total", "npsd_redis_apply_duration_seconds_sum",
            "npsd_redis_apply_duration_seconds_count")}
        res["metrics"]["rejected"] = sum(
            v for m in ms for k, v in m.items()
            if k.startswith("npsd_messages_rejected_total{"))
        res["metrics_raw"] = ms
        res["stages"] = stage_split(ms)
        # the global deltas and view refreshes that follow the last commit
        settle_s, box, (cpu_s, r2) = wait_settled(st, lambda: (
            sum(proc_cpu(p.pid) - c for p, c in zip(procs, c0)),
            nodes_cpu(st)))
        res.update({"settle_s": settle_s, "outbox_left": box,
                    "cpu_settled_s_per_m": cpu_s / total * 1e6,
                    "redis_cpu_settled_s_per_m":
                        sum(r2[port] - r0[port] for port in r0) / total * 1e6,
                    "node_redis_cpu_settled_s_per_m": {
                        port: (r2[port] - r0[port]) / total * 1e6
                        for port in r0},
                    "node_keys": {port: c.dbsize()
                                  for port, c, pid in nodes},
                    "g_node": node_of(st, "nps:{g}:dirty").connection_pool
                    .connection_kwargs["port"]})
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            out, _ = (p.communicate(timeout=30) if kind == "pt"
                      else (None, p.wait(30)))
        except subprocess.TimeoutExpired:
            p.kill()
            out = None
        if kind == "pt":
            res["pt_summary"] = (out or "").strip()
    if kind == "npsd":
        m = res["metrics"]
        got = m["npsd_messages_consumed_total"]
        # Several instances: a rebalance hands an uncommitted batch to
        # another member, which consumes it again (at-least-once). Counting
        # stays exactly once; throughput() checks that.
        if got != total and not (instances > 1 and got > total):
            raise AssertionError("npsd consumed %d messages for %d inputs" % (
                got, total))
        res["redelivered"] = got - total
        if m["rejected"]:
            raise AssertionError("npsd rejected %d messages" % m["rejected"])
        res["redis_wait_share"] = (
            m["npsd_redis_apply_duration_seconds_sum"] / res["seconds"])
    return res


def sustained(samples, total):
    """Rate between the first samples at >= 10 % and >= 90 % of total."""
    def first(frac):
        for t, d in samples:
            if d >= frac * total:
                return t, d
    a, b = first(0.1), first(0.9)
    if not a or not b or b[0] <= a[0]:
        t, d = samples[-1]
        return d / max(t - samples[0][0], 1e-6)
    return (b[1] - a[1]) / (b[0] - a[0])


# ---- verification -------------------------------------------------------------

def verify_outputs(st, responses, at_least=False):
    """One classified output per response; at_least: a redelivered
    response within replay.days is published again (never fewer)."""
    outs = st.high_sum(OUT_TOPICS)
    if outs != responses and not (at_least and outs > responses):
        raise AssertionError("%d classified outputs for %d responses" % (
            outs, responses))


def verify_redis_responses(st, responses, window="90d"):
    """Sum over accounts of the long window's response count (every
    account's nps:{A}:w:<window> hash, on every node)."""
    got = 0
    for port, c, pid in st.nodes():
        keys = list(c.scan_iter("nps:{*}:w:" + window, count=10000))
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.hget(k, "responses")
        got += sum(int(v or 0) for v in pipe.execute())
    if got != responses:
        raise AssertionError("Redis windows hold %d responses, %d sent" % (
            got, responses))


def verify_redis_usage(st, usage):
    """Every counted usage event id is in a per-day dedupe set
    (nps:{A}:useen:<day>, on every node)."""
    got = 0
    for port, c, pid in st.nodes():
        keys = list(c.scan_iter("nps:*:useen:*", count=10000))
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.scard(k)
        got += sum(pipe.execute())
    if got != usage:
        raise AssertionError("Redis dedupe sets hold %d usage events, %d "
                             "sent" % (got, usage))


def verify_pt(st, res, total):
    outs = st.high_sum([PT_OUT])
    m = re.search(r"consumed=(\d+) produced=(\d+) failed=(\d+)",
                  res.get("pt_summary", ""))
    if not m or int(m.group(3)) != 0:
        raise AssertionError("pass-through: " + res.get("pt_summary", ""))
    if outs < total:
        raise AssertionError("pass-through produced %d of %d" % (outs, total))
    res["pt_out"] = outs


# ---- scenarios ----------------------------------------------------------------

def throughput(a, name, accounts, responses=0, usage=0, days=30,
               instances=1, with_pt=True, perf=None, cluster=False):
    """Pre-produces the input, runs the pass-through then npsd on it;
    cluster: on a Redis Cluster of 3 primaries."""
    prefix = "u." if usage else ""
    st = (ClusterBenchStack if cluster else BenchStack)(
        a.build, a.partitions,
        [prefix + t for t in ("nps.responses", "product.usage",
                              "accounts")] if usage else [])
    try:
        inputs = []
        sets = []
        n_resp = n_usage = n_acc = 0
        if responses:
            c = gen(st, "--accounts", accounts, "--count", responses,
                    "--rate", 0, "--seed", 11, "--days", days)
            n_resp, n_acc = c["nps.responses"], c["accounts"]
            inputs += ["nps.responses", "accounts"]
        if usage:
            # Usage events one per generated response of a prefixed run:
            # its responses land in u.nps.responses, which nobody reads, so
            # the usage stream interleaves accounts the way a live one does
            # (--usage-per-response 200 would send 200 in a row per account).
            c = gen(st, "--accounts", accounts, "--count", usage, "--rate", 0,
                    "--seed", 12, "--days", days, "--usage-per-response", 1,
                    "--topic-prefix", prefix)
            n_usage = c[prefix + "product.usage"]
            inputs.append(prefix + "product.usage")
            sets.append("topic.usage=" + prefix + "product.usage")
            if not responses:
                inputs.append(prefix + "accounts")
                sets.append("topic.accounts=" + prefix + "accounts")
                n_acc = c[prefix + "accounts"]
        ends = st.ends(inputs)
        total = sum(ends.values())
        if total != n_resp + n_usage + n_acc:
            raise AssertionError("input topics hold %d messages, gen "
                                 "delivered %d" % (total,
                                                   n_resp + n_usage + n_acc))
        st.check_untrimmed(inputs)
        row = {"scenario": name, "accounts": accounts, "responses": n_resp,
               "usage": n_usage, "account_records": n_acc,
               "partitions": a.partitions, "load_before": loadavg(),
               "redis_nodes": [port for port, c, pid in st.nodes()]}
        if with_pt:
            log(name, "pass-through over", total, "messages")
            pt = timed_run(st, "pt", "passthrough", inputs, ends)
            verify_pt(st, pt, total)
            row["pt"] = pt
        if perf:
            # every command of SLOWLOG_US or more into SLOWLOG: write.lua
            # durations by mode, the other commands by name (the commands
            # a script runs are logged too, and would crowd the calls out
            # at 0: most take a microsecond or two)
            st.r.config_set("slowlog-log-slower-than", SLOWLOG_US)
            st.r.config_set("slowlog-max-len", SLOWLOG_KEEP)
            st.r.slowlog_reset()
        log(name, "npsd x%d over" % instances, total, "messages")
        res = timed_run(st, "npsd", "npsd", inputs, ends, instances=instances,
                        sets=sets, perf=perf)
        if perf:
            row["perf_top"] = {}
            row["perf"] = {}
            for who in ("npsd", "redis"):
                path = os.path.join(perf, "npsd-%s.data" % who)
                allrows = perf_top(path, limit=0)
                row["perf_top"][who] = allrows[:40]
                row["perf"][who] = perf_groups(allrows)
                if who == "npsd":
                    row["perf_stages"] = perf_children(path)
                if os.path.exists(path):
                    os.remove(path)
        st.check_untrimmed(inputs)
        m = res["metrics"]
        if m["npsd_responses_accepted_total"] != n_resp:
            raise AssertionError("npsd accepted %d of %d responses" % (
                m["npsd_responses_accepted_total"], n_resp))
        verify_outputs(st, n_resp, at_least=res["redelivered"] > 0)
        if n_resp:
            verify_redis_responses(st, n_resp)
        if n_usage:
            verify_redis_usage(st, n_usage)
        row["npsd"] = res
        row["events"] = total
        if perf:
            row["slowlog"] = slowlog_modes(st)
        log(name, "verified: %d inputs, %d outputs" % (total, n_resp))
        return row
    finally:
        st.close()


SLOWLOG_KEEP = 500000
SLOWLOG_US = 10


def slowlog_modes(st):
    """Server µs per command from SLOWLOG (profile runs log every command
    of SLOWLOG_US or more, the last SLOWLOG_KEEP kept): {name: [calls,
    usec, max usec]}, write.lua calls
    named by their mode ("write.lua cas", "write.lua groups", ...). Raw
    reply: SLOWLOG keeps the first 32 arguments, each cut to 128 bytes; the
    mode is ARGV[1], after the key count and the keys (beyond the first 32
    arguments when a call declares many keys: "write.lua (over 29
    keys)"). The benchmark's own commands are left out."""
    raw_client = redis.Redis(port=st.redis_port)  # state records: binary
    raw = raw_client.execute_command("SLOWLOG", "GET", SLOWLOG_KEEP)
    raw_client.close()
    out = {}
    for e in raw:
        args = [x.decode("latin-1") if isinstance(x, bytes) else str(x)
                for x in e[3]]
        if not args:
            continue
        name = args[0].upper()
        if name in ("EVAL", "EVALSHA"):
            try:
                at = 3 + int(args[2])
                mode = args[at] if at < len(args) and \
                    not args[at].startswith("... (") else None
            except (IndexError, ValueError):
                mode = None
            name = "write.lua " + (mode or "(over 29 keys)")
        elif name.lower() in BENCH_COMMANDS or name in ("CLIENT",):
            continue
        c = out.setdefault(name, [0, 0, 0])
        c[0] += 1
        c[1] += int(e[2])
        c[2] = max(c[2], int(e[2]))
    return out


def latency(a, rate, seconds, accounts, warm=10):
    st = BenchStack(a.build, a.partitions)
    try:
        port = free_port()
        p = st.npsd_bench([], "npsd-latency.log", http_port=port)
        st.wait_log(p, "partitions assigned", timeout=60)
        c0 = proc_cpu(p.pid)
        log("latency: gen --rate", rate, "for", seconds, "s")
        c = gen(st, "--accounts", accounts, "--rate", rate, "--duration",
                seconds, "--seed", 21, "--days", 30)
        n_resp = c["nps.responses"]
        ends = st.ends(["nps.responses", "accounts"])
        wait_for(lambda: all(
            st.committed_map("npsd", sorted(ends))[tp] >= e
            for tp, e in ends.items()), 900, "npsd to catch up", 0.5)
        cpu = proc_cpu(p.pid) - c0
        m = metrics(port)
        rss = proc_status(p.pid, "VmHWM")
        if m["npsd_responses_accepted_total"] != n_resp:
            raise AssertionError("accepted %d of %d" % (
                m["npsd_responses_accepted_total"], n_resp))
        verify_outputs(st, n_resp)
        # exact: Kafka timestamp (CreateTime, set by the producer) of each
        # classified output minus that of its input response
        t_in = {}
        for msg in st.consume_all("nps.responses", timeout=120):
            t_in[json.loads(msg.value())["event_id"]] = msg.timestamp()[1]
        pairs = []
        for t in OUT_TOPICS:
            for msg in st.consume_all(t, timeout=120):
                eid = json.loads(msg.value())["event_id"]
                pairs.append((t_in[eid], msg.timestamp()[1] - t_in[eid]))
        if len(pairs) != n_resp:
            raise AssertionError("%d latencies for %d responses" % (
                len(pairs), n_resp))
        # steady state: without the first `warm` seconds, while npsd also
        # works through the generator's account records (sent first, at
        # full speed)
        first = min(t for t, _ in pairs)
        lat = sorted(d for t, d in pairs if t >= first + warm * 1000)
        lat_all = sorted(d for t, d in pairs)

        def q(x, v=None):
            v = lat if v is None else v
            return v[min(len(v) - 1, int(x * len(v)))]
        st.stop(p)
        return {"scenario": "latency", "rate": rate, "seconds": seconds,
                "responses": n_resp, "accounts": accounts, "warm_s": warm,
                "measured": len(lat),
                "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99),
                "max_ms": lat[-1], "all_p50_ms": q(0.5, lat_all),
                "all_p99_ms": q(0.99, lat_all),
                "hist_p50_le_s": hist_quantile(
                    m, "npsd_processing_latency_seconds", 0.5),
                "hist_p99_le_s": hist_quantile(
                    m, "npsd_processing_latency_seconds", 0.99),
                "batch_mean": m["npsd_batch_size_messages_sum"] /
                max(1, m["npsd_batch_size_messages_count"]),
                "redis_apply_mean_ms": 1000 *
                m["npsd_redis_apply_duration_seconds_sum"] /
                max(1, m["npsd_redis_apply_duration_seconds_count"]),
                "rss_mib": rss, "cpu_s_per_m": cpu / n_resp * 1e6,
                "cpu_share": cpu / seconds, "stages": stage_split([m])}
    finally:
        st.close()


def memory90(a, accounts, per_account, usage_per_response):
    """90 days of history; Redis used_memory delta per account, as loaded
    and after emulating the expiry a real 90 days would have done (keys
    whose TTL runs from processing time: out:<eid> snapshots, 7 days, and
    useen:<day> usage dedupe sets, 4 days)."""
    st = BenchStack(a.build, a.partitions)
    try:
        base = st.r.info("memory")["used_memory"]
        responses = accounts * per_account
        c = gen(st, "--accounts", accounts, "--count", responses, "--rate", 0,
                "--seed", 31, "--days", 90, "--usage-per-response",
                usage_per_response)
        inputs = ["nps.responses", "accounts", "product.usage"]
        ends = st.ends(inputs)
        st.check_untrimmed(inputs)
        log("memory90: npsd over", sum(ends.values()), "messages")
        res = timed_run(st, "npsd", "npsd", inputs, ends)
        n_resp, n_usage = c["nps.responses"], c["product.usage"]
        verify_outputs(st, n_resp)
        today = int(time.time() // 86400)
        sent = [json.loads(msg.value())
                for msg in st.consume_all("nps.responses", timeout=120)]
        if len(sent) != n_resp:
            raise AssertionError("read %d of %d responses" % (len(sent),
                                                              n_resp))
        verify_redis_responses(st, sum(
            1 for v in sent if epoch_day(v["submitted_at"]) > today - 90))
        verify_redis_usage(st, n_usage)
        # timed_run() kept npsd running until the engine settled (global
        # deltas applied, cohort, theme and owner views refreshed, the roll
        # done) and the outboxes drained; npsd has stopped since
        why = settle_state(st)
        if why:
            raise AssertionError("not settled at the snapshot: " +
                                 "; ".join(why))
        outbox_left = outbox_total(st)
        loaded = st.r.info("memory")["used_memory"]
        classes_loaded = key_classes(st)
        # emulate time: the snapshots of responses older than the replay
        # horizon would have expired
        old = ["nps:{%s}:out:%s" % (v["account_id"], v["event_id"])
               for v in sent if epoch_day(v["submitted_at"]) <= today - 7]
        for i in range(0, len(old), 5000):
            st.r.delete(*old[i:i + 5000])
        useen = [k for k in st.r.scan_iter("nps:*:useen:*", count=10000)
                 if int(k.rsplit(":", 1)[1]) <= today - 4]
        for i in range(0, len(useen), 5000):
            st.r.delete(*useen[i:i + 5000])
        st.r.memory_purge()
        steady = st.r.info("memory")["used_memory"]
        classes_steady = key_classes(st)
        return {"scenario": "memory90", "accounts": accounts,
                "responses": n_resp, "usage": n_usage,
                "usage_per_response": usage_per_response,
                "kib_per_account_loaded": (loaded - base) / accounts / 1024,
                "kib_per_account_steady": (steady - base) / accounts / 1024,
                "classes_loaded": classes_loaded,
                "classes_steady": classes_steady,
                "outbox_left": outbox_left,
                "npsd": res}
    finally:
        st.close()


def key_classes(st):
    """MEMORY USAGE summed per key class (the part after the account)."""
    keys = list(st.r.scan_iter("*", count=10000))
    pipe = st.r.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
    out = {}
    for k, b in zip(keys, pipe.execute()):
        if k.startswith("nps:{g}:"):  # globals under the {g} hash tag
            cls = "{g}:" + k[len("nps:{g}:"):].split(":", 1)[0]
        elif "}:" in k:
            cls = k.split("}:", 1)[1].split(":", 1)[0]
        else:
            parts = k.split(":")
            cls = ":".join(parts[:2]) if len(parts) > 1 else k
        c = out.setdefault(cls, [0, 0])
        c[0] += 1
        c[1] += b or 0
    return out


# ---- Redis' own rate ------------------------------------------------------------

def write_lua_body():
    """src/lua/write.lua as npsd sends it (npsd_write.c): without
    whole-line comments, blank lines and indentation."""
    with open(os.path.join(REPO, "src", "lua", "write.lua")) as f:
        lines = [ln.strip(" \t") for ln in f.read().split("\n")]
    return "".join(ln + "\n" for ln in lines if ln and not ln.startswith("--"))


# A state record's `b` field for the redis-benchmark rows: about the size
# of the records the responses replay leaves (400 to 450 bytes at 6
# responses per account; printed by the scenario).
STATE_BYTES = 512


def redis_ceiling(a, n, accounts):
    """redis-benchmark for the commands the store issues most (pipelined
    -P 16), then a captured npsd run per input kind replayed on an empty
    Redis (replay_capture)."""
    st = BenchStack(a.build, 4)
    try:
        port = st.redis_port
        rb = {}
        body = write_lua_body()
        blob = "x" * STATE_BYTES
        tests = [
            ("HSET st (v, b %d B)" % STATE_BYTES,
             ["HSET", "nps:{acct-__rand_int__}:st", "v", "7", "b", blob]),
            ("HMGET st v b", ["HMGET", "nps:{acct-__rand_int__}:st", "v",
                              "b"]),
            ("SMISMEMBER", ["SMISMEMBER", "nps:{acct-__rand_int__}:useen:"
                            "20400", "u-__rand_int__"]),
            ("PFADD", ["PFADD", "nps:{acct-__rand_int__}:au:20400",
                       "user-__rand_int__"]),
            ("PFCOUNT 7 days", ["PFCOUNT"] + [
                "nps:{acct-__rand_int__}:au:%d" % d
                for d in range(20394, 20401)]),
            ("HINCRBY", ["HINCRBY", "nps:{g}:cohort:smb:d",
                         "20400:__rand_int__", "1"]),
            # the guard passes every time: the expected value "" is also the
            # value it sets; the same keys each call (a call's keys must be
            # the words it declared, and redis-benchmark draws every
            # __rand_int__ apart)
            ("EVAL write.lua cas + 2 HSET",
             ["EVAL", body, "2", "nps:{b}:st", "nps:{b}:w:30d", "cas", "v",
              "", "", "4", "HSET", "nps:{b}:st", "b", blob, "6", "HSET",
              "nps:{b}:w:30d", "nps", "12.5", "responses", "40"]),
        ]
        for name, cmd in tests:
            out = subprocess.run(
                ["redis-benchmark", "-p", str(port), "-n", str(n), "-P", "16",
                 "-r", "10000", "-c", "4", "--csv"] + cmd,
                capture_output=True, text=True, timeout=300).stdout
            rows = [ln for ln in out.splitlines() if ln and
                    not ln.startswith('"test"')]
            rb[name] = float(rows[-1].split(",")[1].strip('"'))
            log("redis-benchmark", name, rb[name])
    finally:
        st.close()
    replay = {}
    for kind in ("responses", "usage"):
        replay[kind] = replay_capture(a, kind, accounts)
    return {"scenario": "redis", "redis_benchmark": rb, "replay": replay}


MONITOR_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
CAPTURE_END = "npsd-bench-capture-end"


def monitor_unquote(a):
    """One argument of a MONITOR line (sdscatrepr escapes) as bytes."""
    out, i = bytearray(), 0
    while i < len(a):
        c = a[i]
        if c == "\\":
            n = a[i + 1]
            if n == "x":
                out.append(int(a[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a",
                    "b": b"\b"}.get(n, n.encode())
            i += 2
        else:
            out += c.encode("latin-1")
            i += 1
    return bytes(out)


class MonitorCapture(threading.Thread):
    """Writes Redis' MONITOR stream to a file until CAPTURE_END is seen
    (sent by stop())."""

    def __init__(self, port, path):
        threading.Thread.__init__(self, daemon=True)
        self.port, self.path = port, path
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        buf = b""
        while b"\r\n" not in buf:
            buf += self.sock.recv(65536)
        self.rest = buf.split(b"\r\n", 1)[1]
        self.error = None

    def run(self):
        marker = CAPTURE_END.encode()
        try:
            with open(self.path, "wb") as f:
                f.write(self.rest)
                tail = self.rest[-64:]
                while True:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
                    if marker in tail + chunk:
                        break
                    tail = chunk[-64:]
        except Exception as e:  # reported by stop()
            self.error = e
        finally:
            self.sock.close()

    def stop(self, client, timeout=120):
        client.echo(CAPTURE_END)
        self.join(timeout)
        if self.is_alive() or self.error:
            raise AssertionError("MONITOR capture did not end: %s" % (
                self.error or "timeout"))


# Commands of npsd's connections left out of a replay: connection set-up,
# not work per event.
REPLAY_SKIP = {"CLIENT", "HELLO", "AUTH", "SELECT", "QUIT", "INFO", "PING",
               "ECHO", "MONITOR", "COMMAND"}


def monitor_commands(path, skip_addrs):
    """The top-level commands of a MONITOR capture in the order Redis ran
    them, without those of skip_addrs (the benchmark's own connections),
    without what scripts ran (replayed by their EVAL) and without
    REPLAY_SKIP."""
    cmds, bodies, by_sha = [], {}, {}
    with open(path, "rb") as f:
        for line in f:  # arguments are escaped: one command per line
            if not line.startswith(b"+"):
                continue
            text = line[1:].rstrip(b"\r\n").decode("latin-1")
            lb, rb = text.find("["), text.find("]")
            if lb < 0 or rb < lb:
                continue
            addr = text[lb + 1:rb].split(" ", 1)[-1]
            if addr == "lua" or addr in skip_addrs:
                continue
            args = [monitor_unquote(x)
                    for x in MONITOR_ARG.findall(text[rb + 1:])]
            if len(args) > 2 and args[0].upper() == b"SCRIPT" and \
                    args[1].upper() == b"LOAD":
                # npsd loads write.lua on every node, then calls EVALSHA:
                # the replay sends the body (EVAL), as npsd falls back to
                by_sha[hashlib.sha1(args[2]).hexdigest().encode()] = args[2]
                continue
            if len(args) > 1 and args[0].upper() == b"EVALSHA" and \
                    args[1].lower() in by_sha:
                args = [b"EVAL", by_sha[args[1].lower()]] + args[2:]
            if args and args[0].decode("latin-1").upper() not in REPLAY_SKIP:
                if len(args) > 1 and args[0].upper() == b"EVAL":
                    args[1] = bodies.setdefault(args[1], args[1])  # one copy
                cmds.append(args)
    return cmds


def eval_parts(cmd):
    """(keys, argv, [command words]) of a write.lua EVAL."""
    nk = int(cmd[2])
    keys, argv = cmd[3:3 + nk], cmd[3 + nk:]
    words, i = [], 4
    while i < len(argv):
        n = int(argv[i])
        words.append(argv[i + 1:i + 1 + n])
        i += n + 1
    return keys, argv, words


def eval_as_plain(cmd, reply):
    """The commands a write.lua call ran (its reply says which), as plain
    commands: the guard or fence write, then the commands, without the
    check."""
    keys, argv, words = eval_parts(cmd)
    mode = argv[0]
    if not isinstance(reply, list) or not reply:
        return []
    if mode == b"cas":
        return [[b"HSET", keys[0], argv[1], argv[3]]] + words \
            if reply[0] == 1 else []
    if mode == b"seq":
        return [[b"HSET", keys[0], argv[1], argv[2]]] + words \
            if reply[0] == 1 else []
    if mode == b"later":
        return words if reply[0] == 1 else []
    out, run, g = [], False, 1
    for w in words:  # groups
        if w[0] == b"GROUP":
            run = g < len(reply) and reply[g] == 1
            g += 1
            if run:
                out.append([b"HSET", keys[0], w[1], w[2]])
        elif run:
            out.append(w)
    return out


def replay(port, cmds, chunk=2000):
    """cmds on an emptied Redis, pipelined in chunks as npsd pipelines a
    batch; returns (Redis CPU seconds, replies, commandstats)."""
    r = redis.Redis(port=port)
    r.flushall()
    r.script_flush()
    r.config_resetstat()
    c0 = node_cpu(r)
    replies = []
    for i in range(0, len(cmds), chunk):
        pipe = r.pipeline(transaction=False)
        for c in cmds[i:i + chunk]:
            pipe.execute_command(*c)
        replies += pipe.execute(raise_on_error=False)
    cpu = node_cpu(r) - c0
    cs = {k[len("cmdstat_"):]: (v["calls"], v["usec"])
          for k, v in r.info("commandstats").items()
          if k not in ("cmdstat_info", "cmdstat_config", "cmdstat_flushall",
                       "cmdstat_script|flush")}
    r.close()
    return cpu, replies, cs


def replay_capture(a, kind, accounts):
    """npsd over a small pre-produced input (kind "responses": 6 responses
    per account over 30 days, as the responses scenario; "usage": 10 usage
    events per account, as the usage scenario) with MONITOR capturing every
    command it sends. The capture is then replayed twice on an emptied
    Redis: as sent (reads, write.lua calls and transactions, in order, so
    every guard passes as it did), and with each write.lua call replaced by
    the commands it ran and the transactions' WATCH, MULTI and EXEC left
    out. Redis CPU per input event of each, and the difference: what the
    guards themselves cost."""
    prefix = "u." if kind == "usage" else ""
    st = BenchStack(a.build, a.partitions,
                    [prefix + t for t in ("nps.responses", "product.usage",
                                          "accounts")] if prefix else [])
    try:
        sets = []
        if kind == "responses":
            c = gen(st, "--accounts", accounts, "--count", 6 * accounts,
                    "--rate", 0, "--seed", 11, "--days", 30)
            n_ev = c["nps.responses"]
            inputs = ["nps.responses", "accounts"]
        else:
            c = gen(st, "--accounts", accounts, "--count", 10 * accounts,
                    "--rate", 0, "--seed", 12, "--days", 30,
                    "--usage-per-response", 1, "--topic-prefix", prefix)
            n_ev = c[prefix + "product.usage"]
            inputs = [prefix + "product.usage", prefix + "accounts"]
            sets = ["topic.usage=" + prefix + "product.usage",
                    "topic.accounts=" + prefix + "accounts"]
        ends = st.ends(inputs)
        total = sum(ends.values())
        path = os.path.join(st.dir, "monitor-%s.txt" % kind)
        cap = MonitorCapture(st.redis_port, path)
        bench = {c["addr"] for c in st.r.client_list()}  # before npsd
        cap.start()
        log("redis: npsd over", total, kind, "messages, MONITOR on")
        res = timed_run(st, "npsd", "npsd", inputs, ends, sets=sets)
        bench.add(st.r.client_info()["addr"])
        cap.stop(st.r)
        if kind == "responses":
            verify_redis_responses(st, n_ev)
        else:
            verify_redis_usage(st, n_ev)
        sizes = [st.r.hstrlen(k, "b") for k in
                 st.r.scan_iter("nps:{*}:st", count=10000)]
        cmds = monitor_commands(path, bench)
        os.remove(path)
        evals = [i for i, c in enumerate(cmds) if c[0].upper() == b"EVAL"]
        txs = [i for i, c in enumerate(cmds) if c[0].upper() == b"EXEC"]
        if not evals and not txs:
            raise AssertionError("neither a write.lua call nor a "
                                 "transaction in the capture")
        log("redis: replaying", len(cmds), "commands,", len(evals),
            "write.lua calls,", len(txs), "transactions")
        cpu_sent, replies, cs_sent = replay(st.redis_port, cmds)
        # faithful: one instance never loses a guard, so every cas passes
        # again in the replay as it did when npsd sent it
        modes, lost, inner = {}, 0, 0
        for i in evals:
            keys, argv, words = eval_parts(cmds[i])
            m = argv[0].decode()
            modes[m] = modes.get(m, 0) + 1
            inner += len(words)
            rep = replies[i]
            if isinstance(rep, Exception):
                raise AssertionError("replayed write.lua failed: %s" % rep)
            if m == "cas" and rep[0] != 1:
                lost += 1
        if lost:
            raise AssertionError("%d cas calls lost their guard in the "
                                 "replay: it does not repeat npsd's run"
                                 % lost)
        for i in txs:
            if not isinstance(replies[i], list):
                raise AssertionError("a replayed transaction did not run: "
                                     "%r" % (replies[i],))
        plain = []
        evset = set(evals)
        for i, c in enumerate(cmds):
            if i in evset:
                plain += eval_as_plain(c, replies[i])
            elif c[0].upper() not in (b"WATCH", b"UNWATCH", b"MULTI",
                                      b"EXEC"):
                plain.append(c)
        cpu_plain, _, cs_plain = replay(st.redis_port, plain)
        body = len(write_lua_body())
        return {"kind": kind, "accounts": accounts, "events": total,
                "kind_events": n_ev, "commands": len(cmds),
                "write_calls": len(evals), "write_modes": modes,
                "transactions": len(txs),
                "commands_per_write_call": inner / max(1, len(evals)),
                "write_call_bytes": sum(
                    sum(len(x) for x in cmds[i]) for i in evals) /
                max(1, len(evals)),
                "script_bytes": body,
                "state_bytes": sum(sizes) / max(1, len(sizes)),
                "cpu_us_per_event": cpu_sent / total * 1e6,
                "plain_cpu_us_per_event": cpu_plain / total * 1e6,
                "plain_commands": len(plain),
                "by_command": cs_sent, "by_command_plain": cs_plain,
                "capture_run": {k: res[k] for k in (
                    "rate", "cpu_s_per_m", "redis_cpu_s_per_m", "eval_calls",
                    "eval_usec")}}
    finally:
        st.close()


# ---- perf -----------------------------------------------------------------

# Lua (and lua-cjson) are linked statically into Debian's redis-server and
# their internal functions are not exported: samples at unresolved addresses
# between the first exported lua_* symbol and luaopen_struct are the Lua VM
# and cjson. Looked up from the binary's dynamic symbols at run time.
def lua_range():
    try:
        out = subprocess.run(["nm", "-D", "--defined-only",
                              os.path.realpath(shutil.which("redis-server"))],
                             capture_output=True, text=True).stdout
    except (OSError, TypeError):
        return None
    addrs = {}
    for ln in out.split("\n"):
        f = ln.split()
        if len(f) == 3:
            addrs[f[2]] = int(f[0], 16)
    lo = min((v for k, v in addrs.items() if k.startswith("lua_")),
             default=None)
    hi = addrs.get("luaopen_struct")
    return (lo, hi) if lo and hi else None


def perf_top(path, limit=40):
    if not os.path.exists(path):
        return []
    out = subprocess.run(
        ["perf", "report", "-i", path, "--stdio", "--no-children",
         "-F", "overhead,dso,sym", "-t", "|", "--percent-limit", "0.01",
         "-g", "none"],
        capture_output=True, text=True, timeout=300).stdout
    rows = []
    for ln in out.splitlines():
        f = [x.strip() for x in ln.split("|")]
        if len(f) < 3 or not f[0].endswith("%"):
            continue
        sym = re.sub(r"^\[[.k]\]\s*", "", f[2])
        rows.append((float(f[0].rstrip("%")), f[1], sym))
    return rows[:limit] if limit else rows


LUA_RANGE = None

# npsd functions whose inclusive time (with callees, from DWARF call
# graphs) says where npsd's own CPU goes
NPSD_STAGES = ("npsd_pipeline_run", "npsd_pipeline_parse", "npsd_event_parse",
               "npsd_themes_match", "npsd_pipeline_apply", "npsd_store_apply",
               "npsd_store_process", "npsd_store_gather",
               "npsd_store_read_parse", "npsd_state_decode",
               "npsd_step_account", "npsd_step_response", "npsd_step_usage",
               "npsd_step_view", "npsd_step_snapshot", "npsd_state_encode",
               "npsd_store_write_account", "npsd_write_argv",
               "npsd_cluster_exec", "npsd_pipeline_enrich", "json_loadb",
               "npsd_enrich_build", "json_dumps", "npsd_pipeline_deliver",
               "npsd_kafka_produce", "npsd_kafka_poll_batch",
               "npsd_kafka_commit", "npsd_pipeline_tick", "npsd_store_flush",
               "npsd_store_cohorts", "npsd_store_roll",
               "npsd_pipeline_observe_e2e", "rd_kafka_message_destroy")


def perf_children(path):
    """{function: inclusive % of npsd's samples} for NPSD_STAGES."""
    if not os.path.exists(path):
        return {}
    out = subprocess.run(
        ["perf", "report", "-i", path, "--stdio", "--children",
         "-F", "overhead_children,sym", "-t", "|", "-g", "none",
         "--percent-limit", "0.1"],
        capture_output=True, text=True, timeout=600).stdout
    got = {}
    for ln in out.splitlines():
        f = [x.strip() for x in ln.split("|")]
        if len(f) < 2 or not f[0].endswith("%"):
            continue
        sym = re.sub(r"^\[[.k]\]\s*", "", f[1])
        if sym in NPSD_STAGES and sym not in got:
            got[sym] = float(f[0].rstrip("%"))
    return got


def perf_groups(rows):
    """Self time grouped into the families that matter for npsd."""
    global LUA_RANGE
    if LUA_RANGE is None:
        LUA_RANGE = lua_range() or ()
    groups = {}
    for pct, dso, sym in rows:
        if "jansson" in dso:
            g = "jansson"
        elif "libc" in dso and re.search(r"malloc|free|alloc|_int_|chunk",
                                         sym):
            g = "glibc malloc/free"
        elif "jemalloc" in dso:
            g = "jemalloc"
        elif "libc" in dso and re.search(r"printf|xsputn|strtod|fp_", sym):
            g = "libc printf/strtod"
        elif "libc" in dso:
            g = "libc other"
        elif "rdkafka" in dso:
            g = "librdkafka"
        elif "hiredis" in dso:
            g = "hiredis"
        elif "kernel" in dso:
            g = "kernel"
        elif dso.startswith("redis") and sym.startswith("0x"):
            a = int(sym, 16)
            g = ("Lua VM + cjson (unexported)" if LUA_RANGE and
                 LUA_RANGE[0] <= a < LUA_RANGE[1] else "redis unresolved")
        elif dso.startswith("redis") and re.match(r"lua|strbuf|fpconv|json",
                                                  sym):
            g = "Lua VM + cjson (exported)"
        elif dso.startswith("redis"):
            g = "redis commands/core"
        else:
            g = dso
        groups[g] = groups.get(g, 0) + pct
    return sorted(groups.items(), key=lambda x: -x[1])


# ---- report ---------------------------------------------------------------------

def fmt_rate(x):
    return "%.0f" % x if x is not None else "-"


THROUGHPUT_ROWS = ("responses", "usage", "mix", "scale2", "rss100k",
                   "memory90", "cluster responses", "cluster usage")
# bookkeeping of the benchmark itself, left out of "Redis time by command"
BENCH_COMMANDS = ("info", "config", "config|resetstat", "config|set",
                  "slowlog", "slowlog|reset", "slowlog|get", "scan", "ping",
                  "hlen", "scard", "exists", "dbsize", "client|list",
                  "client|info", "echo", "cluster|slots", "cluster|keyslot")


def throughput_table(rows):
    """The table of the throughput scenarios, and their CPU until settled."""
    print()
    print("CPU per input event (s per M = µs per event) up to the last "
          "commit, as in every earlier run; an input includes its account "
          "records. EVAL: write.lua calls (guarded account writes and fenced "
          "global deltas).")
    print()
    print("| scenario | input events | npsd events/s (sustained) | "
          "pass-through events/s | npsd/pass-through | npsd CPU s per M | "
          "pass-through CPU s per M | "
          "Redis CPU s per M | broker CPU s per M | npsd peak RSS MiB | "
          "events per EVAL | µs per EVAL | npsd wall in Redis | "
          "CPU steal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = r["scenario"]
        n = r["npsd"]
        pt = r.get("pt")
        calls = n["eval_calls"] or 1
        print("| %s | %d | %s | %s | %s | %.1f | %s | %.1f | %.1f | %.1f "
              "| %.1f | %.0f | %.0f %% | %.0f %% |" % (
                  name + (" (%d inst.)" % n["instances"]
                          if n["instances"] > 1 else ""),
                  n["events"], fmt_rate(n["rate"]),
                  fmt_rate(pt["rate"]) if pt else "-",
                  "%.0f %%" % (100 * n["rate"] / pt["rate"]) if pt else "-",
                  n["cpu_s_per_m"],
                  "%.1f" % pt["cpu_s_per_m"] if pt else "-",
                  n["redis_cpu_s_per_m"],
                  n["broker_cpu_s_per_m"], n["rss_mib"],
                  n["events"] / calls, n["eval_usec"] / calls,
                  100 * n.get("redis_wait_share", 0) / n["instances"],
                  100 * n.get("steal", 0)))
    print()
    print("until the engine settled (npsd still running after the last "
          "commit: global deltas applied, views refreshed, outboxes "
          "drained), CPU s per M input events:")
    for r in rows:
        name = r["scenario"]
        n = r["npsd"]
        print("  %s: settled %.1f s after the last commit; npsd %.1f, "
              "Redis %.1f%s" % (
                  name, n["settle_s"], n["cpu_settled_s_per_m"],
                  n["redis_cpu_settled_s_per_m"],
                  "; %d alerts still in the outboxes" % n["outbox_left"]
                  if n.get("outbox_left") else ""))


def report(rows, a):
    by = {r["scenario"]: r for r in rows}
    print()
    print("npsd benchmark (%s mode%s%s), %s, %d partitions, %d cores, "
          "load before %.2f" % ("quick" if a.quick else "full",
                                "".join(", --set " + x for x in a.set),
                                ", --scale %g" % a.scale if a.scale != 1 else "",
                                time.strftime("%Y-%m-%d %H:%M"),
                                a.partitions, os.cpu_count(),
                                rows[0].get("load_before", loadavg())
                                if rows else loadavg()))
    throughput_rows = [by[name] for name in THROUGHPUT_ROWS if name in by]
    if throughput_rows:
        throughput_table(throughput_rows)
    for name in ("cluster responses", "cluster usage"):
        r = by.get(name)
        if not r:
            continue
        n = r["npsd"]
        print()
        print("%s, Redis Cluster of %d primaries, per node (port: Redis CPU "
              "s per M input events to the last commit / until settled, "
              "EVAL calls, µs per EVAL, keys): %s; sum %.1f / %.1f" % (
                  name, len(n["node_redis_cpu_s_per_m"]), "; ".join(
                      "%s%s: %.1f / %.1f, %d, %.0f, %d" % (
                          port, " (holds {g})" if port == n["g_node"] else "",
                          v, n["node_redis_cpu_settled_s_per_m"][port],
                          n["node_eval"][port][0],
                          n["node_eval"][port][1] /
                          max(1, n["node_eval"][port][0]),
                          n["node_keys"][port])
                      for port, v in sorted(
                          n["node_redis_cpu_s_per_m"].items())),
                  n["redis_cpu_s_per_m"], n["redis_cpu_settled_s_per_m"]))
    for name in ("scale2",):
        r = by.get(name)
        if r and r["npsd"].get("redelivered"):
            print()
            print("%s: %d messages consumed a second time after a rebalance "
                  "(at-least-once; verified counted once)" % (
                      name, r["npsd"]["redelivered"]))
    for lat in (by.get("latency"), by.get("latency500")):
        if not lat:
            continue
        print()
        print("latency at %d responses/s for %d s (%d responses; "
              "%d after the first %d s): Kafka timestamps output - input: "
              "p50 %d ms, p90 %d ms, p99 %d ms, max %d ms (all responses: "
              "p50 %d ms, p99 %d ms); /metrics histogram (every input "
              "message) p50 <= %s s, p99 <= %s s; mean "
              "batch %.1f messages, mean Redis round trip %.2f ms; npsd RSS "
              "%.1f MiB, CPU %.0f %% of a core (%.1f s per M responses)" % (
                  lat["rate"], lat["seconds"], lat["responses"],
                  lat["measured"], lat["warm_s"],
                  lat["p50_ms"], lat["p90_ms"], lat["p99_ms"], lat["max_ms"],
                  lat["all_p50_ms"], lat["all_p99_ms"],
                  lat["hist_p50_le_s"], lat["hist_p99_le_s"],
                  lat["batch_mean"], lat["redis_apply_mean_ms"],
                  lat["rss_mib"], 100 * lat["cpu_share"],
                  lat["cpu_s_per_m"]))
        if lat.get("stages"):
            print("  npsd busy time by stage at %d/s (polling excluded): %s" % (lat["rate"],
                                                  fmt_split(lat["stages"])))
    print()
    for name in THROUGHPUT_ROWS:
        r = by.get(name)
        if r and r["npsd"].get("stages"):
            print("%s: npsd busy time by stage (polling excluded): %s" % (
                name, fmt_split(r["npsd"]["stages"])))
    lat = by.get("latency")
    for r in rows:
        n = r.get("npsd")
        if not n or "commandstats" not in n or r["scenario"] not in (
                "responses", "usage", "mix", "cluster responses",
                "cluster usage"):
            continue
        cs = {k: v for k, v in n["commandstats"].items()
              if k not in BENCH_COMMANDS}
        ev = n["events"]
        top = sorted(cs.items(), key=lambda kv: -kv[1][1])
        print()
        print("%s: Redis time by command (commandstats, µs per input event "
              "and calls per input event; what write.lua ran counts under "
              "its own name too, and inside eval): %s" % (
                  r["scenario"], ", ".join(
                      "%s %.1f µs %.2f calls" % (k, v[1] / ev, v[0] / ev)
                      for k, v in top[:10])))
    mem = by.get("memory90")
    if mem:
        print()
        print("Redis after 90 days: %d accounts, %d responses, %d usage "
              "events: %.1f KiB per account as loaded, %.1f KiB after "
              "emulated expiry of out:/useen: keys%s" % (
                  mem["accounts"], mem["responses"], mem["usage"],
                  mem["kib_per_account_loaded"],
                  mem["kib_per_account_steady"],
                  " (%d alerts still in the outboxes at the snapshot)" %
                  mem["outbox_left"] if mem.get("outbox_left") else ""))
        print("  per key class (steady), KiB per account: " + ", ".join(
            "%s %.2f" % (k, v[1] / mem["accounts"] / 1024)
            for k, v in sorted(mem["classes_steady"].items(),
                               key=lambda x: -x[1][1])[:14]))
    red = by.get("redis")
    if red:
        print()
        print("Redis ceiling, redis-benchmark -P 16 -c 4 (requests/s): " +
              ", ".join("%s %.0f" % kv
                        for kv in red["redis_benchmark"].items()))
        for kind, v in red["replay"].items():
            cs = sorted(v["by_command"].items(), key=lambda kv: -kv[1][1])
            print("%s, a captured npsd run replayed (%d accounts, %d input "
                  "events): Redis CPU µs per input event %.1f as npsd sent "
                  "it, %.1f with each write.lua call replaced by the commands "
                  "it ran and no WATCH/MULTI/EXEC (the guards: %.0f %%); "
                  "%.1f commands per event (%.1f plain), %.4f transactions "
                  "and %.2f write.lua calls per event (%s), "
                  "%.1f commands and %.0f bytes per call (script %d), state "
                  "record %.0f bytes; the capture run (MONITOR on) "
                  "%.0f events/s" % (
                      kind, v["accounts"], v["events"],
                      v["cpu_us_per_event"], v["plain_cpu_us_per_event"],
                      100 * (1 - v["plain_cpu_us_per_event"] /
                             max(1e-9, v["cpu_us_per_event"])),
                      v["commands"] / v["events"],
                      v["plain_commands"] / v["events"],
                      v.get("transactions", 0) / v["events"],
                      v["write_calls"] / v["events"],
                      ", ".join("%s %d" % kv for kv in
                                sorted(v["write_modes"].items())),
                      v["commands_per_write_call"], v["write_call_bytes"],
                      v["script_bytes"], v["state_bytes"],
                      v["capture_run"]["rate"]))
            print("  by command as sent (µs per input event, calls per "
                  "event): " + ", ".join(
                      "%s %.1f / %.2f" % (k, c[1] / v["events"],
                                          c[0] / v["events"])
                      for k, c in cs[:10]))
    for r in rows:
        if r.get("slowlog"):
            print()
            print("%s: commands of %d µs or more from SLOWLOG (calls, mean "
                  "and max µs; what a script runs is logged too): " % (
                      r["scenario"], SLOWLOG_US) +
                  ", ".join("%s %d calls %.0f / %d µs" % (k, c, u / c, mx)
                            for k, (c, u, mx) in sorted(
                                r["slowlog"].items(), key=lambda x: -x[1][1])
                            if c))
        if r.get("perf"):
            if r.get("perf_stages"):
                print("%s: npsd inclusive CPU by function (%% of npsd "
                      "samples): " % r["scenario"] + ", ".join(
                          "%s %.1f %%" % kv for kv in sorted(
                              r["perf_stages"].items(), key=lambda x: -x[1])))
            for who, groups in r["perf"].items():
                print("%s: perf self time of %s: " % (r["scenario"], who) +
                      ", ".join("%s %.1f %%" % g for g in groups[:10]))
    summary(by)
    print()
    print("targets:")
    checks = []
    if "responses" in by:
        checks.append(("responses events/s", ">= %d" % TARGETS["responses"],
                       by["responses"]["npsd"]["rate"],
                       by["responses"]["npsd"]["rate"] >=
                       TARGETS["responses"]))
    if "usage" in by:
        checks.append(("usage events/s", ">= %d" % TARGETS["usage"],
                       by["usage"]["npsd"]["rate"],
                       by["usage"]["npsd"]["rate"] >= TARGETS["usage"]))
    if "mix" in by and by["mix"].get("pt"):
        f = by["mix"]["npsd"]["rate"] / by["mix"]["pt"]["rate"]
        checks.append(("mix, fraction of pass-through", ">= 50 %", f * 100,
                       f >= TARGETS["mix_fraction"]))
    if lat:
        checks.append(("p99 ms at %d responses/s" % lat["rate"], "<= 25",
                       lat["p99_ms"], lat["p99_ms"] <= TARGETS["p99_ms"]))
    if "rss100k" in by:
        v = by["rss100k"]["npsd"]["rss_mib"]
        checks.append(("npsd RSS MiB, 100,000 accounts", "<= 64", v,
                       v <= TARGETS["rss_mib"]))
    if mem:
        v = mem["kib_per_account_steady"]
        checks.append(("Redis KiB per active account, 90 days", "<= 16", v,
                       v <= TARGETS["redis_kib_per_account"]))
    for name, want, got, ok in checks:
        print("  %-40s %-8s %12.1f  %s" % (name, want, got,
                                           "met" if ok else "NOT met"))


def summary(by):
    """The figures of the state-engine issue, each from the scenario that
    measures it ("-": that scenario did not run)."""
    def npsd(name, key):
        r = by.get(name)
        return r["npsd"][key] if r else None

    def share(name):
        r = by.get(name)
        if not r or not r.get("pt"):
            return "-"
        return "%.1f %% (%s of %s events/s)" % (
            100 * r["npsd"]["rate"] / r["pt"]["rate"],
            fmt_rate(r["npsd"]["rate"]), fmt_rate(r["pt"]["rate"]))

    def per_kind(name, key):
        """µs per input event, and per event of the scenario's own kind
        with the account records' cost charged to it."""
        r = by.get(name)
        if not r:
            return "-"
        n = r["npsd"]
        kind = r["responses"] or r["usage"]
        return "%.1f per input event, %.1f per %s (to the last commit); " \
            "%.1f per input event until settled" % (
                n[key], n[key] * n["events"] / max(1, kind),
                "response" if r["responses"] else "usage event",
                n[key.replace("_s_per_m", "_settled_s_per_m")])
    print()
    print("summary: the figures the state-engine issue asks for (CPU in "
          "µs; an input event is a response, a usage event or an account "
          "record, as in runs G and I):")
    rows = [
        ("Redis CPU-µs per response", per_kind("responses",
                                               "redis_cpu_s_per_m")),
        ("Redis CPU-µs per usage event", per_kind("usage",
                                                  "redis_cpu_s_per_m")),
        ("npsd CPU-µs per response", per_kind("responses", "cpu_s_per_m")),
        ("npsd CPU-µs per usage event", per_kind("usage", "cpu_s_per_m")),
        ("responses rate, % of pass-through", share("responses")),
        ("usage rate, % of pass-through", share("usage")),
    ]
    lat = by.get("latency")
    rows.append(("p99 submission -> classified output, %s/s" % (
        "{:,}".format(lat["rate"]) if lat else "2,000"),
        "%d ms (p50 %d ms, %d responses measured)" % (
            lat["p99_ms"], lat["p50_ms"], lat["measured"]) if lat else "-"))
    rss = npsd("rss100k", "rss_mib")
    r100 = by.get("rss100k")
    rows.append(("npsd peak RSS, %s accounts" % (
        "{:,}".format(r100["accounts"]) if r100 else "99,999"),
        "%.1f MiB" % rss if rss is not None else "-"))
    mem = by.get("memory90")
    rows.append(("Redis KiB per active account, 90 days",
                 "%.1f steady, %.1f as loaded" % (
                     mem["kib_per_account_steady"],
                     mem["kib_per_account_loaded"]) if mem else "-"))
    for name in ("cluster responses", "cluster usage"):
        r = by.get(name)
        if not r:
            continue
        n = r["npsd"]
        rows.append((name + ", 3 primaries",
                     "%s events/s%s; npsd %.1f µs per input event; Redis "
                     "per node %s (sum %.1f) µs per input event" % (
                         fmt_rate(n["rate"]),
                         " (%.1f %% of the pass-through)" % (
                             100 * n["rate"] / r["pt"]["rate"])
                         if r.get("pt") else "", n["cpu_s_per_m"],
                         " / ".join("%.1f%s" % (
                             v, " ({g})" if p == n["g_node"] else "")
                             for p, v in sorted(
                                 n["node_redis_cpu_s_per_m"].items())),
                         n["redis_cpu_s_per_m"])))
    for k, v in rows:
        print("  %-44s %s" % (k, v))


def main():
    global VERBOSE, EXTRA_SETS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--quick", action="store_true",
                    help="small inputs: a smoke run of a few minutes")
    ap.add_argument("--only", default="",
                    help="comma list of scenarios (default: all)")
    ap.add_argument("--partitions", type=int, default=64)
    ap.add_argument("--accounts", type=int, default=10000,
                    help="accounts in the throughput scenarios")
    ap.add_argument("--profile", action="store_true",
                    help="perf record npsd and redis-server, and SLOWLOG "
                         "every command, in the responses and mix scenarios "
                         "(slows them: their rates are not comparable)")
    ap.add_argument("--set", action="append", default=[],
                    metavar="KEY=VALUE",
                    help="extra npsd setting for every npsd run (repeat)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the input sizes (default 1)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    VERBOSE = not a.quiet
    EXTRA_SETS = list(a.set)
    for b in ("npsd", "npsctl", "npsd_passthrough"):
        if not os.path.exists(os.path.join(a.build, b)):
            sys.exit("%s/%s missing: cmake --build %s" % (a.build, b, a.build))
    # Input sizes: at the rates measured on 2026-11-26 (docs/benchmarks.md)
    # each npsd run took 30-60 s; with the state engine in C, 15-40 s.
    # Raise --scale when npsd gets faster so that every run still lasts
    # well over 10 s.
    sc = a.scale * (0.1 if a.quick else 1.0)

    def n(x, least=100):
        return max(least, int(x * sc))
    only = set(filter(None, a.only.split(",")))

    def want(name):
        return not only or name in only

    perf_dir = tempfile.mkdtemp(prefix="npsd-bench-perf-") \
        if a.profile else None
    rows = []
    t0 = time.time()
    print("load average before: %.2f" % loadavg(), flush=True)
    plan = [
        ("responses", lambda: throughput(a, "responses", a.accounts,
                                         responses=n(60000), perf=perf_dir)),
        ("usage", lambda: throughput(a, "usage", a.accounts,
                                     usage=n(150000))),
        ("mix", lambda: throughput(a, "mix", a.accounts,
                                   responses=n(150000) // 200,
                                   usage=n(150000), perf=perf_dir)),
        ("scale2", lambda: throughput(a, "scale2", a.accounts,
                                      responses=n(60000), instances=2,
                                      with_pt=False)),
        ("rss100k", lambda: throughput(a, "rss100k",
                                       10000 if a.quick else 99999,
                                       responses=n(50000), with_pt=False)),
        ("latency", lambda: latency(a, 2000, 20 if a.quick else 40,
                                    a.accounts)),
        ("latency500", lambda: dict(latency(a, 500, 20 if a.quick else 40,
                                            a.accounts),
                                    scenario="latency500")),
        ("memory90", lambda: memory90(a, 200 if a.quick else 2000, 30, 2)),
        # the responses and the usage inputs again, on 3 primaries
        ("cluster", lambda: throughput(a, "cluster responses", a.accounts,
                                       responses=n(60000), cluster=True)),
        ("cluster", lambda: throughput(a, "cluster usage", a.accounts,
                                       usage=n(150000), cluster=True)),
        ("redis", lambda: redis_ceiling(a, n(1000000, 10000),
                                        n(2000, 200))),
    ]
    failed = []
    try:
        for name, fn in plan:
            if not want(name):
                continue
            try:
                rows.append(fn())
            except Exception as e:  # report the others, then fail
                import traceback
                traceback.print_exc()
                failed.append((name, str(e)))
    finally:
        if perf_dir and os.environ.get("BENCH_KEEP_PERF"):
            print("perf data kept in", perf_dir)
        elif perf_dir:
            shutil.rmtree(perf_dir, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "quick": a.quick, "scale": a.scale,
                       "partitions": a.partitions, "accounts": a.accounts,
                       "failed": failed, "rows": rows}, f, indent=1,
                      default=str)
    report(rows, a)
    print("\nwall time %.0f s, load average after: %.2f" % (
        time.time() - t0, loadavg()))
    for name, why in failed:
        print("FAILED %s (no numbers reported for it): %s" % (name, why))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

"""npsd benchmark: one command, one machine.

    /usr/bin/python3 tests/bench/run.py            # full run, ~10-15 min
    /usr/bin/python3 tests/bench/run.py --quick    # smoke run, a few minutes

Every scenario starts its own private redis-server (free port, no
persistence) and development broker (`npsctl broker`, librdkafka's mock
cluster) and tears them down afterwards. Method and results:
docs/benchmarks.md.

Scenarios (--quick runs them with a tenth of the input):

  responses   pre-produced survey responses only
  usage       pre-produced product.usage events only (and account records)
  mix         1 response per 200 usage events, interleaved across accounts
  scale2      the responses input consumed by 2 npsd instances in one group
  rss100k     99,999 accounts (npsctl gen's maximum): npsd peak RSS
  latency     `npsctl gen --rate 2000` while npsd runs: end-to-end latency
  latency500  the same at 500 responses/s
  memory90    90 days of synthetic history: Redis bytes per active account
  redis       Redis' own rate: redis-benchmark for the commands apply.lua
              issues, and the real apply.lua timed per call and per mode

Throughput scenarios pre-produce their whole input with `npsctl gen --rate 0`
(so the generator does not compete for the 2 cores while npsd is timed),
then run the pass-through ceiling (build/npsd_passthrough, npsd's librdkafka
settings, no work) and npsd on the same input, one after the other, each in
its own consumer group. "Sustained" is the rate between the moments 10 % and
90 % of the input was committed (start-up and the last partial batches
excluded). The development broker keeps at most 5 MiB or 100k messages per
partition, so topics get many partitions (--partitions, default 64) and the
run checks that nothing was trimmed.

Every number is printed only after the run verified its counts: input topics
hold exactly what the generator delivered (low watermarks 0), the consumer
group committed every end offset, npsd's /metrics counted every message once
(consumed == input, accepted == responses, rejected == 0), every response has
exactly one classified output, and Redis independently holds every response
(sum of the accounts' 90d window counts) and every usage event (the usage
dedupe sets). A scenario that fails a check prints FAILED with the reason
and no numbers; the others still run, and the command exits 1.

Nothing here is a pass/fail test of performance: targets are compared and
shown, never asserted.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import REPO, Stack, epoch_day, free_port, wait_for  # noqa: E402

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


def redis_cpu(st):
    i = st.r.info("cpu")
    return i["used_cpu_user"] + i["used_cpu_sys"]


def commandstats(st):
    """{command: (calls, usec)}; commands run by scripts count too."""
    return {k[len("cmdstat_"):]: (v["calls"], v["usec"])
            for k, v in st.r.info("commandstats").items()}


def evalsha_stats(st):
    cs = st.r.info("commandstats").get("cmdstat_evalsha", {})
    return cs.get("calls", 0), cs.get("usec", 0)


# ---- one timed consumer run -----------------------------------------------

def timed_run(st, kind, group, topics, ends, instances=1, sets=(),
              perf=None, timeout=900):
    """Runs npsd (kind "npsd", `instances` of them) or the pass-through
    (kind "pt") in `group` until it committed every end offset in `ends`.
    Returns the timings, CPU and RSS figures."""
    total = sum(ends.values())
    tps = sorted(ends)
    st.r.config_resetstat()
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
    r0, b0 = redis_cpu(st), proc_cpu(st.broker.pid)
    e0 = evalsha_stats(st)
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
    rcpu, bcpu = redis_cpu(st) - r0, proc_cpu(st.broker.pid) - b0
    e1 = evalsha_stats(st)
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
           "broker_cpu_s_per_m": bcpu / total * 1e6,
           "rss_mib": rss, "evalsha_calls": e1[0] - e0[0],
           "steal": (j1[0] - j0[0]) / max(1, j1[1] - j0[1]),
           "evalsha_usec": e1[1] - e0[1], "commandstats": cstats}
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


def verify_redis_responses(st, accounts, responses, window="90d"):
    """Sum over accounts of the long window's response count."""
    pipe = st.r.pipeline(transaction=False)
    for i in range(1, accounts + 1):
        pipe.hget("nps:{%s}:w:%s" % (acct_id(i, accounts), window),
                  "responses")
    got = sum(int(v or 0) for v in pipe.execute())
    if got != responses:
        raise AssertionError("Redis windows hold %d responses, %d sent" % (
            got, responses))


def acct_id(i, accounts):
    return "acct-%04d" % i  # as npsctl gen names them


def verify_redis_usage(st, usage):
    """Every counted usage event id is in a per-day dedupe set."""
    keys = list(st.r.scan_iter("nps:*:useen:*", count=10000))
    pipe = st.r.pipeline(transaction=False)
    for k in keys:
        pipe.scard(k)
    got = sum(pipe.execute())
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
               instances=1, with_pt=True, perf=None):
    """Pre-produces the input, runs the pass-through then npsd on it."""
    prefix = "u." if usage else ""
    st = BenchStack(a.build, a.partitions,
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
               "partitions": a.partitions, "load_before": loadavg()}
        if with_pt:
            log(name, "pass-through over", total, "messages")
            pt = timed_run(st, "pt", "passthrough", inputs, ends)
            verify_pt(st, pt, total)
            row["pt"] = pt
        if perf:
            # every command into SLOWLOG: per-mode apply.lua durations
            # (commands scripts run are logged too: a 40 µs threshold keeps
            # nearly every EVALSHA and few of them)
            st.r.config_set("slowlog-log-slower-than", 40)
            st.r.config_set("slowlog-max-len", 500000)
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
            verify_redis_responses(st, accounts, n_resp)
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


def slowlog_modes(st):
    """Per-mode apply.lua durations from SLOWLOG (profile runs log every
    command): {mode: [calls, events, usec]}. Raw reply: SLOWLOG keeps the
    first 32 arguments, each cut to 128 bytes; the mode (argument 10) and
    the event count (11) are intact."""
    raw = st.r.execute_command("SLOWLOG", "GET", 1000000)
    out = {}
    for e in raw:
        args = e[3]
        if len(args) < 10 or str(args[0]).upper() != "EVALSHA":
            continue
        mode = args[9]
        try:
            n = int(args[10]) if mode in ("responses", "usage",
                                          "followups") else 1
        except (IndexError, ValueError):
            n = 1
        c = out.setdefault(mode, [0, 0, 0])
        c[0] += 1
        c[1] += n
        c[2] += int(e[2])
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
        verify_redis_responses(st, accounts, sum(
            1 for v in sent if epoch_day(v["submitted_at"]) > today - 90))
        verify_redis_usage(st, n_usage)
        # the cohort queue is drained by npsd about every second: one more
        # (idle) instance drains what the stopped one left
        p = st.npsd_bench(["kafka.group.id=npsd"],
                          "npsd-drain.log")
        wait_for(lambda: st.r.scard("nps:cq") == 0, 120, "cohort queue")
        st.stop(p)
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
        if "}:" in k:
            cls = k.split("}:", 1)[1].split(":", 1)[0]
        else:
            parts = k.split(":")
            cls = ":".join(parts[:2]) if len(parts) > 1 else k
        c = out.setdefault(cls, [0, 0])
        c[0] += 1
        c[1] += b or 0
    return out


# ---- Redis' own rate ------------------------------------------------------------

def redis_ceiling(a, n):
    """redis-benchmark for the commands apply.lua issues (pipelined -P 16)
    and the real apply.lua, with npsd's arguments, per mode."""
    st = BenchStack(a.build, 4)
    try:
        port = st.redis_port
        rb = {}
        tests = [
            ("HINCRBY", ["HINCRBY", "nps:{acct-__rand_int__}:d", "20400:3",
                         "1"]),
            ("HSET 2 fields", ["HSET", "nps:{acct-__rand_int__}:summary",
                               "nps_30d", "12.5", "health", "71"]),
            ("HSETNX", ["HSETNX", "nps:{acct-__rand_int__}:evp:204",
                        "r-__rand_int__", "1"]),
            ("HGETALL", ["HGETALL", "nps:{acct-__rand_int__}:summary"]),
            ("PFADD", ["PFADD", "nps:{acct-__rand_int__}:au:20400",
                       "user-__rand_int__"]),
            ("SADD", ["SADD", "nps:{acct-__rand_int__}:useen:20400",
                      "u-__rand_int__"]),
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
        st.r.flushall()
        lua = time_apply_lua(st)
        return {"scenario": "redis", "redis_benchmark": rb, "apply_lua": lua}
    finally:
        st.close()


def conf_json(now_ms):
    """apply.lua's configuration argument with npsd's defaults, as
    npsd_store_conf_json() builds it."""
    from datetime import datetime, timezone
    now_str = datetime.fromtimestamp(now_ms / 1000, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now_ms % 1000)
    return json.dumps({
        "windows": [30, 90], "long": 90, "low_conf_n": 50,
        "gap_threshold": 15, "gap_min": 3,
        "survey_benchmark": {"relationship": 35, "transactional": 50},
        "benchmark": {"all": 38, "smb": 42, "mid_market": 35,
                      "enterprise": 32},
        "dedupe_ttl": 400 * 86400, "replay_ttl": 7 * 86400,
        "suppress_ms": 30 * 86400000, "previous": 3, "now_str": now_str,
        "usage_dedupe_ttl": 4 * 86400,
        "loop": {"ack_ms": 48 * 3600000, "route_ms": 7 * 86400000,
                 "close_ms": 30 * 86400000, "window_ms": 90 * 86400000},
        "health": {"weights": {"nps": 0.35, "adoption": 0.2,
                               "engagement": 0.15, "support": 0.15,
                               "followup": 0.15},
                   "green": 70, "yellow": 40, "ticket_penalty": 10,
                   "error_penalty": 2, "overdue_penalty": 20,
                   "drop_points": -10, "drop_min": 10, "usage_min": 5,
                   "usage_ratio": 0.5}}, separators=(",", ":"))


def time_apply_lua(st, accounts=500, rounds=4):
    """Server-side µs per apply.lua call (INFO commandstats) by mode and
    events per call, on accounts that already have context and history."""
    with open(os.path.join(REPO, "src", "lua", "apply.lua"), "rb") as f:
        sha = st.r.script_load(f.read())
    now_ms = int(time.time() * 1000)
    today = now_ms // 86400000
    conf = conf_json(now_ms)
    seq = [0]

    def head(acct, mode):
        return ["EVALSHA", sha, 1, "nps:{%s}:summary" % acct, "nps", acct,
                now_ms, today, conf, mode]

    def resp_args(acct, k):
        out = [k]
        for _ in range(k):
            seq[0] += 1
            ts = now_ms - (seq[0] * 7919 % 30) * 86400000 - 3600000
            score = seq[0] * 7 % 11
            out += ["r-b-%d" % seq[0], "user-%s-%03d" % (acct[5:],
                                                          seq[0] % 9),
                    score, ts // 86400000, ts, "2026-11-01T10:00:00.000Z",
                    seq[0] % 4, seq[0] % 2, "en", "email",
                    "pricing" if score < 7 else "", "region\temea\n",
                    "Reports are slow and the price went up again."
                    if score < 7 else "", "%016x" % seq[0]]
        return out

    def usage_args(acct, k):
        out = [k]
        for _ in range(k):
            seq[0] += 1
            ts = now_ms - (seq[0] * 7919 % 30) * 86400000 - 3600000
            out += ["u-b-%d" % seq[0], "user-%s-%03d" % (acct[5:],
                                                          seq[0] % 40),
                    ts // 86400000, seq[0] % 5, "dashboards"
                    if seq[0] % 5 == 1 else "", ts,
                    "2026-11-01T10:00:00.000Z"]
        return out

    accts = ["acct-%04d" % i for i in range(1, accounts + 1)]

    def run(mode, k, build):
        pipe = st.r.pipeline(transaction=False)
        for acct in accts:
            pipe.execute_command(*(head(acct, mode) + build(acct, k)))
        st.r.config_resetstat()
        c0 = redis_cpu(st)
        t = time.time()
        pipe.execute()
        wall = time.time() - t
        cpu = redis_cpu(st) - c0
        cs = st.r.info("commandstats")["cmdstat_evalsha"]
        return {"calls": cs["calls"], "events_per_call": k,
                "us_per_call": cs["usec_per_call"],
                "us_per_event": cs["usec_per_call"] / k,
                "cpu_us_per_call": cpu / len(accts) * 1e6,
                "client_wall_us_per_call": wall / len(accts) * 1e6}

    out = {}
    ctx = ["-1", "name", "Acme", "segment", "smb", "plan", "pro",
           "lifecycle_stage", "active", "csm_owner", "alice.martin",
           "arr", "48000", "seats", "40", "renewal_date", "2027-03-01"]
    out["context"] = run("context", 1, lambda acct, k: ctx)
    for r in range(rounds):  # history: responses spread over 30 days
        run("responses", 5, resp_args)
    for k in (1, 5, 20):
        out["responses n=%d" % k] = run("responses", k, resp_args)
    # the commands one responses n=1 call runs, replayed as plain pipelined
    # commands: what Redis would spend without Lua
    out["responses n=1, its commands without Lua"] = time_plain_commands(
        st, accts, lambda acct: head(acct, "responses") + resp_args(acct, 1))
    for r in range(rounds):
        run("usage", 20, usage_args)
    for k in (1, 20, 100):
        out["usage n=%d" % k] = run("usage", k, usage_args)
    out["usage n=1, its commands without Lua"] = time_plain_commands(
        st, accts, lambda acct: head(acct, "usage") + usage_args(acct, 1))
    return out


MONITOR_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def redis_cpu(st):
    """Redis's own CPU seconds so far (user + system, all threads)."""
    c = st.r.info("cpu")
    return c["used_cpu_user"] + c["used_cpu_sys"]


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
            out += c.encode()
            i += 1
    return bytes(out)


def time_plain_commands(st, accts, call):
    """Server µs per account of the commands that one apply.lua call runs
    (captured with MONITOR on each account's call), sent again to Redis as
    plain pipelined commands. Their sum is what the call's work costs Redis
    without the Lua around it: the floor for a design that computes in npsd
    and only reads and writes in Redis. The replay repeats the captured
    writes on state the calls already changed, so it is an estimate (hash
    field writes cost the same; a SET NX that finds its key costs less)."""
    import socket as so
    sock = so.create_connection(("127.0.0.1", st.r.connection_pool
                                 .connection_kwargs["port"]))
    sock.sendall(b"MONITOR\r\n")
    buf = b""
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    buf = buf.split(b"\r\n", 1)[1]
    pipe = st.r.pipeline(transaction=False)
    for acct in accts:
        pipe.execute_command(*call(acct))
    pipe.execute()
    st.r.ping()  # marks the end of the scripts' commands in the stream
    cmds, done = [], False
    sock.settimeout(10)
    while not done:
        buf += sock.recv(1 << 20)
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            text = line.decode("latin-1")
            if "[0 lua]" in text:
                cmds.append([monitor_unquote(a) for a in
                             MONITOR_ARG.findall(text.split("]", 1)[1])])
            elif '"ping"' in text.lower() and "lua" not in text:
                done = True
    sock.close()
    st.r.config_resetstat()
    pipe = st.r.pipeline(transaction=False)
    for c in cmds:
        pipe.execute_command(*c)
    c0 = redis_cpu(st)
    pipe.execute()
    cpu = redis_cpu(st) - c0
    cs = {k[len("cmdstat_"):]: v for k, v in
          st.r.info("commandstats").items() if k != "cmdstat_config"}
    usec = sum(v["usec"] for v in cs.values())
    return {"calls": len(accts), "events_per_call": 1,
            "us_per_call": usec / len(accts), "us_per_event": usec /
            len(accts), "cpu_us_per_call": cpu / len(accts) * 1e6,
            "commands_per_call": len(cmds) / len(accts),
            "by_command": {k: [v["calls"] / len(accts), v["usec"] / len(accts)]
                           for k, v in sorted(cs.items(),
                                              key=lambda kv: -kv[1]["usec"])}}


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
               "npsd_themes_match", "npsd_store_apply",
               "npsd_store_append_group", "npsd_store_read_replies",
               "npsd_pipeline_enrich", "json_loadb", "npsd_enrich_build",
               "json_dumps", "npsd_pipeline_deliver", "npsd_kafka_produce",
               "npsd_kafka_poll_batch", "npsd_kafka_commit",
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
    print()
    print("| scenario | input events | npsd events/s (sustained) | "
          "pass-through events/s | npsd/pass-through | npsd CPU s per M | "
          "Redis CPU s per M | broker CPU s per M | npsd peak RSS MiB | "
          "events per EVALSHA | µs per EVALSHA | npsd wall in Redis | "
          "CPU steal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("responses", "usage", "mix", "scale2", "rss100k",
                 "memory90"):
        r = by.get(name)
        if not r:
            continue
        n = r["npsd"]
        pt = r.get("pt")
        calls = n["evalsha_calls"] or 1
        print("| %s | %d | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f "
              "| %.0f | %.0f %% | %.0f %% |" % (
                  name + (" (%d inst.)" % n["instances"]
                          if n["instances"] > 1 else ""),
                  n["events"], fmt_rate(n["rate"]),
                  fmt_rate(pt["rate"]) if pt else "-",
                  "%.0f %%" % (100 * n["rate"] / pt["rate"]) if pt else "-",
                  n["cpu_s_per_m"], n["redis_cpu_s_per_m"],
                  n["broker_cpu_s_per_m"], n["rss_mib"],
                  n["events"] / calls, n["evalsha_usec"] / calls,
                  100 * n.get("redis_wait_share", 0) / n["instances"],
                  100 * n.get("steal", 0)))
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
    for name in ("responses", "usage", "mix", "scale2", "rss100k",
                 "memory90"):
        r = by.get(name)
        if r and r["npsd"].get("stages"):
            print("%s: npsd busy time by stage (polling excluded): %s" % (
                name, fmt_split(r["npsd"]["stages"])))
    lat = by.get("latency")
    for r in rows:
        n = r.get("npsd")
        if not n or "commandstats" not in n or r["scenario"] not in (
                "responses", "usage", "mix"):
            continue
        cs = n["commandstats"]
        ev_us = cs.get("evalsha", (0, 0))[1] or 1
        inner = sorted(((k, v) for k, v in cs.items()
                        if k not in ("evalsha", "info", "config", "slowlog",
                                     "script", "ping", "hlen", "hscan",
                                     "hdel|outbox")),
                       key=lambda x: -x[1][1])
        inner_us = sum(v[1] for k, v in inner)
        print()
        print("%s: Redis time inside EVALSHA %.0f s over %d calls; commands "
              "the script ran %.0f %% of it (%s), the rest (%.0f %%) is Lua "
              "and cjson" % (
                  r["scenario"], ev_us / 1e6, cs.get("evalsha", (0,))[0],
                  100 * inner_us / ev_us,
                  ", ".join("%s %.1f %% %d calls" % (k, 100 * v[1] / ev_us,
                                                      v[0])
                            for k, v in inner[:8]),
                  100 - 100 * inner_us / ev_us))
    mem = by.get("memory90")
    if mem:
        print()
        print("Redis after 90 days: %d accounts, %d responses, %d usage "
              "events: %.1f KiB per account as loaded, %.1f KiB after "
              "emulated expiry of out:/useen: keys" % (
                  mem["accounts"], mem["responses"], mem["usage"],
                  mem["kib_per_account_loaded"],
                  mem["kib_per_account_steady"]))
        print("  per key class (steady), KiB per account: " + ", ".join(
            "%s %.2f" % (k, v[1] / mem["accounts"] / 1024)
            for k, v in sorted(mem["classes_steady"].items(),
                               key=lambda x: -x[1][1])[:12]))
    red = by.get("redis")
    if red:
        print()
        print("Redis ceiling, redis-benchmark -P 16 -c 4 (requests/s): " +
              ", ".join("%s %.0f" % kv
                        for kv in red["redis_benchmark"].items()))
        print("apply.lua, server µs per call (per event): " + ", ".join(
            "%s %.0f (%.1f)" % (k, v["us_per_call"], v["us_per_event"])
            for k, v in red["apply_lua"].items()))
        print("  the same, Redis CPU µs per call (user + system, INFO cpu): "
              + ", ".join("%s %.0f" % (k, v["cpu_us_per_call"])
                          for k, v in red["apply_lua"].items()
                          if "cpu_us_per_call" in v))
        for k, v in red["apply_lua"].items():
            if "by_command" in v:
                print("  %s: %.1f commands, by command (calls, µs per "
                      "account): %s" % (k, v["commands_per_call"], ", ".join(
                          "%s %.1f / %.1f" % (c, n, u) for c, (n, u) in
                          list(v["by_command"].items())[:10])))
    for r in rows:
        if r.get("slowlog"):
            print()
            print("%s: apply.lua by mode from SLOWLOG (every call logged): " %
                  r["scenario"] + ", ".join(
                      "%s %d calls, %.1f events/call, %.0f µs/call, %.1f "
                      "µs/event" % (k, c, e / c, u / c, u / e)
                      for k, (c, e, u) in sorted(r["slowlog"].items())
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
    # each npsd run takes 30-60 s. Raise --scale when npsd gets faster so
    # that every run still lasts well over 10 s.
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
        ("redis", lambda: redis_ceiling(a, n(1000000, 10000))),
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
        if perf_dir:
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

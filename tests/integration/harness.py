"""Integration test harness: the real npsd and npsctl binaries against a
private redis-server and the embedded development broker (npsctl broker).

Every test starts its own Redis (free port, no persistence) and broker, so
tests are independent and leave nothing behind. Nothing here is mocked.
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

import contract

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class Stack:
    """redis-server + npsctl broker (+ npsd instances on demand)."""

    def __init__(self, build, partitions=4, name="it"):
        self.build = os.path.abspath(build)
        self.dir = tempfile.mkdtemp(prefix="npsd-%s-" % name)
        self.procs = []
        self.npsd_procs = []
        self.redis_port = free_port()
        self.redis_proc = None
        self.start_redis()
        bfile = os.path.join(self.dir, "bootstrap")
        self.broker = self._spawn(
            [os.path.join(self.build, "npsctl"), "broker", "--partitions",
             str(partitions), "--bootstrap-file", bfile], "broker.log")
        wait_for(lambda: os.path.exists(bfile), 15, "broker bootstrap file")
        with open(bfile) as f:
            self.bootstrap = f.read().strip()
        self.r = redis.Redis(port=self.redis_port, decode_responses=True)

    def _spawn(self, argv, logname, env=None):
        log = open(os.path.join(self.dir, logname), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                             cwd=REPO, env=env)
        p.logname = os.path.join(self.dir, logname)
        self.procs.append(p)
        return p

    def start_redis(self):
        self.redis_proc = self._spawn(
            ["redis-server", "--port", str(self.redis_port), "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--bind", "127.0.0.1"],
            "redis.log")
        r = redis.Redis(port=self.redis_port)
        wait_for(lambda: _ping(r), 10, "redis-server")

    def stop_redis(self):
        self.redis_proc.terminate()
        self.redis_proc.wait(10)

    def npsd(self, *sets, now=None, log="npsd.log"):
        argv = [os.path.join(self.build, "npsd"), "--config",
                os.path.join(REPO, "config", "npsd.conf"),
                "--set", "kafka.bootstrap.servers=" + self.bootstrap,
                "--set", "redis.port=%d" % self.redis_port,
                "--set", "batch.wait.ms=5",
                # no fixed metrics port: tests that probe HTTP set their own
                "--set", "http.listen=",
                # the development broker ignores a clean LeaveGroup: a
                # restarted member would wait out the default 45 s session
                "--set", "kafka.session.timeout.ms=6000"]
        for s in sets:
            argv += ["--set", s]
        if now:
            argv += ["--now", now]
        p = self._spawn(argv, log)
        self.npsd_procs.append(p)
        return p

    def npsctl(self, *args, check=True):
        argv = [os.path.join(self.build, "npsctl")] + list(args)
        return subprocess.run(argv, cwd=REPO, check=check, capture_output=True,
                              text=True, timeout=300)

    def gen(self, *args):
        return self.npsctl("gen", "--bootstrap", self.bootstrap, *args)

    def producer(self):
        return Producer({"bootstrap.servers": self.bootstrap,
                         "enable.idempotence": True})

    def produce(self, topic, items):
        """items: (key, value bytes|str) pairs; waits for every ack."""
        p = self.producer()
        errors = []
        for key, value in items:
            p.produce(topic, value=value, key=key,
                      on_delivery=lambda e, m: e and errors.append(e))
        p.flush(30)
        assert not errors, errors

    def consume_all(self, topic, timeout=30, **_ignored):
        """Every message the topic holds now (up to each partition's high
        watermark at the time of the call), read by direct assignment: no
        group, so no rebalance delay."""
        c = Consumer({"bootstrap.servers": self.bootstrap,
                      "group.id": "it-reader", "enable.auto.commit": False,
                      "enable.partition.eof": False})
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        want = {}
        for p in parts:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p),
                                             timeout=10)
            if hi > lo:
                want[p] = (lo, hi)
        c.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in want.items()])
        out, pos = [], {p: lo for p, (lo, hi) in want.items()}
        deadline = time.time() + timeout
        while any(pos[p] < want[p][1] for p in want):
            if time.time() > deadline:
                raise AssertionError("reading %s timed out" % topic)
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            if m.offset() < want[m.partition()][1]:
                out.append(m)
            pos[m.partition()] = m.offset() + 1
        c.close()
        contract.check_topic(topic, [m.value() for m in out])
        return out

    def count(self, topic):
        """Messages in a topic (sum of high - low watermarks)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "it-count"})
        md = c.list_topics(topic, timeout=10)
        n = 0
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            n += hi - lo
        c.close()
        return n

    def committed(self, group, topic, partitions):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                          timeout=10)
        c.close()
        return {tp.partition: tp.offset for tp in tps}

    def log(self, p):
        with open(p.logname, errors="replace") as f:
            return f.read()

    def wait_log(self, p, text, timeout=30):
        wait_for(lambda: text in self.log(p), timeout, repr(text))

    def stop(self, p, sig=signal.SIGTERM, timeout=30):
        p.send_signal(sig)
        return p.wait(timeout)

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("IT_KEEP_DIRS"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _ping(r):
    try:
        return r.ping()
    except redis.exceptions.ConnectionError:
        return False


# ---- independent NPS arithmetic (SPEC §4), used to check what Redis holds --

def round1(x):
    r = math.floor(abs(x) * 10 + 0.5) / 10
    return -r if x < 0 and r != 0 else r


def nps_exact(diff, n):
    q, rem = divmod(1000 * abs(diff), n)
    if 2 * rem >= n:
        q += 1
    return (-q if diff < 0 else q) / 10


def nps_fields(p, s, d, low_conf_n=50):
    n = p + s + d
    if n == 0:
        return None
    ps, ds = p / n, d / n
    n2 = n + 3
    p2, d2 = (p + 0.75) / n2, (d + 0.75) / n2
    half = 1.96 * math.sqrt(max(0.0, p2 + d2 - (p2 - d2) ** 2) / n2)
    return {
        "responses": n, "promoters": p, "passives": s, "detractors": d,
        "nps": nps_exact(p - d, n),
        "moe": round1(1.96 * 100 * math.sqrt(max(0.0, ps + ds - (ps - ds) ** 2) / n)),
        "ci_low": round1(max(-100.0, 100 * ((p2 - d2) - half))),
        "ci_high": round1(min(100.0, 100 * ((p2 - d2) + half))),
        "low_confidence": 1 if n < low_conf_n else 0,
    }


def category(score):
    return "promoter" if score >= 9 else ("passive" if score >= 7 else "detractor")


ROLE_ALIASES = {"end_user": "end_user", "user": "end_user", "admin": "admin",
                "decision_maker": "decision_maker",
                "executive": "decision_maker", "buyer": "decision_maker"}


def dedupe_markers(r, kind="ev"):
    """{(account, event_id)} of every dedupe marker of a kind: responses
    ("ev") or follow-ups ("fev"). Markers live as fields of per-account
    period hashes <prefix>:{A}:<kind>p:<period>."""
    out = set()
    for k in r.scan_iter("nps:*:%sp:*" % kind, count=5000):
        acct = k[len("nps:{"):k.index("}:")]
        for eid in r.hkeys(k):
            out.add((acct, eid))
    return out


def epoch_day(ts):
    """RFC 3339 string or epoch ms -> UTC epoch day."""
    if isinstance(ts, int):
        return ts // 86400000
    from datetime import datetime
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
               // 86400)


def assert_hash_matches(h, expected, prefix=""):
    """Redis hash h holds exactly expected's fields (as numbers) under
    prefix; absent expected means no such fields."""
    if expected is None:
        stray = [k for k in h if k.startswith(prefix) and
                 k[len(prefix):] in ("responses", "nps")]
        assert not stray, "unexpected fields %s" % stray
        return
    for k, v in expected.items():
        got = h.get(prefix + k)
        assert got is not None, "missing %s%s" % (prefix, k)
        assert float(got) == float(v), "%s%s: redis %s, expected %s" % (
            prefix, k, got, v)


def main(test):
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    args = ap.parse_args()
    t0 = time.time()
    try:
        test(args.build)
    except Exception:
        import traceback
        traceback.print_exc()
        print("FAILED %s (%.1fs)" % (sys.argv[0], time.time() - t0))
        sys.exit(1)
    print("PASSED %s (%.1fs)" % (os.path.basename(sys.argv[0]), time.time() - t0))


# ---- helpers shared by it_dedupe_replay / it_mixed_stream / it_windows_roll
# ---- / it_sigterm (appended)

def _plain_consumer(st):
    return Consumer({"bootstrap.servers": st.bootstrap,
                     "group.id": "it-plain-%f" % time.time(),
                     "enable.auto.commit": False})


def end_offsets(st, topic):
    """{partition: high watermark} of topic (0 for an empty partition)."""
    c = _plain_consumer(st)
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
        return {p: c.get_watermark_offsets(TopicPartition(topic, p),
                                           timeout=10)[1] for p in parts}
    finally:
        c.close()


def read_topic(st, topic, timeout=30):
    """Every message of topic up to its current end offsets, read with a
    manual assignment (no group join, so no rebalance delay and no idle
    guess): returns the messages in partition/offset order."""
    ends = end_offsets(st, topic)
    c = _plain_consumer(st)
    out = []
    try:
        want = {p: e for p, e in ends.items() if e > 0}
        if not want:
            return out
        c.assign([TopicPartition(topic, p, 0) for p in want])
        seen = {p: 0 for p in want}
        deadline = time.time() + timeout
        while any(seen[p] < want[p] for p in want):
            assert time.time() < deadline, \
                "read_topic %s: %s of %s" % (topic, seen, want)
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append(m)
            seen[m.partition()] = m.offset() + 1
    finally:
        c.close()
    out.sort(key=lambda m: (m.partition(), m.offset()))
    contract.check_topic(topic, [m.value() for m in out])
    return out


def produce_tracked(st, topic, items):
    """Like Stack.produce, but returns each item's (partition, offset)."""
    p = st.producer()
    where, errors = [None] * len(items), []

    def cb(i):
        def f(err, msg):
            if err:
                errors.append(err)
            else:
                where[i] = (msg.partition(), msg.offset())
        return f
    for i, (key, value) in enumerate(items):
        p.produce(topic, value=value, key=key, on_delivery=cb(i))
        p.poll(0)
    p.flush(30)
    assert not errors, errors
    assert all(w is not None for w in where), "undelivered messages"
    return where


def all_committed(st, group, topics):
    """True when group's committed offsets reach the end of every
    partition of topics (everything produced so far was processed)."""
    for t in topics:
        ends = end_offsets(st, t)
        if not ends:
            # no metadata yet (the broker creates every topic at start):
            # unknown is not "processed"
            return False
        got = st.committed(group, t, len(ends))
        for p, e in ends.items():
            if e > 0 and got.get(p, -1) != e:
                return False
    return True


def wait_processed(st, group, topics=("nps.responses", "accounts"),
                   timeout=60):
    wait_for(lambda: all_committed(st, group, topics), timeout,
             "group %s to commit the end of %s" % (group, ",".join(topics)),
             interval=0.3)


def load_sent(path):
    """npsctl gen --out JSONL -> list of (topic, key, value bytes)."""
    import base64
    out = []
    with open(path) as f:
        for ln in f:
            rec = json.loads(ln)
            if "value_base64" in rec:
                v = base64.b64decode(rec["value_base64"])
            else:
                v = rec["value"].encode()
            out.append((rec["topic"], rec.get("key"), v))
    return out


def classified(st):
    """Every message on the three category topics: list of (topic, msg)."""
    out = []
    for t in ("nps.detractors", "nps.passives", "nps.promoters"):
        out += [(t, m) for m in read_topic(st, t)]
    return out


def slice_counts(responses):
    """{slice: [promoters, passives, detractors]} over parsed responses,
    slices as in the nps:{A}:w:<window> hash ("all" has no prefix)."""
    from collections import defaultdict
    c = defaultdict(lambda: [0, 0, 0])
    for r in responses:
        idx = {"promoter": 0, "passive": 1, "detractor": 2}[
            category(int(r["score"]))]
        role = ROLE_ALIASES.get(r.get("role"), "other")
        for sl in ("all", r.get("survey_type") or "relationship", role):
            c[sl][idx] += 1
    return c


WINDOW_SLICES = ["relationship", "transactional", "end_user", "admin",
                 "decision_maker", "other"]


def window_problems(h, responses):
    """Differences between a window hash and the independent computation
    over responses (every field of every slice; absent slices absent)."""
    c = slice_counts(responses)
    exp = {}
    for sl, cnt in c.items():
        f = nps_fields(*cnt)
        pre = "" if sl == "all" else sl + "."
        for k, v in f.items():
            exp[pre + k] = float(v)
    got = {k: float(v) for k, v in h.items()}
    probs = []
    for k in sorted(set(exp) | set(got)):
        if exp.get(k) != got.get(k):
            probs.append("%s: redis %s, expected %s" % (k, got.get(k),
                                                        exp.get(k)))
    return probs


# ---- fault injection (it_redis_outage / it_kill9 / it_scale_out /
# ---- it_broker_faults; appended)

class FaultStack(Stack):
    """Stack with fault-injection options:

    control=True   the broker runs with --control; broker_cmd("down 1")
                   sends one command and returns its reply ("ok" or
                   "error: ...").
    persist=True   redis-server with appendonly yes / appendfsync always, so
                   its state survives stop_redis() + start_redis().
    brokers=N      brokers in the development cluster (ids 1..N).
    """

    def __init__(self, build, partitions=4, name="it", control=False,
                 persist=False, brokers=1):
        self.control = control
        self.persist = persist
        self.brokers = brokers
        super().__init__(build, partitions=partitions, name=name)

    def _spawn(self, argv, logname, env=None):
        if logname != "broker.log" or len(argv) < 2 or argv[1] != "broker":
            return Stack._spawn(self, argv, logname, env)
        argv = list(argv) + ["--brokers", str(self.brokers)]
        if not self.control:
            return Stack._spawn(self, argv, logname, env)
        argv.append("--control")
        log = open(os.path.join(self.dir, logname), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=log, cwd=REPO,
                             env=env, text=True, bufsize=1)
        p.logname = os.path.join(self.dir, logname)
        self.procs.append(p)
        return p

    def start_redis(self):
        if not self.persist:
            return Stack.start_redis(self)
        self.redis_proc = self._spawn(
            ["redis-server", "--port", str(self.redis_port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always",
             "--dir", self.dir, "--bind", "127.0.0.1"], "redis.log")
        r = redis.Redis(port=self.redis_port)
        wait_for(lambda: _ping(r), 10, "redis-server")

    def stop_redis(self, sig=signal.SIGTERM):
        self.redis_proc.send_signal(sig)
        self.redis_proc.wait(10)

    def broker_cmd(self, line, timeout=15):
        """One control command; returns the reply line without newline.

        Lines are split here from raw os.read() chunks: select() on a
        buffered text stream misses a reply that an earlier readline()
        already pulled into Python's buffer (the bootstrap line and the
        first reply often arrive in one chunk)."""
        import select
        assert self.control, "FaultStack(control=True) needed"
        self.broker.stdin.write(line.strip() + "\n")
        self.broker.stdin.flush()
        fd = self.broker.stdout.fileno()
        buf = getattr(self, "_ctl_buf", b"")
        deadline = time.time() + timeout
        try:
            while True:
                while b"\n" in buf:
                    reply, buf = buf.split(b"\n", 1)
                    reply = reply.decode()
                    if not reply.startswith("bootstrap.servers="):
                        return reply
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("no reply to %r" % line)
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError("broker exited (command %r)" % line)
                buf += chunk
        finally:
            self._ctl_buf = buf

    def broker_ok(self, line):
        reply = self.broker_cmd(line)
        assert reply == "ok", "%s: %s" % (line, reply)


def gen_stream(st, out, count, rate, seed, now, accounts=40, extra=()):
    """npsctl gen in the background (subprocess.Popen), recording what it
    sent to out (JSONL). The stack owns it: close() stops it if it runs."""
    p = subprocess.Popen(
        [os.path.join(st.build, "npsctl"), "gen", "--bootstrap",
         st.bootstrap, "--accounts", str(accounts), "--count", str(count),
         "--rate", str(rate), "--seed", str(seed), "--days", "200",
         "--now", now, "--out", out] + list(extra),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    st.procs.append(p)
    return p


def committed_sum(st, group, topic):
    """Sum of the group's committed offsets on topic (unset counts 0)."""
    parts = len(end_offsets(st, topic)) or 1
    return sum(max(o, 0) for o in st.committed(group, topic, parts).values())


def topic_responses(st):
    """The parsed responses nps.responses holds now (JSON objects only)."""
    out = []
    for m in read_topic(st, "nps.responses"):
        try:
            v = json.loads(m.value())
        except ValueError:
            continue
        if isinstance(v, dict) and "event_id" in v:
            out.append(v)
    return out


def check_exact(st, sent_path, now, source="sent"):
    """Redis equals the independent computation over every response and
    every distinct response has at least one classified message (copies
    identical, on its category's topic). Returns the list of problems
    (empty when all is well).

    source="sent": the responses npsctl gen recorded in sent_path;
    source="topic": the responses nps.responses actually holds (for tests
    where the development broker itself may drop acknowledged input)."""
    from collections import defaultdict
    today = epoch_day(now)
    if source == "topic":
        resp = topic_responses(st)
    else:
        sent = load_sent(sent_path)
        resp = [json.loads(v) for t, k, v in sent if t == "nps.responses"]
    first = {}
    for r in resp:
        first.setdefault(r["event_id"], r)
    probs = []
    evs = len(dedupe_markers(st.r))
    if evs != len(first):
        probs.append("%d dedupe markers for %d responses" % (evs, len(first)))
    by_acct = defaultdict(list)
    for r in first.values():
        by_acct[r["account_id"]].append(r)
    for acct, rs in sorted(by_acct.items()):
        for w in (30, 90):
            inw = [r for r in rs
                   if today - w < epoch_day(r["submitted_at"]) <= today]
            p = window_problems(st.r.hgetall("nps:{%s}:w:%dd" % (acct, w)),
                                inw)
            if p:
                probs.append("%s %dd: %s" % (acct, w, p[:3]))
    by_id = defaultdict(list)
    for topic, m in classified(st):
        v = json.loads(m.value())
        by_id[v["event_id"]].append((topic, m.value()))
    missing = set(first) - set(by_id)
    if missing:
        probs.append("%d responses never published, e.g. %s" % (
            len(missing), sorted(missing)[:5]))
        # lost before npsd (never in the input topic) or by npsd?
        where = {}
        for m in read_topic(st, "nps.responses"):
            try:
                eid = json.loads(m.value()).get("event_id")
            except ValueError:
                continue
            if eid in missing:
                where.setdefault(eid, []).append((m.partition(), m.offset()))
        probs.append("of them in nps.responses: %s; not in it: %s" % (
            sorted(where.items())[:5], sorted(missing - set(where))[:5]))
    extra = set(by_id) - set(first)
    if extra:
        probs.append("%d published responses never sent" % len(extra))
    for eid, copies in by_id.items():
        if len(set(c[1] for c in copies)) != 1:
            probs.append("copies of %s differ" % eid)
            break
        want = "nps.%ss" % json.loads(copies[0][1])["category"]
        if copies[0][0] != want:
            probs.append("%s on %s, expected %s" % (eid, copies[0][0], want))
            break
    all90 = [r for r in first.values()
             if today - 90 < epoch_day(r["submitted_at"]) <= today]
    if not probs:
        try:
            wait_for(lambda: not window_problems(
                st.r.hgetall("nps:cohort:all:all:w:90d"), all90), 30,
                "cohort all:all 90d")
        except AssertionError as e:
            probs.append(str(e))
    return probs


def npsd_events(text, what):
    """Number of log lines of an npsd log containing what."""
    return sum(1 for ln in text.splitlines() if what in ln)


"""Integration test harness: the real npsd and npsctl binaries against a
private redis-server and the embedded development broker (npsctl broker).

Every test starts its own Redis (free port, no persistence) and broker, so
tests are independent and leave nothing behind. Nothing here is mocked.
"""
import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

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
        # pid -> "killed" or the exit status a test expects (default 0)
        self.exempt = {}
        self.redis_port = free_port()
        self.redis_proc = None
        self.start_redis()
        bfile = os.path.join(self.dir, "bootstrap")
        self.broker = self._spawn(
            [os.path.join(self.build, "npsctl"), "broker", "--partitions",
             str(partitions), "--bootstrap-file", bfile], "broker.log")
        self.broker.kind = "broker"
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

    def killed(self, p, sig=signal.SIGKILL, timeout=10):
        """Kills p on purpose (kill -9 tests): close() then neither expects
        exit status 0 nor a leak report from it. Returns its status."""
        self.exempt[p.pid] = "killed"
        p.send_signal(sig)
        return p.wait(timeout)

    def expect_exit(self, p, status):
        """p is meant to end with this status (a refused start)."""
        self.exempt[p.pid] = status

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

    def npsd(self, *sets, now=None, log="npsd.log", metrics=False):
        """Starts an npsd. metrics=True serves /metrics on a free port
        (p.metrics_port) for counter(), timers_ran()."""
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
        port = None
        if metrics:
            port = free_port()
            argv += ["--set", "http.listen=127.0.0.1:%d" % port]
        if now:
            argv += ["--now", now]
        p = self._spawn(argv, log)
        p.kind = "npsd"
        p.metrics_port = port
        self.npsd_procs.append(p)
        return p

    def npsctl(self, *args, check=True):
        """Runs one npsctl command; a sanitizer report on its stderr fails
        the test whatever its exit status."""
        argv = [os.path.join(self.build, "npsctl")] + list(args)
        r = subprocess.run(argv, cwd=REPO, check=check, capture_output=True,
                           text=True, timeout=300)
        found = sanitizer_report(r.stderr)
        assert not found, "npsctl %s: %s" % (" ".join(args[:1]), found)
        return r

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

    def stop_clean(self, p):
        """SIGTERM ends npsd with status 0 and its log holds no sanitizer or
        undefined-behaviour report (SPEC §3 "Faults"), checked now rather
        than at close()."""
        assert self.stop(p) == 0, "npsd must exit 0 on SIGTERM"
        found = sanitizer_report(self.log(p))
        assert not found, "npsd log reports %s" % found

    def print_tails(self, lines=40):
        """Prints the end of every log of the stack: a failed CI run keeps
        only its output, not the stack's directory."""
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(self.dir, name), errors="replace") as f:
                tail = f.readlines()[-lines:]
            print("---- last %d lines of %s" % (len(tail), name))
            for ln in tail:
                print("  " + ln.rstrip()[:300])

    def close(self):
        """Ends every process the stack started with SIGTERM, newest first
        (npsd before the broker and Redis it needs to stop cleanly), and
        checks npsd and `npsctl broker`: exit status 0 (or what the test
        declared with expect_exit()/killed()) and a log free of sanitizer
        reports, so leaks and undefined behaviour fail the test. Raises
        AssertionError listing every problem; when a test already failed
        Python shows both."""
        problems = []
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    problems.append("%s did not exit within %d s of SIGTERM"
                                    % (_name(p), STOP_TIMEOUT))
            if not _checked(p):
                continue
            want = self.exempt.get(p.pid, 0)
            if want != "killed" and p.returncode != want:
                problems.append("%s exited with status %s, expected %s" % (
                    _name(p), p.returncode, want))
            found = sanitizer_report(self.log(p))
            if found:
                problems.append("%s: %s" % (_name(p), found))
        failing = sys.exc_info()[0] is not None
        if failing:
            self.print_tails()
        if os.environ.get("IT_KEEP_DIRS") or problems:
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            raise AssertionError("processes did not end cleanly:\n  " +
                                 "\n  ".join(problems))


# Seconds a process gets to exit after SIGTERM (npsd finishes its batch,
# flushes, commits and leaves the group; slower under the sanitizers).
STOP_TIMEOUT = 60

# Lines a sanitizer writes when it finds something: ASan/LSan report
# headers and summaries, UBSan's "file:line:col: runtime error:".
SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|ThreadSanitizer|"
                       r"MemorySanitizer|UndefinedBehaviorSanitizer|"
                       r"runtime error:|==[0-9]+==ERROR: |^SUMMARY: ",
                       re.M)


def sanitizer_report(text):
    """The first sanitizer report line in text (with some context), or
    None."""
    m = SANITIZER.search(text)
    if not m:
        return None
    lo = text.rfind("\n", 0, m.start()) + 1
    return text[lo:lo + 2000]


def _checked(p):
    """npsd and `npsctl broker` (our binaries, run for the whole test) are
    judged at close; redis-server and short npsctl commands are not."""
    return getattr(p, "kind", None) in ("npsd", "broker")


def _name(p):
    return "%s (pid %d, %s)" % (getattr(p, "kind", "process"), p.pid,
                                os.path.basename(getattr(p, "logname", "")))


# ---- the whole Redis state, for "nothing changed" comparisons -------------

# Keys and hash fields that differ between two equal states, each with its
# reason: (test on the key name, hash fields to drop, or None for the key).
VOLATILE = [
    # pending work of the cohort timer: emptied as it runs, so its content
    # at the moment of a dump is a matter of timing, not state
    (lambda k: k == "nps:{g}:dirty", None),
    # the state engine's bookkeeping counts writes, not inputs: an account's
    # version and global-delta sequence (in its :st record), the fences of
    # those sequences, and deltas not yet applied all depend on how the
    # input was cut into batches
    (lambda k: k.endswith(":st") or k.endswith(":gq") or
     k == "nps:{g}:fence" or k.endswith(":rankv"), None),
    # the views' versions count the deltas that touched them, not inputs
    (lambda k: k == "nps:{g}:vv", None),
    # the proof writes behind redis.wait.replicas (10 s TTL): WAIT covers
    # only what its own connection wrote
    (lambda k: k.endswith(":wp"), None),
    # an account with alerts in flight is due again 30 s after they were
    # raised, whatever its next window change: a matter of timing
    (lambda k: k == "nps:{g}:timers", None),
    # the summary's updated_at stamps the last rewrite, which follows the
    # wall-clock pace of the timer rather than the input
    (lambda k: k.endswith(":summary"), ("updated_at",)),
]


def text_or_bytes(v):
    """A value read with NEVER_DECODE: text when it is UTF-8, else the
    bytes (response snapshots and alert log entries are stored packed)."""
    try:
        return v.decode()
    except (AttributeError, UnicodeDecodeError):
        return v


def redis_dump(r, volatile=VOLATILE, pattern="nps:*", with_ttl=False):
    """Every key matching pattern, by type: hash fields, zset members with
    scores, set members, list items, strings; with_ttl adds whether a TTL is
    set (its value ticks). volatile: see VOLATILE."""
    out = {}
    for k in r.scan_iter(pattern, count=1000):
        drop, skip = (), False
        for match, fields in volatile:
            if match(k):
                if fields is None:
                    skip = True
                else:
                    drop += fields
        if skip:
            continue
        t = r.type(k)
        if t == "hash":
            v = {f: x for f, x in r.hgetall(k).items() if f not in drop}
        elif t == "zset":
            v = r.zrange(k, 0, -1, withscores=True)
        elif t == "set":
            v = sorted(r.smembers(k))
        elif t == "list":
            v = [text_or_bytes(x) for x in
                 r.execute_command("LRANGE", k, 0, -1, NEVER_DECODE=True)]
        elif t == "string":
            v = text_or_bytes(r.execute_command("GET", k, NEVER_DECODE=True))
        else:
            v = "(%s)" % t
        out[k] = (t, v, r.ttl(k) > 0) if with_ttl else (t, v)
    return out


def dump_differences(a, b, limit=15):
    """The keys whose dumps differ, for a person: before and after."""
    out, names = [], []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            names.append(k)
            out.append("%s:\n   before %s\n   after  %s" % (
                k, str(a.get(k))[:300], str(b.get(k))[:300]))
    return out[:limit] + (["... %d more: %s" % (
        len(out) - limit, " ".join(names[limit:limit + 100]))]
        if len(out) > limit else [])


def _ping(r):
    try:
        return r.ping()
    except redis.exceptions.ConnectionError:
        return False


# ---- NPS arithmetic straight from the definitions (SPEC §4, docs/contract.md
# ---- "NPS metrics"), used to check what Redis holds.
#
# Written from the text, not from npsd's code: counts stay integers and
# shares stay exact fractions (fractions.Fraction); a square root is taken
# with 40 significant digits (decimal), and a result is rounded to one
# decimal once, at the end, half away from zero (the rule docs/contract.md
# states for NPS; applied to every published one-decimal figure).

def _exact(x):
    """int, float, Fraction or Decimal -> Fraction. A float is taken as the
    decimal it prints as (50.65, not the binary 50.6499...): the figures
    tests pass here are decimals."""
    if isinstance(x, float):
        return Fraction(repr(x))
    return Fraction(x)


def round_half_away(x, places=1):
    """x rounded to places decimals, a tie going away from zero; returns a
    float. -0 is returned as 0."""
    q = Decimal(1).scaleb(-places)
    d = Decimal(x) if not isinstance(x, Fraction) else \
        Decimal(x.numerator) / Decimal(x.denominator)
    r = d.quantize(q, rounding=ROUND_HALF_UP)  # ROUND_HALF_UP: ties away
    return float(r) + 0.0 if r != 0 else 0.0


def _sqrt(fr):
    """Square root of a non-negative Fraction as a 40-digit Decimal."""
    with localcontext() as ctx:
        ctx.prec = 40
        return (Decimal(fr.numerator) / Decimal(fr.denominator)).sqrt()


def round1(x):
    """One decimal, half away from zero."""
    with localcontext() as ctx:
        ctx.prec = 40
        return round_half_away(_exact(x) if not isinstance(x, Decimal)
                               else x, 1)


def nps_exact(diff, n):
    """100 x diff / n to one decimal, from exact integers."""
    with localcontext() as ctx:
        ctx.prec = 40
        return round_half_away(Fraction(100 * diff, n), 1)


def nps_fields(promoters, passives, detractors, low_conf_n=50):
    """The nine window fields of one slice (SPEC §4), or None for n = 0.

    moe  = 1.96 x 100 x sqrt((p + d - (p - d)^2) / n), p and d the shares
    n' = n + 3, p' = (promoters + 3/4) / n', d' = (detractors + 3/4) / n'
    ci   = 100 x ((p' - d') -/+ 1.96 x sqrt((p' + d' - (p' - d')^2) / n')),
           clamped to [-100, 100]"""
    n = promoters + passives + detractors
    if n == 0:
        return None
    z = Fraction(196, 100)
    p, d = Fraction(promoters, n), Fraction(detractors, n)
    moe_sq = (z * 100) ** 2 * (p + d - (p - d) ** 2) / n
    n2 = n + 3
    p2 = (promoters + Fraction(3, 4)) / n2
    d2 = (detractors + Fraction(3, 4)) / n2
    half_sq = (z * 100) ** 2 * (p2 + d2 - (p2 - d2) ** 2) / n2
    with localcontext() as ctx:
        ctx.prec = 40
        centre = Decimal((p2 - d2).numerator * 100) / \
            Decimal((p2 - d2).denominator)
        half = _sqrt(half_sq)
        lo = max(Decimal(-100), centre - half)
        hi = min(Decimal(100), centre + half)
        return {
            "responses": n, "promoters": promoters, "passives": passives,
            "detractors": detractors,
            "nps": nps_exact(promoters - detractors, n),
            "moe": round_half_away(_sqrt(moe_sq), 1),
            "ci_low": round_half_away(lo, 1),
            "ci_high": round_half_away(hi, 1),
            "low_confidence": 1 if n < low_conf_n else 0,
        }


def health_reference(components, weights):
    """SPEC §5 health from unrounded components {name: value} (absent
    components left out, the other weights rescaled): the weighted mean
    rounded half up to an integer (README "Health"), and its band."""
    have = {k: _exact(v) for k, v in components.items() if v is not None}
    if not have:
        return None, None
    mean = sum(weights[k] * v for k, v in have.items()) / \
        sum(weights[k] for k in have)
    h = math.floor(mean + Fraction(1, 2))
    return h, "green" if h >= 70 else ("yellow" if h >= 40 else "red")


# Hand-computed values (worked on paper from the formulas above, not by
# this code): the references must reproduce them or every test that uses
# them is void. Run at import, so a broken reference fails every test.
#   50 promoters / 30 passives / 20 detractors (n = 100):
#     NPS 30; moe = 196 x sqrt(0.61 / 100) = 196 x 0.078102 = 15.308 -> 15.3
#     n' = 103, p' - d' = 30/103, p' + d' = 71.5/103,
#     half = 1.96 x sqrt((0.694175 - 0.084834) / 103) = 0.150754
#     ci = 29.1262 -/+ 15.0754 -> 14.1 .. 44.2
#   1 promoter (n = 1): moe 0; n' = 4, p' = 7/16, d' = 3/16,
#     half = 1.96 x sqrt((10/16 - 1/16) / 4) = 1.96 x 0.375 = 0.735,
#     ci = 25 -/+ 73.5 -> -48.5 .. 98.5 (exact)
#   1 promoter, 79 passives: NPS 1.25 -> 1.3; 1 detractor: -1.25 -> -1.3
#   0 promoters, 0 passives, 3 detractors: NPS -100; moe 0;
#     n' = 6, p' = 1/8, d' = 5/8, half = 1.96 x sqrt((6/8 - 1/4) / 6)
#     = 1.96 x 0.288675 = 0.565803; ci = -50 -/+ 56.58 -> -100 (clamped
#     from -106.58) .. 6.6
#   health of nps component 65 (w 40), adoption 60 (w 20), support 81
#     (w 10): 4610 / 70 = 65.857 -> 66, yellow; nps 70.5 and support 70.5
#     (w 40, 10): 3525 / 50 = 70.5 -> 71 (a tie goes up), green
def _self_check():
    want = [
        ((50, 30, 20), {"nps": 30.0, "moe": 15.3, "ci_low": 14.1,
                        "ci_high": 44.2, "low_confidence": 0}),
        ((1, 0, 0), {"nps": 100.0, "moe": 0.0, "ci_low": -48.5,
                     "ci_high": 98.5, "low_confidence": 1}),
        ((1, 79, 0), {"nps": 1.3}),
        ((0, 79, 1), {"nps": -1.3}),
        ((0, 0, 3), {"nps": -100.0, "moe": 0.0, "ci_low": -100.0,
                     "ci_high": 6.6}),
    ]
    for counts, exp in want:
        got = nps_fields(*counts)
        for k, v in exp.items():
            assert got[k] == v, "reference %s %s: %s, by hand %s" % (
                counts, k, got[k], v)
    assert nps_fields(0, 0, 0) is None
    w = {"nps": 40, "adoption": 20, "support": 10}
    assert health_reference({"nps": 65, "adoption": 60, "support": 81},
                            w) == (66, "yellow")
    assert health_reference({"nps": Fraction(141, 2),
                             "support": 70.5}, w) == (71, "green")
    assert round1(-4.8999999999999986) == -4.9 and round1(0.05) == 0.1
    assert round1(50.65) == 50.7 and round1(-0.04) == 0.0


_self_check()


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
    try:
        wait_for(lambda: all_committed(st, group, topics), timeout,
                 "group %s to commit the end of %s" % (group,
                                                        ",".join(topics)),
                 interval=0.3)
    except AssertionError as e:
        behind = []
        for t in topics:
            ends = end_offsets(st, t)
            got = st.committed(group, t, len(ends))
            behind += ["%s[%d] committed %s of %d" % (t, p, got.get(p), e_)
                       for p, e_ in sorted(ends.items())
                       if e_ > 0 and got.get(p, -1) != e_]
        raise AssertionError("%s; behind: %s" % (e, ", ".join(behind)))


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
    that add responses of their own; they check first that the topic holds
    exactly what was acknowledged)."""
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
            vs = sorted(set(c[1] for c in copies))
            probs.append("copies of %s differ: %s" % (eid, " | ".join(
                v if isinstance(v, str) else v.decode(errors="replace")
                for v in vs[:2])))
            break
        # the category comes from the score that was sent (SPEC §4), never
        # from the message's own claim
        if eid not in first:
            continue
        cat = category(int(first[eid]["score"]))
        v = json.loads(copies[0][1])
        if copies[0][0] != "nps.%ss" % cat or v.get("category") != cat or \
                v.get("score") != first[eid]["score"]:
            probs.append("%s (score %s) on %s as %s/%s, expected %s" % (
                eid, first[eid]["score"], copies[0][0], v.get("category"),
                v.get("score"), cat))
            break
    all90 = [r for r in first.values()
             if today - 90 < epoch_day(r["submitted_at"]) <= today]
    if not probs:
        try:
            wait_for(lambda: not window_problems(
                st.r.hgetall("nps:cohort:all:all:w:90d"), all90), 30,
                "cohort all:all 90d")
        except AssertionError as e:
            # what the engine still holds back: global deltas written with
            # their accounts but not applied (gq), views waiting to refresh
            gq = {k: [x.decode() for x in st.r.execute_command(
                "ZRANGE", k, 0, -1, "WITHSCORES", NEVER_DECODE=True)[1::2]]
                for k in st.r.scan_iter("nps:{*}:gq", count=1000)}
            probs.append("%s; deltas waiting in gq (sequences): %s; dirty "
                         "views: %s; the view holds %s" % (
                             e, gq,
                             sorted(st.r.smembers("nps:{g}:dirty")),
                             st.r.hgetall("nps:cohort:all:all:w:90d")))
    return probs


def npsd_events(text, what):
    """Number of log lines of an npsd log containing what."""
    return sum(1 for ln in text.splitlines() if what in ln)


# ---- evidence that a step ran (before asserting that it did nothing)

def scrape(p):
    """{sample name with labels: value} of npsd p's /metrics (started with
    metrics=True); {} while it does not answer."""
    import urllib.request
    assert p.metrics_port, "npsd started without metrics=True"
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                    p.metrics_port, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            name, _, val = ln.rpartition(" ")
            out[name] = float(val)
    return out


def counter(p, name):
    """One sample of npsd p's /metrics, waiting until it is served."""
    box = []

    def got():
        v = scrape(p).get(name)
        if v is not None:
            box.append(v)
            return True
        return False
    wait_for(got, 30, "%s on /metrics" % name)
    return box[-1]


def _settled_once(r):
    return (r.scard("nps:{g}:dirty") == 0 and
            r.exists("nps:{g}:rolled") == 1 and
            next(r.scan_iter(match="nps:*:gq", count=1000), None) is None)


def engine_settled(r, settled_once=_settled_once):
    """No cohort, theme or owner view waiting for its refresh, the daily
    roll done, no global delta waiting to be applied: the derived views
    stand for every account's state. Checked twice, a cohort pass (1 s)
    apart: a pass takes the views to refresh off the dirty set before it
    writes them."""
    if not settled_once(r):
        return False
    time.sleep(1.2)
    return settled_once(r)


def state_record(st, acct):
    """npsd's state record of an account, decoded by npsctl (the same code
    as npsd's): loops, follow-ups waiting for their response, counters,
    alert state. None when the account has none."""
    r = st.npsctl("account", acct, "--state", "--redis-port",
                  str(st.redis_port), "--prefix", "nps", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def outbox_len(r):
    """Alerts waiting for the broker: every account's outbox."""
    return sum(r.hlen(k) for k in r.scan_iter("nps:*:outbox", count=1000))


def timers_ran(st, p, timeout=60):
    """Waits for positive evidence that a whole timer pass of npsd p (window
    roll, follow-up deadlines, alert outbox drain) started after this call
    and completed, then for the outbox to be empty. npsd publishes the
    count as soon as a pass ends, so the pass running at the first reading
    ends at +1 and the next, wholly after it, at +2. Returns the count."""
    n0 = counter(p, "npsd_timer_runs_total")
    box = []

    def ran():
        v = scrape(p).get("npsd_timer_runs_total", 0)
        box.append(v)
        return v >= n0 + 2
    wait_for(ran, timeout, "two npsd timer passes after %d" % n0,
             interval=0.2)
    wait_for(lambda: outbox_len(st.r) == 0, timeout,
             "the alert outbox drained")
    return box[-1]


INPUT_TOPICS = ("nps.responses", "product.usage", "accounts",
                "nps.followups")


def input_committed(st, group="npsd"):
    """Sum of the group's committed offsets over every input topic."""
    return sum(committed_sum(st, group, t) for t in INPUT_TOPICS)


def input_total(st):
    """Every message the input topics hold (sum of end offsets)."""
    return sum(sum(end_offsets(st, t).values()) for t in INPUT_TOPICS)


def kill_holding_batch(st, p, group="npsd"):
    """kill -9 npsd p while it holds input it consumed but did not commit,
    so that the restart or a survivor must have it delivered again.

    Redis refuses writes for a while (CLIENT PAUSE WRITE): p's batch in
    hand cannot be applied (npsd commits only after the apply), npsd logs
    "redis unavailable" and keeps publishing its counters. Once /metrics
    shows Redis down, the same snapshot's npsd_messages_consumed_total
    includes that batch (counted before the apply); p is then killed and
    Redis released. Returns (consumed by p, the group's committed offsets
    at the kill, summed over the input topics). p needs metrics=True.

    The snapshot must come from after the failed apply: a timer's failure
    (a cohort refresh) also shows Redis down, in a snapshot published
    before the batch was polled. npsd_redis_errors_total counts failed
    applies only, so a snapshot where it grew is one that counts the batch.
    """
    def metrics():
        m = scrape(p)
        return m if "npsd_redis_errors_total" in m else None
    errors0 = wait_for(metrics, 30, "npsd's /metrics",
                       interval=0.2)["npsd_redis_errors_total"]
    st.r.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
    try:
        st.wait_log(p, "redis unavailable", timeout=30)
        box = []

        def holding():
            m = scrape(p)
            if m.get("npsd_redis_up") == 0 and \
                    m.get("npsd_redis_errors_total", 0) > errors0 and \
                    "npsd_messages_consumed_total" in m:
                box.append(m["npsd_messages_consumed_total"])
                return True
            return False
        wait_for(holding, 30, "npsd to report Redis down", interval=0.2)
        st.killed(p)
    finally:
        st.r.execute_command("CLIENT", "UNPAUSE")
    return box[-1], input_committed(st, group)

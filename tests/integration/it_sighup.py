"""SIGHUP, the environment and the configuration file lookup, with the real
npsd against a real redis-server and the development broker.

Without --config, --check-config names ./config/npsd.conf when there is
one, else the system file when it exists, else none.

npsd starts from its own configuration file with log.level=warn and the
default smb benchmark and priority.arr, next to an unknown NPSD_* variable
(a warning, not a refusal) and Kubernetes service-link variables (silent).
A steady stream of responses runs through the whole test. Then:
1. the file changes benchmark.smb, priority.arr, log.level and themes.file
   (live) and windows and a kafka.* property (restart only); SIGHUP: the
   live values reach what the Redis script writes (summary benchmark) and
   the messages (priority, themes from the new lexicon), the new log level
   shows, the restart-only keys are named in the log and not applied (no 7d
   window appears);
2. the file is broken on a later line; SIGHUP: refused with the reason, the
   valid line before it is not applied either, processing goes on;
3. a burst of SIGHUPs while messages flow.
At the end every response is counted once in Redis, published, and
committed, and npsd still exits 0 on SIGTERM.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Stack, classified, main, wait_for,  # noqa: E402
                     wait_processed)

ACCT = "acct-hup"      # smb, arr 50000, renewal far away
STREAM = "acct-flow"   # the steady stream


def write_conf(path, **kv):
    with open(path + ".tmp", "w") as f:
        for k, v in kv.items():
            f.write("%s = %s\n" % (k.replace("__", "."), v))
    os.replace(path + ".tmp", path)  # never a half-written file


def response(eid, acct, score, ts):
    return json.dumps({"event_id": eid, "account_id": acct,
                       "user_id": "u-" + eid, "score": score,
                       "submitted_at": ts, "role": "admin",
                       "comment": "the banana plan"})


def published(st):
    """{event_id: [message dict, ...]} of the classified topics."""
    out = {}
    for _, m in classified(st):
        v = json.loads(m.value())
        out.setdefault(v["event_id"], []).append(v)
    return out


def test(build):
    st = Stack(build, name="sighup")
    stop = threading.Event()
    try:
        conf = os.path.join(st.dir, "npsd.conf")
        base = {"log__level": "warn", "benchmark__smb": "42",
                "priority__arr": "100000", "windows": "30d,90d",
                "kafka__client__id": "npsd"}
        write_conf(conf, **base)
        env = dict(os.environ)
        env.update({"NPSD_NO_SUCH_SETTING": "1",
                    "NPSD_SERVICE_HOST": "10.0.0.7",
                    "NPSD_SERVICE_PORT": "9464",
                    "NPSD_SERVICE_PORT_METRICS": "9464",
                    "NPSD_PORT": "tcp://10.0.0.7:9464",
                    "NPSD_PORT_9464_TCP_ADDR": "10.0.0.7"})
        for k in list(env):
            if k.startswith("NPSD_") and k not in (
                    "NPSD_NO_SUCH_SETTING", "NPSD_SERVICE_HOST",
                    "NPSD_SERVICE_PORT", "NPSD_SERVICE_PORT_METRICS",
                    "NPSD_PORT", "NPSD_PORT_9464_TCP_ADDR"):
                del env[k]
        argv = [os.path.join(st.build, "npsd"), "--config", conf,
                "--set", "kafka.bootstrap.servers=" + st.bootstrap,
                "--set", "redis.port=%d" % st.redis_port,
                "--set", "batch.wait.ms=5", "--set", "http.listen=",
                "--set", "kafka.session.timeout.ms=6000"]

        # --check-config: the file it read, the warning, no refusal
        chk = subprocess.run(argv + ["--check-config"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert chk.returncode == 0, chk.stderr
        assert chk.stdout.startswith("# configuration file: %s\n" % conf), \
            chk.stdout[:200]
        assert "benchmark.smb = 42\n" in chk.stdout
        assert chk.stderr == ("npsd: warning: environment: "
                              "NPSD_NO_SUCH_SETTING does not name a setting; "
                              "ignored\n"), chk.stderr

        # the file lookup without --config: ./config/npsd.conf first, else
        # the system file (its path as the binary was built, from --help)
        helptext = subprocess.run([argv[0], "--help"], capture_output=True,
                                  text=True, timeout=30).stdout
        sysconf = re.search(r"else (/\S+) when present", helptext).group(1)
        empty = os.path.join(st.dir, "empty")
        os.makedirs(os.path.join(empty, "config"))
        for cwd, want in ((st.dir, sysconf if os.path.exists(sysconf)
                           else "none (defaults, environment and --set only)"),
                          (empty, "config/npsd.conf")):
            if cwd == empty:
                write_conf(os.path.join(empty, "config", "npsd.conf"),
                           benchmark__smb="41")
            chk = subprocess.run(argv[:1] + argv[3:] + ["--check-config"],
                                 env=env, cwd=cwd, capture_output=True,
                                 text=True, timeout=60)
            assert chk.returncode == 0, chk.stderr
            assert chk.stdout.startswith("# configuration file: %s\n" % want), \
                (cwd, chk.stdout[:200])
        assert "benchmark.smb = 41\n" in chk.stdout

        npsd = st._spawn(argv, "npsd.log", env=env)
        st.npsd_procs.append(npsd)
        log = lambda: st.log(npsd)  # noqa: E731
        st.wait_log(npsd, "NPSD_NO_SUCH_SETTING does not name a setting", 30)
        assert "SERVICE" not in log() and "NPSD_PORT" not in log(), log()

        ts = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        renewal = (datetime.now(timezone.utc) + timedelta(days=300)).strftime(
            "%Y-%m-%d")
        st.produce("accounts", [(ACCT, json.dumps({
            "account_id": ACCT, "segment": "smb", "arr": 50000,
            "renewal_date": renewal, "updated_at": ts}))])

        # the steady stream: one response every 50 ms until stopped
        sent = []

        def stream():
            p = st.producer()
            i = 0
            while not stop.is_set():
                eid = "flow-%d" % i
                p.produce("nps.responses", key=STREAM,
                          value=response(eid, STREAM, i % 11, ts))
                p.poll(0)
                sent.append(eid)
                i += 1
                time.sleep(0.05)
            assert p.flush(30) == 0
        th = threading.Thread(target=stream)
        th.start()

        def summary():
            return st.r.hgetall("nps:{%s}:summary" % ACCT)

        def send_and_wait(eid):
            st.produce("nps.responses", [(ACCT, response(eid, ACCT, 3, ts))])
            return wait_for(lambda: published(st).get(eid), 60,
                            "%s published" % eid)[0]

        # before: defaults of the file
        m = send_and_wait("hup-1")
        assert m["priority"] == "p2", m  # arr 50000 < 100000
        assert m["themes"] == [], m      # the built-in lexicon
        assert float(summary()["benchmark"]) == 42, summary()

        # 1. live and restart-only changes
        lexicon = os.path.join(st.dir, "themes.conf")
        with open(lexicon, "w") as f:
            f.write("# one theme\nfruit = banana, bananas\n")
        write_conf(conf, **dict(base, log__level="info", benchmark__smb="10",
                                priority__arr="40000",
                                windows="7d,30d,90d",
                                kafka__client__id="other",
                                themes__file=lexicon))
        npsd.send_signal(signal.SIGHUP)
        # logged at info: it shows only once log.level=info was applied
        st.wait_log(npsd, "configuration reloaded", 30)
        text = log()
        line = [ln for ln in text.splitlines()
                if "configuration reloaded" in ln][0]
        assert "applied=benchmark.smb,priority.arr,themes.file,log.level " \
            "themes=1" in line, line
        restart = [ln for ln in text.splitlines() if "need a restart" in ln]
        assert len(restart) == 1, restart
        assert "keys=kafka.client.id,windows" in restart[0], restart[0]
        m = send_and_wait("hup-2")
        assert m["priority"] == "p1", m  # arr 50000 >= 40000
        assert m["themes"] == ["fruit"], m
        s = summary()
        assert float(s["benchmark"]) == 10, s
        assert float(s["benchmark_delta"]) == float(s["nps_90d"]) - 10, s
        assert not st.r.exists("nps:{%s}:w:7d" % ACCT), "windows applied live"
        assert st.r.exists("nps:{%s}:w:30d" % ACCT)

        # 2. a broken file: refused whole, the reason logged
        write_conf(conf, **dict(base, log__level="info", benchmark__smb="5",
                                themes__file=lexicon,
                                priority__arr="banana"))
        npsd.send_signal(signal.SIGHUP)
        st.wait_log(npsd, "reload refused", 30)
        line = [ln for ln in log().splitlines() if "reload refused" in ln][0]
        assert "priority.arr" in line and "banana" in line, line
        assert "SIGHUP: reloading the configuration" in log()
        m = send_and_wait("hup-3")
        assert m["priority"] == "p1", m
        assert m["themes"] == ["fruit"], m
        assert float(summary()["benchmark"]) == 10, summary()  # not 5

        # 3. a burst of reloads while the stream runs
        write_conf(conf, **dict(base, log__level="info", benchmark__smb="11",
                                priority__arr="40000", themes__file=lexicon))
        for _ in range(5):
            npsd.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        wait_for(lambda: "applied=benchmark.smb" in
                 log().split("reload refused")[-1], 30, "the burst applied")
        time.sleep(1)
        stop.set()
        th.join(60)
        assert not th.is_alive()
        m = send_and_wait("hup-4")
        assert float(summary()["benchmark"]) == 11, summary()
        assert npsd.poll() is None, "npsd exited"

        # nothing lost, nothing counted twice
        wait_processed(st, "npsd", topics=("nps.responses", "accounts"))
        pub = published(st)
        want = set(sent) | {"hup-1", "hup-2", "hup-3", "hup-4"}
        assert set(pub) == want, (len(pub), len(want),
                                  sorted(want - set(pub))[:5])
        twice = [e for e, v in pub.items() if len(v) > 1]
        assert not twice, twice[:5]
        w = st.r.hgetall("nps:{%s}:w:90d" % STREAM)
        assert int(w["responses"]) == len(sent), (w["responses"], len(sent))
        assert int(st.r.hget("nps:{%s}:w:90d" % ACCT, "responses")) == 4
        print("%d stream responses through the reloads, each counted once" %
              len(sent))
        assert st.stop(npsd) == 0
    finally:
        stop.set()
        st.close()


if __name__ == "__main__":
    main(test)

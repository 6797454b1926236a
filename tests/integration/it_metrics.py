"""Observability: /metrics (Prometheus text 0.0.4), /livez, /readyz and
/healthz of the real npsd, against a real redis-server and the embedded
broker.

Checks the counters after a few good and bad messages, the histograms and
the consumer lag gauge, npsd_build_info and the process_* metrics, and that
`promtool check metrics` accepts the live output. Then stops Redis for longer
than the /livez stall limit: /readyz (and /healthz) turn 503 naming Redis
within seconds (also while a batch waits for Redis), /livez stays 200 all
along, and /readyz returns to 200 once Redis is back, with the waiting batch
processed. Then Redis holds every client (CLIENT PAUSE) for longer than the
stall limit: npsd's loop is stuck inside a Redis call, and /livez turns 503
until the pause ends. A second npsd on the same http.listen exits 1 with a
clear message.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, free_port, main, wait_for  # noqa: E402

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (\S+)$')


def get(port, path, timeout=5):
    """(status, content-type, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError):
        return None, None, ""


def parse_metrics(text):
    """{(name, frozenset(labels)): float}; checks the exposition format on
    the way: HELP and TYPE once per family, before its samples."""
    out, types = {}, {}
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ", 3)
            assert name not in types, "TYPE twice: " + name
            assert typ in ("counter", "gauge", "histogram"), ln
            types[name] = typ
            continue
        m = SAMPLE.match(ln)
        assert m, "not a sample line: %r" % ln
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or (family in types and
                                 types[family] == "histogram"), \
            "sample before its TYPE: " + ln
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"',
                                      m.group(3) or ""))
        out[(name, labels)] = float(m.group(7))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset((k, str(v)) for k, v in labels.items())))


def response(i, score, ts):
    return json.dumps({"event_id": "m-%d" % i, "account_id": "acct-m",
                       "user_id": "u%d" % i, "score": score,
                       "submitted_at": ts, "comment": "fine"})


def test(build):
    st = Stack(build, name="metrics")
    try:
        port = free_port()
        t_spawn = time.time()
        # /livez stalls after 3 s without the loop coming round; a Redis
        # call may block for 30 s before it times out (the wedge below)
        npsd = st.npsd("http.listen=127.0.0.1:%d" % port,
                       "kafka.statistics.interval.ms=500", "log.level=warn",
                       "http.livez.stall.s=3", "redis.timeout.ms=30000")
        wait_for(lambda: get(port, "/readyz")[0] == 200, 60,
                 "/readyz 200 after start")
        for path in ("/readyz", "/healthz", "/livez"):
            status, ctype, body = get(port, path)
            assert (status, body) == (200, "ok\n"), (path, status, body)
            assert ctype.startswith("text/plain"), ctype

        ts = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        good = [("acct-m", response(i, s, ts))
                for i, s in enumerate([10, 9, 7, 3, 0])]
        bad = [("acct-m", b"{not json"), ("acct-m", b"{\"x\": 1"),
               ("acct-m", json.dumps({"event_id": "m-x",
                                      "account_id": "acct-m",
                                      "score": 5}))]
        st.produce("nps.responses", good + bad)

        def settled():
            s, _, b = get(port, "/metrics")
            if s != 200:
                return None
            ms = parse_metrics(b)
            c = metric(ms, "npsd_messages_consumed_total")
            p = metric(ms, "npsd_messages_produced_total")
            return ms if c == 8 and p == 8 else None
        ms = wait_for(settled, 60, "8 consumed and 8 produced")
        status, ctype, body = get(port, "/metrics")
        assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
        assert metric(ms, "npsd_responses_accepted_total") == 5
        assert metric(ms, "npsd_responses_duplicate_total") == 0
        assert metric(ms, "npsd_messages_rejected_total",
                      reason="invalid_json") == 2
        assert metric(ms, "npsd_messages_rejected_total",
                      reason="missing_field") == 1
        assert metric(ms, "npsd_messages_rejected_total",
                      reason="too_large") == 0
        assert metric(ms, "npsd_redis_errors_total") == 0
        for t in ("role_gap", "nps_drop", "health_band", "usage_drop",
                  "followup_overdue"):
            assert metric(ms, "npsd_alerts_raised_total", type=t) is not None, t
        assert metric(ms, "npsd_kafka_up") == 1
        assert metric(ms, "npsd_redis_up") == 1
        batches = metric(ms, "npsd_batches_total")
        assert batches >= 1
        assert metric(ms, "npsd_batch_size_messages_count") == batches
        assert metric(ms, "npsd_batch_size_messages_sum") == 8
        assert metric(ms, "npsd_redis_apply_duration_seconds_count") >= 1
        # where the loop's time went: every stage reported, Redis and the
        # delivery wait measurably > 0, and no stage longer than the run
        stages = {dict(k[1])["stage"]: v for k, v in ms.items()
                  if k[0] == "npsd_loop_stage_seconds_total"}
        assert set(stages) == {"parse", "redis", "enrich", "deliver",
                               "commit", "alerts", "timers"}, stages
        assert stages["redis"] > 0 and stages["deliver"] > 0, stages
        assert all(0 <= v < 120 for v in stages.values()), stages
        # every input message has a Kafka timestamp: one latency each
        assert metric(ms, "npsd_processing_latency_seconds_count") == 8
        assert metric(ms, "npsd_processing_latency_seconds_bucket",
                      le="+Inf") == 8
        assert 0 <= metric(ms, "npsd_processing_latency_seconds_sum") < 8 * 60
        # consumer lag, from librdkafka statistics: committed, so 0
        def lag_known():
            m = parse_metrics(get(port, "/metrics")[2])
            lags = {dict(k[1])["partition"]: v for k, v in m.items()
                    if k[0] == "npsd_consumer_lag" and
                    dict(k[1]).get("topic") == "nps.responses"}
            return lags if lags and all(v == 0 for v in lags.values()) \
                else None
        lag_known_ = wait_for(lag_known, 30, "npsd_consumer_lag of 0")
        assert set(lag_known_) <= {"0", "1", "2", "3"}, lag_known_
        assert get(port, "/nope")[0] == 404

        # build info: the versions, the Redis server's from INFO
        tck = os.sysconf("SC_CLK_TCK")

        def cpu_now():
            with open("/proc/%d/stat" % npsd.pid) as f:
                fl = f.read().rsplit(")", 1)[1].split()
            return (int(fl[11]) + int(fl[12])) / tck
        cpu0 = cpu_now()
        body = get(port, "/metrics")[2]
        cpu1 = cpu_now()
        ms = parse_metrics(body)
        server = st.r.info("server")["redis_version"]
        infos = [dict(k[1]) for k in ms if k[0] == "npsd_build_info"]
        assert len(infos) == 1, infos
        info = infos[0]
        assert info["redis_server"] == server, (info, server)
        assert re.match(r"^\d+\.\d+\.\d+$", info["version"]), info
        assert re.match(r"^\d+\.\d+\.\d+", info["librdkafka"]), info
        assert re.match(r"^\d+\.\d+\.\d+$", info["hiredis"]), info
        assert metric(ms, "npsd_build_info", **info) == 1
        # process_* as Prometheus' client libraries report them, from
        # /proc/<pid> of this very process
        with open("/proc/%d/stat" % npsd.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            btime = [int(ln.split()[1]) for ln in f if ln.startswith("btime")][0]
        start = btime + int(fields[19]) / tck
        assert abs(metric(ms, "process_start_time_seconds") - start) < 0.02
        assert t_spawn - 2 < start < t_spawn + 30, (start, t_spawn)
        assert metric(ms, "process_resident_memory_bytes") > 1 << 20
        assert metric(ms, "process_virtual_memory_bytes") >= \
            metric(ms, "process_resident_memory_bytes")
        assert cpu0 - 0.006 <= metric(ms, "process_cpu_seconds_total") \
            <= cpu1 + 0.006, (cpu0, metric(ms, "process_cpu_seconds_total"),
                              cpu1)
        fds = len(os.listdir("/proc/%d/fd" % npsd.pid))
        assert abs(metric(ms, "process_open_fds") - fds) <= 5, \
            (metric(ms, "process_open_fds"), fds)
        assert metric(ms, "process_max_fds") >= metric(ms, "process_open_fds")
        # and the live output passes Prometheus' own checker
        chk = subprocess.run(["promtool", "check", "metrics"], input=body,
                             capture_output=True, text=True, timeout=60)
        assert chk.returncode == 0, (chk.stdout, chk.stderr)

        # A second npsd cannot bind the same address: exit 1, clear message.
        second = st.npsd("http.listen=127.0.0.1:%d" % port,
                         "kafka.group.id=second", log="npsd-2.log")
        st.expect_exit(second, 1)
        assert second.wait(30) == 1
        log2 = st.log(second)
        assert "http.listen" in log2 and "127.0.0.1:%d" % port in log2, log2
        assert "Address already in use" in log2, log2

        # Redis goes away while npsd is idle: 503 naming Redis.
        st.stop_redis()
        t0 = time.time()
        wait_for(lambda: get(port, "/readyz")[0] == 503, 10,
                 "/readyz 503 with Redis down")
        for path in ("/readyz", "/healthz"):
            status, _, body = get(port, path)
            assert status == 503 and "redis" in body.lower(), (path, body)
            assert body.endswith("\n") and body.count("\n") == 1, repr(body)
        print("healthz down after %.1fs: %s" % (time.time() - t0,
                                                body.strip()))
        assert metric(parse_metrics(get(port, "/metrics")[2]),
                      "npsd_redis_up") == 0

        # A batch arrives and waits for Redis: the health stays current.
        st.produce("nps.responses", [("acct-m", response(99, 8, ts))])
        def errors():
            return metric(parse_metrics(get(port, "/metrics")[2]),
                          "npsd_redis_errors_total") or 0
        wait_for(lambda: errors() >= 2, 20, "the batch retrying against Redis")
        # one more retry seen: the batch is still waiting, not done
        e0 = errors()
        wait_for(lambda: errors() > e0, 20, "another retry against Redis")
        status, _, body = get(port, "/healthz")
        assert status == 503 and "redis" in body.lower(), (status, body)
        # the loop is busy retrying that batch, not wedged: /livez stays
        # 200 for twice the stall limit
        t1 = time.time()
        while time.time() - t1 < 6:
            status, _, body = get(port, "/livez")
            assert (status, body) == (200, "ok\n"), \
                "/livez %s during the Redis outage: %s" % (status, body)
            assert get(port, "/readyz")[0] == 503
            time.sleep(0.25)
        assert metric(parse_metrics(get(port, "/metrics")[2]),
                      "npsd_messages_produced_total") == 8

        # Redis is back: 200 again, the waiting batch is processed.
        st.start_redis()
        t0 = time.time()
        wait_for(lambda: get(port, "/healthz")[0] == 200, 20,
                 "/healthz 200 with Redis back")
        print("healthz up after %.1fs" % (time.time() - t0))
        wait_for(lambda: metric(parse_metrics(get(port, "/metrics")[2]),
                                "npsd_messages_produced_total") == 9, 30,
                 "the waiting batch produced")
        ms = parse_metrics(get(port, "/metrics")[2])
        assert metric(ms, "npsd_redis_up") == 1
        assert metric(ms, "npsd_messages_consumed_total") == 9
        assert get(port, "/readyz")[0] == 200
        assert get(port, "/livez")[0] == 200

        # Redis holds every command for 10 s: the loop's next Redis call
        # (the cohort timer, every second) blocks inside hiredis, the loop
        # stops coming round, and /livez says so after its 3 s limit.
        st.r.execute_command("CLIENT", "PAUSE", "10000", "ALL")
        t0 = time.time()
        wait_for(lambda: get(port, "/livez")[0] == 503, 10,
                 "/livez 503 with the loop stuck in a Redis call")
        status, _, body = get(port, "/livez")
        print("livez 503 after %.1fs: %s" % (time.time() - t0, body.strip()))
        assert "main loop" in body, body
        wait_for(lambda: get(port, "/livez")[0] == 200, 30,
                 "/livez 200 once the pause ends")
        assert time.time() - t0 > 5, "livez back before the pause ended"

        assert st.stop(npsd) == 0
        # log.level=warn: warnings (Redis lost), nothing below
        log = st.log(npsd)
        assert "level=warn" in log, log
        assert "level=info" not in log and "level=debug" not in log, log
        assert get(port, "/healthz")[0] is None, "still listening after exit"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

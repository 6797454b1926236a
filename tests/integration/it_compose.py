"""docker-compose.yml and Dockerfile, checked without Docker (CI-safe).

Parses docker-compose.yml and checks its structure: the services (Kafka in
KRaft mode, Redis 7, the one-shot topic creation, npsd, the demo
generator), their health conditions, and that the topics created are those
npsd uses. The npsd service's NPSD_* environment is fed to the real
`npsd --check-config`, which must accept it and show each variable as the
setting it names; an unknown NPSD_* variable is only a warning, and a bad
value of a known one must be refused. The
Dockerfile must be multi-stage, Debian 12 based, build with CMake, copy
only paths that exist, and run as a non-root user. Prometheus and Grafana
come only with the profile "observability": Prometheus scrapes npsd,
Grafana gets the redis-datasource plugin and its provisioning (data
sources, the dashboard directory) from files that exist.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, main  # noqa: E402


def check_config(build, env, cwd):
    """Runs npsd --check-config with only env (and PATH) set, in cwd (no
    config/npsd.conf there, as in the container). Returns (rc, {key: value},
    output)."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    e.update(env)
    p = subprocess.run([os.path.join(os.path.abspath(build), "npsd"),
                        "--check-config"], env=e, cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    settings = {}
    for ln in p.stdout.splitlines():
        if " = " in ln:
            k, v = ln.split(" = ", 1)
            settings[k] = v
        elif ln.endswith(" ="):
            settings[ln[:-2]] = ""
    return p.returncode, settings, p.stdout + p.stderr


def env_dict(svc):
    env = svc.get("environment", {})
    if isinstance(env, list):  # ["K=V", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def env_name(key):
    return "NPSD_" + key.upper().replace(".", "_")


def setting_of(var, settings):
    """The setting an NPSD_* variable names (README: '.' as '_', upper
    case; after NPSD_KAFKA_, every '_' reads as '.')."""
    if var.startswith("NPSD_KAFKA_"):
        return "kafka." + var[len("NPSD_KAFKA_"):].lower().replace("_", ".")
    for k in settings:
        if env_name(k) == var:
            return k
    return None


def depends(svc):
    d = svc.get("depends_on", {})
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (c or {}).get("condition", "service_started")
            for name, c in d.items()}


def argv_of(svc):
    parts = []
    for k in ("entrypoint", "command"):
        v = svc.get(k)
        if isinstance(v, str):
            parts += shlex.split(v)
        elif v:
            parts += [str(x) for x in v]
    return parts


def check_dockerfile(path, context):
    with open(path) as f:
        text = f.read()
    # join continuation lines, drop comments
    lines = [ln for ln in re.sub(r"\\\n", " ", text).splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2, "Dockerfile: not multi-stage"
    for ln in froms:
        image = ln.split()[1]
        assert re.match(r"debian:(12|bookworm)", image), \
            "Dockerfile: %s is not Debian 12" % image
    assert any("cmake --build" in ln for ln in lines), \
        "Dockerfile: no cmake build"
    last = lines[lines.index(froms[-1]):]
    users = [ln.split()[1] for ln in last if ln.upper().startswith("USER ")]
    assert users, "Dockerfile: the final stage has no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), \
        "Dockerfile: runs as root"
    assert any(ln.upper().startswith(("ENTRYPOINT", "CMD")) and "npsd" in ln
               for ln in last), "Dockerfile: does not run npsd"
    for ln in lines:
        if not ln.upper().startswith(("COPY ", "ADD ")):
            continue
        args = [a for a in ln.split()[1:] if not a.startswith("--")]
        if any(a.startswith("--from") for a in ln.split()):
            continue
        for src in args[:-1]:
            assert os.path.exists(os.path.join(context, src)), \
                "Dockerfile: COPY source %s does not exist" % src
    # the build context must not be emptied of what COPY needs
    ignore = os.path.join(context, ".dockerignore")
    if os.path.exists(ignore):
        with open(ignore) as f:
            pats = [p.strip().rstrip("/") for p in f
                    if p.strip() and not p.startswith("#")]
        for needed in ("src", "include", "cmake", "CMakeLists.txt"):
            assert needed not in pats, ".dockerignore drops " + needed


def mounts(svc):
    """{container path: host path (absolute)} of a service's bind mounts
    (short syntax "./host:/container[:ro]"); named volumes left out."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out[v["target"]] = os.path.normpath(os.path.join(REPO, v["source"]))
            continue
        parts = v.split(":")
        if parts[0].startswith((".", "/")):
            out[parts[1]] = os.path.normpath(os.path.join(REPO, parts[0]))
    return out


def check_observability(services, npsd_listen):
    """Prometheus and Grafana, only under the profile "observability":
    Prometheus scrapes npsd where it listens; Grafana installs the
    redis-datasource plugin and is provisioned with both data sources and
    the dashboard directory, every mounted file existing here."""
    for name in ("kafka", "redis", "npsd"):
        assert not services[name].get("profiles"), \
            "%s must start without a profile" % name
    for name in ("prometheus", "grafana"):
        assert name in services, "service %s missing" % name
        assert services[name].get("profiles") == ["observability"], \
            "%s: profiles %s" % (name, services[name].get("profiles"))

    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus:"), prom["image"]
    pm = mounts(prom)
    cfg_path = pm.get("/etc/prometheus/prometheus.yml")
    assert cfg_path and os.path.isfile(cfg_path), pm
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    port = npsd_listen.rsplit(":", 1)[1]
    targets = [t for job in cfg["scrape_configs"]
               for sc in job.get("static_configs", [])
               for t in sc.get("targets", [])]
    assert "npsd:%s" % port in targets, \
        "prometheus does not scrape npsd:%s: %s" % (port, targets)
    assert all(job.get("metrics_path", "/metrics") == "/metrics"
               for job in cfg["scrape_configs"])

    graf = services["grafana"]
    assert graf["image"].startswith("grafana/grafana"), graf["image"]
    genv = env_dict(graf)
    assert "redis-datasource" in genv.get("GF_INSTALL_PLUGINS", "").split(","), genv
    gm = mounts(graf)
    prov = gm.get("/etc/grafana/provisioning")
    assert prov and os.path.isdir(prov), gm
    with open(os.path.join(prov, "datasources", "datasources.yaml")) as f:
        ds = {d["type"]: d for d in yaml.safe_load(f)["datasources"]}
    assert ds["prometheus"]["url"] == "http://prometheus:9090", ds
    assert re.match(r"redis://redis:6379(/0)?$", ds["redis-datasource"]["url"]), ds
    with open(os.path.join(prov, "dashboards", "dashboards.yaml")) as f:
        providers = yaml.safe_load(f)["providers"]
    for pv in providers:
        path = pv["options"]["path"]
        assert path in gm, "dashboards path %s is not mounted: %s" % (path, gm)
        files = [f for f in os.listdir(gm[path]) if f.endswith(".json")]
        assert files, "no dashboard JSON in %s" % gm[path]
        for fn in files:
            with open(os.path.join(gm[path], fn)) as f:
                json.load(f)
    assert "prometheus" in depends(graf) and "redis" in depends(graf), \
        depends(graf)


def test(build):
    with open(os.path.join(REPO, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    services = doc["services"]
    for name in ("kafka", "redis", "npsd", "gen"):
        assert name in services, "service %s missing" % name
    work = tempfile.mkdtemp(prefix="npsd-compose-")

    # defaults: the topic names npsd uses
    rc, defaults, out = check_config(build, {}, work)
    assert rc == 0, out
    topics = {k: v for k, v in defaults.items() if k.startswith("topic.")}
    assert len(topics) == 9, topics

    # Kafka: apache/kafka, KRaft, one node, a listener for the network
    kafka = services["kafka"]
    kenv = env_dict(kafka)
    assert kafka["image"].startswith("apache/kafka:"), kafka["image"]
    assert set(kenv["KAFKA_PROCESS_ROLES"].split(",")) == {"broker",
                                                          "controller"}
    assert kenv["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@kafka:")
    assert "PLAINTEXT://kafka:9092" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert "zookeeper" not in yaml.safe_dump(doc).lower()
    assert "healthcheck" in kafka

    redis_svc = services["redis"]
    assert re.match(r"redis:7(\.|$|-)", redis_svc["image"]), \
        redis_svc["image"]
    assert "healthcheck" in redis_svc

    # the one-shot topic creation: every topic, 6 partitions, compaction
    creators = [n for n, s in services.items()
                if "kafka-topics.sh" in " ".join(argv_of(s))]
    assert len(creators) == 1, creators
    creator = services[creators[0]]
    assert depends(creator).get("kafka") == "service_healthy"
    script = " ".join(argv_of(creator))
    for key, topic in topics.items():
        assert re.search(r"(^|[\s\"'])%s($|[\s\"';])" % re.escape(topic),
                         script), "%s (%s) not created" % (topic, key)
    assert "--partitions 6" in script
    acc = [ln for ln in script.splitlines()
           if re.search(r"--topic\s+%s\b" % re.escape(topics["topic.accounts"]),
                        ln)]
    assert acc and all("cleanup.policy=compact" in ln for ln in acc), \
        "accounts is not compacted"

    # npsd: built here, healthy dependencies, real settings
    npsd = services["npsd"]
    b = npsd["build"]
    ctx = os.path.normpath(os.path.join(REPO, b if isinstance(b, str)
                                        else b.get("context", ".")))
    dockerfile = os.path.join(ctx, "Dockerfile" if isinstance(b, str)
                              else b.get("dockerfile", "Dockerfile"))
    assert os.path.isdir(ctx), ctx
    assert os.path.isfile(dockerfile), dockerfile
    check_dockerfile(dockerfile, ctx)
    deps = depends(npsd)
    assert deps.get("kafka") == "service_healthy", deps
    assert deps.get("redis") == "service_healthy", deps
    assert deps.get(creators[0]) == "service_completed_successfully", deps
    assert any("9464" in str(p) for p in npsd.get("ports", [])), \
        "9464 not published"

    env = env_dict(npsd)
    assert env.get("NPSD_KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092", env
    assert env.get("NPSD_REDIS_HOST") == "redis", env
    assert env.get("NPSD_HTTP_LISTEN") == "0.0.0.0:9464", env
    assert all(k.startswith("NPSD_") for k in env), env
    rc, settings, out = check_config(build, env, work)
    assert rc == 0, "npsd --check-config refused the compose env:\n" + out
    for var, value in env.items():
        key = setting_of(var, settings)
        assert key, "%s names no npsd setting" % var
        assert settings.get(key) == value, \
            "%s=%s shows as %s = %s" % (var, value, key, settings.get(key))
    assert settings["kafka.bootstrap.servers"] == "kafka:9092"
    assert settings["redis.host"] == "redis"
    assert settings["http.listen"] == "0.0.0.0:9464"

    # the mapping itself, and that the check can fail
    rc, settings, out = check_config(
        build, {"NPSD_KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092"}, work)
    assert rc == 0 and settings["kafka.bootstrap.servers"] == \
        "b1:9092,b2:9092", out
    rc, settings, out = check_config(build, {"NPSD_REDIS_HOSTT": "redis"},
                                     work)
    assert rc == 0 and "NPSD_REDIS_HOSTT does not name a setting" in out \
        and settings["redis.host"] != "redis", (rc, out)
    rc, _, out = check_config(build, {"NPSD_REDIS_PORT": "redis"}, work)
    assert rc == 2 and "NPSD_REDIS_PORT" in out, (rc, out)

    # gen: demo profile only, npsctl gen against the compose broker
    gen = services["gen"]
    assert "demo" in gen.get("profiles", []), gen
    argv = argv_of(gen)
    assert argv[:2] == ["npsctl", "gen"], argv
    assert argv[argv.index("--bootstrap") + 1] == "kafka:9092", argv
    assert argv[argv.index("--rate") + 1] == "50", argv
    assert gen.get("image") == npsd.get("image") or "build" in gen
    helptext = subprocess.run(
        [os.path.join(os.path.abspath(build), "npsctl"), "gen", "--help"],
        capture_output=True, text=True, timeout=30)
    helptext = helptext.stdout + helptext.stderr
    for opt in (a for a in argv[2:] if a.startswith("--")):
        assert opt in helptext, "npsctl gen has no %s" % opt
    assert creators[0] in depends(gen), depends(gen)

    check_observability(services, env["NPSD_HTTP_LISTEN"])
    os.rmdir(work)


if __name__ == "__main__":
    main(test)

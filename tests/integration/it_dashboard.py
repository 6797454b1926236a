"""The Grafana dashboard (deploy/grafana/dashboards/npsd.json), checked
without Grafana (CI-safe):

- it is valid JSON with panels, each with a unique id and a position;
- every PromQL expression names only metrics that a live npsd exports:
  npsd runs against the test Redis and development broker with
  http.listen on a free port, and its /metrics (its # TYPE lines, so that
  a labelled metric without samples yet, such as npsd_consumer_lag, counts)
  is the reference; metric names are taken from the expressions by a
  tokenizer that drops strings, label matchers, range selectors, grouping
  clauses, functions, keywords and numbers;
- every Redis query (redis-datasource: keyName of a command, or a CLI /
  variable query) names a key of the public Redis contract: the key
  patterns of docs/contract.md section 9.1, with the dashboard's variables
  expanded to each of their options (free ones to a placeholder);
- the panels a CS lead and an operator need are there, with the data
  source their queries need.
"""
import json
import os
import re
import urllib.request

from harness import REPO, Stack, free_port, main, wait_for

DASHBOARD = os.path.join(REPO, "deploy", "grafana", "dashboards", "npsd.json")

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan", "atan2"}


def promql_metrics(expr):
    """Metric names an expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)                 # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                # range / subquery
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*"
               r"\([^)]*\)", " ", e)                  # grouping labels
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):                      # a function
            continue
        if tok.lower() in PROMQL_KEYWORDS:
            continue
        # a number's exponent or a duration unit glued to digits
        if m.start() > 0 and (e[m.start() - 1].isdigit() or
                              e[m.start() - 1] == "."):
            continue
        names.add(tok)
    return names


def exported_metrics(text):
    """Metric names a /metrics page offers: every # TYPE (with a
    histogram's _bucket/_sum/_count) and every sample name."""
    names = set()
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(None, 3)
            names.add(name)
            if typ.strip() == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
            elif typ.strip() == "summary":
                names |= {name + "_sum", name + "_count"}
        elif ln and not ln.startswith("#"):
            names.add(re.split(r"[{\s]", ln, 1)[0])
    return names


def contract_key_patterns():
    """The public keys of docs/contract.md section 9.1 as regexes."""
    with open(os.path.join(REPO, "docs", "contract.md")) as f:
        text = f.read()
    sec = text[text.index("### 9.1"):text.index("### 9.2")]
    pats = []
    for key in re.findall(r"^\| `(nps:[^`]+)`", sec, re.M):
        # the table writes two keys in one cell: `a`, `b`
        for k in re.findall(r"nps:[^`]+", key):
            rx = re.escape(k)
            rx = rx.replace(re.escape("{A}"), r"\{[^{}:]+\}")
            rx = re.sub(r"<[^>]+>", r"[^:{}\\s]+", rx.replace("\\<", "<")
                        .replace("\\>", ">"))
            pats.append((k, re.compile("^" + rx + "$")))
    assert len(pats) >= 8, pats
    return pats


def panels_of(dash):
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out += p.get("panels", [])        # collapsed rows hold theirs
    return out


def expansions(key, variables):
    """key with every $var / ${var} replaced by each option of var (free
    variables by a placeholder)."""
    keys = [key]
    for name, options in variables.items():
        nxt = []
        for k in keys:
            if not re.search(r"\$\{?%s\b\}?" % re.escape(name), k):
                nxt.append(k)
                continue
            for o in options:
                nxt.append(re.sub(r"\$\{%s\}|\$%s\b" % (name, name), o, k))
        keys = nxt
    return keys


def redis_keys_of(target):
    """The key a redis-datasource target reads: keyName for a command, the
    first argument of a CLI / variable query."""
    if target.get("keyName"):
        return [target["keyName"]]
    q = target.get("query") if isinstance(target.get("query"), str) else None
    if q:
        parts = q.split()
        assert len(parts) >= 2, "redis query without a key: %r" % q
        return [parts[1]]
    raise AssertionError("redis target without a key: %s" % target)


def is_redis(ds):
    return isinstance(ds, dict) and (ds.get("type") == "redis-datasource" or
                                     "redis" in str(ds.get("uid", "")))


def is_prom(ds):
    return isinstance(ds, dict) and (ds.get("type") == "prometheus" or
                                     "prometheus" in str(ds.get("uid", "")))


def check_dashboard(dash, exported, patterns):
    """Returns (promql expressions, redis keys) checked; raises on the
    first problem."""
    variables = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "custom":
            variables[v["name"]] = [o["value"] for o in v["options"]]
            assert variables[v["name"]], v
        elif v["type"] in ("query", "textbox"):
            variables[v["name"]] = ["acct-x"]
    exprs, keys = [], []
    ids = set()
    sources = []  # (where, datasource, target)
    for p in panels_of(dash):
        assert p["id"] not in ids, "duplicate panel id %s" % p["id"]
        ids.add(p["id"])
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
        if p["type"] == "row":
            continue
        assert p.get("targets"), "panel %r has no query" % p["title"]
        for t in p["targets"]:
            sources.append((p["title"], t.get("datasource", p.get("datasource")), t))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            sources.append(("variable " + v["name"], v["datasource"],
                            {"query": v["query"]}))
    for where, ds, t in sources:
        if is_prom(ds):
            expr = t["expr"]
            names = promql_metrics(expr)
            assert names, "%s: no metric in %r" % (where, expr)
            unknown = names - exported
            assert not unknown, "%s: %r names %s, which npsd's /metrics " \
                "does not export" % (where, expr, sorted(unknown))
            exprs.append(expr)
        elif is_redis(ds):
            for key in redis_keys_of(t):
                for k in expansions(key, variables):
                    assert any(rx.match(k) for _, rx in patterns), \
                        "%s: Redis key %r (from %r) is no public key of " \
                        "docs/contract.md 9.1 (%s)" % (
                            where, k, key, [p for p, _ in patterns])
                    keys.append(k)
        else:
            raise AssertionError("%s: unknown data source %s" % (where, ds))
    return exprs, keys


def test(build):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash.get("title") and dash.get("uid"), "dashboard without title/uid"
    patterns = contract_key_patterns()

    st = Stack(build, name="dash")
    try:
        port = free_port()
        st.npsd("http.listen=127.0.0.1:%d" % port)
        url = "http://127.0.0.1:%d/metrics" % port

        def scrape():
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        text = wait_for(scrape, 60, "npsd /metrics")
    finally:
        st.close()
    exported = exported_metrics(text)
    assert "npsd_messages_consumed_total" in exported, sorted(exported)

    # the tokenizer itself, on known answers
    assert promql_metrics(
        'histogram_quantile(0.99, sum by (le, topic) (rate(a_b_bucket'
        '{job="npsd", x=~"y.*"}[5m] offset 1h))) > 2e3 or vector(0)') == \
        {"a_b_bucket"}
    assert promql_metrics("sum without (instance) (up) / on(job) "
                          "group_left(x) foo:bar") == {"up", "foo:bar"}

    exprs, keys = check_dashboard(dash, exported, patterns)
    titles = " | ".join(p["title"].lower() for p in panels_of(dash))
    for want in ("cohort nps", "margin of error", "accounts at risk",
                 "role gap", "detractor themes", "alert", "throughput",
                 "rejects by reason", "consumer lag", "latency"):
        assert want in titles, "no panel about %r: %s" % (want, titles)
    joined = " ".join(exprs)
    for metric in ("npsd_messages_rejected_total", "npsd_consumer_lag",
                   "npsd_processing_latency_seconds_bucket",
                   "npsd_messages_consumed_total"):
        assert metric in joined, "no panel uses %s" % metric
    print("dashboard ok: %d PromQL expressions against %d exported metric "
          "names, %d Redis keys against %d contract patterns" % (
              len(exprs), len(exported), len(keys), len(patterns)))


if __name__ == "__main__":
    main(test)

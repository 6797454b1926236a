"""The machine-readable contract, checked without npsd running.

1. Every docs/schemas/*.json is a valid JSON Schema draft 2020-12.
2. The shared corpus (tests/contract/corpus/<input topic>/*.json, also read
   by the parser's unit test tests/unit/test_corpus.c): every valid-*.json
   example satisfies its input schema; every <reason>-*.json example is
   refused by it, except where the reason lies beyond what a JSON Schema
   can say, which is then asserted explicitly:
   - invalid_json: the bytes are not UTF-8 JSON at all (no schema applies);
   - too_large: the message exceeds 65536 bytes, the schema accepts it;
   - timestamp_in_future: "not later than now + 1 h" needs a clock, the
     schema accepts it;
   - files marked .beyond-schema: rules the schema cannot state (a real
     number for epoch milliseconds), the schema accepts them.
3. docs/asyncapi.yaml is an AsyncAPI 3.0.0 document: every topic of the
   contract is a channel with its messages, npsd sends or receives on it
   as the direction says, the key is account_id, and every $ref (local
   JSON pointer or file) resolves.

Run: python3 tests/contract/test_contract.py
"""
import json
import os
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import contract  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")
MAX_BYTES = 65536
REASONS = ("invalid_json", "not_an_object", "missing_field", "invalid_field",
           "too_large", "timestamp_in_future")


def check_schemas():
    names = sorted(f[:-5] for f in os.listdir(contract.SCHEMA_DIR)
                   if f.endswith(".json"))
    assert names == sorted(contract.KINDS), names
    for k in names:
        contract.validator(k)  # check_schema() raises on an invalid schema
        s = contract.schema(k)
        assert s.get("$schema") == \
            "https://json-schema.org/draft/2020-12/schema", k
        assert s.get("description"), "%s: no description" % k


def check_corpus():
    seen = {r: 0 for r in REASONS}
    checked = 0
    for topic, kind in sorted(contract.INPUT_KIND.items()):
        d = os.path.join(CORPUS, topic)
        files = sorted(f for f in os.listdir(d) if f.endswith(".json"))
        kinds = {f.split("-", 1)[0] for f in files}
        assert "valid" in kinds and kinds - {"valid"}, \
            "%s: needs valid and rejected examples" % d
        for f in files:
            want = f.split("-", 1)[0]
            assert want == "valid" or want in REASONS, \
                "%s/%s: %s is no reason" % (topic, f, want)
            with open(os.path.join(d, f), "rb") as fp:
                raw = fp.read()
            where = "%s/%s" % (topic, f)
            if want == "invalid_json":
                try:
                    json.loads(raw.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError is a ValueError
                    pass
                else:
                    raise AssertionError("%s: is UTF-8 JSON" % where)
                seen[want] += 1
                checked += 1
                continue
            obj = json.loads(raw.decode("utf-8"))
            probs = contract.problems(kind, obj)
            beyond = ".beyond-schema." in f or want in ("too_large",
                                                        "timestamp_in_future")
            if want == "valid":
                assert len(raw) <= MAX_BYTES, where
                assert not probs, "%s: refused by %s.json: %s" % (
                    where, kind, probs)
            elif beyond:
                assert not probs, \
                    "%s: marked beyond the schema but %s.json refuses it " \
                    "(%s): drop the marker" % (where, kind, probs)
                if want == "too_large":
                    assert len(raw) > MAX_BYTES, where
                seen[want] += 1
            else:
                assert probs, "%s: %s.json accepts it, npsd rejects it " \
                    "(%s)" % (where, kind, want)
                seen[want] += 1
            checked += 1
    missing = [r for r, n in seen.items() if not n]
    assert not missing, "no corpus example of %s" % missing
    return checked


def resolve(doc, base_dir, ref, cache):
    """The value a $ref points at: "#/a/b" in doc, or "file[#/ptr]"
    relative to base_dir. Returns (value, doc it lives in, its dir)."""
    path, _, frag = ref.partition("#")
    if path:
        full = os.path.normpath(os.path.join(base_dir, path))
        assert os.path.isfile(full), "$ref %s: no file %s" % (ref, full)
        if full not in cache:
            with open(full) as f:
                cache[full] = (json.load(f) if full.endswith(".json")
                               else yaml.safe_load(f))
        doc, base_dir = cache[full], os.path.dirname(full)
    v = doc
    for part in [p for p in frag.split("/") if p][0:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(v, list):
            v = v[int(part)]
        else:
            assert isinstance(v, dict) and part in v, \
                "$ref %s: %s not found" % (ref, part)
            v = v[part]
    return v, doc, base_dir


def walk_refs(node, doc, base_dir, cache, seen, count):
    """Resolves every $ref reachable from node, following into the files
    it names. Returns the number of $refs resolved."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                key = (id(doc), v)
                count[0] += 1
                if key in seen:
                    continue
                seen.add(key)
                target, tdoc, tdir = resolve(doc, base_dir, v, cache)
                walk_refs(target, tdoc, tdir, cache, seen, count)
            else:
                walk_refs(v, doc, base_dir, cache, seen, count)
    elif isinstance(node, list):
        for v in node:
            walk_refs(v, doc, base_dir, cache, seen, count)


def deref(doc, node, base_dir):
    if isinstance(node, dict) and "$ref" in node:
        return resolve(doc, base_dir, node["$ref"], {})[0]
    return node


# SPEC section 1: topic -> (npsd's action, schema)
TOPICS = {"nps.responses": ("receive", "response"),
          "product.usage": ("receive", "usage"),
          "accounts": ("receive", "account"),
          "nps.followups": ("receive", "followup"),
          "nps.detractors": ("send", "classified"),
          "nps.passives": ("send", "classified"),
          "nps.promoters": ("send", "classified"),
          "nps.alerts": ("send", "alert"),
          "nps.dlq": ("send", "dlq")}


def check_asyncapi():
    path = os.path.join(REPO, "docs", "asyncapi.yaml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    base = os.path.dirname(path)
    assert doc.get("asyncapi") == "3.0.0", doc.get("asyncapi")
    assert doc["info"]["title"] and doc["info"]["version"]
    count = [0]
    walk_refs(doc, doc, base, {}, set(), count)

    channels = doc["channels"]
    by_address = {}
    for name, ch in channels.items():
        ch = deref(doc, ch, base)
        by_address[ch["address"]] = (name, ch)
    for topic, (action, kind) in TOPICS.items():
        assert topic in by_address, "no channel with address %s" % topic
        name, ch = by_address[topic]
        assert "kafka" in ch.get("bindings", {}), "%s: no kafka binding" % name
        msgs = [deref(doc, m, base) for m in ch["messages"].values()]
        assert msgs, "%s: no messages" % name
        for m in msgs:
            payload = m["payload"]
            if "schema" in payload:  # a multi-format schema object
                payload = payload["schema"]
            assert payload.get("$ref", "").endswith("schemas/%s.json" % kind), \
                "%s: payload %s, expected schemas/%s.json" % (name, payload,
                                                              kind)
            kb = m.get("bindings", {}).get("kafka", {})
            assert kb.get("bindingVersion") == "0.5.0", name
            key = deref(doc, kb.get("key", {}), base)
            if topic == "nps.dlq":
                assert key.get("type") in ("string", ["string", "null"]), key
            else:
                assert "account_id" in json.dumps(key), \
                    "%s: key is not account_id: %s" % (name, key)
        ops = [deref(doc, o, base) for o in doc["operations"].values()
               if deref(doc, deref(doc, o, base)["channel"], base) is
               deref(doc, ch, base)]
        assert ops, "%s: no operation" % name
        assert {o["action"] for o in ops} == {action}, \
            "%s: npsd should %s, operations say %s" % (
                name, action, [o["action"] for o in ops])
    assert "nps:events" in by_address, "no channel for nps:events"
    ev = by_address["nps:events"][1]
    msgs = [deref(doc, m, base) for m in ev["messages"].values()]
    assert all(m["payload"]["$ref"].endswith("schemas/notice.json")
               for m in msgs), msgs
    return count[0]


def main():
    t0 = time.time()
    check_schemas()
    n = check_corpus()
    refs = check_asyncapi()
    print("PASSED test_contract: %d schemas, %d corpus examples, %d $refs "
          "(%.1fs)" % (len(contract.KINDS), n, refs, time.time() - t0))


if __name__ == "__main__":
    main()

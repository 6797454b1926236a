"""The shared contract corpus (tests/contract/corpus) through the real
npsd: every example is produced to its input topic, the clock pinned at the
corpus's "now". Each <reason>-*.json example must reach nps.dlq exactly
once with that reason and its bytes whole (payload as UTF-8 text or
base64); no valid-*.json example may. The DLQ records themselves are
validated against docs/schemas/dlq.json by the harness.

tests/unit/test_corpus.c runs the same files through the parser alone and
tests/contract/test_contract.py through the input schemas.
"""
import base64
import json
import os

import contract
from harness import REPO, Stack, main, produce_tracked, read_topic, \
    wait_processed

NOW = "2026-11-20T10:00:00Z"
CORPUS = os.path.join(REPO, "tests", "contract", "corpus")


def test(build):
    st = Stack(build, name="corpus")
    try:
        expect = {}  # (topic, partition, offset) -> (file, reason|None, bytes)
        for topic in sorted(contract.INPUT_KIND):
            d = os.path.join(CORPUS, topic)
            files = sorted(f for f in os.listdir(d) if f.endswith(".json"))
            items = []
            for f in files:
                with open(os.path.join(d, f), "rb") as fp:
                    items.append(("corpus", fp.read()))
            where = produce_tracked(st, topic, items)
            for f, (k, raw), (p, o) in zip(files, items, where):
                want = f.split("-", 1)[0]
                expect[(topic, p, o)] = ("%s/%s" % (topic, f),
                                         None if want == "valid" else want,
                                         raw)
        npsd = st.npsd(now=NOW)
        wait_processed(st, "npsd", tuple(contract.INPUT_KIND))

        got = {}
        for m in read_topic(st, "nps.dlq"):
            rec = json.loads(m.value())
            at = (rec["topic"], rec["partition"], rec["offset"])
            assert at not in got, "two DLQ records for %s" % (at,)
            got[at] = rec
        probs = []
        for at, (name, reason, raw) in sorted(expect.items()):
            rec = got.pop(at, None)
            if reason is None:
                if rec:
                    probs.append("%s: valid, but rejected as %s (%s)" % (
                        name, rec["reason"], rec["detail"]))
                continue
            if not rec:
                probs.append("%s: accepted, expected %s" % (name, reason))
                continue
            if rec["reason"] != reason:
                probs.append("%s: rejected as %s (%s), expected %s" % (
                    name, rec["reason"], rec["detail"], reason))
            body = (base64.b64decode(rec["payload"])
                    if rec["payload_encoding"] == "base64"
                    else rec["payload"].encode())
            if body != raw:
                probs.append("%s: the DLQ payload is not the message whole"
                             % name)
            if rec["key"] != "corpus":
                probs.append("%s: DLQ key %r" % (name, rec["key"]))
        if got:
            probs.append("DLQ records of no corpus file: %s" % list(got))
        assert not probs, "\n".join(probs)
        assert st.stop(npsd) == 0
        n_bad = sum(1 for v in expect.values() if v[1])
        print("corpus ok: %d examples, %d rejected with their reason" % (
            len(expect), n_bad))
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

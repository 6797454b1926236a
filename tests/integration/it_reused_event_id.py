"""An event_id counts once. A redelivered message (same bytes) is published
again with the snapshot stored when it was counted; a different message that
reuses the event_id (same score, other role and comment) changes nothing and
is not published."""
import json

from harness import Stack, classified, main, wait_processed

NOW = "2026-11-20T12:00:00Z"


def response(role, comment):
    return json.dumps({"event_id": "q1", "account_id": "acct-q",
                       "user_id": "uq", "score": 3, "role": role,
                       "comment": comment,
                       "submitted_at": "2026-11-20T10:00:00Z"})


def test(build):
    st = Stack(build, name="reuse")
    try:
        npsd = st.npsd(now=NOW)
        first = response("admin", "pricing is too high")
        st.produce("nps.responses", [("acct-q", first)])
        wait_processed(st, "npsd")
        st.produce("nps.responses", [("acct-q", first),
                                     ("acct-q", response("end_user", "slow and buggy"))])
        wait_processed(st, "npsd")
        out = [json.loads(m.value()) for t, m in classified(st)]
        assert [o["event_id"] for o in out] == ["q1", "q1"], out
        assert out[0] == out[1], "a redelivery republishes the same message"
        assert out[0]["role"] == "admin" and out[0]["themes"] == ["pricing"]
        h = st.r.hgetall("nps:{acct-q}:w:30d")
        assert h["responses"] == "1" and h["admin.responses"] == "1", h
        assert "end_user.responses" not in h, h
        assert st.stop(npsd) == 0
    finally:
        st.close()


if __name__ == "__main__":
    main(test)

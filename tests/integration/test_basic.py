"""Core proxying: round robin counts, keep-alive, headers the backend sees."""
import http.client
import json

from harness import backends_yaml, dead_addr, parse_responses, pools_yaml, raw, request


def test_round_robin_200(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([b1, b2]))
    seen = {"b1": 0, "b2": 0}
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for _ in range(200):
        c.request("GET", "/x")
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200
        seen[resp.getheader("X-Backend")] += 1
    assert seen == {"b1": 100, "b2": 100}, seen


def test_forwarded_headers(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    st, _, body = request(r.port, "GET", "/headers", headers={
        "Connection": "close, X-Secret", "X-Secret": "s", "Keep-Alive": "timeout=5",
        "X-Forwarded-For": "10.9.8.7", "X-Request-Id": "abc-123"})
    assert st == 200
    got = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert "x-secret" not in got and "keep-alive" not in got and "connection" not in got
    assert got["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-request-id"] == "abc-123"


def _backend_headers(port, headers):
    """GET /headers with headers given as (name, value) pairs, repeats allowed."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.putrequest("GET", "/headers", skip_accept_encoding=True)
    for k, v in headers:
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, (r.status, body)
    got = {}
    for k, v in json.loads(body)["headers"]:
        got.setdefault(k.lower(), []).append(v)
    return got


def test_request_id_kept_or_made(env):
    """A client's X-Request-Id reaches the backend unchanged when it is a plain id
    (a UUID, base64, a URN, up to 128 characters); anything else, or none, gets ours."""
    import re
    b1 = env.backend("b1")
    r = env.router(pools_yaml({"default": [b1], "gone": [dead_addr()]},
                              routes=[("/dead", "gone"), ("/", "default")]))
    kept = ["550e8400-e29b-41d4-a716-446655440000", "a/b+c==", "urn:req:42@edge-1",
            "x" * 128, "abc-123"]
    for rid in kept:
        got = _backend_headers(r.port, [("X-Request-Id", rid)])
        assert got["x-request-id"] == [rid], (rid, got.get("x-request-id"))
    made = re.compile(r"[0-9a-f]{32}")
    for rid in ["x" * 129, "id with space", 'x"y', "a\\b", "a,b"]:
        got = _backend_headers(r.port, [("X-Request-Id", rid)])
        assert len(got["x-request-id"]) == 1, got
        assert made.fullmatch(got["x-request-id"][0]), (rid, got["x-request-id"])
    got = _backend_headers(r.port, [])
    assert made.fullmatch(got["x-request-id"][0]), got
    # two requests without an id get two different ids
    assert _backend_headers(r.port, [])["x-request-id"] != got["x-request-id"]
    # routerd's own answers echo the id: a 502 when the pool's only backend is dead
    for rid in (kept[0], kept[3]):
        st, hdrs, _ = request(r.port, "GET", "/dead/x", headers={"X-Request-Id": rid})
        assert st == 502 and hdrs.get("x-request-id") == rid, (st, hdrs)


def test_request_id_on_early_errors(env):
    """A request refused before its head is whole (414 here) gets an id of its own in
    routerd's answer: not none, and not the id of the request before it on the connection."""
    import re
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="limits: {uri: 64}\n"))
    made = re.compile(rb"X-Request-Id: ([0-9a-f]{32})\r\n")
    long_get = b"GET /" + b"u" * 100 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    # first request on its connection
    out = raw(r.port, long_get)
    assert out.startswith(b"HTTP/1.1 414") and made.search(out), out
    # after a request with the client's own id on the same connection
    out = raw(r.port, b"GET /a HTTP/1.1\r\nHost: t\r\nX-Request-Id: first-req-id\r\n\r\n" + long_get)
    resps, _ = parse_responses(out)
    assert [x["status"] for x in resps] == [200, 414], out
    assert b"X-Request-Id: first-req-id" not in out.split(b"HTTP/1.1 414", 1)[1], out
    assert made.search(out.split(b"HTTP/1.1 414", 1)[1]), out


def test_forwarded_for_appends_to_every_field(env):
    """Several X-Forwarded-For fields are one list (RFC 9110 5.3): the backend
    sees them joined in order with the client's address last, once."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    got = _backend_headers(r.port, [("X-Forwarded-For", "10.0.0.1"),
                                    ("X-Forwarded-For", "10.0.0.2, 10.0.0.3")])
    joined = ", ".join(got["x-forwarded-for"])
    assert joined == "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1", got["x-forwarded-for"]

"""Core proxying: round robin counts, keep-alive, headers the backend sees."""
import http.client
import json

from harness import backends_yaml, request


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

"""HTTP/1.x semantics through routerd: pipelining, HEAD, HTTP/1.0, Expect, absolute-form, routes."""
import hashlib
import json
import socket
import time

from harness import (backends_yaml, parse_responses, pattern_sha256, pools_yaml, raw,
                     status_of)


def _read_until(s, pred, timeout=5.0):
    """recv until pred(buf) or EOF/timeout; returns (buf, eof)."""
    s.settimeout(0.2)
    buf = b""
    end = time.time() + timeout
    while time.time() < end:
        if pred(buf):
            return buf, False
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return buf, True
        buf += chunk
    return buf, False


def _paths(resps):
    return [json.loads(x["body"])["path"] for x in resps]


def test_pipelined_two(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    out = raw(r.port, b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    resps, rest = parse_responses(out)
    assert [x["status"] for x in resps] == [200, 200], out
    assert _paths(resps) == ["/one", "/two"]
    assert rest == b""


def test_pipelined_three_with_body(env):
    """Three requests in one write, the middle one with a body, across two backends."""
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([b1, b2]))
    out = raw(r.port, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                      b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    resps, rest = parse_responses(out)
    assert [x["status"] for x in resps] == [200, 200, 200], out
    assert json.loads(resps[0]["body"])["path"] == "/a"
    assert resps[1]["body"] == b"hello"
    assert json.loads(resps[2]["body"])["path"] == "/c"
    assert rest == b""


def test_pipelined_slow_first(env):
    """The second response must wait for the first even when the first is slow."""
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([b1, b2]))
    out = raw(r.port, b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    resps, rest = parse_responses(out)
    assert len(resps) == 2, out
    assert b"/fast" not in resps[0]["body"]
    assert json.loads(resps[1]["body"])["path"] == "/fast"


def test_head_keeps_length_no_body(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    # a HEAD then a GET in one write: any body byte after the HEAD head would corrupt the second
    out = raw(r.port, b"HEAD /bytes?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head_end = out.find(b"\r\n\r\n")
    assert head_end > 0, out
    head = out[:head_end].lower()
    assert head.startswith(b"http/1.1 200"), out
    assert b"\r\ncontent-length: 1000" in head, head
    assert out[head_end + 4:].startswith(b"HTTP/1.1 200"), out[head_end:head_end + 100]
    resps, rest = parse_responses(out, head_methods=[True, False])
    assert len(resps) == 2 and rest == b""
    assert json.loads(resps[1]["body"])["path"] == "/after"


def test_head_chunked_upstream(env):
    """HEAD of a chunked resource: no body, not even a last chunk."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    out = raw(r.port, b"HEAD /bytes?n=1000&chunked=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head_end = out.find(b"\r\n\r\n")
    assert out[:head_end].startswith(b"HTTP/1.1 200"), out
    assert out[head_end + 4:].startswith(b"HTTP/1.1 200"), out[head_end:head_end + 100]


def test_http10_closes_by_default(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"GET /ten HTTP/1.0\r\nHost: t\r\n\r\n")
    buf, eof = _read_until(s, lambda b: False, timeout=3)
    s.close()
    assert eof, "routerd kept an HTTP/1.0 connection open without keep-alive: %r" % buf
    resps, rest = parse_responses(buf)
    assert len(resps) == 1 and resps[0]["status"] == 200, buf
    assert json.loads(resps[0]["body"])["path"] == "/ten"
    assert "keep-alive" not in resps[0]["headers_dict"].get("connection", "").lower()


def test_http10_keepalive(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    for i in range(3):
        s.sendall(b"GET /ka%d HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n" % i)
        buf, eof = _read_until(s, lambda b: bool(parse_responses(b)[0]), timeout=3)
        resps, _ = parse_responses(buf)
        assert resps, (i, buf, eof)
        assert resps[0]["status"] == 200
        assert resps[0]["headers_dict"].get("connection", "").lower() == "keep-alive", resps[0]
        assert "content-length" in resps[0]["headers_dict"]
        assert json.loads(resps[0]["body"])["path"] == "/ka%d" % i
    s.close()


def test_http10_chunked_upstream_close_delimited(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    n = 300000
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"GET /bytes?n=%d&chunked=1 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n" % n)
    buf, eof = _read_until(s, lambda b: False, timeout=5)
    s.close()
    assert eof, "no close after a close-delimited body"
    head, body = buf.split(b"\r\n\r\n", 1)
    h = head.lower()
    assert h.startswith(b"http/1.1 200") or h.startswith(b"http/1.0 200"), head
    assert b"transfer-encoding" not in h, head
    assert b"keep-alive" not in h, head
    assert len(body) == n, len(body)
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(n)


def test_expect_100_continue(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
              b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    buf, eof = _read_until(s, lambda b: b"\r\n\r\n" in b, timeout=3)
    assert buf.startswith(b"HTTP/1.1 100"), (buf, eof)
    s.sendall(b"hello world")
    rest, eof = _read_until(s, lambda b: False, timeout=3)
    s.close()
    allb = buf + rest
    assert allb.count(b" 100 ") == 1, allb
    resps, _ = parse_responses(allb)
    assert [x["status"] for x in resps] == [100, 200], allb
    assert resps[1]["body"] == b"hello world"


def test_expect_100_http10_no_interim(env):
    """An HTTP/1.0 client never gets a 100."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    out = raw(r.port, b"POST /echo HTTP/1.0\r\nHost: t\r\nContent-Length: 5\r\n"
                      b"Expect: 100-continue\r\n\r\nhello")
    assert status_of(out) == 200, out
    assert b" 100 " not in out.split(b"\r\n", 1)[0]
    assert out.endswith(b"hello"), out


def test_absolute_form_target(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    out = raw(r.port, b"GET http://example.test:8080/headers?q=1 HTTP/1.1\r\n"
                      b"Host: other.test\r\nConnection: close\r\n\r\n")
    resps, _ = parse_responses(out)
    assert resps and resps[0]["status"] == 200, out
    got = json.loads(resps[0]["body"])
    assert got["path"] == "/headers?q=1", got
    hosts = [v for k, v in got["headers"] if k.lower() == "host"]
    assert hosts == ["example.test:8080"], got["headers"]


def _pools_two(env, extra_routes=()):
    a1, a2, v1 = env.backend("a1"), env.backend("a2"), env.backend("v1")
    routes = [("/api/", "apis"), ("/v1/", "llm")] + list(extra_routes)
    r = env.router(pools_yaml({"apis": [a1, a2], "llm": [v1]}, routes=routes))
    return r


def test_routes_by_prefix(env):
    r = _pools_two(env)
    seen = {}
    for i in range(10):
        for path in ("/api/x%d" % i, "/v1/models%d" % i):
            out = raw(r.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                      % path.encode())
            resps, _ = parse_responses(out)
            assert resps and resps[0]["status"] == 200, (path, out)
            seen.setdefault(path.split("/")[1], set()).add(resps[0]["headers_dict"]["x-backend"])
    assert seen == {"api": {"a1", "a2"}, "v1": {"v1"}}, seen


def test_unmatched_route_404_json(env):
    r = _pools_two(env)
    for path in (b"/", b"/other", b"/ap", b"/v1"):
        out = raw(r.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
        resps, _ = parse_responses(out)
        assert resps and resps[0]["status"] == 404, (path, out)
        assert "application/json" in resps[0]["headers_dict"].get("content-type", "")
        err = json.loads(resps[0]["body"])["error"]
        assert err["code"] == 404 and err["message"], err


def test_404_keeps_connection(env):
    """A 404 for an unmatched route is an ordinary answer: the connection serves the next request."""
    r = _pools_two(env)
    out = raw(r.port, b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                      b"GET /api/yes HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    resps, _ = parse_responses(out)
    assert [x["status"] for x in resps] == [404, 200], out


def test_longest_prefix_wins(env):
    a1, b1 = env.backend("a1"), env.backend("b1")
    r = env.router(pools_yaml({"outer": [a1], "inner": [b1]},
                              routes=[("/api/", "outer"), ("/api/v2/", "inner")]))
    for path, want in ((b"/api/v2/x", "b1"), (b"/api/v1/x", "a1"), (b"/api/v2", "a1")):
        out = raw(r.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
        resps, _ = parse_responses(out)
        assert resps and resps[0]["headers_dict"].get("x-backend") == want, (path, out)


def test_close_delimited_upstream_response(env):
    """A backend answers without Content-Length or chunked and closes: the client gets the
    whole body, re-framed as chunked, promptly (the close is the end of the body)."""
    from harness import scripted_backend

    body = b"hello, close-delimited world\n" * 100

    def respond(s, head, n):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: sc\r\n\r\n" + body)
        return False  # close

    sc = scripted_backend(env, "sc", respond)
    r = env.router(backends_yaml([sc]))
    for i in range(3):
        t0 = time.time()
        s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        s.sendall(b"GET /cd HTTP/1.1\r\nHost: t\r\n\r\n")
        buf, eof = _read_until(s, lambda b: bool(parse_responses(b)[0]), timeout=4)
        s.close()
        dt = time.time() - t0
        resps, _ = parse_responses(buf)
        assert resps, (i, "no complete response in %.1fs" % dt, buf[:300], eof)
        assert resps[0]["status"] == 200
        assert resps[0]["body"] == body, (len(resps[0]["body"]), len(body))
        assert "chunked" in resps[0]["headers_dict"].get("transfer-encoding", "")
        assert dt < 1.0, dt


def test_client_half_close_after_request(env):
    """A client sends its request and shuts down its sending side at once: it gets the
    answer, then routerd closes (the client can send nothing more)."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"GET /half HTTP/1.1\r\nHost: t\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    buf, eof = _read_until(s, lambda b: False, timeout=3)
    s.close()
    resps, _ = parse_responses(buf)
    assert resps and resps[0]["status"] == 200, buf
    assert json.loads(resps[0]["body"])["path"] == "/half"
    assert eof, "routerd kept a half-closed client connection open"
    assert time.time() - t0 < 1.5

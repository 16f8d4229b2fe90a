"""The admin listener's own connection handler (worker/adminconn.c): sizes that the
proxy's buffers must not limit (issue 11), strict parsing, keep-alive, pipelining,
body cap and timeouts, all on real processes over loopback."""
import json
import socket
import time

from harness import backends_yaml, free_port, raw, status_of, wait_port

TOKEN = "t0k3n"


def _router(env, extra=""):
    a = env.backend("a")
    aport = free_port()
    text = backends_yaml([a], extra="admin:\n  address: 127.0.0.1:%d\n  token: %s\n%s"
                         % (aport, TOKEN, extra))
    r = env.router(text)
    wait_port(aport)
    r.admin = aport
    return r


def _req(method, path, headers=(), body=b""):
    h = "%s %s HTTP/1.1\r\nHost: x\r\n" % (method, path)
    for k, v in headers:
        h += "%s: %s\r\n" % (k, v)
    if body:
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode() + b"\r\n" + body


def _one(port, data, timeout=5.0):
    return raw(port, data + b"" if b"Connection: close" in data else data, timeout=timeout)


def test_adminconn_small_retry_buffer(env):
    # issue 11: with retries.buffer 32k or less every admin request was answered 431
    # (32k is now its least value: routerd -t refuses less)
    r = _router(env, "retries:\n  buffer: 32k\n")
    out = raw(r.admin, _req("GET", "/api/v1/router/health", [("Connection", "close")]))
    assert status_of(out) == 200, out[:200]
    out = raw(r.admin, _req("PUT", "/api/v1/router/strategy",
                            [("Connection", "close"), ("Authorization", "Bearer " + TOKEN)],
                            b'{"strategy": "random"}'))
    assert status_of(out) == 200, out[:300]


def test_adminconn_long_auth_and_query(env):
    # issue 11: at the default config a path plus Authorization over ~960 bytes got 431
    r = _router(env)
    auth = "Bearer " + "x" * 4000
    q = "/api/v1/router/health?" + "&".join("k%d=v" % i for i in range(400))
    out = raw(r.admin, _req("GET", q, [("Authorization", auth), ("Connection", "close")]))
    assert status_of(out) == 200, out[:200]
    out = raw(r.admin, _req("PUT", "/api/v1/router/strategy?" + "z" * 3000,
                            [("Authorization", auth), ("Connection", "close")],
                            b'{"strategy": "random"}'))
    assert status_of(out) == 401, out[:200]
    # ... and a head over limits.header_size (16 KiB) is 431, not a crash
    out = raw(r.admin, _req("GET", "/metrics", [("X-Big", "y" * 17000)]))
    assert status_of(out) == 431, out[:200]
    out = raw(r.admin, _req("GET", "/metrics", [("Connection", "close")]))
    assert status_of(out) == 200


def test_adminconn_keepalive_and_pipelining(env):
    r = _router(env)
    one = _req("GET", "/api/v1/router/health")
    s = socket.create_connection(("127.0.0.1", r.admin), timeout=5)
    s.sendall(one * 3 + _req("GET", "/services", [("Connection", "close")]))
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    assert data.count(b"HTTP/1.1 200 ") == 4, data[:400]
    assert data.rstrip().endswith(b"}"), data[-200:]


def test_adminconn_strict_parsing(env):
    r = _router(env)
    bad = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n",
        b"GET /metrics HTTP/1.1\nHost: x\n\n",
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"PUT /api/v1/router/strategy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for b in bad:
        out = raw(r.admin, b, timeout=3)
        assert status_of(out) == 400, (b, out[:200])
    out = raw(r.admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", timeout=3)
    assert status_of(out) == 417, out[:200]
    out = raw(r.admin, b"CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n", timeout=3)
    assert status_of(out) in (400, 405), out[:200]
    # a chunked body is read whole and understood
    body = b'{"strategy": "random"}'
    out = raw(r.admin, b"PUT /api/v1/router/strategy HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + TOKEN.encode() + b"\r\nConnection: close\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert status_of(out) == 200, out[:300]
    # Expect: 100-continue gets its 100 first
    s = socket.create_connection(("127.0.0.1", r.admin), timeout=5)
    s.sendall(b"PUT /api/v1/router/strategy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
              + TOKEN.encode() + b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % len(body))
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(body)
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    assert status_of(data) == 200, data[:200]


def test_adminconn_body_cap(env):
    r = _router(env)
    big = b"x" * (64 * 1024 + 1)
    out = raw(r.admin, _req("PUT", "/api/v1/router/strategy",
                            [("Authorization", "Bearer " + TOKEN)], big), timeout=5)
    assert status_of(out) == 413, out[:200]
    out = raw(r.admin, _req("GET", "/metrics", [("Connection", "close")]))
    assert status_of(out) == 200


def test_adminconn_timeouts(env):
    r = _router(env, "timeout:\n  client_header: 500ms\n  client_idle: 800ms\n")
    # a head trickled past client_header: 408, closed
    s = socket.create_connection(("127.0.0.1", r.admin), timeout=5)
    t0 = time.monotonic()
    s.sendall(b"GET /metrics HTTP/1.1\r\n")
    data = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        data += c
        if time.monotonic() - t0 < 0.4:
            s.sendall(b"X: y\r\n")
    dt = time.monotonic() - t0
    s.close()
    assert status_of(data) == 408, data[:200]
    assert 0.4 < dt < 3.0, dt
    # an idle keep-alive connection is closed after client_idle, without a reply
    s = socket.create_connection(("127.0.0.1", r.admin), timeout=5)
    s.sendall(_req("GET", "/metrics"))
    first = s.recv(65536)
    assert status_of(first) == 200
    t0 = time.monotonic()
    rest = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        rest += c
    dt = time.monotonic() - t0
    s.close()
    assert 0.5 < dt < 3.0, dt

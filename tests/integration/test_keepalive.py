"""Keep-alive: client connections stay open, upstream connections are pooled and reused."""
import http.client
import socket
import threading

from harness import backends_yaml, parse_responses


def test_upstream_reuse_1000_over_10(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([b1, b2], workers=2))
    before = {b.name: b.stats()["connections"] for b in (b1, b2)}
    errors = []
    done = [0]
    lock = threading.Lock()

    def client():
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
        try:
            for _ in range(100):
                c.request("GET", "/x")
                resp = c.getresponse()
                resp.read()
                with lock:
                    if resp.status == 200:
                        done[0] += 1
                    else:
                        errors.append(resp.status)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))
        finally:
            c.close()

    ts = [threading.Thread(target=client) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors[:5]
    assert done[0] == 1000
    upstream = 0
    requests = 0
    for b in (b1, b2):
        s = b.stats()
        # minus this stats call's own connection
        upstream += s["connections"] - before[b.name] - 1
        requests += s["requests"]
    assert requests == 1000, requests
    assert 2 <= upstream <= 20, upstream


def test_client_connection_kept(env):
    """100 requests on one client connection: one TCP connection, the server never closes it."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    before = b1.stats()["connections"]
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    for i in range(100):
        s.sendall(b"GET /k%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
        buf = b""
        while True:
            resps, _ = parse_responses(buf)
            if resps:
                break
            chunk = s.recv(65536)
            assert chunk, "routerd closed a keep-alive connection after %d requests" % i
            buf += chunk
        assert resps[0]["status"] == 200
        assert "close" not in resps[0]["headers_dict"].get("connection", "").lower()
    s.close()
    st = b1.stats()
    assert st["requests"] == 100
    # one upstream connection, plus this stats call's own
    assert st["connections"] - before == 2, (before, st)


def test_backend_closes_after_response(env):
    """A backend closes its side right after a complete response (no Connection: close):
    routerd must not reuse that connection; the next request is served at once."""
    import time
    from harness import scripted_backend

    def respond(s, head, n):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: sc\r\n\r\nok")
        return False  # close, as servers do at their keep-alive request limit

    sc = scripted_backend(env, "sc", respond)
    r = env.router(backends_yaml([sc]))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=3)
    for i in range(5):
        t0 = time.time()
        c.request("GET", "/n%d" % i)
        resp = c.getresponse()
        body = resp.read()
        dt = time.time() - t0
        assert resp.status == 200 and body == b"ok", (i, resp.status, body)
        assert dt < 1.0, (i, dt)
    c.close()
    assert sc.conns == 5, sc.conns


def test_backend_idle_close_between_requests(env):
    """A backend closes an idle pooled connection (its keep-alive timeout): the next
    request goes out on a fresh connection without error or delay."""
    import time
    from harness import scripted_backend

    def respond(s, head, n):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: sc\r\n\r\nok")
        time.sleep(0.3)
        return False  # close 300 ms later, idle

    sc = scripted_backend(env, "sc", respond)
    r = env.router(backends_yaml([sc]))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=3)
    for i in range(3):
        t0 = time.time()
        c.request("GET", "/i%d" % i)
        resp = c.getresponse()
        body = resp.read()
        assert resp.status == 200 and body == b"ok", (i, resp.status, body)
        assert time.time() - t0 < 1.0
        time.sleep(0.6)
    c.close()


def test_upstream_idle_closes_pooled_connections(env):
    """timeout.upstream_idle: routerd closes a pooled backend connection once it has been
    idle that long, before a backend's own keep-alive timeout can race a request into it;
    a connection in use is not touched."""
    import time

    b = env.backend("b1")
    r = env.router(backends_yaml([b], extra="timeout: {upstream_idle: 400ms}\n"))

    def pooled():
        return b.stats()["open"] - 1     # less the connection asking

    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    c.request("GET", "/x")
    resp = c.getresponse()
    resp.read()
    assert resp.status == 200
    s0 = b.stats()
    assert s0["open"] - 1 == 1, s0
    # kept well inside the timeout, used again: still the one connection
    for i in range(4):
        time.sleep(0.2)
        c.request("GET", "/y%d" % i)
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200
    s1 = b.stats()
    # one new connection since s0: the one asking for s1
    assert s1["open"] - 1 == 1 and s1["connections"] == s0["connections"] + 1, (s0, s1)
    deadline = time.time() + 3
    while pooled() != 0 and time.time() < deadline:
        time.sleep(0.05)
    assert pooled() == 0, "the idle pooled connection was not closed"
    # a fresh pooled connection, then at once an answer slower than upstream_idle on it:
    # the idle timer must not cut a connection in use
    c.request("GET", "/z")
    resp = c.getresponse()
    resp.read()
    s2 = b.stats()
    c.request("GET", "/slow?ms=900")
    resp = c.getresponse()
    body = resp.read()
    assert resp.status == 200 and resp.getheader("X-Backend") == "b1", (resp.status, body)
    s3 = b.stats()
    assert s3["connections"] == s2["connections"] + 1, (s2, s3)   # only s3's own
    c.close()

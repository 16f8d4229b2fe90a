"""Failures and their answers: 502, 503, 504, broken backend responses, slow clients."""
import http.client
import json
import socket
import threading
import time
import types

from harness import (backends_yaml, dead_addr, parse_responses, pools_yaml, raw, request,
                     status_of)


def _json_error(resp, code):
    assert resp["status"] == code, resp
    assert "application/json" in resp["headers_dict"].get("content-type", ""), resp
    err = json.loads(resp["body"])["error"]
    assert err["code"] == code and err["message"], err
    return err


def _one(port, path, timeout=5.0, extra=b""):
    out = raw(port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n"
              % (path.encode(), extra), timeout=timeout)
    resps, rest = parse_responses(out)
    return out, resps, rest


def _still_serves(port, want="b1"):
    st, h, body = request(port, "GET", "/after")
    assert st == 200, (st, body)
    assert h.get("x-backend") == want, h


def test_502_all_backends_refuse(env):
    r = env.router(pools_yaml({"default": [dead_addr(), dead_addr()]}, workers=1))
    t0 = time.time()
    out, resps, _ = _one(r.port, "/x")
    assert resps, out
    _json_error(resps[0], 502)
    assert time.time() - t0 < 2.0
    # and a POST (not idempotent, but never sent anywhere) gets the same
    st, _, body = request(r.port, "POST", "/x", body=b"abc")
    assert st == 502, (st, body)


def test_503_no_eligible_backend(env):
    """The only backend is at max_conns and there is no queue: 503 + Retry-After + JSON."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([(b1, ", max_conns: 1")],
                                 extra="queue:\n  size: 0\n  timeout: 1s\n"))
    holder = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    holder.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)  # the slow request is in flight
    t0 = time.time()
    out, resps, _ = _one(r.port, "/x")
    assert resps, out
    _json_error(resps[0], 503)
    assert resps[0]["headers_dict"].get("retry-after", "").isdigit(), resps[0]
    assert time.time() - t0 < 1.0
    # the slow request itself is unharmed
    holder.settimeout(5)
    got = b""
    while True:
        c = holder.recv(65536)
        if not c:
            break
        got += c
    holder.close()
    assert status_of(got) == 200, got
    _still_serves(r.port)


def test_queue_waits_for_a_slot(env):
    """DESIGN 'Queueing': at max_conns the request waits in the queue and is served when the slot frees."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([(b1, ", max_conns: 1")],
                                 extra="queue:\n  size: 10\n  timeout: 5s\n"))
    holder = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    holder.sendall(b"GET /slow?ms=600 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)
    t0 = time.time()
    st, h, body = request(r.port, "GET", "/queued")
    dt = time.time() - t0
    holder.close()
    assert st == 200, (st, body)
    assert 0.2 <= dt <= 3.0, dt


def test_queued_expect_100_post_served(env):
    """A POST with Expect: 100-continue that waits in the queue for longer than
    client_header gets its 100, sends its body and is served: the wait is
    routerd's, and it is not held against the body's allowance."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([(b1, ", max_conns: 1")],
                                 extra="queue:\n  size: 10\n  timeout: 5s\n"
                                       "timeout:\n  client_header: 1s\n  client_idle: 5s\n"))
    holder = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    holder.sendall(b"GET /slow?ms=2000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
              b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        c = s.recv(65536)
        if not c:
            break
        got += c
    assert got.startswith(b"HTTP/1.1 100"), got
    s.sendall(b"0123456789")
    rest = got.split(b"\r\n\r\n", 1)[1]
    while True:
        c = s.recv(65536)
        if not c:
            break
        rest += c
    s.close()
    holder.close()
    assert status_of(rest) == 200, rest


def test_queue_timeout_503(env):
    """DESIGN 'Queueing': a queued request gives up after queue.timeout with 503 + Retry-After."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([(b1, ", max_conns: 1")],
                                 extra="queue:\n  size: 10\n  timeout: 1s\n"))
    holder = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    holder.sendall(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)
    t0 = time.time()
    out, resps, _ = _one(r.port, "/x")
    dt = time.time() - t0
    holder.close()
    assert resps, out
    _json_error(resps[0], 503)
    assert "retry-after" in resps[0]["headers_dict"]
    assert 0.8 <= dt <= 2.5, dt


def test_504_upstream_timeout(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  upstream_response: 1s\n"))
    t0 = time.time()
    out, resps, _ = _one(r.port, "/hang", timeout=5)
    dt = time.time() - t0
    assert resps, out
    _json_error(resps[0], 504)
    assert 0.8 <= dt <= 2.5, dt
    _still_serves(r.port)


def test_504_between_body_bytes_cuts(env):
    """Silence past upstream_response after the head: the client connection is cut, no fake end."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  upstream_response: 1s\n"))
    t0 = time.time()
    out = raw(r.port, b"GET /sse?n=3&delay_ms=2500 HTTP/1.1\r\nHost: t\r\n\r\n", timeout=6)
    dt = time.time() - t0
    assert status_of(out) == 200, out
    assert b"data: 1" in out and b"data: 2" not in out, out
    assert not out.endswith(b"0\r\n\r\n"), out
    assert dt < 4.0, dt
    _still_serves(r.port)


def _truncated(env, kind):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"GET /bad?kind=%s HTTP/1.1\r\nHost: t\r\n\r\n" % kind.encode())
    out = b""
    eof = False
    end = time.time() + 4
    s.settimeout(0.5)
    while time.time() < end:
        try:
            c = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            eof = True
            break
        if not c:
            eof = True
            break
        out += c
    s.close()
    assert eof, "client connection not cut after a truncated response: %r" % out
    return r, out


def test_truncated_content_length_cuts(env):
    r, out = _truncated(env, "short_cl")
    resps, rest = parse_responses(out)
    # either nothing, or a head + the 10 bytes; never a complete 100-byte body
    assert not resps, ("a complete response was faked", out)
    if out:
        assert status_of(out) == 200 and out.endswith(b"0123456789"), out
    _still_serves(r.port)


def test_truncated_chunked_cuts(env):
    r, out = _truncated(env, "short_chunked")
    assert not out.endswith(b"0\r\n\r\n"), ("a last chunk was faked", out)
    resps, rest = parse_responses(out)
    assert not resps, out
    _still_serves(r.port)


def _bad(env, kind):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    out, resps, rest = _one(r.port, "/bad?kind=%s" % kind)
    assert resps, (kind, out)
    _json_error(resps[0], 502)
    assert rest == b"", out
    assert b"hello" not in out and b"ok" not in out.split(b"\r\n\r\n", 1)[1], out
    _still_serves(r.port)
    _still_serves(r.port)


def test_bad_status_line_502(env):
    _bad(env, "status_line")


def test_bad_conflicting_cl_502(env):
    _bad(env, "conflicting_cl")


def test_bad_cl_te_502(env):
    _bad(env, "cl_te")


def test_bad_obs_fold_502(env):
    _bad(env, "obs_fold")


def test_bad_huge_header_502(env):
    """A response head larger than routerd's buffer (one 64 KiB field): 502, nothing forwarded."""
    _bad(env, "huge_header")


def test_bad_close_early_502(env):
    """A backend that closes without answering: 502 (GET on a fresh connection is not replayed blindly)."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    out, resps, _ = _one(r.port, "/bad?kind=close_early")
    assert resps, out
    err = _json_error(resps[0], 502)
    # says what happened: reached, then closed (not "could not be reached")
    assert err["message"] == "backend closed the connection without answering", err
    _still_serves(r.port)


def test_partial_head_then_close_502(env):
    """The backend sends part of a response head, then closes: 502 that says so, nothing forwarded."""
    from harness import scripted_backend

    def respond(s, head, n):
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
        return False

    sc = scripted_backend(env, "sc", respond)
    r = env.router(backends_yaml([sc]))
    out, resps, _ = _one(r.port, "/x")
    assert resps and b"200 OK" not in out, out
    err = _json_error(resps[0], 502)
    assert err["message"] == "backend stopped in the middle of its answer", err


def test_connect_refused_502_says_so(env):
    """Nothing listens at the backend's address: 502, and the message says it could not be reached."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % s.getsockname()[1]     # bound, not listening: refused
    try:
        gone = types.SimpleNamespace(name="gone", addr=addr)
        r = env.router(backends_yaml([gone], extra="retries:\n  delay: 0s\n"))
        out, resps, _ = _one(r.port, "/x")
        assert resps, out
        err = _json_error(resps[0], 502)
        assert err["message"] == "backend could not be reached", err
    finally:
        s.close()


def test_slow_client_header_408(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  client_header: 1s\n"))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    head = b"GET /x HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 40 + b"\r\n\r\n"
    t0 = time.time()
    got = b""
    eof = False
    s.settimeout(0.01)
    # one byte every 100 ms: the head would take ~7 s, and each byte resets any idle timer
    for i in range(len(head) - 2):
        if time.time() - t0 > 4:
            break
        try:
            s.send(head[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        end = time.time() + 0.1
        while time.time() < end:
            try:
                c = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                eof = True
                break
            if not c:
                eof = True
                break
            got += c
        if eof:
            break
    dt = time.time() - t0
    if not eof:
        s.settimeout(2)
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    eof = True
                    break
                got += c
        except (socket.timeout, ConnectionResetError):
            pass
    s.close()
    assert status_of(got) == 408, got
    assert eof, "connection not closed after 408"
    assert b"connection: close" in got.lower()
    assert 0.9 <= dt <= 2.0, dt
    assert b1.stats()["requests"] == 0, "a trickled request reached the backend"


def _read_until_close(s, limit):
    """Everything the peer sends until it closes (or `limit` s of silence); the
    bytes and the seconds it took.  Closes s."""
    t0 = time.time()
    s.settimeout(limit)
    got = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            got += c
    except (socket.timeout, ConnectionResetError):
        pass
    dt = time.time() - t0
    s.close()
    return got, dt


def test_slow_client_idle_keepalive_close(env):
    """An idle keep-alive connection is closed after timeout.client_idle, without a 408."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  client_idle: 1s\n"))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.2)
    first = s.recv(65536)
    assert status_of(first) == 200
    rest, dt = _read_until_close(s, 4)
    assert rest == b"", rest
    assert 0.6 <= dt <= 2.5, dt


def test_stalled_body_408_after_client_idle(env):
    """A client that stops sending its body: 408 after timeout.client_idle when
    that comes before the body's deadline; routerd keeps serving."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  client_header: 5s\n  client_idle: 1s\n"))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\nhello")
    got, dt = _read_until_close(s, 4)
    assert 0.8 <= dt <= 2.5, (dt, got)
    assert status_of(got) == 408, got
    _still_serves(r.port)


def _send_paced(port, head, body, step, pause, limit):
    """Send head, then body `step` bytes every `pause` s; returns (bytes got, seconds)
    once the peer answers and closes, or `limit` s pass."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head)
    t0 = time.time()
    got = b""
    s.settimeout(0.001)
    i = 0
    while time.time() - t0 < limit:
        if i < len(body):
            try:
                s.send(body[i:i + step])
            except (BrokenPipeError, ConnectionResetError):
                break
            i += step
        end = time.time() + pause
        closed = False
        while time.time() < end:
            try:
                c = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = True
                break
            if not c:
                closed = True
                break
            got += c
        if closed or (i >= len(body) and got.endswith(b"}")):
            break
    dt = time.time() - t0
    s.close()
    return got, dt


def test_trickled_body_408_after_client_header(env):
    """DESIGN: a trickled body gets 408 after timeout.client_header (a total, not an
    idle timer): a byte every 200 ms never lets client_idle expire, yet the answer
    is 408 about client_header after the head, and nothing is left half-sent."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  client_header: 1s\n  client_idle: 5s\n"))
    head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n"
    got, dt = _send_paced(r.port, head, b"x" * 40, 1, 0.2, 6)
    assert status_of(got) == 408, got
    assert 0.9 <= dt <= 2.5, dt
    _still_serves(r.port)


def test_flowing_body_outlives_client_header(env):
    """A body that keeps flowing (here ~40 KB/s for about 2.5 s, past a 1 s
    client_header) is not cut: the deadline grows a second per KiB received."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], extra="timeout:\n  client_header: 1s\n  client_idle: 5s\n"))
    body = bytes(range(256)) * 400            # 102,400 bytes
    head = (b"POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    got, dt = _send_paced(r.port, head, body, 2048, 0.05, 10)
    assert status_of(got) == 200, got[:300]
    assert dt >= 2.0, dt
    assert b'"bytes":%d' % len(body) in got.replace(b" ", b""), got[-300:]


def test_body_held_up_by_backend_is_not_the_clients_fault(env):
    """A backend that stops reading the body for 3 s, past client_idle (1 s) and
    client_header: routerd stops reading the client (flow control) and must not
    answer 408 for it; once the backend reads again the request completes."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    total = 16 * 1024 * 1024
    seen = {}

    def serve():
        s, _ = ls.accept()
        s.settimeout(20)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        got = len(buf.split(b"\r\n\r\n", 1)[1])
        time.sleep(3.0)                         # the stall
        while got < total:
            c = s.recv(1 << 20)
            if not c:
                break
            got += len(c)
        seen["got"] = got
        body = b'{"bytes":%d}' % got
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        s.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = env.router(pools_yaml({"default": ["%s:%d" % ls.getsockname()]},
                                  extra="timeout:\n  client_header: 1s\n  client_idle: 1s\n"
                                        "  upstream_response: 10s\n"))
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=20)
        c.request("POST", "/upload", body=b"z" * total,
                  headers={"Content-Type": "application/octet-stream"})
        resp = c.getresponse()
        data = resp.read()
        c.close()
        assert resp.status == 200, (resp.status, data)
        assert seen.get("got") == total, seen
    finally:
        t.join(5)
        ls.close()


def _blackhole():
    """A loopback listener whose accept queue is full: a new connect() to it gets
    no answer to its SYN, so only a connect timeout ends it."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fill = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(ls.getsockname())
        except BlockingIOError:
            pass
        fill.append(c)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(ls.getsockname())
        raise AssertionError("the blackhole accepted a connection")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return ls, fill


def test_connect_timeout_502_and_failover(env):
    """timeout.connect bounds a connect that never completes: 502 soon after it
    when the pool has nothing else, the live backend's answer when it has."""
    ls, fill = _blackhole()
    ls2, fill2 = _blackhole()
    hole, hole2 = "%s:%d" % ls.getsockname(), "%s:%d" % ls2.getsockname()
    b1 = env.backend("b1")
    try:
        r = env.router(pools_yaml({"default": [hole], "mixed": [hole2, b1]},
                                  routes=[("/mixed", "mixed"), ("/", "default")],
                                  extra="timeout:\n  connect: 300ms\nretries:\n  delay: 0s\n"))
        t0 = time.time()
        st, _, body = request(r.port, "GET", "/x", timeout=10)
        dt = time.time() - t0
        assert st == 502, (st, body)
        assert 0.25 <= dt <= 2.0, dt
        for _ in range(4):
            t0 = time.time()
            st, hdrs, _ = request(r.port, "GET", "/mixed/x", timeout=10)
            assert st == 200 and hdrs.get("x-backend") == "b1", (st, hdrs)
            assert time.time() - t0 <= 2.0, time.time() - t0
    finally:
        for c in fill + fill2:
            c.close()
        ls.close()
        ls2.close()


def test_errors_do_not_poison_keepalive(env):
    """After 502s and 504s on other connections, pooled keep-alive keeps working under load."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], workers=2,
                                 extra="timeout:\n  upstream_response: 1s\n"))
    errs = []

    def bad():
        for kind in ("status_line", "cl_te", "conflicting_cl", "close_early"):
            try:
                raw(r.port, b"GET /bad?kind=%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    % kind.encode(),
                    timeout=2)
            except OSError as e:
                errs.append(repr(e))

    t = threading.Thread(target=bad)
    t.start()
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for i in range(200):
        c.request("GET", "/good%d" % i)
        resp = c.getresponse()
        body = resp.read()
        assert resp.status == 200, (i, resp.status, body)
        assert json.loads(body)["path"] == "/good%d" % i
    c.close()
    t.join(15)
    assert not errs, errs

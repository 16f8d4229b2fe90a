"""Regressions of the request-path issue: each case failed on the binary before its fix.

- a Content-Length response sent in one write, to a client whose forwarded head grows
  (Connection: close, HTTP/1.0 keep-alive): heap overflow, worker killed by SIGABRT, and
  bodies cut at about 32,647 bytes before that;
- a 204 or 304 that carries a Content-Length: routerd waited for body bytes that never come.
"""
import socket
import time

from harness import backends_yaml, parse_responses, pattern_block, scripted_backend, worker_pids


def _pattern(n):
    return bytes(((i * 31 + 7) & 0xFF) for i in range(n))


def _fetch(port, req, timeout=10):
    """Send req, read until routerd closes; returns the raw bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(req)
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = s.recv(65536)
        if not c:
            break
        out += c
    s.close()
    return out


def _no_deaths(r, pids_before):
    log = r.output()
    assert "killed by signal" not in log, log[-2000:]
    assert worker_pids(r) == pids_before, (pids_before, worker_pids(r))


def test_one_write_cl_response_close_and_http10(env):
    """40,000 bytes in one write, Connection: close and HTTP/1.0: whole, byte-exact, no worker death."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    pids = worker_pids(r)
    for n in (32647, 32648, 32700, 32768, 40000, 65536, 65537, 131072):
        want = _pattern(n)
        for req in (b"GET /bytes?n=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % n,
                    b"GET /bytes?n=%d HTTP/1.0\r\n\r\n" % n):
            out = _fetch(r.port, req)
            resps, rest = parse_responses(out)
            assert len(resps) == 1 and rest == b"", (n, req, out[:300])
            body = resps[0]["body"]
            assert resps[0]["status"] == 200, (n, req, out[:300])
            assert len(body) == n and body == want, (n, req, len(body))
    _no_deaths(r, pids)


def test_one_write_cl_response_http10_keepalive(env):
    """HTTP/1.0 with Connection: keep-alive adds a field to the head: still whole, and kept alive."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    pids = worker_pids(r)
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    for n in (32000, 32647, 40000, 65535):
        s.sendall(b"GET /bytes?n=%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % n)
        buf = b""
        while True:
            resps, rest = parse_responses(buf)
            if resps and "content-length" in resps[0]["headers_dict"]:
                break
            c = s.recv(65536)
            assert c, (n, buf[:300])
            buf += c
        assert resps[0]["body"] == _pattern(n), (n, len(resps[0]["body"]))
        assert resps[0]["headers_dict"].get("connection", "").lower() == "keep-alive", resps[0]
    s.close()
    _no_deaths(r, pids)


def _nobody_backend(env, status, cl):
    def respond(s, head, n):
        s.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nX-N: %d\r\n\r\n" % (status, cl, n))
        return True
    return scripted_backend(env, "nb%d" % status, respond)


def test_204_304_with_content_length_do_not_hang(env):
    """A 204 or 304 with a Content-Length has no body: the next keep-alive request is answered
    at once, and a Connection: close client is closed."""
    for status in (204, 304):
        sc = _nobody_backend(env, status, 10)
        r = env.router(backends_yaml([sc], extra="timeout:\n  upstream_response: 5s\n"))
        s = socket.create_connection(("127.0.0.1", r.port), timeout=3)
        t0 = time.time()
        for i in range(3):
            s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                c = s.recv(4096)
                assert c, (status, i, buf)
                buf += c
            assert buf.startswith(b"HTTP/1.1 %d" % status), buf
        assert time.time() - t0 < 2, "keep-alive requests after a %d took %.1fs" % (
            status, time.time() - t0)
        s.close()
        t0 = time.time()
        out = _fetch(r.port, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=4)
        assert out.startswith(b"HTTP/1.1 %d" % status), out
        assert time.time() - t0 < 2, "Connection: close after a %d was not closed" % status
        r.stop()

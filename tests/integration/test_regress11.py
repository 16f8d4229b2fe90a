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


def _worker_pids(r):
    """The workers' pids, once the master has forked and titled them."""
    deadline = time.time() + 5
    while time.time() < deadline:
        pids = worker_pids(r)
        if pids:
            return pids
        time.sleep(0.05)
    raise AssertionError("no worker came up")


def _no_deaths(r, pids_before):
    log = r.output()
    assert "killed by signal" not in log, log[-2000:]
    assert worker_pids(r) == pids_before, (pids_before, worker_pids(r))


def test_one_write_cl_response_close_and_http10(env):
    """40,000 bytes in one write, Connection: close and HTTP/1.0: whole, byte-exact, no worker death."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    pids = _worker_pids(r)
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
    pids = _worker_pids(r)
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


def _post(port, path, body, headers=(), chunks=None):
    """One request; returns (status, headers dict, body bytes)."""
    h = b"POST %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % path.encode()
    for k, v in headers:
        h += b"%s: %s\r\n" % (k.encode(), v.encode())
    if chunks is None:
        req = h + b"Content-Length: %d\r\n\r\n" % len(body) + body
    else:
        req = h + b"Transfer-Encoding: chunked\r\n\r\n"
        for i in range(0, len(body), chunks):
            part = body[i:i + chunks]
            req += b"%x\r\n%s\r\n" % (len(part), part)
        req += b"0\r\n\r\n"
    out = _fetch(port, req)
    resps, _ = parse_responses(out)
    assert resps, out[:300]
    return resps[-1]["status"], resps[-1]["headers_dict"], resps[-1]["body"]


def test_model_routing_never_falls_back_silently(env):
    """A model pool: chunked bodies are routed by their model; a body that is not JSON, names no
    model, or is over limits.hold is answered with an OpenAI-style error and reaches no backend."""
    import json
    b1 = env.backend("b1", models="m1")
    r = env.router(backends_yaml([(b1, ", models: [m1]")], strategy="model",
                                 extra="limits:\n  hold: 64k\n"))
    ok = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "x" * 3000}]}).encode()
    unk = json.dumps({"model": "nope", "messages": []}).encode()
    for chunks in (None, 1, 7, 1000):
        st, _, body = _post(r.port, "/v1/chat/completions", ok, chunks=chunks)
        assert st == 200, (chunks, st, body[:200])
        st, _, body = _post(r.port, "/v1/chat/completions", unk, chunks=chunks)
        assert st == 404 and json.loads(body)["error"]["code"] == "model_not_found", (chunks, st, body)
    before = b1.stats()["requests"]
    cases = [(b"not json at all", 400, "invalid_json"),
             (b"[1,2,3]", 400, "invalid_json"),
             (b'{"messages": []}', 400, "missing_model"),
             (b'{"model": 7}', 400, "missing_model"),
             (b'{"model": "m1", "pad": "' + b"a" * 70000 + b'"}', 413, "request_too_large")]
    for body, want, code in cases:
        for chunks in (None, 4096):
            st, _, got = _post(r.port, "/v1/chat/completions", body, chunks=chunks)
            assert st == want, (body[:40], chunks, st, got[:200])
            assert json.loads(got)["error"]["code"] == code, (body[:40], got)
    assert b1.stats()["requests"] == before, "a request the router refused reached the backend"


def test_hold_memory_spent_streams_or_refuses(env):
    """limits.hold_memory spent by a slow upload: another body that needs more than the block
    every request has streams (a plain pool), and a model pool answers 503 with Retry-After;
    both counted in /metrics; nothing is lost."""
    import json
    b1 = env.backend("b1", models="m1")
    yaml = """listen:
  - address: LISTEN
admin:
  address: 127.0.0.1:{aport}
workers: 1
health: {{ type: none }}
limits:
  hold: 1m
  hold_memory: 100k
pools:
  plain:
    backends:
      - {{ name: p1, address: {addr} }}
  llm:
    strategy: model
    backends:
      - {{ name: l1, address: {addr}, models: [m1] }}
routes:
  - {{ prefix: /upload, pool: plain }}
  - {{ prefix: /v1/, pool: llm }}
"""
    from harness import free_port
    aport = free_port()
    r = env.router(yaml.format(aport=aport, addr=b1.addr))
    # a slow upload of 90 KB: held, it takes most of the 100k
    slow = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    slow.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 90000\r\n\r\n" + b"x" * 1000)
    time.sleep(0.3)
    st, _, body = _post(r.port, "/upload", b"y" * 80000)
    assert st == 200 and json.loads(body)["bytes"] == 80000, (st, body[:200])
    ok = json.dumps({"model": "m1", "messages": []}).encode()
    st, h, body = _post(r.port, "/v1/chat/completions", ok + b" " * 80000)
    assert st == 503 and "retry-after" in h, (st, h, body[:200])
    assert json.loads(body)["error"]["code"] == "hold_memory_full", body
    slow.sendall(b"x" * 89000)
    out = b""
    while b"\r\n\r\n" not in out:
        c = slow.recv(4096)
        assert c, out
        out += c
    assert out.startswith(b"HTTP/1.1 200"), out[:200]
    slow.close()
    import urllib.request
    m = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % aport, timeout=5).read().decode()
    refused = [ln for ln in m.splitlines() if ln.startswith("routerd_worker_hold_refused_total{")]
    assert refused and all(float(ln.split()[-1]) >= 2 for ln in refused), refused


def test_held_chunked_body_over_limit_forwards_nothing(env):
    """A chunked body over limits.body, held: 413 and a close, and no byte reached the backend."""
    hits = []

    def respond(s, head, n):
        hits.append(head)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    sc = scripted_backend(env, "trip", respond)
    r = env.router(backends_yaml([sc], extra="limits:\n  body: 1k\n"))
    for chunks in ([2000], [500, 500, 500], [1] * 1100):
        req = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        for n in chunks:
            req += b"%x\r\n%s\r\n" % (n, b"z" * n)
        req += b"0\r\n\r\n"
        out = _fetch(r.port, req)
        assert out.startswith(b"HTTP/1.1 413"), (chunks[:3], out[:200])
    time.sleep(0.2)
    assert hits == [] and sc.conns == 0, (sc.conns, hits[:1])


def test_chunked_response_headers_across_reads(env):
    """Chunked responses whose chunk-size lines straddle routerd's reads (a header begun in one
    parse step and ended in the next writes more than that step read): byte-exact, never cut."""
    sizes = (7, 255, 4095, 4096, 32697, 32698, 32699, 65535, 65536, 100000, 0x10000 + 3)
    total = 300000
    want = _pattern(total)

    def respond(s, head, n):
        size = int(head.split(b" ")[1].split(b"=")[1])
        body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        sent = 0
        while sent < total:
            k = min(size, total - sent)
            body += b"%x\r\n" % k + want[sent:sent + k] + b"\r\n"
            sent += k
        s.sendall(body + b"0\r\n\r\n")
        return True

    sc = scripted_backend(env, "chunky", respond)
    r = env.router(backends_yaml([sc]))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
    for size in sizes:
        s.sendall(b"GET /c?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        buf = b""
        while True:
            resps, rest = parse_responses(buf)
            if resps:
                break
            c = s.recv(65536)
            assert c, "cut at chunk size %d after %d bytes" % (size, len(buf))
            buf += c
        assert resps[0]["body"] == want, (size, len(resps[0]["body"]))
    s.close()
    assert "body of" not in r.output(), r.output()[-1000:]

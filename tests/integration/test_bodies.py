"""Large bodies both ways: byte-exact, streamed, and routerd's memory stays bounded."""
import hashlib
import http.client
import json
import socket
import time

from harness import (RssSampler, backends_yaml, hwm_kb, pattern_block, pattern_sha256,
                     pids_of)

SIZE = 100 * 1024 * 1024
LIMIT_KB = 64 * 1024
BLK = pattern_block(2 << 20)  # 2 MiB of the pattern: any slice [o % 256, +1 MiB] is valid


def _piece(off, n):
    o = off % 256
    return memoryview(BLK)[o:o + n]


def _check_memory(r, sampler):
    peaks = sampler.stop()
    pids = pids_of(r)
    assert len(pids) >= 2, pids
    for pid in pids:
        hwm = hwm_kb(pid)
        assert hwm < LIMIT_KB, "pid %d VmHWM %d kB (samples %s)" % (pid, hwm, peaks)
        assert peaks.get(pid, 0) < LIMIT_KB, peaks


def _read_response(s, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf:
        assert time.time() < deadline, "no response head"
        chunk = s.recv(65536)
        assert chunk, "connection closed before the response head: %r" % buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, v = ln.split(b":", 1)
        hdrs[k.strip().lower().decode()] = v.strip().decode()
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n:
            assert time.time() < deadline, "response body timed out"
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, hdrs, rest[:n]
    # chunked (small bodies only here)
    while not rest.endswith(b"0\r\n\r\n"):
        assert time.time() < deadline
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    body, i = b"", 0
    while True:
        le = rest.index(b"\r\n", i)
        n = int(rest[i:le], 16)
        if n == 0:
            break
        body += rest[le + 2:le + 2 + n]
        i = le + 2 + n + 2
    return status, hdrs, body


def _upload(env, chunked):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], workers=2))
    sampler = RssSampler(pids_of(r))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=20)
    deadline = time.time() + 30
    if chunked:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/octet-stream\r\n\r\n")
    else:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                  b"Content-Type: application/octet-stream\r\n\r\n" % SIZE)
    # odd chunk sizes so routerd's re-framing does not line up with ours
    sizes = (1 << 20, 65536, 777, 300001, 17)
    off, k = 0, 0
    while off < SIZE:
        n = min(sizes[k % len(sizes)], SIZE - off)
        k += 1
        if chunked:
            s.sendall(b"%x\r\n" % n)
            s.sendall(_piece(off, n))
            s.sendall(b"\r\n")
        else:
            s.sendall(_piece(off, n))
        off += n
    if chunked:
        s.sendall(b"0\r\n\r\n")
    st, hdrs, body = _read_response(s, deadline)
    s.close()
    assert st == 200, (st, body[:200])
    got = json.loads(body)
    assert got["bytes"] == SIZE, got
    assert got["sha256"] == pattern_sha256(SIZE), got
    _check_memory(r, sampler)


def test_upload_100mb_content_length(env):
    _upload(env, chunked=False)


def test_upload_100mb_chunked(env):
    _upload(env, chunked=True)


def _download(env, chunked, pause=0.0):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], workers=2))
    sampler = RssSampler(pids_of(r))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=20)
    c.request("GET", "/bytes?n=%d%s" % (SIZE, "&chunked=1" if chunked else ""))
    resp = c.getresponse()
    assert resp.status == 200
    if chunked:
        assert resp.getheader("Transfer-Encoding", "").lower() == "chunked"
        assert resp.getheader("Content-Length") is None
    else:
        assert resp.getheader("Content-Length") == str(SIZE)
    if pause:
        # a client that does not read: routerd must stop reading the backend, not buffer
        time.sleep(pause)
    h = hashlib.sha256()
    n = 0
    deadline = time.time() + 30
    while True:
        assert time.time() < deadline, "download too slow: %d bytes" % n
        data = resp.read(1 << 20)
        if not data:
            break
        h.update(data)
        n += len(data)
    c.close()
    assert n == SIZE, n
    assert h.hexdigest() == pattern_sha256(SIZE)
    _check_memory(r, sampler)


def test_download_100mb_content_length(env):
    _download(env, chunked=False, pause=1.0)


def test_download_100mb_chunked(env):
    _download(env, chunked=True)


def test_echo_1mb_both_framings(env):
    """/echo streams the body back: CL in, CL out; chunked in, chunked out."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    data = bytes(_piece(5, 1 << 20))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    c.request("POST", "/echo", body=data)
    resp = c.getresponse()
    assert resp.status == 200
    assert resp.read() == data

    def gen():
        for i in range(0, len(data), 100000):
            yield data[i:i + 100000]
    c.request("POST", "/echo", body=gen(), encode_chunked=True)
    resp = c.getresponse()
    assert resp.status == 200
    assert resp.read() == data
    c.close()

"""Streaming: SSE events leave routerd as they arrive, no response buffering."""
import json
import socket
import time

from harness import backends_yaml


def _stream(port, req, deadline_s=10):
    """Send req, return (t_head, [(t, bytes)] of every recv after the head, all bytes, t0)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=deadline_s)
    t0 = time.monotonic()
    s.sendall(req)
    buf = b""
    t_head = None
    pieces = []
    end = t0 + deadline_s
    while time.monotonic() < end:
        chunk = s.recv(65536)
        now = time.monotonic()
        if not chunk:
            break
        if t_head is None:
            buf += chunk
            if b"\r\n\r\n" in buf:
                t_head = now
                rest = buf.split(b"\r\n\r\n", 1)[1]
                if rest:
                    pieces.append((now, rest))
        else:
            buf += chunk
            pieces.append((now, chunk))
        if buf.endswith(b"0\r\n\r\n"):
            break
    s.close()
    return t_head, pieces, buf, t0


def _arrivals(pieces, marker_fmt, n):
    """Time at which each marker (marker_fmt % i for i in 1..n) was first seen."""
    seen = {}
    acc = b""
    for t, chunk in pieces:
        acc += chunk
        for i in range(1, n + 1):
            if i not in seen and (marker_fmt % i) in acc:
                seen[i] = t
    return seen


def _first_seen(pieces, marker):
    acc = b""
    for t, chunk in pieces:
        acc += chunk
        if marker in acc:
            return t
    return None


def test_sse_events_not_buffered(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    t_head, pieces, buf, t0 = _stream(
        r.port, b"GET /sse?n=5&delay_ms=300 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert t_head is not None, buf
    head = buf.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200"), head
    assert b"text/event-stream" in head
    seen = _arrivals(pieces, b"data: %d\n\n", 5)
    assert sorted(seen) == [1, 2, 3, 4, 5], (seen, buf[-300:])
    # first event right after the head, the stream itself takes >= 4 x 300 ms
    assert seen[1] - t_head < 0.15, seen[1] - t_head
    assert seen[5] - t0 >= 1.2, seen[5] - t0
    # every event arrives on its own, about 300 ms after the previous one
    for i in range(2, 6):
        gap = seen[i] - seen[i - 1]
        assert 0.2 <= gap <= 0.6, (i, gap)
    assert buf.endswith(b"0\r\n\r\n")


def test_chat_completion_stream(env):
    b1 = env.backend("b1", models="demo-model")
    r = env.router(backends_yaml([b1]))
    body = json.dumps({"model": "demo-model", "stream": True, "max_tokens": 5,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
           b"X-Fake-Delay-Ms: 200\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    t_head, pieces, buf, t0 = _stream(r.port, req)
    assert t_head is not None, buf
    head, raw_body = buf.split(b"\r\n\r\n", 1)
    assert head.lower().startswith(b"http/1.1 200"), head
    assert b"text/event-stream" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()
    # decode the chunked body
    data, i = b"", 0
    while True:
        le = raw_body.index(b"\r\n", i)
        n = int(raw_body[i:le], 16)
        if n == 0:
            break
        data += raw_body[le + 2:le + 2 + n]
        i = le + 2 + n + 2
    events = [e[len(b"data: "):] for e in data.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"[DONE]", events[-3:]
    content = ""
    for e in events[:-1]:
        obj = json.loads(e)
        assert obj["object"] == "chat.completion.chunk", obj
        for ch in obj.get("choices", []):
            content += ch.get("delta", {}).get("content") or ""
    assert content == "Hello from b1 again again", content
    # the first token reached us well before the last one (5 tokens 200 ms apart)
    first = _first_seen(pieces, b"Hello")
    done = _first_seen(pieces, b"[DONE]")
    assert first is not None and done is not None
    assert done - first >= 0.6, done - first
    assert first - t_head < 0.25, first - t_head

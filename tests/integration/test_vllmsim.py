"""tests/vllmsim: the simulated vLLM server itself (cache, engine, metrics, faults, SSE) and loadgen."""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

from harness import Proc, free_port, request, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
SIMDIR = os.path.join(HERE, "..", "vllmsim")
SIM = os.path.join(SIMDIR, "vllmsim.py")
LOADGEN = os.path.join(SIMDIR, "loadgen.py")


class Sim(Proc):
    """A vllmsim on a free loopback port."""

    def __init__(self, workdir, args=()):
        self.port = free_port()
        super().__init__([sys.executable, SIM, "--listen", "127.0.0.1:%d" % self.port] + list(args),
                         os.path.join(workdir, "vllmsim-%d.log" % self.port))
        wait_port(self.port)


def sim(env, *args):
    s = Sim(env.dir, args)
    env.procs.append(s)
    return s


def chat(port, content, model="m1", max_tokens=1, **kw):
    body = {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}]}
    body.update(kw)
    st, _, data = request(port, "POST", "/v1/chat/completions", json.dumps(body),
                          {"Content-Type": "application/json"})
    return st, data


def metrics(port):
    st, _, data = request(port, "GET", "/metrics")
    assert st == 200, st
    out = {}
    for ln in data.decode().splitlines():
        m = re.match(r'^([a-z_:]+)\{([^}]*)\} (\S+)$', ln)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def fault(port, spec, count=None):
    obj = {"fault": spec}
    if count is not None:
        obj["count"] = count
    st, _, data = request(port, "POST", "/sim/fault", json.dumps(obj))
    assert st == 200, (st, data)


def stream_raw(port, body, timeout=5.0):
    """POST a streaming request on a fresh socket; returns (head, [raw chunk payloads], clean end)."""
    b = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(b) + b)
    buf = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
            if buf.endswith(b"\r\n0\r\n\r\n") or (b"\r\n\r\n" in buf and
                                                  buf.split(b"\r\n\r\n", 1)[1] == b"0\r\n\r\n"):
                break
    except socket.timeout:
        pass
    except ConnectionResetError:
        pass
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    chunks = []
    clean = False
    while rest:
        ln, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        n = int(ln, 16)
        if n == 0:
            clean = True
            break
        chunks.append(rest[:n])
        rest = rest[n + 2:]
    return head, chunks, clean


def events(chunks):
    data = b"".join(chunks).decode()
    assert data == "" or data.endswith("\n\n"), data[-200:]
    return [e[len("data: "):] for e in data.split("\n\n") if e]


def test_vllmsim_prefix_cache_hit(env):
    s = sim(env, "--model", "m1", "--prefill-us-per-token", "1000", "--block-tokens", "16",
            "--max-batched-tokens", "4096")
    prompt = "".join(chr(97 + (i * 7) % 26) for i in range(1600))   # 400 tokens: 0.4 s to prefill
    t0 = time.monotonic()
    st, data = chat(s.port, prompt)
    t1 = time.monotonic() - t0
    assert st == 200, data
    u = json.loads(data)["usage"]
    assert u["prompt_tokens"] == 400 and u["prompt_tokens_details"]["cached_tokens"] == 0, u
    t0 = time.monotonic()
    st, data = chat(s.port, prompt + " and a new question at the end")
    t2 = time.monotonic() - t0
    u = json.loads(data)["usage"]
    assert u["prompt_tokens_details"]["cached_tokens"] == 400, u    # 25 whole blocks
    assert t1 >= 0.35 and t2 < t1 / 3, (t1, t2)
    m = metrics(s.port)
    lab = 'model_name="m1"'
    assert m[("vllm:prefix_cache_queries_total", lab)] == 400 + u["prompt_tokens"], m
    assert m[("vllm:prefix_cache_hits_total", lab)] == 400, m


def test_vllmsim_cache_lru_evicts(env):
    # 4 blocks of 16 tokens hold one 64-token prompt: a second prompt evicts the first
    s = sim(env, "--model", "m1", "--cache-blocks", "4", "--block-tokens", "16")
    a, b = "a" * 256, "b" * 256
    for p, want in ((a, 0), (a, 63), (b, 0), (a, 0)):
        st, data = chat(s.port, p)
        assert json.loads(data)["usage"]["prompt_tokens_details"]["cached_tokens"] == want, (p[0], data)


def test_vllmsim_metrics_and_waiting_queue(env):
    s = sim(env, "--model", "m1", "--model", "m2", "--max-num-seqs", "2", "--decode-base-ms", "50")
    m = metrics(s.port)
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                 "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        for model in ("m1", "m2"):
            assert (name, 'model_name="%s"' % model) in m, (name, model, sorted(m))
    assert m[("vllm:num_requests_running", 'model_name="m1"')] == 0
    results = []

    def one():
        results.append(chat(s.port, "x" * 400, max_tokens=10)[0])

    ts = [threading.Thread(target=one) for _ in range(6)]
    for t in ts:
        t.start()
    seen_wait = seen_run = seen_kv = 0
    end = time.monotonic() + 3
    while time.monotonic() < end and any(t.is_alive() for t in ts):
        m = metrics(s.port)
        seen_wait = max(seen_wait, m[("vllm:num_requests_waiting", 'model_name="m1"')])
        seen_run = max(seen_run, m[("vllm:num_requests_running", 'model_name="m1"')])
        seen_kv = max(seen_kv, m[("vllm:kv_cache_usage_perc", 'model_name="m1"')])
        time.sleep(0.03)
    for t in ts:
        t.join(10)
    assert results == [200] * 6, results
    assert seen_run == 2, seen_run          # never more than --max-num-seqs
    assert seen_wait >= 3, seen_wait        # the rest queue
    assert 0 < seen_kv <= 1, seen_kv
    m = metrics(s.port)
    assert m[("vllm:num_requests_running", 'model_name="m1"')] == 0
    assert m[("vllm:generation_tokens_total", 'model_name="m1"')] == 60, m
    assert m[("vllm:request_success_total", 'model_name="m1",finished_reason="length"')] == 6


def test_vllmsim_stream_format_and_keepalive(env):
    s = sim(env, "--model", "m1")
    n0 = json.loads(request(s.port, "GET", "/sim/stats")[2])["connections"]
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    for i in range(3):          # one connection, several requests
        body = {"model": "m1", "max_tokens": 5, "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "system", "content": "be brief " * 10},
                             {"role": "user", "content": "question %d" % i}]}
        c.request("POST", "/v1/chat/completions", json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Type") == "text/event-stream"
        assert r.getheader("Transfer-Encoding") == "chunked"
        evs = events([r.read()])
        assert evs[-1] == "[DONE]", evs
        objs = [json.loads(e) for e in evs[:-1]]
        toks = [o for o in objs if o["choices"]]
        assert len(toks) == 5, objs
        assert all(o["object"] == "chat.completion.chunk" and o["model"] == "m1" for o in objs)
        assert toks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert [o["choices"][0]["finish_reason"] for o in toks] == [None] * 4 + ["length"]
        u = objs[-1]["usage"]
        assert objs[-1]["choices"] == [] and u["completion_tokens"] == 5, objs[-1]
        assert u["total_tokens"] == u["prompt_tokens"] + 5
        assert "cached_tokens" in u["prompt_tokens_details"]
    c.close()
    st = json.loads(request(s.port, "GET", "/sim/stats")[2])
    assert st["connections"] == n0 + 2, st  # the three requests shared one; the stats call is another
    # without include_usage: no usage chunk; /v1/completions streams text_completion
    head, chunks, clean = stream_raw(s.port, {"model": "m1", "max_tokens": 2, "stream": True,
                                              "messages": [{"role": "user", "content": "hi"}]})
    evs = events(chunks)
    assert clean and len(evs) == 3 and "usage" not in json.loads(evs[1]), evs
    st, _, data = request(s.port, "POST", "/v1/completions",
                          json.dumps({"model": "m1", "prompt": "once upon", "max_tokens": 3}))
    o = json.loads(data)
    assert st == 200 and o["object"] == "text_completion" and len(o["choices"][0]["text"]) == 12, o
    assert o["usage"]["prompt_tokens"] == 3 and o["usage"]["completion_tokens"] == 3


def test_vllmsim_errors_and_models(env):
    s = sim(env, "--model", "m1", "--model", "m2")
    st, _, data = request(s.port, "GET", "/v1/models")
    o = json.loads(data)
    assert o["object"] == "list" and [m["id"] for m in o["data"]] == ["m1", "m2"], o
    st, data = chat(s.port, "hi", model="nope")
    assert st == 404 and json.loads(data)["error"]["code"] == 404, data
    st, _, data = request(s.port, "POST", "/v1/chat/completions", b"{not json")
    assert st == 400 and "error" in json.loads(data), data
    for bad in (b"[]", b'{"model": "m1"}', b'{"model": "m1", "messages": [], "max_tokens": 1}',
                b'{"model": "m1", "messages": [{"content": 3}]}',
                b'{"model": "m1", "messages": [{"content": "x"}], "max_tokens": -1}'):
        st, _, data = request(s.port, "POST", "/v1/chat/completions", bad)
        assert st == 400, (bad, st, data)
    st, _, _ = request(s.port, "GET", "/health")
    assert st == 200
    # garbage never takes it down
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                 b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=2)
        c.sendall(junk)
        try:
            c.recv(4096)
        except OSError:
            pass
        c.close()
    st, data = chat(s.port, "still here")
    assert st == 200, data
    assert s.p.poll() is None


def test_vllmsim_faults(env):
    s = sim(env, "--model", "m1", "--model", "m2")
    body = {"model": "m1", "max_tokens": 4, "stream": True,
            "messages": [{"role": "user", "content": "hello"}]}
    # 500 for the next request only
    fault(s.port, "500", 1)
    assert chat(s.port, "a")[0] == 500
    assert chat(s.port, "a")[0] == 200
    # stall: not one byte of an answer
    fault(s.port, "stall", 1)
    head, chunks, clean = stream_raw(s.port, body, timeout=0.5)
    assert head == b"" and not chunks, head
    # stall-first-token: the 200 head, then nothing
    fault(s.port, "stall-first-token", 1)
    head, chunks, clean = stream_raw(s.port, body, timeout=0.5)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head and not chunks, (head, chunks)
    # break-after:2: two events, then the connection closes with no last chunk
    fault(s.port, "break-after:2", 1)
    head, chunks, clean = stream_raw(s.port, body)
    assert head.startswith(b"HTTP/1.1 200") and len(events(chunks)) == 2 and not clean, chunks
    head, chunks, clean = stream_raw(s.port, body)
    assert clean and events(chunks)[-1] == "[DONE]", chunks
    # metrics faults
    fault(s.port, "metrics-500", 1)
    assert request(s.port, "GET", "/metrics")[0] == 500
    assert request(s.port, "GET", "/metrics")[0] == 200
    fault(s.port, "slow-metrics:0.6", 1)
    t0 = time.monotonic()
    assert request(s.port, "GET", "/metrics")[0] == 200
    assert time.monotonic() - t0 >= 0.55
    # drop-model holds until cleared
    fault(s.port, "drop-model:m2")
    ids = [m["id"] for m in json.loads(request(s.port, "GET", "/v1/models")[2])["data"]]
    assert ids == ["m1"], ids
    assert chat(s.port, "a", model="m2")[0] == 404
    assert chat(s.port, "a", model="m1")[0] == 200
    fault(s.port, "none")
    assert chat(s.port, "a", model="m2")[0] == 200
    st = json.loads(request(s.port, "GET", "/sim/stats")[2])
    assert st["faults"] == [] and st["faults_fired"]["break-after"] == 1, st
    st, _, _ = request(s.port, "POST", "/sim/fault", json.dumps({"fault": "bogus"}))
    assert st == 400
    # --fault on the command line: every request
    s2 = sim(env, "--model", "m1", "--fault", "500")
    assert [chat(s2.port, "a")[0] for _ in range(3)] == [500] * 3


def test_vllmsim_loadgen(env):
    s1 = sim(env, "--model", "m1", "--cache-blocks", "64", "--seed", "1")
    s2 = sim(env, "--model", "m1", "--cache-blocks", "64", "--seed", "2")
    urls = ["--url", "http://127.0.0.1:%d" % s1.port, "--url", "http://127.0.0.1:%d" % s2.port]
    out = subprocess.run([sys.executable, LOADGEN] + urls +
                         ["--model", "m1", "--rate", "40", "--requests", "40", "--groups", "2",
                          "--system-tokens", "128", "--question-tokens", "16", "--max-tokens", "8",
                          "--pin", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["ok"] == 40 and r["errors"] == 0, r
    assert r["hit_rate"] > 0.7, r           # pinned: each group always on its own sim
    assert r["ttft_ms"]["p50"] > 0 and r["itl_ms"]["p50"] > 0 and r["output_tok_s"] > 0, r
    # multi-turn conversations grow and hit the cache; errors are counted
    fault(s1.port, "break-after:1", 3)
    out = subprocess.run([sys.executable, LOADGEN, urls[0], urls[1], "--model", "m1",
                          "--rate", "40", "--requests", "30", "--workload", "multi-turn",
                          "--sessions", "4", "--system-tokens", "64", "--question-tokens", "16",
                          "--max-tokens", "8", "--pin", "--json"],
                         capture_output=True, text=True, timeout=30)
    r = json.loads(out.stdout)
    assert r["errors"] == 3 and r["ok"] == 27, r
    assert r["hit_rate"] > 0.3, r


def test_vllmsim_openai_sdk(env):
    """The openai npm SDK (installed by make check-sdk into BUILD/sdk) streams from the sim."""
    sdk = os.path.join(os.path.dirname(os.environ.get("ROUTERD", "build/routerd")), "sdk")
    if not os.path.isdir(os.path.join(sdk, "node_modules", "openai")):
        env.skip("the openai SDK is not installed (make check-sdk installs it)")
    s = sim(env, "--model", "m1")
    script = os.path.join(sdk, "vllmsim-check.mjs")
    with open(script, "w") as f:
        f.write("""import OpenAI from 'openai';
const c = new OpenAI({ baseURL: process.env.BASE, apiKey: 'x', maxRetries: 0 });
const st = await c.chat.completions.create({ model: 'm1', max_tokens: 4, stream: true,
  stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
let n = 0, usage = null;
for await (const ch of st) { if (ch.choices.length && ch.choices[0].delta.content) n++; if (ch.usage) usage = ch.usage; }
const r = await c.chat.completions.create({ model: 'm1', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] });
console.log(JSON.stringify({ n, usage, text: r.choices[0].message.content, models: (await c.models.list()).data.map(m => m.id) }));
""")
    out = subprocess.run(["node", script], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, BASE="http://127.0.0.1:%d/v1" % s.port))
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["n"] == 4 and r["usage"]["completion_tokens"] == 4 and len(r["text"]) == 12, r
    assert r["models"] == ["m1"], r

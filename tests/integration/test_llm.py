"""The llm strategy on the simulated vLLM fleet: prefix affinity until the
warm backend saturates, cold prefixes placed alike by separate routerd
instances, model narrowing, and bodies it cannot read routed anyway."""
import http.client
import json
import random
import threading
import time

from harness import request
from test_vllmsim import sim


def _yaml(sims, workers=2, extra="", strategy="llm", models=None, health="  type: none"):
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             "strategy: %s" % strategy, "health:", health, "backends:"]
    for i, s in enumerate(sims):
        m = ""
        if models is not None:
            m = ", models: [%s]" % ", ".join(models[i])
        lines.append("  - { name: s%d, address: 127.0.0.1:%d%s }" % (i, s.port, m))
    return "\n".join(lines) + "\n" + extra


def _stats(s):
    st, _, data = request(s.port, "GET", "/sim/stats")
    assert st == 200
    return json.loads(data)


def _served(sims):
    return [_stats(s)["requests"] for s in sims]


def _chat(port, system, question, model="m1", max_tokens=1, timeout=30):
    body = json.dumps({"model": model, "max_tokens": max_tokens,
                       "messages": [{"role": "system", "content": system},
                                    {"role": "user", "content": question}]})
    st, _, data = request(port, "POST", "/v1/chat/completions", body,
                          {"Content-Type": "application/json"}, timeout=timeout)
    return st, data


def _system(g, chars=4000):
    words = "group %d says lorem ipsum dolor sit amet %d " % (g, g)
    return (words * (chars // len(words) + 1))[:chars]


def _where(sims, before):
    after = _served(sims)
    moved = [i for i in range(len(sims)) if after[i] != before[i]]
    assert len(moved) == 1, (before, after)
    return moved[0], after


def test_same_prefix_same_backend_and_cache_hits(env):
    """Sequential requests of 6 prompt groups over 3 backends, 2 workers:
    every request of a group lands where its group's first one did, so the
    fleet prefills each system prompt once."""
    sims = [sim(env, "--model", "m1") for _ in range(3)]
    r = env.router(_yaml(sims))
    home = {}
    seen = _served(sims)
    rng = random.Random(7)
    for i in range(48):
        g = rng.randrange(6)
        st, _ = _chat(r.port, _system(g), "question %d?" % i)
        assert st == 200
        at, seen = _where(sims, seen)
        home.setdefault(g, at)
        assert at == home[g], (g, at, home)
    prompt = sum(_stats(s)["models"]["m1"]["prompt_tokens"] for s in sims)
    prefill = sum(_stats(s)["prefill_tokens"] for s in sims)
    # 6 system prompts of ~1000 tokens prefilled once, plus the questions
    assert 1 - prefill / prompt >= 0.8, (prefill, prompt)


def _burst(r, sims, n, gap=0.0, max_tokens=20):
    before = _served(sims)
    errs = []

    def one(i):
        try:
            st, _ = _chat(r.port, _system(1), "burst %d" % i, max_tokens=max_tokens)
            if st != 200:
                errs.append(st)
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))

    ts = []
    for i in range(n):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        ts.append(t)
        if gap:
            time.sleep(gap)
    for t in ts:
        t.join()
    assert not errs, errs
    return [a - b for a, b in zip(_served(sims), before)]


def test_saturated_prefix_spreads(env):
    """One prompt group, warm on one backend, under a concurrent burst.
    Below its limits the warm backend takes it all (sticky); past
    llm.affinity_limit (uncached prompt tokens in flight) the rest spreads."""
    sims = [sim(env, "--model", "m1", "--decode-base-ms", "40") for _ in range(3)]
    r = env.router(_yaml(sims, extra="llm:\n  affinity_limit: 100000\n"))
    st, _ = _chat(r.port, _system(1), "warm it up")
    assert st == 200
    got = _burst(r, sims, 12)
    assert sorted(got) == [0, 0, 12], got
    sims2 = [sim(env, "--model", "m1", "--decode-base-ms", "40") for _ in range(3)]
    from harness import Router
    import os
    d2 = os.path.join(env.dir, "limited")
    os.mkdir(d2)
    # each request of the group leaves ~70 uncached tokens in flight (its question)
    r2 = Router(d2, _yaml(sims2, extra="llm:\n  affinity_limit: 200\n"))
    env.procs.append(r2)
    st, _ = _chat(r2.port, _system(1), "warm it up")
    assert st == 200
    got = _burst(r2, sims2, 12)
    assert sum(got) == 12 and sum(1 for g in got if g > 0) >= 2, got


def test_backend_queue_saturates_affinity(env):
    """With the backends' metrics read, a warm backend whose own queue
    reaches llm.queue_limit stops taking its group; the others take it."""
    sims = [sim(env, "--model", "m1", "--max-num-seqs", "2", "--decode-base-ms", "60")
            for _ in range(3)]
    r = env.router(_yaml(sims, extra="llm:\n  queue_limit: 2\n",
                         health="  type: none\n  metrics: true\n  metrics_interval: 100ms"))
    st, _ = _chat(r.port, _system(1), "warm it up")
    assert st == 200
    got = _burst(r, sims, 10, gap=0.15, max_tokens=30)
    assert sum(got) == 10 and sum(1 for g in got if g > 0) >= 2, got
    assert max(got) >= 3, got


def test_cold_prefix_placed_alike_by_two_instances(env):
    """Two routerd instances with their own tables, same backends: each new
    prefix goes to the same backend from either (rendezvous hashing)."""
    sims = [sim(env, "--model", "m1") for _ in range(4)]
    r1 = env.router(_yaml(sims, workers=1))
    # a second instance in its own directory: its own pid file, socket, table
    import os
    from harness import Router
    d2 = os.path.join(env.dir, "second")
    os.mkdir(d2)
    r2 = Router(d2, _yaml(sims, workers=1))
    env.procs.append(r2)
    seen = _served(sims)
    places = set()
    for g in range(12):
        st, _ = _chat(r1.port, _system(100 + g), "first")
        assert st == 200
        a, seen = _where(sims, seen)
        st, _ = _chat(r2.port, _system(100 + g), "second")
        assert st == 200
        b, seen = _where(sims, seen)
        assert a == b, (g, a, b)
        places.add(a)
    # and the prefixes are spread, not all on one backend
    assert len(places) >= 3, places


def test_model_narrowing_and_unknown_model(env):
    """Backends that list models: llm narrows by the body's model and an
    unknown one gets model routing's 404; backends that list none take any."""
    a, b = sim(env, "--model", "m1"), sim(env, "--model", "m2")
    r = env.router(_yaml([a, b], models=[["m1"], ["m2"]]))
    for i in range(6):
        for m, s in (("m1", a), ("m2", b)):
            before = _stats(s)["requests"]
            st, _ = _chat(r.port, _system(i), "q", model=m)
            assert st == 200
            assert _stats(s)["requests"] == before + 1
    st, data = _chat(r.port, "x", "q", model="nope")
    assert st == 404, (st, data)
    assert json.loads(data)["error"]["code"] == "model_not_found"


def test_unreadable_bodies_still_routed(env):
    """An llm pool carries other traffic too: bodies that are not JSON
    objects, GETs, and chunked bodies all reach a backend."""
    s = sim(env, "--model", "m1")
    r = env.router(_yaml([s]))
    for body in (b"not json", b"[1,2,3]", b"{\"model\":", b""):
        st, _, _ = request(r.port, "POST", "/v1/chat/completions", body,
                           {"Content-Type": "application/json"})
        assert st in (400, 422), (body, st)     # the sim's own answer, not routerd's
    st, _, _ = request(r.port, "GET", "/v1/models")
    assert st == 200
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    body = json.dumps({"model": "m1", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "chunked " * 100}]}).encode()
    c.putrequest("POST", "/v1/chat/completions")
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for i in range(0, len(body), 100):
        part = body[i:i + 100]
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
    c.send(b"0\r\n\r\n")
    assert c.getresponse().status == 200


def _prom(port):
    st, _, data = request(port, "GET", "/metrics")
    assert st == 200
    out = {}
    for ln in data.decode().splitlines():
        if ln.startswith("#") or " " not in ln:
            continue
        k, v = ln.rsplit(" ", 1)
        out[k] = float(v)
    return out


def _sum(prom, name, **labels):
    tot = 0.0
    for k, v in prom.items():
        if not k.startswith(name + "{"):
            continue
        if all('%s="%s"' % (a, b) in k for a, b in labels.items()):
            tot += v
    return tot


def test_token_counts_exact_across_two_workers(env):
    """Streams held open on two workers: the prompt tokens in flight are
    exactly the estimates of the requests (characters / 4), over both
    workers' stripes; once they end, nothing is in flight and the totals
    are exactly what the backends' usage said."""
    from harness import free_port
    sims = [sim(env, "--model", "m1", "--decode-base-ms", "30") for _ in range(2)]
    admin = free_port()
    r = env.router(_yaml(sims, extra="admin:\n  address: 127.0.0.1:%d\n" % admin))
    conns, chars = [], 0
    for i in range(8):
        system, q = _system(i, 2000 + 100 * i), "stream %d" % i
        chars += len("system") + len(system) + len("user") + len(q)
        body = json.dumps({"model": "m1", "max_tokens": 40, "stream": True,
                           "stream_options": {"include_usage": True},
                           "messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": q}]})
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=20)
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        conns.append(c)
    resps = [c.getresponse() for c in conns]
    for x in resps:
        assert x.status == 200
    p = _prom(admin)
    exp = sum((len("system") + len(_system(i, 2000 + 100 * i)) + len("user") +
               len("stream %d" % i)) // 4 for i in range(8))
    assert _sum(p, "routerd_backend_tokens_inflight", kind="prompt") == exp, (exp, p)
    assert _sum(p, "routerd_backend_tokens_inflight", kind="output") <= 8 * 40
    usage_p = usage_c = 0
    for x in resps:
        data = x.read().decode()
        assert data.rstrip().endswith("data: [DONE]"), data[-200:]
        for ln in data.splitlines():
            if ln.startswith("data: {") and '"usage"' in ln:
                u = json.loads(ln[6:]).get("usage")
                if u:
                    usage_p += u["prompt_tokens"]
                    usage_c += u["completion_tokens"]
    for c in conns:
        c.close()
    p = _prom(admin)
    for kind in ("prompt", "uncached", "output"):
        assert _sum(p, "routerd_backend_tokens_inflight", kind=kind) == 0, (kind, p)
    assert _sum(p, "routerd_backend_llm_requests_total") == 8
    assert usage_p > 0 and usage_c > 0
    # the totals are the backends' own figures, not the estimates
    assert _sum(p, "routerd_backend_prompt_tokens_total") == usage_p, (usage_p, exp)
    assert _sum(p, "routerd_backend_output_tokens_total") == usage_c

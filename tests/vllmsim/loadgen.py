#!/usr/bin/env python3
"""loadgen: an open-loop load generator for OpenAI-compatible streaming chat completions.

Requests arrive as a Poisson process at --rate per second, whatever the server
does (open loop: a slow server makes requests pile up, it does not slow the
arrivals).  Every request streams (stream: true, stream_options.include_usage)
and is timed: time to first token, the gaps between tokens, end to end.  Any
answer but 200, a stream that breaks, an error event or a missing [DONE] is an
error.  Python 3 standard library only; one event loop, keep-alive connections.
"""
import argparse
import asyncio
import collections
import json
import random
import string
import sys
import time
import urllib.parse


def pct(xs, p):
    """Nearest-rank percentile of a sorted list (None when empty)."""
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


class Pool:
    """Idle keep-alive connections to one host:port."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit("loadgen: --url must be http://HOST:PORT[/prefix], not %r" % url)
        self.host = u.hostname
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self.idle = []
        self.opened = 0

    async def get(self):
        while self.idle:
            r, w = self.idle.pop()
            if not r.at_eof() and not w.is_closing():
                return r, w, True
            w.close()
        self.opened += 1
        r, w = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return r, w, False

    def put(self, r, w):
        self.idle.append((r, w))


class StreamError(Exception):
    pass


async def read_head(r):
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        if k:
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


async def body_pieces(r, hdrs):
    """Yield the body's bytes as they come: chunked, Content-Length or up to EOF.
    Raises StreamError when the body ends before it says it does."""
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        while True:
            try:
                ln = await r.readuntil(b"\r\n")
                n = int(ln.split(b";")[0].strip(), 16)
                if n == 0:
                    while (await r.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return
                data = await r.readexactly(n + 2)
            except (asyncio.IncompleteReadError, ValueError, ConnectionError) as e:
                raise StreamError("broken stream (%s)" % type(e).__name__)
            yield data[:-2]
    elif "content-length" in hdrs:
        n = int(hdrs["content-length"])
        try:
            yield await r.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise StreamError("short body")
    else:
        while True:
            try:
                data = await r.read(65536)
            except ConnectionError:
                raise StreamError("broken stream (reset)")
            if not data:
                return
            yield data


class Result:
    __slots__ = ("ok", "err", "ttft", "itl", "e2e", "out_tokens", "prompt_tokens",
                 "cached_tokens", "text", "lag", "t_done", "reused")

    def __init__(self):
        self.ok = False
        self.err = None
        self.ttft = None
        self.itl = []
        self.e2e = None
        self.out_tokens = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.text = []
        self.lag = 0.0
        self.t_done = None
        self.reused = False


async def one_request(pool, path, body, res, t_sched):
    """Send one streaming request and fill res."""
    t0 = time.monotonic()
    res.lag = t0 - t_sched
    try:
        r, w, reused = await pool.get()
    except OSError as e:
        res.err = "connect (%s)" % type(e).__name__
        return
    res.reused = reused
    keep = False
    try:
        req = ("POST %s%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
               "Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n" % (
                   pool.prefix, path, pool.host, pool.port, len(body))).encode() + body
        w.write(req)
        await w.drain()
        try:
            status, hdrs = await read_head(r)
        except (asyncio.IncompleteReadError, ConnectionError):
            if reused:
                # the server closed an idle connection as we sent: not the server's error
                w.close()
                r, w, reused = await pool.get()
                w.write(req)
                await w.drain()
                status, hdrs = await read_head(r)
            else:
                raise
        keep = "close" not in hdrs.get("connection", "").lower()
        buf = b""
        done = False
        last = None
        async for piece in body_pieces(r, hdrs):
            if status != 200:
                continue
            buf += piece
            while True:
                i = buf.find(b"\n\n")
                if i < 0:
                    break
                ev, buf = buf[:i], buf[i + 2:]
                for ln in ev.split(b"\n"):
                    if not ln.startswith(b"data:"):
                        continue
                    data = ln[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        continue
                    try:
                        obj = json.loads(data)
                    except ValueError:
                        raise StreamError("bad event")
                    if "error" in obj:
                        raise StreamError("error event")
                    u = obj.get("usage")
                    if u:
                        res.prompt_tokens = u.get("prompt_tokens", 0)
                        res.out_tokens = u.get("completion_tokens", 0)
                        d = u.get("prompt_tokens_details") or {}
                        res.cached_tokens = d.get("cached_tokens") or 0
                    for ch in obj.get("choices") or ():
                        c = (ch.get("delta") or {}).get("content") or ch.get("text")
                        if c:
                            now = time.monotonic()
                            if last is None:
                                res.ttft = now - t0
                            else:
                                res.itl.append(now - last)
                            last = now
                            res.text.append(c)
        if status != 200:
            res.err = "status %d" % status
            return
        if not done:
            res.err = "no [DONE]"
            keep = False
            return
        res.ok = True
        res.t_done = time.monotonic()
        res.e2e = res.t_done - t0
    except StreamError as e:
        res.err = str(e)
        keep = False
    except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
        res.err = "broken (%s)" % type(e).__name__
        keep = False
    except asyncio.CancelledError:
        res.err = "timeout"
        keep = False
        w.close()
        raise
    finally:
        if keep and res.ok:
            pool.put(r, w)
        elif not w.is_closing():
            w.close()


class Workload:
    """Builds the messages of each request."""

    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.n = 0
        self.sysp = [self.text(a.system_tokens, "group %d. " % g) for g in range(a.groups)]
        self.sessions = []
        self.idle = []

    def text(self, tokens, head=""):
        n = max(0, 4 * tokens - len(head))
        return head + "".join(self.rng.choices(string.ascii_lowercase + "     ", k=n))

    def next(self):
        """(messages, session or None, affinity key)."""
        a = self.a
        self.n += 1
        q = self.text(a.question_tokens, "q%d: " % self.n)
        if a.workload == "shared-prefix":
            g = self.rng.randrange(a.groups)
            return ([{"role": "system", "content": self.sysp[g]}, {"role": "user", "content": q}],
                    None, g)
        if a.workload == "unique":
            return [{"role": "system", "content": self.text(a.system_tokens, "u%d. " % self.n)},
                    {"role": "user", "content": q}], None, self.n
        # multi-turn: an idle session continues, or a new one starts
        if self.idle and (len(self.sessions) >= a.sessions or
                          self.rng.random() < 0.8):
            s = self.idle.pop(self.rng.randrange(len(self.idle)))
        else:
            s = {"msgs": [{"role": "system",
                           "content": self.text(a.system_tokens, "s%d. " % self.n)}],
                 "turns": 0, "id": self.n}
            self.sessions.append(s)
        s["msgs"].append({"role": "user", "content": q})
        return list(s["msgs"]), s, s["id"]

    def done(self, s, res):
        if s is None:
            return
        s["turns"] += 1
        if res.ok and s["turns"] < self.a.turns:
            s["msgs"].append({"role": "assistant", "content": "".join(res.text)})
            self.idle.append(s)
        else:
            self.sessions.remove(s)


async def run(a):
    pools = [Pool(u) for u in a.url]
    wl = Workload(a)
    rng = random.Random(a.seed + 1)
    results = []
    tasks = set()
    loop = asyncio.get_running_loop()
    t_start = time.monotonic()
    t_next = t_start
    end = t_start + a.duration if a.duration else None
    i = 0

    async def fire(idx, t_sched):
        msgs, sess, key = wl.next()
        if a.pin:
            idx = key
        body = json.dumps({"model": a.model, "messages": msgs, "stream": True,
                           "stream_options": {"include_usage": True},
                           "max_tokens": a.max_tokens}).encode()
        res = Result()
        results.append(res)
        try:
            await asyncio.wait_for(one_request(pools[idx % len(pools)], a.path, body, res, t_sched),
                                   a.timeout)
        except asyncio.TimeoutError:
            res.ok = False
            res.err = "timeout"
        wl.done(sess, res)

    while True:
        if a.requests and i >= a.requests:
            break
        if end and t_next >= end:
            break
        delay = t_next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = loop.create_task(fire(i, t_next))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        i += 1
        t_next += rng.expovariate(a.rate)
    t_arrivals = time.monotonic()
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=a.drain)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
    t_end = time.monotonic()
    for res in results:
        if not res.ok and res.err is None:
            res.err = "timeout"
    return summarize(a, results, t_start, t_arrivals, t_end, pools)


def summarize(a, results, t_start, t_arrivals, t_end, pools):
    ok = [r for r in results if r.ok]
    errs = collections.Counter(r.err for r in results if not r.ok)
    ttft = sorted(r.ttft for r in ok if r.ttft is not None)
    itl = sorted(x for r in ok for x in r.itl)
    e2e = sorted(r.e2e for r in ok)
    lag = sorted(r.lag for r in results)
    t_last = max([r.t_done for r in ok] or [t_arrivals])
    span = max(1e-9, t_last - t_start)
    out_tokens = sum(r.out_tokens for r in ok)
    ptok = sum(r.prompt_tokens for r in ok)
    ctok = sum(r.cached_tokens for r in ok)
    events = sum(len(r.itl) + 1 for r in ok)

    def ms(x):
        return None if x is None else round(x * 1000.0, 1)

    return {
        "workload": a.workload, "rate": a.rate, "requests": len(results), "ok": len(ok),
        "errors": sum(errs.values()), "error_kinds": dict(errs),
        "duration_s": round(t_arrivals - t_start, 2), "span_s": round(span, 2),
        "ttft_ms": {"p50": ms(pct(ttft, 50)), "p90": ms(pct(ttft, 90)), "p99": ms(pct(ttft, 99))},
        "itl_ms": {"p50": ms(pct(itl, 50)), "p99": ms(pct(itl, 99))},
        "e2e_ms": {"p50": ms(pct(e2e, 50)), "p99": ms(pct(e2e, 99))},
        "output_tok_s": round(out_tokens / span, 1),
        "events_per_s": round(events / span, 1),
        "prompt_tokens": ptok, "cached_tokens": ctok,
        "hit_rate": round(ctok / ptok, 4) if ptok else None,
        "send_lag_ms": {"p50": ms(pct(lag, 50)), "p99": ms(pct(lag, 99)), "max": ms(lag[-1] if lag else None)},
        "connections_opened": sum(p.opened for p in pools),
    }


def report(s):
    def f(x):
        return "-" if x is None else "%.1f" % x
    print("%s at %.1f req/s: %d requests, %d ok, %d errors %s" % (
        s["workload"], s["rate"], s["requests"], s["ok"], s["errors"],
        s["error_kinds"] if s["errors"] else ""))
    print("  TTFT ms   p50 %s  p90 %s  p99 %s" % tuple(f(s["ttft_ms"][k]) for k in ("p50", "p90", "p99")))
    print("  ITL ms    p50 %s  p99 %s" % (f(s["itl_ms"]["p50"]), f(s["itl_ms"]["p99"])))
    print("  E2E ms    p50 %s  p99 %s" % (f(s["e2e_ms"]["p50"]), f(s["e2e_ms"]["p99"])))
    print("  output    %.1f tok/s, %.1f events/s" % (s["output_tok_s"], s["events_per_s"]))
    print("  cache     %s hit (%d of %d prompt tokens)" % (
        "-" if s["hit_rate"] is None else "%.1f%%" % (100 * s["hit_rate"]),
        s["cached_tokens"], s["prompt_tokens"]))
    print("  loadgen   send lag p50 %s p99 %s max %s ms; %d connections opened" % (
        f(s["send_lag_ms"]["p50"]), f(s["send_lag_ms"]["p99"]), f(s["send_lag_ms"]["max"]),
        s["connections_opened"]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="open-loop streaming load generator")
    p.add_argument("--url", action="append", required=True,
                   help="http://HOST:PORT (repeatable: requests go round the list)")
    p.add_argument("--model", default="sim-model")
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--rate", type=float, default=10.0, help="arrivals per second (Poisson)")
    p.add_argument("--duration", type=float, default=0, help="seconds of arrivals")
    p.add_argument("--requests", type=int, default=0, help="or this many requests")
    p.add_argument("--workload", choices=("shared-prefix", "multi-turn", "unique"),
                   default="shared-prefix")
    p.add_argument("--groups", type=int, default=16, help="shared-prefix: system prompts")
    p.add_argument("--system-tokens", type=int, default=1024, help="system prompt length")
    p.add_argument("--question-tokens", type=int, default=64, help="question / turn length")
    p.add_argument("--sessions", type=int, default=16, help="multi-turn: sessions at once")
    p.add_argument("--turns", type=int, default=6, help="multi-turn: turns per session")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--drain", type=float, default=15.0,
                   help="after the last arrival, wait this long for requests in flight")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pin", action="store_true",
                   help="perfect affinity: a group's (session's) requests always go to the same --url")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args(argv)
    if not a.duration and not a.requests:
        p.error("give --duration or --requests")
    if a.rate <= 0:
        p.error("--rate must be > 0")
    return a


def main():
    a = parse_args()
    s = asyncio.run(run(a))
    if a.json:
        print(json.dumps(s))
    else:
        report(s)
    sys.exit(0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""vllmsim: one simulated GPU running vLLM behind an OpenAI-compatible HTTP/1.1 API.

A model, not an emulator: tokens are 4 characters of prompt text, the prefix
cache is an LRU of hash-chained blocks, and an engine loop runs steps like
vLLM's scheduler (at most --max-num-seqs running, a FIFO waiting queue,
chunked prefill within --max-batched-tokens, one decode token per running
sequence per step).  Time is real (asyncio.sleep), so a router in front sees
the queueing, the cache hits and the TTFT a real fleet would show.  Python 3
standard library only.  See tests/vllmsim/README.md for the knobs.
"""
import argparse
import asyncio
import collections
import json
import random
import signal
import sys
import time

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
# every output token is one of these 4-character words, so that an assistant
# reply fed back as a prompt tokenizes to the same blocks it was cached as
VOCAB = [" the", " and", " for", " you", " can", " not", " but", " all", " new",
         " one", " two", " way", " use", " how", " out", " day", " get", " see",
         " now", " may", " any", " its", " our", " who", " job", " set"]

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class BadRequest(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status
        self.msg = msg


def tokens_of(text):
    """Simulated tokenizer: one token per 4 characters (at least 1)."""
    return max(1, (len(text) + 3) // 4)


class PrefixCache:
    """LRU of block hashes, fixed capacity in blocks.  Block i's hash covers block i-1's,
    so a hit on block i means the whole prefix up to it is the same."""

    def __init__(self, blocks, block_tokens):
        self.cap = max(0, blocks)
        self.bchars = 4 * block_tokens
        self.lru = collections.OrderedDict()

    def hashes(self, text):
        """Chained hashes of the full blocks of text."""
        out = []
        h = 0
        b = self.bchars
        for i in range(0, len(text) - b + 1, b):
            h = hash((h, text[i:i + b]))
            out.append(h)
        return out

    def match(self, hashes):
        """Leading blocks present in the cache; touches them (most recently used)."""
        n = 0
        for h in hashes:
            if h not in self.lru:
                break
            self.lru.move_to_end(h)
            n += 1
        return n

    def insert(self, hashes):
        if self.cap == 0:
            return
        for h in hashes:
            if h in self.lru:
                self.lru.move_to_end(h)
            else:
                self.lru[h] = True
                if len(self.lru) > self.cap:
                    self.lru.popitem(last=False)

    def clear(self):
        self.lru.clear()


class Seq:
    """One request inside the engine."""

    __slots__ = ("rid", "model", "text", "hashes", "prompt_tokens", "cached", "prefilled",
                 "max_out", "out", "events", "wake", "done", "aborted", "t_arrive",
                 "t_first", "inserted", "finish")

    def __init__(self, rid, model, text, hashes, max_out):
        self.rid = rid
        self.model = model
        self.text = text
        self.hashes = hashes
        self.prompt_tokens = tokens_of(text)
        self.cached = 0
        self.prefilled = 0          # prompt tokens computed or found in cache
        self.max_out = max_out
        self.out = []               # output token strings, appended by the engine
        self.wake = asyncio.Event()
        self.done = False
        self.aborted = False
        self.t_arrive = time.monotonic()
        self.t_first = None
        self.inserted = 0           # leading blocks already put in the cache
        self.finish = None


class Engine:
    """The scheduler loop: one step at a time, like vLLM's EngineCore."""

    def __init__(self, a, stats):
        self.a = a
        self.stats = stats
        self.cache = PrefixCache(a.cache_blocks, a.block_tokens)
        self.waiting = collections.deque()
        self.running = []
        self.kick = asyncio.Event()
        self.rng = random.Random(a.seed)
        self.steps = 0
        self.busy_s = 0.0

    def submit(self, seq):
        self.waiting.append(seq)
        self.kick.set()

    def abort(self, seq):
        seq.aborted = True
        if seq in self.waiting:
            self.waiting.remove(seq)
        if seq in self.running:
            self.running.remove(seq)
        self.stats["aborted"] += 1

    def kv_usage(self):
        bt = self.a.block_tokens
        used = sum((s.prompt_tokens + len(s.out) + bt - 1) // bt for s in self.running)
        return min(1.0, used / self.a.kv_blocks) if self.a.kv_blocks > 0 else 0.0

    def _admit(self):
        while self.waiting and len(self.running) < self.a.max_num_seqs:
            s = self.waiting.popleft()
            hit = self.cache.match(s.hashes)
            # the last prompt token is always computed (it yields the first output token)
            s.cached = min(hit * self.a.block_tokens, s.prompt_tokens - 1)
            s.prefilled = s.cached
            s.inserted = hit
            m = self.stats["model"][s.model]
            m["prefix_queries"] += s.prompt_tokens
            m["prefix_hits"] += s.cached
            self.running.append(s)

    async def run(self):
        a = self.a
        loop = asyncio.get_running_loop()
        while True:
            self._admit()
            if not self.running:
                self.kick.clear()
                await self.kick.wait()
                continue
            decoding = [s for s in self.running if s.prefilled >= s.prompt_tokens]
            budget = max(0, a.max_batched_tokens - len(decoding))
            chunks = []
            for s in self.running:
                if budget <= 0:
                    break
                need = s.prompt_tokens - s.prefilled
                if need > 0:
                    take = min(need, budget)
                    chunks.append((s, take))
                    budget -= take
            ptoks = sum(t for _, t in chunks)
            step = (a.decode_base_ms + a.decode_per_seq_ms * len(self.running)) / 1000.0 \
                + ptoks * a.prefill_us_per_token / 1e6
            t0 = loop.time()
            await asyncio.sleep(step)
            self.busy_s += loop.time() - t0
            self.steps += 1
            self.stats["prefill_tokens"] += ptoks
            now = time.monotonic()
            finished = []
            for s in decoding:
                if s.aborted:
                    continue
                self._emit(s, now)
                if len(s.out) >= s.max_out:
                    finished.append(s)
            for s, take in chunks:
                if s.aborted:
                    continue
                s.prefilled += take
                full = min(len(s.hashes), s.prefilled // a.block_tokens)
                if full > s.inserted:
                    self.cache.insert(s.hashes[s.inserted:full])
                    s.inserted = full
                if s.prefilled >= s.prompt_tokens:
                    self._emit(s, now)          # the step that ends prefill samples token 1
                    if len(s.out) >= s.max_out:
                        finished.append(s)
            for s in finished:
                self._finish(s)

    def _emit(self, s, now):
        if s.t_first is None:
            s.t_first = now
        s.out.append(VOCAB[self.rng.randrange(len(VOCAB))])
        self.stats["model"][s.model]["generation_tokens"] += 1
        s.wake.set()

    def _finish(self, s):
        if s in self.running:
            self.running.remove(s)
        s.done = True
        s.finish = "length"
        # vLLM caches the blocks of generated tokens too: a next turn that repeats
        # this reply after the prompt hits them
        full = self.cache.hashes(s.text + "".join(s.out))
        if len(full) > s.inserted:
            self.cache.insert(full[s.inserted:])
        s.wake.set()


class Faults:
    """Injected faults.  Each is (kind, arg, remaining) with remaining None = until cleared."""

    REQUEST = ("500", "stall", "stall-first-token", "break-after")
    METRICS = ("slow-metrics", "metrics-500")

    def __init__(self):
        self.items = []
        self.fired = collections.Counter()

    @staticmethod
    def parse(spec):
        kind, _, arg = spec.partition(":")
        if kind == "break-after":
            n = int(arg)
            if n < 0:
                raise ValueError("break-after needs N >= 0")
            return kind, n
        if kind == "slow-metrics":
            return kind, float(arg) if arg else 5.0
        if kind in ("drop-model", "500-model"):
            if not arg:
                raise ValueError("%s needs a NAME" % kind)
            return kind, arg
        if kind in ("500", "stall", "stall-first-token", "metrics-500"):
            return kind, None
        raise ValueError("unknown fault %r" % spec)

    def add(self, spec, count=None):
        kind, arg = self.parse(spec)
        self.items.append([kind, arg, count if count else None])

    def clear(self):
        self.items = []

    def take(self, kinds):
        """The first active fault of one of kinds, consumed once; or None."""
        for it in self.items:
            if it[0] in kinds:
                if it[2] is not None:
                    it[2] -= 1
                    if it[2] <= 0:
                        self.items.remove(it)
                self.fired[it[0]] += 1
                return it[0], it[1]
        return None

    def take_model(self, kind, model):
        """The first active fault kind:model for this model, consumed once; or None."""
        for it in self.items:
            if it[0] == kind and it[1] == model:
                if it[2] is not None:
                    it[2] -= 1
                    if it[2] <= 0:
                        self.items.remove(it)
                self.fired[kind] += 1
                return it[0], it[1]
        return None

    def dropped(self):
        return {it[1] for it in self.items if it[0] == "drop-model"}

    def describe(self):
        return [{"fault": k + ("" if a is None else ":%s" % a), "remaining": r}
                for k, a, r in self.items]


class Server:
    def __init__(self, a):
        self.a = a
        self.models = a.model or ["sim-model"]
        self.stats = {"requests": 0, "status": collections.Counter(), "aborted": 0,
                      "prefill_tokens": 0, "connections": 0, "conn_open": 0,
                      "model": {m: collections.Counter() for m in self.models}}
        self.engine = Engine(a, self.stats)
        self.faults = Faults()
        for f in a.fault or []:
            self.faults.add(f)
        self.rid = 0
        self.t_start = time.time()

    # --- HTTP plumbing -------------------------------------------------------------

    async def conn(self, reader, writer):
        self.stats["connections"] += 1
        self.stats["conn_open"] += 1
        try:
            while True:
                try:
                    req = await self.read_request(reader)
                except BadRequest as e:
                    await self.send_json(writer, e.status, err_body(e.msg, "invalid_request_error"),
                                         close=True)
                    return
                if req is None:
                    return
                keep = await self.dispatch(req, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception as e:          # never let one connection take the server down
            print("vllmsim: connection error: %r" % (e,), file=sys.stderr)
        finally:
            self.stats["conn_open"] -= 1
            try:
                writer.close()
            except Exception:
                pass

    async def read_request(self, reader):
        """(method, path, headers, body, keepalive) or None on a clean EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise BadRequest(400, "truncated request head")
            return None
        except asyncio.LimitOverrunError:
            raise BadRequest(431, "request head too large")
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise BadRequest(400, "bad request line")
        if not version.startswith("HTTP/1."):
            raise BadRequest(400, "bad HTTP version")
        hdrs = {}
        for ln in lines[1:]:
            if not ln:
                continue
            k, sep, v = ln.partition(":")
            if not sep or not k or k != k.strip():
                raise BadRequest(400, "bad header line")
            k = k.lower()
            v = v.strip()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        conn = hdrs.get("connection", "").lower()
        keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
        body = b""
        te = hdrs.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise BadRequest(501, "unsupported transfer-encoding")
            while True:
                ln = await reader.readuntil(b"\r\n")
                try:
                    n = int(ln.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk size")
                if n == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                if len(body) + n > MAX_BODY:
                    raise BadRequest(413, "body too large")
                body += await reader.readexactly(n)
                if await reader.readexactly(2) != b"\r\n":
                    raise BadRequest(400, "bad chunk end")
        elif "content-length" in hdrs:
            try:
                n = int(hdrs["content-length"])
            except ValueError:
                raise BadRequest(400, "bad content-length")
            if n < 0:
                raise BadRequest(400, "bad content-length")
            if n > MAX_BODY:
                raise BadRequest(413, "body too large")
            body = await reader.readexactly(n)
        path = target.split("?", 1)[0]
        return method, path, hdrs, body, keep

    async def send(self, writer, status, ctype, body, close=False, extra=""):
        head = "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
            status, REASONS.get(status, "Unknown"), ctype, len(body), extra,
            "Connection: close\r\n" if close else "")
        writer.write(head.encode() + body)
        await writer.drain()
        self.stats["status"][status] += 1

    async def send_json(self, writer, status, obj, close=False):
        await self.send(writer, status, "application/json", json.dumps(obj).encode(), close)

    # --- routes --------------------------------------------------------------------

    async def dispatch(self, req, reader, writer):
        method, path, hdrs, body, keep = req
        close = not keep
        if path in ("/v1/chat/completions", "/v1/completions"):
            if method != "POST":
                await self.send_json(writer, 405, err_body("use POST", "invalid_request_error"), close)
                return keep
            return await self.completion(path, body, keep, reader, writer)
        if method not in ("GET", "HEAD", "POST"):
            await self.send_json(writer, 405, err_body("method not allowed", "invalid_request_error"),
                                 close)
            return keep
        if path == "/health" and method != "POST":
            await self.send(writer, 200, "text/plain", b"", close)
        elif path == "/v1/models" and method != "POST":
            now = int(self.t_start)
            drop = self.faults.dropped()
            data = [{"id": m, "object": "model", "created": now, "owned_by": "vllm",
                     "root": m, "parent": None, "max_model_len": 32768}
                    for m in self.models if m not in drop]
            await self.send_json(writer, 200, {"object": "list", "data": data}, close)
        elif path == "/metrics" and method != "POST":
            f = self.faults.take(Faults.METRICS)
            if f and f[0] == "metrics-500":
                await self.send(writer, 500, "text/plain", b"metrics failed\n", close)
                return keep
            if f and f[0] == "slow-metrics":
                await asyncio.sleep(f[1])
            await self.send(writer, 200, "text/plain; version=0.0.4", self.metrics().encode(), close)
        elif path == "/sim/stats" and method != "POST":
            await self.send_json(writer, 200, self.sim_stats(), close)
        elif path == "/sim/fault" and method == "POST":
            try:
                obj = json.loads(body or b"{}")
                spec = obj.get("fault", "none")
                if not isinstance(spec, str):
                    raise ValueError("fault must be a string")
                count = obj.get("count")
                if count is not None and (not isinstance(count, int) or count < 0):
                    raise ValueError("count must be an integer >= 0")
                if spec in ("none", "clear", ""):
                    self.faults.clear()
                else:
                    self.faults.add(spec, count)
            except (ValueError, AttributeError) as e:
                await self.send_json(writer, 400, err_body(str(e), "invalid_request_error"), close)
                return keep
            await self.send_json(writer, 200, {"faults": self.faults.describe()}, close)
        elif path == "/sim/reset" and method == "POST":
            self.engine.cache.clear()
            await self.send_json(writer, 200, {"ok": True}, close)
        else:
            await self.send_json(writer, 404, err_body("no route %s" % path, "not_found_error"), close)
        return keep

    async def completion(self, path, body, keep, reader, writer):
        close = not keep
        chat = path == "/v1/chat/completions"
        try:
            obj = json.loads(body)
            if not isinstance(obj, dict):
                raise ValueError("body is not an object")
            text = prompt_text(obj, chat)
            model = obj.get("model")
            stream = obj.get("stream", False) is True
            so = obj.get("stream_options") or {}
            include_usage = isinstance(so, dict) and so.get("include_usage") is True
            mt = obj.get("max_completion_tokens", obj.get("max_tokens"))
            if mt is None:
                mt = self.a.default_max_tokens
            if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
                raise ValueError("max_tokens must be a positive integer")
        except (ValueError, UnicodeDecodeError) as e:
            await self.send_json(writer, 400, err_body("bad request: %s" % e, "BadRequestError"),
                                 close)
            return keep
        if not isinstance(model, str) or model not in self.models or model in self.faults.dropped():
            await self.send_json(writer, 404, err_body(
                "The model `%s` does not exist." % model, "NotFoundError", param="model",
                code=404), close)
            return keep
        self.stats["requests"] += 1
        if self.faults.take_model("500-model", model):
            # the model is broken here while the server and its other models work
            self.stats["model"][model]["failed"] += 1
            await self.send_json(writer, 500, err_body("injected failure of %s" % model,
                                                       "InternalServerError", code=500), close)
            return keep
        f = self.faults.take(Faults.REQUEST)
        kind = f[0] if f else None
        if kind == "500":
            await self.send_json(writer, 500, err_body("injected failure", "InternalServerError",
                                                       code=500), close)
            return keep
        if kind == "stall":
            await drain_until_eof(reader)
            return False
        self.rid += 1
        rid = "sim%d-%d" % (self.a.seed, self.rid)
        seq = Seq(rid, model, text, self.engine.cache.hashes(text), mt)
        m = self.stats["model"][model]
        m["requests"] += 1
        m["prompt_tokens"] += seq.prompt_tokens
        created = int(time.time())
        if not stream:
            self.engine.submit(seq)
            try:
                while not seq.done:
                    seq.wake.clear()
                    await seq.wake.wait()
            finally:
                if not seq.done:
                    self.engine.abort(seq)
            if kind == "break-after":
                writer.transport.abort()
                return False
            out = "".join(seq.out)
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": out},
                          "logprobs": None, "finish_reason": seq.finish}
            else:
                choice = {"index": 0, "text": out, "logprobs": None, "finish_reason": seq.finish}
            resp = {"id": ("chatcmpl-" if chat else "cmpl-") + rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created, "model": model, "choices": [choice],
                    "usage": usage(seq)}
            m["success"] += 1
            await self.send_json(writer, 200, resp, close)
            return keep
        # streaming: chunked SSE
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" +
                     (b"Connection: close\r\n" if close else b"") + b"\r\n")
        await writer.drain()
        self.stats["status"][200] += 1
        if kind == "stall-first-token":
            await drain_until_eof(reader)
            return False
        limit = f[1] if kind == "break-after" else None
        sent = 0
        cid = ("chatcmpl-" if chat else "cmpl-") + rid
        obj_name = "chat.completion.chunk" if chat else "text_completion"

        def event(choice, extra=None):
            d = {"id": cid, "object": obj_name, "created": created, "model": model,
                 "choices": choice}
            if extra:
                d.update(extra)
            return sse(json.dumps(d, separators=(",", ":")))

        self.engine.submit(seq)
        try:
            i = 0
            while True:
                if seq.aborted:
                    return False
                n = len(seq.out)
                buf = []
                while i < n:
                    tok = seq.out[i]
                    if chat:
                        delta = {"content": tok}
                        if i == 0:
                            delta = {"role": "assistant", "content": tok}
                        ch = {"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": None}
                    else:
                        ch = {"index": 0, "text": tok, "logprobs": None, "finish_reason": None}
                    i += 1
                    if seq.done and i == n:
                        ch["finish_reason"] = seq.finish
                    buf.append(event([ch], {"usage": None} if include_usage else None))
                if buf:
                    if limit is not None and sent + len(buf) >= limit:
                        buf = buf[:limit - sent]
                        if buf:
                            writer.write(b"".join(buf))
                            await writer.drain()
                        writer.transport.abort()
                        return False
                    writer.write(b"".join(buf))
                    await writer.drain()
                    sent += len(buf)
                if seq.done and i >= len(seq.out):
                    break
                seq.wake.clear()
                if len(seq.out) == i and not seq.done:
                    await seq.wake.wait()
            tail = []
            if include_usage:
                tail.append(event([], {"usage": usage(seq)}))
            tail.append(sse("[DONE]"))
            writer.write(b"".join(tail) + b"0\r\n\r\n")
            await writer.drain()
            m["success"] += 1
        finally:
            if not seq.done:
                self.engine.abort(seq)
        return keep

    # --- observability ---------------------------------------------------------------

    def metrics(self):
        e = self.engine
        run = collections.Counter(s.model for s in e.running)
        wait = collections.Counter(s.model for s in e.waiting)
        kv = e.kv_usage()
        out = []

        def fam(name, typ, helptext, values):
            out.append("# HELP %s %s" % (name, helptext))
            out.append("# TYPE %s %s" % (name, typ))
            for m in self.models:
                v = values(m)
                if isinstance(v, dict):
                    for k, x in v.items():
                        out.append('%s{model_name="%s",%s} %s' % (name, m, k, fmt(x)))
                else:
                    out.append('%s{model_name="%s"} %s' % (name, m, fmt(v)))

        st = self.stats["model"]
        fam("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
            lambda m: run[m])
        fam("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
            lambda m: wait[m])
        fam("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
            lambda m: kv)
        fam("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.",
            lambda m: kv)
        fam("vllm:prefix_cache_queries_total", "counter",
            "Prefix cache queries, in terms of number of queried tokens.",
            lambda m: st[m]["prefix_queries"])
        fam("vllm:prefix_cache_hits_total", "counter",
            "Prefix cache hits, in terms of number of cached tokens.",
            lambda m: st[m]["prefix_hits"])
        fam("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
            lambda m: st[m]["prompt_tokens"])
        fam("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
            lambda m: st[m]["generation_tokens"])
        fam("vllm:request_success_total", "counter", "Count of successfully processed requests.",
            lambda m: {'finished_reason="length"': st[m]["success"]})
        fam("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions.",
            lambda m: 0)
        return "\n".join(out) + "\n"

    def sim_stats(self):
        e = self.engine
        return {"requests": self.stats["requests"],
                "status": {str(k): v for k, v in self.stats["status"].items()},
                "aborted": self.stats["aborted"],
                "running": len(e.running), "waiting": len(e.waiting),
                "kv_cache_usage_perc": e.kv_usage(),
                "cache_blocks_used": len(e.cache.lru), "cache_blocks": e.cache.cap,
                "prefill_tokens": self.stats["prefill_tokens"],
                "steps": e.steps, "busy_s": round(e.busy_s, 3),
                "connections": self.stats["connections"], "conn_open": self.stats["conn_open"],
                "models": {m: dict(c) for m, c in self.stats["model"].items()},
                "faults": self.faults.describe(), "faults_fired": dict(self.faults.fired)}


def fmt(x):
    return repr(float(x)) if isinstance(x, float) else str(x)


def sse(data):
    """One SSE event as one HTTP chunk."""
    b = ("data: %s\n\n" % data).encode()
    return b"%x\r\n%s\r\n" % (len(b), b)


def usage(seq):
    return {"prompt_tokens": seq.prompt_tokens, "completion_tokens": len(seq.out),
            "total_tokens": seq.prompt_tokens + len(seq.out),
            "prompt_tokens_details": {"cached_tokens": seq.cached}}


def err_body(msg, typ, param=None, code=400):
    return {"error": {"message": msg, "type": typ, "param": param, "code": code}}


def prompt_text(obj, chat):
    """The concatenated messages[].content (chat) or prompt (completions)."""
    if chat:
        msgs = obj.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("messages must be a non-empty list")
        parts = []
        for m in msgs:
            if not isinstance(m, dict):
                raise ValueError("a message must be an object")
            c = m.get("content")
            if isinstance(c, str):
                parts.append(c)
            elif isinstance(c, list):
                for p in c:
                    if isinstance(p, dict) and isinstance(p.get("text"), str):
                        parts.append(p["text"])
            elif c is not None:
                raise ValueError("content must be a string or a list of parts")
        return "".join(parts)
    p = obj.get("prompt")
    if isinstance(p, str):
        return p
    if isinstance(p, list) and p and all(isinstance(x, str) for x in p):
        return "".join(p)
    raise ValueError("prompt must be a string")


async def drain_until_eof(reader):
    """A stalled answer: hold the connection, read and drop anything, until the peer closes."""
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="simulated vLLM server (one GPU)")
    p.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT")
    p.add_argument("--model", action="append", help="served model name (repeatable)")
    p.add_argument("--max-num-seqs", type=int, default=8, help="running sequences at most")
    p.add_argument("--max-batched-tokens", type=int, default=512,
                   help="tokens per engine step (decode + chunked prefill)")
    p.add_argument("--block-tokens", type=int, default=16, help="prefix-cache block size")
    p.add_argument("--cache-blocks", type=int, default=1024, help="prefix-cache LRU capacity")
    p.add_argument("--kv-blocks", type=int, default=2048,
                   help="KV blocks the GPU holds (for kv_cache_usage_perc)")
    p.add_argument("--prefill-us-per-token", type=float, default=100.0)
    p.add_argument("--decode-base-ms", type=float, default=8.0)
    p.add_argument("--decode-per-seq-ms", type=float, default=0.5)
    p.add_argument("--default-max-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault", action="append", help="fault applied to every request")
    a = p.parse_args(argv)
    if a.max_num_seqs < 1 or a.block_tokens < 1 or a.max_batched_tokens < 1:
        p.error("--max-num-seqs, --block-tokens and --max-batched-tokens must be >= 1")
    for f in a.fault or []:
        try:
            Faults.parse(f)
        except ValueError as e:
            p.error(str(e))
    return a


async def amain(a):
    srv = Server(a)
    host, _, port = a.listen.rpartition(":")
    server = await asyncio.start_server(srv.conn, host or "127.0.0.1", int(port),
                                        limit=MAX_HEAD, backlog=1024, reuse_address=True)
    eng = asyncio.create_task(srv.engine.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print("vllmsim: listening on %s, models %s" % (a.listen, ",".join(srv.models)), flush=True)
    await stop.wait()
    server.close()
    eng.cancel()


def main():
    a = parse_args()
    random.seed(a.seed)
    try:
        asyncio.run(amain(a))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

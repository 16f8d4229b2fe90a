"""Traffic matrix: response sizes around every buffer boundary x framing x write pattern x
client mode, request bodies of boundary sizes, through a real routerd to a real fakebe.

Every answer is decoded by the strict HTTP/1.x decoder below (status line, CRLF, one
Content-Length, chunk syntax, no chunked to HTTP/1.0, keep-alive kept or the connection
really closed), every body is compared byte for byte with what fakebe sends when asked
directly (and with the /bytes pattern), and the worker must survive it all.

Each test_ function is one client mode or one family of messages; run one alone with
    run.py -k test_matrix.py::test_matrix_http11_keepalive
or  python3 tests/integration/test_matrix.py test_matrix_http11_keepalive
A failure lists every case that failed as [client method target] what differed.
MATRIX_BUDGET (seconds, default 25) bounds each function, MATRIX_MAX_RESTARTS (default 10)
the fresh routerds started after worker deaths; cases not run past either are a failure.
"""
import concurrent.futures
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PATTERN_PERIOD, backends_yaml, worker_pids  # noqa: E402

WORKER_BUFSZ = 32 * 1024          # worker/worker.h
RETRIES_BUFFER = 64 * 1024        # retries.buffer default
HOLD = 1 << 20                    # limits.hold default
BOUNDARIES = (4096, 16384, WORKER_BUFSZ, RETRIES_BUFFER, 131072, 1 << 20)
SIZES = sorted({0, 1, 32647, 32700, 40000} | {b + d for b in BOUNDARIES for d in (-1, 0, 1)})
FRAMINGS = ("cl", "chunked", "close")
WRITES = (("one", 0), ("small", 977))   # fakebe write=: 0 = head and body in one write
NOBODY = [(code, cl) for code in (204, 304) for cl in (None, 0, 7, 40000)]
REQ_SIZES = (0, 1, 65535, 65536, 65537, 200000, HOLD, HOLD + 1)
CHUNKINGS = {"one": None, "mixed": (1, 7, 4096, 32767, 65536, 100003), "4093": (4093,)}
BUDGET = float(os.environ.get("MATRIX_BUDGET", "25"))
MAX_RESTARTS = int(os.environ.get("MATRIX_MAX_RESTARTS", "10"))
THREADS = 1                       # groups one after another, so a crash names its case
CLOSE_WAIT = 2.0                  # routerd must close within this after a final response

BIG = PATTERN_PERIOD * ((HOLD + 4096) // 256 + 2)


def expected(n):
    """The first n bytes of fakebe's /bytes pattern: byte i = (i*31+7) & 0xff."""
    return BIG[:n]


def req_body(n):
    """Request body bytes of size n (the pattern from offset 13, so unlike a /bytes answer)."""
    return BIG[13:13 + n]


def deadline_for(n):
    return time.monotonic() + 3.0 + n / 2e6


# --- a strict HTTP/1.x response decoder -------------------------------------------------

TCHAR = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2}) ([\t\x20-\x7e\x80-\xff]*)")
FIELD = re.compile(rb"(" + TCHAR + rb"+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
CHUNK_LINE = re.compile(rb"([0-9a-fA-F]{1,15})((?:[ \t]*;[ \t]*" + TCHAR + rb"+(?:[ \t]*=[ \t]*(?:"
                        + TCHAR + rb"+|\"[^\"\\]*\"))?)*)")


class Bad(Exception):
    """The answer is malformed, late, short or otherwise not what the case wants."""


class Timeout(Bad):
    pass


class Wire:
    """A client connection to routerd with a read buffer; every read has a deadline."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = bytearray()
        self.pos = 0
        self.eof = False

    def send(self, data):
        self.s.settimeout(10)
        try:
            self.s.sendall(data)
        except OSError as e:
            raise Bad("sending the request failed: %r" % e)

    def _fill(self, deadline, what):
        """Read more; False at EOF.  Raises Timeout past deadline, Bad on a reset."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("timed out waiting for %s" % what)
        self.s.settimeout(left)
        try:
            d = self.s.recv(1 << 18)
        except socket.timeout:
            raise Timeout("timed out waiting for %s (%d bytes pending)" % (what, self.pending()))
        except OSError as e:
            raise Bad("%r while reading %s" % (e, what))
        if not d:
            self.eof = True
            return False
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += d
        return True

    def pending(self):
        return len(self.buf) - self.pos

    def line(self, deadline, what):
        """One CRLF-terminated line without its CRLF; a bare LF or CR is an error."""
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                break
            if self.pending() > 65536:
                raise Bad("%s: no line end in 64 KiB" % what)
            if not self._fill(deadline, what):
                raise Bad("connection closed before %s (%d bytes of it: %r)"
                          % (what, self.pending(), bytes(self.buf[self.pos:self.pos + 80])))
        if i == self.pos or self.buf[i - 1] != 13:
            raise Bad("%s: bare LF: %r" % (what, bytes(self.buf[self.pos:i + 1][-80:])))
        ln = bytes(self.buf[self.pos:i - 1])
        self.pos = i + 1
        if b"\r" in ln:
            raise Bad("%s: bare CR: %r" % (what, ln[:80]))
        return ln

    def exact(self, n, deadline, what):
        while self.pending() < n:
            if not self._fill(deadline, what):
                raise Bad("connection closed in %s after %d of %d bytes" % (what, self.pending(), n))
        d = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return d

    def to_eof(self, deadline, what):
        while self._fill(deadline, what):
            pass
        d = bytes(self.buf[self.pos:])
        self.pos = len(self.buf)
        return d

    def expect_eof(self, what):
        """After an answer that ends the connection: no more bytes, then EOF within CLOSE_WAIT."""
        if self.pending():
            raise Bad("%d bytes after %s: %r" % (self.pending(), what,
                                                  bytes(self.buf[self.pos:self.pos + 80])))
        deadline = time.monotonic() + CLOSE_WAIT
        try:
            if self._fill(deadline, "EOF"):
                raise Bad("%d bytes after %s: %r" % (self.pending(), what,
                                                      bytes(self.buf[self.pos:self.pos + 80])))
        except Timeout:
            raise Bad("routerd did not close the connection within %.0f s after %s"
                      % (CLOSE_WAIT, what))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Resp:
    def __init__(self, version, status, headers, interim):
        self.version, self.status, self.headers, self.interim = version, status, headers, interim
        self.framing = None
        self.body = b""

    def get(self, name):
        return [v for k, v in self.headers if k == name]

    def tokens(self):
        return {t.strip().lower() for v in self.get("connection") for t in v.split(",") if t.strip()}


def read_head(w, deadline):
    sl = w.line(deadline, "the status line")
    m = STATUS_LINE.fullmatch(sl)
    if not m:
        raise Bad("bad status line %r" % sl[:120])
    hdrs = []
    while True:
        ln = w.line(deadline, "a header line")
        if ln == b"":
            break
        if ln[:1] in (b" ", b"\t"):
            raise Bad("obs-fold header line %r" % ln[:120])
        fm = FIELD.fullmatch(ln)
        if not fm:
            raise Bad("bad header line %r" % ln[:120])
        hdrs.append((fm.group(1).decode().lower(), fm.group(2).decode("latin-1")))
        if len(hdrs) > 256:
            raise Bad("more than 256 header fields")
    return int(m.group(1)), int(m.group(2)), hdrs


def read_chunked(w, deadline):
    parts = []
    total = 0
    while True:
        ln = w.line(deadline, "a chunk size line")
        m = CHUNK_LINE.fullmatch(ln)
        if not m:
            raise Bad("bad chunk size line %r after %d body bytes" % (ln[:80], total))
        n = int(m.group(1), 16)
        if n == 0:
            break
        total += n
        if total > 64 << 20:
            raise Bad("chunked body over 64 MiB")
        parts.append(w.exact(n, deadline, "chunk data"))
        crlf = w.exact(2, deadline, "the CRLF after chunk data")
        if crlf != b"\r\n":
            raise Bad("chunk of %d bytes not followed by CRLF but %r (body offset %d)"
                      % (n, crlf, total))
    while True:
        ln = w.line(deadline, "a trailer line")
        if ln == b"":
            break
        if not FIELD.fullmatch(ln):
            raise Bad("bad trailer line %r" % ln[:80])
    return b"".join(parts)


def read_response(w, method, v10, deadline, expect100=False):
    """Decode one final response (and the 1xx before it).  Raises Bad on anything malformed."""
    interim = []
    while True:
        ver, status, hdrs = read_head(w, deadline)
        if status >= 200:
            break
        if status != 100 or not expect100 or v10:
            raise Bad("unexpected interim %d%s" % (status, " to an HTTP/1.0 client" if v10 else ""))
        if interim:
            raise Bad("a second 100 Continue")
        interim.append(status)
    r = Resp(ver, status, hdrs, interim)
    cls = r.get("content-length")
    tes = r.get("transfer-encoding")
    if len(cls) > 1:
        raise Bad("%d Content-Length fields: %r" % (len(cls), cls))
    if cls and not re.fullmatch(r"[0-9]{1,15}", cls[0]):
        raise Bad("bad Content-Length %r" % cls[0])
    if cls and tes:
        raise Bad("both Content-Length %r and Transfer-Encoding %r" % (cls, tes))
    if tes and (len(tes) > 1 or tes[0].strip().lower() != "chunked"):
        raise Bad("Transfer-Encoding %r" % tes)
    if tes and v10:
        raise Bad("chunked answer to an HTTP/1.0 request")
    if status == 204 and tes:
        raise Bad("204 with Transfer-Encoding")
    if method == "HEAD" or status in (204, 304):
        r.framing = "none"                  # RFC 9110 6.3: no body, whatever the fields say
    elif tes:
        r.framing = "chunked"
        r.body = read_chunked(w, deadline)
    elif cls:
        r.framing = "cl"
        r.body = w.exact(int(cls[0]), deadline, "a Content-Length body")
    else:
        r.framing = "close"
        r.body = w.to_eof(deadline, "a close-delimited body")
    tok = r.tokens()
    if v10 or ver == 0:
        r.closing = "keep-alive" not in tok or "close" in tok or r.framing == "close"
    else:
        r.closing = "close" in tok or r.framing == "close"
    return r


def body_diff(got, want):
    """None if equal, else where and how the bodies differ."""
    if got == want:
        return None
    n = min(len(got), len(want))
    lo, step = 0, 65536
    while lo < n and got[lo:lo + step] == want[lo:lo + step]:
        lo += step
    while lo < n and got[lo] == want[lo]:
        lo += 1
    return ("body differs: got %d bytes, want %d; first difference at offset %d (got %r, want %r)"
            % (len(got), len(want), lo, got[lo:lo + 8], want[lo:lo + 8]))


# --- cases and clients ------------------------------------------------------------------

CLIENTS = {
    # name: (HTTP version, extra request header, keep-alive wanted)
    "http11": ("1.1", "", True),
    "http11-close": ("1.1", "Connection: close\r\n", False),
    "http10": ("1.0", "", False),
    "http10-keepalive": ("1.0", "Connection: keep-alive\r\n", True),
}


class Case:
    """One request and what must come back.  want_body None: not checked (reference used)."""

    def __init__(self, method, target, status=200, want_body=None, ref=True, body=b"",
                 chunking=None, expect100=False, check=None, framing=None, note=""):
        self.method, self.target, self.status = method, target, status
        self.note = note
        self.want_body, self.ref, self.body = want_body, ref, body
        self.chunking, self.expect100, self.check, self.framing = chunking, expect100, check, framing

    def label(self, client):
        s = "%s %s %s" % (client, self.method, self.target)
        if self.body or self.chunking is not None:
            s += " body=%d %s" % (len(self.body), "chunked:" + self.chunking if self.chunking
                                  else "content-length")
        if self.expect100:
            s += " expect-100"
        if self.note:
            s += " (" + self.note + ")"
        return "[" + s + "]"

    def body_bytes(self):
        if self.chunking is None:
            return self.body
        sizes = CHUNKINGS[self.chunking] or (max(len(self.body), 1),)
        out, off, k = [], 0, 0
        while off < len(self.body):
            n = min(sizes[k % len(sizes)], len(self.body) - off)
            out.append(b"%x\r\n" % n + self.body[off:off + n] + b"\r\n")
            off += n
            k += 1
        out.append(b"0\r\n\r\n")
        return b"".join(out)

    def head_bytes(self, client, last_close=False):
        ver, hdr, _ = CLIENTS[client]
        if last_close and "close" not in hdr:
            hdr = "Connection: close\r\n"
        if self.chunking is not None:
            hdr += "Transfer-Encoding: chunked\r\n"
        elif self.body or self.method in ("POST", "PUT"):
            hdr += "Content-Length: %d\r\n" % len(self.body)
        if self.expect100:
            hdr += "Expect: 100-continue\r\n"
        return ("%s %s HTTP/%s\r\nHost: matrix\r\n%s\r\n" % (self.method, self.target, ver, hdr)).encode()


def bytes_case(method, n, framing, wr):
    return Case(method, "/bytes?n=%d&framing=%s&write=%d" % (n, framing, wr),
                want_body=expected(n) if method == "GET" else b"", framing=framing)


def response_cases(method="GET", sizes=SIZES):
    """(group name, [cases]) per framing and write pattern."""
    return [("%s-%s" % (f, wname), [bytes_case(method, n, f, wr) for n in sizes])
            for f in FRAMINGS for wname, wr in WRITES]


class Matrix:
    """One routerd (1 worker) in front of one fakebe; runs groups of cases, collects failures."""

    def __init__(self, env, workers=1):
        self.b = env.backend("b1")
        self.r = env.router(backends_yaml([self.b], workers=workers))
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.failures = []          # (label, message)
        self.suspects = []          # (client, case, label): failed while a worker died
        self.inflight = {}          # thread id -> (client, case)
        self.ran = self.not_run = 0
        self.log_off = 0
        self.deaths = []
        self.refs = {}
        self.recent = []            # (time, label) of the last cases finished
        self.ndead = self.respawns = 0
        self.env, self.workers, self.restarts = env, workers, 0
        self.wpids = self._wait_workers()

    # -- bookkeeping
    def fail(self, client, case, msg):
        with self.lock:
            self.failures.append((case.label(client), msg))

    def over_budget(self):
        return time.monotonic() - self.t0 > BUDGET or self.restarts > MAX_RESTARTS

    def _log_lines(self):
        """Complete lines routerd logged since the last call (caller holds the lock); counts
        deaths ('killed by signal', 'exited with') and respawns."""
        try:
            if os.path.getsize(self.r.log) <= self.log_off:
                return []
            with open(self.r.log, "rb") as f:
                f.seek(self.log_off)
                data = f.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        self.log_off += cut
        lines = data[:cut].splitlines()
        self.respawns += sum(1 for ln in lines if b"respawned" in ln)
        self.ndead += sum(1 for ln in lines if re.search(rb"killed by signal|exited with", ln))
        # the death, the sanitizer's verdict and its first stack frames
        return [ln.decode(errors="replace").strip() for ln in lines
                if re.search(rb"killed by signal|exited with|ERROR: AddressSanitizer|"
                             rb"runtime error|LeakSanitizer|^\s+#[0-3] ", ln)]

    def restart(self):
        """A fresh routerd after a worker death, so that the next cases neither wait out the
        master's respawn back-off nor run on a corrupted heap.  The old log is kept."""
        with self.lock:
            self.r.stop()
            self.restarts += 1
            os.rename(self.r.log, "%s.%d" % (self.r.log, self.restarts))
            self.r = self.env.router(backends_yaml([self.b], workers=self.workers))
            self.log_off = 0
            self.wpids = self._wait_workers()

    def _wait_workers(self):
        end = time.monotonic() + 5
        while not worker_pids(self.r) and time.monotonic() < end:
            time.sleep(0.05)
        pids = sorted(worker_pids(self.r))
        assert pids, "no worker process"
        return pids

    def check_deaths(self):
        """New 'killed by signal' / 'exited with' / sanitizer lines in routerd's log: recorded
        with the cases in flight (and just finished: the master logs a death a moment after
        it), then start routerd afresh.  True if there were any."""
        with self.lock:
            bad = self._log_lines()
            if not bad:
                return False
            now = time.monotonic()
            inflight = [c.label(cl) for cl, c in self.inflight.values()]
            inflight += ["%s (finished %.0f ms before)" % (lb, (now - t) * 1000)
                         for t, lb in self.recent[-3:] if now - t < 0.25]
            self.deaths.append((bad[:8], inflight))
        self.restart()
        return True

    def reference(self, case):
        """fakebe's own answer to the case, asked directly (cached by target)."""
        key = (case.method, case.target)
        with self.lock:
            if key in self.refs:
                return self.refs[key]
        w = Wire(self.b.port)
        try:
            w.send(case.head_bytes("http11-close"))
            ref = read_response(w, case.method, False, deadline_for(len(case.want_body or b"")))
        finally:
            w.close()
        if case.want_body is not None:
            d = body_diff(ref.body, case.want_body)
            assert d is None, "fakebe itself, asked directly for %s: %s" % (case.target, d)
        with self.lock:
            self.refs[key] = ref
        return ref

    # -- checking one answer
    def judge(self, client, case, r, pipelined_last=False):
        """Problems with answer r to case (strings); also whether the connection goes on."""
        v10 = CLIENTS[client][0] == "1.0"
        keep_wanted = CLIENTS[client][2] and not pipelined_last
        probs = []
        if r.status != case.status:
            probs.append("status %d, want %d (body %r)" % (r.status, case.status, r.body[:200]))
            return probs
        if r.get("x-backend") != ["b1"]:
            probs.append("X-Backend %r, want ['b1']" % r.get("x-backend"))
        if case.expect100 and len(case.body) and not v10 and r.interim != [100]:
            probs.append("no 100 Continue before the final answer")
        if case.want_body is not None:
            d = body_diff(r.body, case.want_body)
            if d:
                probs.append("%s (framed %s to the client)" % (d, r.framing))
        if case.ref:
            ref = self.reference(case)
            d = body_diff(r.body, ref.body)
            if d and case.want_body is None:
                probs.append("differs from fakebe's direct answer: " + d)
            if case.method == "HEAD" and ref.get("content-length") != r.get("content-length"):
                probs.append("HEAD Content-Length %r, fakebe sent %r"
                             % (r.get("content-length"), ref.get("content-length")))
        if case.check:
            p = case.check(r)
            if p:
                probs.append(p)
        tok = r.tokens()
        if keep_wanted and r.closing:
            nobody_or_cl = r.framing in ("none", "cl") or case.framing == "cl"
            if not v10 or nobody_or_cl:
                probs.append("routerd ends the keep-alive connection after this answer "
                             "(framed %s, Connection %r)" % (r.framing, sorted(tok)))
        if not keep_wanted and not r.closing:
            probs.append("answer does not end the connection (framed %s, Connection %r)"
                         % (r.framing, sorted(tok)))
        if (client == "http11-close" or pipelined_last) and "close" not in tok:
            probs.append("no Connection: close in the answer to a Connection: close request")
        if v10 and not CLIENTS[client][2] and "keep-alive" in tok:
            probs.append("Connection: keep-alive to an HTTP/1.0 client that did not ask")
        return probs

    # -- one request on a connection
    def exchange(self, w, client, case, last_close=False):
        """Send case on w, read and judge the answer.  Returns True if w may be reused."""
        v10 = CLIENTS[client][0] == "1.0"
        head = case.head_bytes(client, last_close)
        body = case.body_bytes()
        dl = deadline_for(len(case.want_body or b"") + len(case.body))
        if case.expect100:
            w.send(head)
            got100 = False
            if not v10:
                # wait for the 100 (up to 2 s), then send the body anyway, as curl does
                end = min(dl, time.monotonic() + 2.0)
                try:
                    while b"\r\n\r\n" not in w.buf[w.pos:]:
                        if not w._fill(end, "100 Continue"):
                            break
                    got100 = bytes(w.buf[w.pos:w.pos + 12]) == b"HTTP/1.1 100"
                except Timeout:
                    pass
            if not got100 and not v10 and len(case.body) and w.pending() == 0:
                self.fail(client, case, "no 100 Continue within 2 s of the head")
            w.send(body)
        else:
            w.send(head + body)
        r = read_response(w, case.method, v10, dl, expect100=case.expect100)
        probs = self.judge(client, case, r, last_close)
        for p in probs:
            self.fail(client, case, p)
        if r.closing:
            w.expect_eof("the answer")
            return False
        return not probs

    def probe(self, w, client):
        """A keep-alive connection after its last case: still serves a request."""
        c = Case("GET", "/bytes?n=5&framing=cl&write=0", want_body=expected(5), ref=False)
        try:
            self.exchange(w, client, c)
        except Bad as e:
            self.fail(client, c, "keep-alive connection unusable after the group's last case: %s" % e)

    def _run_case(self, w, client, case, last_close=False):
        with self.lock:
            self.inflight[threading.get_ident()] = (client, case)
        nfail = len(self.failures)
        try:
            if w is None:
                w = Wire(self.r.port)
            keep = self.exchange(w, client, case, last_close)
        except (Bad, OSError) as e:
            self.fail(client, case, str(e) if isinstance(e, Bad) else "socket error %r" % e)
            keep = False
        finally:
            with self.lock:
                del self.inflight[threading.get_ident()]
                self.ran += 1
                self.recent = self.recent[-15:] + [(time.monotonic(), case.label(client))]
        if self.check_deaths() or (len(self.failures) > nfail and self.deaths
                                   and case.label(client) in self.deaths[-1][1]):
            with self.lock:
                self.suspects.append((client, case))
        if not keep and w is not None:
            w.close()
            w = None
        return w

    def run_group(self, client, cases, pipelined=False):
        if pipelined:
            return self.run_pipelined(client, cases)
        w = None
        for case in cases:
            if self.over_budget():
                with self.lock:
                    self.not_run += 1
                continue
            w = self._run_case(w, client, case)
        if w is not None:
            self.probe(w, client)
            w.close()

    def run_pipelined(self, client, cases):
        """All requests of the group in one write, the last with Connection: close; answers in order."""
        if self.over_budget():
            with self.lock:
                self.not_run += len(cases)
            return
        v10 = CLIENTS[client][0] == "1.0"
        data = b"".join(c.head_bytes(client, i == len(cases) - 1) + c.body_bytes()
                        for i, c in enumerate(cases))
        w = Wire(self.r.port)
        with self.lock:
            self.inflight[threading.get_ident()] = (client + "-pipelined", cases[0])
        try:
            w.send(data)
            for i, c in enumerate(cases):
                last = i == len(cases) - 1
                with self.lock:
                    self.inflight[threading.get_ident()] = (client + "-pipelined", c)
                try:
                    r = read_response(w, c.method, v10, deadline_for(len(c.want_body or b"")))
                    for p in self.judge(client, c, r, pipelined_last=last):
                        self.fail(client + "-pipelined", c, p)
                    if r.closing:
                        if not last:
                            self.fail(client + "-pipelined", c, "connection ended with %d "
                                      "pipelined requests unanswered" % (len(cases) - 1 - i))
                            break
                        w.expect_eof("the last pipelined answer")
                except Bad as e:
                    self.fail(client + "-pipelined", c, "%s (%d later pipelined answers not read)%s"
                              % (e, len(cases) - 1 - i,
                                 "; the answer before was to " + cases[i - 1].method + " "
                                 + cases[i - 1].target if i else ""))
                    break
                finally:
                    with self.lock:
                        self.ran += 1
                        self.recent = self.recent[-15:] + [(time.monotonic(),
                                                            c.label(client + "-pipelined"))]
                if self.check_deaths():
                    with self.lock:
                        self.suspects.append((client, c))
        finally:
            with self.lock:
                self.inflight.pop(threading.get_ident(), None)
            w.close()

    def run(self, groups, threads=THREADS):
        """groups: [(client, [cases], pipelined)], run `threads` at a time."""
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            futs = [ex.submit(self.run_group, *g) for g in groups]
            for f in futs:
                f.result()

    def finish(self):
        """Re-run alone each case that failed while the worker died (to say which one killed
        it), check the worker survived, and fail with every problem seen."""
        time.sleep(0.2)
        self.check_deaths()
        notes = []
        if self.deaths:
            for bad, inflight in self.deaths:
                self.failures.append(("[worker]", "worker death: %s; cases in flight: %s"
                                      % (" | ".join(bad), ", ".join(inflight) or "none")))
            seen = set()
            for client, case in self.suspects:
                client = client.replace("-pipelined", "")
                if (client, case.target, case.chunking) in seen or len(seen) >= 12:
                    continue
                seen.add((client, case.target, case.chunking))
                before = len(self.deaths)
                nf = len(self.failures)
                self._run_case(None, client, case)
                time.sleep(0.3)
                self.check_deaths()
                died = len(self.deaths) > before
                notes.append("%s alone: %s%s" % (case.label(client),
                             "failed" if len(self.failures) > nf else "passed",
                             ", and the worker died again" if died else ""))
        now = sorted(worker_pids(self.r))
        if now != self.wpids:
            self.failures.append(("[worker]", "worker pids %s at the start, %s at the end"
                                  % (self.wpids, now)))
        elapsed = time.monotonic() - self.t0
        print("  matrix: %d cases in %.1f s, %d failures, %d not run (budget %.0f s), "
              "routerd restarted %d times after a worker death"
              % (self.ran, elapsed, len(self.failures), self.not_run, BUDGET, self.restarts),
              flush=True)
        if self.not_run:
            self.failures.append(("[budget]", "%d cases not run: past MATRIX_BUDGET=%.0f s or "
                                  "MATRIX_MAX_RESTARTS=%d worker deaths"
                                  % (self.not_run, BUDGET, MAX_RESTARTS)))
        if self.failures:
            lines = ["%s %s" % f for f in self.failures[:300]]
            if len(self.failures) > 300:
                lines.append("... and %d more" % (len(self.failures) - 300))
            raise AssertionError("%d problems:\n  %s%s" % (
                len(self.failures), "\n  ".join(lines),
                "\nre-run alone:\n  " + "\n  ".join(notes) if notes else ""))


# --- the tests ---------------------------------------------------------------------------

def _responses(env, client):
    m = Matrix(env)
    groups = [(client, cases, False) for _, cases in response_cases()]
    groups += [(client, cases, False) for _, cases in response_cases("HEAD", (0, 1, 40000, 1 << 20))]
    m.run(groups)
    m.finish()


def test_matrix_http11_keepalive(env):
    """HTTP/1.1 keep-alive: every size x framing x write pattern, one connection per group."""
    _responses(env, "http11")


def test_matrix_http11_close(env):
    """HTTP/1.1 with Connection: close: a connection per case, routerd closes after it."""
    _responses(env, "http11-close")


def test_matrix_http10(env):
    """HTTP/1.0 without keep-alive: never chunked, closed after each answer."""
    _responses(env, "http10")


def test_matrix_http10_keepalive(env):
    """HTTP/1.0 with Connection: keep-alive: kept when the answer has a length, else closed."""
    _responses(env, "http10-keepalive")


def test_matrix_pipelined(env):
    """HTTP/1.1 pipelining: a group's requests in one write (GETs, HEADs, 204/304 mixed in),
    answers in order, the last request with Connection: close."""
    m = Matrix(env)
    groups = []
    for name, cases in response_cases():
        mixed = []
        for i, c in enumerate(cases):
            mixed.append(c)
            if i % 4 == 1:
                mixed.append(bytes_case("HEAD", 40000 + i, c.framing, 0))
            if i % 4 == 3:
                code, cl = NOBODY[(i // 4) % len(NOBODY)]
                mixed.append(_nobody_case(code, cl))
        groups.append(("http11", mixed, True))
    m.run(groups)
    m.finish()


def _nobody_case(code, cl):
    t = "/status?code=%d%s" % (code, "" if cl is None else "&cl=%d" % cl)
    return Case("GET", t, status=code, want_body=b"", ref=False)


def test_matrix_204_304(env):
    """204 and 304, with and without a Content-Length: no body follows, the connection
    goes on (keep-alive) or is closed (close, HTTP/1.0), in every client mode."""
    m = Matrix(env)
    groups = []
    for client in CLIENTS:
        for code, cl in NOBODY:
            # each its own connection, then a GET on it when kept alive
            c = _nobody_case(code, cl)
            follow = bytes_case("GET", 1000, "cl", 0)
            follow.note = "next request after %s" % c.target
            groups.append((client, [c, follow] if CLIENTS[client][2] else [c], False))
    m.run(groups, threads=8)
    m.finish()


def _upload_check(body):
    want = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    def check(r):
        try:
            got = json.loads(r.body)
        except ValueError:
            return "upload answer is not JSON: %r" % r.body[:200]
        if {k: got.get(k) for k in want} != want:
            return "upload answer %r, want %r" % (got, want)
        return None
    return check


def test_matrix_request_bodies(env):
    """Request bodies at boundary sizes, Content-Length and chunked (several chunk patterns),
    to /upload (sha256 answered) and /echo (the body back), on keep-alive connections, plus
    HTTP/1.0 Content-Length uploads."""
    m = Matrix(env)
    groups = []
    for chunking in [None] + list(CHUNKINGS):
        up, echo = [], []
        for n in REQ_SIZES:
            body = req_body(n)
            up.append(Case("POST", "/upload", body=body, chunking=chunking, ref=False,
                           check=_upload_check(body)))
            echo.append(Case("POST", "/echo", body=body, chunking=chunking, ref=False,
                             want_body=body))
        groups.append(("http11", up, False))
        groups.append(("http11", echo, False))
    groups.append(("http10", [Case("POST", "/upload", body=req_body(n), ref=False,
                                   check=_upload_check(req_body(n)))
                              for n in (0, 65537, HOLD + 1)], False))
    m.run(groups)
    m.finish()


def test_matrix_expect_continue(env):
    """Expect: 100-continue with a body: exactly one 100 (never to HTTP/1.0), then the answer."""
    m = Matrix(env)
    groups = []
    for chunking in (None, "mixed"):
        cases = []
        for n in (1, 65536, 65537, HOLD + 1):
            body = req_body(n)
            cases.append(Case("POST", "/upload", body=body, chunking=chunking, ref=False,
                              expect100=True, check=_upload_check(body)))
            cases.append(Case("PUT", "/echo", body=body, chunking=chunking, ref=False,
                              expect100=True, want_body=body))
        groups.append(("http11", cases, False))
    body = req_body(65537)
    groups.append(("http10", [Case("POST", "/upload", body=body, ref=False, expect100=True,
                                   check=_upload_check(body))], False))
    m.run(groups)
    m.finish()


if __name__ == "__main__":
    # python3 test_matrix.py [test_name ...]: run some (default all) of this file's tests
    import harness
    names = sys.argv[1:] or sorted(n for n in dir() if n.startswith("test_"))
    rc = 0
    for name in names:
        env = harness.Env()
        t0 = time.time()
        try:
            globals()[name](env)
            print("ok   %s %.1fs" % (name, time.time() - t0))
        except AssertionError as e:
            rc = 1
            print("FAIL %s %.1fs\n%s" % (name, time.time() - t0, e))
        finally:
            env.close()
    sys.exit(rc)

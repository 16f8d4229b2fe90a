"""Integration harness: start real routerd and fakebe processes on loopback and talk to them.

Every test gets fresh processes on free ports; nothing is mocked.  Paths come
from the environment set by `make integration` (ROUTERD, FAKEBE, ROUTERCTL).
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

ROUTERD = os.environ.get("ROUTERD", os.path.abspath("routerd"))
FAKEBE = os.environ.get("FAKEBE", os.path.abspath("build/fakebe"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listens on port %d" % port)


class Proc:
    """A child process we own; stopped (and reaped) by stop()."""

    def __init__(self, args, log):
        self.log = log
        self.logf = open(log, "wb")
        self.p = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.logf.close()

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")


class Backend(Proc):
    """A fakebe on a free loopback port."""

    def __init__(self, workdir, name, models="demo-model", extra=()):
        self.name = name
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        super().__init__([FAKEBE, "-l", self.addr, "-n", name, "-m", models] + list(extra),
                         os.path.join(workdir, "fakebe-%s.log" % name))
        wait_port(self.port)

    def stats(self):
        return get_json(self.port, "/__stats")

    def fault(self, mode):
        return request(self.port, "POST", "/__fault?mode=" + mode)


class Router(Proc):
    """routerd -d on a config given as YAML text; LISTEN in the text is replaced by a free address."""

    def __init__(self, workdir, yaml_text, args=(), wait=True):
        self.port = free_port()
        self.workdir = workdir
        self.conf = os.path.join(workdir, "routerd.yaml")
        self.pidfile = os.path.join(workdir, "routerd.pid")
        text = yaml_text.replace("LISTEN", "127.0.0.1:%d" % self.port)
        if "pidfile:" not in text:
            text += "\npidfile: %s\n" % self.pidfile
        self.ctlsock = os.path.join(workdir, "ctl.sock")
        if "control:" not in text:
            # each test its own control socket: the default one is shared machine-wide
            text += "\ncontrol:\n  socket: %s\n" % self.ctlsock
        with open(self.conf, "w") as f:
            f.write(text)
        super().__init__([ROUTERD, "-d", "-f", self.conf] + list(args),
                         os.path.join(workdir, "routerd.log"))
        if wait:
            wait_port(self.port)

    def workers(self):
        """pids of the worker processes (children of the master)."""
        out = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]


def backends_yaml(backends, strategy="round_robin", workers=1, extra=""):
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             "strategy: %s" % strategy, "health:", "  type: none", "backends:"]
    for b in backends:
        if isinstance(b, tuple):
            b, opts = b
        else:
            opts = ""
        lines.append("  - { name: %s, address: %s%s }" % (b.name, b.addr, opts))
    return "\n".join(lines) + "\n" + extra


def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a new connection; returns (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def get_json(port, path):
    st, _, body = request(port, "GET", path)
    return json.loads(body)


def raw(port, data, timeout=5.0, shut=False):
    """Send raw bytes, return everything the peer sends until it closes or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        out += b"<RESET>"
    s.close()
    return out


def status_of(resp):
    """Status code of the first response in raw bytes, or None."""
    if not resp.startswith(b"HTTP/1."):
        return None
    return int(resp.split(b" ", 2)[1])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Skip(Exception):
    """A test that cannot run here (no root, a tool missing, ...): run.py reports it as
    SKIP with the reason, never as ok.  package: the Debian package whose absence is the
    reason, if any; under CI=true a skip for a package packaging/build-deps.sh installs
    is a failure."""

    def __init__(self, reason, package=None):
        super().__init__(reason)
        self.reason = reason
        self.package = package


def skip(reason, package=None):
    raise Skip(reason, package)


class Env:
    """Per-test scratch: a temp dir and every process started in it, all stopped at the end."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="routerd-it-")
        self.procs = []

    def skip(self, reason, package=None):
        """Stop this test as skipped (see Skip)."""
        raise Skip(reason, package)

    def backend(self, name, **kw):
        b = Backend(self.dir, name, **kw)
        self.procs.append(b)
        return b

    def router(self, yaml_text, **kw):
        r = Router(self.dir, yaml_text, **kw)
        self.procs.append(r)
        return r

    def close(self):
        for p in reversed(self.procs):
            p.stop()

    def logs(self):
        out = []
        for p in self.procs:
            out.append("--- %s\n%s" % (p.log, p.output()[-3000:]))
        return "\n".join(out)


# --- additions for the balance/keepalive/bodies/stream/master/http/errors suites ---

import hashlib  # noqa: E402
import threading  # noqa: E402


def pids_of(router):
    """The master's pid followed by its children's (workers, later prober/syncer)."""
    return [router.p.pid] + router.workers()


def pools_yaml(pools, routes=(), workers=1, strategy="round_robin", extra=""):
    """Config text with named pools.  pools: {name: [backend or (backend, opts)]}
    or {name: (strategy, [...])}; routes: [(prefix, pool)].  Addresses that are
    plain strings ("127.0.0.1:1") are used as is, named after the address."""
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             "strategy: %s" % strategy, "health:", "  type: none", "pools:"]
    for pname, members in pools.items():
        lines.append("  %s:" % pname)
        if isinstance(members, tuple) and isinstance(members[0], str):
            lines.append("    strategy: %s" % members[0])
            members = members[1]
        lines.append("    backends:")
        for m in members:
            opts = ""
            if isinstance(m, tuple):
                m, opts = m
            if isinstance(m, str):
                name, addr = "dead-" + m.replace(":", "-").replace(".", "-"), m
            else:
                name, addr = m.name, m.addr
            lines.append("      - { name: %s, address: %s%s }" % (name, addr, opts))
    if routes:
        lines.append("routes:")
        for prefix, pool in routes:
            lines.append("  - { prefix: %s, pool: %s }" % (prefix, pool))
    return "\n".join(lines) + "\n" + extra


def dead_addr():
    """A loopback address where nothing listens (a port that was free a moment ago)."""
    return "127.0.0.1:%d" % free_port()


class RssSampler:
    """Samples VmRSS of some pids every `period` s in a thread; max_kb[pid] is the peak seen."""

    def __init__(self, pids, period=0.05):
        self.pids = list(pids)
        self.max_kb = {p: 0 for p in self.pids}
        self.period = period
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            for p in self.pids:
                try:
                    self.max_kb[p] = max(self.max_kb[p], rss_kb(p))
                except OSError:
                    pass
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self._t.join(5)
        return self.max_kb


PATTERN_PERIOD = bytes(((i * 31 + 7) & 0xff) for i in range(256))


def pattern_block(size=65536):
    """fakebe's /bytes pattern from offset 0 (size a multiple of 256): byte i = (i*31+7) & 0xff."""
    assert size % 256 == 0
    return PATTERN_PERIOD * (size // 256)


def pattern_sha256(n):
    """sha256 hex of the first n bytes of fakebe's /bytes pattern."""
    blk = pattern_block(1 << 20)
    h = hashlib.sha256()
    full, rest = divmod(n, len(blk))
    for _ in range(full):
        h.update(blk)
    h.update(blk[:rest])
    return h.hexdigest()


def recv_exact_or_eof(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def parse_responses(data, head_methods=()):
    """Split raw bytes into HTTP/1.x responses.  Returns (list of dicts
    {status, version, headers: [(lname, value)], body}, leftover bytes).
    head_methods: for each response in order, True when it answers a HEAD
    (no body).  Interim 1xx responses are included as their own entries.
    A response without CL or chunked takes the rest of the bytes (close-delimited)."""
    out = []
    i = 0
    hm = list(head_methods)
    while i < len(data):
        end = data.find(b"\r\n\r\n", i)
        if end == -1:
            break
        lines = data[i:end].split(b"\r\n")
        version, status = lines[0].split(b" ", 2)[:2]
        status = int(status)
        hdrs = []
        for ln in lines[1:]:
            k, v = ln.split(b":", 1)
            hdrs.append((k.strip().lower().decode(), v.strip().decode()))
        hd = dict(hdrs)
        j = end + 4
        if status < 200:
            out.append({"status": status, "version": version.decode(), "headers": hdrs,
                        "headers_dict": hd, "body": b""})
            i = j
            continue
        is_head = hm.pop(0) if hm else False
        body = b""
        if is_head or status in (204, 304):
            pass
        elif "chunked" in hd.get("transfer-encoding", "").lower():
            while True:
                le = data.find(b"\r\n", j)
                if le == -1:
                    return out, data[i:]
                size = int(data[j:le].split(b";")[0], 16)
                if size == 0:
                    te = data.find(b"\r\n\r\n", le)
                    if data[le:le + 4] == b"\r\n\r\n":
                        j = le + 4
                    elif te == -1:
                        return out, data[i:]
                    else:
                        j = te + 4
                    break
                if le + 2 + size + 2 > len(data):
                    return out, data[i:]
                body += data[le + 2:le + 2 + size]
                j = le + 2 + size + 2
        elif "content-length" in hd:
            n = int(hd["content-length"])
            if j + n > len(data):
                return out, data[i:]
            body = data[j:j + n]
            j += n
        else:
            body = data[j:]
            j = len(data)
        out.append({"status": status, "version": version.decode(), "headers": hdrs,
                    "headers_dict": hd, "body": body})
        i = j
    return out, data[i:]


class ScriptedBackend:
    """A tiny backend in a thread for behaviour fakebe has no endpoint for.
    respond(sock, head_bytes, n) is called for each request head read on a
    connection (n counts requests on that connection from 0); it writes what
    it likes and returns True to keep reading that connection, False to close it."""

    def __init__(self, workdir, name, respond):
        self.name = name
        self.respond = respond
        self.log = os.path.join(workdir, "scripted-%s.log" % name)
        self.lines = []
        self.conns = 0
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def _conn(self, s):
        s.settimeout(5)
        buf = b""
        n = 0
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    c = s.recv(65536)
                    if not c:
                        return
                    buf += c
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.lines.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                if not self.respond(s, head, n):
                    return
                n += 1
        except OSError as e:
            self.lines.append("error: %r" % e)
        finally:
            s.close()

    def stop(self, *a, **kw):
        self._stop.set()
        self.ls.close()
        self._t.join(2)

    def output(self):
        return "\n".join(self.lines)


def scripted_backend(env, name, respond):
    b = ScriptedBackend(env.dir, name, respond)
    env.procs.append(b)
    return b


def proc_title(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def worker_pids(router):
    """pids of the master's children whose title says "routerd: worker N" (not the prober/syncer)."""
    return [p for p in router.workers() if "worker" in proc_title(p)]

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


class Env:
    """Per-test scratch: a temp dir and every process started in it, all stopped at the end."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="routerd-it-")
        self.procs = []

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

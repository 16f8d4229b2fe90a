"""Process hygiene and bounds: what each child holds, how children learn of the
master's death, that the master's loop never waits on DNS, and limits.connections."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from harness import ROUTERD, Proc, free_port, proc_title, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTERCTL = os.environ.get("ROUTERCTL", os.path.join(os.path.dirname(ROUTERD), "routerctl"))

# Runs argv as a child subreaper: orphans of argv's children come to this
# process, not to pid 1 (as under systemd --user, tini, or any container
# init), so "getppid() == 1" never becomes true for them.
SUBREAPER = r"""
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def _write_conf(env, text):
    port = free_port()
    conf = os.path.join(env.dir, "routerd.yaml")
    pidfile = os.path.join(env.dir, "routerd.pid")
    ctlsock = os.path.join(env.dir, "ctl.sock")
    text = text.replace("LISTEN", "127.0.0.1:%d" % port)
    text += "\npidfile: %s\ncontrol:\n  socket: %s\n" % (pidfile, ctlsock)
    with open(conf, "w") as f:
        f.write(text)
    return port, conf, pidfile, ctlsock


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _role(pid):
    t = proc_title(pid)
    for role in ("worker", "prober", "syncer"):
        if "routerd: " + role in t:
            return role
    return t


def _wait_roles(master, want, timeout=5.0):
    """{pid: role} of master's children once the roles counted in want are all up."""
    end = time.time() + timeout
    while time.time() < end:
        kids = {p: _role(p) for p in _children(master)}
        have = {}
        for r in kids.values():
            have[r] = have.get(r, 0) + 1
        if all(have.get(r, 0) == n for r, n in want.items()):
            return kids
        time.sleep(0.05)
    raise AssertionError("children of %d: %s, want %s" % (master, kids, want))


def _alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1


class HangServer:
    """Accepts TCP connections on loopback and never answers (a registry that hangs)."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        self.conns = []
        self.log = "(hanging registry on port %d)" % self.port
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            self.conns.append(c)

    def stop(self, *a, **kw):
        self.s.close()
        for c in self.conns:
            c.close()

    def output(self):
        return ""


# --- descriptors -----------------------------------------------------------

def _tcp_sockets():
    """inode -> (local port, state hex) of every TCP socket."""
    out = {}
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    out[p[9]] = (int(p[1].rsplit(":", 1)[1], 16), p[3])
        except OSError:
            pass
    return out


def _unix_sockets():
    """inode -> (listening, path) of every unix socket."""
    out = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            p = line.split()
            out[p[6]] = (int(p[3], 16) & 0x10000 != 0, p[7] if len(p) > 7 else "")
    return out


def _fds(pid):
    """fd number -> what it is: ('tcp', port, state), ('unix', listening, path),
    ('pipe', inode), ('anon', kind) or ('file', path).  stdio is left out."""
    tcp, unix = _tcp_sockets(), _unix_sockets()
    out = {}
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        fd = int(name)
        if fd < 3:
            continue
        try:
            link = os.readlink(os.path.join(d, name))
        except OSError:
            continue
        if link.startswith("socket:["):
            ino = link[8:-1]
            if ino in tcp:
                out[fd] = ("tcp",) + tcp[ino]
            elif ino in unix:
                out[fd] = ("unix",) + unix[ino]
            else:
                out[fd] = ("socket", ino)
        elif link.startswith("pipe:["):
            out[fd] = ("pipe", link[6:-1])
        elif link.startswith("anon_inode:"):
            out[fd] = ("anon", link[11:])
        else:
            out[fd] = ("file", link)
    return out


def test_children_hold_only_their_descriptors(env):
    """Each child holds only what it serves with.  Two listen addresses, the
    admin API, two workers, a prober, a syncer (pulling a registry that is not
    there), a control socket and a pidfile; then a reload, so that a second
    generation of workers is forked after the syncer's pair exists."""
    l2 = free_port()
    admin = free_port()
    b = env.backend("b1")
    port, conf, pidfile, ctlsock = _write_conf(env, (
        "listen:\n  - address: LISTEN\n  - address: 127.0.0.1:%d\n"
        "admin:\n  address: 127.0.0.1:%d\n"
        "workers: 2\nhealth:\n  type: none\n"
        "registry:\n  url: http://127.0.0.1:%d\n  interval: 200ms\n"
        "backends:\n  - { name: b1, address: %s }\n") % (l2, admin, free_port(), b.addr))
    r = Proc([ROUTERD, "-d", "-f", conf], os.path.join(env.dir, "routerd.log"))
    env.procs.append(r)
    wait_port(port)
    master = r.p.pid
    _wait_roles(master, {"worker": 2, "prober": 1, "syncer": 1})
    os.kill(master, signal.SIGHUP)
    time.sleep(0.5)
    kids = _wait_roles(master, {"worker": 2, "prober": 1, "syncer": 1})

    mfds = _fds(master)
    live_pipes = {v[1] for v in mfds.values() if v[0] == "pipe"}
    want_ports = sorted([port, l2, admin])
    problems = [] if live_pipes else ["the master holds no liveness pipe"]
    for pid, role in sorted(kids.items()):
        fds = _fds(pid)
        seen_ports, pipes, anon, links = [], [], [], []
        for fd, what in sorted(fds.items()):
            kind = what[0]
            if kind == "tcp" and what[2] == "0A":
                if role != "worker":
                    problems.append("%s %d: listening TCP socket on port %d (fd %d)"
                                    % (role, pid, what[1], fd))
                seen_ports.append(what[1])
            elif kind == "tcp":
                if role == "worker":
                    problems.append("idle worker %d: TCP connection fd %d %s" % (pid, fd, what))
            elif kind == "unix":
                if role == "worker" and not what[1] and not what[2] and not links:
                    links.append(fd)    # its link to the master for the admin API's writes
                elif role != "syncer" or what[1]:
                    problems.append("%s %d: unix socket fd %d %s" % (role, pid, fd, what))
            elif kind == "pipe":
                pipes.append(what[1])
            elif kind == "anon":
                anon.append(what[1])
            else:
                problems.append("%s %d: fd %d is %s" % (role, pid, fd, what))
        if role == "worker" and len(links) != 1:
            problems.append("worker %d: %d links to the master, want 1" % (pid, len(links)))
        if role == "worker" and sorted(seen_ports) != want_ports:
            problems.append("worker %d listens on %s, want one each of %s"
                            % (pid, sorted(seen_ports), want_ports))
        if role == "syncer":
            if pipes:
                problems.append("syncer %d holds pipes %s" % (pid, pipes))
            if [w[0] for w in fds.values()].count("unix") != 1:
                problems.append("syncer %d: not exactly its own pair: %s" % (pid, fds))
        else:
            if len(pipes) != 1 or pipes[0] not in live_pipes:
                problems.append("%s %d: pipes %s, want the master's liveness pipe %s"
                                % (role, pid, pipes, live_pipes))
        if sorted(anon) != ["[eventpoll]", "[signalfd]"] and role != "syncer":
            problems.append("%s %d: anon inodes %s, want its own epoll and signalfd"
                            % (role, pid, sorted(anon)))
        if role == "syncer" and anon:
            problems.append("syncer %d: anon inodes %s" % (pid, anon))
    assert not problems, "\n".join(problems) + "\nmaster: %s" % mfds


def test_master_sigkill_children_exit_after_privilege_drop(env):
    """routerd as root with user: nobody, under a subreaper (so an orphan's
    parent is not pid 1), the syncer stuck in a registry pull that never
    answers: kill -9 the master and every child is gone within 2 s."""
    reg = HangServer()
    env.procs.append(reg)
    b = env.backend("b1")
    port, conf, pidfile, ctlsock = _write_conf(env, (
        "listen:\n  - address: LISTEN\nworkers: 2\nuser: nobody\n"
        "health:\n  type: tcp\n  interval: 100ms\n"
        "registry:\n  url: http://127.0.0.1:%d\n  interval: 100ms\n  timeout: 60s\n"
        "backends:\n  - { name: b1, address: %s }\n") % (reg.port, b.addr))
    os.chmod(env.dir, 0o755)
    sr = Proc([sys.executable, "-c", SUBREAPER, ROUTERD, "-d", "-f", conf],
              os.path.join(env.dir, "routerd.log"))
    env.procs.append(sr)
    wait_port(port)
    (master,) = _children(sr.p.pid)
    kids = _wait_roles(master, {"worker": 2, "prober": 1, "syncer": 1})
    for pid in kids:
        assert _uid(pid) == 65534, "%s %d runs as uid %d" % (kids[pid], pid, _uid(pid))
    end = time.time() + 5
    while time.time() < end and not reg.conns:
        time.sleep(0.05)
    assert reg.conns, "the syncer never reached the registry"
    time.sleep(0.3)  # the syncer now waits inside its pull

    os.kill(master, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0 and any(_alive(p) for p in kids):
        time.sleep(0.05)
    left = {p: kids[p] for p in kids if _alive(p)}
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "still running %.1fs after the master died: %s" % (
        time.monotonic() - t0, left)


# --- limits.connections ----------------------------------------------------

def _ctl_json(sock, *args, timeout=5):
    import json
    p = subprocess.run([ROUTERCTL, "-s", sock, "-j"] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, "routerctl %s: %s%s" % (args, p.stdout, p.stderr)
    return json.loads(p.stdout)


REQ = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"


def _read_response(s):
    """One whole response (Content-Length framed) from s; raises socket.timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("closed after %r" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("closed in the body")
        body += chunk
    return head


def _get_on(s):
    s.sendall(REQ)
    head = _read_response(s)
    assert head.startswith(b"HTTP/1.1 200"), head
    return head


def test_limits_connections_holds_the_sixth_in_the_queue(env):
    """limits.connections: 5.  Five idle keep-alive connections are held; a
    sixth connects (the kernel queues it) but its request is not answered
    while the five are open; when one closes, the sixth is answered, the
    other four keep working, and the worker logged and counted the episode."""
    b = env.backend("b1")
    port, conf, pidfile, ctlsock = _write_conf(env, (
        "listen:\n  - address: LISTEN\nworkers: 1\nhealth:\n  type: none\n"
        "limits:\n  connections: 5\n"
        "backends:\n  - { name: b1, address: %s }\n") % b.addr)
    r = Proc([ROUTERD, "-d", "-f", conf], os.path.join(env.dir, "routerd.log"))
    env.procs.append(r)
    wait_port(port)
    time.sleep(0.2)  # wait_port's probe connection is gone again
    held = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        _get_on(s)
        held.append(s)
    sixth = socket.create_connection(("127.0.0.1", port), timeout=5)
    sixth.sendall(REQ)
    sixth.settimeout(1.0)
    try:
        data = sixth.recv(65536)
        raise AssertionError("the 6th connection was answered at the limit: %r" % data[:80])
    except socket.timeout:
        pass
    (w,) = [x for x in _ctl_json(ctlsock, "show", "workers") if x["role"] == "worker"]
    assert w["conns"] == 5 and w["accept_paused"] >= 1, w

    held.pop(0).close()
    sixth.settimeout(3.0)
    head = _read_response(sixth)
    assert head.startswith(b"HTTP/1.1 200"), head
    for s in held:
        _get_on(s)  # the others are unharmed

    # two fewer: the queue is empty below the limit, and the worker says so
    sixth.close()
    held.pop(0).close()
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    _get_on(s)
    s.close()
    for s in held:
        s.close()
    time.sleep(0.2)
    log = r.output()
    assert log.count("limits.connections reached") == 1, log
    assert log.count("accepting again") == 1, log


# --- no DNS in the master's loop ------------------------------------------

class BlackholeDNS:
    """A UDP 'nameserver' on a loopback address that reads queries and never answers."""

    def __init__(self):
        import random
        self.addr = "127.77.%d.53" % random.randint(1, 250)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((self.addr, 53))
        self.queries = 0
        self.log = "(blackhole nameserver on %s)" % self.addr
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            try:
                self.s.recvfrom(4096)
            except OSError:
                return
            self.queries += 1

    def stop(self, *a, **kw):
        self.s.close()

    def output(self):
        return "%d queries\n" % self.queries


def test_reload_with_a_slow_host_name_does_not_stall_the_master(env):
    """routerd in a mount namespace whose resolv.conf names a nameserver that
    never answers.  A reload adds a backend by host name: the lookup hangs,
    yet the control socket answers at once, the reload then fails naming the
    host and the running config keeps serving.  A reload with a name that does
    resolve (localhost) is deferred, then applied."""
    dns = BlackholeDNS()
    env.procs.append(dns)
    resolv = os.path.join(env.dir, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\noptions timeout:4 attempts:1\n" % dns.addr)
    b = env.backend("b1")
    base = ("listen:\n  - address: LISTEN\nworkers: 1\nhealth:\n  type: none\n"
            "backends:\n  - { name: b1, address: %s }\n") % b.addr
    port, conf, pidfile, ctlsock = _write_conf(env, base)
    tail = open(conf).read()[len(base.replace("LISTEN", "127.0.0.1:%d" % port)):]
    r = Proc(["unshare", "-m", "sh", "-c",
              'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv,
              ROUTERD, "-d", "-f", conf], os.path.join(env.dir, "routerd.log"))
    env.procs.append(r)
    wait_port(port)

    def rewrite(extra):
        with open(conf, "w") as f:
            f.write(base.replace("LISTEN", "127.0.0.1:%d" % port) + extra + tail)

    rewrite("  - { name: slow, address: slow-dns.routerd-test:9 }\n")
    os.kill(r.p.pid, signal.SIGHUP)
    end = time.time() + 3
    while time.time() < end and dns.queries == 0:
        time.sleep(0.02)
    assert dns.queries > 0, "nobody asked the nameserver"
    t0 = time.monotonic()
    _ctl_json(ctlsock, "show", "summary", timeout=10)
    took = time.monotonic() - t0
    assert took < 1.0, "the control socket took %.1fs while a name was looked up" % took
    # a second reload meanwhile is answered at once: it waits for the same lookups
    t0 = time.monotonic()
    p = subprocess.run([ROUTERCTL, "-s", ctlsock, "reload"], capture_output=True,
                       text=True, timeout=10)
    took = time.monotonic() - t0
    assert p.returncode == 0 and "waits for host name lookups" in p.stdout, (p.stdout, p.stderr)
    assert took < 1.0, "routerctl reload took %.1fs" % took
    t0 = time.monotonic()
    st = _get_json_status(port)
    assert st == 200, st

    end = time.time() + 15
    while time.time() < end and "slow-dns.routerd-test" not in r.output():
        time.sleep(0.1)
    log = r.output()
    assert "cannot resolve 'slow-dns.routerd-test'" in log, log
    names = [x["name"] for x in _ctl_json(ctlsock, "show", "backends")]
    assert names == ["b1"], names

    rewrite("  - { name: lh, address: localhost:%d }\n" % b.port)
    p = subprocess.run([ROUTERCTL, "-s", ctlsock, "reload"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0 and "deferred" in p.stdout, (p.stdout, p.stderr)
    end = time.time() + 5
    while time.time() < end:
        names = [x["name"] for x in _ctl_json(ctlsock, "show", "backends")]
        if "lh" in names:
            break
        time.sleep(0.1)
    assert sorted(names) == ["b1", "lh"], names


def _get_json_status(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head = _read_response(s)
        return int(head.split(b" ", 2)[1])
    finally:
        s.close()


# --- bounded free lists ------------------------------------------------------

def test_free_lists_bounded_after_a_burst(env):
    """2,000 concurrent connections, each with a request in flight at once
    (the backend holds every answer 3 s, longer than opening them takes on
    a loaded machine), then all closed: the worker's
    free lists keep at most their caps (256 I/O buffers, 64 forward blocks),
    as routerctl show workers reports them."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    b = env.backend("b1")
    port, conf, pidfile, ctlsock = _write_conf(env, (
        "listen:\n  - address: LISTEN\nworkers: 1\nhealth:\n  type: none\n"
        "backends:\n  - { name: b1, address: %s }\n") % b.addr)
    r = Proc([ROUTERD, "-d", "-f", conf], os.path.join(env.dir, "routerd.log"))
    env.procs.append(r)
    wait_port(port)
    socks = []
    try:
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
            socks.append(s)
        # the worker takes them from its listen queue as fast as it can: watch it do so
        peak, until = 0, time.time() + 2
        while peak < 2000 and time.time() < until:
            (w,) = [x for x in _ctl_json(ctlsock, "show", "workers") if x["role"] == "worker"]
            peak = max(peak, w["conns"])
            time.sleep(0.05)
        answered = 0
        for s in socks:
            if _read_response(s).startswith(b"HTTP/1.1 200"):
                answered += 1
    finally:
        for s in socks:
            s.close()
    assert answered == 2000, answered
    assert peak > 1000, "only %d connections at once" % peak
    end = time.time() + 5
    while time.time() < end:
        (w,) = [x for x in _ctl_json(ctlsock, "show", "workers") if x["role"] == "worker"]
        if w["conns"] == 0:
            break
        time.sleep(0.1)
    assert w["conns"] == 0, w
    assert 0 < w["free_bufs"] <= 256 and 0 < w["free_fwd"] <= 64, w

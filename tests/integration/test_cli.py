"""The routerd binary's own checks: `-t` reports every error as FILE:LINE:COLUMN
and exits 1, environment and flag errors name their source, `-T` prints a config
that `-t` accepts again with the overrides applied.  (conf_load() itself: the
criterion suite test_conf.)"""
import os
import re
import subprocess
import tempfile

from harness import ROUTERD


def _run(args, env=None, text=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([ROUTERD] + args, capture_output=True, text=True, env=e,
                          input=text, timeout=10)


def _write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


GOOD = """listen:
  - address: 127.0.0.1:18080
workers: 2
strategy: round_robin
backends:
  - name: a
    address: 127.0.0.1:18001
  - name: b
    address: 127.0.0.1:18002
    weight: 3
"""

BAD = """listen:
  - address: 127.0.0.1:18080
workers: many
strategy: fastest
backends:
  - name: a
    address: 127.0.0.1:18001
    weight: 0
  - name: a
    address: nowhere
frobnicate: 1
"""


def test_check_reports_every_error_with_position(env):  # noqa: ARG001 - the harness passes an Env
    with tempfile.TemporaryDirectory() as d:
        bad = _write(d, "bad.yaml", BAD)
        p = _run(["-t", "-f", bad])
        assert p.returncode == 1, (p.returncode, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        pos = re.compile(re.escape(bad) + r":(\d+):(\d+): \S")
        located = [l for l in lines if pos.match(l)]
        # workers, strategy, weight, the duplicate name, the address, the unknown key
        assert len(located) >= 6, p.stderr
        got_lines = sorted({int(pos.match(l).group(1)) for l in located})
        for want in (3, 4, 8, 9, 10, 11):
            assert want in got_lines, (want, p.stderr)
        assert p.stdout == "", p.stdout


def test_check_good_file_and_missing_file(env):  # noqa: ARG001 - the harness passes an Env
    with tempfile.TemporaryDirectory() as d:
        good = _write(d, "good.yaml", GOOD)
        p = _run(["-t", "-f", good])
        assert p.returncode == 0, p.stderr
        missing = os.path.join(d, "nope.yaml")
        p = _run(["-t", "-f", missing])
        assert p.returncode == 1
        assert missing in p.stderr, p.stderr


def test_env_and_flag_errors_name_their_source(env):  # noqa: ARG001 - the harness passes an Env
    with tempfile.TemporaryDirectory() as d:
        good = _write(d, "good.yaml", GOOD)
        p = _run(["-t", "-f", good], env={"ROUTER_STRATEGY": "fastest"})
        assert p.returncode == 1
        assert re.search(r"^ROUTER_STRATEGY: \S", p.stderr, re.M), p.stderr
        p = _run(["-t", "-f", good, "--workers", "-3"])
        assert p.returncode == 1
        assert re.search(r"^--workers: \S", p.stderr, re.M), p.stderr


def test_dump_round_trips_with_overrides(env):  # noqa: ARG001 - the harness passes an Env
    """-T prints the effective config: env and flags applied, every default
    spelled out; feeding it back to -t passes and -T of it prints the same."""
    with tempfile.TemporaryDirectory() as d:
        good = _write(d, "good.yaml", GOOD)
        p = _run(["-T", "-f", good, "--workers", "3"],
                 env={"ROUTER_STRATEGY": "least_connections"})
        assert p.returncode == 0, p.stderr
        dump = p.stdout
        assert re.search(r"^workers: 3$", dump, re.M), dump
        assert re.search(r"^strategy: least_connections$", dump, re.M), dump
        assert "timeout" in dump and "limits" in dump, dump
        again = _write(d, "dump.yaml", dump)
        p = _run(["-t", "-f", again])
        assert p.returncode == 0, p.stderr
        p2 = _run(["-T", "-f", again])
        assert p2.returncode == 0, p2.stderr
        def body(t):
            return [l for l in t.splitlines() if not l.startswith("#")]
        assert body(p2.stdout) == body(dump)

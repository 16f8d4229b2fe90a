"""The man pages against the programs: usage lines match SYNOPSIS word for word, the
long flags of `routerd -h` are the ones routerd.8 lists, and every example configuration
of routerd.yaml.5 passes `routerd -t`.  (Directive coverage: tests/unit/test_manpage.c;
mandoc -T lint: `make lint-man`.)"""
import os
import re
import shutil
import subprocess
import tempfile

import harness

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(TOP, "man")
ROUTERCTL = os.environ.get("ROUTERCTL", os.path.join(TOP, "routerctl"))


def render(page):
    """The page as plain text (mandoc -T ascii without the overstrike of bold and underline)."""
    assert shutil.which("mandoc"), "mandoc is not installed (packaging/build-deps.sh)"
    out = subprocess.run(["mandoc", "-T", "ascii", os.path.join(MAN, page)],
                         capture_output=True, text=True, check=True).stdout
    return re.sub(r".\x08", "", out)


def section(text, title):
    """The lines of a section of rendered text, up to the next unindented heading."""
    lines = text.splitlines()
    i = lines.index(title)
    out = []
    for line in lines[i + 1:]:
        if line and not line[0].isspace():
            break
        out.append(line)
    return out


def synopsis(page):
    return " ".join(" ".join(section(render(page), "SYNOPSIS")).split())


def usage(prog):
    p = subprocess.run([prog, "-h"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, "%s -h exits %d" % (prog, p.returncode)
    first = p.stdout.splitlines()[0]
    assert first.startswith("usage: "), first
    return p.stdout, " ".join(first[len("usage: "):].split())


def test_routerd_usage_is_synopsis(env):
    _, line = usage(harness.ROUTERD)
    assert line == synopsis("routerd.8"), \
        "routerd -h: %r\nrouterd.8 SYNOPSIS: %r" % (line, synopsis("routerd.8"))


def test_routerctl_usage_is_synopsis(env):
    _, line = usage(ROUTERCTL)
    assert line == synopsis("routerctl.8"), \
        "routerctl -h: %r\nrouterctl.8 SYNOPSIS: %r" % (line, synopsis("routerctl.8"))


def test_routerd_long_flags_documented(env):
    out, _ = usage(harness.ROUTERD)
    flags = set(re.findall(r"(?<!\S)--([a-z][a-z0-9-]*)", out.split("\n", 1)[1]))
    assert flags, "routerd -h lists no long flags:\n" + out
    text = render("routerd.8")
    listed = set(re.findall(r"^ {10,}--([a-z][a-z0-9-]*) ", text, re.M))
    assert flags == listed, "routerd -h: %s\nrouterd.8: %s" % (sorted(flags), sorted(listed))


def test_routerctl_commands_documented(env):
    out, _ = usage(ROUTERCTL)
    cmds = [l.split("  ")[0].strip() for l in out.splitlines()[2:] if l.startswith("  ")]
    assert cmds
    text = render("routerctl.8")
    for c in cmds:
        # "strategy set [POOL] NAME" is rendered "strategy set [pool] strategy"
        words = [w for w in c.split() if w.islower() and not w.startswith("[")]
        assert re.search(r"^\s+%s\b" % re.escape(" ".join(words)), text, re.M), \
            "routerctl.8 has no entry for %r" % c


def test_yaml_examples_pass_check(env):
    src = open(os.path.join(MAN, "routerd.yaml.5")).read()
    examples = src[src.index("\n.Sh EXAMPLES\n"):]
    examples = examples[:examples.index("\n.Sh ", 1)]
    blocks = re.findall(r"\n\.Bd -literal[^\n]*\n(.*?)\n\.Ed(?=\n|$)", examples, re.S)
    assert len(blocks) >= 2, "routerd.yaml.5 EXAMPLES: expected a short and a full example"
    for i, block in enumerate(blocks):
        text = block.replace("\\e", "\\").replace("\\&", "").replace("\\-", "-")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=env.dir, delete=False) as f:
            f.write(text + "\n")
        p = subprocess.run([harness.ROUTERD, "-t", "-f", f.name], capture_output=True,
                           text=True, timeout=10,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("ROUTER_")})
        assert p.returncode == 0, "example %d of routerd.yaml.5 fails routerd -t:\n%s" % (
            i + 1, p.stderr)

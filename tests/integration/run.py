#!/usr/bin/env python3
"""Runs the integration suite: every test_* function of tests/integration/test_*.py
(each gets a fresh harness.Env) and every tests/integration/vtc/*.vtc through varnishtest.

usage: run.py [-k SUBSTRING] [-v]
Prints one line per test (ok, FAIL, or SKIP with the reason) and ends with
'N passed, N failed, N skipped'; exits 1 on any failure, 0 when there are only
passes and skips.  Under CI=true a skip because a package that packaging/build-deps.sh
installs is missing counts as a failure: CI has that package.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


def python_tests(filt):
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        spec = importlib.util.spec_from_file_location(fn[:-3], os.path.join(HERE, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name in sorted(dir(mod)):
            if name.startswith("test_") and callable(getattr(mod, name)):
                full = "%s::%s" % (fn, name)
                if filt and filt not in full:
                    continue
                yield full, getattr(mod, name)


def vtc_tests(filt):
    d = os.path.join(HERE, "vtc")
    if not os.path.isdir(d):
        return
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".vtc") and (not filt or filt in "vtc/" + fn):
            yield "vtc/" + fn, os.path.join(d, fn)


def ci_packages():
    """The Debian packages packaging/build-deps.sh installs (its PKGS words)."""
    path = os.path.join(HERE, "..", "..", "packaging", "build-deps.sh")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return set()
    pkgs = set()
    for m in re.finditer(r'PKGS="([^"]*)"', text):
        pkgs.update(w for w in m.group(1).split() if w != "\\" and not w.startswith("$"))
    return pkgs


def under_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def main():
    filt = None
    verbose = "-v" in sys.argv
    if "-k" in sys.argv:
        filt = sys.argv[sys.argv.index("-k") + 1]
    passed = failed = skipped = 0
    failures = []
    skips = []
    ci_pkgs = ci_packages() if under_ci() else set()
    for name, fn in python_tests(filt):
        env = harness.Env()
        t0 = time.time()
        skip = None
        try:
            fn(env)
            ok, why = True, ""
        except harness.Skip as e:
            ok, why, skip = True, "", e
        except Exception:
            ok, why = False, traceback.format_exc()
        finally:
            env.close()
        dt = time.time() - t0
        if skip is not None and skip.package in ci_pkgs:
            ok, why = False, ("skipped under CI=true, but CI installs %s (packaging/build-deps.sh): "
                              "%s" % (skip.package, skip.reason))
            skip = None
        if skip is not None:
            print("%-4s %-60s %s" % ("SKIP", name, skip.reason), flush=True)
            skipped += 1
            skips.append((name, skip.reason))
            shutil.rmtree(env.dir, ignore_errors=True)
            continue
        print("%-4s %-60s %6.2fs" % ("ok" if ok else "FAIL", name, dt), flush=True)
        if ok:
            passed += 1
            shutil.rmtree(env.dir, ignore_errors=True)
        else:
            failed += 1
            failures.append((name, why + "\n" + env.logs()))
    vt = shutil.which("varnishtest")
    for name, path in vtc_tests(filt):
        if vt is None:
            why = "varnishtest not installed (Debian package varnish)"
            if "varnish" in ci_pkgs:
                print("FAIL %-60s %s, and CI installs it (packaging/build-deps.sh)" % (name, why))
                failed += 1
                failures.append((name, why + " under CI=true"))
            else:
                print("%-4s %-60s %s" % ("SKIP", name, why), flush=True)
                skipped += 1
                skips.append((name, why))
            continue
        t0 = time.time()
        env = dict(os.environ)
        p = subprocess.run([vt, "-q", "-t", "30", "-D", "routerd=" + harness.ROUTERD,
                            "-D", "fakebe=" + harness.FAKEBE, path],
                           capture_output=True, text=True, env=env)
        dt = time.time() - t0
        ok = p.returncode == 0
        print("%-4s %-60s %6.2fs" % ("ok" if ok else "FAIL", name, dt), flush=True)
        if ok:
            passed += 1
        else:
            failed += 1
            # -q says only that it failed: run it again, verbosely, for the reason
            v = subprocess.run([vt, "-v", "-t", "30", "-D", "routerd=" + harness.ROUTERD,
                                "-D", "fakebe=" + harness.FAKEBE, path],
                               capture_output=True, text=True, env=env)
            out = "\n".join(l for l in (v.stdout + v.stderr).splitlines()
                            if "----" in l or "FAIL" in l or "expect" in l)
            failures.append((name, out[-6000:]))
    for name, why in failures:
        print("\n===== %s\n%s" % (name, why))
    if skips:
        print()
        for name, why in skips:
            print("SKIP %s: %s" % (name, why))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

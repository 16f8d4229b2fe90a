#!/usr/bin/env python3
"""Runs the integration suite: every test_* function of tests/integration/test_*.py
(each gets a fresh harness.Env) and every tests/integration/vtc/*.vtc through varnishtest.

usage: run.py [-k SUBSTRING] [-v]
Prints one line per test and ends with 'N passed, N failed'; exits 1 on any failure.
"""
import importlib.util
import os
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


def main():
    filt = None
    verbose = "-v" in sys.argv
    if "-k" in sys.argv:
        filt = sys.argv[sys.argv.index("-k") + 1]
    passed = failed = 0
    failures = []
    for name, fn in python_tests(filt):
        env = harness.Env()
        t0 = time.time()
        try:
            fn(env)
            ok, why = True, ""
        except Exception:
            ok, why = False, traceback.format_exc()
        finally:
            env.close()
        dt = time.time() - t0
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
            print("FAIL %-60s varnishtest not installed" % name)
            failed += 1
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
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

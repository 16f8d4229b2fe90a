#!/usr/bin/env python3
"""Prints the bench-llm table from the per-run JSON files loadgen wrote.

usage: table.py DIR WORKLOAD... -- PROXY...
One row per workload and proxy; for each routerd row, routerd / best peer (the better
of nginx and HAProxy) for TTFT p50, TTFT p90 (below 1 is better) and output tok/s
(above 1 is better).  "pinned" is no proxy: loadgen --pin, perfect affinity.
"""
import json
import os
import sys

NAMES = {"a": "a shared-prefix, overload", "b": "b shared-prefix, carried",
         "c": "c unique prompts", "m": "m multi-turn"}


def load(d, w, p):
    try:
        with open(os.path.join(d, "%s-%s.json" % (w, p.replace(":", "-")))) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def f0(x):
    return "-" if x is None else "%.0f" % x


def ratio(a, b):
    return "-" if a is None or not b else "%.2f" % (a / b)


def main():
    args = sys.argv[1:]
    d = args[0]
    i = args.index("--")
    workloads, proxies = args[1:i], args[i + 1:]
    hdr = "%-26s %8s %8s %8s %6s %8s %7s %6s %6s  %s" % (
        "proxy", "TTFTp50", "TTFTp90", "TTFTp99", "ITL50", "E2Ep99", "tok/s", "hit%", "errors",
        "routerd/best peer: TTFT p50, p90, tok/s")
    for w in workloads:
        rate = None
        rows = {p: load(d, w, p) for p in proxies}
        for s in rows.values():
            if s and "rate" in s:
                rate = s["rate"]
        print()
        print("== %s%s (ms)" % (NAMES.get(w, w), "" if rate is None else ", %g req/s" % rate))
        print(hdr)
        peers = [rows.get(p) for p in ("nginx", "haproxy") if rows.get(p) and "ttft_ms" in rows[p]]
        best50 = min((s["ttft_ms"]["p50"] for s in peers if s["ttft_ms"]["p50"]), default=None)
        best90 = min((s["ttft_ms"]["p90"] for s in peers if s["ttft_ms"]["p90"]), default=None)
        besttok = max((s["output_tok_s"] for s in peers), default=None)
        for p in proxies:
            s = rows[p]
            if s is None:
                print("%-26s no result" % p)
                continue
            if "skip" in s:
                print("%-26s SKIP (%s)" % (p, s["skip"]))
                continue
            r = ""
            if p.startswith("routerd") and peers:
                r = "%s, %s, %s" % (ratio(s["ttft_ms"]["p50"], best50),
                                    ratio(s["ttft_ms"]["p90"], best90),
                                    ratio(s["output_tok_s"], besttok))
            print("%-26s %8s %8s %8s %6s %8s %7s %6s %6d  %s" % (
                p, f0(s["ttft_ms"]["p50"]), f0(s["ttft_ms"]["p90"]), f0(s["ttft_ms"]["p99"]),
                "-" if s["itl_ms"]["p50"] is None else "%.1f" % s["itl_ms"]["p50"],
                f0(s["e2e_ms"]["p99"]), f0(s["output_tok_s"]),
                "-" if s["hit_rate"] is None else "%.1f" % (100 * s["hit_rate"]),
                s["errors"], r))


if __name__ == "__main__":
    main()

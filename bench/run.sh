#!/bin/sh
# make bench: the selection micro-benchmark, then the referee proxy benchmark when it is there.
set -e
B=${B:-build}
"$B/bench-select" 1000 4	# the stripes a one-worker daemon reads (4 per worker)
"$B/bench-select" 1000 16	# ...and a four-worker one
"$B/bench-registry" 10000
if [ -x ../shared/bench/proxy-bench ]; then
	../shared/bench/proxy-bench -r ./routerd
else
	echo "bench: ../shared/bench/proxy-bench not found; skipping the proxy comparison"
fi

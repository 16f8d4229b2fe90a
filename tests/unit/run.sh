#!/bin/sh
# Runs the criterion unit suites given as arguments; a skipped test (cr_skip_test) is
# printed as "SKIP suite::test: reason" and counted, never folded into the passes.
#
# usage: sh tests/unit/run.sh build/tests/test_a build/tests/test_b ...
# Exits 1 as soon as a suite fails; ends with "unit: N suites passed, N tests skipped".
set -e
skipped=0
n=0
for t in "$@"; do
	echo "== $t"
	tap="$t.tap"
	rm -f "$tap"
	"$t" --jobs 2 --tap="$tap"
	n=$((n + 1))
	if [ -f "$tap" ]; then
		s=$(sed -n 's/^ok - \(.*[^ ]\) *# SKIP \(.*\)$/SKIP \1: \2/p' "$tap")
		if [ -n "$s" ]; then
			echo "$s"
			skipped=$((skipped + $(echo "$s" | wc -l)))
		fi
	fi
done
echo "unit: $n suites passed, $skipped tests skipped"

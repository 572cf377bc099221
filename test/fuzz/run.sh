#!/usr/bin/env bash
# Runs Go fuzz targets on top of their committed corpora.
#
#   test/fuzz/run.sh FUZZTIME pkg:FuzzTarget [pkg:FuzzTarget ...]
#
# FUZZTIME is what `go test -fuzztime` takes: a count ("20000x", what CI uses)
# or a duration ("10m", a campaign before touching a parser).
#
# Why this script exists: Go 1.26's fuzz coordinator sometimes fails a
# time-budgeted run with "context deadline exceeded" when the machine is
# loaded, without having found anything (golang/go#75804). A count budget
# avoids the timer race, so CI uses one. For duration budgets a failure is
# retried once, and only when it names that error and wrote no new crasher
# under testdata/fuzz: a real finding is always written there first, so it
# can never be retried away.
set -uo pipefail
GO="${GO:-go}"

[ $# -ge 2 ] || { echo "usage: $0 FUZZTIME pkg:FuzzTarget..." >&2; exit 2; }
fuzztime=$1
shift

corpus_listing() { ls -1 "$1" 2>/dev/null | sort; }

for t in "$@"; do
  pkg=${t%%:*}
  name=${t##*:}
  dir="$pkg/testdata/fuzz/$name"
  for attempt in 1 2; do
    echo "fuzz $name in $pkg for $fuzztime (attempt $attempt)"
    before=$(corpus_listing "$dir")
    out=$(mktemp)
    "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    after=$(corpus_listing "$dir")
    if [ "$rc" -eq 0 ]; then
      rm -f "$out"
      break
    fi
    if [ "$before" != "$after" ]; then
      rm -f "$out"
      echo "fuzz $name: FAILED with a new crasher in $dir (reproduce: $GO test -run '$name' $pkg)" >&2
      exit 1
    fi
    if [ "$attempt" -eq 1 ] && grep -q 'context deadline exceeded' "$out"; then
      rm -f "$out"
      echo "fuzz $name: 'context deadline exceeded' with no crasher written (golang/go#75804); retrying once" >&2
      continue
    fi
    rm -f "$out"
    echo "fuzz $name: FAILED (exit $rc)" >&2
    exit 1
  done
done

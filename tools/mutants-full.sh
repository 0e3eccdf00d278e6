#!/bin/bash
# A full cargo-mutants run of one file of tools/mutants-sample.sh's table, in
# two stages so that it fits this 2-core machine (docs/testing.md, "Full runs"):
#
#     tools/mutants-full.sh NAME OUTDIR
#
# stage 1 builds and runs only the unit tests (`-C --lib`, about 6-10 s a
# mutant here; the one slow unit test, a 20,000-entry cloud-config parse that
# takes 9 s in a debug build and tests only src/envelope, is skipped); stage 2 re-runs only what stage 1 missed (`--iterate` skips
# the caught and unviable ones) with the integration tests named for the file
# in mutants-sample.sh (not --lib again: it already passed with each of them). Run it in a scratch copy
# of the tree (--in-place edits the sources), never in a work tree.
set -u
NAME=$1; OUT=$2
here=$(dirname "$0")
line=$(grep "^$NAME|src/" "$here/mutants-sample.sh") || {
  echo "mutants-full.sh: no file named $NAME in mutants-sample.sh's table" >&2; exit 2; }
IFS='|' read -r name file tests <<<"$line"
mkdir -p "$OUT"
o="$OUT/$name-full"
common=(--in-place --baseline skip --no-shuffle --build-timeout 1200 --file "$file" -o "$o")
echo "$(date -u +%T) start $name $file stage 1 (--lib)" >> "$OUT/progress.log"
# a unit-test run takes under 10 s here: 60 s stops a mutant that loops (as
# in a retry or random-draw loop) five times sooner than stage 2's 300 s
nice -n 15 cargo mutants "${common[@]}" --timeout 60 -C --lib \
  --cargo-test-arg=-- --cargo-test-arg=--skip --cargo-test-arg=twenty_thousand_entries \
  > "$o.stage1.log" 2>&1
echo "$(date -u +%T) stage 1 $name rc=$? $(tail -1 "$o.stage1.log")" >> "$OUT/progress.log"
args=()
for t in $tests; do args+=(-C "--test=$t"); done
# --iterate re-runs timeouts; a mutant that already looped past stage 1's
# limit is counted as caught (timed out) and not run again for 300 s
while IFS= read -r m; do
  [ -n "$m" ] && args+=(--exclude-re "^$(printf '%s' "$m" | sed 's/[][\\.^$*+?(){}|]/\\&/g')\$")
done < <(cat "$o/mutants.out/timeout.txt" 2>/dev/null)
nice -n 15 cargo mutants "${common[@]}" --timeout 300 --iterate "${args[@]}" > "$o.stage2.log" 2>&1
echo "$(date -u +%T) stage 2 $name rc=$? tests: $tests: $(tail -1 "$o.stage2.log")" >> "$OUT/progress.log"

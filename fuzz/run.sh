#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for FUZZ_SECONDS each, one after the other, and writes
# the executions and crashes per target to fuzz/RESULTS.md. Called by `make fuzz`.
#
#   FUZZ_SECONDS=300   seconds per target (libFuzzer -max_total_time)
#   FUZZ_RUNS=         optional: also stop a target after this many executions (-runs)
#   FUZZ_TARGETS=      optional: a space-separated subset, e.g. "config steering"
#   FUZZ_SANITIZER=none  cargo fuzz --sanitizer: src/ has no `unsafe`, and AddressSanitizer
#                      made the steering target 5x slower; `address` checks the dependencies'
#                      unsafe code too. Overflow checks (debug assertions) are on either way.
#   FUZZ_NICE=19       niceness of the build and the fuzzers
#
# One libFuzzer process per target, in the foreground: it uses one core (libFuzzer's `-jobs=1`
# would fork the same single worker and send its output to fuzz-0.log instead). Seeds are read
# from fuzz/corpus/<target>/ and never written; what a run discovers goes to
# fuzz/work/<target>/ (ignored by git, reused by the next run), its log to
# fuzz/work/<target>.log, and a crashing input to fuzz/artifacts/<target>/. A target stops at
# its first crash; the script goes on with the next one and exits 1 if any crashed.
set -euo pipefail

cd "$(dirname "$0")"
FUZZ_DIR=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-300}
FUZZ_RUNS=${FUZZ_RUNS:-}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
FUZZ_NICE=${FUZZ_NICE:-19}
TOOLCHAIN=nightly

rustup toolchain list | grep -q "^$TOOLCHAIN" ||
  rustup toolchain install "$TOOLCHAIN" --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=${FUZZ_TARGETS:-$(cargo +"$TOOLCHAIN" fuzz list)}
echo "building fuzz targets (sanitizer: $FUZZ_SANITIZER)"
nice -n "$FUZZ_NICE" cargo +"$TOOLCHAIN" fuzz build --sanitizer "$FUZZ_SANITIZER"

rows=()
crashed=0
for t in $targets; do
  mkdir -p "work/$t" "artifacts/$t" "corpus/$t"
  log="work/$t.log"
  before=$(find "artifacts/$t" -type f | wc -l)
  args=(-max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10)
  [ -n "$FUZZ_RUNS" ] && args+=(-runs="$FUZZ_RUNS")
  [ -f "dict/$t.dict" ] && args+=(-dict="$FUZZ_DIR/dict/$t.dict")
  echo "fuzzing $t for up to ${FUZZ_SECONDS}s${FUZZ_RUNS:+ or $FUZZ_RUNS runs} (log: fuzz/$log)"
  start=$(date +%s)
  status=0
  nice -n "$FUZZ_NICE" cargo +"$TOOLCHAIN" fuzz run --sanitizer "$FUZZ_SANITIZER" "$t" \
    "work/$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1 || status=$?
  seconds=$(($(date +%s) - start))
  # libFuzzer's final stats; if it stopped early, its last "#N" status line.
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  execs=${execs:-0}
  done_s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  [ -n "$done_s" ] && [ "$done_s" -gt 0 ] && seconds=$done_s
  rate=$((execs / (seconds > 0 ? seconds : 1)))
  corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | tr -dc '0-9' || true)
  found=$(($(find "artifacts/$t" -type f | wc -l) - before))
  if [ "$status" -ne 0 ] && [ "$found" -eq 0 ]; then found=1; fi
  [ "$found" -gt 0 ] && crashed=1
  new=$(find "artifacts/$t" -type f -newermt "@$start" -printf '%f ' 2>/dev/null || true)
  printf '%-14s %12s execs in %5ss (%s exec/s), crashes: %s %s\n' \
    "$t" "$execs" "$seconds" "$rate" "$found" "$new"
  [ "$found" -gt 0 ] && grep -m1 -A3 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" || true
  rows+=("| \`$t\` | $seconds | $execs | $rate | ${corpus:-?} | $found${new:+ (\`${new% }\`)} |")
done

commit=$(git -C .. describe --always --dirty 2>/dev/null || echo "${FUZZ_COMMIT:-unknown}")
{
  echo "# Fuzzing results"
  echo
  echo "Written by \`make fuzz\` (fuzz/run.sh); the targets are described at the top of each"
  echo "file in fuzz/fuzz_targets/. Each target ran alone, in one libFuzzer process at nice"
  echo "$FUZZ_NICE, starting from the seeds in fuzz/corpus/<target>/ and fuzz/work/<target>/."
  echo
  echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M')"
  echo "- FUZZ_SECONDS: $FUZZ_SECONDS${FUZZ_RUNS:+, FUZZ_RUNS: $FUZZ_RUNS}"
  echo "- commit: $commit"
  echo "- $(rustc +"$TOOLCHAIN" --version), $(cargo +"$TOOLCHAIN" fuzz --version 2>/dev/null), sanitizer: $FUZZ_SANITIZER"
  echo "- machine: $(nproc) cores, shared with other work while this ran"
  echo
  echo "Crashes found by earlier runs, their reproducers and what became of them: FINDINGS.md."
  echo
  echo "| target | seconds | execs | exec/s | corpus | crashes |"
  echo "|---|---:|---:|---:|---:|---|"
  printf '%s\n' "${rows[@]}"
} >RESULTS.md
echo "wrote fuzz/RESULTS.md"
exit "$crashed"

#!/usr/bin/env bash
# `make mutants`: cargo-mutants over the native core, one module at a time, each module's
# mutants tested by the unit tests whose path names it (`cargo test --lib <module>::`): the
# whole --lib suite takes 16 s, a module's own tests 0.1-9 s, and a module's tests are what
# should catch its mutants. Niced: the machine may be running Envoy tests.
#
#   bash mutants/run.sh [module...]   modules: lb sticky health state router config (default all)
#   MUTANTS_ARGS=--iterate bash mutants/run.sh lb   extra cargo-mutants flags (e.g. --iterate)
#
# Each module writes mutants.out/<module>/mutants.out/; mutants/results.py then rewrites
# mutants/RESULTS.md from every module's outcomes.json.
set -euo pipefail
cd "$(dirname "$0")/.."

files() {
  case "$1" in
    lb) echo "src/lb/**" ;;
    sticky) echo "src/sticky.rs src/sticky/**" ;;
    health) echo "src/health.rs src/health/**" ;;
    state) echo "src/state/**" ;;
    router) echo "src/router.rs src/router/**" ;;
    config) echo "src/config.rs src/config/**" ;;
    *) echo "unknown module: $1 (lb sticky health state router config)" >&2; return 1 ;;
  esac
}

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(lb sticky health state router config)
read -r -a extra <<<"${MUTANTS_ARGS:-}"
for m in "${modules[@]}"; do
  args=()
  list=$(files "$m")
  read -r -a globs <<<"$list"
  for f in "${globs[@]}"; do args+=(--file "$f"); done
  cmd=(cargo mutants "${args[@]}" --output "mutants.out/$m" ${extra[@]+"${extra[@]}"}
       --cargo-test-arg "$m::")
  mkdir -p "mutants.out/$m"
  printf -v shown '%q ' nice -n 19 "${cmd[@]}"
  echo "${shown% }" | tee "mutants.out/$m/command"
  # The commit the run tested (the work tree may hold more).
  git rev-parse --short HEAD >"mutants.out/$m/tree" 2>/dev/null || echo "?" >"mutants.out/$m/tree"
  # 0: all caught; 2: some missed; 3: some timed out. Anything else is a failure.
  status=0
  nice -n 19 "${cmd[@]}" || status=$?
  case "$status" in 0|2|3) ;; *) echo "cargo mutants failed for $m (exit $status)" >&2; exit "$status" ;; esac
done
python3 mutants/results.py

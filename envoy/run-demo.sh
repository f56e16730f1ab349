#!/usr/bin/env bash
# `make run`: three demo backends (b1..b3 on 127.0.0.1:8081-8083, weights 1:2:3 in
# envoy/envoy.yaml) and Envoy on :10000 with the filter. Ctrl-C stops everything.
# The backends send ORCA load reports (capacities 100, 200 and 400 requests/s);
# `make run DEMO_ALGORITHM=client_side_weighted_round_robin` balances on them.
set -euo pipefail
cd "$(dirname "$0")/.."

envoy_bin=${ENVOY_BIN:?run through make: make run}
backend=target/debug/demo-backend
pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped."
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

capacity=(0 100 200 400)
for i in 1 2 3; do
  "$backend" --id "b$i" --listen "127.0.0.1:808$i" --load-report text --capacity-rps "${capacity[$i]}" &
  pids+=($!)
done
config=envoy/envoy.yaml
case "${DEMO_ALGORITHM:-}" in
  "") ;;
  client_side_weighted_round_robin)
    # The shipped config with the algorithm replaced (a 1 s blackout instead of Envoy's 10 s).
    config=$(mktemp --suffix=.yaml)
    sed 's|"algorithm": "round_robin",|"algorithm": "client_side_weighted_round_robin", "client_side_weighted_round_robin": {"blackout_period_ms": 1000},|' \
      envoy/envoy.yaml > "$config"
    grep -q client_side_weighted_round_robin "$config" || { echo "cannot set the algorithm in $config" >&2; exit 1; }
    ;;
  *) echo "DEMO_ALGORITHM: only client_side_weighted_round_robin is supported" >&2; exit 1 ;;
esac
"$envoy_bin" -c "$config" --concurrency 2 --disable-hot-restart --log-level warn \
  --component-log-level wasm:info &
envoy_pid=$!
pids+=($envoy_pid)

for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null http://127.0.0.1:9901/ready 2>/dev/null; then
    cat <<'MSG'

Envoy is ready on :10000 (admin on 127.0.0.1:9901). Try:
  curl -s localhost:10000/                       # b3, b2, b1, b3, b2, b3, ... (weights 1:2:3)
  for i in $(seq 6); do curl -s localhost:10000/; done
  curl -si localhost:10000/ | grep x-backend
  curl -s localhost:9901/stats/prometheus | grep '^lb_'   # the filter's metrics
  curl -s localhost:10000/.lb/status             # the pool as the filter sees it (loopback only)
  curl -si localhost:10000/ | grep endpoint-load-metrics   # the backend's load report (ORCA)
  pkill -f 'demo-backend --id b2'                # health checks take b2 out (Envoy logs it)
Ctrl-C stops everything.
MSG
    # Runs until Envoy exits or Ctrl-C. A backend may be stopped (kill it) to watch the health
    # checks take it out; Envoy's log shows the state changes.
    rc=0
    wait "$envoy_pid" || rc=$?
    # Ctrl-C reaches every process: Envoy exits 0 (or by the signal). Anything else is a failure.
    if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then
      exit 0
    fi
    echo "Envoy exited with status $rc; stopping the backends." >&2
    exit 1
  fi
  sleep 0.2
done
echo "Envoy did not become ready within 20 s (is :10000 or :9901 in use?)" >&2
exit 1

#!/usr/bin/env bash
# Captures the admin answers of src/discovery/testdata/ from a real Envoy (no wasm needed):
#
#   src/discovery/testdata/capture/capture.sh .venv/envoy-1.40.0/bin/envoy [out_dir]
#
# Starts hc_server.py and Envoy with bootstrap.yaml (admin on a free port), waits for the
# health checks, removes 127.0.0.61 from the `hc` cluster's EDS (it stays, pending_dynamic_removal,
# while its check passes), then writes <view>_<envoy version>.json to out_dir (default: testdata/).
set -euo pipefail

envoy=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath "${2:-$here/..}")
version=$("$envoy" --version | grep -o '/[0-9]*\.[0-9]*\.[0-9]*/' | tr -d /)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for f in bootstrap.yaml cds.yaml eds_backend.yaml eds_istio.yaml eds_static.yaml eds_hc.yaml \
  eds_hc_removed.yaml; do
  sed -e "s#@DIR@#$work#g" -e "s#@PORT@#$port#g" "$here/$f" >"$work/$f"
done
python3 "$here/hc_server.py" >"$work/hc.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  grep -q ready "$work/hc.log" && break
  sleep 0.1
done
"$envoy" -c "$work/bootstrap.yaml" --use-dynamic-base-id -l warn >"$work/envoy.log" 2>&1 &
pids+=($!)

admin="http://127.0.0.1:$port"
for _ in $(seq 50); do
  curl -sf "$admin/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 3 # a few health-check rounds
cp "$work/eds_hc_removed.yaml" "$work/eds_hc.tmp" && mv "$work/eds_hc.tmp" "$work/eds_hc.yaml"
sleep 3

eds="$admin/config_dump?include_eds&resource=dynamic_endpoint_configs&name_regex"
istio='outbound%5C%7C8080%5C%7C%5C%7Cbackend%5C.demo%5C.svc%5C.cluster%5C.local'
curl -sf "$eds=backend" >"$out/eds_$version.json"
curl -sf "$eds=$istio" >"$out/eds_istio_$version.json"
curl -sf "$eds=hc" >"$out/eds_hc_$version.json"
curl -sf "$eds=nomatch" >"$out/eds_nomatch_$version.json"
curl -sf "$admin/config_dump?include_eds&resource=static_endpoint_configs&name_regex=static_eds" \
  >"$out/eds_static_$version.json"
curl -sf "$admin/clusters?format=json" >"$out/clusters_$version.json"
curl -sf "$admin/clusters?format=json&filter=%5Ebackend%24" >"$out/clusters_filtered_$version.json"
echo "Envoy $version: wrote $out/*_$version.json"

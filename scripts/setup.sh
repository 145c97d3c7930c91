#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test the project: the bare-metal target the
# guests are built for, the sources of `core` and `alloc` for the Wasm runner's own target, and
# the Wasm targets the test Wasm modules and WASI programs are built
# for. Idempotent; the test script calls it too, and the build script of hyperlight-testing does
# the same itself.
set -euo pipefail
cd "$(dirname "$0")/.."
sysroot=$(rustc --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/x86_64-unknown-none" ]; then
  echo "setup: installing the x86_64-unknown-none target" >&2
  rustup target add x86_64-unknown-none
fi
if [ ! -d "$sysroot/lib/rustlib/wasm32-unknown-unknown" ]; then
  echo "setup: installing the wasm32-unknown-unknown target" >&2
  rustup target add wasm32-unknown-unknown
fi
if [ ! -d "$sysroot/lib/rustlib/wasm32-wasip1" ]; then
  echo "setup: installing the wasm32-wasip1 target (the test WASI programs)" >&2
  rustup target add wasm32-wasip1
fi
if [ ! -d "$sysroot/lib/rustlib/src/rust/library/core" ]; then
  echo "setup: installing rust-src (the Wasm runner's build compiles core and alloc from it)" >&2
  rustup component add rust-src
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "setup: warning: /dev/kvm is missing or not read-write for $(id -un); the KVM tests will fail" >&2
fi

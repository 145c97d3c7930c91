#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test the project: the bare-metal target the
# guests are built for. Idempotent; the test script and the guest build script call it too.
set -euo pipefail
cd "$(dirname "$0")/.."
sysroot=$(rustc --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/x86_64-unknown-none" ]; then
  echo "setup: installing the x86_64-unknown-none target" >&2
  rustup target add x86_64-unknown-none
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "setup: warning: /dev/kvm is missing or not read-write for $(id -un); the KVM tests will fail" >&2
fi

#!/usr/bin/env bash
# `cargo publish --dry-run` of the four library crates, in the order they would be published:
# hyperlight-schema, hyperlight-sys, hyperlight-async (one multi-package run of the root
# workspace: each is verified against the ones packaged before it), then the guest library
# hyperlight-async-guest of the guest workspace, verified against the local hyperlight-schema as if
# that were already on crates.io. Uploads nothing. Needs network access to crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo publish --dry-run "$@" -p hyperlight-schema -p hyperlight-sys -p hyperlight-async
(cd guest && cargo publish --dry-run "$@" -p hyperlight-async-guest \
  --config "patch.crates-io.hyperlight-schema.path=\"$(cd ../schema && pwd)\"")

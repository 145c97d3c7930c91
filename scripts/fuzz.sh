#!/usr/bin/env bash
# The fuzz targets of fuzz/ (cargo-fuzz, libFuzzer). See docs/fuzzing.md.
#
#   scripts/fuzz.sh ci                           build every target, run each briefly; fails on a crash
#   scripts/fuzz.sh list                         the targets
#   scripts/fuzz.sh build                        build every target
#   scripts/fuzz.sh run <target> [libFuzzer args]  fuzz with the target's corpus and dictionary
#   scripts/fuzz.sh campaign <target> <seconds> [libFuzzer args]
#                                                a long run; prints executions, exec/s, cov, ft
#   scripts/fuzz.sh cargo <cargo-fuzz args>      any cargo-fuzz command (tmin, cmin, fmt, ...)
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, sancov). The guests
# the end-to-end targets run are built for x86_64-unknown-none, which only the project's pinned
# toolchain (rust-toolchain.toml) has here, so by default the fuzzers are built with that
# toolchain and RUSTC_BOOTSTRAP=1 (which cargo-fuzz supports for exactly this). Set
# FUZZ_TOOLCHAIN=nightly to use a nightly toolchain instead (it must have x86_64-unknown-none).
#
# Knobs: FUZZ_CI_SECONDS (per decoding target in `ci`, default 20), FUZZ_CI_KVM_RUNS (runs per
# end-to-end target in `ci`, default 5000), FUZZ_CI_WASM_RUNS (runs of the Wasm target, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

decoding_targets=(decode_function_call decode_function_call_result decode_guest_error
  decode_log_record guest_message read_guest_message elf_load)
kvm_targets=(e2e_raw e2e_calls)
# Each input builds a sandbox of a module: far fewer runs per second than the other KVM targets.
wasm_targets=(wasm_module)

if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  cargo_fuzz=(cargo "+$FUZZ_TOOLCHAIN" fuzz)
else
  export RUSTC_BOOTSTRAP=1
  cargo_fuzz=(cargo fuzz)
fi

ensure_cargo_fuzz() {
  scripts/setup.sh
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    local start=$SECONDS
    cargo install cargo-fuzz --locked
    echo "fuzz: cargo-fuzz installed in $((SECONDS - start)) s" >&2
  fi
}

# The dictionary option of a target, if it has one.
dict_args() {
  local dict="$root/fuzz/dict/$1.dict"
  if [ -f "$dict" ]; then echo "-dict=$dict"; fi
}

# Extra seeds outside the checked-in corpus: the real guest binaries for the ELF loader, the
# Rust-built test modules for the Wasm runner.
extra_corpus() {
  if [ "$1" = wasm_module ]; then
    local dir="$root/fuzz/target/wasm-modules"
    mkdir -p "$dir"
    cp "$root"/testing/wasm-modules/target/wasm32-unknown-unknown/release/*.wasm "$dir/" 2>/dev/null || true
    echo "$dir"
  fi
  if [ "$1" = elf_load ]; then
    local dir="$root/fuzz/target/guest-elves"
    mkdir -p "$dir"
    local guest
    for guest in "$root"/guest/target/{x86_64-unknown-none,x86_64-hyperlight-none}/release/*; do
      if [ -f "$guest" ] && [ -x "$guest" ]; then cp "$guest" "$dir/"; fi
    done
    echo "$dir"
  fi
}

# libFuzzer options of every run: a timeout per input far above the slowest legitimate one (a
# guest call the watchdog cancels after 2 s, a restore), libFuzzer's default memory limit made
# explicit, and the final statistics.
common_args=(-timeout=30 -rss_limit_mb=2048 -print_final_stats=1)

build() {
  (cd fuzz && "${cargo_fuzz[@]}" build --debug-assertions)
}

# run <target> <corpus dir> <libFuzzer args...>: new inputs go to the corpus dir; the checked-in
# seeds (and the extra corpus) are read too.
run() {
  local target=$1 corpus=$2
  shift 2
  mkdir -p "$corpus"
  local dirs=("$corpus")
  local seeds="$root/fuzz/corpus/$target"
  if [ "$(cd "$corpus" && pwd)" != "$seeds" ]; then dirs+=("$seeds"); fi
  local extra
  extra=$(extra_corpus "$target")
  if [ -n "$extra" ]; then dirs+=("$extra"); fi
  # shellcheck disable=SC2046
  (cd fuzz && "${cargo_fuzz[@]}" run --debug-assertions "$target" "${dirs[@]}" -- \
    $(dict_args "$target") "${common_args[@]}" "$@")
}

case "${1:-}" in
  ci)
    ensure_cargo_fuzz
    start=$SECONDS
    build
    echo "fuzz: built every target in $((SECONDS - start)) s"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # ci_run <target> <what> <libFuzzer args...>: one brief run; its log is shown if it fails.
    ci_run() {
      local target=$1 what=$2
      shift 2
      echo "fuzz: $target for $what"
      run "$target" "$tmp/$target" "$@" 2>"$tmp/$target.log" ||
        { tail -50 "$tmp/$target.log"; echo "fuzz: $target FAILED" >&2; exit 1; }
      grep -E '^#[0-9]+[[:space:]]+DONE' "$tmp/$target.log" | tail -1 || true
    }
    for target in "${decoding_targets[@]}"; do
      ci_run "$target" "${FUZZ_CI_SECONDS:-20} s" -max_total_time="${FUZZ_CI_SECONDS:-20}"
    done
    for target in "${kvm_targets[@]}"; do
      ci_run "$target" "${FUZZ_CI_KVM_RUNS:-5000} runs" -runs="${FUZZ_CI_KVM_RUNS:-5000}" -max_total_time=120
    done
    for target in "${wasm_targets[@]}"; do
      ci_run "$target" "${FUZZ_CI_WASM_RUNS:-300} runs" -runs="${FUZZ_CI_WASM_RUNS:-300}" -max_total_time=120
    done
    echo "fuzz: every target ran without a crash ($((SECONDS - start)) s)"
    ;;
  list)
    printf '%s\n' "${decoding_targets[@]}" "${kvm_targets[@]}" "${wasm_targets[@]}"
    ;;
  build)
    ensure_cargo_fuzz
    build
    ;;
  run)
    [ $# -ge 2 ] || { echo "usage: $0 run <target> [libFuzzer args]" >&2; exit 2; }
    ensure_cargo_fuzz
    target=$2
    shift 2
    run "$target" "$root/fuzz/corpus/$target" "$@"
    ;;
  campaign)
    [ $# -ge 3 ] || { echo "usage: $0 campaign <target> <seconds> [libFuzzer args]" >&2; exit 2; }
    ensure_cargo_fuzz
    target=$2 seconds=$3
    shift 3
    build
    log="fuzz/target/campaign-$target.log"
    echo "fuzz: campaign $target for $seconds s, log in $log"
    status=0
    run "$target" "$root/fuzz/corpus/$target" -max_total_time="$seconds" "$@" 2>"$log" || status=$?
    # libFuzzer's final stats: executions, exec/s, edges (cov) and features (ft) covered.
    execs=$(grep -Eo 'stat::number_of_executed_units:[[:space:]]*[0-9]+' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    rate=$(grep -Eo 'stat::average_exec_per_sec:[[:space:]]*[0-9]+' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || true)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || true)
    if [ "$status" = 0 ]; then result="no crash"; else result="CRASH (exit $status, see $log)"; fi
    echo "| $target | $execs | $rate | $cov | $ft | $corp | $result |"
    exit "$status"
    ;;
  cargo)
    shift
    ensure_cargo_fuzz
    cd fuzz && "${cargo_fuzz[@]}" "$@"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

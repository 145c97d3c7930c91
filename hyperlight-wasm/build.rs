//! Builds the WebAssembly runner guest (`guest/wasm-runner`) for its target
//! (`guest/x86_64-hyperlight-none.json`: `x86_64-unknown-none` with SSE2) and tells the crate
//! where its ELF is (`HYPERLIGHT_WASM_RUNNER`), which the crate embeds. Shares its build code with
//! `hyperlight-testing`'s build script.

use std::env;
use std::path::PathBuf;

// Shared with hyperlight-testing's build script, which uses the parts that build the other guests.
#[allow(dead_code)]
#[path = "../testing/src/build_support.rs"]
mod build_support;
#[path = "../testing/src/env.rs"]
mod env_scrub;
use build_support::{build_wasm_runner, rerun_if_guest_changed};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .expect("hyperlight-wasm lives in the repository root")
        .to_path_buf();
    rerun_if_guest_changed(&repo);
    let runner = build_wasm_runner(&repo.join("guest"));
    println!(
        "cargo:rustc-env=HYPERLIGHT_WASM_RUNNER={}",
        runner.display()
    );
}

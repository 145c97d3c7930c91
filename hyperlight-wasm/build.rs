//! Builds the WebAssembly runner guest (`guest/wasm-runner`, with the rest of the guest
//! workspace) for `x86_64-unknown-none` and tells the crate where its ELF is
//! (`HYPERLIGHT_WASM_RUNNER`), which the crate embeds. Shares its build code with
//! `hyperlight-testing`'s build script.

use std::env;
use std::path::PathBuf;

#[path = "../testing/src/build_support.rs"]
mod build_support;
#[path = "../testing/src/env.rs"]
mod env_scrub;
use build_support::{build_workspace, rerun_if_guest_changed, GUEST_TARGET};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .expect("hyperlight-wasm lives in the repository root")
        .to_path_buf();
    rerun_if_guest_changed(&repo);
    let release = build_workspace(&repo.join("guest"), GUEST_TARGET, "guest");
    println!(
        "cargo:rustc-env=HYPERLIGHT_WASM_RUNNER={}",
        release.join("wasm-runner").display()
    );
}

//! What the build scripts that build nested workspaces share (`testing/build.rs` and
//! `hyperlight-wasm/build.rs` include this file with `#[path]`): the inputs of the guest
//! workspace, and building a workspace for a target with the target installed first.
//!
//! Each nested cargo gets its own target dir: the outer cargo holds the lock of its target dir
//! while build scripts run, so sharing it would deadlock. Environment variables the outer cargo
//! sets for build scripts (or that configure the *host* build) are removed, so that they do not
//! leak into the nested builds.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env_scrub::scrub_env;

/// The target the guests are built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";

/// Prints `cargo:rerun-if-changed` for every input of the guest workspace of the repository
/// `repo` (its sources, the schema it shares, the toolchain).
pub fn rerun_if_guest_changed(repo: &Path) {
    let guest_dir = repo.join("guest");
    for path in [
        guest_dir.join("Cargo.toml"),
        guest_dir.join("Cargo.lock"),
        guest_dir.join(".cargo/config.toml"),
        guest_dir.join("hyperlight-guest"),
        guest_dir.join("guests"),
        guest_dir.join("wasm-runner"),
        repo.join("schema/src"),
        repo.join("schema/Cargo.toml"),
        // The schema takes its dependency versions from the root workspace.
        repo.join("Cargo.toml"),
        repo.join("rust-toolchain.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
}

/// Runs `cargo build --release --workspace --target <target>` in the workspace `dir` with the
/// target dir `dir/target`, installing the target first if the toolchain lacks it, and returns
/// the directory of the built artifacts. Panics with the build's output if it fails; `what`
/// names the workspace's contents in the messages.
pub fn build_workspace(dir: &Path, target: &str, what: &str) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    ensure_target_installed(target, what);

    let target_dir = dir.join("target");
    let mut command = Command::new(&cargo);
    command
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(&target_dir);
    scrub_env(&mut command);
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{}` to build the {what}s: {e}",
            Path::new(&cargo).display()
        )
    });
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building the {what} workspace failed ({}): `cargo build --release --target {target}` in {}; its output is above",
            output.status,
            dir.display()
        );
    }
    target_dir.join(target).join("release")
}

/// Installs the standard library of `target` with rustup if the toolchain lacks it (a fresh
/// machine has only the host target; `rust-toolchain.toml` lists the others, but only rustup's
/// proxies act on that). `what` names what the target is for, in the messages.
fn ensure_target_installed(target: &str, what: &str) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(sysroot) = &sysroot {
        if sysroot
            .join("lib/rustlib")
            .join(target)
            .join("lib")
            .is_dir()
        {
            return;
        }
    }
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .unwrap_or_else(|e| {
            panic!("the {target} target is not installed and rustup cannot be run: {e}")
        });
    assert!(
        status.success(),
        "`rustup target add {target}` failed ({status}); install the target to build the {what}s"
    );
}

//! Builds the guest workspace (`../guest`) for `x86_64-unknown-none`, in release mode, into its own
//! target dir (`../guest/target`), and tells the crate where the binaries are
//! (`HYPERLIGHT_GUEST_DIR`).
//!
//! The nested cargo gets its own target dir: the outer cargo holds the lock of its target dir
//! while build scripts run, so sharing it would deadlock. Environment variables the outer cargo
//! sets for build scripts (or that configure the *host* build) are removed, so that they do not
//! leak into the guest build.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/env.rs"]
mod env_scrub;
use env_scrub::scrub_env;

const GUEST_TARGET: &str = "x86_64-unknown-none";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .expect("the testing crate lives in the repository root")
        .to_path_buf();
    let guest_dir = repo.join("guest");
    let target_dir = guest_dir.join("target");

    for path in [
        guest_dir.join("Cargo.toml"),
        guest_dir.join("Cargo.lock"),
        guest_dir.join(".cargo/config.toml"),
        guest_dir.join("hyperlight-guest"),
        guest_dir.join("guests"),
        repo.join("schema/src"),
        repo.join("schema/Cargo.toml"),
        // The schema takes its dependency versions from the root workspace.
        repo.join("Cargo.toml"),
        repo.join("rust-toolchain.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    ensure_target_installed();

    let mut command = Command::new(&cargo);
    command
        .current_dir(&guest_dir)
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            GUEST_TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    scrub_env(&mut command);
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{}` to build the guests: {e}",
            Path::new(&cargo).display()
        )
    });
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building the guest workspace failed ({}): `cargo build --release --target {GUEST_TARGET}` in {}; its output is above",
            output.status,
            guest_dir.display()
        );
    }

    let release_dir = target_dir.join(GUEST_TARGET).join("release");
    println!(
        "cargo:rustc-env=HYPERLIGHT_GUEST_DIR={}",
        release_dir.display()
    );
}

/// Installs the `x86_64-unknown-none` standard library with rustup if the toolchain lacks it (a
/// fresh machine has only the host target; `rust-toolchain.toml` lists it, but only rustup's
/// proxies act on that).
fn ensure_target_installed() {
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
            .join(GUEST_TARGET)
            .join("lib")
            .is_dir()
        {
            return;
        }
    }
    let status = Command::new("rustup")
        .args(["target", "add", GUEST_TARGET])
        .status()
        .unwrap_or_else(|e| {
            panic!("the {GUEST_TARGET} target is not installed and rustup cannot be run: {e}")
        });
    assert!(
        status.success(),
        "`rustup target add {GUEST_TARGET}` failed ({status}); install the target to build the guests"
    );
}

//! What the build scripts that build nested workspaces share (`testing/build.rs` and
//! `hyperlight-wasm/build.rs` include this file with `#[path]`): the inputs of the guest
//! workspace, building a workspace for a target with the target installed first, and building
//! the Wasm runner guest for its own target.
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

/// The target the native guests are built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";

/// The Wasm runner's crate in the guest workspace.
const RUNNER: &str = "wasm-runner";

/// The Wasm runner's target: the custom target spec `guest/x86_64-hyperlight-none.json`, which is
/// `x86_64-unknown-none` with SSE2 floats and their ABI (docs/wasm.md, "How the runner is built").
/// No toolchain ships a `core` for it, so the build compiles `core` and `alloc` from the
/// toolchain's `rust-src` (`-Z build-std`, with `RUSTC_BOOTSTRAP=1` on the pinned stable
/// toolchain, as `scripts/fuzz.sh` does for cargo-fuzz).
const RUNNER_TARGET: &str = "x86_64-hyperlight-none";

/// Prints `cargo:rerun-if-changed` for every input of the guest workspace of the repository
/// `repo` (its sources, the schema it shares, the toolchain).
pub fn rerun_if_guest_changed(repo: &Path) {
    let guest_dir = repo.join("guest");
    for path in [
        guest_dir.join("Cargo.toml"),
        guest_dir.join("Cargo.lock"),
        guest_dir.join(".cargo/config.toml"),
        guest_dir.join(format!("{RUNNER_TARGET}.json")),
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
    ensure_target_installed(target, what);
    cargo_build(dir, &["--workspace", "--target", target], what);
    dir.join("target").join(target).join("release")
}

/// Builds the native guests (every crate of the guest workspace `guest_dir` but the Wasm
/// runner) for [`GUEST_TARGET`] like [`build_workspace`], and returns their directory.
pub fn build_guests(guest_dir: &Path) -> PathBuf {
    ensure_target_installed(GUEST_TARGET, "guest");
    cargo_build(
        guest_dir,
        &["--workspace", "--exclude", RUNNER, "--target", GUEST_TARGET],
        "guest",
    );
    guest_dir.join("target").join(GUEST_TARGET).join("release")
}

/// Builds the Wasm runner guest of the guest workspace `guest_dir` for its target
/// ([`RUNNER_TARGET`]), installing the toolchain's `rust-src` first if it lacks it, and returns
/// the path of its ELF.
pub fn build_wasm_runner(guest_dir: &Path) -> PathBuf {
    ensure_rust_src();
    let spec = format!("{RUNNER_TARGET}.json");
    cargo_build(
        guest_dir,
        &[
            "-p",
            RUNNER,
            "--target",
            &spec,
            "-Z",
            "json-target-spec",
            "-Z",
            "build-std=core,alloc",
            // `memcpy` and friends, which a freestanding target has no libc for.
            "-Z",
            "build-std-features=compiler-builtins-mem",
        ],
        "Wasm runner",
    );
    guest_dir
        .join("target")
        .join(RUNNER_TARGET)
        .join("release")
        .join(RUNNER)
}

/// Runs `cargo build --release <args> --target-dir dir/target` in the workspace `dir`. Panics
/// with the build's output if it fails; `what` names what is built, in the messages.
fn cargo_build(dir: &Path, args: &[&str], what: &str) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target_dir = dir.join("target");
    let mut command = Command::new(&cargo);
    command
        .current_dir(dir)
        .arg("build")
        .arg("--release")
        .args(args)
        .arg("--target-dir")
        .arg(&target_dir);
    scrub_env(&mut command);
    if args.contains(&"-Z") {
        // The pinned toolchain is a stable one; this lets it take the `-Z` flags.
        command.env("RUSTC_BOOTSTRAP", "1");
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{}` to build the {what}: {e}",
            Path::new(&cargo).display()
        )
    });
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building the {what} failed ({}): `cargo build --release {}` in {}; its output is above",
            output.status,
            args.join(" "),
            dir.display()
        );
    }
}

/// The sysroot of the toolchain building this, if `rustc --print sysroot` answers.
fn sysroot() -> Option<PathBuf> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Runs `rustup <args>`, which installs a part of the toolchain that `what` needs; panics if it
/// fails.
fn rustup(args: &[&str], what: &str) {
    let status = Command::new("rustup")
        .args(args)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "{what} needs `rustup {}`, which cannot be run: {e}",
                args.join(" ")
            )
        });
    assert!(
        status.success(),
        "`rustup {}` failed ({status}); {what} needs it",
        args.join(" ")
    );
}

/// Installs the toolchain's `rust-src` component (the sources of `core` and `alloc` that
/// [`build_wasm_runner`] compiles) with rustup if the toolchain lacks it.
fn ensure_rust_src() {
    if sysroot().is_some_and(|sysroot| sysroot.join("lib/rustlib/src/rust/library/core").is_dir()) {
        return;
    }
    rustup(
        &["component", "add", "rust-src"],
        "building the Wasm runner",
    );
}

/// Installs the standard library of `target` with rustup if the toolchain lacks it (a fresh
/// machine has only the host target; `rust-toolchain.toml` lists the others, but only rustup's
/// proxies act on that). `what` names what the target is for, in the messages.
fn ensure_target_installed(target: &str, what: &str) {
    if sysroot().is_some_and(|sysroot| {
        sysroot
            .join("lib/rustlib")
            .join(target)
            .join("lib")
            .is_dir()
    }) {
        return;
    }
    rustup(&["target", "add", target], &format!("building the {what}s"));
}

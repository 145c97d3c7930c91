//! The test guests, built from source for the host's tests, benchmarks and examples.
//!
//! This crate's build script runs `cargo build --release` in the guest workspace (`guest/`, target
//! `x86_64-unknown-none`, target dir `guest/target`) whenever the guest sources, the schema or the
//! toolchain change, so depending on `hyperlight-testing` is all a host test needs to get
//! up-to-date guest ELF files:
//!
//! ```no_run
//! let elf = std::fs::read(hyperlight_testing::simple_guest()).unwrap();
//! assert_eq!(&elf[..4], b"\x7fELF");
//! ```
//!
//! It builds the test Wasm modules the same way (the `testing/wasm-modules` workspace, target
//! `wasm32-unknown-unknown`, target dir `testing/wasm-modules/target`), and compiles the
//! hand-written ones of `testing/wat` on request: [`wasm_bytes`]`("plugin")`, [`wat`]`("traps")`;
//! and the WASI programs of `testing/wasi-programs` for `wasm32-wasip1` and for the host:
//! [`wasi_program`]`("jsonfmt")`, [`wasi_native`]`("jsonfmt")`.
#![deny(missing_docs)]

mod env;
mod wasm;

pub use wasm::{wasi_native, wasi_program, wasm_bytes, wasm_module, wat, WASI_DIR, WASM_DIR};

use std::ffi::OsString;
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding the built guest binaries:
/// `<repo>/guest/target/x86_64-unknown-none/release`.
pub const GUEST_DIR: &str = env!("HYPERLIGHT_GUEST_DIR");

/// Path of the built guest binary `name` (a binary crate of the guest workspace, e.g. `"simple"`).
///
/// The file exists for every guest of the workspace once this crate has been built; the function
/// does not check.
pub fn guest_path(name: &str) -> PathBuf {
    Path::new(GUEST_DIR).join(name)
}

/// Path of the `simple` test guest (`guest/guests/simple`): echo functions, host calls, logging,
/// and deliberate faults; its crate documentation lists the functions.
pub fn simple_guest() -> PathBuf {
    guest_path("simple")
}

/// A `cargo` command for building a guest crate outside the guest workspace, as a user would in
/// a shell: the cargo (and toolchain) running this test or build, without the variables that
/// cargo set for the host build (`RUSTFLAGS`, `CARGO_TARGET_DIR`, `CARGO_PKG_*`, ...).
pub fn guest_cargo() -> Command {
    let mut command =
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    env::scrub_env(&mut command);
    command
}

/// Reports that the calling test cannot run on this machine, and why; the test then returns.
///
/// libtest has no way to mark a test skipped at run time, so such a test passes. This prints one
/// line, `SKIPPED: <test name>: <reason>`, straight to the process's stderr (past libtest's output
/// capture, so that it shows whether the test passes or not), and `scripts/test.sh` counts these
/// lines and reports them as skipped, not passed. The test name is the name of the thread libtest
/// runs the test on.
///
/// ```
/// if std::env::var_os("HOME").is_none() {
///     hyperlight_testing::skip("no HOME here");
///     return;
/// }
/// ```
pub fn skip(reason: impl Display) {
    let thread = std::thread::current();
    let line = format!("SKIPPED: {}: {reason}\n", thread.name().unwrap_or("?"));
    // One write, so that the line is not interleaved with the output of tests running in parallel.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The threads of this process that the hyperlight runtime started: vCPU threads, their
/// factories' spawners and waiting threads, helper and host-function worker threads, all named
/// `hyperlight-*`. Leak checks count these rather than every task of the process: KVM runs a
/// per-VM `kvm-nx-lpage-re` worker as a task of the process, from the VM's first run until some
/// time after the VM is gone, and Tokio keeps an idle blocking-pool thread for 10 s; neither is
/// the runtime's to end.
pub fn runtime_thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("hyperlight-"))
        .count()
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Waits (up to 30 s) until the fd count and [`runtime_thread_count`] are back to `fds` and
/// `threads` (vCPU threads of dropped sandboxes end asynchronously), then asserts that they are:
/// the leak check after a test's sandboxes are gone.
pub fn wait_for_counts(fds: usize, threads: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (fd_count() != fds || runtime_thread_count() != threads)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fd_count(), fds, "leaked file descriptors");
    assert_eq!(runtime_thread_count(), threads, "leaked threads");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_guest_is_a_static_pie() {
        let elf = std::fs::read(simple_guest()).expect("the build script built the simple guest");
        assert_eq!(&elf[..4], b"\x7fELF", "ELF magic");
        assert_eq!(elf[4], 2, "ELFCLASS64");
        assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 3, "e_type ET_DYN");
        assert_eq!(
            u16::from_le_bytes([elf[18], elf[19]]),
            62,
            "e_machine EM_X86_64"
        );
    }
}

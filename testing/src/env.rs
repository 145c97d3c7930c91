//! The environment of a nested cargo that builds guests: shared by the build script (which builds
//! the guest workspace) and the crate (whose [`guest_cargo`](crate::guest_cargo) builds guests
//! out of tree), which includes this file with `#[path]`.

use std::env;
use std::process::Command;

/// Whether `name` is a variable the outer cargo (or the host build's configuration) sets that
/// must not reach the nested guest build.
fn is_leaky(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        // scripts/fuzz.sh sets it for cargo-fuzz; the guest builds set it only where they need
        // it (the Wasm runner), so that a guest builds the same under every outer build.
        "RUSTC_BOOTSTRAP",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "CARGO_RUSTC_CURRENT_DIR",
        "CARGO_TARGET_TMPDIR",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "NUM_JOBS",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_FEATURE_",
        "CARGO_CFG_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        // CARGO_TARGET_DIR and CARGO_TARGET_<triple>_{RUSTFLAGS,LINKER,RUNNER}.
        "CARGO_TARGET_",
        // CARGO_BUILD_TARGET, CARGO_BUILD_RUSTFLAGS, CARGO_BUILD_TARGET_DIR, ...
        "CARGO_BUILD_",
        // The guest workspace has its own profiles.
        "CARGO_PROFILE_",
        // `cargo fix` and other internal variables.
        "__CARGO",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// Removes from `command` every variable [`is_leaky`] names.
pub(crate) fn scrub_env(command: &mut Command) {
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(is_leaky) {
            command.env_remove(&name);
        }
    }
}

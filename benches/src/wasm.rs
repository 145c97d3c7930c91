//! The Wasm benchmarks' modules: the test modules with the imports they declare, and the sizes
//! and expected results of the compute workloads.

use hyperlight_wasm::{WasmSandbox, WasmSandboxBuilder};

/// Rounds of `sha256_rounds` in one compute call (each hashes 1 KiB): about 5 ms in wasmi on the
/// host, 0.2 ms in Wasmtime.
pub const SHA256_ROUNDS: i32 = 50;

/// Steps of `nbody` in one compute call: about 1.5 ms in wasmi on the host, a little more in the
/// sandbox's runner.
pub const NBODY_STEPS: i32 = 2_000;

/// The system's energy after [`NBODY_STEPS`] steps, to 9 digits (wasmi and Wasmtime on the host
/// both give -0.169071606870; 1,000 steps give the benchmarks game's -0.169087605).
pub const NBODY_ENERGY: f64 = -0.169_071_607;

/// Checks an `nbody(NBODY_STEPS)` result against [`NBODY_ENERGY`]: a float workload that computes
/// wrongly (e.g. a broken soft-float routine) must not be timed.
pub fn check_nbody(engine: &str, energy: f64) {
    assert!(
        (energy - NBODY_ENERGY).abs() < 1e-9,
        "{engine}: nbody({NBODY_STEPS}) = {energy}, not {NBODY_ENERGY}"
    );
}

/// The bytes of the `plugin` test module (`testing/wasm-modules/plugin`, about 15 KiB).
pub fn plugin_bytes() -> Vec<u8> {
    hyperlight_testing::wasm_bytes("plugin")
}

/// The bytes of the `compute` test module (`testing/wasm-modules/compute`).
pub fn compute_bytes() -> Vec<u8> {
    hyperlight_testing::wasm_bytes("compute")
}

/// A builder for a `plugin` sandbox from its bytes, with the seven imports the module declares
/// (cheap ones: the benchmarks call exports that use none, or only `host_add`).
pub fn plugin_builder(bytes: impl Into<std::sync::Arc<[u8]>>) -> WasmSandboxBuilder {
    WasmSandbox::builder(bytes)
        .import("env", "host_add", crate::host_add)
        .import("env", "host_echo", |s: String| s)
        .import("env", "host_bytes", |b: Vec<u8>| b)
        .import("env", "host_f32", |x: f32| x)
        .import("env", "host_f64", |x: f64| x)
        .import("env", "host_i64", |x: i64| x)
        .import_async("env", "lookup", |key: String| async move { key })
}

/// A builder for a `plugin` sandbox: [`plugin_builder`] of [`plugin_bytes`].
pub fn plugin() -> WasmSandboxBuilder {
    plugin_builder(plugin_bytes())
}

/// A builder for a `compute` sandbox (the module has no imports).
pub fn compute() -> WasmSandboxBuilder {
    WasmSandbox::builder(compute_bytes())
}

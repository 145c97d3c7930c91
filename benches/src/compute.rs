//! The compute workloads of the `compute` test module, run by several engines and benchmarked
//! side by side: the sandbox's runner (wasmi in the micro-VM) and engines in this process.

use std::future::IntoFuture;

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;
use hyperlight_wasm::{Error, WasmSandbox};

use crate::wasm::{check_nbody, NBODY_STEPS, SHA256_ROUNDS};

/// An engine with one instance of the `compute` module. The methods panic if the call fails (a
/// trap, a sandbox error): a benchmark has nothing to measure then.
pub trait Compute {
    /// `sha256_rounds(n)`: `n` SHA-256 digests of 1 KiB, an integer workload.
    fn sha256_rounds(&mut self, n: i32) -> i32;
    /// `nbody(steps)`: the n-body simulation, a float workload.
    fn nbody(&mut self, steps: i32) -> f64;
}

/// The `compute` module in a [`WasmSandbox`] (wasmi inside the micro-VM, in the runner's SSE2
/// build), called from a current-thread runtime of its own.
pub struct SandboxCompute {
    runtime: tokio::runtime::Runtime,
    sandbox: WasmSandbox,
}

impl SandboxCompute {
    /// Builds the sandbox with the default limits.
    ///
    /// # Errors
    ///
    /// What [`hyperlight_wasm::WasmSandboxBuilder::build`] reports.
    ///
    /// # Panics
    ///
    /// If the runtime cannot be built.
    pub fn new() -> Result<SandboxCompute, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let sandbox = runtime.block_on(crate::wasm::compute().build())?;
        Ok(SandboxCompute { runtime, sandbox })
    }
}

impl Compute for SandboxCompute {
    fn sha256_rounds(&mut self, n: i32) -> i32 {
        self.runtime
            .block_on(
                self.sandbox
                    .call::<i32>("sha256_rounds", (n,))
                    .into_future(),
            )
            .expect("sha256_rounds in the sandbox")
    }

    fn nbody(&mut self, steps: i32) -> f64 {
        self.runtime
            .block_on(self.sandbox.call::<f64>("nbody", (steps,)).into_future())
            .expect("nbody in the sandbox")
    }
}

/// Runs both workloads on every engine and panics unless each computes what the first one does,
/// bit for bit (the `nbody` energy too: every engine does IEEE double arithmetic in the same
/// order), and the first one the reference energy of `nbody`: an engine that computes wrongly
/// (a broken float routine, a dispatch that overflows its stack) must not be timed.
pub fn check_agreement(engines: &mut [(&str, &mut dyn Compute)]) {
    let mut reference = None;
    for (name, engine) in engines.iter_mut() {
        let digest = engine.sha256_rounds(SHA256_ROUNDS);
        let energy = engine.nbody(NBODY_STEPS);
        check_nbody(name, energy);
        let (expected_digest, expected_energy) = *reference.get_or_insert((digest, energy));
        assert_eq!(
            digest, expected_digest,
            "{name}: sha256_rounds({SHA256_ROUNDS})"
        );
        assert_eq!(
            energy.to_bits(),
            expected_energy.to_bits(),
            "{name}: nbody({NBODY_STEPS}) = {energy}, the first engine's {expected_energy}"
        );
    }
}

/// Adds `sha256_rounds/<engine>` ([`SHA256_ROUNDS`]) and `nbody/<engine>` ([`NBODY_STEPS`]) of
/// every engine to `group`, after [`check_agreement`].
pub fn bench_compute(
    group: &mut BenchmarkGroup<'_, WallTime>,
    engines: &mut [(&str, &mut dyn Compute)],
) {
    check_agreement(engines);
    for (name, engine) in engines.iter_mut() {
        group.bench_function(format!("sha256_rounds/{name}"), |b| {
            b.iter(|| engine.sha256_rounds(std::hint::black_box(SHA256_ROUNDS)))
        });
    }
    for (name, engine) in engines.iter_mut() {
        group.bench_function(format!("nbody/{name}"), |b| {
            b.iter(|| engine.nbody(std::hint::black_box(NBODY_STEPS)))
        });
    }
}

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

/// Adds `sha256_rounds/<engine>` ([`SHA256_ROUNDS`]) and `nbody/<engine>` ([`NBODY_STEPS`]) of
/// every engine to `group`, after checking that each computes what the first one does (and the
/// reference energy for `nbody`).
pub fn bench_compute(
    group: &mut BenchmarkGroup<'_, WallTime>,
    engines: &mut [(&str, &mut dyn Compute)],
) {
    let mut reference = None;
    for (name, engine) in engines.iter_mut() {
        let digest = engine.sha256_rounds(SHA256_ROUNDS);
        let expected = *reference.get_or_insert(digest);
        assert_eq!(digest, expected, "{name}: sha256_rounds({SHA256_ROUNDS})");
        check_nbody(name, engine.nbody(NBODY_STEPS));
    }
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

//! The compute workloads run by Wasmtime in this process, beside wasmi in the sandbox and in
//! this process, in one run (feature `wasmtime`: Wasmtime stays out of the test build).

use criterion::Criterion;
use hyperlight_benches::compute::{bench_compute, Compute, SandboxCompute};
use hyperlight_benches::in_process::{Wasmi, Wasmtime};
use hyperlight_benches::wasm::compute_bytes;

fn compute(c: &mut Criterion) {
    let mut group = c.benchmark_group("wasm/compute_wasmtime");
    let bytes = compute_bytes();
    let mut sandbox = SandboxCompute::new().unwrap();
    let mut wasmi = Wasmi::new(&bytes).unwrap();
    let mut wasmtime = Wasmtime::new(&bytes).unwrap();
    let engines: &mut [(&str, &mut dyn Compute)] = &mut [
        ("sandbox_wasmi", &mut sandbox),
        ("in_process_wasmi", &mut wasmi),
        ("in_process_wasmtime", &mut wasmtime),
    ];
    bench_compute(&mut group, engines);
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    compute(&mut c);
    c.final_summary();
}

//! WebAssembly guests beside native guests and the raw KVM floor, in one run: export-call
//! latency, pool calls, compute in the sandbox against wasmi in this process, and start-up from
//! bytes and from the snapshot. Before Criterion runs, a one-off measurement prints the memory
//! per live Wasm sandbox.
//!
//! The Wasmtime cases are in the bench target `wasm_wasmtime` (feature `wasmtime`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use hyperlight_benches::compute::{bench_compute, Compute, SandboxCompute};
use hyperlight_benches::density::wasm_density;
use hyperlight_benches::in_process::Wasmi;
use hyperlight_benches::wasm::{compute_bytes, plugin, plugin_builder, plugin_bytes};
use hyperlight_benches::{callers_sharing, host_add, simple_async_sandbox};
use hyperlight_sys::floor::FloorVm;
use hyperlight_sys::{hypervisor_for, SandboxConfig};
use hyperlight_wasm::WasmSandbox;

/// Sandboxes forked for the memory measurement.
const DENSITY_SANDBOXES: usize = 100;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Memory per live Wasm sandbox: forks of a `plugin` sandbox, one `counter` call each.
fn density() {
    let runtime = current_thread();
    let density = runtime.block_on(async {
        let template = plugin().build().await.unwrap();
        wasm_density(&template, DENSITY_SANDBOXES, "counter")
            .await
            .unwrap()
    });
    eprintln!("wasm/density: {density}");
}

/// A trivial call of the native guest and of Wasm exports, and a guest -> host -> guest call of
/// each, all with the default configuration (waiters poll 100 µs), awaited on a current-thread
/// runtime; against the floor.
fn latency(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("wasm/latency");
    let hv = hypervisor_for(&SandboxConfig::default()).unwrap();
    let mut vm = FloorVm::new(&*hv).unwrap();
    group.bench_function("floor_kvm_round_trip", |b| {
        b.iter(|| vm.round_trip().unwrap())
    });
    let native = runtime
        .block_on(simple_async_sandbox(SandboxConfig::default().spin_wait))
        .unwrap();
    group.bench_function("native_trivial_call", |b| {
        b.to_async(&runtime)
            .iter(|| async { native.call::<()>("nop", ()).await.unwrap() })
    });
    group.bench_function("native_guest_host_guest_call", |b| {
        b.to_async(&runtime).iter(|| async {
            native
                .call::<i32>("call_host_add", (1i32, 2i32))
                .await
                .unwrap()
        })
    });
    let plugin = runtime.block_on(plugin().build()).unwrap();
    group.bench_function("wasm_export_call/plugin_add", |b| {
        b.to_async(&runtime)
            .iter(|| async { plugin.call::<i32>("add", (1i32, 2i32)).await.unwrap() })
    });
    // One import call (`host_add(0, 1)`) in the export call: Wasm -> host -> Wasm.
    group.bench_function("wasm_import_call/plugin_sum_host_1", |b| {
        b.to_async(&runtime)
            .iter(|| async { plugin.call::<i64>("sum_host", (1i32,)).await.unwrap() })
    });
    let wat = runtime
        .block_on(WasmSandbox::builder(hyperlight_testing::wat("start")).build())
        .unwrap();
    group.bench_function("wasm_export_call/wat_get", |b| {
        b.to_async(&runtime)
            .iter(|| async { wat.call::<i32>("get", ()).await.unwrap() })
    });
    group.finish();
}

/// Pools of 4 (a fresh instance per call): the native guest's `counter` against the plugin's, on
/// a multi-thread runtime, and the plugin's `upper("hello")`, whose string argument is the fresh
/// instance's first allocation (`cabi_realloc`), which grows its linear memory.
///
/// `wasm/pool` is the latency one caller sees: the pool gives each call the sandbox returned
/// last, so the call waits for that sandbox's restore (which runs on its thread after it
/// answered). `wasm/pool_saturated` is the time per call with 4 callers keeping all 4 sandboxes
/// busy, so every restore's CPU time is in it.
fn pool(c: &mut Criterion) {
    const SIZE: usize = 4;
    let runtime = multi_thread();
    let mut group = c.benchmark_group("wasm/pool");
    let native = runtime
        .block_on(hyperlight_async::SandboxPool::new(
            hyperlight_async::Sandbox::builder(hyperlight_testing::simple_guest())
                .host_fn("host_add", host_add),
            SIZE,
        ))
        .unwrap();
    let wasm = runtime.block_on(plugin().pool(SIZE)).unwrap();
    runtime.block_on(async {
        for _ in 0..2 * SIZE {
            assert_eq!(native.call::<u64>("counter", ()).await.unwrap(), 1);
            assert_eq!(wasm.call::<i32>("counter", ()).await.unwrap(), 1);
        }
    });
    group.bench_function("native_call/counter", |b| {
        b.to_async(&runtime)
            .iter(|| async { native.call::<u64>("counter", ()).await.unwrap() })
    });
    group.bench_function("wasm_call/counter", |b| {
        b.to_async(&runtime)
            .iter(|| async { wasm.call::<i32>("counter", ()).await.unwrap() })
    });
    // After the counter cases, so that the pages it writes do not weigh on theirs.
    let upper = runtime.block_on(async { wasm.call::<String>("upper", (hello(),)).await });
    assert_eq!(upper.unwrap(), "HELLO");
    group.bench_function("wasm_call/upper", |b| {
        b.to_async(&runtime)
            .iter(|| async { wasm.call::<String>("upper", (hello(),)).await.unwrap() })
    });
    group.finish();

    const CALLS: u64 = 64;
    let mut group = c.benchmark_group("wasm/pool_saturated");
    group.throughput(Throughput::Elements(CALLS));
    group.bench_function("native_call/counter", |b| {
        b.to_async(&runtime).iter(|| {
            callers_sharing(SIZE, CALLS, {
                let native = native.clone();
                move || {
                    let native = native.clone();
                    async move { assert_eq!(native.call::<u64>("counter", ()).await.unwrap(), 1) }
                }
            })
        })
    });
    group.bench_function("wasm_call/counter", |b| {
        b.to_async(&runtime).iter(|| {
            callers_sharing(SIZE, CALLS, {
                let wasm = wasm.clone();
                move || {
                    let wasm = wasm.clone();
                    async move { assert_eq!(wasm.call::<i32>("counter", ()).await.unwrap(), 1) }
                }
            })
        })
    });
    group.finish();
}

/// The argument of the `upper` calls.
fn hello() -> String {
    "hello".to_string()
}

/// The compute workloads run by wasmi in the sandbox (the runner's SSE2 build) and in this
/// process.
fn compute(c: &mut Criterion) {
    let mut group = c.benchmark_group("wasm/compute");
    let mut sandbox = SandboxCompute::new().unwrap();
    let mut wasmi = Wasmi::new(&compute_bytes()).unwrap();
    let engines: &mut [(&str, &mut dyn Compute)] = &mut [
        ("sandbox_wasmi", &mut sandbox),
        ("in_process_wasmi", &mut wasmi),
    ];
    bench_compute(&mut group, engines);
    group.finish();
}

/// Times `start` (build and first call), dropping what it returns outside the measurement.
async fn time_starts<F, Fut>(iters: u64, mut start: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = WasmSandbox>,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let begin = Instant::now();
        let sandbox = start().await;
        total += begin.elapsed();
        drop(sandbox);
    }
    total
}

/// From the plugin's `.wasm` bytes (about 15 KiB) to the first result, and from its
/// post-instantiation snapshot; against the floor's VM set-up plus its first run.
fn start(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("wasm/start");
    let hv = hypervisor_for(&SandboxConfig::default()).unwrap();
    group.bench_function("floor_vm_setup_and_first_run", |b| {
        b.iter_with_large_drop(|| {
            let mut vm = FloorVm::new(&*hv).unwrap();
            vm.round_trip().unwrap();
            vm
        })
    });
    let bytes: Arc<[u8]> = plugin_bytes().into();
    assert!(
        bytes.len() < 100 << 10,
        "the plugin is {} bytes",
        bytes.len()
    );
    group.bench_function("from_bytes_and_first_call/plugin", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            time_starts(iters, || async {
                let sandbox = plugin_builder(bytes.clone()).build().await.unwrap();
                assert_eq!(sandbox.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
                sandbox
            })
        })
    });
    let template = runtime.block_on(plugin().build()).unwrap();
    group.bench_function("fork_and_first_call/plugin", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            time_starts(iters, || async {
                let sandbox = template.fork().await.unwrap();
                assert_eq!(sandbox.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
                sandbox
            })
        })
    });
    group.finish();
}

fn main() {
    density();
    let mut c = Criterion::default().configure_from_args();
    latency(&mut c);
    pool(&mut c);
    compute(&mut c);
    start(&mut c);
    c.final_summary();
}

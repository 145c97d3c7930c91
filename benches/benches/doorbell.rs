//! Issue 17, part 2: calls to a hot sandbox parked (every call a `KVM_RUN` round trip) and
//! polling (the doorbell: posted through shared memory, no exit), against the raw KVM floor,
//! in one run. Every case runs twice: on an otherwise idle machine (`doorbell/*`) and beside a
//! thread that keeps one CPU busy (`doorbell_hog/*`), the setting of a loaded server.
//!
//! `cargo bench -p hyperlight-benches --bench doorbell`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hyperlight_benches::{bench_concurrent_trivial_calls, host_add};
use hyperlight_sys::floor::FloorVm;
use hyperlight_sys::{hypervisor_for, Sandbox, SandboxConfig};

/// The doorbell's longest window in the polling cases.
const WINDOW: Duration = Duration::from_millis(1);

/// A thread that keeps one CPU busy until dropped.
struct Hog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hog {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        Hog {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn config(window: Duration) -> SandboxConfig {
    SandboxConfig {
        poll_window: window,
        ..SandboxConfig::default()
    }
}

const MODES: [(&str, Duration); 2] = [("parked", Duration::ZERO), ("polling", WINDOW)];

fn async_sandbox(runtime: &tokio::runtime::Runtime, window: Duration) -> hyperlight_async::Sandbox {
    runtime
        .block_on(
            hyperlight_async::Sandbox::builder(hyperlight_testing::simple_guest())
                .config(config(window))
                .host_fn("host_add", host_add)
                .host_fn_async("host_echo", |s: String| async move { s })
                .build(),
        )
        .unwrap()
}

fn latency(c: &mut Criterion, group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    let hv = hypervisor_for(&SandboxConfig::default()).unwrap();
    let mut vm = FloorVm::new(&*hv).unwrap();
    group.bench_function("floor_kvm_round_trip", |b| {
        b.iter(|| vm.round_trip().unwrap())
    });
    for (mode, window) in MODES {
        let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
            .config(config(window))
            .host_fn("host_add", host_add)
            .build()
            .unwrap();
        group.bench_function(format!("trivial_call/{mode}"), |b| {
            b.iter(|| sb.call::<()>("nop", ()).unwrap())
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (mode, window) in MODES {
        let sb = async_sandbox(&runtime, window);
        group.bench_function(format!("async_trivial_call/{mode}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { sb.call::<()>("nop", ()).await.unwrap() })
        });
        group.bench_function(format!("async_guest_async_host_guest/{mode}"), |b| {
            b.to_async(&runtime).iter(|| async {
                sb.call::<String>("call_host_echo_string", ("x".to_string(),))
                    .await
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn throughput(c: &mut Criterion, group_name: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    const CALLS: u64 = 50;
    for n in [1usize, 100] {
        for (mode, window) in MODES {
            let sandboxes: Vec<_> = (0..n).map(|_| async_sandbox(&runtime, window)).collect();
            group.throughput(Throughput::Elements(n as u64 * CALLS));
            bench_concurrent_trivial_calls(
                &mut group,
                &runtime,
                BenchmarkId::new(format!("trivial_calls/{mode}"), n),
                &sandboxes,
                CALLS,
            );
        }
    }
    group.finish();
}

fn idle(c: &mut Criterion) {
    latency(c, "doorbell");
    throughput(c, "doorbell_throughput");
}

fn loaded(c: &mut Criterion) {
    let _hog = Hog::start();
    latency(c, "doorbell_hog");
    throughput(c, "doorbell_hog_throughput");
}

criterion_group!(benches, idle, loaded);
criterion_main!(benches);

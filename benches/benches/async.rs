//! The async API beside the blocking call and the raw KVM floor, in one run; and calls/s with
//! 1, 10, 100 and 1,000 concurrent sandboxes.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hyperlight_benches::{
    bench_concurrent_trivial_calls, callers_sharing, simple_async_sandbox, simple_sandbox,
};
use hyperlight_sys::floor::FloorVm;
use hyperlight_sys::{hypervisor_for, SandboxConfig};

const POLL: Duration = Duration::from_micros(100);

fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("latency");
    let hv = hypervisor_for(&SandboxConfig::default()).unwrap();
    let mut vm = FloorVm::new(&*hv).unwrap();
    group.bench_function("floor_kvm_round_trip", |b| {
        b.iter(|| vm.round_trip().unwrap())
    });
    let mut blocking = simple_sandbox().unwrap();
    group.bench_function("blocking_trivial_call", |b| {
        b.iter(|| blocking.call::<()>("nop", ()).unwrap())
    });
    for (flavor, runtime) in [
        (
            "current_thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi_thread",
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        for (poll_name, poll) in [("park", Duration::ZERO), ("poll_100us", POLL)] {
            let sb = runtime.block_on(simple_async_sandbox(poll)).unwrap();
            group.bench_function(format!("async_trivial_call/{flavor}/{poll_name}"), |b| {
                b.to_async(&runtime)
                    .iter(|| async { sb.call::<()>("nop", ()).await.unwrap() })
            });
            group.bench_function(
                format!("async_guest_host_guest_call/{flavor}/{poll_name}"),
                |b| {
                    b.to_async(&runtime).iter(|| async {
                        sb.call::<i32>("call_host_add", (1i32, 2i32)).await.unwrap()
                    })
                },
            );
        }
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("throughput");
    group.sample_size(10);
    const CALLS: u64 = 20;
    for n in [1usize, 10, 100, 1000] {
        let sandboxes: Vec<_> = runtime.block_on(async {
            let tasks: Vec<_> = (0..n)
                .map(|_| tokio::spawn(simple_async_sandbox(Duration::ZERO)))
                .collect();
            let mut out = Vec::with_capacity(n);
            for t in tasks {
                out.push(t.await.unwrap().unwrap());
            }
            out
        });
        group.throughput(Throughput::Elements(n as u64 * CALLS));
        bench_concurrent_trivial_calls(
            &mut group,
            &runtime,
            BenchmarkId::new("trivial_calls", n),
            &sandboxes,
            CALLS,
        );
    }
    group.finish();
}

fn pool(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("pool");
    let size = 4;
    let pool = runtime.block_on(async {
        let builder = hyperlight_async::Sandbox::builder(hyperlight_testing::simple_guest())
            .host_fn("host_add", hyperlight_benches::host_add);
        hyperlight_async::SandboxPool::new(builder, size)
            .await
            .unwrap()
    });
    // One caller: a fresh sandbox per call (restore included, after the result is returned).
    group.bench_function("call_latency/trivial", |b| {
        b.to_async(&runtime)
            .iter(|| async { pool.call::<()>("nop", ()).await.unwrap() })
    });
    group.bench_function("call_latency/guest_host_guest", |b| {
        b.to_async(&runtime).iter(|| async {
            pool.call::<i32>("call_host_add", (1i32, 2i32))
                .await
                .unwrap()
        })
    });
    // Many callers on a pool of `size`: calls/s with every call on a fresh sandbox.
    group.sample_size(10);
    const CALLS: u64 = 400;
    for callers in [4usize, 64] {
        group.throughput(Throughput::Elements(CALLS));
        group.bench_with_input(
            BenchmarkId::new("throughput_callers", callers),
            &callers,
            |b, &callers| {
                b.to_async(&runtime).iter(|| {
                    let pool = pool.clone();
                    callers_sharing(callers, CALLS, move || {
                        let pool = pool.clone();
                        async move { pool.call::<()>("nop", ()).await.unwrap() }
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, latency, throughput, pool);
criterion_main!(benches);

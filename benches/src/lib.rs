//! Shared set-up of the Criterion benchmarks in `benches/`: the sandboxes they measure, the Wasm
//! modules and the engines the Wasm sandbox is compared with.

pub mod compute;
pub mod density;
pub mod in_process;
pub mod wasm;

use hyperlight_sys::{Error, Sandbox};

/// The host function the benchmarked guest -> host -> guest call reaches.
pub fn host_add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}

/// The `simple` test guest with the host functions its benchmarked functions call.
pub fn simple_sandbox() -> Result<Sandbox, Error> {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", host_add)
        .build()
}

/// The same, as an async sandbox whose waiters poll for up to `spin_wait` before parking.
pub async fn simple_async_sandbox(
    spin_wait: std::time::Duration,
) -> Result<hyperlight_async::Sandbox, hyperlight_async::Error> {
    let config = hyperlight_sys::SandboxConfig {
        spin_wait,
        ..Default::default()
    };
    hyperlight_async::Sandbox::builder(hyperlight_testing::simple_guest())
        .config(config)
        .host_fn("host_add", host_add)
        .build()
        .await
}

/// `iters` rounds in which each of `sandboxes` makes `calls` trivial calls (`nop`) back to back
/// in a task of its own, all sandboxes at once; returns the time they took (for Criterion's
/// `iter_custom`). Call it on a multi-thread runtime.
pub async fn concurrent_trivial_calls(
    sandboxes: &[hyperlight_async::Sandbox],
    calls: u64,
    iters: u64,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    for _ in 0..iters {
        let tasks: Vec<_> = sandboxes
            .iter()
            .cloned()
            .map(|sb| {
                tokio::spawn(async move {
                    for _ in 0..calls {
                        sb.call::<()>("nop", ()).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    start.elapsed()
}

/// Adds benchmark `id` to `group`: the time of [`concurrent_trivial_calls`] on `sandboxes`, each
/// making `calls` calls per round, on `runtime` (multi-thread).
pub fn bench_concurrent_trivial_calls(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    id: criterion::BenchmarkId,
    sandboxes: &[hyperlight_async::Sandbox],
    calls: u64,
) {
    group.bench_with_input(id, sandboxes, |b, sandboxes| {
        b.to_async(runtime).iter_custom(|iters| {
            let sandboxes = sandboxes.to_vec();
            async move { concurrent_trivial_calls(&sandboxes, calls, iters).await }
        })
    });
}

/// `calls` calls of `call`, shared out among `callers` tasks that each make theirs one after
/// another (for a pool kept busy by several callers). Call it on a multi-thread runtime.
pub async fn callers_sharing<F, Fut>(callers: usize, calls: u64, call: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = calls / callers as u64;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    call().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[cfg(feature = "wasmi-wasi")]
pub mod wasi;

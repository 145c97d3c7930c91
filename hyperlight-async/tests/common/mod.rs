//! Shared helpers of the async KVM tests.
#![allow(dead_code)]

use std::time::Duration;

use hyperlight_async::{Sandbox, SandboxBuilder};

/// The `simple` guest with the host functions its functions call: `host_add` sync,
/// `host_echo` async, and `tick` (an async `() -> u64` that sleeps briefly).
pub fn simple() -> SandboxBuilder {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn_async("host_echo", |s: String| async move {
            tokio::task::yield_now().await;
            s
        })
        .host_fn_async("tick", || async {
            tokio::time::sleep(Duration::from_micros(50)).await;
            1u64
        })
}

/// Builds and drops one sandbox on a throw-away runtime, so that the process-wide state (the KVM
/// fd, the signal handler, the vCPU thread factories) exists, then returns the fd and thread
/// counts: the baseline for [`hyperlight_testing::wait_for_counts`] once the test's sandboxes are gone.
pub fn warm_up() -> (usize, usize) {
    let warm = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    warm.block_on(async { drop(simple().build().await.unwrap()) });
    drop(warm);
    (
        hyperlight_testing::fd_count(),
        hyperlight_testing::runtime_thread_count(),
    )
}

/// A multi-threaded runtime with two workers (the machines this runs on have two CPUs).
pub fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `condition` until it holds; panics with `what` if it does not within 10 s. For states
/// another task reaches at a moment the test cannot know (a pool's sandboxes all taken, callers
/// queued), instead of sleeping and hoping.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

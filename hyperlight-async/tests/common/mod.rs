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

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits (up to 30 s) until the fd and thread counts are back to `fds` and `threads`: vCPU
/// threads of dropped sandboxes end asynchronously.
pub fn wait_for_counts(fds: usize, threads: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (fd_count() != fds || thread_count() != threads) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fd_count(), fds, "leaked file descriptors");
    assert_eq!(thread_count(), threads, "leaked threads");
}

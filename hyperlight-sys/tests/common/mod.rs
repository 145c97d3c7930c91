//! Shared helpers of the KVM integration tests.
#![allow(dead_code)]

use hyperlight_sys::{Sandbox, SandboxBuilder};

/// A builder for the `simple` test guest with the host functions its functions call.
pub fn simple() -> SandboxBuilder {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn("host_echo", |s: String| s)
}

/// A builder for a sandbox from `snapshot` (of the `simple` guest) with the same host functions.
pub fn simple_from(snapshot: &hyperlight_sys::Snapshot) -> SandboxBuilder {
    Sandbox::builder(snapshot)
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn("host_echo", |s: String| s)
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

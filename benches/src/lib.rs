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

#[cfg(feature = "wasmi-wasi")]
pub mod wasi;

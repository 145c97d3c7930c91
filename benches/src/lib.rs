//! Shared set-up of the Criterion benchmarks in `benches/`: the sandboxes they measure.

use hyperlight_sys::{Error, Sandbox};

/// The `simple` test guest with the host functions its benchmarked functions call.
pub fn simple_sandbox() -> Result<Sandbox, Error> {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .build()
}

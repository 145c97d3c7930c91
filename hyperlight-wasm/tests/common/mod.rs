//! What the Wasm tests share: the plugin module with every import it declares.
#![allow(dead_code)]

use std::time::Duration;

use hyperlight_wasm::{Error, WasmSandbox, WasmSandboxBuilder};

/// A builder for the `plugin` module (testing/wasm-modules/plugin) with its seven imports; the
/// async `lookup` sleeps 1 ms and answers `value of <key>`.
pub fn plugin() -> WasmSandboxBuilder {
    WasmSandbox::builder(hyperlight_testing::wasm_bytes("plugin"))
        .import("env", "host_add", |a: i32, b: i32| a.wrapping_add(b))
        .import("env", "host_echo", |s: String| format!("echo: {s}"))
        .import("env", "host_bytes", |mut b: Vec<u8>| {
            b.push(0xff);
            b
        })
        .import("env", "host_f32", |x: f32| x * 2.0)
        .import("env", "host_f64", |x: f64| x * 2.0)
        .import("env", "host_i64", |x: i64| x + 1)
        .import_async("env", "lookup", |key: String| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            format!("value of {key}")
        })
}

/// A builder for the hand-written module `testing/wat/<name>.wat`.
pub fn wat(name: &str) -> WasmSandboxBuilder {
    WasmSandbox::builder(hyperlight_testing::wat(name))
}

/// The error `builder` fails to build with; panics if it builds.
pub async fn build_error(builder: WasmSandboxBuilder) -> Error {
    match builder.build().await {
        Ok(sandbox) => panic!("the build should fail, but built {sandbox:?}"),
        Err(error) => error,
    }
}

//! A small WASI program run per request, in one run: in a fresh sandbox instance (a
//! `WasmSandbox` restored after every run, and a `WasmPool`), in-process on wasmi with wasmi_wasi (a fresh
//! instance per run, no VM: `hyperlight_benches::wasi`), and as a process of its native build.
//! The program is `testing/wasi-programs/jsonfmt` (serde_json) on a 1 KiB JSON document.

use std::future::IntoFuture;
use std::io::Write;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion};
use hyperlight_benches::wasi::InProcessWasi;
use hyperlight_wasm::{WasiConfig, WasiRun, WasmSandbox};

fn input() -> Vec<u8> {
    let items: Vec<String> = (0..30)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}"}}"#))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

fn native(stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(hyperlight_testing::wasi_native("jsonfmt"))
        .arg("--compact")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap().stdout
}

fn wasi(c: &mut Criterion) {
    let wasm = hyperlight_testing::wasi_program("jsonfmt");
    let stdin = input();
    let args = vec!["jsonfmt".to_string(), "--compact".to_string()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sandbox, pool) = runtime.block_on(async {
        let builder = WasmSandbox::builder(wasm.clone()).wasi(WasiConfig::default());
        (
            builder.clone().build().await.unwrap(),
            builder.pool(1).await.unwrap(),
        )
    });
    let in_process = InProcessWasi::new(&wasm).unwrap();
    let request = || WasiRun {
        args: args.clone(),
        env: Vec::new(),
        stdin: stdin.clone(),
    };
    // The three give the same answer.
    let expected = native(&stdin);
    let sandboxed = runtime
        .block_on(sandbox.run(request()).into_future())
        .unwrap();
    assert_eq!(sandboxed.stdout, expected);
    let (code, stdout, _) = in_process.run(&["jsonfmt", "--compact"], &stdin).unwrap();
    assert_eq!((code, stdout), (0, expected));

    let mut group = c.benchmark_group("wasi_jsonfmt_1k");
    group.bench_function("sandbox_fresh_instance", |b| {
        b.to_async(&runtime)
            .iter(|| async { sandbox.run(request()).await.unwrap() })
    });
    group.bench_function("pool_fresh_instance", |b| {
        b.to_async(&runtime)
            .iter(|| async { pool.run(request()).await.unwrap() })
    });
    group.bench_function("wasmi_in_process_fresh_instance", |b| {
        b.iter(|| in_process.run(&["jsonfmt", "--compact"], &stdin).unwrap())
    });
    group.bench_function("native_process_spawn", |b| b.iter(|| native(&stdin)));
    group.finish();
}

criterion_group!(benches, wasi);
criterion_main!(benches);

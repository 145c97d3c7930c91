//! What recording metrics costs a trivial async call: the same call with no recorder installed
//! (each metric is a load of the global recorder and a no-op), then with a Prometheus recorder
//! (no HTTP listener) installed for the rest of the process, doing the real work of a scraped
//! server: counters, the call-duration histogram in buckets, periodic upkeep.
//!
//! `cargo bench -p hyperlight-benches --bench metrics`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hyperlight_benches::simple_async_sandbox;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

fn trivial_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sb = runtime
        .block_on(simple_async_sandbox(Duration::ZERO))
        .unwrap();
    let mut group = c.benchmark_group("metrics");
    group.bench_function("trivial_call/no_recorder", |b| {
        b.to_async(&runtime)
            .iter(|| async { sb.call::<()>("nop", ()).await.unwrap() })
    });
    // From here on, every call records into the recorder (it cannot be uninstalled).
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0],
        )
        .unwrap()
        .install_recorder()
        .unwrap();
    hyperlight_async::metrics::describe();
    let upkeep = handle.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        upkeep.run_upkeep();
    });
    group.bench_function("trivial_call/prometheus_recorder", |b| {
        b.to_async(&runtime)
            .iter(|| async { sb.call::<()>("nop", ()).await.unwrap() })
    });
    group.finish();
    // The calls were recorded.
    assert!(handle.render().contains("hyperlight_calls_total"));
}

criterion_group!(benches, trivial_call);
criterion_main!(benches);

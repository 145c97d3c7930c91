//! What recording metrics costs a trivial async call (`current_thread`, waiters poll 100 µs: the
//! fastest call, where a cost would show most): the same call with no recorder installed
//! (each metric is a load of the global recorder and a no-op), then with a Prometheus recorder
//! (no HTTP listener) installed for the rest of the process, doing the real work of a scraped
//! server: counters, the call-duration histogram in buckets, periodic upkeep. A call's time is
//! noisy next to what recording costs, so `record_ok_call` also measures the recording alone:
//! what a successful call records (`hyperlight_calls_total` and
//! `hyperlight_call_duration_seconds`), without and with the recorder.
//!
//! `cargo bench -p hyperlight-benches --bench metrics`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hyperlight_async::metrics::{CALLS, CALL_DURATION};
use hyperlight_benches::simple_async_sandbox;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

fn trivial_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sb = runtime
        .block_on(simple_async_sandbox(Duration::from_micros(100)))
        .unwrap();
    let mut group = c.benchmark_group("metrics");
    group.bench_function("trivial_call/no_recorder", |b| {
        b.to_async(&runtime)
            .iter(|| async { sb.call::<()>("nop", ()).await.unwrap() })
    });
    group.bench_function("record_ok_call/no_recorder", |b| b.iter(record_ok_call));
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
    group.bench_function("record_ok_call/prometheus_recorder", |b| {
        b.iter(record_ok_call)
    });
    group.finish();
    // The calls were recorded.
    assert!(handle.render().contains("hyperlight_calls_total"));
}

/// What `hyperlight-async` records for a call that succeeded.
fn record_ok_call() {
    metrics::counter!(CALLS).increment(1);
    metrics::histogram!(CALL_DURATION).record(std::hint::black_box(2e-5));
}

criterion_group!(benches, trivial_call);
criterion_main!(benches);

//! What each kind of call, restore and sandbox life records, read back from a Prometheus
//! recorder. One test in this binary, so that nothing else records into the process's recorder.

mod common;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use hyperlight_async::Error;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The samples of a Prometheus text exposition: `name{labels}` -> value (absent: 0).
struct Samples(HashMap<String, f64>);

impl Samples {
    fn of(handle: &PrometheusHandle) -> Self {
        Samples(
            handle
                .render()
                .lines()
                .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
                .map(|line| {
                    let (key, value) = line.rsplit_once(' ').unwrap();
                    (key.to_string(), value.parse().unwrap())
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }
}

/// Asserts that each sample moved by exactly the given amount since `before`.
#[track_caller]
fn assert_moved(handle: &PrometheusHandle, before: &Samples, moves: &[(&str, f64)]) -> Samples {
    let after = Samples::of(handle);
    for (key, by) in moves {
        assert_eq!(
            after.get(key) - before.get(key),
            *by,
            "{key}: {:?}",
            after.0
        );
    }
    after
}

const CALLS: &str = "hyperlight_calls_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_restores_and_sandboxes_are_counted_exactly() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    // `wait` tells the test it runs, then never completes.
    let builder = common::simple().host_fn_async("wait", move || {
        let started = started_tx.clone();
        async move {
            started.send(()).unwrap();
            std::future::pending::<u64>().await
        }
    });
    let s = Samples::of(&handle);
    let sb = builder.build().await.unwrap();
    let s = assert_moved(
        &handle,
        &s,
        &[
            ("hyperlight_sandboxes_created_total", 1.0),
            ("hyperlight_sandboxes_live", 1.0),
            ("hyperlight_sandbox_creation_duration_seconds_count", 1.0),
        ],
    );

    for _ in 0..3 {
        sb.call::<u64>("counter", ()).await.unwrap();
    }
    let s = assert_moved(
        &handle,
        &s,
        &[
            (CALLS, 3.0),
            ("hyperlight_call_duration_seconds_count", 3.0),
        ],
    );

    // A timeout, then the restore of the poisoned sandbox before the next call.
    let spun = sb
        .call::<()>("infinite_loop", ())
        .timeout(Duration::from_millis(20))
        .await;
    assert!(matches!(spun, Err(Error::Timeout { .. })), "{spun:?}");
    sb.call::<u64>("counter", ()).await.unwrap();
    let s = assert_moved(
        &handle,
        &s,
        &[
            (CALLS, 2.0),
            ("hyperlight_call_errors_total{kind=\"timeout\"}", 1.0),
            ("hyperlight_call_timeouts_total", 1.0),
            (
                "hyperlight_restores_total{reason=\"poisoned\",outcome=\"ok\"}",
                1.0,
            ),
            ("hyperlight_restore_duration_seconds_count", 1.0),
        ],
    );

    // A guest error, and an explicit restore.
    let missing = sb.call::<()>("no_such_function", ()).await;
    assert!(missing.is_err());
    sb.restore().await.unwrap();
    let s = assert_moved(
        &handle,
        &s,
        &[
            (CALLS, 1.0),
            ("hyperlight_call_errors_total{kind=\"guest_error\"}", 1.0),
            (
                "hyperlight_restores_total{reason=\"requested\",outcome=\"ok\"}",
                1.0,
            ),
        ],
    );

    // Killed through the interrupt handle while the guest awaits `wait`.
    let call = tokio::spawn(
        sb.call::<u64>("call_host_n", ("wait".to_string(), 1u32))
            .into_future(),
    );
    started.recv().await.unwrap();
    assert_ne!(sb.interrupt_handle().kill(), 0, "the call was running");
    let killed = call.await.unwrap();
    assert!(matches!(killed, Err(Error::Cancelled)), "{killed:?}");
    let s = assert_moved(
        &handle,
        &s,
        &[
            (CALLS, 1.0),
            ("hyperlight_call_errors_total{kind=\"cancelled\"}", 1.0),
            (
                "hyperlight_call_cancellations_total{reason=\"interrupt\"}",
                1.0,
            ),
        ],
    );

    // Dropped while the guest awaits `wait`: no result, a dropped cancellation.
    let call = sb
        .call::<u64>("call_host_n", ("wait".to_string(), 1u32))
        .into_future();
    tokio::select! {
        result = call => panic!("the call cannot finish: {result:?}"),
        _ = started.recv() => {}
    }
    let s = assert_moved(
        &handle,
        &s,
        &[
            (CALLS, 0.0),
            (
                "hyperlight_call_cancellations_total{reason=\"dropped\"}",
                1.0,
            ),
        ],
    );

    // The last handle dropped: one sandbox less.
    drop(sb);
    assert_moved(
        &handle,
        &s,
        &[
            ("hyperlight_sandboxes_live", -1.0),
            ("hyperlight_sandboxes_created_total", 0.0),
        ],
    );
}

//! The web server's `/metrics`: its counters move by exactly the calls a client made. One test
//! in this binary, so that nothing else records into the process's recorder.

use std::collections::HashMap;
use std::time::Duration;

mod common;

use common::{get_text as get, Server};

/// The samples of a Prometheus text exposition: `name{labels}` -> value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// How much sample `key` moved from `before` to `after` (absent: 0).
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_calls_made() {
    let handle = hyperlight_examples::web_server::install_metrics().unwrap();
    let pool = hyperlight_examples::web_server::pool(2).await.unwrap();
    let app = hyperlight_examples::web_server::with_metrics(
        hyperlight_examples::web_server::app(pool, Duration::from_millis(200)),
        handle,
    );
    let server = Server::start(app).await;
    let addr = server.addr;

    let before = scrape(addr).await;
    // The pool's two sandboxes were built and are alive.
    assert_eq!(
        before["hyperlight_sandboxes_created_total"], 2.0,
        "{before:?}"
    );
    assert_eq!(before["hyperlight_sandboxes_live"], 2.0);
    assert_eq!(before["hyperlight_pool_idle"], 2.0);

    const OK: usize = 7;
    for i in 0..OK {
        let (status, body) = get(addr, &format!("/add/{i}/1")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = get(addr, "/call/no_such_function").await;
    assert_eq!(status, 404);
    let (status, _) = get(addr, "/call/infinite_loop").await;
    assert_eq!(status, 504);

    let after = scrape(addr).await;
    let calls = OK + 2;
    assert_eq!(
        moved(&before, &after, "hyperlight_calls_total"),
        calls as f64,
        "{after:?}"
    );
    assert_eq!(
        moved(&before, &after, "hyperlight_call_duration_seconds_count"),
        calls as f64
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "hyperlight_call_errors_total{kind=\"guest_error\"}"
        ),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "hyperlight_call_errors_total{kind=\"timeout\"}"
        ),
        1.0
    );
    assert_eq!(
        moved(&before, &after, "hyperlight_call_timeouts_total"),
        1.0
    );
    assert_eq!(
        moved(&before, &after, "hyperlight_pool_timeouts_total"),
        0.0
    );
    // Every pooled call is restored after it on the vCPU thread; the timed-out one was also
    // restored by the pool.
    assert_eq!(
        moved(
            &before,
            &after,
            "hyperlight_restores_total{reason=\"fresh_per_call\",outcome=\"ok\"}"
        ),
        calls as f64,
        "{after:?}"
    );
    assert_eq!(
        moved(
            &before,
            &after,
            "hyperlight_restores_total{reason=\"requested\",outcome=\"ok\"}"
        ),
        1.0,
        "{after:?}"
    );
    // Nothing is running or waiting now; no sandbox was built or lost.
    assert_eq!(after["hyperlight_pool_busy"], 0.0);
    assert_eq!(after["hyperlight_pool_waiting"], 0.0);
    assert_eq!(after["hyperlight_pool_idle"], 2.0);
    assert_eq!(
        moved(&before, &after, "hyperlight_sandboxes_created_total"),
        0.0
    );
    assert_eq!(after["hyperlight_sandboxes_live"], 2.0);

    server.stop().await;
}

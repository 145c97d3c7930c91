//! The guest's init: bounded in time, and no host function may run during it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperlight_sys::{Error, Sandbox, SandboxConfig};

#[test]
fn an_init_that_never_finishes_is_killed_at_the_timeout() {
    let config = SandboxConfig {
        init_timeout: Duration::from_millis(200),
        ..SandboxConfig::default()
    };
    let start = Instant::now();
    let err = Sandbox::builder(hyperlight_testing::guest_path("init_loop"))
        .config(config)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::InitTimeout { timeout } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    // Generous bound: the kill itself is immediate; this only guards against a hang.
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn host_calls_during_init_are_refused_and_run_nothing() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut sb = Sandbox::builder(hyperlight_testing::guest_path("init_host_call"))
        .host_fn("host_add", move |a: i32, b: i32| {
            counter.fetch_add(1, Ordering::SeqCst);
            a + b
        })
        .build()
        .unwrap();
    let outcome: String = sb.call("init_result", ()).unwrap();
    assert!(outcome.starts_with("err:HostCallNotAllowed"), "{outcome}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // Once a guest function runs, the same host call is allowed.
    assert_eq!(sb.call::<i32>("call_host_add", (2i32, 3i32)).unwrap(), 5);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

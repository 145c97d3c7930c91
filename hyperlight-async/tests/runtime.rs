//! The async API never blocks a runtime thread, and timeouts kick the guest.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperlight_async::Error;

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_stop_other_tasks_on_a_current_thread_runtime() {
    let sb = common::simple().build().await.unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let max_gap_us = Arc::new(AtomicU64::new(0));
    let (t, g) = (ticks.clone(), max_gap_us.clone());
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        let mut last = Instant::now();
        loop {
            interval.tick().await;
            let now = Instant::now();
            g.fetch_max((now - last).as_micros() as u64, Ordering::Relaxed);
            last = now;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Once the ticker runs, spin the guest for a second on the only runtime thread.
    common::eventually("the ticker ticking", || ticks.load(Ordering::Relaxed) > 0).await;
    max_gap_us.store(0, Ordering::Relaxed);
    let before = ticks.load(Ordering::Relaxed);
    let result = sb
        .call::<()>("infinite_loop", ())
        .timeout(Duration::from_secs(1))
        .await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    ticker.abort();
    let ticked = ticks.load(Ordering::Relaxed) - before;
    // Blocked, the runtime would tick about once in that second and show a ~1 s gap.
    assert!(ticked > 200, "only {ticked} ticks while the guest spun");
    assert!(
        max_gap_us.load(Ordering::Relaxed) < 500_000,
        "a tick was held up by the guest"
    );
    assert_eq!(sb.call::<i32>("echo_i32", (1i32,)).await.unwrap(), 1);
}

#[tokio::test]
async fn timeout_of_an_infinite_loop_returns_promptly_and_the_sandbox_serves_the_next_call() {
    let sb = common::simple().build().await.unwrap();
    for _ in 0..3 {
        let limit = Duration::from_millis(100);
        let start = Instant::now();
        let err = sb
            .call::<()>("infinite_loop", ())
            .timeout(limit)
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(err, Error::Timeout { timeout } if timeout == limit),
            "{err:?}"
        );
        // Generous bound: a guard against a hang, not a latency measurement.
        assert!(took < limit + Duration::from_secs(5), "took {took:?}");
        assert!(err.poisons());
        assert_eq!(sb.call::<i32>("add", (2i32, 2i32)).await.unwrap(), 4);
    }
}

#[tokio::test]
async fn default_timeout_applies_and_per_call_timeout_overrides_it() {
    let sb = common::simple()
        .default_timeout(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    assert!(matches!(
        sb.call::<()>("infinite_loop", ()).await,
        Err(Error::Timeout { .. })
    ));
    assert_eq!(
        sb.call::<u64>("spin", (1000u64,))
            .timeout(Duration::from_secs(30))
            .await
            .unwrap(),
        1000
    );
}

#[tokio::test]
async fn interrupt_handle_cancels_the_running_call() {
    let sb = common::simple().build().await.unwrap();
    let handle = sb.interrupt_handle();
    let killer = tokio::spawn(async move {
        while handle.running_generation() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handle.kill();
    });
    assert!(matches!(
        sb.call::<()>("infinite_loop", ()).await,
        Err(Error::Cancelled)
    ));
    killer.await.unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (6i32,)).await.unwrap(), 6);
}

#[tokio::test]
async fn faults_poison_and_the_next_call_restores() {
    let sb = common::simple().build().await.unwrap();
    let err = sb.call::<u64>("divide_by_zero", (1u64,)).await.unwrap_err();
    assert!(err.poisons(), "{err:?}");
    assert_eq!(
        sb.call::<u64>("counter", ()).await.unwrap(),
        1,
        "state after restore is post-init"
    );
    assert_eq!(sb.call::<u64>("counter", ()).await.unwrap(), 2);
    sb.restore().await.unwrap();
    assert_eq!(sb.call::<u64>("counter", ()).await.unwrap(), 1);
}

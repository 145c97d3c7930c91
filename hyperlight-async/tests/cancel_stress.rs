//! At least 10,000 cancellations at random moments: in the guest, in an async host function,
//! while queued, and just as a call completes. No hang, no panic, no leaked thread or fd; every
//! call that completed returned the right value; every sandbox answers correctly afterwards.

mod common;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyperlight_async::{Error, Sandbox};
use rand::{Rng, SeedableRng};

/// Resolves after `n` yields: a cancellation point at a random, fine-grained moment (tokio's
/// timers have millisecond granularity).
async fn after_yields(n: u32) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// Runs `call`, dropping it if `cancel` resolves first; `None` if it was cancelled.
async fn race<T>(
    call: impl std::future::Future<Output = T>,
    cancel: impl std::future::Future<Output = ()>,
) -> Option<T> {
    tokio::select! {
        biased;
        out = call => Some(out),
        () = cancel => None,
    }
}

async fn worker(sb: Sandbox, seed: u64, cancelled: Arc<AtomicUsize>, target: usize) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut completed = 0;
    while cancelled.load(Ordering::Relaxed) < target {
        let yields = rng.random_range(0..200);
        let outcome = match rng.random_range(0..5) {
            // In the guest.
            0 => {
                let n = rng.random_range(1..200_000u64);
                race(
                    sb.call::<u64>("spin", (n,)).into_future(),
                    after_yields(yields),
                )
                .await
                .map(|r| (r, Some(n)))
            }
            // In an async host function (each tick sleeps 50 µs).
            1 => {
                let n = rng.random_range(1..20u32);
                race(
                    sb.call::<u64>("call_host_n", ("tick".to_string(), n))
                        .into_future(),
                    after_yields(yields),
                )
                .await
                .map(|r| (r, Some(u64::from(n))))
            }
            // Around completion of a trivial call.
            2 => race(
                sb.call::<u64>("echo_u64", (7u64,)).into_future(),
                after_yields(yields % 8),
            )
            .await
            .map(|r| (r, Some(7))),
            // While queued behind another call of the same sandbox.
            3 => {
                let first = sb.call::<u64>("echo_u64", (1u64,));
                let second = sb.call::<u64>("echo_u64", (2u64,));
                let (a, b) = tokio::join!(
                    first.into_future(),
                    race(second.into_future(), after_yields(yields % 4))
                );
                assert_eq!(a.unwrap(), 1);
                b.map(|r| (r, Some(2)))
            }
            // The call's own timeout (millisecond granularity).
            _ => {
                let r = sb
                    .call::<u64>("spin", (50_000u64,))
                    .timeout(Duration::from_millis(rng.random_range(0..2)))
                    .await;
                match r {
                    Err(Error::Timeout { .. }) => None,
                    other => Some((other, Some(50_000))),
                }
            }
        };
        match outcome {
            None => {
                cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Some((result, want)) => {
                assert_eq!(
                    result.unwrap(),
                    want.unwrap(),
                    "a completed call returned a wrong value"
                );
                completed += 1;
            }
        }
    }
    // Afterwards the sandbox answers correctly.
    assert_eq!(sb.call::<u64>("echo_u64", (42u64,)).await.unwrap(), 42);
    assert_eq!(
        sb.call::<i32>("call_host_add", (20i32, 22i32))
            .await
            .unwrap(),
        42
    );
    completed
}

#[test]
fn ten_thousand_cancellations_at_random_moments() {
    let target: usize = std::env::var("HYPERLIGHT_CANCELLATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (fds, threads) = common::warm_up();

    let runtime = common::two_worker_runtime();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let completed = runtime.block_on(async {
        let work = async {
            let mut tasks = Vec::new();
            for seed in 0..8u64 {
                let sb = common::simple().build().await.unwrap();
                tasks.push(tokio::spawn(worker(sb, seed, cancelled.clone(), target)));
            }
            let mut completed = 0;
            for task in tasks {
                completed += task.await.unwrap();
            }
            completed
        };
        // No hang: the whole run is bounded.
        tokio::time::timeout(Duration::from_secs(600), work)
            .await
            .expect("stress test hung")
    });
    runtime.shutdown_timeout(Duration::from_secs(30));
    let cancelled = cancelled.load(Ordering::Relaxed);
    eprintln!("{cancelled} cancellations, {completed} completed calls");
    assert!(cancelled >= target);
    assert!(completed > 0);
    hyperlight_testing::wait_for_counts(fds, threads);
}

//! `InterruptHandle::kill` ends a call at once also while its guest awaits an async host
//! function, and drops that function's future, as dropping the call does.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperlight_async::{Error, Sandbox};

/// What became of a host function's future.
#[derive(Default)]
struct Fate {
    started: AtomicBool,
    finished: AtomicBool,
    dropped: AtomicBool,
}

/// Sets `dropped` when the future holding it is dropped.
struct DropFlag(Arc<Fate>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// The `simple` guest with `host_fn_async("wait", ..)`: `body` is awaited, its fate recorded.
fn sandbox_awaiting<F>(fate: &Arc<Fate>, body: fn() -> F) -> hyperlight_async::SandboxBuilder
where
    F: Future<Output = ()> + Send + 'static,
{
    let fate = fate.clone();
    common::simple().host_fn_async("wait", move || {
        let fate = fate.clone();
        async move {
            let _flag = DropFlag(fate.clone());
            fate.started.store(true, Ordering::SeqCst);
            body().await;
            fate.finished.store(true, Ordering::SeqCst);
            1u64
        }
    })
}

/// Waits (polling, up to 30 s) until the host function has started, then kills the call.
fn kill_once_started(sb: &Sandbox, fate: &Arc<Fate>) -> tokio::task::JoinHandle<u64> {
    let (handle, fate) = (sb.interrupt_handle(), fate.clone());
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fate.started.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the host function never started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handle.kill()
    })
}

/// After a killed call: the host future was dropped unfinished, and the sandbox answers the
/// next call correctly, restored to its post-init state.
async fn check_after_kill(sb: &Sandbox, fate: &Fate) {
    assert!(
        fate.dropped.load(Ordering::SeqCst),
        "host future not dropped"
    );
    assert!(!fate.finished.load(Ordering::SeqCst), "host future ran on");
    assert_eq!(
        sb.call::<i32>("call_host_add", (40i32, 2i32))
            .await
            .unwrap(),
        42
    );
    assert_eq!(sb.call::<u64>("counter", ()).await.unwrap(), 1, "restored");
}

#[tokio::test]
async fn kill_ends_a_call_awaiting_a_slow_async_host_function_at_once() {
    const SLEEP: Duration = Duration::from_millis(1500);
    let fate = Arc::new(Fate::default());
    let sb = sandbox_awaiting(&fate, || tokio::time::sleep(SLEEP))
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let killer = kill_once_started(&sb, &fate);
    let result = sb
        .call::<u64>("call_host_n", ("wait".to_string(), 1u32))
        .await;
    let took = start.elapsed();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_ne!(killer.await.unwrap(), 0, "the kill found the call running");
    assert!(
        took < SLEEP,
        "the call ended after the host function's sleep: {took:?}"
    );
    check_after_kill(&sb, &fate).await;
}

#[tokio::test]
async fn kill_ends_a_call_awaiting_a_host_future_that_never_completes() {
    let fate = Arc::new(Fate::default());
    let sb = sandbox_awaiting(&fate, std::future::pending::<()>)
        .build()
        .await
        .unwrap();
    let killer = kill_once_started(&sb, &fate);
    // The outer timeout only turns a hang into a failure: the kill must end the call.
    let call = sb.call::<u64>("call_host_n", ("wait".to_string(), 1u32));
    let result = tokio::time::timeout(Duration::from_secs(30), call).await;
    assert!(matches!(result, Ok(Err(Error::Cancelled))), "{result:?}");
    assert_ne!(killer.await.unwrap(), 0);
    check_after_kill(&sb, &fate).await;
}

#[tokio::test]
async fn kills_racing_quick_async_host_calls_end_each_call_and_lose_no_reply() {
    // `tick` sleeps 50 µs: host replies and kills cross at many points of the exchange.
    let sb = common::simple().build().await.unwrap();
    for round in 0..20u64 {
        let handle = sb.interrupt_handle();
        let killer = tokio::spawn(async move {
            while handle.running_generation() == 0 {
                tokio::task::yield_now().await;
            }
            // Let a few host calls go by (more in later rounds), then kill.
            for _ in 0..round {
                tokio::task::yield_now().await;
            }
            handle.kill();
        });
        let result = sb
            .call::<u64>("call_host_n", ("tick".to_string(), 1_000_000u32))
            .timeout(Duration::from_secs(30))
            .await;
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        killer.await.unwrap();
        assert_eq!(
            sb.call::<i32>("add", (round as i32, 1i32)).await.unwrap(),
            round as i32 + 1
        );
    }
}

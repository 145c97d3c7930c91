//! `SandboxPool` on KVM: fresh state per call, FIFO waiting with timeouts, recovery, stats.

mod common;

use std::time::Duration;

use hyperlight_async::{Error, SandboxPool};

#[tokio::test]
async fn every_call_through_the_pool_sees_a_fresh_sandbox() {
    let pool = SandboxPool::new(common::simple(), 3).await.unwrap();
    for _ in 0..20 {
        assert_eq!(pool.call::<u64>("counter", ()).await.unwrap(), 1);
    }
    // Without restore one sandbox counts on.
    let sb = common::simple().build().await.unwrap();
    for want in 1..=3u64 {
        assert_eq!(sb.call::<u64>("counter", ()).await.unwrap(), want);
    }
    // Nothing of one call is readable by the next.
    let secret = b"pool-secret-91d3".to_vec();
    let xored: Vec<u8> = secret.iter().map(|b| b ^ 0xff).collect();
    pool.call::<Vec<u8>>("leave_secret", (secret,))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            pool.call::<u64>("count_bytes", (xored.clone(),))
                .await
                .unwrap(),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_beyond_the_size_wait_fifo_with_their_own_timeout() {
    let pool = SandboxPool::new(common::simple(), 2).await.unwrap();
    // Occupy both sandboxes.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.call::<()>("infinite_loop", ())
                    .timeout(Duration::from_millis(400))
                    .await
            })
        })
        .collect();
    common::eventually("both sandboxes busy", || pool.stats().busy == 2).await;
    // A caller with a short timeout gives up while waiting.
    let impatient = pool
        .call::<i32>("echo_i32", (1i32,))
        .timeout(Duration::from_millis(20))
        .await;
    assert!(
        matches!(impatient, Err(Error::Timeout { .. })),
        "{impatient:?}"
    );
    // Patient callers queue and all get served, in order, once the loops time out.
    let waiters: Vec<_> = (0..6i32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.call::<i32>("echo_i32", (i,))
                    .timeout(Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    common::eventually("a caller waiting", || pool.stats().waiting >= 1).await;
    for b in busy {
        assert!(matches!(b.await.unwrap(), Err(Error::Timeout { .. })));
    }
    for (i, w) in waiters.into_iter().enumerate() {
        assert_eq!(w.await.unwrap().unwrap(), i as i32);
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.size, stats.busy, stats.waiting),
        (2, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn faults_and_cancellations_leave_the_pool_healthy() {
    let pool = SandboxPool::new(common::simple(), 2).await.unwrap();
    for _ in 0..5 {
        assert!(pool.call::<u64>("divide_by_zero", (1u64,)).await.is_err());
        assert!(pool
            .call::<()>("do_panic", ("x".to_string(),))
            .await
            .is_err());
        let dropped = tokio::time::timeout(
            Duration::from_millis(5),
            pool.call::<()>("infinite_loop", ()).into_future_boxed(),
        )
        .await;
        assert!(dropped.is_err());
        assert_eq!(pool.call::<u64>("counter", ()).await.unwrap(), 1);
    }
    assert_eq!(pool.stats().busy, 0);
}

trait IntoFutureBoxed: std::future::IntoFuture + Sized {
    fn into_future_boxed(self) -> Self::IntoFuture {
        self.into_future()
    }
}
impl<T: std::future::IntoFuture> IntoFutureBoxed for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers() {
    let pool = SandboxPool::new(common::simple(), 4).await.unwrap();
    let tasks: Vec<_> = (0..200i32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let sum: i32 = pool.call("call_host_add", (i, 1i32)).await.unwrap();
                assert_eq!(sum, i + 1);
                assert_eq!(pool.call::<u64>("counter", ()).await.unwrap(), 1);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

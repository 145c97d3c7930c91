//! Dropping sandboxes, even mid-call, ends their threads and closes their fds.

mod common;

use std::time::Duration;

#[test]
fn dropping_the_last_handle_mid_call_ends_the_vcpu_thread() {
    let (fds, threads) = common::warm_up();
    let runtime = common::two_worker_runtime();
    runtime.block_on(async {
        for _ in 0..20 {
            let sb = common::simple().build().await.unwrap();
            let clone = sb.clone();
            // A call spinning forever in the guest, in another task holding a clone.
            let running = tokio::spawn(async move { clone.call::<()>("infinite_loop", ()).await });
            tokio::time::sleep(Duration::from_millis(5)).await;
            running.abort();
            let _ = running.await;
            drop(sb);
        }
        for _ in 0..20 {
            // Dropped while an async host function is awaited.
            let sb = common::simple()
                .host_fn_async("tick", || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    0u64
                })
                .build()
                .await
                .unwrap();
            let call = sb.call::<u64>("call_host_n", ("tick".to_string(), 1u32));
            drop(sb);
            assert!(tokio::time::timeout(Duration::from_millis(5), call)
                .await
                .is_err());
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(30));
    hyperlight_testing::wait_for_counts(fds, threads);
}

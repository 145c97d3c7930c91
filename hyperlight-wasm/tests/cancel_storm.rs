//! A cancellation storm on Wasm calls whose async import is pending, or that run in the guest:
//! every cancelled call leaves its sandbox usable, and when the sandboxes are gone no thread or
//! fd is left behind.

mod common;

use std::future::IntoFuture;
use std::time::Duration;

use hyperlight_wasm::{Error, WasmSandbox};

const SANDBOXES: usize = 4;
const ROUNDS: usize = 250;

async fn storm(sandbox: WasmSandbox, seed: usize) -> usize {
    let mut cancelled = 0;
    for round in 0..ROUNDS {
        let key = format!("k{seed}-{round}");
        // Dropped after a varying number of yields: before the call starts, while the runner
        // runs, or while the import's 1 ms sleep is pending.
        let yields = (round * 7 + seed * 13) % 40;
        let call = sandbox
            .call::<String>("lookup", (key.clone(),))
            .into_future();
        let outcome = tokio::select! {
            biased;
            out = call => Some(out),
            () = async { for _ in 0..yields { tokio::task::yield_now().await } } => None,
        };
        match outcome {
            Some(result) => assert_eq!(result.unwrap(), format!("value of {key}")),
            None => cancelled += 1,
        }
        // Every few rounds, a timeout in the middle of 10,000 import calls.
        if round % 25 == 0 {
            let err = sandbox
                .call::<i64>("sum_host", (i32::MAX,))
                .timeout(Duration::from_millis(2))
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Sandbox(hyperlight_async::Error::Timeout { .. })),
                "{err:?}"
            );
            cancelled += 1;
        }
        // The sandbox answers right after a cancellation.
        if round % 10 == 0 {
            assert_eq!(sandbox.call::<i32>("add", (2i32, 2i32)).await.unwrap(), 4);
        }
    }
    cancelled
}

#[test]
fn cancelled_wasm_calls_leak_nothing() {
    let warm = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    warm.block_on(async { drop(common::plugin().build().await.unwrap()) });
    drop(warm);
    let (fds, threads) = (
        hyperlight_testing::fd_count(),
        hyperlight_testing::runtime_thread_count(),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancelled: usize = runtime.block_on(async {
        let mut tasks = Vec::new();
        for seed in 0..SANDBOXES {
            let sandbox = common::plugin().build().await.unwrap();
            tasks.push(tokio::spawn(storm(sandbox, seed)));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    });
    drop(runtime);
    assert!(
        cancelled >= SANDBOXES * ROUNDS / 4,
        "only {cancelled} calls were cancelled"
    );
    hyperlight_testing::wait_for_counts(fds, threads);
}

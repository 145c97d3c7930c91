//! Thousands of sandboxes created concurrently with `tokio::spawn`.

mod common;

use std::time::Instant;

#[test]
fn thousand_sandboxes_concurrently_ten_calls_each() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: i32 = std::env::var("HYPERLIGHT_MANY_SANDBOXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let start = Instant::now();
    let total = runtime.block_on(async move {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                tokio::spawn(async move {
                    let sb = common::simple().build().await.unwrap();
                    let mut done = 0;
                    for j in 0..10i32 {
                        // Alternate a guest-only call and a guest -> host -> guest call.
                        let want = i.wrapping_mul(10).wrapping_add(j);
                        let got: i32 = if j % 2 == 0 {
                            sb.call("add", (i.wrapping_mul(10), j)).await.unwrap()
                        } else {
                            sb.call("call_host_add", (i.wrapping_mul(10), j))
                                .await
                                .unwrap()
                        };
                        assert_eq!(got, want, "sandbox {i} call {j}");
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    });
    assert_eq!(total, n * 10);
    eprintln!("{n} sandboxes x 10 calls in {:?}", start.elapsed());
}

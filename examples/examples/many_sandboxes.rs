//! Runs many sandboxes concurrently with `tokio::spawn` and prints calls per second.
//!
//! ```text
//! cargo run --release --example many_sandboxes -- [SANDBOXES] [CALLS_PER_SANDBOX] [SPIN_US]
//! ```
//! Defaults: 100 sandboxes, 1,000 calls each, and the default `SandboxConfig::spin_wait`.
//! Every other call goes guest -> host -> guest.

use std::time::{Duration, Instant};

use hyperlight_async::{Error, Sandbox, SandboxConfig};

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let sandboxes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let calls: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mut config = SandboxConfig::default();
    if let Some(spin) = args.next().and_then(|a| a.parse().ok()) {
        config.spin_wait = Duration::from_micros(spin);
    }

    let rss_before = vm_rss_kib();
    let start = Instant::now();
    let builds: Vec<_> = (0..sandboxes)
        .map(|_| {
            tokio::spawn(
                Sandbox::builder(hyperlight_testing::simple_guest())
                    .config(config.clone())
                    .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
                    .default_timeout(Duration::from_secs(10))
                    .build(),
            )
        })
        .collect();
    let mut pool = Vec::with_capacity(sandboxes);
    for build in builds {
        pool.push(build.await.expect("build task")?);
    }
    let built = start.elapsed();
    let rss_after = vm_rss_kib();
    println!(
        "{sandboxes} sandboxes created in {built:?} ({:.0} µs each); RSS +{} KiB ({} KiB each)",
        built.as_secs_f64() * 1e6 / sandboxes as f64,
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) / sandboxes as u64
    );

    let start = Instant::now();
    let tasks: Vec<_> = pool
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, sb)| {
            tokio::spawn(async move {
                for j in 0..calls {
                    let (a, b) = (i as i32, j as i32);
                    let sum: i32 = if j % 2 == 0 {
                        sb.call("add", (a, b)).await?
                    } else {
                        sb.call("call_host_add", (a, b)).await?
                    };
                    assert_eq!(sum, a.wrapping_add(b));
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("call task")?;
    }
    let elapsed = start.elapsed();
    let total = sandboxes as f64 * f64::from(calls);
    println!(
        "{total:.0} calls in {elapsed:?}: {:.0} calls/s",
        total / elapsed.as_secs_f64()
    );
    Ok(())
}

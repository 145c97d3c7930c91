//! Many sandboxes driven concurrently with `tokio::spawn`: calls per second.

use std::time::{Duration, Instant};

use hyperlight_async::{Error, Sandbox, SandboxConfig};

/// What [`run`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Time to create all sandboxes (concurrently).
    pub build: Duration,
    /// Resident memory growth while they were created, KiB.
    pub rss_growth_kib: u64,
    /// Calls made in total.
    pub calls: u64,
    /// Time for all calls.
    pub elapsed: Duration,
}

impl Report {
    /// Calls per second.
    pub fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Creates `sandboxes` sandboxes of the `simple` guest concurrently, then makes `calls` calls on
/// each from its own task (every other one guest -> host -> guest), checking every result.
pub async fn run(sandboxes: usize, calls: u32, config: SandboxConfig) -> Result<Report, Error> {
    let rss_before = rss_kib();
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
    let build = start.elapsed();
    let rss_growth_kib = rss_kib().saturating_sub(rss_before);
    let start = Instant::now();
    let tasks: Vec<_> = pool
        .into_iter()
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
    Ok(Report {
        build,
        rss_growth_kib,
        calls: sandboxes as u64 * u64::from(calls),
        elapsed: start.elapsed(),
    })
}

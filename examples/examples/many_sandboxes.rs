//! Runs many sandboxes concurrently with `tokio::spawn` and prints calls per second.
//!
//! ```text
//! cargo run --release --example many_sandboxes -- [SANDBOXES] [CALLS_PER_SANDBOX] [SPIN_US]
//! ```
//! Defaults: 100 sandboxes, 1,000 calls each, and the default `SandboxConfig::spin_wait`.
//! Every other call goes guest -> host -> guest.

use std::time::Duration;

use hyperlight_async::{Error, SandboxConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let sandboxes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let calls: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let mut config = SandboxConfig::default();
    if let Some(spin) = args.next().and_then(|a| a.parse().ok()) {
        config.spin_wait = Duration::from_micros(spin);
    }
    let report = hyperlight_examples::many::run(sandboxes, calls, config).await?;
    println!(
        "{sandboxes} sandboxes created in {:?} ({:.0} µs each); RSS +{} KiB",
        report.build,
        report.build.as_secs_f64() * 1e6 / sandboxes as f64,
        report.rss_growth_kib
    );
    println!(
        "{} calls in {:?}: {:.0} calls/s",
        report.calls,
        report.elapsed,
        report.calls_per_second()
    );
    Ok(())
}

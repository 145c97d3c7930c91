//! Keeps N sandboxes of one guest alive in one process, created from its post-init snapshot,
//! and reports time and memory (RSS and PSS) per sandbox.
//!
//! ```text
//! cargo run --release --example density -- [SANDBOXES]   # default 10,000
//! ```

fn main() -> Result<(), hyperlight_sys::Error> {
    let wanted: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let (n, limit) = hyperlight_examples::density::max_sandboxes(wanted);
    if n < wanted {
        println!("{limit:?}: {n} sandboxes fit in this process, not {wanted}");
    }
    let report = hyperlight_examples::density::run(n)?;
    let (rss, pss) = report.per_sandbox_kib();
    println!("{n} live sandboxes from one snapshot");
    println!(
        "  create: {:?} ({:.0} µs each)",
        report.create,
        report.create.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "  one call each: {:?} ({:.1} µs each)",
        report.call,
        report.call.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "  memory: RSS {} -> {} KiB, PSS {} -> {} KiB: {rss:.1} KiB RSS, {pss:.1} KiB PSS per sandbox",
        report.before.rss_kib, report.alive.rss_kib, report.before.pss_kib, report.alive.pss_kib
    );
    println!("  teardown: {:?}", report.teardown);
    Ok(())
}

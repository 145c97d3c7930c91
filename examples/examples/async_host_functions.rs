//! A host function doing real async I/O: guests look keys up in a key-value service on loopback
//! through an async host function, many sandboxes at once.
//!
//! ```text
//! cargo run --release --example async_host_functions -- [SANDBOXES] [LOOKUPS]
//! ```
//! Defaults: 16 sandboxes, 2,000 lookups.

use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), hyperlight_async::Error> {
    let mut args = std::env::args().skip(1);
    let sandboxes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let lookups: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let start = Instant::now();
    let done = hyperlight_examples::async_io::run(sandboxes, lookups).await?;
    let elapsed = start.elapsed();
    println!(
        "{done} guest calls, each awaiting a TCP round trip in a host function, over {sandboxes} sandboxes in {elapsed:?}: {:.0} calls/s",
        done as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

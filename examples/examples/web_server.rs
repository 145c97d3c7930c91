//! An HTTP server that runs a guest function per request through a `SandboxPool`.
//!
//! ```text
//! cargo run --release --example web_server -- [ADDR] [POOL_SIZE] [TIMEOUT_MS]
//! curl http://127.0.0.1:3000/add/40/2          # {"result":42}
//! curl http://127.0.0.1:3000/spin/100000000000 # 504 with a JSON error after the timeout
//! curl http://127.0.0.1:3000/call/no_such_fn   # 404 with a JSON error
//! curl http://127.0.0.1:3000/metrics           # Prometheus text: hyperlight_calls_total ...
//! ```
//! Defaults: 127.0.0.1:3000, 4 sandboxes, 1000 ms. Ctrl-C shuts down gracefully.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let timeout = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(1000));
    // Before the pool, so that its sandboxes' builds are counted.
    let metrics = hyperlight_examples::web_server::install_metrics()?;
    let pool = hyperlight_examples::web_server::pool(size).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} with {size} sandboxes, {timeout:?} per request",
        listener.local_addr()?
    );
    let app = hyperlight_examples::web_server::with_metrics(
        hyperlight_examples::web_server::app(pool, timeout),
        metrics,
    );
    hyperlight_examples::web_server::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await?;
    Ok(())
}

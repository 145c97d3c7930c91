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

use hyperlight_examples::web_server::{self, ServerArgs};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = ServerArgs::from_env();
    // Before the pool, so that its sandboxes' builds are counted.
    let metrics = web_server::install_metrics()?;
    let pool = web_server::pool(args.size).await?;
    let app = web_server::with_metrics(web_server::app(pool, args.timeout), metrics);
    args.serve_until_ctrl_c(&format!("{} sandboxes", args.size), app)
        .await?;
    Ok(())
}

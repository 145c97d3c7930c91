//! An HTTP server that calls a WebAssembly module's export per request, each in a fresh instance
//! (a `WasmPool`).
//!
//! ```text
//! cargo run --release --example wasm_server -- [ADDR] [POOL_SIZE] [TIMEOUT_MS]
//! curl http://127.0.0.1:3000/upper/hello      # {"result":"HELLO"}
//! curl http://127.0.0.1:3000/lookup/k         # {"result":"value of k"} (an async import)
//! curl http://127.0.0.1:3000/sum/2000000000   # 504 with a JSON error after the timeout
//! curl http://127.0.0.1:3000/call/fail        # 422: the export trapped (unreachable)
//! ```
//! Defaults: 127.0.0.1:3000, 4 sandboxes, 1000 ms. Ctrl-C shuts down gracefully.
//! `EXAMPLE=wasm_server scripts/load.sh` loads it.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let timeout = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(1000));
    let pool = hyperlight_examples::wasm_server::pool(size).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} with {size} Wasm sandboxes, {timeout:?} per request",
        listener.local_addr()?
    );
    let app = hyperlight_examples::wasm_server::app(pool, timeout);
    hyperlight_examples::web_server::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await?;
    Ok(())
}

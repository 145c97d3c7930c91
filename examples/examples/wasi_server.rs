//! An HTTP server that runs a WASI program (testing/wasi-programs/jsonfmt) on each request
//! body, each run in a fresh instance (a `WasmPool`).
//!
//! ```text
//! cargo run --release --example wasi_server -- [ADDR] [POOL_SIZE] [TIMEOUT_MS]
//! curl -d '{"b": 1, "a": [true]}' http://127.0.0.1:3000/run   # 200 {"a":[true],"b":1}
//! curl -d 'not json' http://127.0.0.1:3000/run                # 422 with the program's stderr
//! ```
//! Defaults: 127.0.0.1:3000, 4 sandboxes, 1000 ms. Ctrl-C shuts down gracefully.
//! `EXAMPLE=wasi_server scripts/load.sh` loads it.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let timeout = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(1000));
    let wasm = hyperlight_examples::wasi_server::jsonfmt();
    let pool = hyperlight_examples::wasi_server::pool(wasm, size).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "listening on http://{} with {size} WASI sandboxes, {timeout:?} per request",
        listener.local_addr()?
    );
    let app = hyperlight_examples::wasi_server::app(pool, timeout);
    hyperlight_examples::web_server::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await?;
    Ok(())
}

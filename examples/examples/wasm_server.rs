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

use hyperlight_examples::wasm_server;
use hyperlight_examples::web_server::ServerArgs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = ServerArgs::from_env();
    let pool = wasm_server::pool(args.size).await?;
    let app = wasm_server::app(pool, args.timeout);
    args.serve_until_ctrl_c(&format!("{} Wasm sandboxes", args.size), app)
        .await?;
    Ok(())
}

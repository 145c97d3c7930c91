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

use hyperlight_examples::wasi_server;
use hyperlight_examples::web_server::ServerArgs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = ServerArgs::from_env();
    let pool = wasi_server::pool(wasi_server::jsonfmt(), args.size).await?;
    let app = wasi_server::app(pool, args.timeout);
    args.serve_until_ctrl_c(&format!("{} WASI sandboxes", args.size), app)
        .await?;
    Ok(())
}

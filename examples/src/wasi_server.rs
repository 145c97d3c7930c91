//! An HTTP service that runs a WASI program on each request body through a [`WasmPool`]: the
//! body is the program's stdin, every request runs in a fresh instance, with a per-request
//! timeout. 200 with the program's stdout on exit code 0; 422 with its stderr on any other exit
//! code; 413 for a body past the stdin limit; 504 on timeout. `/native/run` does the program's
//! work (reformat JSON with serde_json) in-process, for comparing the cost of isolation.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hyperlight_wasm::{Error, WasiConfig, WasiRun, WasmPool, WasmSandbox};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pool: WasmPool,
    timeout: Duration,
}

/// Builds a pool of `size` sandboxes of the WASI command `wasm`, with the default WASI limits.
pub async fn pool(wasm: Vec<u8>, size: usize) -> Result<WasmPool, Error> {
    WasmSandbox::builder(wasm)
        .wasi(WasiConfig::default())
        .pool(size)
        .await
}

/// The test program `jsonfmt` (testing/wasi-programs: serde_json, built for wasm32-wasip1).
pub fn jsonfmt() -> Vec<u8> {
    hyperlight_testing::wasi_program("jsonfmt")
}

/// The routes:
/// - `POST /run`: runs the program as `jsonfmt --compact` with the body as stdin.
/// - `POST /native/run`: the same reformatting in-process, without a sandbox.
pub fn app(pool: WasmPool, timeout: Duration) -> Router {
    Router::new()
        .route("/run", post(run))
        .route("/native/run", post(native_run))
        .with_state(AppState { pool, timeout })
}

async fn run(State(s): State<AppState>, body: Bytes) -> Response {
    let request = WasiRun {
        args: vec!["jsonfmt".into(), "--compact".into()],
        env: Vec::new(),
        stdin: body.to_vec(),
    };
    match s.pool.run(request).timeout(s.timeout).await {
        Ok(output) if output.success() => (StatusCode::OK, output.stdout).into_response(),
        Ok(output) => (StatusCode::UNPROCESSABLE_ENTITY, output.stderr).into_response(),
        Err(error) => {
            let status = match &error {
                Error::Sandbox(hyperlight_async::Error::Timeout { .. }) => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                Error::WasiLimit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, error.to_string()).into_response()
        }
    }
}

async fn native_run(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => (StatusCode::OK, format!("{value}\n")).into_response(),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("jsonfmt: not JSON: {e}\n"),
        )
            .into_response(),
    }
}

//! An HTTP service that calls a WebAssembly module's export per request through a [`WasmPool`]:
//! every request runs in a fresh instance (restored from the snapshot taken right after
//! instantiation), with a per-request timeout (504) and Wasm errors mapped to 4xx/5xx with a JSON
//! body. `/native/...` does the same work in-process, for comparing the cost of isolation.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyperlight_wasm::{Error, WasmPool, WasmSandbox};
use serde_json::json;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pool: WasmPool,
    timeout: Duration,
}

/// Builds the pool: `size` sandboxes of the `plugin` module (built from Rust source for
/// wasm32-unknown-unknown), with its imports; `env.lookup` is async.
pub async fn pool(size: usize) -> Result<WasmPool, Error> {
    WasmSandbox::builder(hyperlight_testing::wasm_bytes("plugin"))
        .import("env", "host_add", |a: i32, b: i32| a.wrapping_add(b))
        .import("env", "host_echo", |s: String| s)
        .import("env", "host_bytes", |b: Vec<u8>| b)
        .import("env", "host_f32", |x: f32| x)
        .import("env", "host_f64", |x: f64| x)
        .import("env", "host_i64", |x: i64| x)
        .import_async("env", "lookup", |key: String| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            format!("value of {key}")
        })
        .pool(size)
        .await
}

/// The routes:
/// - `GET /upper/{text}`: the module uppercases the text (a `String` in and out).
/// - `GET /add/{a}/{b}`: the module adds two `i32`s.
/// - `GET /lookup/{key}`: the module calls the async import `env.lookup` (a 1 ms sleep).
/// - `GET /sum/{n}`: the module calls the sync import `env.host_add` `n` times (a large count
///   runs into the timeout: 504).
/// - `GET /call/{export}`: calls any export without arguments that returns nothing (unknown: 404,
///   other types: 400, a trap such as `fail`'s: 422).
/// - `GET /native/upper/{text}`: the same uppercasing in-process, without a sandbox.
pub fn app(pool: WasmPool, timeout: Duration) -> Router {
    Router::new()
        .route("/upper/{text}", get(upper))
        .route("/add/{a}/{b}", get(add))
        .route("/lookup/{key}", get(lookup))
        .route("/sum/{n}", get(sum))
        .route("/call/{export}", get(call))
        .route("/native/upper/{text}", get(native_upper))
        .with_state(AppState { pool, timeout })
}

/// A Wasm call's failure as an HTTP response.
struct WasmFailure(Error);

impl IntoResponse for WasmFailure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::Sandbox(hyperlight_async::Error::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Error::UnknownExport { .. } => StatusCode::NOT_FOUND,
            Error::ExportType { .. } => StatusCode::BAD_REQUEST,
            Error::Trap { .. } | Error::Abi { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({ "error": self.0.to_string(), "status": status.as_u16() });
        (status, Json(body)).into_response()
    }
}

type Reply = Result<Json<serde_json::Value>, WasmFailure>;

async fn upper(State(s): State<AppState>, Path(text): Path<String>) -> Reply {
    let out: String = s
        .pool
        .call("upper", (text,))
        .timeout(s.timeout)
        .await
        .map_err(WasmFailure)?;
    Ok(Json(json!({ "result": out })))
}

async fn add(State(s): State<AppState>, Path((a, b)): Path<(i32, i32)>) -> Reply {
    let sum: i32 = s
        .pool
        .call("add", (a, b))
        .timeout(s.timeout)
        .await
        .map_err(WasmFailure)?;
    Ok(Json(json!({ "result": sum })))
}

async fn lookup(State(s): State<AppState>, Path(key): Path<String>) -> Reply {
    let value: String = s
        .pool
        .call("lookup", (key,))
        .timeout(s.timeout)
        .await
        .map_err(WasmFailure)?;
    Ok(Json(json!({ "result": value })))
}

async fn sum(State(s): State<AppState>, Path(n): Path<i32>) -> Reply {
    let total: i64 = s
        .pool
        .call("sum_host", (n,))
        .timeout(s.timeout)
        .await
        .map_err(WasmFailure)?;
    Ok(Json(json!({ "result": total })))
}

async fn call(State(s): State<AppState>, Path(export): Path<String>) -> Reply {
    s.pool
        .call::<()>(&export, ())
        .timeout(s.timeout)
        .await
        .map_err(WasmFailure)?;
    Ok(Json(json!({ "result": null })))
}

async fn native_upper(Path(text): Path<String>) -> Json<serde_json::Value> {
    Json(json!({ "result": text.to_ascii_uppercase() }))
}

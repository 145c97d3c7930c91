//! An HTTP service that runs a guest function per request through a [`SandboxPool`]: every
//! request gets a sandbox in the guest's post-init state, a per-request timeout (504), and guest
//! errors mapped to 4xx/5xx with a JSON body. `/native/...` does the same work in-process, for
//! comparing the cost of isolation.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyperlight_async::{Error, ErrorCode, Sandbox, SandboxError, SandboxPool};
use serde_json::json;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pool: SandboxPool,
    timeout: Duration,
}

/// Builds the pool: `size` sandboxes of the `simple` test guest.
pub async fn pool(size: usize) -> Result<SandboxPool, Error> {
    SandboxPool::new(
        Sandbox::builder(hyperlight_testing::simple_guest())
            .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b)),
        size,
    )
    .await
}

/// The routes:
/// - `GET /add/{a}/{b}`: the guest adds (guest -> host -> guest).
/// - `GET /echo/{text}`: the guest echoes.
/// - `GET /spin/{iterations}`: the guest busy-loops (a large count runs into the timeout: 504).
/// - `GET /call/{function}`: calls any guest function without arguments (unknown: 404).
/// - `GET /native/add/{a}/{b}`: the same addition in-process, without a sandbox.
/// - `GET /stats`: the pool's size, busy and waiting counts.
pub fn app(pool: SandboxPool, timeout: Duration) -> Router {
    Router::new()
        .route("/add/{a}/{b}", get(add))
        .route("/echo/{text}", get(echo))
        .route("/spin/{iterations}", get(spin))
        .route("/call/{function}", get(call))
        .route("/native/add/{a}/{b}", get(native_add))
        .route("/stats", get(stats))
        .with_state(AppState { pool, timeout })
}

/// A guest call's failure as an HTTP response.
struct GuestFailure(Error);

impl IntoResponse for GuestFailure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Sandbox(SandboxError::GuestCall { code, .. }) => match code {
                ErrorCode::UnknownFunction => StatusCode::NOT_FOUND,
                ErrorCode::WrongArity
                | ErrorCode::WrongArgumentType
                | ErrorCode::WrongReturnType => StatusCode::BAD_REQUEST,
                ErrorCode::GuestFunctionFailed => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::Sandbox(SandboxError::MessageTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({ "error": self.0.to_string(), "status": status.as_u16() });
        (status, Json(body)).into_response()
    }
}

async fn add(
    State(s): State<AppState>,
    Path((a, b)): Path<(i32, i32)>,
) -> Result<Json<serde_json::Value>, GuestFailure> {
    let sum: i32 = s
        .pool
        .call("call_host_add", (a, b))
        .timeout(s.timeout)
        .await
        .map_err(GuestFailure)?;
    Ok(Json(json!({ "result": sum })))
}

async fn echo(
    State(s): State<AppState>,
    Path(text): Path<String>,
) -> Result<Json<serde_json::Value>, GuestFailure> {
    let out: String = s
        .pool
        .call("echo_string", (text,))
        .timeout(s.timeout)
        .await
        .map_err(GuestFailure)?;
    Ok(Json(json!({ "result": out })))
}

async fn spin(
    State(s): State<AppState>,
    Path(n): Path<u64>,
) -> Result<Json<serde_json::Value>, GuestFailure> {
    let done: u64 = s
        .pool
        .call("spin", (n,))
        .timeout(s.timeout)
        .await
        .map_err(GuestFailure)?;
    Ok(Json(json!({ "result": done })))
}

async fn call(
    State(s): State<AppState>,
    Path(function): Path<String>,
) -> Result<Json<serde_json::Value>, GuestFailure> {
    s.pool
        .call::<()>(&function, ())
        .timeout(s.timeout)
        .await
        .map_err(GuestFailure)?;
    Ok(Json(json!({ "result": null })))
}

async fn native_add(Path((a, b)): Path<(i32, i32)>) -> Json<serde_json::Value> {
    Json(json!({ "result": a.wrapping_add(b) }))
}

async fn stats(State(s): State<AppState>) -> Json<serde_json::Value> {
    let st = s.pool.stats();
    Json(
        json!({ "size": st.size, "busy": st.busy, "waiting": st.waiting, "replaced": st.replaced }),
    )
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

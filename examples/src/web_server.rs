//! An HTTP service that runs a guest function per request through a [`SandboxPool`]: every
//! request gets a sandbox in the guest's post-init state, a per-request timeout (504), and guest
//! errors mapped to 4xx/5xx with a JSON body. `/native/...` does the same work in-process, for
//! comparing the cost of isolation. With [`with_metrics`], `/metrics` serves the sandboxes'
//! metrics (`hyperlight_async::metrics`) in the Prometheus text format.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyperlight_async::{Error, ErrorCode, Sandbox, SandboxError, SandboxPool};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
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

/// Histogram buckets of every `*_seconds` metric: 10 µs to 10 s.
const BUCKETS: &[f64] = &[
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Installs the process's Prometheus recorder (once; later calls return the same handle) and
/// describes the sandbox metrics. Install it before building the pool, so that its builds are
/// counted. Needs a Tokio runtime: it spawns the task that keeps the histograms drained.
///
/// # Errors
///
/// If another recorder is already installed.
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    hyperlight_async::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Adds `GET /metrics` to `app`: what `handle` has recorded, in the Prometheus text format.
pub fn with_metrics(app: Router, handle: PrometheusHandle) -> Router {
    app.route("/metrics", get(move || std::future::ready(handle.render())))
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

/// The command line of the HTTP examples: `[ADDR] [POOL_SIZE] [TIMEOUT_MS]`, by default
/// `127.0.0.1:3000`, 4 sandboxes and 1000 ms.
pub struct ServerArgs {
    /// Where to listen.
    pub addr: String,
    /// Sandboxes in the pool.
    pub size: usize,
    /// Timeout of each request's call.
    pub timeout: Duration,
}

impl ServerArgs {
    /// Reads the process's arguments; one that is missing or does not parse takes its default.
    pub fn from_env() -> Self {
        let mut args = std::env::args().skip(1);
        let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
        let size = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
        let timeout =
            Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(1000));
        ServerArgs {
            addr,
            size,
            timeout,
        }
    }

    /// Binds the address, says what listens there (`what`: "4 sandboxes"), and serves `app`
    /// until Ctrl-C, then shuts down gracefully.
    pub async fn serve_until_ctrl_c(&self, what: &str, app: Router) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(&self.addr).await?;
        println!(
            "listening on http://{} with {what}, {:?} per request",
            listener.local_addr()?,
            self.timeout
        );
        serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
            println!("shutting down");
        })
        .await
    }
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

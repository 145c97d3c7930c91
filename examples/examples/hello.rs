//! The main example: start a micro-VM, call guest functions, let the guest call the host, stop a
//! runaway guest with a timeout, and serve calls from a pool of fresh sandboxes.
//!
//! ```text
//! cargo run --release --example hello
//! ```

#[tokio::main]
async fn main() -> Result<(), hyperlight_async::Error> {
    // Guest log records arrive as `tracing` events (RUST_LOG=info shows them).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    hyperlight_examples::hello::run(10_000).await
}

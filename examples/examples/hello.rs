//! The main example: start a micro-VM, call guest functions, let the guest call the host.
//!
//! ```text
//! cargo run --release --example hello
//! ```

use std::time::Instant;

use hyperlight_sys::{Error, Sandbox};

fn main() -> Result<(), Error> {
    // Guest log records arrive as `tracing` events (RUST_LOG=info shows them).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let start = Instant::now();
    let mut sandbox = Sandbox::builder(hyperlight_testing::simple_guest())
        // The only host function this guest may call, with the types it must use.
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .build()?;
    println!("sandbox ready in {:?}", start.elapsed());

    let greeting: String = sandbox.call("echo_string", ("hello from the host".to_string(),))?;
    println!("guest echoed: {greeting}");

    let sum: i32 = sandbox.call("call_host_add", (40i32, 2i32))?;
    println!("guest -> host -> guest: 40 + 2 = {sum}");

    sandbox.call::<()>("log_all_levels", ("hi".to_string(),))?;

    // A guest fault is a typed error; the host carries on and the sandbox can be restored.
    match sandbox.call::<u64>("read_addr", (0x40_0000_0000u64,)) {
        Err(e) => println!("hostile read stopped: {e}"),
        Ok(v) => println!("unexpected: read {v}"),
    }
    sandbox.restore()?;

    let calls = 10_000;
    let start = Instant::now();
    for _ in 0..calls {
        sandbox.call::<()>("nop", ())?;
    }
    let elapsed = start.elapsed();
    println!(
        "{calls} trivial calls in {elapsed:?}: {:.1} µs per call",
        elapsed.as_secs_f64() * 1e6 / f64::from(calls)
    );
    Ok(())
}

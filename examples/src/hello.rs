//! The main example's tour: start a micro-VM, call guest functions, let the guest call the
//! host, stop a runaway guest with a timeout, and serve calls from a pool of fresh sandboxes.

use std::time::{Duration, Instant};

use hyperlight_async::{Error, Sandbox, SandboxPool};

/// Runs the tour, printing what happens; `calls` trivial calls are timed.
pub async fn run(calls: u32) -> Result<(), Error> {
    let start = Instant::now();
    let builder = Sandbox::builder(hyperlight_testing::simple_guest())
        // The only host functions this guest may call, with the types it must use.
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn_async("host_echo", |s: String| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            s.to_uppercase()
        });
    let sandbox = builder.clone().build().await?;
    println!("sandbox ready in {:?}", start.elapsed());

    let greeting: String = sandbox
        .call("echo_string", ("hello from the host".to_string(),))
        .await?;
    println!("guest echoed: {greeting}");
    let sum: i32 = sandbox.call("call_host_add", (40i32, 2i32)).await?;
    println!("guest -> host -> guest: 40 + 2 = {sum}");
    let shout: String = sandbox
        .call("call_host_echo_string", ("async host fn".to_string(),))
        .await?;
    println!("guest -> async host fn -> guest: {shout}");
    sandbox
        .call::<()>("log_all_levels", ("hi".to_string(),))
        .await?;

    // A guest fault is a typed error; the sandbox restores itself before its next call.
    match sandbox.call::<u64>("read_addr", (0x40_0000_0000u64,)).await {
        Err(e) => println!("hostile read stopped: {e}"),
        Ok(v) => println!("unexpected: read {v}"),
    }
    // A runaway guest is kicked out of the VM at its deadline.
    let start = Instant::now();
    let spun = sandbox
        .call::<()>("infinite_loop", ())
        .timeout(Duration::from_millis(50))
        .await;
    println!(
        "infinite loop: {} after {:?}",
        spun.unwrap_err(),
        start.elapsed()
    );
    assert_eq!(sandbox.call::<i32>("add", (1i32, 1i32)).await?, 2);

    let start = Instant::now();
    for _ in 0..calls {
        sandbox.call::<()>("nop", ()).await?;
    }
    let elapsed = start.elapsed();
    println!(
        "{calls} trivial calls in {elapsed:?}: {:.1} µs per call",
        elapsed.as_secs_f64() * 1e6 / f64::from(calls)
    );

    // A pool of sandboxes that share the guest's post-init memory: every call starts fresh.
    let start = Instant::now();
    let pool = SandboxPool::new(builder, 4).await?;
    println!("pool of 4 ready in {:?}", start.elapsed());
    for _ in 0..3 {
        let n: u64 = pool.call("counter", ()).await?;
        println!("pool call sees a fresh counter: {n}");
    }
    Ok(())
}

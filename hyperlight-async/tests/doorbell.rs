//! The doorbell from async code on KVM: hot calls, async host functions and cancellation of a
//! posted call, and hostile guests that flip the state word or never park.

mod common;

use std::time::{Duration, Instant};

use hyperlight_async::{Error, Sandbox, SandboxConfig, SandboxError};

/// At most one guest fewer than the CPUs polls at once in the process: the tests of this file
/// take turns, so that none finds the polling slots taken by another.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A config with the doorbell on. The caller polls for up to 2 ms: in an unoptimized test build
/// a call can take longer than the default 100 µs, and a caller that stops polling before its
/// call started has it answered with an exit.
fn polling_config() -> SandboxConfig {
    SandboxConfig {
        poll_window: Duration::from_millis(1),
        spin_wait: Duration::from_millis(2),
        ..SandboxConfig::default()
    }
}

/// Calls `add` until the doorbell answered `calls` calls in memory in all (a hot sandbox), at
/// most 10,000 times. (How many are posted depends on the machine: on a loaded one answers in
/// memory are measured slower than exits, and the sandbox parks but for one call in 32.)
async fn heat(sandbox: &Sandbox, calls: u64) {
    for _ in 0..10_000 {
        if sandbox.doorbell_stats().answered_in_memory >= calls {
            return;
        }
        sandbox.call::<i32>("add", (1i32, 2i32)).await.unwrap();
    }
    panic!(
        "never answered {calls} calls in memory: {:?}",
        sandbox.doorbell_stats()
    );
}

/// A `simple` sandbox with the doorbell on, hot.
async fn hot_simple() -> Sandbox {
    let sandbox = common::simple()
        .config(polling_config())
        .build()
        .await
        .unwrap();
    heat(&sandbox, 3).await;
    sandbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_calls_and_async_host_calls_through_the_doorbell() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let sandbox = hot_simple().await;
    for i in 0..500i32 {
        assert_eq!(sandbox.call::<i32>("add", (i, 1i32)).await.unwrap(), i + 1);
        // An async host function inside a (maybe posted) call.
        let echoed = sandbox
            .call::<String>("call_host_echo_string", (format!("n{i}"),))
            .await
            .unwrap();
        assert_eq!(echoed, format!("n{i}"));
        // A sync host function runs on the vCPU thread: its call is declined in memory and
        // made with an exit.
        let sum = sandbox
            .call::<i32>("call_host_add", (i, 2i32))
            .await
            .unwrap();
        assert_eq!(sum, i + 2);
    }
    // A host call that fails its check is answered in memory with the error.
    let wrong = sandbox.call::<i32>("call_host_wrong_types", ()).await;
    assert!(wrong.is_err(), "{wrong:?}");
    let stats = sandbox.doorbell_stats();
    eprintln!("{stats:?}");
    assert!(stats.answered_in_memory > 3, "{stats:?}");
    // Hot (calls posted), the async host calls went through memory too.
    assert!(
        stats.posted == 0 || stats.host_calls_in_memory > 0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_call_past_its_deadline_is_kicked_and_the_sandbox_recovers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let sandbox = hot_simple().await;
    let before = sandbox.doorbell_stats().posted;
    let err = sandbox
        .call::<()>("infinite_loop", ())
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    eprintln!("posted {before} -> {}", sandbox.doorbell_stats().posted);
    // The next call restores first and works.
    assert_eq!(sandbox.call::<i32>("add", (2i32, 2i32)).await.unwrap(), 4);
    heat(&sandbox, sandbox.doorbell_stats().answered_in_memory + 3).await;
}

/// After a hostile call: the next call ends (a hostile guest may answer it with anything, or
/// have poisoned the sandbox), and after a restore the sandbox answers right.
async fn usable_after(sandbox: &Sandbox, result: &Result<u32, Error>) {
    let next = sandbox
        .call::<u64>("echo", (7u64,))
        .timeout(Duration::from_secs(2))
        .await;
    sandbox.restore().await.unwrap();
    let echo = sandbox.call::<u64>("echo", (7u64,)).await;
    assert_eq!(echo.unwrap(), 7, "after {result:?}, then {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_flipping_the_state_word_gains_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let bystander = common::simple()
        .config(polling_config())
        .build()
        .await
        .unwrap();
    let sandbox = Sandbox::builder(hyperlight_testing::guest_path("hostile"))
        .config(polling_config())
        .build()
        .await
        .unwrap();
    let (mut ok, mut failed) = (0, 0);
    let mut count = bystander.call::<u64>("counter", ()).await.unwrap();
    for seed in 0..100u64 {
        let result = sandbox
            .call::<u32>("bell_flip", (seed, 1_000u32))
            .timeout(Duration::from_secs(2))
            .await;
        match &result {
            Ok(n) => {
                assert_eq!(*n, 1_000, "seed {seed}");
                ok += 1;
            }
            Err(_) => failed += 1,
        }
        usable_after(&sandbox, &result).await;
        count += 1;
        assert_eq!(bystander.call::<u64>("counter", ()).await.unwrap(), count);
    }
    eprintln!(
        "bell_flip: {ok} answered, {failed} typed errors; {:?}",
        sandbox.doorbell_stats()
    );
}

/// CPU time of this process so far (user + system), from `/proc/self/stat` in clock ticks of
/// 10 ms (`USER_HZ` is 100 on Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command (which may hold spaces) start after the last ')'; utime and
    // stime are the 14th and 15th fields of the line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_never_parks_is_kicked_then_poisoned_and_its_idle_cpu_is_bounded() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let sandbox = Sandbox::builder(hyperlight_testing::guest_path("hostile"))
        .config(polling_config())
        .build()
        .await
        .unwrap();
    // Hot, so that the hostile call is answered in memory (the guest answers so whatever it
    // was asked, but the host takes an answer from memory only when it asked for one). On a
    // loaded machine the window may have closed before the call: it then waits for an exit that
    // never comes, times out and is kicked; try again.
    let mut cpu = cpu_time();
    let mut start = Instant::now();
    let mut answered = None;
    for _ in 0..10 {
        for _ in 0..10_000 {
            if sandbox.doorbell_stats().answered_in_memory >= 3 {
                break;
            }
            sandbox.call::<u64>("echo", (1u64,)).await.unwrap();
        }
        sandbox.call::<u64>("echo", (1u64,)).await.unwrap();
        cpu = cpu_time();
        start = Instant::now();
        let result = sandbox
            .call::<()>("bell_never_park", ())
            .timeout(Duration::from_secs(1))
            .await;
        if result.is_ok() {
            answered = Some(result);
            break;
        }
        sandbox.restore().await.unwrap();
    }
    let answered = answered.expect("the hostile call was never answered in memory");
    common::eventually("the guest is poisoned for not parking", || {
        sandbox.doorbell_stats().overdue >= 1
    })
    .await;
    let (idle_cpu, wall) = (cpu_time() - cpu, start.elapsed());
    let stats = sandbox.doorbell_stats();
    eprintln!(
        "never parks: answered {answered:?}; {stats:?}; {idle_cpu:?} CPU over {wall:?} until poisoned"
    );
    assert!(stats.kicks >= 1, "{stats:?}");
    // Bounded: the window, then a kick per grace period until poisoned, not a core for ever.
    assert!(idle_cpu < Duration::from_secs(2), "{idle_cpu:?}");
    // Poisoned between calls: the next call says so, the one after restores and works.
    let next = sandbox.call::<u64>("echo", (2u64,)).await;
    assert!(
        matches!(&next, Err(Error::Sandbox(SandboxError::Poisoned { .. }))),
        "{next:?}"
    );
    assert_eq!(sandbox.call::<u64>("echo", (3u64,)).await.unwrap(), 3);
}

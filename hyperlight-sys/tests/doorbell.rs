//! The doorbell on KVM (`SandboxConfig::poll_window`): calls to a polling guest are posted
//! through shared memory and answered in memory with no exit, and the handshake holds when a
//! post races the end of a window.

mod common;

use std::time::{Duration, Instant};

use hyperlight_sys::{Sandbox, SandboxConfig};

/// At most one guest fewer than the CPUs polls at once in the process: the tests of this file
/// take turns, so that none finds the polling slots taken by another.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A config with the doorbell's window `window`. The caller polls for its answer for up to
/// 2 ms: in an unoptimized test build a call can take longer than the default 100 µs, and a
/// caller that stops polling before its call started has it answered with an exit.
fn polling_config(window: Duration) -> SandboxConfig {
    SandboxConfig {
        poll_window: window,
        spin_wait: Duration::from_millis(2),
        ..SandboxConfig::default()
    }
}

fn polling(window: Duration) -> Sandbox {
    common::simple()
        .config(polling_config(window))
        .build()
        .unwrap()
}

#[test]
fn back_to_back_calls_are_posted_and_answered_in_memory() {
    let _turn = turn();
    let mut sb = polling(Duration::from_millis(1));
    for i in 0..2_000i32 {
        assert_eq!(sb.call::<i32>("add", (i, 1)).unwrap(), i + 1);
    }
    let stats = sb.doorbell_stats();
    eprintln!("{stats:?}");
    // How many are posted depends on the machine: on a loaded one, answers in memory are
    // measured slower than exits and the sandbox parks (the doorbell's "polling must pay").
    assert!(
        stats.answered_in_memory > 0,
        "the doorbell was never used: {stats:?}"
    );
    assert!(stats.answered_in_memory >= stats.posted, "{stats:?}");
    // Host calls of a posted call still exit and are served; logs too.
    assert_eq!(sb.call::<i32>("call_host_add", (2i32, 3i32)).unwrap(), 5);
    sb.call::<()>("log_all_levels", ("between polls".to_string(),))
        .unwrap();
    assert_eq!(sb.call::<i32>("add", (1i32, 1i32)).unwrap(), 2);
}

#[test]
fn off_by_default() {
    let _turn = turn();
    let mut sb = common::simple().build().unwrap();
    for i in 0..200i32 {
        assert_eq!(sb.call::<i32>("add", (i, 1)).unwrap(), i + 1);
    }
    assert_eq!(sb.doorbell_stats().posted, 0);
    assert_eq!(sb.doorbell_stats().answered_in_memory, 0);
}

/// Busy-waits (no sleep: the point is to land anywhere in the window) for `micros`.
fn busy_wait(micros: u64) {
    let end = Instant::now() + Duration::from_micros(micros);
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

#[test]
fn posts_racing_the_end_of_the_window_are_answered_exactly_once() {
    let _turn = turn();
    const CALLS: i32 = 100_000;
    let window = Duration::from_micros(20);
    let mut sb = polling(window);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..CALLS {
        // Gaps around the window: some calls find the guest polling, some just after the
        // window closed, some with the guest parked.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        busy_wait(x % 41);
        // Each answer is its own call's: a result delivered to the wrong call would be off.
        assert_eq!(sb.call::<i32>("add", (i, 7)).unwrap(), i + 7, "call {i}");
    }
    let stats = sb.doorbell_stats();
    eprintln!("{stats:?}");
    let posted = i64::try_from(stats.posted).unwrap();
    assert!(posted > 0, "no call found the guest polling: {stats:?}");
    assert!(
        posted < i64::from(CALLS),
        "every call found the guest polling: {stats:?}"
    );
    // The sandbox still counts from where it was: no call ran twice.
    let before = sb.call::<u64>("counter", ()).unwrap();
    assert_eq!(sb.call::<u64>("counter", ()).unwrap(), before + 1);
}

#[test]
fn restore_snapshot_and_fresh_per_call_work_between_polled_calls() {
    let _turn = turn();
    let mut sb = polling(Duration::from_millis(1));
    for _ in 0..100 {
        sb.call::<u64>("counter", ()).unwrap();
    }
    let snap = sb.snapshot().unwrap();
    let at_snapshot = sb.call::<u64>("counter", ()).unwrap();
    for _ in 0..100 {
        sb.call::<u64>("counter", ()).unwrap();
    }
    sb.restore_to(&snap).unwrap();
    assert_eq!(sb.call::<u64>("counter", ()).unwrap(), at_snapshot);
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);

    // A sandbox restored after every call never polls: every call sees the post-init state.
    let mut fresh = common::simple()
        .config(polling_config(Duration::from_millis(1)))
        .fresh_per_call(true)
        .build()
        .unwrap();
    for _ in 0..200 {
        assert_eq!(fresh.call::<u64>("counter", ()).unwrap(), 1);
    }
    assert_eq!(fresh.doorbell_stats().posted, 0);
}

#[test]
fn a_fault_in_a_posted_call_poisons_and_a_restore_recovers() {
    let _turn = turn();
    let mut sb = polling(Duration::from_millis(1));
    for _ in 0..50 {
        sb.call::<u64>("counter", ()).unwrap();
    }
    let posted = sb.doorbell_stats().posted;
    let err = sb.call::<u64>("divide_by_zero", (1u64,)).unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    eprintln!(
        "fault: {err:?}, posted {posted} -> {}",
        sb.doorbell_stats().posted
    );
    let next = sb.call::<u64>("counter", ());
    assert!(
        matches!(next, Err(hyperlight_sys::Error::Poisoned { .. })),
        "{next:?}"
    );
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
}

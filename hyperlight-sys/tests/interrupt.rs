//! Kicking a vCPU from another thread, and generation checks.

mod common;

use std::time::Duration;

use hyperlight_sys::Error;

#[test]
fn second_thread_kills_an_infinite_loop() {
    let mut sb = common::simple().build().unwrap();
    let handle = sb.interrupt_handle();
    let killer = std::thread::spawn(move || {
        // Wait until the call is running, then kill it.
        while handle.running_generation() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        handle.kill()
    });
    let err = sb.call::<()>("infinite_loop", ()).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_ne!(killer.join().unwrap(), 0);
    assert!(matches!(
        sb.call::<i32>("echo_i32", (1i32,)),
        Err(Error::Poisoned { .. })
    ));
    sb.restore().unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (2i32,)).unwrap(), 2);
}

#[test]
fn kill_after_a_call_ended_does_not_affect_the_next_call() {
    let mut sb = common::simple().build().unwrap();
    let handle = sb.interrupt_handle();
    assert_eq!(sb.call::<u64>("spin", (1000u64,)).unwrap(), 1000);
    // Idle: nothing to kill.
    assert_eq!(handle.kill(), 0);
    // A cancel aimed at the finished call's generation is stale.
    handle.cancel(1);
    assert_eq!(sb.call::<u64>("spin", (100_000u64,)).unwrap(), 100_000);
    for _ in 0..20 {
        handle.cancel(1);
        assert_eq!(sb.call::<i32>("echo_i32", (3i32,)).unwrap(), 3);
    }
}

#[test]
fn stale_kicks_during_a_call_are_ignored() {
    let mut sb = common::simple().build().unwrap();
    let handle = sb.interrupt_handle();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // Keep firing kicks for generation 1 (an old call) while later calls run.
    let kicker = std::thread::spawn(move || {
        let mut n = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            handle.cancel(1);
            n += 1;
            std::thread::yield_now();
        }
        n
    });
    sb.call::<()>("void_fn", ()).unwrap(); // generation 1
    for _ in 0..200 {
        assert_eq!(sb.call::<u64>("spin", (20_000u64,)).unwrap(), 20_000);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(kicker.join().unwrap() > 0);
}

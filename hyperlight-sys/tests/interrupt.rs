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

/// Runs `infinite_loop` on a thread of its own, waits until it runs, and hands `interfere` its
/// interrupt handle and generation; then kills it. The call must end with `Cancelled` (issue 12,
/// finding 4: a cancel of a later generation recorded with `fetch_max` once hid the kill). A
/// thread `interfere` returns is joined after the kill, before the sandbox is used again.
fn kill_after(
    interfere: impl FnOnce(&hyperlight_sys::InterruptHandle, u64) -> Option<std::thread::JoinHandle<()>>,
) {
    let mut sb = common::simple().build().unwrap();
    let handle = sb.interrupt_handle();
    let (done_tx, done) = std::sync::mpsc::channel();
    let caller = std::thread::spawn(move || {
        let _ = done_tx.send(sb.call::<()>("infinite_loop", ()));
        sb
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let running = loop {
        match handle.running_generation() {
            0 if std::time::Instant::now() < deadline => std::thread::yield_now(),
            0 => panic!("the call never started"),
            g => break g,
        }
    };
    let interferer = interfere(&handle, running);
    assert_eq!(handle.kill(), running, "kill stops the call that runs");
    if let Some(thread) = interferer {
        thread.join().unwrap();
    }
    match done.recv_timeout(Duration::from_secs(10)) {
        Ok(result) => assert!(matches!(result, Err(Error::Cancelled)), "{result:?}"),
        Err(_) => panic!("the kill was lost: the call still runs 10 s later"),
    }
    let mut sb = caller.join().unwrap();
    sb.restore().unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (4i32,)).unwrap(), 4);
}

#[test]
fn a_cancel_of_a_later_generation_does_not_hide_a_kill() {
    kill_after(|handle, running| {
        for later in [running + 1, running + 1000, u64::MAX] {
            handle.cancel(later);
        }
        None
    });
}

#[test]
fn cancels_of_other_generations_racing_a_kill_do_not_hide_it() {
    kill_after(|handle, running| {
        let handle = handle.clone();
        // Fires while the kill lands: generations long over, and generations far beyond any
        // this test hands out (the calls after the kill get running + 1, + 2, ...).
        Some(std::thread::spawn(move || {
            for n in 0..10_000 {
                handle.cancel(running + 1_000 + n % 7);
                handle.cancel(running.saturating_sub(1 + n % 3));
            }
        }))
    });
}

//! A kick reaches the vCPU thread even when the thread that built the first sandbox (and so
//! started the vCPU thread factory, whose threads inherit its signal mask) blocks the kick
//! signal, as applications that handle signals on one dedicated thread do. Its own test binary:
//! the factory must not exist before the signal is blocked.

mod common;

use std::time::Duration;

#[test]
fn kicks_arrive_although_the_creating_thread_blocks_the_signal() {
    // SAFETY: a sigset_t built with sigemptyset/sigaddset; pthread_sigmask changes only the mask
    // of this thread (and of threads it creates from now on).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        // The kick signal is the first real-time signal.
        libc::sigaddset(&mut set, libc::SIGRTMIN());
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
    let mut sb = common::simple().build().unwrap();
    let handle = sb.interrupt_handle();
    let (done_tx, done) = flume::bounded(1);
    std::thread::spawn(move || {
        let _ = done_tx.send(sb.call::<()>("infinite_loop", ()));
    });
    while handle.running_generation() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        handle.kill();
        if let Ok(outcome) = done.recv_timeout(Duration::from_millis(10)) {
            break outcome;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the kick never reached the vCPU thread"
        );
    };
    assert!(
        matches!(outcome, Err(hyperlight_sys::Error::Cancelled)),
        "{outcome:?}"
    );
}

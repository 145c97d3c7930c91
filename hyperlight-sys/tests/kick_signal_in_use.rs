//! The kick signal is never taken from the application (issue 12, finding 6): a signal that
//! already has a disposition is refused with a typed error and left as it was, and another
//! offset works. Its own test binary: the kick signal is one per process.

mod common;

use hyperlight_sys::Error;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How often the application's own handler ran.
static APP_HANDLER_RAN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_handler(_: libc::c_int) {
    APP_HANDLER_RAN.fetch_add(1, Ordering::SeqCst);
}

/// Sets `signal`'s handler to `handler` (a function address, or `SIG_IGN`).
fn set_handler(signal: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction with a plain handler (one that only counts, or SIG_IGN).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

#[test]
fn a_kick_signal_the_application_handles_is_refused_and_left_alone() {
    let app = app_handler as *const () as libc::sighandler_t;
    let rtmin = libc::SIGRTMIN();
    // The application handles SIGRTMIN (the default kick signal) and ignores SIGRTMIN + 1.
    set_handler(rtmin, app);
    set_handler(rtmin + 1, libc::SIG_IGN);

    let err = common::simple().build().err().unwrap();
    assert!(
        matches!(err, Error::KickSignalInUse { signal, offset: 0 } if signal == rtmin),
        "{err:?}"
    );
    assert!(err.to_string().contains(&rtmin.to_string()), "{err}");
    assert_eq!(
        common::handler_of(rtmin),
        app,
        "the application's handler was replaced"
    );
    // SIG_IGN is a disposition too.
    let err = common::simple()
        .config(common::with_kick_offset(1))
        .build()
        .err();
    assert!(
        matches!(err, Some(Error::KickSignalInUse { offset: 1, .. })),
        "{err:?}"
    );
    assert_eq!(common::handler_of(rtmin + 1), libc::SIG_IGN);

    // A free signal is taken, and kicks go there: an endless guest call is killed.
    let mut sb = common::simple()
        .config(common::with_kick_offset(2))
        .build()
        .unwrap();
    assert_ne!(common::handler_of(rtmin + 2), libc::SIG_DFL);
    common::kill_an_endless_call(&mut sb);
    assert_eq!(sb.call::<i32>("echo_i32", (4i32,)).unwrap(), 4);
    // The application's handler never saw a kick, and is still in place.
    assert_eq!(APP_HANDLER_RAN.load(Ordering::SeqCst), 0);
    assert_eq!(common::handler_of(rtmin), app);
    assert_eq!(common::handler_of(rtmin + 1), libc::SIG_IGN);
}

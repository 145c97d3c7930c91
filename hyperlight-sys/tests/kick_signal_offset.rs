//! A non-default kick signal (`SandboxConfig::kick_signal_offset`), one per process (issue 12,
//! finding 6). Its own test binary: the kick signal is one per process.

mod common;

use std::time::{Duration, Instant};

use hyperlight_sys::{Error, SandboxConfig};

fn handler_of(signal: libc::c_int) -> libc::sighandler_t {
    // SAFETY: a null new action only reads the current one into a zeroed sigaction.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut current), 0);
        current.sa_sigaction
    }
}

fn with_offset(offset: u8) -> SandboxConfig {
    SandboxConfig {
        kick_signal_offset: offset,
        ..SandboxConfig::default()
    }
}

#[test]
fn the_first_sandbox_chooses_the_kick_signal_of_the_process() {
    let rtmin = libc::SIGRTMIN();
    // Past SIGRTMAX: refused before anything is installed.
    let past = (libc::SIGRTMAX() - rtmin + 1) as u8;
    let err = common::simple().config(with_offset(past)).build().err();
    assert!(
        matches!(
            err,
            Some(Error::InvalidConfig {
                field: "kick_signal_offset",
                ..
            })
        ),
        "{err:?}"
    );

    let mut sb = common::simple().config(with_offset(3)).build().unwrap();
    assert_ne!(handler_of(rtmin + 3), libc::SIG_DFL, "the kick handler");
    assert_eq!(handler_of(rtmin), libc::SIG_DFL, "SIGRTMIN is not touched");
    // Kicks use SIGRTMIN + 3: a guest spinning in a call is stopped.
    let handle = sb.interrupt_handle();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.running_generation() == 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        handle.kill()
    });
    let err = sb.call::<()>("infinite_loop", ()).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_ne!(killer.join().unwrap(), 0);
    sb.restore().unwrap();

    // Another sandbox with the same offset is fine; with another one (the default included),
    // it is refused: the signal is one per process.
    let mut same = common::simple().config(with_offset(3)).build().unwrap();
    assert_eq!(same.call::<i32>("echo_i32", (1i32,)).unwrap(), 1);
    let err = common::simple().build().err();
    assert!(
        matches!(
            err,
            Some(Error::KickSignalMismatch {
                installed: 3,
                requested: 0
            })
        ),
        "{err:?}"
    );
    assert_eq!(handler_of(rtmin), libc::SIG_DFL);
    assert_eq!(sb.call::<i32>("echo_i32", (2i32,)).unwrap(), 2);
}

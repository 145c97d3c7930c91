//! A non-default kick signal (`SandboxConfig::kick_signal_offset`), one per process (issue 12,
//! finding 6). Its own test binary: the kick signal is one per process.

mod common;

use hyperlight_sys::Error;

#[test]
fn the_first_sandbox_chooses_the_kick_signal_of_the_process() {
    let rtmin = libc::SIGRTMIN();
    // Past SIGRTMAX: refused before anything is installed.
    let past = (libc::SIGRTMAX() - rtmin + 1) as u8;
    let err = common::simple()
        .config(common::with_kick_offset(past))
        .build()
        .err();
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

    let mut sb = common::simple()
        .config(common::with_kick_offset(3))
        .build()
        .unwrap();
    assert_ne!(
        common::handler_of(rtmin + 3),
        libc::SIG_DFL,
        "the kick handler"
    );
    assert_eq!(
        common::handler_of(rtmin),
        libc::SIG_DFL,
        "SIGRTMIN is not touched"
    );
    // Kicks use SIGRTMIN + 3: a guest spinning in a call is stopped.
    common::kill_an_endless_call(&mut sb);

    // Another sandbox with the same offset is fine; with another one (the default included),
    // it is refused: the signal is one per process.
    let mut same = common::simple()
        .config(common::with_kick_offset(3))
        .build()
        .unwrap();
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
    assert_eq!(common::handler_of(rtmin), libc::SIG_DFL);
    assert_eq!(sb.call::<i32>("echo_i32", (2i32,)).unwrap(), 2);
}

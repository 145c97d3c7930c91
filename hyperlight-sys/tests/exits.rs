//! Every exit outside the protocol ends the call with a typed error and poisons the sandbox.

mod common;

use hyperlight_sys::schema::abi::{PORT_DONE, PORT_EXCEPTION, PORT_HOST_CALL, PORT_LOG};
use hyperlight_sys::{Error, Sandbox};

fn fresh() -> Sandbox {
    common::simple().build().unwrap()
}

fn after_fault(sb: &mut Sandbox) {
    assert!(matches!(
        sb.call::<i32>("echo_i32", (1i32,)),
        Err(Error::Poisoned { .. })
    ));
    sb.restore().unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (4i32,)).unwrap(), 4);
}

#[test]
fn port_outside_the_io_bitmap_faults() {
    let mut sb = fresh();
    for port in [0x10u32, 0x80, 0x3f8, 0xcf8, 0xffff] {
        let err = sb.call::<()>("port_out", (port, 0u32)).unwrap_err();
        assert!(
            matches!(err, Error::CpuException { vector: 13, .. }),
            "port {port:#x}: {err:?}"
        );
        after_fault(&mut sb);
    }
}

#[test]
fn unknown_protocol_port_is_an_unexpected_exit() {
    let mut sb = fresh();
    let err = sb.call::<()>("port_out", (0x10au32, 0u32)).unwrap_err();
    assert!(matches!(err, Error::UnexpectedExit { .. }), "{err:?}");
    after_fault(&mut sb);
}

#[test]
fn port_in_is_an_unexpected_exit() {
    let mut sb = fresh();
    let err = sb
        .call::<u32>("port_in", (u32::from(PORT_DONE),))
        .unwrap_err();
    assert!(matches!(err, Error::UnexpectedExit { .. }), "{err:?}");
    after_fault(&mut sb);
}

#[test]
fn exception_port_from_ring3_is_a_protocol_violation() {
    let mut sb = fresh();
    let err = sb
        .call::<()>("port_out", (u32::from(PORT_EXCEPTION), 14u32))
        .unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    after_fault(&mut sb);
}

#[test]
fn privileged_instructions_fault() {
    let mut sb = fresh();
    for which in 0..5u32 {
        let err = sb.call::<()>("privileged", (which,)).unwrap_err();
        assert!(
            matches!(err, Error::CpuException { vector: 13, .. }),
            "case {which}: {err:?}"
        );
        after_fault(&mut sb);
    }
}

#[test]
fn bad_message_lengths_are_protocol_violations() {
    let mut sb = fresh();
    for port in [PORT_DONE, PORT_HOST_CALL, PORT_LOG] {
        let err = sb
            .call::<()>("port_out", (u32::from(port), u32::MAX))
            .unwrap_err();
        assert!(
            matches!(err, Error::Protocol { .. }),
            "port {port:#x}: {err:?}"
        );
        after_fault(&mut sb);
        // A length inside the buffer, but not a valid message.
        let err = sb
            .call::<()>("port_out", (u32::from(port), 3u32))
            .unwrap_err();
        assert!(
            matches!(err, Error::Malformed(_)),
            "port {port:#x}: {err:?}"
        );
        after_fault(&mut sb);
    }
}

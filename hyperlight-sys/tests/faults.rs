//! Guest faults on real KVM: each gives a distinct typed error, the host survives, and the
//! sandbox reports itself poisoned until restored.

mod common;

use hyperlight_sys::{Access, Error, Sandbox};

/// The next call fails with `Poisoned`, whose source is the fault that poisoned the sandbox (the
/// same error, not its text: a fresh call of the faulting function gives an equal one); after a
/// restore, calls work.
fn assert_poisoned_then_restorable(sb: &mut Sandbox) {
    match sb.call::<i32>("echo_i32", (1i32,)) {
        Err(poisoned @ Error::Poisoned { .. }) => {
            let Error::Poisoned { cause } = &poisoned else {
                unreachable!()
            };
            let source = std::error::Error::source(&poisoned).expect("the cause is the source");
            assert_eq!(source.to_string(), cause.to_string());
            assert!(cause.is_fatal(), "{cause:?}");
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
    sb.restore().unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (9i32,)).unwrap(), 9);
}

#[test]
fn panic_is_reported_with_message() {
    let mut sb = common::simple().build().unwrap();
    match sb
        .call::<()>("do_panic", ("boom 42".to_string(),))
        .unwrap_err()
    {
        Error::GuestPanic { message } => assert!(message.contains("boom 42"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_poisoned_then_restorable(&mut sb);
}

#[test]
fn divide_by_zero_is_reported() {
    let mut sb = common::simple().build().unwrap();
    let err = sb.call::<u64>("divide_by_zero", (10u64,)).unwrap_err();
    assert!(
        matches!(err, Error::DivideByZero { rip } if rip != 0),
        "{err:?}"
    );
    assert_poisoned_then_restorable(&mut sb);
}

#[test]
fn stack_overflow_is_reported() {
    let mut sb = common::simple().build().unwrap();
    let err = sb.call::<u64>("stack_overflow", (1u64,)).unwrap_err();
    assert!(matches!(err, Error::StackOverflow { .. }), "{err:?}");
    assert_poisoned_then_restorable(&mut sb);
}

#[test]
fn heap_exhaustion_is_reported() {
    let mut sb = common::simple().build().unwrap();
    let err = sb.call::<u64>("exhaust_heap", ()).unwrap_err();
    assert!(matches!(err, Error::GuestOutOfMemory { .. }), "{err:?}");
    assert_poisoned_then_restorable(&mut sb);
}

#[test]
fn out_of_bounds_read_and_write_are_reported() {
    let mut sb = common::simple().build().unwrap();
    let far = 0x40_0000_0000u64;
    let err = sb.call::<u64>("read_addr", (far,)).unwrap_err();
    assert!(
        matches!(err, Error::MemoryViolation { addr, access: Access::Read, .. } if addr == far),
        "{err:?}"
    );
    assert_poisoned_then_restorable(&mut sb);
    let err = sb.call::<()>("write_addr", (far, 1u64)).unwrap_err();
    assert!(
        matches!(err, Error::MemoryViolation { addr, access: Access::Write, .. } if addr == far),
        "{err:?}"
    );
    assert_poisoned_then_restorable(&mut sb);
    // The null page is unmapped too.
    let err = sb.call::<u64>("read_addr", (0u64,)).unwrap_err();
    assert!(
        matches!(err, Error::MemoryViolation { addr: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn ring0_tables_are_not_writable_from_the_guest() {
    let mut sb = common::simple().build().unwrap();
    // The GDT page is a supervisor page: a ring-3 write faults.
    let err = sb.call::<()>("write_addr", (0x1000u64, 0u64)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MemoryViolation {
                addr: 0x1000,
                access: Access::Write,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn faults_are_distinct() {
    let mut sb = common::simple().build().unwrap();
    let mut kinds = Vec::new();
    let mut record = |e: Error| kinds.push(std::mem::discriminant(&e));
    record(sb.call::<()>("do_panic", ("x".to_string(),)).unwrap_err());
    sb.restore().unwrap();
    record(sb.call::<u64>("divide_by_zero", (1u64,)).unwrap_err());
    sb.restore().unwrap();
    record(sb.call::<u64>("stack_overflow", (1u64,)).unwrap_err());
    sb.restore().unwrap();
    record(sb.call::<u64>("exhaust_heap", ()).unwrap_err());
    sb.restore().unwrap();
    record(
        sb.call::<u64>("read_addr", (0x40_0000_0000u64,))
            .unwrap_err(),
    );
    let unique: std::collections::HashSet<_> = kinds.iter().collect();
    assert_eq!(unique.len(), kinds.len());
}

#[test]
fn poisoned_keeps_the_fault_that_poisoned_the_sandbox() {
    let mut sb = common::simple().build().unwrap();
    let fault = sb.call::<u64>("divide_by_zero", (1u64,)).unwrap_err();
    let Error::DivideByZero { rip } = fault else {
        panic!("{fault:?}")
    };
    match sb.call::<i32>("echo_i32", (1i32,)) {
        Err(Error::Poisoned { cause }) => {
            assert!(
                matches!(*cause, Error::DivideByZero { rip: r } if r == rip),
                "{cause:?}"
            )
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
    sb.restore().unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (2i32,)).unwrap(), 2);
}

//! End to end on KVM: the `fuzz` guest puts the fuzzer's bytes verbatim in its output buffer and
//! signals the host with an `out`, as a host call, a log record, a completion or an abort (or on
//! another port, with another width, with a length that is not the bytes' length). The host must
//! answer with a typed error or carry on, never panic, hang or allocate without bound; and what
//! it does must be what its own decoder says of those bytes (`boundary::decode_guest_message`):
//!
//! | the bytes on the port decode as | the call returns |
//! |---|---|
//! | nothing (malformed) | `Error::Malformed` |
//! | a host call, a log record | `Ok(())`: the host answered and resumed the guest, which returned |
//! | a result `Ok(())` | `Ok(())` (the guest is now one call behind: the sandbox is restored) |
//! | a result `Ok(value)` of another type | `Error::ReturnTypeMismatch` |
//! | a result `Err(e)` | `Error::GuestCall` with `e`'s code and message |
//! | an abort | `Error::GuestPanic` or `Error::GuestOutOfMemory` with its message |
//!
//! and a wrong width or a length larger than the buffer is `Error::Protocol`, the exception port
//! from ring 3 `Error::Protocol`, the doorbell's park port during a call `Error::Protocol`,
//! another protocol port `Error::UnexpectedExit`, and a port outside the protocol a #GP
//! (`Error::CpuException`).
//!
//! Input: `port: u8 | mode: u8 | len: u32 LE | bytes`, read by `hyperlight_fuzz::input::RawInput`.
#![no_main]

use std::cell::RefCell;

use hyperlight_fuzz::input::RawInput;
use hyperlight_fuzz::kvm::Harness;
use hyperlight_fuzz::same_value;
use hyperlight_schema::abi::{PORT_DONE, PORT_EXCEPTION, PORT_PARK, PORT_RANGE_START};
use hyperlight_schema::{ErrorCode, GuestError, Value, ValueType};
use hyperlight_sys::boundary::{decode_guest_message, is_message_port, GuestMessage};
use hyperlight_sys::{Error, SandboxConfig};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static FUZZ: RefCell<Harness> = RefCell::new(Harness::new("fuzz"));
}

/// What the call must return; `None` when the host reads bytes the fuzzer did not write (a length
/// beyond them), which only a port-independent check can judge.
fn expected(port: u16, width: u8, len: u32, bytes: &[u8]) -> Option<Result<Value, Error>> {
    let output_size = SandboxConfig::default().output_size;
    let protocol = |reason: &str| {
        Some(Err(Error::Protocol {
            reason: reason.into(),
        }))
    };
    // The TSS I/O bitmap opens the 16 protocol ports; an `out` must have all its bytes' ports open.
    let last = u32::from(port) + u32::from(width);
    if port < PORT_RANGE_START || last > u32::from(PORT_RANGE_START) + 16 {
        return Some(Err(Error::CpuException {
            vector: 13,
            error_code: 0,
            rip: 0,
        }));
    }
    if port == PORT_EXCEPTION {
        return protocol("exception port from ring 3");
    }
    if port == PORT_PARK {
        return protocol("the guest parked with a call in flight");
    }
    if !is_message_port(port) {
        return Some(Err(Error::UnexpectedExit {
            exit: String::new(),
        }));
    }
    if width != 4 || u64::from(len) > output_size {
        return protocol("width or length");
    }
    let message = bytes.get(..len as usize)?;
    Some(match decode_guest_message(port, message) {
        Err(e) => Err(e),
        Ok(GuestMessage::HostCall(_) | GuestMessage::Log(_)) => Ok(Value::Void),
        Ok(GuestMessage::Done(Ok(Value::Void))) => Ok(Value::Void),
        Ok(GuestMessage::Done(Ok(v))) => Err(Error::ReturnTypeMismatch {
            expected: ValueType::Void,
            actual: v.value_type(),
        }),
        Ok(GuestMessage::Done(Err(GuestError { code, message }))) => {
            Err(Error::GuestCall { code, message })
        }
        Ok(GuestMessage::Abort(GuestError {
            code: ErrorCode::OutOfMemory,
            message,
        })) => Err(Error::GuestOutOfMemory { message }),
        Ok(GuestMessage::Abort(GuestError { message, .. })) => Err(Error::GuestPanic { message }),
    })
}

/// Whether `actual` is `expected`, up to the details the model cannot know (reasons, addresses).
fn matches(expected: &Result<Value, Error>, actual: &Result<Value, Error>) -> bool {
    match (expected, actual) {
        (Ok(a), Ok(b)) => same_value(a, b),
        (Err(Error::Malformed(a)), Err(Error::Malformed(b))) => a == b,
        (Err(Error::Protocol { .. }), Err(Error::Protocol { .. })) => true,
        (Err(Error::UnexpectedExit { .. }), Err(Error::UnexpectedExit { .. })) => true,
        (
            Err(Error::CpuException { vector: a, .. }),
            Err(Error::CpuException { vector: b, .. }),
        ) => a == b,
        (
            Err(Error::ReturnTypeMismatch {
                expected: a,
                actual: b,
            }),
            Err(Error::ReturnTypeMismatch {
                expected: c,
                actual: d,
            }),
        ) => (a, b) == (c, d),
        (
            Err(Error::GuestCall {
                code: a,
                message: m,
            }),
            Err(Error::GuestCall {
                code: b,
                message: n,
            }),
        ) => (a, m) == (b, n),
        (Err(Error::GuestPanic { message: a }), Err(Error::GuestPanic { message: b })) => a == b,
        (
            Err(Error::GuestOutOfMemory { message: a }),
            Err(Error::GuestOutOfMemory { message: b }),
        ) => a == b,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let input = RawInput::parse(data);
    let (port, width, sent) = (input.port, input.width, input.sent());
    let expect = expected(port, width, sent, &input.bytes);
    FUZZ.with_borrow_mut(|h| {
        let (function, args) = input.call();
        let result = h.call(function, args, ValueType::Void);
        if let Some(expect) = &expect {
            assert!(
                matches(expect, &result),
                "port {port:#x}, width {width}, len {sent}: expected {expect:?}, got {result:?}"
            );
        } else {
            assert!(
                !matches!(result, Err(Error::Poisoned { .. } | Error::ThreadGone)),
                "{result:?}"
            );
        }
        // A completion the host accepted leaves the guest parked inside `raw`, one call behind.
        let behind = port == PORT_DONE
            && matches!(
                result,
                Ok(_) | Err(Error::GuestCall { .. } | Error::ReturnTypeMismatch { .. })
            );
        if behind {
            h.restore();
        } else {
            h.recover(&result);
        }
    });
});

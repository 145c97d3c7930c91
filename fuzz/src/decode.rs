//! Properties of the guest-to-host decoders, checked on any bytes.
//!
//! For every decoder: it never panics; what it accepts respects the documented limits (at most
//! `MAX_PARAMS` arguments, no `Void` argument, and no more variable-length data than the buffer
//! plus `APPARENT_SIZE_SLACK`, so a hostile message cannot decode into much more memory than it
//! occupies); and what it accepts re-encodes into a message that decodes to the same thing and
//! re-encodes to the same bytes.

use hyperlight_schema::wire::{self, APPARENT_SIZE_SLACK, MAX_MESSAGE_SIZE};
use hyperlight_schema::ValueType;
use hyperlight_schema::{FunctionCall, FunctionCallResult, GuestError, LogRecord, MAX_PARAMS};
use hyperlight_sys::boundary::{self, GuestMessage};
use hyperlight_sys::Error;

use crate::{same_call, same_result, value_payload};

/// The decoded data may not exceed the buffer by more than the verifier's slack.
fn check_payload(what: &str, payload: usize, data: &[u8]) {
    assert!(
        payload <= data.len() + APPARENT_SIZE_SLACK,
        "{what}: {payload} bytes of strings and vectors decoded from a {}-byte message",
        data.len()
    );
}

/// Checks a decoded call (the limits), then its round trip.
pub fn check_call(call: &FunctionCall, data: &[u8]) {
    assert!(
        call.args.len() <= MAX_PARAMS,
        "{} arguments",
        call.args.len()
    );
    assert!(
        call.args.iter().all(|a| a.value_type() != ValueType::Void),
        "void argument accepted"
    );
    let payload = call.name.len() + call.args.iter().map(value_payload).sum::<usize>();
    check_payload("FunctionCall", payload, data);
    let bytes = wire::encode_function_call(call);
    let back = wire::decode_function_call(&bytes).expect("a re-encoded call decodes");
    assert!(same_call(call, &back), "{call:?} came back as {back:?}");
    assert_eq!(
        wire::encode_function_call(&back),
        bytes,
        "encoding is not stable"
    );
}

/// Checks a decoded result, then its round trip.
pub fn check_result(result: &FunctionCallResult, data: &[u8]) {
    let payload = match result {
        Ok(value) => value_payload(value),
        Err(error) => error.message.len(),
    };
    check_payload("FunctionCallResult", payload, data);
    let bytes = wire::encode_function_call_result(result);
    let back = wire::decode_function_call_result(&bytes).expect("a re-encoded result decodes");
    assert!(
        same_result(result, &back),
        "{result:?} came back as {back:?}"
    );
    assert_eq!(
        wire::encode_function_call_result(&back),
        bytes,
        "encoding is not stable"
    );
}

/// Checks a decoded guest error, then its round trip.
pub fn check_guest_error(error: &GuestError, data: &[u8]) {
    check_payload("GuestError", error.message.len(), data);
    let bytes = wire::encode_guest_error(error);
    let back = wire::decode_guest_error(&bytes).expect("a re-encoded error decodes");
    assert_eq!(error, &back);
    assert_eq!(
        wire::encode_guest_error(&back),
        bytes,
        "encoding is not stable"
    );
}

/// Checks a decoded log record, then its round trip.
pub fn check_log_record(record: &LogRecord, data: &[u8]) {
    let payload = record.message.len() + record.target.len() + record.file.len();
    check_payload("LogRecord", payload, data);
    let bytes = wire::encode_log_record(record);
    let back = wire::decode_log_record(&bytes).expect("a re-encoded record decodes");
    assert_eq!(record, &back);
    assert_eq!(
        wire::encode_log_record(&back),
        bytes,
        "encoding is not stable"
    );
}

/// Every decoder rejects what is too short or too long before looking at it.
fn check_size_limits<T: std::fmt::Debug>(data: &[u8], decoded: &Result<T, wire::DecodeError>) {
    if data.len() < wire::MIN_MESSAGE_SIZE {
        assert!(
            matches!(decoded, Err(wire::DecodeError::TooShort { .. })),
            "{} bytes: {decoded:?}",
            data.len()
        );
    }
    if data.len() > MAX_MESSAGE_SIZE {
        assert!(matches!(decoded, Err(wire::DecodeError::TooLarge { .. })));
    }
}

/// `decode_function_call` on any bytes.
pub fn function_call(data: &[u8]) {
    let decoded = wire::decode_function_call(data);
    check_size_limits(data, &decoded);
    if let Ok(call) = &decoded {
        check_call(call, data);
    }
}

/// `decode_function_call_result` on any bytes.
pub fn function_call_result(data: &[u8]) {
    let decoded = wire::decode_function_call_result(data);
    check_size_limits(data, &decoded);
    if let Ok(result) = &decoded {
        check_result(result, data);
    }
}

/// `decode_guest_error` on any bytes.
pub fn guest_error(data: &[u8]) {
    let decoded = wire::decode_guest_error(data);
    check_size_limits(data, &decoded);
    if let Ok(error) = &decoded {
        check_guest_error(error, data);
    }
}

/// `decode_log_record` on any bytes.
pub fn log_record(data: &[u8]) {
    let decoded = wire::decode_log_record(data);
    check_size_limits(data, &decoded);
    if let Ok(record) = &decoded {
        check_log_record(record, data);
    }
}

/// The host's dispatcher (`boundary::decode_guest_message`, what the exit loop calls) on a
/// message `data` that arrived on `port`: it must agree with the decoder of the port's type, and
/// reject every port that carries no message with a protocol error.
pub fn guest_message(port: u16, data: &[u8]) {
    let decoded = boundary::decode_guest_message(port, data);
    if !boundary::is_message_port(port) {
        assert!(
            matches!(decoded, Err(Error::Protocol { .. })),
            "port {port:#x}: {decoded:?}"
        );
        return;
    }
    let message = match decoded {
        Ok(message) => message,
        Err(Error::Malformed(e)) => {
            // The same verdict as the port's own decoder.
            let direct = match port {
                hyperlight_schema::abi::PORT_HOST_CALL => {
                    wire::decode_function_call(data).map(|_| ())
                }
                hyperlight_schema::abi::PORT_LOG => wire::decode_log_record(data).map(|_| ()),
                hyperlight_schema::abi::PORT_DONE => {
                    wire::decode_function_call_result(data).map(|_| ())
                }
                _ => wire::decode_guest_error(data).map(|_| ()),
            };
            assert_eq!(direct, Err(e), "port {port:#x}");
            return;
        }
        Err(other) => panic!("port {port:#x}: not a decoding error: {other:?}"),
    };
    match (port, &message) {
        (hyperlight_schema::abi::PORT_HOST_CALL, GuestMessage::HostCall(call)) => {
            check_call(call, data)
        }
        (hyperlight_schema::abi::PORT_LOG, GuestMessage::Log(record)) => {
            check_log_record(record, data)
        }
        (hyperlight_schema::abi::PORT_DONE, GuestMessage::Done(result)) => {
            check_result(result, data)
        }
        (hyperlight_schema::abi::PORT_ABORT, GuestMessage::Abort(error)) => {
            check_guest_error(error, data)
        }
        _ => panic!("port {port:#x} decoded as {message:?}"),
    }
}

//! The host's side of the guest-to-host message boundary: how a message the guest signals with
//! `out dx, eax` is copied out of the output buffer and decoded, by port.
//!
//! Everything these functions look at is under the guest's control: the port, the width and the
//! value of the `out`, and the bytes of the output buffer. The exit loop of every sandbox calls
//! exactly these two functions, in this order, for the four message ports; they are public so
//! that the fuzz targets (`fuzz/`) and the regression tests drive the very code the host runs.
//! See `docs/abi.md` ("Messages and ports").

use hyperlight_schema::abi::{PORT_ABORT, PORT_DONE, PORT_HOST_CALL, PORT_LOG};
use hyperlight_schema::{wire, FunctionCall, FunctionCallResult, GuestError, LogRecord, Value};

use crate::error::Error;
use crate::vm::layout::Region;
use crate::vm::memory::GuestMemory;

/// A decoded guest-to-host message, by the port it arrived on.
#[derive(Clone, Debug, PartialEq)]
pub enum GuestMessage {
    /// `PORT_HOST_CALL`: the guest calls a host function.
    HostCall(FunctionCall),
    /// `PORT_LOG`: a log record.
    Log(LogRecord),
    /// `PORT_DONE`: the call (or the init) is over, with this result.
    Done(FunctionCallResult),
    /// `PORT_ABORT`: the guest gave up (panic, out of memory).
    Abort(GuestError),
}

/// Whether `port` is one of the four ports that carry a message in the output buffer.
pub fn is_message_port(port: u16) -> bool {
    matches!(port, PORT_HOST_CALL | PORT_LOG | PORT_DONE | PORT_ABORT)
}

/// Copies the guest's message out of `output` (the output buffer), once, after checking the `out`
/// that signalled it: `size` is the width of the `out` in bytes (it must be 4) and `len` its
/// value, the message length (at most the size of the buffer).
///
/// Errors: [`Error::Protocol`] for a wrong width or a length larger than the buffer, and
/// whatever [`GuestMemory::read`] reports if `output` does not lie in `mem` (never for the
/// regions of a sandbox's `Layout`). Allocates exactly `len` bytes, which is bounded by the size
/// of the output buffer.
pub fn read_guest_message(
    mem: &GuestMemory,
    output: Region,
    len: u32,
    size: u8,
) -> Result<Vec<u8>, Error> {
    if size != 4 {
        return Err(Error::Protocol {
            reason: format!("message length sent with a {size}-byte `out`, need 4"),
        });
    }
    check_message_len(output, len)?;
    mem.read(output.start, len as usize)
}

/// Checks that a message of `len` bytes fits the output buffer `output`:
/// [`Error::Protocol`] if it does not.
pub(crate) fn check_message_len(output: Region, len: u32) -> Result<(), Error> {
    if u64::from(len) > output.size() {
        return Err(Error::Protocol {
            reason: format!(
                "message length {len} exceeds the output buffer of {} bytes",
                output.size()
            ),
        });
    }
    Ok(())
}

/// The encoded host-call reply `reply` for an input buffer that holds at most `capacity`
/// message bytes: a reply too large is replaced by a `MalformedMessage` error that fits.
pub(crate) fn reply_message(reply: &FunctionCallResult, capacity: u64) -> Vec<u8> {
    let bytes = wire::encode_function_call_result(reply);
    if bytes.len() as u64 <= capacity {
        return bytes;
    }
    wire::encode_function_call_result(&Err(GuestError {
        code: hyperlight_schema::ErrorCode::MalformedMessage,
        message: format!(
            "host reply of {} bytes exceeds the input buffer ({capacity})",
            bytes.len()
        ),
    }))
}

/// A call's result as the guest reported it: its value, or [`Error::GuestCall`] with the
/// guest's error.
pub(crate) fn call_result(result: FunctionCallResult) -> Result<Value, Error> {
    result.map_err(|GuestError { code, message }| Error::GuestCall { code, message })
}

/// Decodes the message `bytes` that arrived on `port` with the decoder of that port's schema.
///
/// Errors: [`Error::Malformed`] if the bytes do not verify as that port's message, and
/// [`Error::Protocol`] for a port that carries no message (see [`is_message_port`]).
pub fn decode_guest_message(port: u16, bytes: &[u8]) -> Result<GuestMessage, Error> {
    Ok(match port {
        PORT_HOST_CALL => GuestMessage::HostCall(wire::decode_function_call(bytes)?),
        PORT_LOG => GuestMessage::Log(wire::decode_log_record(bytes)?),
        PORT_DONE => GuestMessage::Done(wire::decode_function_call_result(bytes)?),
        PORT_ABORT => GuestMessage::Abort(wire::decode_guest_error(bytes)?),
        other => {
            return Err(Error::Protocol {
                reason: format!("port {other:#x} carries no message"),
            })
        }
    })
}

//! Calls from the guest to functions the host registered.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hyperlight_schema::wire::{decode_function_call_result, encode_function_call};
use hyperlight_schema::{
    ErrorCode, FunctionCall, FunctionCallResult, GuestError, Value, ValueType, WireArgs, WireType,
};

use crate::runtime::{with_input, TooLarge};

/// Calls the host function `name` with typed arguments (a tuple of up to 16 [`WireType`]s: `()`,
/// `(x,)`, `(a, b)`, ...) and expects a value of type `R` back (`()` for a void function).
///
/// Costs one VM exit, or none when the host answers it in memory (a call posted through the
/// doorbell, to an async host function: `docs/abi.md`, "The doorbell"). Errors: whatever the host reports (`UnknownFunction`, `WrongArity`,
/// `WrongArgumentType`, `WrongReturnType`, `HostFunctionFailed`, `HostCallNotAllowed`, ...), or
/// `MalformedMessage` if the call does not fit the output buffer or the answer cannot be decoded,
/// or `WrongReturnType` if the host answered with a value of another type than `R`.
///
/// ```ignore
/// let sum: i32 = hyperlight_guest::call_host("host_add", (1i32, 2i32))?;
/// ```
pub fn call_host<R: WireType>(name: &str, args: impl WireArgs) -> Result<R, GuestError> {
    let value = call_host_values(name, args.into_values(), R::TYPE)?;
    let actual = value.value_type();
    R::from_value(value).ok_or_else(|| GuestError {
        code: ErrorCode::WrongReturnType,
        message: format!(
            "host function `{name}` returned {actual:?}, expected {:?}",
            R::TYPE
        ),
    })
}

/// Calls the host function `name` with untyped arguments, expecting `return_type`.
///
/// The building block of [`call_host`]; useful when the types are only known at run time. The
/// returned value is whatever the host sent (not checked against `return_type`).
pub fn call_host_values(
    name: &str,
    args: Vec<Value>,
    return_type: ValueType,
) -> FunctionCallResult {
    let call = FunctionCall {
        name: String::from(name),
        args,
        return_type,
    };
    let message = encode_function_call(&call);
    drop(call);
    crate::runtime::call_host_message(&message).map_err(|TooLarge { len, max }| GuestError {
        code: ErrorCode::MalformedMessage,
        message: format!("call of host function `{name}` too large: {len} bytes > {max}"),
    })?;
    drop(message);
    with_input(decode_function_call_result)?.map_err(|e| GuestError {
        code: ErrorCode::MalformedMessage,
        message: format!("cannot decode the result of host function `{name}`: {e}"),
    })?
}

//! The FlatBuffer encoding of every message (schemas in `schema/fbs/*.fbs`). This module is the
//! only user of the flatc-generated code; everything else sees the owned types of the crate root.
//!
//! Every `decode_*` function is safe on hostile input: it never panics, and it returns a
//! [`DecodeError`] unless the buffer is a well-formed message of the expected type within the
//! limits below. In order, a decoder
//! 1. rejects buffers longer than [`MAX_MESSAGE_SIZE`] or too short to hold a root offset and a
//!    file identifier ([`MIN_MESSAGE_SIZE`]);
//! 2. checks the 4-byte file identifier, so a message of one type is not taken for another;
//! 3. runs the FlatBuffers verifier with [`MAX_DEPTH`], [`MAX_TABLES`] and an apparent size of at
//!    most the buffer length plus [`APPARENT_SIZE_SLACK`] (so no object shared by several
//!    references can make the decoded message much larger than the buffer);
//! 4. converts to the owned types, rejecting unknown enum and union values, absent fields, more
//!    than [`MAX_PARAMS`] arguments and `Void` arguments.
//!
//! Encoders do not validate: they encode whatever they are given (a call with too many arguments
//! encodes, and its decoding fails). They panic only if a message would exceed the 2 GiB limit of
//! the FlatBuffers format.
//!
//! To change the schema, edit `schema/fbs/*.fbs` and run `scripts/regen-schema.sh`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use flatbuffers::{
    FlatBufferBuilder, Follow, UnionWIPOffset, Verifiable, VerifierOptions, WIPOffset,
};

use crate::types::{
    ErrorCode, FunctionCall, FunctionCallResult, GuestError, LogLevel, LogRecord, Value, ValueType,
    MAX_PARAMS,
};

/// The flatc output, checked in and never edited by hand (see `scripts/regen-schema.sh`).
#[path = "../generated/mod.rs"]
#[rustfmt::skip]
#[allow(
    unsafe_code,
    missing_docs,
    dead_code,
    unused_imports,
    unused_extern_crates,
    unsafe_op_in_unsafe_fn,
    deprecated,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    mismatched_lifetime_syntaxes,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    rustdoc::all
)]
mod generated;

use generated::hyperlight::wire as fb;

mod wasi;
pub use wasi::{
    decode_wasi_outcome, decode_wasi_run, encode_wasi_outcome, encode_wasi_run,
    WASI_OUTCOME_IDENTIFIER, WASI_RUN_IDENTIFIER,
};
mod wasm;
pub use wasm::{
    decode_wasm_link, decode_wasm_module, encode_wasm_link, encode_wasm_module,
    WASM_LINK_IDENTIFIER, WASM_MODULE_IDENTIFIER,
};

/// The largest message any decoder accepts, in bytes (16 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The smallest possible message: a root offset and a file identifier.
pub const MIN_MESSAGE_SIZE: usize = 8;

/// The deepest table nesting the verifier accepts. The schemas nest at most 3 deep
/// (`FunctionCall` > `Parameter` > value table; `FunctionCallResult` > `ReturnValue` > value).
pub const MAX_DEPTH: usize = 8;

/// The most tables the verifier visits in one message. A call with [`MAX_PARAMS`] arguments has
/// 33; the bound is generous so that a call with a few too many arguments is reported as
/// [`DecodeError::TooManyArgs`] rather than as a verifier error, while verification work stays
/// bounded whatever the input.
pub const MAX_TABLES: usize = 256;

/// How much the verifier's apparent size (the message expanded into a tree; vtables shared by
/// several tables count once per table) may exceed the buffer length. A valid message of
/// [`MAX_PARAMS`] arguments needs less than 512 bytes of slack; the slack bounds how much larger
/// than the buffer a hostile message sharing one object between several fields can decode to.
pub const APPARENT_SIZE_SLACK: usize = 4096;

/// File identifier of a [`FunctionCall`] message.
pub const FUNCTION_CALL_IDENTIFIER: &str = fb::FUNCTION_CALL_IDENTIFIER;
/// File identifier of a [`FunctionCallResult`] message.
pub const FUNCTION_CALL_RESULT_IDENTIFIER: &str = fb::FUNCTION_CALL_RESULT_IDENTIFIER;
/// File identifier of a [`GuestError`] message.
pub const GUEST_ERROR_IDENTIFIER: &str = fb::GUEST_ERROR_IDENTIFIER;
/// File identifier of a [`LogRecord`] message.
pub const LOG_RECORD_IDENTIFIER: &str = fb::LOG_RECORD_IDENTIFIER;

/// Why a buffer could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer is longer than [`MAX_MESSAGE_SIZE`].
    TooLarge {
        /// Length of the buffer.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The buffer is shorter than [`MIN_MESSAGE_SIZE`].
    TooShort {
        /// Length of the buffer.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The buffer's file identifier is not the one of the expected message type.
    WrongIdentifier {
        /// The identifier of the expected message type.
        expected: &'static str,
        /// The 4 bytes found in the buffer.
        found: [u8; 4],
    },
    /// The FlatBuffers verifier rejected the buffer (bad offset, out of bounds, invalid UTF-8,
    /// missing required field, a limit exceeded, ...).
    Invalid {
        /// The verifier's description.
        reason: String,
    },
    /// A call carries more than [`MAX_PARAMS`] arguments.
    TooManyArgs {
        /// Number of arguments in the message.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A list of a WebAssembly runner message holds more items than its limit
    /// ([`crate::wasm::MAX_EXTERNS`], [`MAX_PARAMS`]).
    TooManyItems {
        /// `Table.field` of the list.
        field: &'static str,
        /// Number of items in the message.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A call argument is `Void`, which is valid only as a return value.
    VoidArgument {
        /// Position of the argument.
        index: usize,
    },
    /// A value's union tag is not a known value type.
    UnknownValueType {
        /// The tag found.
        tag: u8,
    },
    /// A `FunctionCallResult`'s union tag is neither a return value nor an error.
    UnknownOutcome {
        /// The tag found.
        tag: u8,
    },
    /// A field the message needs is absent.
    MissingField {
        /// `Table.field` of the absent field.
        field: &'static str,
    },
    /// An enum field holds a value the schema does not define.
    UnknownEnumValue {
        /// `Table.field` of the enum field.
        field: &'static str,
        /// The value found.
        value: i64,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
            }
            DecodeError::TooShort { len, min } => {
                write!(
                    f,
                    "message of {len} bytes is shorter than the minimum of {min} bytes"
                )
            }
            DecodeError::WrongIdentifier { expected, found } => write!(
                f,
                "file identifier \"{}\" is not the expected \"{expected}\"",
                found.escape_ascii()
            ),
            DecodeError::Invalid { reason } => write!(f, "invalid FlatBuffer: {reason}"),
            DecodeError::TooManyArgs { count, max } => {
                write!(
                    f,
                    "call has {count} arguments, more than the limit of {max}"
                )
            }
            DecodeError::TooManyItems { field, count, max } => {
                write!(
                    f,
                    "`{field}` has {count} items, more than the limit of {max}"
                )
            }
            DecodeError::VoidArgument { index } => {
                write!(
                    f,
                    "argument {index} is void, which is valid only as a return value"
                )
            }
            DecodeError::UnknownValueType { tag } => write!(f, "unknown value type tag {tag}"),
            DecodeError::UnknownOutcome { tag } => write!(f, "unknown call outcome tag {tag}"),
            DecodeError::MissingField { field } => write!(f, "missing field `{field}`"),
            DecodeError::UnknownEnumValue { field, value } => {
                write!(f, "unknown value {value} in enum field `{field}`")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------------
// Encoding

/// A capacity hint for a builder: the payload plus a fixed overhead per table.
fn value_size_hint(value: &Value) -> usize {
    match value {
        Value::String(s) => 32 + s.len(),
        Value::Bytes(b) => 32 + b.len(),
        _ => 32,
    }
}

fn new_builder(hint: usize) -> FlatBufferBuilder<'static> {
    FlatBufferBuilder::with_capacity(hint.saturating_add(64).min(MAX_MESSAGE_SIZE))
}

/// The finished bytes of `fbb`, moved to the start of the builder's own vector.
fn into_bytes(fbb: FlatBufferBuilder<'_>) -> Vec<u8> {
    let (mut buf, head) = fbb.collapse();
    buf.drain(..head);
    buf
}

fn value_type_to_fb(t: ValueType) -> fb::ValueType {
    match t {
        ValueType::I32 => fb::ValueType::I32,
        ValueType::U32 => fb::ValueType::U32,
        ValueType::I64 => fb::ValueType::I64,
        ValueType::U64 => fb::ValueType::U64,
        ValueType::F32 => fb::ValueType::F32,
        ValueType::F64 => fb::ValueType::F64,
        ValueType::Bool => fb::ValueType::Bool,
        ValueType::String => fb::ValueType::String,
        ValueType::Bytes => fb::ValueType::Bytes,
        ValueType::Void => fb::ValueType::Void,
    }
}

fn error_code_to_fb(code: ErrorCode) -> fb::ErrorCode {
    match code {
        ErrorCode::UnknownFunction => fb::ErrorCode::UnknownFunction,
        ErrorCode::WrongArity => fb::ErrorCode::WrongArity,
        ErrorCode::WrongArgumentType => fb::ErrorCode::WrongArgumentType,
        ErrorCode::WrongReturnType => fb::ErrorCode::WrongReturnType,
        ErrorCode::Panic => fb::ErrorCode::Panic,
        ErrorCode::OutOfMemory => fb::ErrorCode::OutOfMemory,
        ErrorCode::HostFunctionFailed => fb::ErrorCode::HostFunctionFailed,
        ErrorCode::HostCallNotAllowed => fb::ErrorCode::HostCallNotAllowed,
        ErrorCode::MalformedMessage => fb::ErrorCode::MalformedMessage,
        ErrorCode::GuestFunctionFailed => fb::ErrorCode::GuestFunctionFailed,
        ErrorCode::Cancelled => fb::ErrorCode::Cancelled,
        ErrorCode::WasmTrap => fb::ErrorCode::WasmTrap,
        ErrorCode::WasmAbi => fb::ErrorCode::WasmAbi,
    }
}

fn log_level_to_fb(level: LogLevel) -> fb::LogLevel {
    match level {
        LogLevel::Trace => fb::LogLevel::Trace,
        LogLevel::Debug => fb::LogLevel::Debug,
        LogLevel::Info => fb::LogLevel::Info,
        LogLevel::Warn => fb::LogLevel::Warn,
        LogLevel::Error => fb::LogLevel::Error,
    }
}

/// Writes the value table of `value`; returns its union tag and offset.
fn write_value(
    fbb: &mut FlatBufferBuilder<'_>,
    value: &Value,
) -> (fb::Value, WIPOffset<UnionWIPOffset>) {
    match value {
        Value::Void => {
            let o = fb::VoidValue::create(fbb, &fb::VoidValueArgs {});
            (fb::Value::VoidValue, o.as_union_value())
        }
        Value::I32(v) => {
            let o = fb::I32Value::create(fbb, &fb::I32ValueArgs { value: Some(*v) });
            (fb::Value::I32Value, o.as_union_value())
        }
        Value::U32(v) => {
            let o = fb::U32Value::create(fbb, &fb::U32ValueArgs { value: Some(*v) });
            (fb::Value::U32Value, o.as_union_value())
        }
        Value::I64(v) => {
            let o = fb::I64Value::create(fbb, &fb::I64ValueArgs { value: Some(*v) });
            (fb::Value::I64Value, o.as_union_value())
        }
        Value::U64(v) => {
            let o = fb::U64Value::create(fbb, &fb::U64ValueArgs { value: Some(*v) });
            (fb::Value::U64Value, o.as_union_value())
        }
        Value::F32(v) => {
            let o = fb::F32Value::create(fbb, &fb::F32ValueArgs { value: Some(*v) });
            (fb::Value::F32Value, o.as_union_value())
        }
        Value::F64(v) => {
            let o = fb::F64Value::create(fbb, &fb::F64ValueArgs { value: Some(*v) });
            (fb::Value::F64Value, o.as_union_value())
        }
        Value::Bool(v) => {
            let o = fb::BoolValue::create(fbb, &fb::BoolValueArgs { value: Some(*v) });
            (fb::Value::BoolValue, o.as_union_value())
        }
        Value::String(s) => {
            let s = fbb.create_string(s);
            let o = fb::StringValue::create(fbb, &fb::StringValueArgs { value: Some(s) });
            (fb::Value::StringValue, o.as_union_value())
        }
        Value::Bytes(b) => {
            let b = fbb.create_vector(b);
            let o = fb::BytesValue::create(fbb, &fb::BytesValueArgs { value: Some(b) });
            (fb::Value::BytesValue, o.as_union_value())
        }
    }
}

fn write_guest_error<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    error: &GuestError,
) -> WIPOffset<fb::GuestError<'a>> {
    let message = fbb.create_string(&error.message);
    fb::GuestError::create(
        fbb,
        &fb::GuestErrorArgs {
            code: Some(error_code_to_fb(error.code)),
            message: Some(message),
        },
    )
}

/// Encodes a [`FunctionCall`] (identifier [`FUNCTION_CALL_IDENTIFIER`]).
pub fn encode_function_call(call: &FunctionCall) -> Vec<u8> {
    let hint = 64
        + call.name.len()
        + call
            .args
            .iter()
            .map(|a| 16 + value_size_hint(a))
            .sum::<usize>();
    let mut fbb = new_builder(hint);
    let name = fbb.create_string(&call.name);
    let params: Vec<WIPOffset<fb::Parameter<'_>>> = call
        .args
        .iter()
        .map(|arg| {
            let (value_type, value) = write_value(&mut fbb, arg);
            fb::Parameter::create(
                &mut fbb,
                &fb::ParameterArgs {
                    value_type,
                    value: Some(value),
                },
            )
        })
        .collect();
    let parameters = fbb.create_vector(&params);
    let root = fb::FunctionCall::create(
        &mut fbb,
        &fb::FunctionCallArgs {
            name: Some(name),
            parameters: Some(parameters),
            return_type: Some(value_type_to_fb(call.return_type)),
        },
    );
    fb::finish_function_call_buffer(&mut fbb, root);
    into_bytes(fbb)
}

/// Encodes a [`FunctionCallResult`] (identifier [`FUNCTION_CALL_RESULT_IDENTIFIER`]).
pub fn encode_function_call_result(result: &FunctionCallResult) -> Vec<u8> {
    let hint = match result {
        Ok(value) => value_size_hint(value),
        Err(error) => 32 + error.message.len(),
    };
    let mut fbb = new_builder(hint + 32);
    let (outcome_type, outcome) = match result {
        Ok(value) => {
            let (value_type, value) = write_value(&mut fbb, value);
            let rv = fb::ReturnValue::create(
                &mut fbb,
                &fb::ReturnValueArgs {
                    value_type,
                    value: Some(value),
                },
            );
            (fb::Outcome::ReturnValue, rv.as_union_value())
        }
        Err(error) => (
            fb::Outcome::GuestError,
            write_guest_error(&mut fbb, error).as_union_value(),
        ),
    };
    let root = fb::FunctionCallResult::create(
        &mut fbb,
        &fb::FunctionCallResultArgs {
            outcome_type,
            outcome: Some(outcome),
        },
    );
    fb::finish_function_call_result_buffer(&mut fbb, root);
    into_bytes(fbb)
}

/// Encodes a [`GuestError`] (identifier [`GUEST_ERROR_IDENTIFIER`]).
pub fn encode_guest_error(error: &GuestError) -> Vec<u8> {
    let mut fbb = new_builder(32 + error.message.len());
    let root = write_guest_error(&mut fbb, error);
    fb::finish_guest_error_buffer(&mut fbb, root);
    into_bytes(fbb)
}

/// Encodes a [`LogRecord`] (identifier [`LOG_RECORD_IDENTIFIER`]).
pub fn encode_log_record(record: &LogRecord) -> Vec<u8> {
    let mut fbb = new_builder(64 + record.message.len() + record.target.len() + record.file.len());
    let message = fbb.create_string(&record.message);
    let target = fbb.create_string(&record.target);
    let file = fbb.create_string(&record.file);
    let root = fb::LogRecord::create(
        &mut fbb,
        &fb::LogRecordArgs {
            level: Some(log_level_to_fb(record.level)),
            message: Some(message),
            target: Some(target),
            file: Some(file),
            line: Some(record.line),
        },
    );
    fb::finish_log_record_buffer(&mut fbb, root);
    into_bytes(fbb)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// The verifier options for a buffer of `len` bytes.
fn verifier_options(len: usize, limits: Limits) -> VerifierOptions {
    VerifierOptions {
        max_depth: MAX_DEPTH,
        max_tables: limits.max_tables,
        max_apparent_size: len
            .saturating_mul(limits.apparent_factor)
            .saturating_add(APPARENT_SIZE_SLACK),
        ignore_missing_null_terminator: false,
    }
}

/// Checks the size limits and the file identifier, then verifies `buf` as a `T` root.
fn verified_root<'a, T>(buf: &'a [u8], identifier: &'static str) -> Result<T::Inner, DecodeError>
where
    T: 'a + Follow<'a> + Verifiable,
{
    verified_root_with::<T>(
        buf,
        identifier,
        Limits {
            max_tables: MAX_TABLES,
            apparent_factor: 1,
        },
    )
}

/// The verifier's bounds for one message type.
#[derive(Clone, Copy)]
struct Limits {
    /// The most tables visited.
    max_tables: usize,
    /// The apparent size may be this many times the buffer length (plus the slack): more than
    /// 1 for messages of many small tables sharing one vtable, each of which counts it again.
    apparent_factor: usize,
}

/// [`verified_root`] with bounds of its own.
fn verified_root_with<'a, T>(
    buf: &'a [u8],
    identifier: &'static str,
    limits: Limits,
) -> Result<T::Inner, DecodeError>
where
    T: 'a + Follow<'a> + Verifiable,
{
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(DecodeError::TooLarge {
            len: buf.len(),
            max: MAX_MESSAGE_SIZE,
        });
    }
    // (`flatbuffers::buffer_has_identifier` panics on short buffers.)
    let found: [u8; 4] = match buf.get(4..MIN_MESSAGE_SIZE).and_then(|b| b.try_into().ok()) {
        Some(found) => found,
        None => {
            return Err(DecodeError::TooShort {
                len: buf.len(),
                min: MIN_MESSAGE_SIZE,
            })
        }
    };
    if found != identifier.as_bytes() {
        return Err(DecodeError::WrongIdentifier {
            expected: identifier,
            found,
        });
    }
    flatbuffers::root_with_opts::<T>(&verifier_options(buf.len(), limits), buf).map_err(|e| {
        // The verifier's text spans several lines (an error trace); keep it on one.
        let text = e.to_string();
        let mut reason = String::with_capacity(text.len());
        for word in text.split_whitespace() {
            if !reason.is_empty() {
                reason.push(' ');
            }
            reason.push_str(word);
        }
        DecodeError::Invalid { reason }
    })
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::MissingField { field })
}

fn value_type_from_fb(t: fb::ValueType, field: &'static str) -> Result<ValueType, DecodeError> {
    Ok(match t {
        fb::ValueType::I32 => ValueType::I32,
        fb::ValueType::U32 => ValueType::U32,
        fb::ValueType::I64 => ValueType::I64,
        fb::ValueType::U64 => ValueType::U64,
        fb::ValueType::F32 => ValueType::F32,
        fb::ValueType::F64 => ValueType::F64,
        fb::ValueType::Bool => ValueType::Bool,
        fb::ValueType::String => ValueType::String,
        fb::ValueType::Bytes => ValueType::Bytes,
        fb::ValueType::Void => ValueType::Void,
        other => {
            return Err(DecodeError::UnknownEnumValue {
                field,
                value: i64::from(other.0),
            })
        }
    })
}

fn error_code_from_fb(code: fb::ErrorCode) -> Result<ErrorCode, DecodeError> {
    Ok(match code {
        fb::ErrorCode::UnknownFunction => ErrorCode::UnknownFunction,
        fb::ErrorCode::WrongArity => ErrorCode::WrongArity,
        fb::ErrorCode::WrongArgumentType => ErrorCode::WrongArgumentType,
        fb::ErrorCode::WrongReturnType => ErrorCode::WrongReturnType,
        fb::ErrorCode::Panic => ErrorCode::Panic,
        fb::ErrorCode::OutOfMemory => ErrorCode::OutOfMemory,
        fb::ErrorCode::HostFunctionFailed => ErrorCode::HostFunctionFailed,
        fb::ErrorCode::HostCallNotAllowed => ErrorCode::HostCallNotAllowed,
        fb::ErrorCode::MalformedMessage => ErrorCode::MalformedMessage,
        fb::ErrorCode::GuestFunctionFailed => ErrorCode::GuestFunctionFailed,
        fb::ErrorCode::Cancelled => ErrorCode::Cancelled,
        fb::ErrorCode::WasmTrap => ErrorCode::WasmTrap,
        fb::ErrorCode::WasmAbi => ErrorCode::WasmAbi,
        other => {
            return Err(DecodeError::UnknownEnumValue {
                field: "GuestError.code",
                value: i64::from(other.0),
            })
        }
    })
}

fn log_level_from_fb(level: fb::LogLevel) -> Result<LogLevel, DecodeError> {
    Ok(match level {
        fb::LogLevel::Trace => LogLevel::Trace,
        fb::LogLevel::Debug => LogLevel::Debug,
        fb::LogLevel::Info => LogLevel::Info,
        fb::LogLevel::Warn => LogLevel::Warn,
        fb::LogLevel::Error => LogLevel::Error,
        other => {
            return Err(DecodeError::UnknownEnumValue {
                field: "LogRecord.level",
                value: i64::from(other.0),
            })
        }
    })
}

/// A table holding a `Value` union (`Parameter`, `ReturnValue`): the union's tag and the
/// generated accessor of each member, which checks the tag before it reads the member's table.
trait ValueUnion<'a> {
    fn tag(&self) -> fb::Value;
    fn i32(&self) -> Option<fb::I32Value<'a>>;
    fn u32(&self) -> Option<fb::U32Value<'a>>;
    fn i64(&self) -> Option<fb::I64Value<'a>>;
    fn u64(&self) -> Option<fb::U64Value<'a>>;
    fn f32(&self) -> Option<fb::F32Value<'a>>;
    fn f64(&self) -> Option<fb::F64Value<'a>>;
    fn bool(&self) -> Option<fb::BoolValue<'a>>;
    fn string(&self) -> Option<fb::StringValue<'a>>;
    fn bytes(&self) -> Option<fb::BytesValue<'a>>;
}

macro_rules! value_union {
    ($($table:ident),*) => {$(
        impl<'a> ValueUnion<'a> for fb::$table<'a> {
            fn tag(&self) -> fb::Value { self.value_type() }
            fn i32(&self) -> Option<fb::I32Value<'a>> { self.value_as_i32_value() }
            fn u32(&self) -> Option<fb::U32Value<'a>> { self.value_as_u32_value() }
            fn i64(&self) -> Option<fb::I64Value<'a>> { self.value_as_i64_value() }
            fn u64(&self) -> Option<fb::U64Value<'a>> { self.value_as_u64_value() }
            fn f32(&self) -> Option<fb::F32Value<'a>> { self.value_as_f32_value() }
            fn f64(&self) -> Option<fb::F64Value<'a>> { self.value_as_f64_value() }
            fn bool(&self) -> Option<fb::BoolValue<'a>> { self.value_as_bool_value() }
            fn string(&self) -> Option<fb::StringValue<'a>> { self.value_as_string_value() }
            fn bytes(&self) -> Option<fb::BytesValue<'a>> { self.value_as_bytes_value() }
        }
    )*};
}

value_union!(Parameter, ReturnValue);

/// Reads a verified `Value` union. Each member is read through the generated accessor of its
/// tag, and only for a known tag, since the verifier does not check the value of an unknown tag
/// (not even that its offset is inside the buffer).
fn read_value<'a>(union: &impl ValueUnion<'a>) -> Result<Value, DecodeError> {
    let member = || DecodeError::MissingField { field: "value" };
    Ok(match union.tag() {
        fb::Value::VoidValue => Value::Void,
        fb::Value::I32Value => Value::I32(required(
            union.i32().ok_or_else(member)?.value(),
            "I32Value.value",
        )?),
        fb::Value::U32Value => Value::U32(required(
            union.u32().ok_or_else(member)?.value(),
            "U32Value.value",
        )?),
        fb::Value::I64Value => Value::I64(required(
            union.i64().ok_or_else(member)?.value(),
            "I64Value.value",
        )?),
        fb::Value::U64Value => Value::U64(required(
            union.u64().ok_or_else(member)?.value(),
            "U64Value.value",
        )?),
        fb::Value::F32Value => Value::F32(required(
            union.f32().ok_or_else(member)?.value(),
            "F32Value.value",
        )?),
        fb::Value::F64Value => Value::F64(required(
            union.f64().ok_or_else(member)?.value(),
            "F64Value.value",
        )?),
        fb::Value::BoolValue => Value::Bool(required(
            union.bool().ok_or_else(member)?.value(),
            "BoolValue.value",
        )?),
        fb::Value::StringValue => {
            Value::String(union.string().ok_or_else(member)?.value().to_string())
        }
        fb::Value::BytesValue => {
            Value::Bytes(union.bytes().ok_or_else(member)?.value().bytes().to_vec())
        }
        fb::Value::NONE => return Err(member()),
        other => return Err(DecodeError::UnknownValueType { tag: other.0 }),
    })
}

fn read_guest_error(error: fb::GuestError<'_>) -> Result<GuestError, DecodeError> {
    Ok(GuestError {
        code: error_code_from_fb(required(error.code(), "GuestError.code")?)?,
        message: error.message().to_string(),
    })
}

/// Decodes a [`FunctionCall`], rejecting more than [`MAX_PARAMS`] arguments and `Void` arguments.
pub fn decode_function_call(buf: &[u8]) -> Result<FunctionCall, DecodeError> {
    let call = verified_root::<fb::FunctionCall<'_>>(buf, FUNCTION_CALL_IDENTIFIER)?;
    let params = call.parameters();
    if params.len() > MAX_PARAMS {
        return Err(DecodeError::TooManyArgs {
            count: params.len(),
            max: MAX_PARAMS,
        });
    }
    let mut args = Vec::with_capacity(params.len());
    for (index, param) in params.iter().enumerate() {
        let value = read_value(&param)?;
        if value == Value::Void {
            return Err(DecodeError::VoidArgument { index });
        }
        args.push(value);
    }
    let return_type = value_type_from_fb(
        required(call.return_type(), "FunctionCall.return_type")?,
        "FunctionCall.return_type",
    )?;
    Ok(FunctionCall {
        name: call.name().to_string(),
        args,
        return_type,
    })
}

/// Decodes a [`FunctionCallResult`]: a return value (possibly `Void`) or a [`GuestError`].
pub fn decode_function_call_result(buf: &[u8]) -> Result<FunctionCallResult, DecodeError> {
    let result = verified_root::<fb::FunctionCallResult<'_>>(buf, FUNCTION_CALL_RESULT_IDENTIFIER)?;
    match result.outcome_type() {
        fb::Outcome::ReturnValue => match result.outcome_as_return_value() {
            Some(rv) => Ok(Ok(read_value(&rv)?)),
            None => Err(missing_outcome()),
        },
        fb::Outcome::GuestError => match result.outcome_as_guest_error() {
            Some(error) => Ok(Err(read_guest_error(error)?)),
            None => Err(missing_outcome()),
        },
        fb::Outcome::NONE => Err(missing_outcome()),
        other => Err(DecodeError::UnknownOutcome { tag: other.0 }),
    }
}

fn missing_outcome() -> DecodeError {
    DecodeError::MissingField {
        field: "FunctionCallResult.outcome",
    }
}

/// Decodes a [`GuestError`].
pub fn decode_guest_error(buf: &[u8]) -> Result<GuestError, DecodeError> {
    read_guest_error(verified_root::<fb::GuestError<'_>>(
        buf,
        GUEST_ERROR_IDENTIFIER,
    )?)
}

/// Decodes a [`LogRecord`].
pub fn decode_log_record(buf: &[u8]) -> Result<LogRecord, DecodeError> {
    let record = verified_root::<fb::LogRecord<'_>>(buf, LOG_RECORD_IDENTIFIER)?;
    Ok(LogRecord {
        level: log_level_from_fb(required(record.level(), "LogRecord.level")?)?,
        message: record.message().to_string(),
        target: record.target().to_string(),
        file: record.file().to_string(),
        line: required(record.line(), "LogRecord.line")?,
    })
}

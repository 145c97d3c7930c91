//! Owned, typed values of the messages that cross the host/guest boundary. The FlatBuffer
//! encoding of each lives in [`crate::wire`]; nothing outside that module sees generated code.

use alloc::string::String;
use alloc::vec::Vec;

/// The type of a parameter or return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `i32`
    I32,
    /// `u32`
    U32,
    /// `i64`
    I64,
    /// `u64`
    U64,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// `bool`
    Bool,
    /// UTF-8 `String`
    String,
    /// `Vec<u8>`
    Bytes,
    /// No value: only valid as a return type.
    Void,
}

impl ValueType {
    /// Every type, in declaration order: for code that must cover them all (tests, fuzzers).
    pub const ALL: [ValueType; 10] = [
        ValueType::I32,
        ValueType::U32,
        ValueType::I64,
        ValueType::U64,
        ValueType::F32,
        ValueType::F64,
        ValueType::Bool,
        ValueType::String,
        ValueType::Bytes,
        ValueType::Void,
    ];
}

/// A value that crosses the boundary as a parameter or return value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `i32`
    I32(i32),
    /// `u32`
    U32(u32),
    /// `i64`
    I64(i64),
    /// `u64`
    U64(u64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `bool`
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// Byte vector
    Bytes(Vec<u8>),
    /// The return value of a function that returns nothing.
    Void,
}

impl Value {
    /// The type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::I32(_) => ValueType::I32,
            Value::U32(_) => ValueType::U32,
            Value::I64(_) => ValueType::I64,
            Value::U64(_) => ValueType::U64,
            Value::F32(_) => ValueType::F32,
            Value::F64(_) => ValueType::F64,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Bytes(_) => ValueType::Bytes,
            Value::Void => ValueType::Void,
        }
    }
}

/// The largest number of parameters a function may declare or a call may carry.
pub const MAX_PARAMS: usize = 16;

/// A call of a named function with arguments, from host to guest or guest to host.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionCall {
    /// Name of the function to call.
    pub name: String,
    /// The arguments, in order.
    pub args: Vec<Value>,
    /// The type the caller expects back.
    pub return_type: ValueType,
}

/// Why a call failed, as both sides report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No function of that name is registered.
    UnknownFunction,
    /// The call carried a different number of arguments than the function declares.
    WrongArity,
    /// An argument's type differs from the declared parameter type.
    WrongArgumentType,
    /// The caller expected a different return type than the function declares.
    WrongReturnType,
    /// The guest panicked.
    Panic,
    /// The guest's heap is exhausted.
    OutOfMemory,
    /// A host function returned an error or panicked.
    HostFunctionFailed,
    /// A host function was called when none may be (e.g. during the guest's init).
    HostCallNotAllowed,
    /// A message did not verify against the schema or broke a size limit.
    MalformedMessage,
    /// A guest function reported an error of its own.
    GuestFunctionFailed,
    /// The call was cancelled by the host.
    Cancelled,
    /// A WebAssembly instance trapped; the message starts with the trap's name
    /// ([`crate::wasm::Trap::name`]).
    WasmTrap,
    /// A WebAssembly module broke the type convention of `docs/wasm.md` (no `cabi_realloc`, a
    /// return area out of bounds, a string that is not UTF-8).
    WasmAbi,
}

/// An error reported across the boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// The outcome of a [`FunctionCall`].
pub type FunctionCallResult = Result<Value, GuestError>;

/// Severity of a guest log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Informational.
    Info,
    /// Something unexpected.
    Warn,
    /// Something failed.
    Error,
}

/// A log record sent by the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The formatted message.
    pub message: String,
    /// Module path of the log statement.
    pub target: String,
    /// Source file of the log statement.
    pub file: String,
    /// Source line of the log statement.
    pub line: u32,
}

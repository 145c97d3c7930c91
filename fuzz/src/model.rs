//! What a call must return, computed on the host side without a sandbox: the host functions the
//! end-to-end targets register (and their reference behaviour), and the guest functions of the
//! `simple` guest with what each call of them must produce.
//!
//! The model checks names, arities, argument types and return types in the order both the host
//! (`host_fn::check_call`) and the guest library (its dispatcher) do, independently of their code.

use hyperlight_schema::{ErrorCode, FunctionCall, Value, ValueType, MAX_PARAMS};
use hyperlight_sys::SandboxBuilder;

use ValueType::{Bool, Bytes, Void, F32, F64, I32, I64, U32, U64};

/// A declared signature.
#[derive(Clone, Copy, Debug)]
pub struct Sig {
    /// Function name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValueType],
    /// Return type.
    pub ret: ValueType,
}

const fn sig(name: &'static str, params: &'static [ValueType], ret: ValueType) -> Sig {
    Sig { name, params, ret }
}

/// The host functions every end-to-end sandbox registers (see [`register_host_functions`]).
pub const HOST_FUNCTIONS: &[Sig] = &[
    sig("host_add", &[I32, I32], I32),
    sig("host_echo", &[ValueType::String], ValueType::String),
    sig("host_len", &[Bytes], U64),
    sig("host_mix", &[U64, F64, Bool, Bytes, U32], ValueType::String),
    sig("host_void", &[], Void),
    sig("host_fail", &[I32], I32),
    sig("host_u64", &[], U64),
    sig("host_f32", &[F32], F32),
    sig("host_neg", &[I64], I64),
];

/// Registers [`HOST_FUNCTIONS`]. None of them panics (libFuzzer's panic hook would abort the
/// process even though the host catches the panic).
pub fn register_host_functions(builder: SandboxBuilder) -> SandboxBuilder {
    builder
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn("host_echo", |s: String| s)
        .host_fn("host_len", |b: Vec<u8>| b.len() as u64)
        .host_fn("host_mix", |a: u64, f: f64, b: bool, v: Vec<u8>, c: u32| {
            mix(a, f, b, &v, c)
        })
        .host_fn("host_void", || ())
        .host_fn("host_fail", |x: i32| -> Result<i32, String> {
            if x < 0 {
                Err(format!("negative: {x}"))
            } else {
                Ok(x.wrapping_mul(2))
            }
        })
        .host_fn("host_u64", || 7u64)
        .host_fn("host_f32", |x: f32| x)
        .host_fn("host_neg", |x: i64| x.wrapping_neg())
}

fn mix(a: u64, f: f64, b: bool, v: &[u8], c: u32) -> String {
    format!("{a}|{f:?}|{b}|{v:?}|{c}")
}

/// Checks `call` against `sigs` (name, arity, argument types, return type, in that order).
pub fn check(sigs: &[Sig], call: &FunctionCall) -> Result<Sig, ErrorCode> {
    let sig = *sigs
        .iter()
        .find(|s| s.name == call.name)
        .ok_or(ErrorCode::UnknownFunction)?;
    if call.args.len() != sig.params.len() {
        return Err(ErrorCode::WrongArity);
    }
    if call
        .args
        .iter()
        .zip(sig.params)
        .any(|(a, p)| a.value_type() != *p)
    {
        return Err(ErrorCode::WrongArgumentType);
    }
    if call.return_type != sig.ret {
        return Err(ErrorCode::WrongReturnType);
    }
    Ok(sig)
}

/// What the host answers a guest's call of a host function.
pub fn host_outcome(call: &FunctionCall) -> Result<Value, ErrorCode> {
    check(HOST_FUNCTIONS, call)?;
    let a = &call.args;
    Ok(match (call.name.as_str(), a.as_slice()) {
        ("host_add", [Value::I32(x), Value::I32(y)]) => Value::I32(x.wrapping_add(*y)),
        ("host_echo", [Value::String(s)]) => Value::String(s.clone()),
        ("host_len", [Value::Bytes(b)]) => Value::U64(b.len() as u64),
        (
            "host_mix",
            [Value::U64(x), Value::F64(f), Value::Bool(b), Value::Bytes(v), Value::U32(c)],
        ) => Value::String(mix(*x, *f, *b, v, *c)),
        ("host_void", []) => Value::Void,
        ("host_fail", [Value::I32(x)]) if *x < 0 => return Err(ErrorCode::HostFunctionFailed),
        ("host_fail", [Value::I32(x)]) => Value::I32(x.wrapping_mul(2)),
        ("host_u64", []) => Value::U64(7),
        ("host_f32", [Value::F32(x)]) => Value::F32(*x),
        ("host_neg", [Value::I64(x)]) => Value::I64(x.wrapping_neg()),
        _ => unreachable!("the model's table and match disagree on {call:?}"),
    })
}

/// The functions of the `simple` guest the structured target calls (all of them but
/// `infinite_loop`, which never returns; see `guest/guests/simple`).
pub const SIMPLE_FUNCTIONS: &[Sig] = &[
    sig("echo_i32", &[I32], I32),
    sig("echo_u32", &[U32], U32),
    sig("echo_i64", &[I64], I64),
    sig("echo_u64", &[U64], U64),
    sig("echo_f32", &[F32], F32),
    sig("echo_f64", &[F64], F64),
    sig("echo_bool", &[Bool], Bool),
    sig("echo_string", &[ValueType::String], ValueType::String),
    sig("echo_bytes", &[Bytes], Bytes),
    sig("void_fn", &[], Void),
    sig("nop", &[], Void),
    sig("add", &[I32, I32], I32),
    sig(
        "mixed",
        &[I32, ValueType::String, Bool, F64, Bytes],
        ValueType::String,
    ),
    sig("sum16", &[I64; 16], I64),
    sig("call_host_add", &[I32, I32], I32),
    sig(
        "call_host_echo_string",
        &[ValueType::String],
        ValueType::String,
    ),
    sig(
        "call_host_raw",
        &[ValueType::String, I32],
        ValueType::String,
    ),
    sig("call_host_wrong_types", &[], ValueType::String),
    sig("call_host_n", &[ValueType::String, U32], U64),
    sig("log_all_levels", &[ValueType::String], Void),
    sig("do_panic", &[ValueType::String], Void),
    sig("divide_by_zero", &[U64], U64),
    sig("stack_overflow", &[U64], U64),
    sig("exhaust_heap", &[], U64),
    sig("read_addr", &[U64], U64),
    sig("write_addr", &[U64, U64], Void),
    sig("spin", &[U64], U64),
    sig("counter", &[], U64),
    sig("port_out", &[U32, U32], Void),
    sig("port_in", &[U32], U32),
    sig("privileged", &[U32], Void),
];

/// The names of `simple`'s functions that the model leaves out; a call is renamed away from them.
pub const SIMPLE_EXCLUDED: &[&str] = &["infinite_loop"];

/// What a call must produce.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Exactly this value.
    Value(Value),
    /// `Error::GuestCall` with this code.
    Code(ErrorCode),
    /// A string starting with this prefix.
    Prefix(String),
    /// Any value of the declared return type.
    AnyOk,
    /// `Error::GuestPanic`.
    Panic,
    /// `Error::DivideByZero`.
    DivideByZero,
    /// `Error::StackOverflow`.
    StackOverflow,
    /// `Error::GuestOutOfMemory`.
    OutOfMemory,
    /// `Error::CpuException` with vector 13 (#GP).
    GeneralProtection,
    /// Any typed outcome; the guest may have damaged itself, so the sandbox is restored after.
    Anything,
    /// A value, or any fatal error (a fault): the sandbox is intact if the call succeeded.
    OkOrFatal,
}

/// Limits the arguments of functions that would otherwise run for a very long time (`spin`'s
/// iterations, `call_host_n`'s host calls); other calls are left alone.
pub fn tame(call: &mut FunctionCall) {
    match (call.name.as_str(), call.args.as_mut_slice()) {
        ("spin", [Value::U64(n)]) => *n %= 100_000,
        ("call_host_n", [_, Value::U32(n)]) => *n %= 8,
        _ => {}
    }
    if SIMPLE_EXCLUDED.contains(&call.name.as_str()) {
        call.name.push('_');
    }
}

/// What the host must get for a call of `simple`'s functions (after [`tame`]).
pub fn simple_outcome(call: &FunctionCall) -> Expect {
    // The guest decodes the call first: too many or void arguments do not decode.
    if call.args.len() > MAX_PARAMS || call.args.iter().any(|a| matches!(a, Value::Void)) {
        return Expect::Code(ErrorCode::MalformedMessage);
    }
    if let Err(code) = check(SIMPLE_FUNCTIONS, call) {
        return Expect::Code(code);
    }
    let host = |name: &str, args: Vec<Value>, return_type| {
        host_outcome(&FunctionCall {
            name: name.to_string(),
            args,
            return_type,
        })
    };
    let a = call.args.as_slice();
    match (call.name.as_str(), a) {
        (name, [x]) if name.starts_with("echo_") => Expect::Value(x.clone()),
        ("void_fn" | "nop", []) => Expect::Value(Value::Void),
        ("add", [Value::I32(x), Value::I32(y)]) => Expect::Value(Value::I32(x.wrapping_add(*y))),
        (
            "mixed",
            [Value::I32(i), Value::String(s), Value::Bool(b), Value::F64(f), Value::Bytes(v)],
        ) => Expect::Value(Value::String(format!("{i}|{s}|{b}|{f:?}|{v:?}"))),
        ("sum16", args) => Expect::Value(Value::I64(args.iter().fold(0i64, |sum, v| match v {
            Value::I64(x) => sum.wrapping_add(*x),
            _ => sum,
        }))),
        ("call_host_add", [x, y]) => match host("host_add", vec![x.clone(), y.clone()], I32) {
            Ok(v) => Expect::Value(v),
            Err(code) => Expect::Code(code),
        },
        ("call_host_echo_string", [s]) => {
            match host("host_echo", vec![s.clone()], ValueType::String) {
                Ok(v) => Expect::Value(v),
                Err(code) => Expect::Code(code),
            }
        }
        ("call_host_raw", [Value::String(name), Value::I32(x)]) => {
            match host(name, vec![Value::I32(*x)], I32) {
                Ok(Value::I32(v)) => Expect::Value(Value::String(format!("ok:{v}"))),
                Ok(other) => unreachable!("host i32 function returned {other:?}"),
                Err(code) => Expect::Prefix(format!("err:{code:?}:")),
            }
        }
        ("call_host_wrong_types", []) => {
            Expect::Prefix(format!("err:{:?}:", ErrorCode::WrongArgumentType))
        }
        ("call_host_n", [Value::String(name), Value::U32(n)]) => {
            if *n == 0 {
                return Expect::Value(Value::U64(0));
            }
            match host(name, vec![], U64) {
                Ok(Value::U64(v)) => Expect::Value(Value::U64(v.wrapping_mul(u64::from(*n)))),
                Ok(other) => unreachable!("host u64 function returned {other:?}"),
                Err(code) => Expect::Code(code),
            }
        }
        ("log_all_levels", [_]) => Expect::Value(Value::Void),
        ("do_panic", [_]) => Expect::Panic,
        ("divide_by_zero", [_]) => Expect::DivideByZero,
        ("stack_overflow", [_]) => Expect::StackOverflow,
        ("exhaust_heap", []) => Expect::OutOfMemory,
        ("read_addr", [_]) | ("port_in", [_]) => Expect::OkOrFatal,
        ("write_addr", [_, _]) | ("port_out", [_, _]) => Expect::Anything,
        ("spin", [n]) => Expect::Value(n.clone()),
        ("counter", []) => Expect::AnyOk,
        ("privileged", [_]) => Expect::GeneralProtection,
        _ => unreachable!("the model's table and match disagree on {call:?}"),
    }
}

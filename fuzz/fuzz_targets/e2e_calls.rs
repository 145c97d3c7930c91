//! End to end on KVM, structured (`arbitrary`): a few operations per input, each checked against
//! the model (`hyperlight_fuzz::model`):
//!
//! - a call from the host to a guest function of the `simple` guest: mostly a real name with
//!   arguments of the declared types, sometimes with a wrong arity, wrong types, a wrong return
//!   type, void or too many arguments, or a random name;
//! - a call from a guest to a host function with any name, arity, argument values and return
//!   type: the host encodes the call, the `fuzz` guest's `call_host_dyn` decodes it and makes it,
//!   and hands back what the host answered;
//! - `simple`'s `call_host_raw(name, i32)`: a host function named at run time.
//!
//! The calls that make a guest fault are expected to fail with that fault's error, after which
//! the sandbox is restored; a call still running after `kvm::CALL_LIMIT` is cancelled by a
//! watchdog (only a guest that damaged itself with `write_addr` could loop).
#![no_main]

use std::cell::RefCell;

use arbitrary::{Arbitrary, Result, Unstructured};
use hyperlight_fuzz::kvm::Harness;
use hyperlight_fuzz::model::{self, Expect, Sig, HOST_FUNCTIONS, SIMPLE_FUNCTIONS};
use hyperlight_fuzz::same_value;
use hyperlight_schema::{wire, ErrorCode, FunctionCall, Value, ValueType, MAX_PARAMS};
use hyperlight_sys::Error;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static SIMPLE: RefCell<Harness> = RefCell::new(Harness::new("simple"));
    static FUZZ: RefCell<Harness> = RefCell::new(Harness::new("fuzz"));
}

fn any_type(u: &mut Unstructured<'_>) -> Result<ValueType> {
    Ok(*u.choose(&ValueType::ALL)?)
}

fn value_of(u: &mut Unstructured<'_>, t: ValueType) -> Result<Value> {
    Ok(match t {
        ValueType::I32 => Value::I32(u.arbitrary()?),
        ValueType::U32 => Value::U32(u.arbitrary()?),
        ValueType::I64 => Value::I64(u.arbitrary()?),
        ValueType::U64 => Value::U64(u.arbitrary()?),
        ValueType::F32 => Value::F32(u.arbitrary()?),
        ValueType::F64 => Value::F64(u.arbitrary()?),
        ValueType::Bool => Value::Bool(u.arbitrary()?),
        ValueType::String => Value::String(u.arbitrary()?),
        ValueType::Bytes => Value::Bytes(u.arbitrary()?),
        ValueType::Void => Value::Void,
    })
}

/// A call: mostly well formed for a function of `table`, otherwise broken in one way or random.
fn call(u: &mut Unstructured<'_>, table: &[Sig]) -> Result<FunctionCall> {
    if u.ratio(1, 8)? {
        // Anything at all.
        let name = String::arbitrary(u)?;
        let n = u.int_in_range(0..=MAX_PARAMS + 2)?;
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            let t = any_type(u)?;
            args.push(value_of(u, t)?);
        }
        return Ok(FunctionCall {
            name,
            args,
            return_type: any_type(u)?,
        });
    }
    let sig = u.choose(table)?;
    let mut args = Vec::with_capacity(sig.params.len());
    for &t in sig.params {
        args.push(value_of(u, t)?);
    }
    let mut call = FunctionCall {
        name: sig.name.to_string(),
        args,
        return_type: sig.ret,
    };
    match u.int_in_range(0..=15)? {
        0 => call.return_type = any_type(u)?,
        1 if !call.args.is_empty() => {
            let i = u.choose_index(call.args.len())?;
            let t = any_type(u)?;
            call.args[i] = value_of(u, t)?;
        }
        2 => {
            call.args.pop();
        }
        3 => {
            let t = any_type(u)?;
            call.args.push(value_of(u, t)?);
        }
        4 => call.name.push_str(&String::arbitrary(u)?),
        _ => {}
    }
    Ok(call)
}

#[derive(Debug)]
enum Op {
    /// The host calls `simple`.
    Guest(FunctionCall),
    /// `fuzz` calls a host function through `call_host_dyn`.
    Host(FunctionCall),
    /// `simple`'s `call_host_raw(name, arg)`.
    HostRaw(String, i32),
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=3)? {
            0 | 1 => {
                let mut c = call(u, SIMPLE_FUNCTIONS)?;
                model::tame(&mut c);
                Op::Guest(c)
            }
            2 => Op::Host(call(u, HOST_FUNCTIONS)?),
            _ => {
                let name = if u.ratio(3, 4)? {
                    u.choose(HOST_FUNCTIONS)?.name.to_string()
                } else {
                    String::arbitrary(u)?
                };
                Op::HostRaw(name, u.arbitrary()?)
            }
        })
    }
}

/// Whether `result` is what `expect` says; `Cancelled` (the watchdog) is always accepted.
fn check(expect: &Expect, ret: ValueType, result: &std::result::Result<Value, Error>) -> bool {
    if matches!(result, Err(Error::Cancelled)) {
        return true;
    }
    match (expect, result) {
        (Expect::Value(v), Ok(r)) => same_value(v, r),
        (Expect::Code(c), Err(Error::GuestCall { code, .. })) => c == code,
        (Expect::Prefix(p), Ok(Value::String(s))) => s.starts_with(p.as_str()),
        (Expect::AnyOk, Ok(v)) => v.value_type() == ret,
        (Expect::Panic, Err(Error::GuestPanic { .. })) => true,
        (Expect::DivideByZero, Err(Error::DivideByZero { .. })) => true,
        (Expect::StackOverflow, Err(Error::StackOverflow { .. })) => true,
        (Expect::OutOfMemory, Err(Error::GuestOutOfMemory { .. })) => true,
        (Expect::GeneralProtection, Err(Error::CpuException { vector: 13, .. })) => true,
        (Expect::OkOrFatal, Ok(v)) => v.value_type() == ret,
        (Expect::OkOrFatal, Err(e)) => e.is_fatal() && !matches!(e, Error::ThreadGone),
        (Expect::Anything, r) => !matches!(r, Err(Error::Poisoned { .. } | Error::ThreadGone)),
        _ => false,
    }
}

fn run(op: Op) {
    match op {
        Op::Guest(c) => SIMPLE.with_borrow_mut(|h| {
            let expect = model::simple_outcome(&c);
            let result = h.call(&c.name, c.args.clone(), c.return_type);
            assert!(
                check(&expect, c.return_type, &result),
                "{c:?}: expected {expect:?}, got {result:?}"
            );
            if expect == Expect::Anything {
                h.restore();
            } else {
                h.recover(&result);
            }
        }),
        Op::Host(c) => FUZZ.with_borrow_mut(|h| {
            let bytes = wire::encode_function_call(&c);
            let result = h.call("call_host_dyn", vec![Value::Bytes(bytes)], ValueType::Bytes);
            if c.args.len() > MAX_PARAMS || c.args.iter().any(|a| matches!(a, Value::Void)) {
                // The guest cannot decode the call it was given.
                assert!(
                    matches!(
                        &result,
                        Err(Error::GuestCall {
                            code: ErrorCode::GuestFunctionFailed,
                            ..
                        })
                    ),
                    "{c:?}: {result:?}"
                );
                return;
            }
            let Ok(Value::Bytes(answer)) = &result else {
                panic!("{c:?}: {result:?}");
            };
            let answer = wire::decode_function_call_result(answer).expect("the guest re-encodes");
            let expect = model::host_outcome(&c);
            let ok = match (&expect, &answer) {
                (Ok(v), Ok(a)) => same_value(v, a),
                (Err(code), Err(e)) => *code == e.code,
                _ => false,
            };
            assert!(ok, "{c:?}: expected {expect:?}, got {answer:?}");
        }),
        Op::HostRaw(name, arg) => SIMPLE.with_borrow_mut(|h| {
            let c = FunctionCall {
                name: "call_host_raw".into(),
                args: vec![Value::String(name), Value::I32(arg)],
                return_type: ValueType::String,
            };
            let expect = model::simple_outcome(&c);
            let result = h.call(&c.name, c.args.clone(), c.return_type);
            assert!(
                check(&expect, c.return_type, &result),
                "{c:?}: expected {expect:?}, got {result:?}"
            );
            h.recover(&result);
        }),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    for _ in 0..4 {
        match Op::arbitrary(&mut u) {
            Ok(op) => run(op),
            Err(_) => break,
        }
        if u.is_empty() {
            break;
        }
    }
});

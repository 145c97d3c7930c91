//! What the fuzz targets (`fuzz_targets/*.rs`) share: the properties each decoder must satisfy,
//! and, for the end-to-end targets, the sandboxes, the host functions they register and a model
//! of what every call must return.
//!
//! A property that does not hold panics, which libFuzzer reports as a crash.

pub mod decode;
pub mod input;
pub mod kvm;
pub mod model;

use hyperlight_schema::{FunctionCall, FunctionCallResult, Value};

/// Whether two values are the same, comparing floats by their bits (so a NaN equals itself and
/// `0.0` differs from `-0.0`): the wire must carry every bit pattern unchanged.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// [`same_value`] for every argument, and equal names and return types.
pub fn same_call(a: &FunctionCall, b: &FunctionCall) -> bool {
    a.name == b.name
        && a.return_type == b.return_type
        && a.args.len() == b.args.len()
        && a.args.iter().zip(&b.args).all(|(x, y)| same_value(x, y))
}

/// [`same_value`] for results.
pub fn same_result(a: &FunctionCallResult, b: &FunctionCallResult) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => same_value(x, y),
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

/// Bytes of variable-length data (strings, byte vectors) a value holds.
pub fn value_payload(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        _ => 0,
    }
}

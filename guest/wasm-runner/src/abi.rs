//! The canonical ABI of `docs/wasm.md`, written once for every engine and both directions:
//! lowering wire values to core values (export arguments, import results) and lifting them back
//! (import arguments, export results), with every access to linear memory bounds-checked.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::{CoreType, FuncType, REALLOC_EXPORT};
use hyperlight_guest::{ErrorCode, GuestError, Value, ValueType};

use crate::engine::{CallError, Context, CoreValue};

/// A `WasmAbi` error: the module broke the convention.
pub fn abi_error(message: String) -> GuestError {
    GuestError {
        code: ErrorCode::WasmAbi,
        message,
    }
}

/// The type `cabi_realloc` must have: `(i32 i32 i32 i32) -> i32`.
pub fn realloc_type() -> FuncType {
    FuncType {
        params: vec![CoreType::I32; 4],
        results: vec![CoreType::I32],
    }
}

/// The range `[ptr, ptr + len)` of `memory`, or a `WasmAbi` error naming `what` if it is out of
/// bounds (checked arithmetic: no hostile pointer can overflow it).
fn range(
    memory: &[u8],
    ptr: u32,
    len: u32,
    what: &str,
) -> Result<core::ops::Range<usize>, GuestError> {
    let start = ptr as usize;
    match start.checked_add(len as usize) {
        Some(end) if end <= memory.len() => Ok(start..end),
        _ => Err(abi_error(format!(
            "{what} at {ptr:#x}, {len} bytes, is outside linear memory ({} bytes)",
            memory.len()
        ))),
    }
}

fn memory(ctx: &mut dyn Context) -> Result<&mut [u8], GuestError> {
    ctx.memory()
        .ok_or_else(|| abi_error(String::from("the module exports no memory `memory`")))
}

/// Copies `len` bytes at `ptr` out of linear memory.
pub fn read(ctx: &mut dyn Context, ptr: u32, len: u32, what: &str) -> Result<Vec<u8>, GuestError> {
    let memory = memory(ctx)?;
    let range = range(memory, ptr, len, what)?;
    Ok(memory[range].to_vec())
}

/// Writes `bytes` at `ptr` into linear memory.
pub fn write(ctx: &mut dyn Context, ptr: u32, bytes: &[u8], what: &str) -> Result<(), GuestError> {
    let len = u32::try_from(bytes.len()).map_err(|_| {
        abi_error(format!(
            "{what} of {} bytes does not fit linear memory",
            bytes.len()
        ))
    })?;
    let memory = memory(ctx)?;
    let range = range(memory, ptr, len, what)?;
    memory[range].copy_from_slice(bytes);
    Ok(())
}

/// Reads a return area: `ptr: u32, len: u32`, little endian, at the 4-aligned `area`.
pub fn read_return_area(ctx: &mut dyn Context, area: i32) -> Result<(u32, u32), GuestError> {
    let area = area as u32;
    if !area.is_multiple_of(4) {
        return Err(abi_error(format!("return area {area:#x} is not 4-aligned")));
    }
    let bytes = read(ctx, area, 8, "return area")?;
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Ok((word(0), word(4)))
}

/// Writes a return area (see [`read_return_area`]).
pub fn write_return_area(
    ctx: &mut dyn Context,
    area: i32,
    ptr: u32,
    len: u32,
) -> Result<(), GuestError> {
    let area = area as u32;
    if !area.is_multiple_of(4) {
        return Err(abi_error(format!("return area {area:#x} is not 4-aligned")));
    }
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&ptr.to_le_bytes());
    bytes[4..].copy_from_slice(&len.to_le_bytes());
    write(ctx, area, &bytes, "return area")
}

/// Copies `bytes` into memory the instance allocates with `cabi_realloc(0, 0, 1, len)`; returns
/// `(ptr, len)`.
pub fn store_indirect(ctx: &mut dyn Context, bytes: &[u8]) -> Result<(u32, u32), CallError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| abi_error(format!("{} bytes do not fit linear memory", bytes.len())))?;
    if ctx.export_type(REALLOC_EXPORT) != Some(realloc_type()) {
        return Err(abi_error(format!(
            "passing a string or bytes needs the export `{REALLOC_EXPORT}` of type {}",
            realloc_type()
        ))
        .into());
    }
    let args = [
        CoreValue::I32(0),
        CoreValue::I32(0),
        CoreValue::I32(1),
        CoreValue::I32(len as i32),
    ];
    let ptr = match ctx.call(REALLOC_EXPORT, &args)?.as_slice() {
        [CoreValue::I32(ptr)] => *ptr as u32,
        _ => return Err(abi_error(format!("`{REALLOC_EXPORT}` returned no i32")).into()),
    };
    write(ctx, ptr, bytes, "memory from `cabi_realloc`")?;
    Ok((ptr, len))
}

/// Lifts `bytes` to a value of `ty` (`String` or `Bytes`): a `WasmAbi` error if a string is not
/// UTF-8.
fn lift_indirect(ty: ValueType, bytes: Vec<u8>) -> Result<Value, GuestError> {
    if ty == ValueType::String {
        String::from_utf8(bytes)
            .map(Value::String)
            .map_err(|e| abi_error(format!("a string is not UTF-8: {e}")))
    } else {
        Ok(Value::Bytes(bytes))
    }
}

/// Lowers wire values to core values, in order (strings and bytes through `cabi_realloc`).
pub fn lower_values(
    ctx: &mut dyn Context,
    values: Vec<Value>,
) -> Result<Vec<CoreValue>, CallError> {
    let mut core = Vec::with_capacity(values.len() * 2);
    for value in values {
        match value {
            Value::I32(x) => core.push(CoreValue::I32(x)),
            Value::U32(x) => core.push(CoreValue::I32(x as i32)),
            Value::I64(x) => core.push(CoreValue::I64(x)),
            Value::U64(x) => core.push(CoreValue::I64(x as i64)),
            Value::F32(x) => core.push(CoreValue::F32(x)),
            Value::F64(x) => core.push(CoreValue::F64(x)),
            Value::Bool(x) => core.push(CoreValue::I32(i32::from(x))),
            Value::String(s) => push_indirect(ctx, s.as_bytes(), &mut core)?,
            Value::Bytes(b) => push_indirect(ctx, &b, &mut core)?,
            // lower_export and lower_import refuse `Void` parameters before this runs.
            Value::Void => {}
        }
    }
    Ok(core)
}

fn push_indirect(
    ctx: &mut dyn Context,
    bytes: &[u8],
    core: &mut Vec<CoreValue>,
) -> Result<(), CallError> {
    let (ptr, len) = store_indirect(ctx, bytes)?;
    core.push(CoreValue::I32(ptr as i32));
    core.push(CoreValue::I32(len as i32));
    Ok(())
}

/// Lifts core values to wire values of `types` (strings and bytes from `(ptr, len)` pairs).
/// The caller checked that `core` has the types the lowering of `types` gives; a mismatch is a
/// `WasmAbi` error all the same.
pub fn lift_values(
    ctx: &mut dyn Context,
    types: &[ValueType],
    core: &[CoreValue],
) -> Result<Vec<Value>, GuestError> {
    let mismatch = || abi_error(String::from("core values do not match the wire types"));
    let mut core = core.iter().copied();
    let mut values = Vec::with_capacity(types.len());
    for &ty in types {
        let value = match (ty, core.next().ok_or_else(mismatch)?) {
            (ValueType::I32, CoreValue::I32(x)) => Value::I32(x),
            (ValueType::U32, CoreValue::I32(x)) => Value::U32(x as u32),
            (ValueType::Bool, CoreValue::I32(x)) => Value::Bool(x != 0),
            (ValueType::I64, CoreValue::I64(x)) => Value::I64(x),
            (ValueType::U64, CoreValue::I64(x)) => Value::U64(x as u64),
            (ValueType::F32, CoreValue::F32(x)) => Value::F32(x),
            (ValueType::F64, CoreValue::F64(x)) => Value::F64(x),
            (ValueType::String | ValueType::Bytes, CoreValue::I32(ptr)) => {
                let Some(CoreValue::I32(len)) = core.next() else {
                    return Err(mismatch());
                };
                let bytes = read(ctx, ptr as u32, len as u32, "a string or bytes argument")?;
                lift_indirect(ty, bytes)?
            }
            _ => return Err(mismatch()),
        };
        values.push(value);
    }
    Ok(values)
}

/// Lifts an export's result of wire type `ty` from its core results: a scalar as itself, a
/// string or bytes from the return area the one `i32` result points at (the area's address is
/// returned too, for `cabi_post_<name>`).
pub fn lift_result(
    ctx: &mut dyn Context,
    ty: ValueType,
    core: &[CoreValue],
) -> Result<(Value, Option<i32>), GuestError> {
    match (ty, core) {
        (ValueType::Void, []) => Ok((Value::Void, None)),
        (ValueType::String | ValueType::Bytes, &[CoreValue::I32(area)]) => {
            let (ptr, len) = read_return_area(ctx, area)?;
            let bytes = read(ctx, ptr, len, "the result")?;
            Ok((lift_indirect(ty, bytes)?, Some(area)))
        }
        (_, [_]) => {
            let mut values = lift_values(ctx, &[ty], core)?;
            Ok((values.pop().unwrap_or(Value::Void), None))
        }
        _ => Err(abi_error(String::from(
            "core results do not match the wire type",
        ))),
    }
}

/// Lowers an import's result `value` (expected of type `ty`): a scalar to the core result, a
/// string or bytes through `cabi_realloc` into the return area at `area` (the import's trailing
/// parameter).
pub fn lower_result(
    ctx: &mut dyn Context,
    ty: ValueType,
    value: Value,
    area: Option<i32>,
) -> Result<Vec<CoreValue>, CallError> {
    if value.value_type() != ty {
        return Err(GuestError {
            code: ErrorCode::WrongReturnType,
            message: format!(
                "the host returned {:?}, expected {ty:?}",
                value.value_type()
            ),
        }
        .into());
    }
    let bytes = match value {
        Value::Void => return Ok(Vec::new()),
        Value::String(s) => s.into_bytes(),
        Value::Bytes(b) => b,
        scalar => return lower_values(ctx, vec![scalar]),
    };
    let area = area.ok_or_else(|| abi_error(String::from("no return area")))?;
    let (ptr, len) = store_indirect(ctx, &bytes)?;
    write_return_area(ctx, area, ptr, len)?;
    Ok(Vec::new())
}

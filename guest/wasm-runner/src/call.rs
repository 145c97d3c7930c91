//! Calls of the module's exports from the host.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::{lower_export, CoreType, FuncType, POST_RETURN_PREFIX};
use hyperlight_guest::{ErrorCode, FunctionCallResult, GuestError, Value, ValueType};

use crate::abi;
use crate::engine::{CoreValue, Instance};
use crate::link::INSTANCE;

fn error(code: ErrorCode, message: String) -> GuestError {
    GuestError { code, message }
}

/// The body of every export's guest function: checks the call's wire types against the export's
/// core type (before any Wasm runs), lowers the arguments, calls, lifts the result, and lets the
/// module free it (`cabi_post_<name>`).
pub fn call_export(name: &str, args: Vec<Value>, ret: ValueType) -> FunctionCallResult {
    let Ok(mut slot) = INSTANCE.try_borrow_mut() else {
        return Err(error(
            ErrorCode::GuestFunctionFailed,
            format!("export `{name}` called while another export call runs"),
        ));
    };
    let Some(instance) = slot.as_mut() else {
        return Err(error(
            ErrorCode::GuestFunctionFailed,
            String::from("the module is not linked"),
        ));
    };
    run(&mut **instance, name, args, ret)
}

fn run(
    instance: &mut dyn Instance,
    name: &str,
    args: Vec<Value>,
    ret: ValueType,
) -> FunctionCallResult {
    let Some(declared) = instance.export_type(name) else {
        return Err(error(
            ErrorCode::UnknownFunction,
            format!("the module exports no function `{name}`"),
        ));
    };
    let types: Vec<ValueType> = args.iter().map(Value::value_type).collect();
    let wanted = lower_export(&types, ret);
    if wanted.as_ref() != Some(&declared) {
        let code = match &wanted {
            Some(wanted) if wanted.params == declared.params => ErrorCode::WrongReturnType,
            _ => ErrorCode::WrongArgumentType,
        };
        let lowered = match &wanted {
            Some(wanted) => format!("{wanted}"),
            None => String::from("no core type"),
        };
        return Err(error(
            code,
            format!(
                "export `{name}` has type {declared}, but a call with {types:?} returning {ret:?} lowers to {lowered}"
            ),
        ));
    }
    instance.begin_call()?;
    let core = abi::lower_values(instance, args)?;
    let results = instance.call(name, &core)?;
    let (value, area) = abi::lift_result(instance, ret, &results)?;
    if let Some(area) = area {
        let post = format!("{POST_RETURN_PREFIX}{name}");
        let post_type = FuncType {
            params: vec![CoreType::I32],
            results: Vec::new(),
        };
        if instance.export_type(&post) == Some(post_type) {
            instance.call(&post, &[CoreValue::I32(area)])?;
        }
    }
    Ok(value)
}

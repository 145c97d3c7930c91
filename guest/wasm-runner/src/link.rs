//! The link call: compile the module, check its imports against the host's functions, instantiate
//! it and register its exports; and the body of every import.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use hyperlight_guest::schema::wasm::{
    import_function_name, is_indirect, lower_import, Extern, ExternKind, FuncType, ImportDecl,
    Link, LinkOutcome, LinkProblem, ModuleInfo, ProblemKind, MAX_EXTERNS, REALLOC_EXPORT,
};
use hyperlight_guest::schema::wire::{decode_wasm_link, encode_wasm_module};
use hyperlight_guest::{call_host_values, ErrorCode, Global, GuestError};

use crate::abi;
use crate::engine::{CallError, Context, CoreValue, Described, Engine, Instance};
use crate::wasmi_engine::Wasmi;

/// The prefix of the runner's own guest functions, which no export may shadow.
const RESERVED_PREFIX: &str = "__hyperlight";

/// The instance, once linked. Borrowed for the length of each export call.
pub static INSTANCE: Global<RefCell<Option<Box<dyn Instance>>>> = Global::new(RefCell::new(None));

/// Whether the link call ran (successfully or not): there is one per sandbox.
static LINKED: Global<Cell<bool>> = Global::new(Cell::new(false));

/// The guest function [`LINK_FUNCTION`](hyperlight_guest::schema::wasm::LINK_FUNCTION): takes an
/// encoded [`Link`], answers an encoded [`ModuleInfo`].
pub fn link(message: Vec<u8>) -> Result<Vec<u8>, GuestError> {
    let link = decode_wasm_link(&message).map_err(|e| GuestError {
        code: ErrorCode::MalformedMessage,
        message: format!("cannot decode the link request: {e}"),
    })?;
    if LINKED.replace(true) {
        return Err(GuestError {
            code: ErrorCode::GuestFunctionFailed,
            message: String::from("the module is already linked"),
        });
    }
    Ok(encode_wasm_module(&link_module(&Wasmi, &link)))
}

fn invalid(message: String) -> ModuleInfo {
    ModuleInfo {
        outcome: LinkOutcome::Invalid,
        message,
        imports: Vec::new(),
        exports: Vec::new(),
        problems: Vec::new(),
    }
}

/// Compiles, checks, instantiates: the whole link request.
fn link_module(engine: &dyn Engine, link: &Link) -> ModuleInfo {
    let compiled = match engine.compile(link, hyperlight_guest::module()) {
        Ok(compiled) => compiled,
        Err(message) => return invalid(message),
    };
    let Described { imports, exports } = compiled.describe();
    if imports.len() > MAX_EXTERNS || exports.len() > MAX_EXTERNS {
        return invalid(format!(
            "the module has {} imports and {} exports; at most {MAX_EXTERNS} of each are allowed",
            imports.len(),
            exports.len()
        ));
    }
    if let Some(reserved) = exports.iter().find(|e| e.name.starts_with(RESERVED_PREFIX)) {
        return invalid(format!(
            "the export `{}` uses the reserved prefix `{RESERVED_PREFIX}`",
            reserved.name
        ));
    }
    let mut decls = Vec::with_capacity(imports.len());
    let mut problems = Vec::new();
    for import in &imports {
        match check_import(link, import) {
            Ok(decl) => decls.push(decl.clone()),
            Err((kind, registered)) => problems.push(LinkProblem {
                module: import.module.clone(),
                name: import.name.clone(),
                kind,
                declared: import.ty.clone(),
                registered,
            }),
        }
    }
    let mut info = ModuleInfo {
        outcome: LinkOutcome::Linked,
        message: String::new(),
        imports,
        exports,
        problems,
    };
    if !info.problems.is_empty() {
        info.outcome = LinkOutcome::Unlinkable;
        return info;
    }
    let has_realloc = info
        .exports
        .iter()
        .any(|e| e.name == REALLOC_EXPORT && e.ty == Some(abi::realloc_type()));
    if let Some(needs) = decls.iter().find(|d| is_indirect(d.result)) {
        if !has_realloc {
            return invalid(format!(
                "the import `{}`.`{}` returns {:?}, which needs the export `{REALLOC_EXPORT}` of type {}",
                needs.module,
                needs.name,
                needs.result,
                abi::realloc_type()
            ));
        }
    }
    match compiled.instantiate(decls) {
        Ok(instance) => {
            *INSTANCE.borrow_mut() = Some(instance);
            for export in info.exports.iter().filter(|e| e.kind == ExternKind::Func) {
                let name = export.name.clone();
                hyperlight_guest::register_dynamic(&export.name, move |args, ret| {
                    crate::call::call_export(&name, args, ret)
                });
            }
        }
        Err(error) => {
            info.outcome = LinkOutcome::InitTrapped;
            info.message = GuestError::from(error).message;
        }
    }
    info
}

/// The host function that serves `import`, or why there is none (and the type the host's
/// function lowers to, for a mistyped one).
fn check_import<'a>(
    link: &'a Link,
    import: &Extern,
) -> Result<&'a ImportDecl, (ProblemKind, Option<FuncType>)> {
    if import.kind != ExternKind::Func {
        return Err((ProblemKind::Unsupported, None));
    }
    let Some(decl) = link
        .imports
        .iter()
        .find(|d| d.module == import.module && d.name == import.name)
    else {
        return Err((ProblemKind::Missing, None));
    };
    let registered = lower_import(&decl.params, decl.result);
    if registered.is_none() || registered != import.ty {
        return Err((ProblemKind::Mistyped, registered));
    }
    Ok(decl)
}

/// The body of every import: lifts the core arguments per `decl`, calls the host function, and
/// lowers its answer.
///
/// `call_host_values` blocks the guest in a VM exit while the host runs its function, or awaits
/// it if it is async: that exit is the suspension point of an async import, so the engine never
/// needs to suspend a call itself (no resumable calls).
pub fn call_import(
    ctx: &mut dyn Context,
    decl: &ImportDecl,
    args: &[CoreValue],
) -> Result<Vec<CoreValue>, CallError> {
    let values = abi::lift_values(ctx, &decl.params, args)?;
    let name = import_function_name(&decl.module, &decl.name);
    let value = call_host_values(&name, values, decl.result)?;
    // The import's type was checked against lower_import: a string or bytes result comes with a
    // trailing return-area pointer.
    let area = match args.last() {
        Some(&CoreValue::I32(area)) if is_indirect(decl.result) => Some(area),
        _ => None,
    };
    abi::lower_result(ctx, decl.result, value, area)
}

//! The FlatBuffer encoding of the WebAssembly runner's messages ([`crate::wasm`]); decoding is as
//! careful as for the other messages (see the parent module), and also bounds every list.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use super::{
    fb, into_bytes, new_builder, required, value_type_from_fb, value_type_to_fb,
    verified_root_with, DecodeError, Limits,
};
use crate::types::{ValueType, MAX_PARAMS};
use crate::wasm::{
    CoreType, Extern, ExternKind, FuncType, ImportDecl, Link, LinkOutcome, LinkProblem, ModuleInfo,
    ProblemKind, MAX_EXTERNS,
};

/// File identifier of a [`Link`] message.
pub const WASM_LINK_IDENTIFIER: &str = fb::WASM_LINK_IDENTIFIER;
/// File identifier of a [`ModuleInfo`] message.
pub const WASM_MODULE_IDENTIFIER: &str = fb::WASM_MODULE_IDENTIFIER;

/// The verifier's bounds of a runner message: three tables per listed item (an item, its function
/// type, and a second function type for a problem) in three lists, plus the roots; the items share
/// vtables, which the verifier counts once per table, so the apparent size may reach 4 times the
/// buffer.
const WASM_LIMITS: Limits = Limits {
    max_tables: 3 * 3 * MAX_EXTERNS + 16,
    apparent_factor: 4,
};

/// One `match` each way between an owned enum and its generated twin.
macro_rules! enum_conversions {
    ($to:ident, $from:ident, $owned:ident, $field:literal, [$($variant:ident),*]) => {
        fn $to(value: $owned) -> fb::$owned {
            match value {
                $($owned::$variant => fb::$owned::$variant,)*
            }
        }

        fn $from(value: fb::$owned) -> Result<$owned, DecodeError> {
            Ok(match value {
                $(fb::$owned::$variant => $owned::$variant,)*
                other => {
                    return Err(DecodeError::UnknownEnumValue {
                        field: $field,
                        value: i64::from(other.0),
                    })
                }
            })
        }
    };
}

enum_conversions!(
    core_to_fb,
    core_from_fb,
    CoreType,
    "FuncType.params",
    [I32, I64, F32, F64, Other]
);
enum_conversions!(
    kind_to_fb,
    kind_from_fb,
    ExternKind,
    "Extern.kind",
    [Func, Memory, Table, Global]
);
enum_conversions!(
    outcome_to_fb,
    outcome_from_fb,
    LinkOutcome,
    "WasmModule.outcome",
    [Linked, Invalid, Unlinkable, InitTrapped]
);
enum_conversions!(
    problem_to_fb,
    problem_from_fb,
    ProblemKind,
    "LinkProblem.kind",
    [Missing, Mistyped, Unsupported]
);

// ---------------------------------------------------------------------------------------------
// Encoding

fn write_func_type<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    ty: &FuncType,
) -> WIPOffset<fb::FuncType<'a>> {
    let params: Vec<fb::CoreType> = ty.params.iter().map(|&t| core_to_fb(t)).collect();
    let results: Vec<fb::CoreType> = ty.results.iter().map(|&t| core_to_fb(t)).collect();
    let params = fbb.create_vector(&params);
    let results = fbb.create_vector(&results);
    fb::FuncType::create(
        fbb,
        &fb::FuncTypeArgs {
            params: Some(params),
            results: Some(results),
        },
    )
}

fn write_externs<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    items: &[Extern],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::Extern<'a>>>> {
    let items: Vec<_> = items
        .iter()
        .map(|item| {
            let module = fbb.create_string(&item.module);
            let name = fbb.create_string(&item.name);
            let ty = item.ty.as_ref().map(|ty| write_func_type(fbb, ty));
            fb::Extern::create(
                fbb,
                &fb::ExternArgs {
                    module: Some(module),
                    name: Some(name),
                    kind: Some(kind_to_fb(item.kind)),
                    ty,
                },
            )
        })
        .collect();
    fbb.create_vector(&items)
}

fn names_hint<'a>(names: impl Iterator<Item = (&'a str, &'a str)>) -> usize {
    names.map(|(m, n)| 64 + m.len() + n.len()).sum()
}

/// Encodes a [`Link`] (identifier [`WASM_LINK_IDENTIFIER`]).
pub fn encode_wasm_link(link: &Link) -> Vec<u8> {
    let hint = names_hint(link.imports.iter().map(|i| (&*i.module, &*i.name)));
    let mut fbb = new_builder(hint);
    let imports: Vec<_> = link
        .imports
        .iter()
        .map(|import| {
            let module = fbb.create_string(&import.module);
            let name = fbb.create_string(&import.name);
            let params: Vec<fb::ValueType> =
                import.params.iter().map(|&t| value_type_to_fb(t)).collect();
            let params = fbb.create_vector(&params);
            fb::ImportDecl::create(
                &mut fbb,
                &fb::ImportDeclArgs {
                    module: Some(module),
                    name: Some(name),
                    params: Some(params),
                    result: Some(value_type_to_fb(import.result)),
                },
            )
        })
        .collect();
    let imports = fbb.create_vector(&imports);
    let root = fb::WasmLink::create(
        &mut fbb,
        &fb::WasmLinkArgs {
            imports: Some(imports),
            max_memory: Some(link.max_memory),
            fuel: Some(link.fuel.unwrap_or(0)),
            max_recursion_depth: Some(link.max_recursion_depth),
            max_stack_height: Some(link.max_stack_height),
            wasi: link.wasi,
        },
    );
    fb::finish_wasm_link_buffer(&mut fbb, root);
    into_bytes(fbb)
}

/// Encodes a [`ModuleInfo`] (identifier [`WASM_MODULE_IDENTIFIER`]).
pub fn encode_wasm_module(info: &ModuleInfo) -> Vec<u8> {
    let hint = info.message.len()
        + names_hint(
            info.imports
                .iter()
                .chain(&info.exports)
                .map(|e| (&*e.module, &*e.name)),
        )
        + names_hint(info.problems.iter().map(|p| (&*p.module, &*p.name)));
    let mut fbb = new_builder(hint);
    let message = fbb.create_string(&info.message);
    let imports = write_externs(&mut fbb, &info.imports);
    let exports = write_externs(&mut fbb, &info.exports);
    let problems: Vec<_> = info
        .problems
        .iter()
        .map(|problem| {
            let module = fbb.create_string(&problem.module);
            let name = fbb.create_string(&problem.name);
            let declared = problem
                .declared
                .as_ref()
                .map(|t| write_func_type(&mut fbb, t));
            let registered = problem
                .registered
                .as_ref()
                .map(|t| write_func_type(&mut fbb, t));
            fb::LinkProblem::create(
                &mut fbb,
                &fb::LinkProblemArgs {
                    module: Some(module),
                    name: Some(name),
                    kind: Some(problem_to_fb(problem.kind)),
                    declared,
                    registered,
                },
            )
        })
        .collect();
    let problems = fbb.create_vector(&problems);
    let root = fb::WasmModule::create(
        &mut fbb,
        &fb::WasmModuleArgs {
            outcome: Some(outcome_to_fb(info.outcome)),
            message: Some(message),
            imports: Some(imports),
            exports: Some(exports),
            problems: Some(problems),
        },
    );
    fb::finish_wasm_module_buffer(&mut fbb, root);
    into_bytes(fbb)
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn bounded(field: &'static str, count: usize, max: usize) -> Result<(), DecodeError> {
    if count > max {
        return Err(DecodeError::TooManyItems { field, count, max });
    }
    Ok(())
}

fn read_func_type(ty: fb::FuncType<'_>) -> Result<FuncType, DecodeError> {
    let read = |list: Vector<'_, fb::CoreType>, field| -> Result<Vec<CoreType>, DecodeError> {
        // A core function type of the runner's modules has at most MAX_FLAT_PARAMS + 1 params,
        // but a module may declare many more: allow what wasmparser allows.
        bounded(field, list.len(), 1000)?;
        list.iter().map(core_from_fb).collect()
    };
    Ok(FuncType {
        params: read(ty.params(), "FuncType.params")?,
        results: read(ty.results(), "FuncType.results")?,
    })
}

fn read_externs(
    list: Vector<'_, ForwardsUOffset<fb::Extern<'_>>>,
    field: &'static str,
) -> Result<Vec<Extern>, DecodeError> {
    bounded(field, list.len(), MAX_EXTERNS)?;
    list.iter()
        .map(|item| {
            let kind = kind_from_fb(required(item.kind(), "Extern.kind")?)?;
            let ty = item.ty().map(read_func_type).transpose()?;
            if (kind == ExternKind::Func) != ty.is_some() {
                return Err(DecodeError::MissingField { field: "Extern.ty" });
            }
            Ok(Extern {
                module: item.module().to_string(),
                name: item.name().to_string(),
                kind,
                ty,
            })
        })
        .collect()
}

/// Decodes a [`Link`], checking it as any message; at most [`MAX_EXTERNS`] imports of at most
/// [`MAX_PARAMS`] parameters each, none `Void`.
pub fn decode_wasm_link(buf: &[u8]) -> Result<Link, DecodeError> {
    let link = verified_root_with::<fb::WasmLink<'_>>(buf, WASM_LINK_IDENTIFIER, WASM_LIMITS)?;
    let imports = link.imports();
    bounded("WasmLink.imports", imports.len(), MAX_EXTERNS)?;
    let imports = imports
        .iter()
        .map(|import| {
            let params = import.params();
            if params.len() > MAX_PARAMS {
                return Err(DecodeError::TooManyArgs {
                    count: params.len(),
                    max: MAX_PARAMS,
                });
            }
            let params = params
                .iter()
                .enumerate()
                .map(
                    |(index, t)| match value_type_from_fb(t, "ImportDecl.params")? {
                        ValueType::Void => Err(DecodeError::VoidArgument { index }),
                        t => Ok(t),
                    },
                )
                .collect::<Result<_, _>>()?;
            Ok(ImportDecl {
                module: String::from(import.module()),
                name: String::from(import.name()),
                params,
                result: value_type_from_fb(
                    required(import.result(), "ImportDecl.result")?,
                    "ImportDecl.result",
                )?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    let fuel = required(link.fuel(), "WasmLink.fuel")?;
    Ok(Link {
        imports,
        max_memory: required(link.max_memory(), "WasmLink.max_memory")?,
        fuel: (fuel != 0).then_some(fuel),
        max_recursion_depth: required(link.max_recursion_depth(), "WasmLink.max_recursion_depth")?,
        max_stack_height: required(link.max_stack_height(), "WasmLink.max_stack_height")?,
        wasi: link.wasi(),
    })
}

/// Decodes a [`ModuleInfo`], checking it as any message; at most [`MAX_EXTERNS`] items in each
/// list, and a type on every function item and on no other.
pub fn decode_wasm_module(buf: &[u8]) -> Result<ModuleInfo, DecodeError> {
    let info = verified_root_with::<fb::WasmModule<'_>>(buf, WASM_MODULE_IDENTIFIER, WASM_LIMITS)?;
    let problems = info.problems();
    bounded("WasmModule.problems", problems.len(), MAX_EXTERNS)?;
    let problems = problems
        .iter()
        .map(|problem| {
            Ok(LinkProblem {
                module: problem.module().to_string(),
                name: problem.name().to_string(),
                kind: problem_from_fb(required(problem.kind(), "LinkProblem.kind")?)?,
                declared: problem.declared().map(read_func_type).transpose()?,
                registered: problem.registered().map(read_func_type).transpose()?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(ModuleInfo {
        outcome: outcome_from_fb(required(info.outcome(), "WasmModule.outcome")?)?,
        message: info.message().to_string(),
        imports: read_externs(info.imports(), "WasmModule.imports")?,
        exports: read_externs(info.exports(), "WasmModule.exports")?,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn func(params: Vec<CoreType>, results: Vec<CoreType>) -> FuncType {
        FuncType { params, results }
    }

    #[test]
    fn link_round_trips() {
        let link = Link {
            imports: vec![
                ImportDecl {
                    module: "env".into(),
                    name: "lookup".into(),
                    params: vec![ValueType::String],
                    result: ValueType::String,
                },
                ImportDecl {
                    module: "".into(),
                    name: "".into(),
                    params: vec![],
                    result: ValueType::Void,
                },
            ],
            max_memory: 1 << 20,
            fuel: Some(7),
            max_recursion_depth: 1000,
            max_stack_height: 10_000,
            wasi: true,
        };
        assert_eq!(decode_wasm_link(&encode_wasm_link(&link)), Ok(link.clone()));
        let unmetered = Link { fuel: None, ..link };
        assert_eq!(
            decode_wasm_link(&encode_wasm_link(&unmetered)),
            Ok(unmetered)
        );
    }

    #[test]
    fn module_round_trips() {
        let info = ModuleInfo {
            outcome: LinkOutcome::Unlinkable,
            message: String::new(),
            imports: vec![Extern {
                module: "env".into(),
                name: "add".into(),
                kind: ExternKind::Func,
                ty: Some(func(vec![CoreType::I64], vec![CoreType::I64])),
            }],
            exports: vec![Extern {
                module: String::new(),
                name: "memory".into(),
                kind: ExternKind::Memory,
                ty: None,
            }],
            problems: vec![LinkProblem {
                module: "env".into(),
                name: "add".into(),
                kind: ProblemKind::Mistyped,
                declared: Some(func(vec![CoreType::I64], vec![CoreType::I64])),
                registered: Some(func(vec![CoreType::I32; 2], vec![CoreType::Other])),
            }],
        };
        assert_eq!(decode_wasm_module(&encode_wasm_module(&info)), Ok(info));
    }

    #[test]
    fn hostile_messages_are_refused() {
        let mut info = ModuleInfo {
            outcome: LinkOutcome::Linked,
            message: String::new(),
            imports: vec![],
            exports: vec![],
            problems: vec![],
        };
        // A function without a type, or a memory with one.
        info.exports.push(Extern {
            module: String::new(),
            name: "f".into(),
            kind: ExternKind::Func,
            ty: None,
        });
        assert_eq!(
            decode_wasm_module(&encode_wasm_module(&info)),
            Err(DecodeError::MissingField { field: "Extern.ty" })
        );
        info.exports[0].kind = ExternKind::Memory;
        info.exports[0].ty = Some(func(vec![], vec![]));
        assert!(decode_wasm_module(&encode_wasm_module(&info)).is_err());
        // Too many exports.
        info.exports = vec![
            Extern {
                module: String::new(),
                name: String::new(),
                kind: ExternKind::Global,
                ty: None,
            };
            MAX_EXTERNS + 1
        ];
        assert!(matches!(
            decode_wasm_module(&encode_wasm_module(&info)),
            Err(DecodeError::TooManyItems { .. })
        ));
        // A link message is not a module message, and a void parameter is refused.
        let link = Link {
            imports: vec![ImportDecl {
                module: "m".into(),
                name: "n".into(),
                params: vec![ValueType::Void],
                result: ValueType::Void,
            }],
            max_memory: 0,
            fuel: None,
            max_recursion_depth: 1,
            max_stack_height: 1,
            wasi: false,
        };
        let bytes = encode_wasm_link(&link);
        assert!(matches!(
            decode_wasm_module(&bytes),
            Err(DecodeError::WrongIdentifier { .. })
        ));
        assert_eq!(
            decode_wasm_link(&bytes),
            Err(DecodeError::VoidArgument { index: 0 })
        );
    }
}

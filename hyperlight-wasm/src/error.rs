//! The one error type of `hyperlight-wasm`.

use std::fmt::Write as _;

use hyperlight_async::{ErrorCode, SandboxError};
use hyperlight_schema::wasm::{FuncType, LinkProblem, ProblemKind, Trap};
use hyperlight_schema::wire::DecodeError;

/// What can go wrong building a Wasm sandbox or calling one of its exports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid WebAssembly module (the runner's validator says why), or the
    /// module needs what the runner cannot give it (e.g. an import returning a `String` but no
    /// `cabi_realloc` export).
    #[error("invalid WebAssembly module: {message}")]
    InvalidModule {
        /// The validator's message (text from inside the sandbox).
        message: String,
    },
    /// Some of the module's imports are not registered, are registered with another signature,
    /// or are not functions. Every problem is listed.
    #[error("the module cannot be linked: {}", describe(problems))]
    Link {
        /// One entry per import that cannot be linked.
        problems: Vec<LinkProblem>,
    },
    /// The module's start function or its `_initialize` export trapped while the sandbox was
    /// built.
    #[error("instantiating the module trapped: {}", trap.message(detail))]
    InitTrapped {
        /// The trap.
        trap: Trap,
        /// The engine's detail.
        detail: String,
    },
    /// The module exports no function of that name. Nothing ran.
    #[error("the module exports no function `{name}`")]
    UnknownExport {
        /// The name called.
        name: String,
    },
    /// The call's argument and return types do not lower to the export's core type (see
    /// `docs/wasm.md` for the convention). Nothing ran.
    #[error(
        "export `{name}` has the type {declared}, but the call lowers to {}",
        lowered_text(called)
    )]
    ExportType {
        /// The export.
        name: String,
        /// The export's core type.
        declared: FuncType,
        /// What the call's types lower to; `None` if they do not lower (more than 16 flat
        /// parameters).
        called: Option<FuncType>,
    },
    /// The export trapped (or hit a limit: fuel, memory, stack). The instance is restored to its
    /// post-instantiation snapshot before the next call.
    #[error("export `{export}` trapped: {}", trap.message(detail))]
    Trap {
        /// The export called.
        export: String,
        /// The trap.
        trap: Trap,
        /// The engine's detail (text from inside the sandbox).
        detail: String,
    },
    /// The module broke the type convention while a value crossed (a pointer out of bounds, a
    /// string that is not UTF-8, no `cabi_realloc` for a `String` argument). The instance is
    /// restored before the next call.
    #[error("export `{export}` broke the type convention: {message}")]
    Abi {
        /// The export called.
        export: String,
        /// What was wrong (text from inside the sandbox).
        message: String,
    },
    /// The runner's answer to the link request did not decode: the guest is not the runner, or
    /// it is compromised.
    #[error("malformed answer from the Wasm runner: {0}")]
    Protocol(#[source] DecodeError),
    /// A limit is out of range.
    #[error("invalid Wasm limit `{field}`: {reason}")]
    InvalidLimit {
        /// The limit.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A WASI run passed one of its [`WasiLimits`](crate::WasiLimits): stdin, arguments or
    /// environment too large (nothing ran), or a write to stdout or stderr past its limit (the
    /// run was ended there; its output is dropped).
    #[error("the WASI run passed its limit `{limit:?}` of {max} bytes")]
    WasiLimit {
        /// The limit passed.
        limit: crate::WasiLimit,
        /// Its value.
        max: usize,
    },
    /// A WASI run's input cannot be given to a program (a NUL in an argument, an `=` in an
    /// environment variable's name). Nothing ran.
    #[error("invalid WASI run: {reason}")]
    WasiInput {
        /// What is wrong.
        reason: String,
    },
    /// `run` on a sandbox or pool built without [`WasmSandboxBuilder::wasi`](crate::WasmSandboxBuilder::wasi).
    #[error("WASI is not enabled for this module: build it with `WasmSandboxBuilder::wasi`")]
    WasiDisabled,
    /// The sandbox reported an error: a timeout, a cancellation, a failed host function (an
    /// import), a module too large for `max_module_size`, the VM could not be built, and so on.
    #[error(transparent)]
    Sandbox(#[from] hyperlight_async::Error),
}

impl Error {
    /// The error of a failed call of `export`: a trap or an ABI break reported by the runner
    /// becomes [`Error::Trap`] or [`Error::Abi`]; everything else stays an [`Error::Sandbox`].
    pub(crate) fn of_call(export: &str, error: hyperlight_async::Error) -> Self {
        if let hyperlight_async::Error::Sandbox(SandboxError::GuestCall { code, message }) = &error
        {
            match code {
                ErrorCode::WasmTrap => {
                    if let Some((trap, detail)) = Trap::from_message(message) {
                        return Error::Trap {
                            export: export.to_string(),
                            trap,
                            detail: detail.to_string(),
                        };
                    }
                }
                ErrorCode::WasmAbi => {
                    return Error::Abi {
                        export: export.to_string(),
                        message: message.clone(),
                    }
                }
                _ => {}
            }
        }
        Error::Sandbox(error)
    }

    /// Whether the instance may have been left in a state the next call must not see (a trap or
    /// an ABI break in the middle of an export): the sandbox is restored after it.
    pub(crate) fn leaves_instance_dirty(&self) -> bool {
        matches!(self, Error::Trap { .. } | Error::Abi { .. })
    }
}

fn lowered_text(ty: &Option<FuncType>) -> String {
    match ty {
        Some(ty) => ty.to_string(),
        None => "no core type (more than 16 flat parameters, or a void parameter)".to_string(),
    }
}

fn describe(problems: &[LinkProblem]) -> String {
    let mut text = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let declared = p.declared.as_ref().map(ToString::to_string);
        let declared = declared.as_deref().unwrap_or("");
        let _ = match p.kind {
            ProblemKind::Missing => write!(
                text,
                "missing import `{}`.`{}` {declared}",
                p.module, p.name
            ),
            ProblemKind::Mistyped => write!(
                text,
                "import `{}`.`{}` is declared {declared} but the registered function lowers to {}",
                p.module,
                p.name,
                lowered_text(&p.registered)
            ),
            ProblemKind::Unsupported => write!(
                text,
                "import `{}`.`{}` is not a function (only function imports are linked)",
                p.module, p.name
            ),
        };
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperlight_schema::wasm::CoreType;

    #[test]
    fn link_errors_list_every_problem() {
        let error = Error::Link {
            problems: vec![
                LinkProblem {
                    module: "env".into(),
                    name: "nonexistent".into(),
                    kind: ProblemKind::Missing,
                    declared: Some(FuncType {
                        params: vec![],
                        results: vec![],
                    }),
                    registered: None,
                },
                LinkProblem {
                    module: "env".into(),
                    name: "host_add".into(),
                    kind: ProblemKind::Mistyped,
                    declared: Some(FuncType {
                        params: vec![CoreType::I64],
                        results: vec![CoreType::I64],
                    }),
                    registered: Some(FuncType {
                        params: vec![CoreType::I32, CoreType::I32],
                        results: vec![CoreType::I32],
                    }),
                },
                LinkProblem {
                    module: "env".into(),
                    name: "memory".into(),
                    kind: ProblemKind::Unsupported,
                    declared: None,
                    registered: None,
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "the module cannot be linked: missing import `env`.`nonexistent` (param) (result); \
             import `env`.`host_add` is declared (param i64) (result i64) but the registered \
             function lowers to (param i32 i32) (result i32); import `env`.`memory` is not a \
             function (only function imports are linked)"
        );
    }

    #[test]
    fn runner_errors_become_traps_or_abi_errors() {
        let guest = |code, message: &str| {
            hyperlight_async::Error::Sandbox(SandboxError::GuestCall {
                code,
                message: message.into(),
            })
        };
        assert!(matches!(
            Error::of_call("f", guest(ErrorCode::WasmTrap, "out of fuel")),
            Error::Trap { trap: Trap::OutOfFuel, ref detail, .. } if detail.is_empty()
        ));
        assert!(matches!(
            Error::of_call("f", guest(ErrorCode::WasmAbi, "bad pointer")),
            Error::Abi { ref message, .. } if message == "bad pointer"
        ));
        // A trap message that names no trap (a compromised runner) stays the runtime's error.
        assert!(matches!(
            Error::of_call("f", guest(ErrorCode::WasmTrap, "nonsense")),
            Error::Sandbox(_)
        ));
        assert!(matches!(
            Error::of_call("f", guest(ErrorCode::HostFunctionFailed, "no")),
            Error::Sandbox(_)
        ));
    }
}

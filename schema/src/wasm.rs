//! The messages of the WebAssembly runner (the guest `guest/wasm-runner`, driven by the host crate
//! `hyperlight-wasm`), and the type convention both sides apply: the Component Model's canonical
//! ABI lowering of wire types to core WebAssembly types (see `docs/wasm.md`).
//!
//! One piece of code serves both sides: the host checks a call against an export's core type
//! before any Wasm runs, and the runner checks it again and lowers the values with the same
//! functions.
//!
//! ```
//! use hyperlight_schema::wasm::{lower_export, lower_import, CoreType::*, FuncType};
//! use hyperlight_schema::ValueType;
//!
//! // `render(s: String) -> String`: a (ptr, len) pair in, a pointer to a return area out.
//! assert_eq!(
//!     lower_export(&[ValueType::String], ValueType::String),
//!     Some(FuncType { params: vec![I32, I32], results: vec![I32] })
//! );
//! // An import returning a `String` takes a trailing return-area pointer instead.
//! assert_eq!(
//!     lower_import(&[ValueType::String], ValueType::String),
//!     Some(FuncType { params: vec![I32, I32, I32], results: vec![] })
//! );
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::types::ValueType;

/// The name of the runner's guest function that links and instantiates the module; its one
/// argument is an encoded [`Link`], its result an encoded [`ModuleInfo`].
pub const LINK_FUNCTION: &str = "__hyperlight_wasm_link";

/// The module export the canonical ABI allocates linear memory with:
/// `cabi_realloc(old_ptr: i32, old_size: i32, align: i32, new_size: i32) -> i32`.
pub const REALLOC_EXPORT: &str = "cabi_realloc";

/// The prefix of the optional export that frees an export's result: `cabi_post_<name>(i32)`.
pub const POST_RETURN_PREFIX: &str = "cabi_post_";

/// The export a WASI reactor initializes itself with; the runner calls it once after
/// instantiation, before the snapshot.
pub const INITIALIZE_EXPORT: &str = "_initialize";

/// The canonical ABI's limit on flattened parameters: a function whose lowered parameters
/// exceed it would pass them in memory, which this convention does not support.
pub const MAX_FLAT_PARAMS: usize = 16;

/// The most imports, exports and link problems one [`ModuleInfo`] may list.
pub const MAX_EXTERNS: usize = 10_000;

/// A core WebAssembly value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreType {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// Any other type (`v128`, `funcref`, `externref`): no wire type lowers to it, so a function
    /// that has one in its signature cannot be called or linked.
    Other,
}

impl fmt::Display for CoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CoreType::I32 => "i32",
            CoreType::I64 => "i64",
            CoreType::F32 => "f32",
            CoreType::F64 => "f64",
            CoreType::Other => "(another type)",
        })
    }
}

/// A core function type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FuncType {
    /// Parameter types.
    pub params: Vec<CoreType>,
    /// Result types.
    pub results: Vec<CoreType>,
}

impl fmt::Display for FuncType {
    /// Formats like the WebAssembly text format: `(param i32 i32) (result i32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(param")?;
        for p in &self.params {
            write!(f, " {p}")?;
        }
        f.write_str(") (result")?;
        for r in &self.results {
            write!(f, " {r}")?;
        }
        f.write_str(")")
    }
}

/// The core types a wire type lowers to as a parameter: `None` for `Void`, which is no
/// parameter.
pub fn lower_param(ty: ValueType) -> Option<&'static [CoreType]> {
    Some(match ty {
        ValueType::I32 | ValueType::U32 | ValueType::Bool => &[CoreType::I32],
        ValueType::I64 | ValueType::U64 => &[CoreType::I64],
        ValueType::F32 => &[CoreType::F32],
        ValueType::F64 => &[CoreType::F64],
        // (ptr, len) in linear memory.
        ValueType::String | ValueType::Bytes => &[CoreType::I32, CoreType::I32],
        ValueType::Void => return None,
    })
}

/// Whether values of this type live in linear memory (`String`, `Bytes`).
pub fn is_indirect(ty: ValueType) -> bool {
    matches!(ty, ValueType::String | ValueType::Bytes)
}

fn lower_params(params: &[ValueType]) -> Option<Vec<CoreType>> {
    let mut flat = Vec::with_capacity(params.len() * 2);
    for &p in params {
        flat.extend_from_slice(lower_param(p)?);
    }
    (flat.len() <= MAX_FLAT_PARAMS).then_some(flat)
}

/// The core type of an export called with `params` for a `result`: the lowered parameters, and
/// the result itself for a scalar, an `i32` pointer to a return area (`ptr: u32, len: u32`) for a
/// `String` or `Bytes`, nothing for `Void`. `None` if the signature has no lowering (a `Void`
/// parameter, or more than [`MAX_FLAT_PARAMS`] flat parameters).
pub fn lower_export(params: &[ValueType], result: ValueType) -> Option<FuncType> {
    let params = lower_params(params)?;
    let results = match result {
        ValueType::Void => Vec::new(),
        indirect if is_indirect(indirect) => alloc::vec![CoreType::I32],
        scalar => lower_param(scalar)?.to_vec(),
    };
    Some(FuncType { params, results })
}

/// The core type an import of a host function with this signature must declare: the lowered
/// parameters; a scalar result as itself; a `String` or `Bytes` result through one more `i32`
/// parameter, the address of a return area the runner fills (`ptr: u32, len: u32`), and no
/// result. `None` as for [`lower_export`].
pub fn lower_import(params: &[ValueType], result: ValueType) -> Option<FuncType> {
    let mut ty = lower_export(params, result)?;
    if is_indirect(result) {
        ty.results.clear();
        ty.params.push(CoreType::I32);
        if ty.params.len() > MAX_FLAT_PARAMS + 1 {
            return None;
        }
    }
    Some(ty)
}

/// The name under which the host registers, and the runner calls, the host function that
/// serves the import `module`.`name`. Length-prefixed, so that no two imports share one
/// (`("a.b", "c")` and `("a", "b.c")` differ): `wasm:3:env:add` for `env`.`add`.
pub fn import_function_name(module: &str, name: &str) -> String {
    format!("wasm:{}:{module}:{name}", module.len())
}

/// What kind of item a module imports or exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExternKind {
    /// A function.
    Func,
    /// A linear memory.
    Memory,
    /// A table.
    Table,
    /// A global.
    Global,
}

/// One import or export of a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extern {
    /// The import's module name; empty for an export.
    pub module: String,
    /// The item's name.
    pub name: String,
    /// What it is.
    pub kind: ExternKind,
    /// Its type, for a function.
    pub ty: Option<FuncType>,
}

/// A host function the host registered for modules to import, with its wire signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportDecl {
    /// The import's module name (`env`).
    pub module: String,
    /// The import's name.
    pub name: String,
    /// The wire types of its parameters.
    pub params: Vec<ValueType>,
    /// The wire type of its result (`Void` for none).
    pub result: ValueType,
}

/// The host's link request: the imports it registered and the instance's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Every function the host registered.
    pub imports: Vec<ImportDecl>,
    /// The most bytes each linear memory may grow to.
    pub max_memory: u64,
    /// Fuel of each call; `None`: not metered.
    pub fuel: Option<u64>,
    /// wasmi's limit on nested calls.
    pub max_recursion_depth: u32,
    /// wasmi's limit on the value stack, in values.
    pub max_stack_height: u32,
    /// Whether the runner serves the module's [`WASI_MODULE`] imports itself and registers
    /// [`WASI_RUN_FUNCTION`].
    pub wasi: bool,
}

/// How a link request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkOutcome {
    /// Validated, linked and instantiated (start function and `_initialize` ran).
    Linked,
    /// The bytes are not a valid module ([`ModuleInfo::message`] says why).
    Invalid,
    /// Some imports are missing, mistyped or of an unsupported kind ([`ModuleInfo::problems`]).
    Unlinkable,
    /// The start function or `_initialize` trapped ([`ModuleInfo::message`] says how).
    InitTrapped,
}

/// Why one import cannot be linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The host registered no function of that module and name.
    Missing,
    /// The host's function lowers to another core type than the import declares.
    Mistyped,
    /// Not a function import (memory, table, global): the runner links functions only.
    Unsupported,
}

/// One import that cannot be linked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkProblem {
    /// The import's module name.
    pub module: String,
    /// The import's name.
    pub name: String,
    /// What is wrong.
    pub kind: ProblemKind,
    /// The type the module declares (function imports only).
    pub declared: Option<FuncType>,
    /// The type the host's signature lowers to (mistyped imports only).
    pub registered: Option<FuncType>,
}

/// The runner's answer to a [`Link`]: what the module declares, and how linking ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// How linking ended.
    pub outcome: LinkOutcome,
    /// Detail for [`LinkOutcome::Invalid`] and [`LinkOutcome::InitTrapped`]; empty otherwise.
    pub message: String,
    /// The module's imports (empty if it is invalid).
    pub imports: Vec<Extern>,
    /// The module's exports (empty if it is invalid).
    pub exports: Vec<Extern>,
    /// The imports that cannot be linked (for [`LinkOutcome::Unlinkable`]).
    pub problems: Vec<LinkProblem>,
}

/// The import module of WASI preview 1, whose functions the runner serves itself when
/// [`Link::wasi`] is set.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// The runner's guest function that runs a WASI command module's `_start` once: its one argument
/// is an encoded [`WasiRunRequest`], its result an encoded [`WasiOutcome`].
pub const WASI_RUN_FUNCTION: &str = "__hyperlight_wasi_run";

/// The most arguments, and the most environment variables, of one [`WasiRunRequest`].
pub const MAX_WASI_STRINGS: usize = 10_000;

/// The host functions that answer WASI preview 1 calls the runner cannot answer inside the VM.
/// Their names start with `wasi:`, which no import's function name
/// ([`import_function_name`], `wasm:`) does.
pub mod wasi_host {
    /// `clock_time_get(id: u32, precision: u64) -> u64`: nanoseconds of clock `id` (0 realtime,
    /// 1 monotonic, 2 process CPU time, 3 thread CPU time).
    pub const CLOCK_TIME_GET: &str = "wasi:clock_time_get";
    /// `clock_res_get(id: u32) -> u64`: the resolution of clock `id`, in nanoseconds.
    pub const CLOCK_RES_GET: &str = "wasi:clock_res_get";
    /// `random_get(len: u32) -> Vec<u8>`: `len` bytes of OS randomness, at most
    /// [`MAX_RANDOM_CHUNK`] per call.
    pub const RANDOM_GET: &str = "wasi:random_get";
    /// `poll_oneoff(nanoseconds: u64) -> ()`: sleeps that long (a `poll_oneoff` whose
    /// subscriptions are all clocks), without blocking a runtime thread.
    pub const SLEEP: &str = "wasi:poll_oneoff";
    /// The most bytes one [`RANDOM_GET`] call asks for.
    pub const MAX_RANDOM_CHUNK: u32 = 64 * 1024;
}

/// One run of a WASI command module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasiRunRequest {
    /// `argv`, the program name first.
    pub args: Vec<String>,
    /// The environment, each `KEY=VALUE`.
    pub env: Vec<String>,
    /// What fd 0 reads; end of file after it.
    pub stdin: Vec<u8>,
    /// The most bytes the program may write to fd 1.
    pub max_stdout: u32,
    /// The most bytes the program may write to fd 2.
    pub max_stderr: u32,
    /// `Some(seed)`: the runner serves clocks (a fixed start, advancing one microsecond per read
    /// and by every sleep, which does not wait) and randomness (a PRNG seeded with it) itself.
    pub deterministic: Option<u64>,
}

/// An output stream of a WASI run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WasiStream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

/// How one WASI run ended (a trap or a failed host function is a guest error instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasiOutcome {
    /// 0 if `_start` returned, else the code given to `proc_exit`.
    pub exit_code: i32,
    /// What the program wrote to fd 1.
    pub stdout: Vec<u8>,
    /// What the program wrote to fd 2.
    pub stderr: Vec<u8>,
    /// `Some(stream)`: the run was ended by a write past that stream's limit.
    pub limit: Option<WasiStream>,
}

macro_rules! traps {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Why a WebAssembly instance stopped: a trap, or a limit of the runner. A failed call
        /// reports it as a `WasmTrap` error whose message starts with [`Trap::name`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Trap {
            $($(#[$doc])* $variant,)*
        }

        impl Trap {
            /// Every trap.
            pub const ALL: &'static [Trap] = &[$(Trap::$variant),*];

            /// The trap's stable name, which starts the message of its error.
            pub fn name(self) -> &'static str {
                match self {
                    $(Trap::$variant => $name,)*
                }
            }
        }
    };
}

traps! {
    /// `unreachable` ran.
    Unreachable = "unreachable",
    /// A load or store outside linear memory.
    MemoryOutOfBounds = "memory out of bounds",
    /// An access outside a table.
    TableOutOfBounds = "table out of bounds",
    /// `call_indirect` on an empty table slot.
    IndirectCallToNull = "indirect call to null",
    /// `call_indirect` with a signature other than the function's.
    BadSignature = "indirect call type mismatch",
    /// An integer division or remainder by zero.
    IntegerDivisionByZero = "integer divide by zero",
    /// An integer overflow (`i32.div_s` of `INT_MIN` by -1).
    IntegerOverflow = "integer overflow",
    /// A float that does not convert to the integer type (NaN, out of range).
    BadConversionToInteger = "invalid conversion to integer",
    /// Calls nested deeper, or the value stack grew higher, than the configured limits.
    StackOverflow = "stack overflow",
    /// The call used up its fuel.
    OutOfFuel = "out of fuel",
    /// `memory.grow` (or a table's growth) would pass the configured limit.
    MemoryLimit = "memory limit",
    /// Any other failure of the engine.
    Other = "trap",
}

impl Trap {
    /// The trap a `WasmTrap` error message names, and the detail after it (`None` if the
    /// message names none: an error of a hostile guest).
    pub fn from_message(message: &str) -> Option<(Trap, &str)> {
        Trap::ALL.iter().find_map(|&trap| {
            let rest = message.strip_prefix(trap.name())?;
            match rest.strip_prefix(": ") {
                Some(detail) => Some((trap, detail)),
                None => rest.is_empty().then_some((trap, rest)),
            }
        })
    }

    /// The message of a `WasmTrap` error for this trap: its name, then `detail` if any.
    pub fn message(self, detail: &str) -> String {
        if detail.is_empty() {
            String::from(self.name())
        } else {
            format!("{}: {detail}", self.name())
        }
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use CoreType::*;

    #[test]
    fn lowering() {
        let all = [
            ValueType::I32,
            ValueType::U32,
            ValueType::I64,
            ValueType::U64,
            ValueType::F32,
            ValueType::F64,
            ValueType::Bool,
            ValueType::String,
            ValueType::Bytes,
        ];
        assert_eq!(
            lower_export(&all, ValueType::Void).unwrap().params,
            vec![I32, I32, I64, I64, F32, F64, I32, I32, I32, I32, I32]
        );
        assert_eq!(lower_export(&[], ValueType::F64).unwrap().results, [F64]);
        assert_eq!(lower_export(&[], ValueType::Bytes).unwrap().results, [I32]);
        assert_eq!(lower_import(&[], ValueType::U64).unwrap().results, [I64]);
        assert_eq!(
            lower_import(&[ValueType::I64], ValueType::Bytes).unwrap(),
            FuncType {
                params: vec![I64, I32],
                results: vec![]
            }
        );
        assert_eq!(lower_export(&[ValueType::Void], ValueType::I32), None);
        // 8 strings flatten to 16 values: at the limit. One more value is past it.
        let eight = [ValueType::String; 8];
        assert!(lower_export(&eight, ValueType::Void).is_some());
        let mut nine = eight.to_vec();
        nine.push(ValueType::I32);
        assert_eq!(lower_export(&nine, ValueType::Void), None);
        // An import's return-area pointer may be the 17th.
        assert!(lower_import(&eight, ValueType::String).is_some());
        assert_eq!(
            FuncType {
                params: vec![I32, F64],
                results: vec![I64]
            }
            .to_string(),
            "(param i32 f64) (result i64)"
        );
    }

    #[test]
    fn import_names_are_unambiguous() {
        assert_ne!(
            import_function_name("a.b", "c"),
            import_function_name("a", "b.c")
        );
        assert_ne!(
            import_function_name("a:", "b"),
            import_function_name("a", ":b")
        );
        assert_eq!(import_function_name("env", "add"), "wasm:3:env:add");
    }

    #[test]
    fn trap_messages_round_trip() {
        for &trap in Trap::ALL {
            assert_eq!(Trap::from_message(&trap.message("")), Some((trap, "")));
            assert_eq!(
                Trap::from_message(&trap.message("at 0x10")),
                Some((trap, "at 0x10"))
            );
        }
        assert_eq!(Trap::from_message("no such trap"), None);
        // A prefix of a name is no name.
        assert_eq!(Trap::from_message("unreachableX"), None);
    }
}

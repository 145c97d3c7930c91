//! The [`Engine`] on wasmi: an interpreter, so the module is validated and compiled here, in the
//! guest, from the untrusted bytes.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::{
    CoreType, Extern, ExternKind, FuncType, Link, Trap, INITIALIZE_EXPORT,
};
use hyperlight_guest::GuestError;
use wasmi::{
    AsContextMut, Caller, CompilationMode, Config, ExternType, Func, Linker, Memory, MemoryType,
    Module, Store, StoreLimits, StoreLimitsBuilder, Val, ValType, F32, F64,
};

use crate::abi::abi_error;
use crate::engine::{
    Binding, CallError, Compiled, Context, CoreValue, Described, Engine, Instance,
};
use crate::{memory, trap};

/// The most elements a table may grow to: each costs the guest heap a few words, and the
/// protocol has no limit of its own for tables.
const MAX_TABLE_ELEMENTS: usize = 1 << 16;

/// wasmi's smallest allowed limit on the value stack (a lower `max_stack_height` is raised to
/// it).
const MIN_STACK_HEIGHT: usize = 1_000;

/// The linear memory the canonical ABI reads and writes.
const MEMORY_EXPORT: &str = "memory";

/// The wasmi engine.
pub struct Wasmi;

/// The store's data.
struct State {
    limits: StoreLimits,
    /// The error of a host function (or of the ABI in an import, or a WASI function's stop): the
    /// wasmi error that unwinds the call only says that one happened, and the export call
    /// reports this one instead.
    stashed: Option<CallError>,
}

struct WasmiModule {
    engine: wasmi::Engine,
    module: Module,
    max_memory: usize,
    fuel: Option<u64>,
    /// The module's memory, if `memory::rewrite` moved it to the last import: its type and the
    /// buffer of all the bytes it may reach.
    moved_memory: Option<(MemoryType, &'static mut [u8])>,
}

struct WasmiInstance {
    store: Store<State>,
    instance: wasmi::Instance,
    fuel: Option<u64>,
}

impl Engine for Wasmi {
    fn compile(&self, link: &Link, bytes: &[u8]) -> Result<Box<dyn Compiled>, String> {
        let mut config = Config::default();
        // Eager: every function is translated at link time, before the snapshot. wasmi's default
        // translates each function at its first call, which in a sandbox restored after every
        // call (a pool, `fresh_per_call`, WASI runs) is every call: `upper`'s took ~60 µs of a
        // fresh-instance call (docs/performance.md).
        config
            .compilation_mode(CompilationMode::Eager)
            .consume_fuel(link.fuel.is_some())
            .set_max_recursion_depth(link.max_recursion_depth as usize)
            .set_max_stack_height((link.max_stack_height as usize).max(MIN_STACK_HEIGHT));
        let engine = wasmi::Engine::new(&config);
        let max_memory = usize::try_from(link.max_memory).unwrap_or(usize::MAX);
        // A memory that grows in place (`memory`), if the module lends itself to it and the
        // rewritten module compiles; else the module as given.
        let moved = memory::rewrite(bytes).and_then(|rewritten| {
            let reach = memory::reach(rewritten.minimum, rewritten.maximum, max_memory)?;
            let module = Module::new(&engine, &rewritten.bytes).ok()?;
            let buffer = memory::reserve(reach)?;
            let ty = MemoryType::new(rewritten.minimum, rewritten.maximum);
            Some((module, (ty, buffer)))
        });
        let (module, moved_memory) = match moved {
            Some((module, memory)) => (module, Some(memory)),
            None => (
                Module::new(&engine, bytes).map_err(|e| e.to_string())?,
                None,
            ),
        };
        Ok(Box::new(WasmiModule {
            engine,
            module,
            max_memory,
            fuel: link.fuel,
            moved_memory,
        }))
    }
}

fn core_type(ty: &ValType) -> CoreType {
    match ty {
        ValType::I32 => CoreType::I32,
        ValType::I64 => CoreType::I64,
        ValType::F32 => CoreType::F32,
        ValType::F64 => CoreType::F64,
        _ => CoreType::Other,
    }
}

fn func_type(ty: &wasmi::FuncType) -> FuncType {
    FuncType {
        params: ty.params().iter().map(core_type).collect(),
        results: ty.results().iter().map(core_type).collect(),
    }
}

fn extern_of(module: &str, name: &str, ty: &ExternType) -> Extern {
    let (kind, ty) = match ty {
        ExternType::Func(ty) => (ExternKind::Func, Some(func_type(ty))),
        ExternType::Memory(_) => (ExternKind::Memory, None),
        ExternType::Table(_) => (ExternKind::Table, None),
        ExternType::Global(_) => (ExternKind::Global, None),
    };
    Extern {
        module: String::from(module),
        name: String::from(name),
        kind,
        ty,
    }
}

fn to_val(value: CoreValue) -> Val {
    match value {
        CoreValue::I32(x) => Val::I32(x),
        CoreValue::I64(x) => Val::I64(x),
        CoreValue::F32(x) => Val::F32(F32::from_bits(x.to_bits())),
        CoreValue::F64(x) => Val::F64(F64::from_bits(x.to_bits())),
    }
}

fn from_val(value: &Val) -> Result<CoreValue, GuestError> {
    Ok(match value {
        Val::I32(x) => CoreValue::I32(*x),
        Val::I64(x) => CoreValue::I64(*x),
        Val::F32(x) => CoreValue::F32(f32::from_bits(x.to_bits())),
        Val::F64(x) => CoreValue::F64(f64::from_bits(x.to_bits())),
        other => {
            return Err(abi_error(format!(
                "a value of type {:?} has no wire type",
                other.ty()
            )))
        }
    })
}

/// The [`CallError`] of a failed wasmi call: the stashed error of a host function if there is
/// one, else the trap.
fn call_error(state: &mut State, error: &wasmi::Error) -> CallError {
    match state.stashed.take() {
        Some(stashed) => stashed,
        None => {
            let (trap, detail) = trap::from_wasmi(error);
            CallError::Trap(trap, detail)
        }
    }
}

/// Calls `func` with `args`, in the store `ctx`.
fn call_func(
    mut ctx: impl AsContextMut<Data = State>,
    func: Func,
    args: &[CoreValue],
) -> Result<Vec<CoreValue>, CallError> {
    let ty = func.ty(&ctx);
    let args: Vec<Val> = args.iter().copied().map(to_val).collect();
    let mut results: Vec<Val> = ty
        .results()
        .iter()
        .map(|t| Val::default_for_ty(*t))
        .collect();
    if let Err(error) = func.call(&mut ctx, &args, &mut results) {
        return Err(call_error(ctx.as_context_mut().data_mut(), &error));
    }
    results
        .iter()
        .map(|v| from_val(v).map_err(CallError::from))
        .collect()
}

fn no_export(name: &str) -> CallError {
    abi_error(format!("the module exports no function `{name}`")).into()
}

impl Compiled for WasmiModule {
    fn describe(&self) -> Described {
        // The moved memory's import is the last one, and the runner's own.
        let own = usize::from(self.moved_memory.is_some());
        let imports = self.module.imports().len() - own;
        Described {
            imports: self
                .module
                .imports()
                .take(imports)
                .map(|i| extern_of(i.module(), i.name(), i.ty()))
                .collect(),
            exports: self
                .module
                .exports()
                .map(|e| extern_of("", e.name(), e.ty()))
                .collect(),
        }
    }

    fn instantiate(self: Box<Self>, imports: Vec<Binding>) -> Result<Box<dyn Instance>, CallError> {
        let WasmiModule {
            engine,
            module,
            max_memory,
            fuel,
            moved_memory,
        } = *self;
        // A grow past the limits traps (`GrowthOperationLimited`, reported as `MemoryLimit`)
        // rather than returning -1, so that the host learns which limit stopped the module.
        let limits = StoreLimitsBuilder::new()
            .memory_size(max_memory)
            .table_elements(MAX_TABLE_ELEMENTS)
            .instances(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &engine,
            State {
                limits,
                stashed: None,
            },
        );
        store.limiter(|state| &mut state.limits);
        if let Some(fuel) = fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| CallError::Trap(Trap::Other, e.to_string()))?;
        }
        let mut linker = Linker::<State>::new(&engine);
        if let Some((ty, buffer)) = moved_memory {
            let memory = Memory::new_static(&mut store, ty, buffer)
                .map_err(|error| call_error(store.data_mut(), &error))?;
            linker
                .define(memory::IMPORT_MODULE, memory::IMPORT_NAME, memory)
                .map_err(|e| CallError::Trap(Trap::Other, e.to_string()))?;
        }
        let mut defined = BTreeSet::new();
        for (import, binding) in module.imports().zip(imports) {
            let ExternType::Func(ty) = import.ty() else {
                continue;
            };
            // A module may import one function twice; the linker takes one definition.
            if !defined.insert((String::from(import.module()), String::from(import.name()))) {
                continue;
            }
            linker
                .func_new(
                    import.module(),
                    import.name(),
                    ty.clone(),
                    move |mut caller, params, results| {
                        serve_import(&mut caller, &binding, params, results).map_err(|error| {
                            caller.data_mut().stashed = Some(error);
                            wasmi::Error::new("a host function failed")
                        })
                    },
                )
                .map_err(|e| CallError::Trap(Trap::Other, e.to_string()))?;
        }
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(|error| call_error(store.data_mut(), &error))?;
        let mut instance = WasmiInstance {
            store,
            instance,
            fuel,
        };
        let init_type = FuncType {
            params: Vec::new(),
            results: Vec::new(),
        };
        if instance.export_type(INITIALIZE_EXPORT) == Some(init_type) {
            instance.call(INITIALIZE_EXPORT, &[])?;
        }
        Ok(Box::new(instance))
    }
}

/// Runs the function behind an import: for a host function, lifts the arguments, calls the
/// host, lowers the answer into `results` (and linear memory); for a WASI function, runs it.
fn serve_import(
    caller: &mut Caller<'_, State>,
    binding: &Binding,
    params: &[Val],
    results: &mut [Val],
) -> Result<(), CallError> {
    let args = params.iter().map(from_val).collect::<Result<Vec<_>, _>>()?;
    let ctx = &mut CallerContext(caller);
    let (name, values) = match binding {
        Binding::Host(decl) => (&*decl.name, crate::link::call_import(ctx, decl, &args)?),
        Binding::Wasi(function) => (function.name, function.call(ctx, &args)?),
    };
    if values.len() != results.len() {
        return Err(abi_error(format!(
            "host function `{}` gave {} results, the import declares {}",
            name,
            values.len(),
            results.len()
        ))
        .into());
    }
    for (slot, value) in results.iter_mut().zip(values) {
        *slot = to_val(value);
    }
    Ok(())
}

/// The instance as a host function sees it, through its [`Caller`].
struct CallerContext<'a, 'b>(&'a mut Caller<'b, State>);

impl Context for CallerContext<'_, '_> {
    fn export_type(&mut self, name: &str) -> Option<FuncType> {
        let func = self.0.get_export(name)?.into_func()?;
        Some(func_type(&func.ty(&*self.0)))
    }

    fn call(&mut self, name: &str, args: &[CoreValue]) -> Result<Vec<CoreValue>, CallError> {
        let func = self
            .0
            .get_export(name)
            .and_then(|e| e.into_func())
            .ok_or_else(|| no_export(name))?;
        call_func(&mut *self.0, func, args)
    }

    fn memory(&mut self) -> Option<&mut [u8]> {
        let memory = self.0.get_export(MEMORY_EXPORT)?.into_memory()?;
        Some(memory.data_mut(&mut *self.0))
    }
}

impl Context for WasmiInstance {
    fn export_type(&mut self, name: &str) -> Option<FuncType> {
        let func = self.instance.get_func(&self.store, name)?;
        Some(func_type(&func.ty(&self.store)))
    }

    fn call(&mut self, name: &str, args: &[CoreValue]) -> Result<Vec<CoreValue>, CallError> {
        let func = self
            .instance
            .get_func(&self.store, name)
            .ok_or_else(|| no_export(name))?;
        call_func(&mut self.store, func, args)
    }

    fn memory(&mut self) -> Option<&mut [u8]> {
        let memory = self.instance.get_memory(&self.store, MEMORY_EXPORT)?;
        Some(memory.data_mut(&mut self.store))
    }
}

impl Instance for WasmiInstance {
    fn begin_call(&mut self) -> Result<(), CallError> {
        self.store.data_mut().stashed = None;
        if let Some(fuel) = self.fuel {
            self.store
                .set_fuel(fuel)
                .map_err(|e| CallError::Trap(Trap::Other, e.to_string()))?;
        }
        Ok(())
    }
}

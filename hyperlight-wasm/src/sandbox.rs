//! `WasmSandbox`: a micro-VM running the Wasm runner with one instantiated module.

use std::sync::Arc;

use hyperlight_async::{
    InterruptHandle, Sandbox, SandboxBuilder, Snapshot, Value, ValueType, WireArgs, WireType,
};
use hyperlight_schema::wasm::Extern;

use crate::builder::WasmSandboxBuilder;
use crate::call::{Target, WasmCall};
use crate::error::Error;
use crate::exports::Exports;
use crate::wasi::{WasiCall, WasiRun};

/// A WebAssembly module instantiated inside a micro-VM, awaited from async code.
///
/// The module's bytes are validated, compiled and instantiated by the runner guest (wasmi)
/// inside the VM: the host never parses them. Calls are checked against the export's type on
/// the host before anything runs, then run in the VM; imports the module calls are the host
/// functions registered on the builder. `WasmSandbox` is cheap to clone (clones share the VM),
/// and its calls queue in FIFO order like [`Sandbox`]'s.
#[derive(Clone)]
pub struct WasmSandbox {
    sandbox: Sandbox,
    exports: Arc<Exports>,
    fresh_per_call: bool,
    /// Builds sandboxes like this one (its source set to the snapshot): [`WasmSandbox::fork`].
    native: SandboxBuilder,
}

impl std::fmt::Debug for WasmSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmSandbox")
            .field("id", &self.sandbox.id())
            .field("exports", &self.exports.all().len())
            .finish_non_exhaustive()
    }
}

impl WasmSandbox {
    /// Starts building a sandbox for the module `bytes` (a binary `.wasm`; the bytes are mapped
    /// read-only into the sandbox, bounded by [`SandboxConfig::max_module_size`]).
    ///
    /// [`SandboxConfig::max_module_size`]: hyperlight_async::SandboxConfig::max_module_size
    pub fn builder(bytes: impl Into<Arc<[u8]>>) -> WasmSandboxBuilder {
        WasmSandboxBuilder::new(bytes.into())
    }

    pub(crate) fn new(
        sandbox: Sandbox,
        exports: Arc<Exports>,
        fresh_per_call: bool,
        native: SandboxBuilder,
    ) -> Self {
        WasmSandbox {
            sandbox,
            exports,
            fresh_per_call,
            native,
        }
    }

    /// A new sandbox in the state this one had right after instantiation, built from its
    /// snapshot: no validation, compilation or instantiation, its memory shared copy-on-write
    /// with the snapshot. The new sandbox has the same imports, limits and settings.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the sandbox being built; nothing leaks.
    ///
    /// # Errors
    ///
    /// What building a sandbox from a snapshot reports ([`Error::Sandbox`]).
    pub async fn fork(&self) -> Result<WasmSandbox, Error> {
        let sandbox = self
            .native
            .clone()
            .source(self.sandbox.post_init_snapshot())
            .fresh_per_call(self.fresh_per_call)
            .build()
            .await?;
        Ok(WasmSandbox::new(
            sandbox,
            self.exports.clone(),
            self.fresh_per_call,
            self.native.clone(),
        ))
    }

    /// Calls the export `name` with typed arguments (a tuple of wire types: `(1i32, 2i32)`,
    /// `("text".to_string(),)`), expecting `R` back; `.await` it, or set a
    /// [`WasmCall::timeout`] first.
    pub fn call<R: WireType>(&self, name: &str, args: impl WireArgs) -> WasmCall<R> {
        self.call_typed(name, args.into_values(), R::TYPE)
    }

    /// Calls the export `name` with dynamically typed arguments and result type.
    pub fn call_value(&self, name: &str, args: Vec<Value>, result: ValueType) -> WasmCall<Value> {
        self.call_typed(name, args, result)
    }

    fn call_typed<R>(&self, name: &str, args: Vec<Value>, result: ValueType) -> WasmCall<R> {
        let target = self
            .exports
            .check(name, &args, result)
            .map(|()| Target::Sandbox {
                call: self.sandbox.call_value(name, args, result),
                restore: (!self.fresh_per_call).then(|| self.sandbox.clone()),
                id: self.sandbox.id(),
            });
        WasmCall::new(name, target)
    }

    /// Runs the WASI command's `_start` once with `run`'s arguments, environment and stdin
    /// (the module must be built with [`WasmSandboxBuilder::wasi`]); `.await` it, or set a
    /// [`WasiCall::timeout`] first. By default the run starts from the post-instantiation
    /// snapshot, so nothing one run leaves behind reaches the next.
    pub fn run(&self, run: WasiRun) -> WasiCall {
        let limits = self.exports.wasi_limits();
        let target = self.exports.wasi_request(run).map(|message| {
            let (name, args, result) = crate::wasi::run_args(message);
            Target::Sandbox {
                call: self.sandbox.call_value(name, args, result),
                restore: (!self.fresh_per_call).then(|| self.sandbox.clone()),
                id: self.sandbox.id(),
            }
        });
        WasiCall::new(target, limits)
    }

    /// The module's exports (functions with their core types, memories, tables, globals).
    pub fn exports(&self) -> &[Extern] {
        self.exports.all()
    }

    /// The module's imports, each linked to a registered host function.
    pub fn imports(&self) -> &[Extern] {
        self.exports.imports()
    }

    /// The sandbox's process-unique id (on its tracing spans).
    pub fn id(&self) -> u64 {
        self.sandbox.id()
    }

    /// A handle that cancels the running call from any thread (see [`Sandbox::interrupt_handle`]).
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.sandbox.interrupt_handle()
    }

    /// Brings the instance back to its state right after instantiation: linear memory, globals
    /// and tables as the start function left them.
    ///
    /// # Cancel safety
    ///
    /// As [`Sandbox::restore`].
    ///
    /// # Errors
    ///
    /// As [`Sandbox::restore`].
    pub async fn restore(&self) -> Result<(), Error> {
        Ok(self.sandbox.restore().await?)
    }

    /// The snapshot taken right after instantiation, which restores return to.
    pub fn post_instantiation_snapshot(&self) -> Snapshot {
        self.sandbox.post_init_snapshot()
    }
}

//! `WasmPool`: sandboxes of one instantiated module; every call gets a fresh instance.

use std::sync::Arc;

use hyperlight_async::{PoolStats, SandboxPool, Value, ValueType, WireArgs, WireType};
use hyperlight_schema::wasm::Extern;

use crate::call::{Target, WasmCall};
use crate::exports::Exports;
use crate::wasi::{WasiCall, WasiRun};

/// A bounded pool of Wasm sandboxes built from one post-instantiation snapshot (made by
/// [`WasmSandboxBuilder::pool`](crate::WasmSandboxBuilder::pool)): every call runs in a fresh
/// instance, whose linear memory, globals and tables are those right after instantiation, for
/// the price of a restore that copies back only the pages the call wrote. It is a
/// [`SandboxPool`] underneath (waiting callers are served FIFO; a sandbox that cannot be
/// restored is replaced). Cheap to clone.
#[derive(Clone, Debug)]
pub struct WasmPool {
    pool: SandboxPool,
    exports: Arc<Exports>,
}

impl WasmPool {
    pub(crate) fn new(pool: SandboxPool, exports: Arc<Exports>) -> Self {
        WasmPool { pool, exports }
    }

    /// Calls the export `name` in a fresh instance with typed arguments, expecting `R` back.
    pub fn call<R: WireType>(&self, name: &str, args: impl WireArgs) -> WasmCall<R> {
        self.call_typed(name, args.into_values(), R::TYPE)
    }

    /// Calls the export `name` in a fresh instance with dynamically typed arguments.
    pub fn call_value(&self, name: &str, args: Vec<Value>, result: ValueType) -> WasmCall<Value> {
        self.call_typed(name, args, result)
    }

    fn call_typed<R>(&self, name: &str, args: Vec<Value>, result: ValueType) -> WasmCall<R> {
        let target = self
            .exports
            .check(name, &args, result)
            .map(|()| Target::Pool(self.pool.call_value(name, args, result)));
        WasmCall::new(name, target)
    }

    /// Runs the WASI command's `_start` once, in a fresh instance, with `run`'s arguments,
    /// environment and stdin (see [`WasmSandbox::run`](crate::WasmSandbox::run)).
    pub fn run(&self, run: WasiRun) -> WasiCall {
        let limits = self.exports.wasi_limits();
        let target = self.exports.wasi_request(run).map(|message| {
            let (name, args, result) = crate::wasi::run_args(message);
            Target::Pool(self.pool.call_value(name, args, result))
        });
        WasiCall::new(target, limits)
    }

    /// The module's exports.
    pub fn exports(&self) -> &[Extern] {
        self.exports.all()
    }

    /// Size, busy and waiting counts now.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }
}

//! `WasmSandboxBuilder`: the module, its imports and limits, then link and instantiate once.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyperlight_async::{
    AsyncHostFunction, GuestBinary, HostFunction, Sandbox, SandboxBuilder, SandboxConfig,
    SandboxPool, Signature,
};
use hyperlight_schema::wasm::{import_function_name, ImportDecl, LinkOutcome, Trap, LINK_FUNCTION};
use hyperlight_schema::wire::{decode_wasm_module, encode_wasm_link};
use tracing::Instrument;

use crate::error::Error;
use crate::exports::Exports;
use crate::limits::WasmLimits;
use crate::pool::WasmPool;
use crate::sandbox::WasmSandbox;
use crate::wasi::WasiConfig;

/// The runner guest's ELF, built from `guest/wasm-runner` by the build script.
fn runner() -> GuestBinary {
    static RUNNER: OnceLock<Arc<[u8]>> = OnceLock::new();
    let bytes =
        RUNNER.get_or_init(|| Arc::from(&include_bytes!(env!("HYPERLIGHT_WASM_RUNNER"))[..]));
    GuestBinary::Bytes(bytes.clone())
}

/// Builds a [`WasmSandbox`] or a [`WasmPool`] from a module's bytes. See
/// [`WasmSandbox::builder`]. Cloneable, to build several alike.
#[derive(Clone)]
pub struct WasmSandboxBuilder {
    module_len: usize,
    /// The runner with the module mapped into it, and the imports as host functions.
    native: SandboxBuilder,
    /// The declared imports by (module, name): a later registration replaces an earlier one.
    imports: BTreeMap<(String, String), ImportDecl>,
    limits: WasmLimits,
    config: Option<SandboxConfig>,
    /// `None`: fresh per call with WASI on, not without.
    fresh_per_call: Option<bool>,
    wasi: Option<WasiConfig>,
}

/// A sandbox whose runner has linked and instantiated the module, with the snapshot taken
/// after that as its restore point.
pub(crate) struct Linked {
    pub(crate) sandbox: Sandbox,
    pub(crate) exports: Arc<Exports>,
    /// Builds more sandboxes like it (set the source to its snapshot).
    pub(crate) native: SandboxBuilder,
}

impl WasmSandboxBuilder {
    pub(crate) fn new(module: Arc<[u8]>) -> Self {
        WasmSandboxBuilder {
            module_len: module.len(),
            native: Sandbox::builder(runner()).module(module),
            imports: BTreeMap::new(),
            limits: WasmLimits::default(),
            config: None,
            fresh_per_call: None,
            wasi: None,
        }
    }

    fn declare(&mut self, module: &str, name: &str, signature: Signature) -> String {
        let decl = ImportDecl {
            module: module.to_string(),
            name: name.to_string(),
            params: signature.params,
            result: signature.ret,
        };
        self.imports
            .insert((module.to_string(), name.to_string()), decl);
        import_function_name(module, name)
    }

    /// Provides the import `module`.`name` with a synchronous host function, e.g.
    /// `|a: i32, b: i32| a + b`. It runs on the sandbox's vCPU thread, under its seccomp filter,
    /// right where the module calls it: it must not block (use
    /// [`WasmSandboxBuilder::import_async`] for anything that waits). Its parameters and result
    /// are wire types (`i32`, `u32`, `i64`, `u64`, `f32`, `f64`, `bool`, `String`, `Vec<u8>`, or
    /// `()` for no result; a `Result<T, String>` fails the call with the message); the module
    /// must declare the import with the core type they lower to (`docs/wasm.md`), or
    /// [`build`](WasmSandboxBuilder::build) fails with [`Error::Link`].
    pub fn import<Args, F: HostFunction<Args>>(mut self, module: &str, name: &str, f: F) -> Self {
        let function = self.declare(module, name, f.signature());
        self.native = self.native.host_fn(&function, f);
        self
    }

    /// Provides the import `module`.`name` with an async host function, e.g.
    /// `|key: String| async move { db.get(&key).await }`. The module's call waits (its vCPU
    /// parked in a VM exit) while the future runs in the task that awaits the export call; a
    /// timeout or cancellation of that call drops the future. Types as for
    /// [`WasmSandboxBuilder::import`].
    pub fn import_async<Args, F: AsyncHostFunction<Args>>(
        mut self,
        module: &str,
        name: &str,
        f: F,
    ) -> Self {
        let function = self.declare(module, name, f.signature());
        self.native = self.native.host_fn_async(&function, f);
        self
    }

    /// Sets the instance's limits (linear memory, fuel, recursion, value stack).
    pub fn limits(mut self, limits: WasmLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the sandbox's configuration (heap, buffers, `max_module_size`, seccomp, ...). By
    /// default a Wasm sandbox gets [`SandboxConfig::default`] with a heap large enough for
    /// [`WasmLimits::max_memory`] and the engine; a configuration given here must have such a
    /// heap too, or [`build`](WasmSandboxBuilder::build) fails with [`Error::InvalidLimit`].
    pub fn config(mut self, config: SandboxConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Default timeout of every call (none by default); [`WasmCall::timeout`] overrides it per
    /// call. It also bounds the link call made by [`build`](WasmSandboxBuilder::build).
    ///
    /// [`WasmCall::timeout`]: crate::WasmCall::timeout
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.native = self.native.default_timeout(timeout);
        self
    }

    /// Makes every call of the [`WasmSandbox`] start from the post-instantiation snapshot (a
    /// [`WasmPool`] always does). Off by default, on by default with [`wasi`](Self::wasi).
    pub fn fresh_per_call(mut self, fresh: bool) -> Self {
        self.fresh_per_call = Some(fresh);
        self
    }

    /// Turns WASI preview 1 on: the runner serves the module's `wasi_snapshot_preview1` imports
    /// (arguments, environment, stdin, stdout and stderr captured, `proc_exit`; clocks,
    /// randomness and sleeps answered by the host; no file system, no sockets: every other
    /// function answers its errno), and [`WasmSandbox::run`] and [`WasmPool::run`] run a
    /// command's `_start`. Every run (and export call) of a [`WasmSandbox`] then starts from the
    /// post-instantiation snapshot unless [`fresh_per_call`](Self::fresh_per_call)`(false)`
    /// says otherwise. The table of every function is in `docs/wasm.md`.
    pub fn wasi(mut self, config: WasiConfig) -> Self {
        self.wasi = Some(config);
        self
    }

    /// Builds the sandbox: boots the runner with the module mapped read-only into it, which
    /// validates, compiles, links and instantiates the module (running its start function and a
    /// WASI reactor's `_initialize`), and takes the snapshot every restore returns to.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the sandbox being built; nothing leaks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidModule`], [`Error::Link`] (every missing or mistyped import),
    /// [`Error::InitTrapped`], [`Error::InvalidLimit`], or [`Error::Sandbox`] (e.g. a module
    /// larger than [`SandboxConfig::max_module_size`], a heap too small to compile it, a
    /// timeout).
    pub async fn build(self) -> Result<WasmSandbox, Error> {
        let fresh = self.fresh_per_call.unwrap_or(self.wasi.is_some());
        let Linked {
            sandbox,
            exports,
            native,
        } = self.link().await?;
        let sandbox = if fresh {
            // The link call ran in a sandbox that keeps its state; one from the snapshot
            // restores after every call.
            let snapshot = sandbox.post_init_snapshot();
            drop(sandbox);
            native
                .clone()
                .source(snapshot)
                .fresh_per_call(true)
                .build()
                .await?
        } else {
            sandbox
        };
        Ok(WasmSandbox::new(sandbox, exports, fresh, native))
    }

    /// Builds a pool of `size` sandboxes (at least one): the module is linked and instantiated
    /// once, and every sandbox of the pool starts from the snapshot taken after that, and returns
    /// to it after every call.
    ///
    /// # Cancel safety
    ///
    /// As [`SandboxPool::new`].
    ///
    /// # Errors
    ///
    /// As [`WasmSandboxBuilder::build`].
    pub async fn pool(self, size: usize) -> Result<WasmPool, Error> {
        let Linked {
            sandbox,
            exports,
            native,
        } = self.link().await?;
        let snapshot = sandbox.post_init_snapshot();
        drop(sandbox);
        let pool = SandboxPool::new(native.source(snapshot), size).await?;
        Ok(WasmPool::new(pool, exports))
    }

    /// Boots the runner, links and instantiates the module, and rebases the sandbox on the
    /// result.
    pub(crate) async fn link(self) -> Result<Linked, Error> {
        let span = tracing::info_span!("wasm.build", module_bytes = self.module_len);
        async move {
            let config = match (&self.config, &self.wasi) {
                (Some(config), _) => config.clone(),
                (None, Some(wasi)) => wasi
                    .limits
                    .enlarge(self.limits.default_config(self.module_len)),
                (None, None) => self.limits.default_config(self.module_len),
            };
            self.limits.validate(&config, self.module_len)?;
            let mut native = self.native.config(config.clone()).fresh_per_call(false);
            if let Some(wasi) = &self.wasi {
                wasi.limits.validate(&config)?;
                native = crate::wasi::host_functions(native);
            }
            let sandbox = native.clone().build().await?;
            let link = self
                .limits
                .link(self.imports.into_values().collect(), self.wasi.is_some());
            let answer: Vec<u8> = sandbox
                .call(LINK_FUNCTION, (encode_wasm_link(&link),))
                .await?;
            let info = decode_wasm_module(&answer).map_err(Error::Protocol)?;
            match info.outcome {
                LinkOutcome::Linked => {}
                LinkOutcome::Invalid => {
                    return Err(Error::InvalidModule {
                        message: info.message,
                    })
                }
                LinkOutcome::Unlinkable => {
                    return Err(Error::Link {
                        problems: info.problems,
                    })
                }
                LinkOutcome::InitTrapped => {
                    let (trap, detail) = Trap::from_message(&info.message)
                        .map(|(trap, detail)| (trap, detail.to_string()))
                        .unwrap_or((Trap::Other, info.message.clone()));
                    return Err(Error::InitTrapped { trap, detail });
                }
            }
            sandbox.rebase().await?;
            Ok(Linked {
                sandbox,
                exports: Arc::new(Exports::new(info.exports, info.imports, self.wasi)),
                native,
            })
        }
        .instrument(span)
        .await
    }
}

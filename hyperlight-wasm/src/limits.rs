//! The limits of a WebAssembly instance, enforced by the runner inside the sandbox.

use hyperlight_async::SandboxConfig;
use hyperlight_schema::wasm::{ImportDecl, Link};

use crate::error::Error;

/// Limits of the instance in a Wasm sandbox, beside the sandbox's own (its timeout, its memory).
///
/// ```
/// use hyperlight_wasm::WasmLimits;
///
/// let limits = WasmLimits { fuel: Some(1_000_000), ..WasmLimits::default() };
/// assert_eq!(limits.max_memory, 16 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasmLimits {
    /// The most bytes each linear memory may have: a `memory.grow` past it traps with
    /// [`Trap::MemoryLimit`](crate::Trap::MemoryLimit), as does a module whose initial memory is
    /// larger. Default 16 MiB; at most [`WasmLimits::MAX_MEMORY`].
    pub max_memory: u64,
    /// Fuel of each call (and of instantiation): a deterministic budget of Wasm instructions
    /// (wasmi's costs), beside the timeout. `None` (the default): not metered, which is faster.
    /// Running out traps with [`Trap::OutOfFuel`](crate::Trap::OutOfFuel).
    pub fuel: Option<u64>,
    /// The most nested Wasm calls. Default 1,000 (wasmi's default).
    pub max_recursion_depth: u32,
    /// The most values on the engine's value stack (8 bytes each). Default 262,144 (2 MiB).
    pub max_stack_height: u32,
}

impl Default for WasmLimits {
    fn default() -> Self {
        WasmLimits {
            max_memory: 16 << 20,
            fuel: None,
            max_recursion_depth: 1_000,
            max_stack_height: 1 << 18,
        }
    }
}

impl WasmLimits {
    /// Upper limit of [`WasmLimits::max_memory`]: 4 GiB, all a 32-bit memory can address.
    pub const MAX_MEMORY: u64 = 4 << 30;

    /// Guest heap the runner needs besides the linear memory: the engine, the compiled module
    /// (a few times the module's size) and the value stack. The fixed part was 16 MiB; every
    /// test module, the WASI program and the benchmarks' modules also run with 2 MiB, and a
    /// smaller heap makes each restore cheaper (its write-log scan costs ~0.8 µs per MiB of
    /// sandbox memory, touched or not: `docs/performance.md`).
    pub(crate) fn engine_overhead(&self, module_len: usize) -> u64 {
        4 * (1 << 20) + 4 * module_len as u64 + 8 * u64::from(self.max_stack_height)
    }

    /// The sandbox configuration a Wasm sandbox gets unless the builder is given one: the
    /// defaults, with a heap for the linear memory and the engine, and room for a module of
    /// `module_len` bytes.
    pub(crate) fn default_config(&self, module_len: usize) -> SandboxConfig {
        let defaults = SandboxConfig::default();
        SandboxConfig {
            heap_size: (self.max_memory + self.engine_overhead(module_len))
                .min(SandboxConfig::MAX_HEAP),
            ..defaults
        }
    }

    /// Checks the limits against each other and against the sandbox's heap.
    pub(crate) fn validate(&self, config: &SandboxConfig, module_len: usize) -> Result<(), Error> {
        if self.max_memory > Self::MAX_MEMORY {
            return Err(Error::InvalidLimit {
                field: "max_memory",
                reason: format!(
                    "{} bytes is more than {}",
                    self.max_memory,
                    Self::MAX_MEMORY
                ),
            });
        }
        if self.max_recursion_depth == 0 || self.max_stack_height == 0 {
            return Err(Error::InvalidLimit {
                field: "max_recursion_depth / max_stack_height",
                reason: "must be at least 1".into(),
            });
        }
        if self.fuel == Some(0) {
            return Err(Error::InvalidLimit {
                field: "fuel",
                reason: "Some(0) would trap at once; use None for no metering".into(),
            });
        }
        let needed = self.max_memory + self.engine_overhead(module_len);
        if config.heap_size < needed {
            return Err(Error::InvalidLimit {
                field: "max_memory",
                reason: format!(
                    "the sandbox heap ({} bytes) is smaller than the linear memory limit plus \
                     the engine's needs ({needed} bytes): raise `heap_size` or lower `max_memory`",
                    config.heap_size
                ),
            });
        }
        Ok(())
    }

    /// The link request with these limits.
    pub(crate) fn link(&self, imports: Vec<ImportDecl>, wasi: bool) -> Link {
        Link {
            imports,
            max_memory: self.max_memory,
            fuel: self.fuel,
            max_recursion_depth: self.max_recursion_depth,
            max_stack_height: self.max_stack_height,
            wasi,
        }
    }
}

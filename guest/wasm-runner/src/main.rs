//! `wasm-runner`: the guest that runs a WebAssembly module in a hyperlight sandbox, for the host
//! crate `hyperlight-wasm`.
//!
//! The module is the sandbox's module region ([`hyperlight_guest::module`]): untrusted bytes,
//! validated, compiled and instantiated here, on wasmi. At init the runner registers one guest
//! function, [`LINK_FUNCTION`]: the host calls it once with the host functions it offers and the
//! instance's limits (a `Link`), and gets back what the module imports and exports and how linking
//! went (a `ModuleInfo`). On success every exported function is a guest function of the same name.
//!
//! The convention (`docs/wasm.md`, `hyperlight_schema::wasm`) is the Component Model's canonical
//! ABI for the wire types: scalars as themselves (`u32`/`bool` as `i32`, `u64` as `i64`); a
//! `String` or `Bytes` argument as `(ptr, len)` in the exported memory `memory`, allocated with
//! the export `cabi_realloc`; a `String` or `Bytes` result through a return area `(ptr, len)`: an
//! export returns its address, an import takes it as a trailing parameter. The import
//! `module`.`name` is served by the host function `import_function_name(module, name)`.
//!
//! Errors: a trap is a `WasmTrap` error whose message starts with the trap's name
//! (`hyperlight_schema::wasm::Trap`); a module that breaks the convention (a pointer out of
//! bounds, a string that is not UTF-8) gets a `WasmAbi` error; a failed host function's error is
//! returned as is. No module can make the runner panic.
//!
//! With WASI on (`Link::wasi`), the runner serves the module's `wasi_snapshot_preview1` imports
//! itself (`wasi`) and registers the run function `WASI_RUN_FUNCTION`, which runs a command's
//! `_start` once with the arguments, environment and stdin of the request.
//!
//! Files: `link` (the link call, imports), `call` (export calls), `memory` (a linear memory
//! that grows in place), `abi` (lifting and lowering,
//! engine-independent), `engine` (the engine interface), `wasmi_engine` (wasmi), `trap`, `wasi`
//! (WASI preview 1: `wasi/functions.rs` the functions, `wasi/run.rs` the run).
#![no_std]
#![no_main]

extern crate alloc;

mod abi;
mod call;
mod engine;
mod link;
mod memory;
mod trap;
mod wasi;
mod wasmi_engine;

use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::LINK_FUNCTION;
use hyperlight_guest::{register_fn, GuestError};

/// Registers the link function (called once by hyperlight-guest at init).
#[no_mangle]
pub fn hyperlight_main() {
    register_fn(
        LINK_FUNCTION,
        |link: Vec<u8>| -> Result<Vec<u8>, GuestError> { link::link(link) },
    );
}

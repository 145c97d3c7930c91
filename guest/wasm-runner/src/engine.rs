//! The interface between the runner and a WebAssembly engine: compile and describe a module,
//! instantiate it with the host's imports, call exports with core values, reach linear memory.
//!
//! wasmi (`wasmi_engine`) implements it today; an engine running code compiled on the host
//! (Wasmtime) can implement it later without changing the protocol or the canonical-ABI code in
//! `abi`, which sees an instance only through [`Context`].

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::{Extern, FuncType, ImportDecl, Link, Trap};
use hyperlight_guest::{ErrorCode, GuestError};

/// A core WebAssembly value, as the canonical ABI moves it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CoreValue {
    /// `i32`
    I32(i32),
    /// `i64`
    I64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
}

/// Why a call into an instance failed.
#[derive(Debug)]
pub enum CallError {
    /// The instance trapped (or hit a limit of the runner); the detail is the engine's text.
    Trap(Trap, String),
    /// A host function failed, or the module broke the ABI: reported as is.
    Failed(GuestError),
}

impl From<GuestError> for CallError {
    fn from(error: GuestError) -> Self {
        CallError::Failed(error)
    }
}

impl From<CallError> for GuestError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Trap(trap, detail) => GuestError {
                code: ErrorCode::WasmTrap,
                message: trap.message(&detail),
            },
            CallError::Failed(error) => error,
        }
    }
}

/// A running instance, or a host function's view of the instance that called it: what the
/// canonical-ABI code needs.
pub trait Context {
    /// The type of the exported function `name`; `None` if there is no such function export.
    fn export_type(&mut self, name: &str) -> Option<FuncType>;
    /// Calls the exported function `name` (whose type the caller checked) with `args`.
    fn call(&mut self, name: &str, args: &[CoreValue]) -> Result<Vec<CoreValue>, CallError>;
    /// The bytes of the exported memory `memory`; `None` if the module exports none.
    fn memory(&mut self) -> Option<&mut [u8]>;
}

/// An instantiated module.
pub trait Instance: Context {
    /// Prepares a call from the host: refuels the instance (if metered) and forgets any error a
    /// host function left from an earlier call.
    fn begin_call(&mut self) -> Result<(), CallError>;
}

/// What a compiled module declares.
pub struct Described {
    /// Its imports, in order.
    pub imports: Vec<Extern>,
    /// Its exports, in order.
    pub exports: Vec<Extern>,
}

/// A compiled module, ready to instantiate.
pub trait Compiled {
    /// The module's imports and exports.
    fn describe(&self) -> Described;
    /// Instantiates the module, serving each import (in [`Described::imports`] order, every one a
    /// function the caller checked) with the host function `imports[i]` declares, through
    /// `crate::link::call_import`; runs the start function, then `_initialize` if the module
    /// exports it with type `() -> ()`. `Err`: instantiation failed or trapped.
    fn instantiate(
        self: Box<Self>,
        imports: Vec<ImportDecl>,
    ) -> Result<Box<dyn Instance>, CallError>;
}

/// A WebAssembly engine.
pub trait Engine {
    /// Validates and compiles `bytes` under the limits of `link`; `Err` says why the module is
    /// invalid.
    fn compile(&self, link: &Link, bytes: &[u8]) -> Result<Box<dyn Compiled>, String>;
}

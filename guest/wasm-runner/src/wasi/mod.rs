//! WASI preview 1 (`wasi_snapshot_preview1`) for command modules: the runner serves every
//! function a module imports from it when the host turns WASI on. Arguments, environment, stdin
//! and the captured stdout and stderr live here for the length of one run (`run`); clocks,
//! randomness and sleeps are answered by the host through its `wasi:` host functions
//! (`hyperlight_schema::wasm::wasi_host`), or by the runner itself in deterministic runs; there
//! is no file system and no socket: every other function answers its errno (`functions`).

mod functions;
mod run;

use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::{CoreType, FuncType};

use crate::engine::{CallError, Context, CoreValue};

pub use run::run;

/// A WASI errno.
type Errno = u16;

/// Why a WASI function did not succeed: an errno for the module, or the end of the call.
enum Fail {
    /// Returned to the module.
    Errno(Errno),
    /// Ends the call (a failed host function, `proc_exit`, an output limit).
    Stop(CallError),
}

impl From<hyperlight_guest::GuestError> for Fail {
    fn from(error: hyperlight_guest::GuestError) -> Self {
        Fail::Stop(CallError::Failed(error))
    }
}

/// The body of a WASI function: its core arguments in, success (errno 0) or why not out.
type Body = fn(&mut dyn Context, &[CoreValue]) -> Result<(), Fail>;

/// One function of `wasi_snapshot_preview1`: its name, its core type (every one returns an `i32`
/// errno, except `proc_exit`, which returns nothing), and its body.
pub struct Function {
    /// The import's name.
    pub name: &'static str,
    params: &'static [CoreType],
    returns_errno: bool,
    body: Body,
}

impl Function {
    /// The core type a module must import it with.
    pub fn func_type(&self) -> FuncType {
        FuncType {
            params: self.params.to_vec(),
            results: if self.returns_errno {
                alloc::vec![CoreType::I32]
            } else {
                Vec::new()
            },
        }
    }

    /// Runs the function on the core arguments (whose types the engine checked against
    /// [`Function::func_type`]): the errno as its result, or the error that ends the call.
    pub fn call(
        &self,
        ctx: &mut dyn Context,
        args: &[CoreValue],
    ) -> Result<Vec<CoreValue>, CallError> {
        let errno = match (self.body)(ctx, args) {
            Ok(()) => 0,
            Err(Fail::Errno(errno)) => errno,
            Err(Fail::Stop(error)) => return Err(error),
        };
        Ok(if self.returns_errno {
            alloc::vec![CoreValue::I32(i32::from(errno))]
        } else {
            Vec::new()
        })
    }
}

/// The preview 1 function `name`; `None` if preview 1 has no function of that name.
pub fn function(name: &str) -> Option<&'static Function> {
    functions::FUNCTIONS.iter().find(|f| f.name == name)
}

//! The guest side of hyperlight-async: everything a `no_std` guest binary needs to run in a
//! hyperlight sandbox (see `docs/abi.md` for the host/guest contract).
//!
//! The library provides the ELF entry point `_start`, the `#[global_allocator]` (over the heap
//! region the host describes in `BootInfo`) and the `#[panic_handler]`. A guest binary is
//! `#![no_std]` + `#![no_main]`, links this crate, and defines **`#[no_mangle] pub fn
//! hyperlight_main()`**, which registers its functions; the library calls it once at init:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! extern crate alloc;
//! use alloc::string::String;
//! use hyperlight_guest::{call_host, info, register_fn, GuestError};
//!
//! #[no_mangle]
//! pub fn hyperlight_main() {
//!     register_fn("add", |a: i32, b: i32| a.wrapping_add(b));
//!     register_fn("greet", |name: String| {
//!         info!("greeting {name}");
//!         alloc::format!("hello {name}")
//!     });
//!     register_fn("ask_host", |x: i32| -> Result<i32, GuestError> {
//!         call_host::<i32>("host_add", (x, 1))
//!     });
//! }
//! ```
//!
//! The binary must use something of this crate (or say `extern crate hyperlight_guest;`):
//! otherwise Rust does not link it, and the build fails for want of a global allocator and a panic
//! handler. For the same reason, guest logic is unit-tested on the host in code that does not link
//! this crate (a `no_std` library the binary registers); `docs/guest-guide.md` and its template
//! (`docs/guest-template/`) show the layout.
//!
//! At run time: init (`hyperlight_main`) ends with a void result on `PORT_DONE`; then each call
//! from the host is decoded, checked against the function's registered signature, run, and its
//! result sent on `PORT_DONE` (one VM exit per call). A host call ([`call_host`]) and a log record
//! ([`info!`] & co.) cost one exit each. A panic (or a failed allocation, reported as
//! `OutOfMemory`) aborts the guest on `PORT_ABORT`.
//!
//! The guest is single-threaded and has no interrupts; the library's global state relies on that.
#![no_std]
#![deny(missing_docs)]
// The unit tests run on the host (`cargo test --target x86_64-unknown-linux-gnu`), with std and
// without the entry point, allocator and panic handler, which only make sense in a VM.
#![cfg_attr(test, allow(dead_code, unused_imports))]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod function;
mod global;
mod heap;
mod host;
mod io;
pub mod log;
mod panic;
mod runtime;

pub use function::{is_registered, register_dynamic, register_fn, GuestFn, GuestReturn};
pub use global::Global;
pub use heap::{heap_stats, HeapStats};
pub use host::{call_host, call_host_values};
pub use hyperlight_schema::abi::BootInfo;
pub use hyperlight_schema::{
    ErrorCode, FunctionCallResult, GuestError, LogLevel, Value, ValueType, WireArgs, WireType,
};
pub use io::send_raw;
pub use runtime::{boot_info, module};

/// The shared schema crate (messages, wire encoding, ABI constants).
pub use hyperlight_schema as schema;

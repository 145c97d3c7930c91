//! The guest binary: registers the functions of `src/lib.rs` (and one that calls the host).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use hyperlight_guest::{GuestError, call_host, info, register_fn};

/// Called once, at init, by the library: register the functions the host may call.
// SAFETY: `hyperlight_main` is the one symbol of that name in the guest: the library's entry point
// calls it, with this signature, once.
#[unsafe(no_mangle)]
pub fn hyperlight_main() {
    register_fn("greet", |name: String| {
        info!("greeting {name}"); // a `tracing` event on the host, in the call's span
        my_guest::greet(&name)
    });
    register_fn("checked_div", my_guest::checked_div);
    // Works only if the host registered host_add(i32, i32) -> i32.
    register_fn(
        "add_via_host",
        |a: i32, b: i32| -> Result<i32, GuestError> { call_host("host_add", (a, b)) },
    );
}

//! The guest of `docs/guest-guide.md`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use hyperlight_guest::{call_host, info, register_fn, GuestError};

/// Called once, at init, by the library: register the functions the host may call.
#[no_mangle]
pub fn hyperlight_main() {
    register_fn("greet", |name: String| {
        info!("greeting {name}"); // a `tracing` event on the host, in the call's span
        format!("hello {name}")
    });
    register_fn(
        "add_via_host",
        |a: i32, b: i32| -> Result<i32, GuestError> {
            call_host::<i32>("host_add", (a, b)) // only works if the host registered host_add(i32, i32) -> i32
        },
    );
    register_fn("checked_div", |a: i64, b: i64| -> Result<i64, String> {
        a.checked_div(b)
            .ok_or_else(|| String::from("division by zero"))
    });
}

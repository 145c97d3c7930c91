//! A guest that calls a host function during its init, before any guest function was called.
//! `init_result() -> String` reports what the host answered: `ok:<value>` or `err:<code>:<message>`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use hyperlight_guest::{call_host, register_fn};

/// Tries the host call, then registers a function that reports its outcome.
#[no_mangle]
pub fn hyperlight_main() {
    let outcome: String = match call_host::<i32>("host_add", (1i32, 2i32)) {
        Ok(value) => format!("ok:{value}"),
        Err(e) => format!("err:{:?}:{}", e.code, e.message),
    };
    register_fn("init_result", move || outcome.clone());
    // After init, host calls are allowed.
    register_fn("call_host_add", |a: i32, b: i32| {
        call_host::<i32>("host_add", (a, b))
    });
}

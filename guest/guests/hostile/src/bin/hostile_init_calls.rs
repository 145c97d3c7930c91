//! A guest that tries every way to reach the host from its init, before any guest function ran:
//! host calls of a registered function, of an unregistered one, with wrong types, and a
//! hand-built `FunctionCall` sent on the host-call port.
//!
//! `init_results() -> String` reports each outcome, `;`-separated, each `ok:<value>` or
//! `err:<code>`. `call_host_count() -> u64` calls host `host_count() -> u64` (allowed after
//! init).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use hyperlight_guest::schema::abi::PORT_HOST_CALL;
use hyperlight_guest::schema::wire;
use hyperlight_guest::schema::FunctionCall;
use hyperlight_guest::{call_host, register_fn, send_raw, ValueType};

fn outcome<T: core::fmt::Debug>(result: Result<T, hyperlight_guest::GuestError>) -> String {
    match result {
        Ok(value) => format!("ok:{value:?}"),
        Err(e) => format!("err:{:?}", e.code),
    }
}

/// Tries the host calls, then registers functions that report and retry them.
#[no_mangle]
pub fn hyperlight_main() {
    let mut results: Vec<String> = vec![
        outcome(call_host::<u64>("host_count", ())),
        outcome(call_host::<u64>("host_count", ())),
        outcome(call_host::<u64>("not_registered", ())),
        outcome(call_host::<u64>("host_count", (1i32,))),
    ];
    // The same request built by hand and sent raw: the answer is in the input buffer.
    let call = wire::encode_function_call(&FunctionCall {
        name: String::from("host_count"),
        args: Vec::new(),
        return_type: ValueType::U64,
    });
    send_raw(PORT_HOST_CALL, &call);
    results.push(String::from("raw-sent"));
    let joined = results.join(";");
    register_fn("init_results", move || joined.clone());
    register_fn("call_host_count", || call_host::<u64>("host_count", ()));
}

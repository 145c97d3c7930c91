//! `wire::decode_function_call` on raw bytes: the `FunctionCall` a guest sends on `PORT_HOST_CALL`. Never panics;
//! what it accepts respects the limits and survives a re-encoding (`hyperlight_fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hyperlight_fuzz::decode::function_call(data));

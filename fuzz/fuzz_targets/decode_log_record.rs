//! `wire::decode_log_record` on raw bytes: the `LogRecord` a guest sends on `PORT_LOG`. Never panics;
//! what it accepts respects the limits and survives a re-encoding (`hyperlight_fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hyperlight_fuzz::decode::log_record(data));

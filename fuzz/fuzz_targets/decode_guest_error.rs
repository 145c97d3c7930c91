//! `wire::decode_guest_error` on raw bytes: the `GuestError` a guest sends on `PORT_ABORT`. Never panics;
//! what it accepts respects the limits and survives a re-encoding (`hyperlight_fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hyperlight_fuzz::decode::guest_error(data));

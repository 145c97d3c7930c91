//! A guest whose init never returns: the host must time it out and kill it.
#![no_std]
#![no_main]

extern crate hyperlight_guest;

/// Spins forever instead of registering functions.
#[no_mangle]
pub fn hyperlight_main() {
    loop {
        core::hint::spin_loop();
    }
}

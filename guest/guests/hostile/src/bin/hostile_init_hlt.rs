//! A guest whose init executes `hlt`, a privileged instruction, before it registers anything.
#![no_std]
#![no_main]

extern crate hyperlight_guest;

/// Halts: ring 3 may not, so this raises #GP and the sandbox is never built.
#[no_mangle]
pub fn hyperlight_main() {
    // SAFETY: `hlt` at CPL3 raises #GP before it has any effect; the host ends the init.
    unsafe { core::arch::asm!("hlt", options(nostack)) }
}

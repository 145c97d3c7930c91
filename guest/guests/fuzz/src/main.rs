//! `fuzz`: the guest the host's end-to-end fuzz targets (`fuzz/fuzz_targets/e2e_*.rs`) run. It
//! does whatever the host asks at the guest-to-host boundary, however malformed.
//!
//! Functions (parameters -> return type):
//!
//! | name | signature | does |
//! |---|---|---|
//! | `raw` | `(u32 port, Bytes bytes) -> ()` | [`send_raw`]: copies `bytes` (truncated to the output buffer) to the output buffer and does `out port, len` (4 bytes wide); returns if the host resumes the guest |
//! | `raw_out` | `(u32 port, u32 width, u32 len, Bytes bytes) -> ()` | copies `bytes` (truncated) to the output buffer, then `out port, len` with a 1-, 2- or 4-byte `out` (`width` 1, 2, anything else 4) and any `len`, which need not be the length of `bytes` |
//! | `call_host_dyn` | `(Bytes call) -> Bytes` | decodes `call` as a `FunctionCall` (any name, arguments and return type), calls that host function with [`call_host_values`], returns the encoded `FunctionCallResult` the host answered; fails with `GuestFunctionFailed` if `call` does not decode |
//! | `echo` | `(Bytes) -> Bytes` | returns its argument: a well-formed call, to check that the sandbox still works |
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hyperlight_guest::schema::wire;
use hyperlight_guest::{boot_info, call_host_values, register_fn, send_raw};

/// Registers the guest functions (called once by hyperlight-guest at init).
#[no_mangle]
pub fn hyperlight_main() {
    register_fn("raw", |port: u32, bytes: Vec<u8>| {
        send_raw(port as u16, &bytes);
    });
    register_fn("raw_out", raw_out);
    register_fn("call_host_dyn", call_host_dyn);
    register_fn("echo", |bytes: Vec<u8>| bytes);
}

fn raw_out(port: u32, width: u32, len: u32, bytes: Vec<u8>) {
    let info = boot_info();
    let n = bytes
        .len()
        .min(usize::try_from(info.output_size).unwrap_or(usize::MAX));
    // SAFETY: `n` is at most the size of the output buffer, which the host maps read-write for the
    // guest and which holds no Rust object; `bytes` is on the heap, disjoint from it.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), info.output_base as *mut u8, n) };
    let port = port as u16;
    // SAFETY: `out` touches no guest memory and uses no stack; the host decides what it means (a
    // message of `len` bytes in the output buffer, or a protocol violation). The asm is not
    // `nomem`: the host may write guest memory (a host-call reply) before it resumes the guest.
    unsafe {
        match width {
            1 => {
                core::arch::asm!("out dx, al", in("dx") port, in("al") len as u8, options(nostack, preserves_flags))
            }
            2 => {
                core::arch::asm!("out dx, ax", in("dx") port, in("ax") len as u16, options(nostack, preserves_flags))
            }
            _ => {
                core::arch::asm!("out dx, eax", in("dx") port, in("eax") len, options(nostack, preserves_flags))
            }
        }
    }
}

fn call_host_dyn(call: Vec<u8>) -> Result<Vec<u8>, String> {
    let call = wire::decode_function_call(&call).map_err(|e| format!("bad call: {e}"))?;
    let result = call_host_values(&call.name, call.args, call.return_type);
    Ok(wire::encode_function_call_result(&result))
}

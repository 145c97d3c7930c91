//! A test module exercising every kind of value and import a Wasm runner passes, with the core
//! signatures of the canonical ABI for core modules (the `cabi` crate documents the convention).
//!
//! Exports (Rust signature, then core signature):
//!
//! - `add(i32, i32) -> i32`; `add64(i64, i64) -> i64`; `mul_f32(f32, f32) -> f32`;
//!   `mul_f64(f64, f64) -> f64`: arithmetic, wrapping.
//! - `negate(bool) -> bool`: `(i32) -> i32`. `wrapping_u64(u64) -> u64`: `(i64) -> i64`, `x + 1`.
//! - `upper(String) -> String` (ASCII uppercase), `reverse(Vec<u8>) -> Vec<u8>`:
//!   `(i32, i32) -> i32`; `concat(String, String) -> String`: `(i32, i32, i32, i32) -> i32`;
//!   `len_of(Vec<u8>) -> i32`: `(i32, i32) -> i32`.
//! - `echo_host(String) -> String`, `lookup(String) -> String`, `bytes_host(Vec<u8>) -> Vec<u8>`:
//!   `(i32, i32) -> i32`, each passing its argument to an import and returning the import's result.
//! - `sum_host(n: i32) -> i64`: the sum of `host_add(i, 1)` for `i` in `0..n`: `n` import calls
//!   in one export call.
//! - `scalars_host() -> f64`: `host_f32(1.5) + host_f64(2.25) + host_i64(1 << 40)`.
//! - `counter() -> i32`: increments a static and returns it (1 on the first call of an instance).
//! - `fail(code: i32)`: traps with `unreachable`, whatever the code.
//! - `cabi_realloc(i32, i32, i32, i32) -> i32`, and `cabi_post_upper`, `cabi_post_reverse`,
//!   `cabi_post_concat`, `cabi_post_echo_host`: `(i32)`. `lookup` and `bytes_host` have no post
//!   function, for the runner's path without one (their results stay allocated).
//!
//! Imports, all from module `env`: `host_echo(String) -> String` and `lookup(String) -> String`:
//! `(i32, i32, i32)`; `host_bytes(Vec<u8>) -> Vec<u8>`: `(i32, i32, i32)`;
//! `host_add(i32, i32) -> i32`; `host_f32(f32) -> f32`; `host_f64(f64) -> f64`;
//! `host_i64(i64) -> i64`.

use std::sync::atomic::{AtomicI32, Ordering};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn host_echo(ptr: i32, len: i32, retptr: i32);
    #[link_name = "lookup"]
    fn host_lookup(ptr: i32, len: i32, retptr: i32);
    fn host_bytes(ptr: i32, len: i32, retptr: i32);
    fn host_add(a: i32, b: i32) -> i32;
    fn host_f32(x: f32) -> f32;
    fn host_f64(x: f64) -> f64;
    fn host_i64(x: i64) -> i64;
}

/// The number of [`counter`] calls this instance has had.
static COUNTER: AtomicI32 = AtomicI32::new(0);

/// The allocator export of the convention.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_realloc(old_ptr: i32, old_size: i32, align: i32, new_size: i32) -> i32 {
    // SAFETY: by the convention, the runner passes back only blocks this export returned, with
    // their size and alignment.
    unsafe { cabi::realloc(old_ptr, old_size, align, new_size) }
}

/// `a + b`, wrapping.
#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}

/// `a + b`, wrapping.
#[unsafe(no_mangle)]
pub extern "C" fn add64(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// `a * b`.
#[unsafe(no_mangle)]
pub extern "C" fn mul_f32(a: f32, b: f32) -> f32 {
    a * b
}

/// `a * b`.
#[unsafe(no_mangle)]
pub extern "C" fn mul_f64(a: f64, b: f64) -> f64 {
    a * b
}

/// `!b` for a `bool` lowered to `i32`: 1 for 0, 0 for anything else.
#[unsafe(no_mangle)]
pub extern "C" fn negate(b: i32) -> i32 {
    i32::from(b == 0)
}

/// `x + 1` for a `u64` lowered to `i64`, wrapping (`u64::MAX` gives 0).
#[unsafe(no_mangle)]
pub extern "C" fn wrapping_u64(x: i64) -> i64 {
    (x as u64).wrapping_add(1) as i64
}

/// The string, ASCII letters uppercased.
#[unsafe(no_mangle)]
pub extern "C" fn upper(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter.
    let s = unsafe { cabi::lift_string(ptr, len) };
    cabi::lower(s.to_ascii_uppercase())
}

/// The bytes in reverse order.
#[unsafe(no_mangle)]
pub extern "C" fn reverse(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter.
    let mut bytes = unsafe { cabi::lift_bytes(ptr, len) };
    bytes.reverse();
    cabi::lower(bytes)
}

/// `a` followed by `b`.
#[unsafe(no_mangle)]
pub extern "C" fn concat(a_ptr: i32, a_len: i32, b_ptr: i32, b_len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for each parameter.
    let (mut a, b) = unsafe {
        (
            cabi::lift_string(a_ptr, a_len),
            cabi::lift_string(b_ptr, b_len),
        )
    };
    a.push_str(&b);
    cabi::lower(a)
}

/// The number of bytes.
#[unsafe(no_mangle)]
pub extern "C" fn len_of(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter.
    let bytes = unsafe { cabi::lift_bytes(ptr, len) };
    bytes.len() as i32
}

/// What the import `env.host_echo` returns for the string.
#[unsafe(no_mangle)]
pub extern "C" fn echo_host(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter, and
    // the import stores its result at `retptr`.
    let echoed = unsafe {
        let s = cabi::lift_string(ptr, len);
        cabi::call_returning_string(|retptr| host_echo(s.as_ptr() as i32, s.len() as i32, retptr))
    };
    cabi::lower(echoed)
}

/// What the import `env.lookup` returns for the key.
#[unsafe(no_mangle)]
pub extern "C" fn lookup(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter, and
    // the import stores its result at `retptr`.
    let value = unsafe {
        let key = cabi::lift_string(ptr, len);
        cabi::call_returning_string(|retptr| {
            host_lookup(key.as_ptr() as i32, key.len() as i32, retptr)
        })
    };
    cabi::lower(value)
}

/// What the import `env.host_bytes` returns for the bytes.
#[unsafe(no_mangle)]
pub extern "C" fn bytes_host(ptr: i32, len: i32) -> i32 {
    // SAFETY: by the convention, the runner passes a block it allocated for this parameter, and
    // the import stores its result at `retptr`.
    let result = unsafe {
        let bytes = cabi::lift_bytes(ptr, len);
        cabi::call_returning_bytes(|retptr| {
            host_bytes(bytes.as_ptr() as i32, bytes.len() as i32, retptr)
        })
    };
    cabi::lower(result)
}

/// The sum of `env.host_add(i, 1)` for `i` in `0..n`: `n` import calls.
#[unsafe(no_mangle)]
pub extern "C" fn sum_host(n: i32) -> i64 {
    // SAFETY: the import takes and returns scalars only.
    (0..n).map(|i| i64::from(unsafe { host_add(i, 1) })).sum()
}

/// `env.host_f32(1.5) + env.host_f64(2.25) + env.host_i64(1 << 40)`, in `f64`.
#[unsafe(no_mangle)]
pub extern "C" fn scalars_host() -> f64 {
    // SAFETY: the imports take and return scalars only.
    unsafe { f64::from(host_f32(1.5)) + host_f64(2.25) + host_i64(1 << 40) as f64 }
}

/// Increments the instance's counter and returns it: 1 on an instance's first call.
#[unsafe(no_mangle)]
pub extern "C" fn counter() -> i32 {
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

/// Traps with `unreachable`; the code is only an argument to pass to a trapping export.
#[unsafe(no_mangle)]
pub extern "C" fn fail(_code: i32) {
    core::arch::wasm32::unreachable()
}

/// Frees the result of `upper`.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_post_upper(retptr: i32) {
    // SAFETY: by the convention, the runner calls this once per result of `upper`.
    unsafe { cabi::post_return(retptr) }
}

/// Frees the result of `reverse`.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_post_reverse(retptr: i32) {
    // SAFETY: by the convention, the runner calls this once per result of `reverse`.
    unsafe { cabi::post_return(retptr) }
}

/// Frees the result of `concat`.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_post_concat(retptr: i32) {
    // SAFETY: by the convention, the runner calls this once per result of `concat`.
    unsafe { cabi::post_return(retptr) }
}

/// Frees the result of `echo_host`.
#[unsafe(no_mangle)]
pub extern "C" fn cabi_post_echo_host(retptr: i32) {
    // SAFETY: by the convention, the runner calls this once per result of `echo_host`.
    unsafe { cabi::post_return(retptr) }
}

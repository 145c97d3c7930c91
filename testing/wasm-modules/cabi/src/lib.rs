//! The glue between the test modules' Rust functions and their core-Wasm signatures: the
//! canonical ABI of the Component Model, for core modules, written by hand.
//!
//! # The convention
//!
//! - `i32`, `i64`, `f32` and `f64` are themselves; `u32` and `bool` lower to `i32` (a `bool` is
//!   true when non-zero), `u64` to `i64`.
//! - A `String` (UTF-8) or `Vec<u8>` **parameter of an export** is two `i32`s, `(ptr, len)`, in the
//!   module's linear memory. The caller (the runner) allocates them through the module's export
//!   `cabi_realloc(old_ptr, old_size, align, new_size) -> i32` called as
//!   `cabi_realloc(0, 0, 1, len)`, and writes the bytes; the callee owns that memory afterwards
//!   and frees it. A string that is not UTF-8 traps.
//! - A `String` or `Vec<u8>` **result of an export** is one `i32`: a pointer to an 8-byte,
//!   4-aligned return area holding `ptr: u32, len: u32`, little endian. A module may export
//!   `cabi_post_<export>(retptr)`, which frees the bytes; the runner calls it once it has copied
//!   them out, and before it calls the module again (the return area is one static).
//! - An **import** taking a `String` or `Vec<u8>` takes `(ptr, len)`; the bytes stay the
//!   module's. An import whose result is a `String` or `Vec<u8>` takes one extra trailing `i32`,
//!   `retptr`, and returns nothing: the host allocates the bytes with the module's
//!   `cabi_realloc(0, 0, 1, len)`, writes them, and stores `ptr, len` at `retptr`; the module
//!   owns them afterwards. Imports with scalar results return the scalar.
//!
//! Every module exports `cabi_realloc` with [`realloc`] as its body (a cdylib exports only its
//! own `#[no_mangle]` functions, so each module defines the export itself).

use std::alloc::{self, Layout};
use std::sync::atomic::{AtomicU32, Ordering};

/// The return area of string and byte results: `ptr, len`. Atomics so that a static needs no
/// `unsafe`; on wasm32 without the `atomics` feature they are plain loads and stores.
static RET_AREA: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

/// Traps: how the glue fails on input the convention rules out.
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

/// The layout of `size` bytes aligned to `align`, trapping if `align` is not a power of two.
fn layout(size: i32, align: i32) -> Layout {
    Layout::from_size_align(size as u32 as usize, align as u32 as usize).unwrap_or_else(|_| trap())
}

/// The body of the `cabi_realloc` export: allocates `new_size` bytes aligned to `align` when
/// `old_ptr` and `old_size` are 0, otherwise resizes (or, for a `new_size` of 0, frees) the block
/// at `old_ptr`. A size of 0 allocates nothing and returns `align`, a dangling non-null address.
/// Traps when memory cannot grow further or `align` is not a power of two.
///
/// # Safety
///
/// A non-zero `old_ptr` must be a block this function returned, with the `old_size` and `align`
/// it was allocated with.
pub unsafe fn realloc(old_ptr: i32, old_size: i32, align: i32, new_size: i32) -> i32 {
    let old = layout(old_size, align);
    let old_ptr = old_ptr as u32 as usize as *mut u8;
    let new_ptr = if old.size() == 0 {
        if new_size == 0 {
            return align;
        }
        // SAFETY: the layout's size is not zero.
        unsafe { alloc::alloc(layout(new_size, align)) }
    } else if new_size == 0 {
        // SAFETY: the caller guarantees `old_ptr` was allocated with the layout `old`.
        unsafe { alloc::dealloc(old_ptr, old) };
        return align;
    } else {
        // Checks that the new size rounded up to `align` does not overflow.
        layout(new_size, align);
        // SAFETY: the caller guarantees `old_ptr` was allocated with the layout `old`, and the
        // new size is non-zero and does not overflow when rounded up to the alignment.
        unsafe { alloc::realloc(old_ptr, old, new_size as u32 as usize) }
    };
    if new_ptr.is_null() {
        trap();
    }
    new_ptr as usize as i32
}

/// Lifts a `Vec<u8>` parameter: takes ownership of the `(ptr, len)` block.
///
/// # Safety
///
/// `(ptr, len)` must be the convention's parameter: `len` bytes that `cabi_realloc(0, 0, 1, len)`
/// returned (any pointer when `len` is 0), owned by no one else.
pub unsafe fn lift_bytes(ptr: i32, len: i32) -> Vec<u8> {
    let len = len as u32 as usize;
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees the block was allocated by the global allocator with the
    // layout of `len` `u8`s (align 1), is initialised, and is ours.
    unsafe { Vec::from_raw_parts(ptr as u32 as usize as *mut u8, len, len) }
}

/// Lifts a `String` parameter like [`lift_bytes`], trapping if the bytes are not UTF-8.
///
/// # Safety
///
/// As for [`lift_bytes`].
pub unsafe fn lift_string(ptr: i32, len: i32) -> String {
    // SAFETY: the caller's guarantee, passed on.
    let bytes = unsafe { lift_bytes(ptr, len) };
    String::from_utf8(bytes).unwrap_or_else(|_| trap())
}

/// Lowers a `String` or `Vec<u8>` result: stores its block in the return area and returns the
/// area's address, the export's result. [`post_return`] frees the block.
pub fn lower(bytes: impl Into<Vec<u8>>) -> i32 {
    let bytes = Box::into_raw(bytes.into().into_boxed_slice());
    RET_AREA[0].store(bytes as *mut u8 as usize as u32, Ordering::Relaxed);
    RET_AREA[1].store(bytes.len() as u32, Ordering::Relaxed);
    RET_AREA.as_ptr() as usize as i32
}

/// The body of a `cabi_post_<export>` export: frees the block the last [`lower`] stored. Traps if
/// `retptr` is not the return area's address.
///
/// # Safety
///
/// The return area must hold a block from [`lower`] not yet freed: call this once per result.
pub unsafe fn post_return(retptr: i32) {
    if retptr != RET_AREA.as_ptr() as usize as i32 {
        trap();
    }
    let ptr = RET_AREA[0].load(Ordering::Relaxed) as usize as *mut u8;
    let len = RET_AREA[1].load(Ordering::Relaxed) as usize;
    // SAFETY: the caller guarantees the area holds the boxed slice `lower` leaked, not yet freed.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// Calls an import whose result is a `String` or `Vec<u8>`: `call` gets the `retptr` to pass as
/// the import's last argument, and the block the host stored there is lifted and returned.
///
/// # Safety
///
/// `call` must be an import that follows the convention: by the time it returns, the host has
/// stored at `retptr` a `(ptr, len)` block allocated with `cabi_realloc(0, 0, 1, len)`.
pub unsafe fn call_returning_bytes(call: impl FnOnce(i32)) -> Vec<u8> {
    let area = [AtomicU32::new(0), AtomicU32::new(0)];
    call(area.as_ptr() as usize as i32);
    let [ptr, len] = area.map(AtomicU32::into_inner);
    // SAFETY: the caller guarantees the host stored a block of the parameter convention's kind.
    unsafe { lift_bytes(ptr as i32, len as i32) }
}

/// [`call_returning_bytes`] for a `String` result, trapping if the bytes are not UTF-8.
///
/// # Safety
///
/// As for [`call_returning_bytes`].
pub unsafe fn call_returning_string(call: impl FnOnce(i32)) -> String {
    // SAFETY: the caller's guarantee, passed on.
    let bytes = unsafe { call_returning_bytes(call) };
    String::from_utf8(bytes).unwrap_or_else(|_| trap())
}

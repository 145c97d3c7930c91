//! The entry point, the boot information, the input/output buffers and the call loop.

use alloc::format;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

use hyperlight_schema::abi::{
    BootInfo, BELL_ANSWERED, BELL_ANSWER_LEN, BELL_BUSY, BELL_HOST_CALL, BELL_POLLING, BELL_POSTED,
    BELL_STATE, BELL_UNWATCHED, BOOT_INFO_MAGIC, DOORBELL, INPUT_HEADER_SIZE, PORT_ABORT,
    PORT_DONE, PORT_HOST_CALL, PORT_PARK,
};
use hyperlight_schema::wire::{decode_function_call, encode_function_call_result};
use hyperlight_schema::{ErrorCode, FunctionCallResult, GuestError, Value};

use crate::global::Global;
use crate::heap::ALLOCATOR;
use crate::io::outl;

#[cfg(not(test))]
extern "Rust" {
    /// Defined by the guest binary: `#[no_mangle] pub fn hyperlight_main()`. Registers the guest
    /// functions; runs once, before the first call.
    fn hyperlight_main();
}

/// All zero: what [`boot_info`] returns before the guest has booted (no buffers at all).
const NO_BOOT_INFO: BootInfo = BootInfo {
    magic: 0,
    heap_base: 0,
    heap_size: 0,
    input_base: 0,
    input_size: 0,
    output_base: 0,
    output_size: 0,
    stack_base: 0,
    stack_size: 0,
    image_base: 0,
    module_base: 0,
    module_size: 0,
};

static BOOT_INFO: Global<Cell<BootInfo>> = Global::new(Cell::new(NO_BOOT_INFO));

/// The memory layout the host gave this guest (a copy of its `BootInfo`, magic checked).
pub fn boot_info() -> BootInfo {
    BOOT_INFO.get()
}

/// The module the host gave this sandbox at build time (a WebAssembly module, a script): its
/// bytes, read-only, for the guest's whole life; empty if the host gave none.
///
/// The host maps the module region read-only for the guest and never writes it after the
/// sandbox is built (a restore finds its pages unchanged), so the slice stays valid and constant.
pub fn module() -> &'static [u8] {
    let info = boot_info();
    if info.module_base == 0 || info.module_size == 0 {
        return &[];
    }
    // SAFETY: the host maps [module_base, module_base + module_size) readable for the guest for
    // its whole life and never changes those bytes (docs/abi.md); nothing in the guest can write
    // them (the pages are read-only), so a shared borrow of them is sound for 'static.
    unsafe { core::slice::from_raw_parts(info.module_base as *const u8, info.module_size as usize) }
}

/// The guest's entry point, where the host starts the vCPU.
///
/// Checks the `BootInfo`, sets up the heap, runs the guest binary's `hyperlight_main`, reports
/// the end of init with a void result on `PORT_DONE`, then serves calls forever: each call is
/// read from the input buffer, dispatched, and answered on `PORT_DONE`, where the guest stays
/// parked until the host runs it again with the next call.
///
/// If the magic is wrong, the guest cannot trust the buffer addresses either: it aborts on
/// `PORT_ABORT` with an empty (length 0) message.
///
/// # Safety
///
/// Only the host may enter here, once, as `docs/abi.md` describes: `boot` is the guest address
/// of a readable `BootInfo` describing a layout that is really mapped, and the stack is set up.
#[doc(hidden)]
#[cfg(not(test))]
#[no_mangle]
pub unsafe extern "C" fn _start(boot: *const BootInfo) -> ! {
    if boot.is_null() || !boot.is_aligned() {
        abort_without_message();
    }
    // SAFETY: the host passes the address of its `BootInfo` record, mapped readable for the
    // guest (the caller's contract); we checked it is non-null and aligned.
    let info = unsafe { boot.read_volatile() };
    if info.magic != BOOT_INFO_MAGIC {
        abort_without_message();
    }
    BOOT_INFO.set(info);
    // SAFETY: the host maps [heap_base, heap_base + heap_size) read-write for the guest and uses
    // it for nothing else (docs/abi.md); this is the one init, before any allocation.
    unsafe { ALLOCATOR.init(info.heap_base as *mut u8, info.heap_size as usize) };
    crate::panic::prepare();
    // SAFETY: every guest binary defines `#[no_mangle] pub fn hyperlight_main()` (the crate's
    // documented contract; a missing definition fails to link).
    unsafe { hyperlight_main() };
    finish(&Ok(Value::Void));
    loop {
        let result = handle_call();
        finish(&result);
    }
}

/// Reads, decodes and runs the call the host left in the input buffer.
fn handle_call() -> FunctionCallResult {
    let call = with_input(decode_function_call)?.map_err(|e| GuestError {
        code: ErrorCode::MalformedMessage,
        message: format!("cannot decode the function call: {e}"),
    })?;
    crate::function::dispatch(call)
}

/// Answers the call with `result` and returns when the next call is in the input buffer: in
/// memory through the doorbell if the host asked for that (then polls for the next call while
/// the host lets it), else on `PORT_DONE`, where the host runs the guest again with the next
/// call.
///
/// A result larger than the output buffer is replaced by a `MalformedMessage` error.
fn finish(result: &FunctionCallResult) {
    let encoded = encode_function_call_result(result);
    let max = output_size();
    let message = if encoded.len() > max {
        let len = encoded.len();
        drop(encoded);
        encode_function_call_result(&Err(GuestError {
            code: ErrorCode::MalformedMessage,
            message: format!("result too large: {len} bytes > {max}"),
        }))
    } else {
        encoded
    };
    // Not even the error fits: an output buffer this small breaks the ABI. Send an empty
    // message, which the host rejects, rather than an out-of-bounds length.
    let len = write_output(&message).unwrap_or(0);
    if let Some(state) = hand_over(len, BELL_ANSWERED) {
        wait_for_call(state);
        return;
    }
    // SAFETY: the message of length `len` (maybe 0) is at the start of the output buffer.
    unsafe { outl(PORT_DONE, len) };
}

/// Sends the host call `message` (an encoded `FunctionCall`) and returns when its result is in
/// the input buffer: in memory through the doorbell while the host watches this call's answer
/// there (it answers, or declines and the guest sends the call with an exit after all), else on
/// `PORT_HOST_CALL`.
pub(crate) fn call_host_message(message: &[u8]) -> Result<(), TooLarge> {
    let len = write_output(message)?;
    if let Some(state) = hand_over(len, BELL_HOST_CALL) {
        loop {
            match state.load(Ordering::Acquire) {
                BELL_HOST_CALL => core::hint::spin_loop(),
                // Acquire: the reply the host wrote to the input buffer is visible.
                BELL_BUSY => return Ok(()),
                // Declined (or no longer watched): the call goes out with the exit.
                _ => break,
            }
        }
    }
    // SAFETY: the message of length `len` is at the start of the output buffer.
    unsafe { outl(PORT_HOST_CALL, len) };
    Ok(())
}

/// Hands the message of length `len` at the start of the output buffer to the host in memory
/// (`BUSY -> to`), if the host watches this call there; returns the state word then. `None`:
/// the host answers this call by exit (the state is not `BUSY`: `PARKED`, or the host stopped
/// watching and set `BUSY | UNWATCHED`), so the message goes out with `out`.
fn hand_over(len: u32, to: u32) -> Option<&'static AtomicU32> {
    let state = doorbell_word(BELL_STATE);
    if state.load(Ordering::Acquire) != BELL_BUSY {
        return None;
    }
    doorbell_word(BELL_ANSWER_LEN).store(len, Ordering::Relaxed);
    // Release: the message in the output buffer is visible before the state says so.
    state
        .compare_exchange(BELL_BUSY, to, Ordering::AcqRel, Ordering::Acquire)
        .ok()
        .map(|_| state)
}

/// A `u32` of the doorbell page (`docs/abi.md`, "The doorbell").
fn doorbell_word(offset: u64) -> &'static AtomicU32 {
    // SAFETY: the host maps the doorbell page read-write for the guest for its whole life, at
    // the same address in every sandbox (docs/abi.md); `offset` is one of the ABI's 4-byte
    // aligned word offsets inside it. The host changes these words while the guest runs, so the
    // guest only ever reaches them through atomics.
    unsafe { AtomicU32::from_ptr((DOORBELL + offset) as *mut u32) }
}

/// After an answer in memory: polls the doorbell until the host posts the next call (taken
/// with `POSTED -> BUSY`; it is in the input buffer on return), or parks on `PORT_PARK` once
/// the host closes the window (any state but the polling ones), to return when the host runs
/// the guest again with the next call.
fn wait_for_call(state: &AtomicU32) {
    loop {
        let seen = state.load(Ordering::Acquire);
        match seen & !BELL_UNWATCHED {
            // The host copies the answer, then opens the window (or closes it).
            BELL_ANSWERED | BELL_POLLING => core::hint::spin_loop(),
            BELL_POSTED => {
                // Acquire: the call the host wrote before posting is visible after this.
                let busy = BELL_BUSY | (seen & BELL_UNWATCHED);
                if state
                    .compare_exchange(seen, busy, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
            }
            _ => {
                // SAFETY: `PORT_PARK` carries no message.
                unsafe { outl(PORT_PARK, 0) };
                return;
            }
        }
    }
}

/// Size of the output buffer in bytes (0 before boot).
pub(crate) fn output_size() -> usize {
    usize::try_from(boot_info().output_size).unwrap_or(usize::MAX)
}

/// A message that does not fit the output buffer.
#[derive(Debug)]
pub(crate) struct TooLarge {
    /// Size of the message.
    pub(crate) len: usize,
    /// Size of the output buffer.
    pub(crate) max: usize,
}

/// Copies `message` to the start of the output buffer without signalling the host. Returns the
/// length to put in `eax`.
fn write_output(message: &[u8]) -> Result<u32, TooLarge> {
    let max = output_size();
    let len = message.len();
    let eax = u32::try_from(len).map_err(|_| TooLarge { len, max })?;
    if len > max {
        return Err(TooLarge { len, max });
    }
    // SAFETY: `len <= output_size`, and [output_base, output_base + output_size) is mapped
    // read-write for the guest and holds no Rust object (nothing else borrows it); `message` is
    // on the heap or in the image, regions disjoint from the output buffer (docs/abi.md).
    unsafe {
        core::ptr::copy_nonoverlapping(message.as_ptr(), boot_info().output_base as *mut u8, len)
    };
    Ok(eax)
}

/// Writes `message` to the output buffer and signals the host on `port`. Returns when the host
/// resumes the guest.
pub(crate) fn send(port: u16, message: &[u8]) -> Result<(), TooLarge> {
    let eax = write_output(message)?;
    // SAFETY: the message of length `eax` is at the start of the output buffer, as every message
    // port requires.
    unsafe { outl(port, eax) };
    Ok(())
}

/// Writes `message` to the output buffer and signals `PORT_ABORT` forever (the host never
/// resumes an aborted guest). A message that does not fit is replaced by an empty one.
pub(crate) fn abort_with(message: &[u8]) -> ! {
    let eax = write_output(message).unwrap_or(0);
    loop {
        // SAFETY: the message of length `eax` (maybe 0) is at the start of the output buffer.
        unsafe { outl(PORT_ABORT, eax) };
    }
}

/// Aborts with an empty message: for when the output buffer cannot be trusted or used.
pub(crate) fn abort_without_message() -> ! {
    loop {
        // SAFETY: an empty message needs nothing in the output buffer.
        unsafe { outl(PORT_ABORT, 0) };
    }
}

/// Runs `f` on the message the host left in the input buffer (after its 8-byte length header).
///
/// The slice is only valid until the next exit, when the host may overwrite the buffer: `f` must
/// copy out what it needs (decoding does).
pub(crate) fn with_input<R>(f: impl FnOnce(&[u8]) -> R) -> Result<R, GuestError> {
    let info = boot_info();
    let capacity = info.input_size.saturating_sub(INPUT_HEADER_SIZE);
    if info.input_size < INPUT_HEADER_SIZE {
        return Err(GuestError {
            code: ErrorCode::MalformedMessage,
            message: format!("input buffer too small: {} bytes", info.input_size),
        });
    }
    // SAFETY: the input buffer is mapped readable for the guest and holds at least the 8-byte
    // header (checked above); the host wrote it before resuming the guest.
    let len = unsafe { (info.input_base as *const u64).read_unaligned() };
    let len = u64::from_le(len);
    if len > capacity {
        return Err(GuestError {
            code: ErrorCode::MalformedMessage,
            message: format!("input message too large: {len} bytes > {capacity}"),
        });
    }
    // SAFETY: [input_base + 8, input_base + 8 + len) lies inside the input buffer (checked
    // above), which is mapped readable. The host only writes it while the guest is stopped in an
    // `out`, and the slice does not outlive `f`, which makes no exit.
    let message = unsafe {
        core::slice::from_raw_parts(
            (info.input_base + INPUT_HEADER_SIZE) as *const u8,
            len as usize,
        )
    };
    Ok(f(message))
}

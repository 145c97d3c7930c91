//! `hostile`: a guest that attacks every claim of `docs/security.md`. The host's security tests
//! (`hyperlight-sys/tests/security.rs`) call these functions and check the host's answer.
//!
//! Functions (parameters -> return type):
//!
//! | name | signature | does |
//! |---|---|---|
//! | `echo` | `(u64) -> u64` | returns its argument: a well-formed call |
//! | `boot_info` | `() -> Bytes` | the `BootInfo` record, ten little-endian `u64`s |
//! | `read_addr` | `(u64 addr) -> u64` | volatile read of the `u64` at `addr` |
//! | `write_addr` | `(u64 addr, u64 value) -> ()` | volatile write of `value` at `addr` |
//! | `exec_addr` | `(u64 addr) -> ()` | `call addr` |
//! | `exec_heap` | `() -> ()` | writes a `ret` into a heap block and calls it (the heap is NX) |
//! | `write_code` | `() -> ()` | writes over its own code (the text segment is R+X) |
//! | `port_out` | `(u32 port, u32 width, u32 value) -> ()` | `out dx, al/ax/eax` (width 1, 2, else 4) to any port |
//! | `port_in` | `(u32 port, u32 width) -> u32` | `in al/ax/eax, dx` (width 1, 2, else 4) from any port |
//! | `outs` | `(u32 port) -> ()` | `rep outsb` of 4 bytes of the output buffer to `port` |
//! | `outs_message` | `(u32 port, Bytes bytes) -> ()` | `bytes` verbatim to the output buffer, then their length by `rep outsw` (two 2-byte elements) to `port` |
//! | `ins` | `(u32 port, u64 addr, u32 count) -> ()` | `rep insb` of `count` bytes from `port` to `addr` |
//! | `marker_page` | `() -> u64` | the address of a page of this guest's writable data, every byte [`MARKER_BYTE`] at init |
//! | `insn` | `(u32 which) -> ()` | one instruction ring 3 may not run; see [`insn`] for the list |
//! | `hlt_after_host_call` | `(String name) -> ()` | calls host `name() -> u64`, then `hlt` |
//! | `hlt_after_log` | `() -> ()` | logs a record, then `hlt` |
//! | `raw` | `(u32 port, Bytes bytes) -> ()` | [`send_raw`]: `bytes` verbatim to the output buffer, `out port, len` |
//! | `out_len` | `(u32 port, u32 len) -> ()` | `out port, len` (4 bytes wide) with any `len`, writing nothing |
//! | `call_host_named` | `(String name) -> String` | host `name(i32) -> i32` with 1: `ok:<value>` or `err:<code>:<message>` |
//! | `call_host_dyn` | `(Bytes call) -> Bytes` | decodes `call` as a `FunctionCall`, makes it as is, returns the encoded `FunctionCallResult` |
//! | `store_secret` | `(Bytes secret) -> ()` | keeps a copy of `secret` on the heap for the rest of the guest's life |
//! | `scan` | `(Bytes inverted) -> u64` | counts the occurrences of `!inverted` (bytewise) in every region it can read (see [`scan`]) |
//! | `log_flood` | `(u32 n, u32 len) -> u32` | logs `n` records with a message of `len` bytes each, returns `n` |
//! | `host_call_flood` | `(String name, u32 n) -> u64` | calls host `name() -> u64` `n` times, returns the wrapping sum; stops at the first error |
//! | `exhaust_heap` | `() -> u64` | allocates (and writes) 64 KiB blocks until allocation fails: an `OutOfMemory` abort |
//! | `bell_flip` | `(u64 seed, u32 n) -> u32` | writes `n` pseudo-random values (states, flags, garbage) to the doorbell's state word and answer length, then returns `n` |
//! | `bell_never_park` | `() -> ()` | answers in memory by itself (whatever the host asked), then keeps setting the state word to `POLLING` for ever: never parks |
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use hyperlight_guest::schema::abi::{self, PAGE_SIZE};
use hyperlight_guest::schema::wire;
use hyperlight_guest::{
    boot_info, call_host, call_host_values, info, register_fn, send_raw, GuestError,
};

/// Registers the guest functions (called once by hyperlight-guest at init).
#[no_mangle]
pub fn hyperlight_main() {
    register_fn("echo", |x: u64| x);
    register_fn("boot_info", boot_info_bytes);
    register_fn("read_addr", read_addr);
    register_fn("write_addr", write_addr);
    register_fn("exec_addr", exec_addr);
    register_fn("exec_heap", exec_heap);
    register_fn("write_code", write_code);
    register_fn("port_out", port_out);
    register_fn("port_in", port_in);
    register_fn("outs", outs);
    register_fn("outs_message", outs_message);
    register_fn("ins", ins);
    register_fn("marker_page", || MARKER.0.as_ptr() as u64);
    register_fn("insn", insn);
    register_fn("hlt_after_host_call", |name: String| {
        let _ = black_box(call_host::<u64>(&name, ()));
        insn(0);
    });
    register_fn("hlt_after_log", || {
        info!("about to halt");
        insn(0);
    });
    register_fn("raw", |port: u32, bytes: Vec<u8>| {
        send_raw(port as u16, &bytes);
    });
    register_fn("out_len", out_len);
    register_fn("call_host_named", |name: String| {
        match call_host::<i32>(&name, (1i32,)) {
            Ok(value) => format!("ok:{value}"),
            Err(e) => format!("err:{:?}:{}", e.code, e.message),
        }
    });
    register_fn("call_host_dyn", call_host_dyn);
    register_fn("store_secret", |secret: Vec<u8>| {
        Box::leak(secret.into_boxed_slice());
    });
    register_fn("scan", scan);
    register_fn("log_flood", log_flood);
    register_fn("host_call_flood", host_call_flood);
    register_fn("exhaust_heap", exhaust_heap);
    register_fn("bell_flip", bell_flip);
    register_fn("bell_never_park", bell_never_park);
}

/// The doorbell's state word and answer length.
fn bell_words() -> (&'static AtomicU32, &'static AtomicU32) {
    // SAFETY: the host maps the doorbell page read-write for every guest (docs/abi.md); the
    // offsets are the ABI's aligned words. Only atomics reach them here.
    unsafe {
        (
            AtomicU32::from_ptr((abi::DOORBELL + abi::BELL_STATE) as *mut u32),
            AtomicU32::from_ptr((abi::DOORBELL + abi::BELL_ANSWER_LEN) as *mut u32),
        )
    }
}

fn bell_flip(seed: u64, n: u32) -> u32 {
    let (state, len) = bell_words();
    let mut x = seed | 1;
    for _ in 0..n {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let value = match x % 8 {
            0 => abi::BELL_PARKED,
            1 => abi::BELL_POLLING,
            2 => abi::BELL_POSTED,
            3 => abi::BELL_BUSY,
            4 => abi::BELL_ANSWERED,
            5 => abi::BELL_POSTED | abi::BELL_UNWATCHED,
            6 => abi::BELL_BUSY | abi::BELL_UNWATCHED,
            _ => (x >> 32) as u32,
        };
        len.store((x >> 16) as u32 % 0x1000, Ordering::SeqCst);
        state.store(value, Ordering::SeqCst);
    }
    n
}

fn bell_never_park() {
    let (state, len) = bell_words();
    let answer = wire::encode_function_call_result(&Ok(hyperlight_guest::schema::Value::Void));
    let output = boot_info().output_base as *mut u8;
    // SAFETY: the output buffer is mapped read-write for the guest and far larger than a void
    // result; nothing else borrows it.
    unsafe { core::ptr::copy_nonoverlapping(answer.as_ptr(), output, answer.len()) };
    len.store(answer.len() as u32, Ordering::SeqCst);
    state.store(abi::BELL_ANSWERED, Ordering::SeqCst);
    loop {
        if state.load(Ordering::SeqCst) != abi::BELL_ANSWERED {
            state.store(abi::BELL_POLLING, Ordering::SeqCst);
        }
        core::hint::spin_loop();
    }
}

fn boot_info_bytes() -> Vec<u8> {
    boot_info().to_le_bytes().to_vec()
}

fn read_addr(addr: u64) -> u64 {
    // SAFETY: not sound in general, on purpose: the host passes addresses that are not mapped,
    // or not readable from ring 3, to check that the fault is contained.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn write_addr(addr: u64, value: u64) {
    // SAFETY: not sound in general, on purpose: the host passes addresses that are not mapped or
    // not writable from ring 3, to check that the fault is contained.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

fn exec_addr(addr: u64) {
    // SAFETY: not sound in general, on purpose: the host passes addresses that are not mapped or
    // not executable, to check that the fetch faults. `clobber_abi` covers a callee that returns.
    unsafe { core::arch::asm!("call {addr}", addr = in(reg) addr, clobber_abi("C")) }
}

fn exec_heap() {
    let code: Vec<u8> = black_box(vec![0xc3]); // ret
    exec_addr(code.as_ptr() as u64);
}

fn write_code() {
    write_addr(exec_heap as *const () as u64, 0xcccc_cccc_cccc_cccc);
}

fn port_out(port: u32, width: u32, value: u32) {
    let port = port as u16;
    // SAFETY: a deliberate port write; the host (or the CPU's I/O bitmap) decides what it means.
    // Not `nomem`: the host may write guest memory before it resumes the guest.
    unsafe {
        match width {
            1 => {
                core::arch::asm!("out dx, al", in("dx") port, in("al") value as u8, options(nostack))
            }
            2 => {
                core::arch::asm!("out dx, ax", in("dx") port, in("ax") value as u16, options(nostack))
            }
            _ => core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack)),
        }
    }
}

fn port_in(port: u32, width: u32) -> u32 {
    let port = port as u16;
    let value: u32;
    // SAFETY: a deliberate port read; the host (or the CPU's I/O bitmap) decides what it means.
    unsafe {
        match width {
            1 => {
                let v: u8;
                core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nostack));
                value = v.into();
            }
            2 => {
                let v: u16;
                core::arch::asm!("in ax, dx", in("dx") port, out("ax") v, options(nostack));
                value = v.into();
            }
            _ => core::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nostack)),
        }
    }
    value
}

fn outs(port: u32) {
    let source = boot_info().output_base;
    // SAFETY: reads 4 bytes at the start of the output buffer (mapped readable) and writes them to
    // a port; a string `out` is what the host must refuse.
    unsafe {
        core::arch::asm!(
            "rep outsb",
            in("dx") port as u16,
            inout("rsi") source => _,
            inout("rcx") 4u64 => _,
            options(nostack),
        )
    }
}

/// Every byte of [`MARKER`] after init.
pub const MARKER_BYTE: u8 = 0xa5;

/// A page of writable data (in the ELF's data segment, so in every snapshot) with known
/// contents: what a write that should not happen would change.
#[repr(C, align(4096))]
struct MarkerPage([AtomicU8; PAGE_SIZE as usize]);

static MARKER: MarkerPage = MarkerPage([const { AtomicU8::new(MARKER_BYTE) }; PAGE_SIZE as usize]);

/// A message sent the way the protocol does not allow: its length goes out by a string `out`
/// of two 2-byte elements (4 bytes in all, as many as a valid `out` of the length carries).
fn outs_message(port: u32, bytes: Vec<u8>) {
    let info = boot_info();
    let len = bytes.len().min(info.output_size as usize);
    // SAFETY: the output buffer is `output_size` bytes of guest memory mapped writable, and at
    // most that many bytes are copied into it.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), info.output_base as *mut u8, len) };
    let length = len as u32;
    // SAFETY: reads the 4 bytes of `length` (two words) and writes them to a port; a string
    // `out` is what the host must refuse.
    unsafe {
        core::arch::asm!(
            "rep outsw",
            in("dx") port as u16,
            inout("rsi") &length as *const u32 => _,
            inout("rcx") 2u64 => _,
            options(nostack, readonly),
        )
    }
}

/// `rep insb`: `count` bytes from `port` to `addr`. The host must never finish it: finishing it
/// writes guest memory.
fn ins(port: u32, addr: u64, count: u32) {
    // SAFETY: not sound in general, on purpose: a string `in` to any address the host names.
    unsafe {
        core::arch::asm!(
            "rep insb",
            in("dx") port as u16,
            inout("rdi") addr => _,
            inout("rcx") u64::from(count) => _,
            options(nostack),
        )
    }
}

/// One instruction that ring 3 may not run, by number:
///
/// 0 `hlt`, 1 `cli`, 2 `sti`, 3 `rdmsr` (EFER), 4 `wrmsr` (EFER), 5 `mov cr3, rax` (with the
/// page tables' address), 6 `mov rax, cr3`, 7 `mov cr0, rax`, 8 `lgdt`, 9 `lidt`, 10 `invlpg`,
/// 11 `int3`, 12 `int 0x80`, 13 `syscall`, 14 `sysenter`, 15 `ud2`, 16 `wbinvd`, 17 `clts`,
/// 18 `ltr`, 19 `mov dr7, rax`; anything else: `hlt`.
fn insn(which: u32) {
    let info = boot_info();
    // Where the host keeps the page tables (docs/abi.md): one guard page after the output buffer.
    let page_tables = info.output_base + info.output_size + PAGE_SIZE;
    let descriptor = [0u8; 16];
    let table = descriptor.as_ptr();
    // SAFETY: each instruction is privileged (or traps) at CPL3: it raises an exception before it
    // has any effect, which ends the call. The memory operands point at a local buffer.
    unsafe {
        match which {
            1 => core::arch::asm!("cli", options(nostack)),
            2 => core::arch::asm!("sti", options(nostack)),
            3 => {
                core::arch::asm!("rdmsr", in("ecx") 0xc000_0080u32, out("eax") _, out("edx") _, options(nostack))
            }
            4 => {
                core::arch::asm!("wrmsr", in("ecx") 0xc000_0080u32, in("eax") 0u32, in("edx") 0u32, options(nostack))
            }
            5 => core::arch::asm!("mov cr3, {}", in(reg) page_tables, options(nostack)),
            6 => core::arch::asm!("mov {}, cr3", out(reg) _, options(nostack)),
            7 => core::arch::asm!("mov cr0, {}", in(reg) 0x8000_0011u64, options(nostack)),
            8 => core::arch::asm!("lgdt [{}]", in(reg) table, options(nostack)),
            9 => core::arch::asm!("lidt [{}]", in(reg) table, options(nostack)),
            10 => core::arch::asm!("invlpg [{}]", in(reg) page_tables, options(nostack)),
            11 => core::arch::asm!("int3", options(nostack)),
            12 => core::arch::asm!("int 0x80", options(nostack)),
            13 => core::arch::asm!("syscall", out("rcx") _, out("r11") _, options(nostack)),
            14 => core::arch::asm!("sysenter", options(nostack)),
            15 => core::arch::asm!("ud2", options(nostack)),
            16 => core::arch::asm!("wbinvd", options(nostack)),
            17 => core::arch::asm!("clts", options(nostack)),
            18 => core::arch::asm!("ltr {0:x}", in(reg) 0x28u16, options(nostack)),
            19 => core::arch::asm!("mov dr7, {}", in(reg) 0u64, options(nostack)),
            _ => core::arch::asm!("hlt", options(nostack)),
        }
    }
    black_box(descriptor);
}

fn out_len(port: u32, len: u32) {
    // SAFETY: `out` touches no guest memory; the length claims a message the output buffer may
    // not hold, which is what the host must refuse.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port as u16, in("eax") len, options(nostack))
    }
}

fn call_host_dyn(call: Vec<u8>) -> Result<Vec<u8>, String> {
    let call = wire::decode_function_call(&call).map_err(|e| format!("bad call: {e}"))?;
    let result = call_host_values(&call.name, call.args, call.return_type);
    Ok(wire::encode_function_call_result(&result))
}

/// Counts the occurrences of the byte string `!inverted` in every region of guest memory this
/// guest can read: its image, heap, stack, input and output buffers and the boot info page.
///
/// The needle arrives inverted so that it never exists in this guest's memory (except by a leak
/// from elsewhere): it is compared byte by byte, each byte inverted on the fly.
fn scan(inverted: Vec<u8>) -> u64 {
    let Some(&first) = inverted.first() else {
        return 0;
    };
    let first = !first;
    let info = boot_info();
    let regions = [
        (0x5000, PAGE_SIZE), // boot info
        (
            info.image_base,
            info.heap_base - PAGE_SIZE - info.image_base,
        ), // image
        (info.heap_base, info.heap_size),
        (info.stack_base, info.stack_size),
        (info.input_base, info.input_size),
        (info.output_base, info.output_size),
    ];
    let mut found = 0u64;
    for (base, size) in regions {
        let len = size as usize;
        let Some(last) = len.checked_sub(inverted.len()) else {
            continue;
        };
        for offset in 0..=last {
            let at = (base as usize + offset) as *const u8;
            // SAFETY: every region is mapped readable for the guest (docs/abi.md) and
            // `offset + inverted.len() <= len`; volatile reads because other code may own them.
            let matches =
                |i: usize| unsafe { at.add(i).read_volatile() } == !black_box(inverted[i]);
            // SAFETY: as above, for the first byte.
            if unsafe { at.read_volatile() } == first && (1..inverted.len()).all(matches) {
                found += 1;
            }
        }
    }
    found
}

fn log_flood(n: u32, len: u32) -> u32 {
    let message = "x".repeat(len as usize);
    for i in 0..n {
        info!("flood {i} {message}");
    }
    n
}

fn host_call_flood(name: String, n: u32) -> Result<u64, GuestError> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(call_host::<u64>(&name, ())?);
    }
    Ok(sum)
}

fn exhaust_heap() -> u64 {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(black_box(vec![0xa5; 64 * 1024]));
        black_box(&blocks);
    }
}

//! Port I/O: how the guest signals the host.

/// Writes `value` to I/O port `port` with `out dx, eax`: a VM exit the host handles.
///
/// The asm block is deliberately **not** `nomem`/`readonly`: the host reads the output buffer and
/// writes the input buffer while the guest is stopped in this instruction, so the compiler must
/// finish every store before it and reload every load after it.
///
/// # Safety
///
/// The guest runs at CPL3 with IOPL 3, so the instruction itself is allowed. The caller must make
/// sure the host's reaction is what it expects: for the message ports, that the message of
/// length `value` is at the start of the output buffer.
#[inline(always)]
pub(crate) unsafe fn outl(port: u16, value: u32) {
    // SAFETY: `out` touches no guest memory by itself and uses no stack; with IOPL 3 it is legal at
    // CPL3. It may change memory only through the host, which the default (memory-clobbering)
    // asm options account for. The caller upholds the protocol (see the function's contract).
    unsafe {
        core::arch::asm!(
            "out dx, eax",
            in("dx") port,
            in("eax") value,
            options(nostack, preserves_flags),
        );
    }
}

//! Port I/O: how the guest signals the host.

/// Writes `value` to I/O port `port` with `out dx, eax`: a VM exit the host handles.
///
/// The asm block is deliberately **not** `nomem`/`readonly`: the host reads the output buffer and
/// writes the input buffer while the guest is stopped in this instruction, so the compiler must
/// finish every store before it and reload every load after it.
///
/// # Safety
///
/// The guest runs at CPL3 with IOPL 0; the instruction is allowed because the TSS I/O permission
/// bitmap opens the protocol ports `0x100..0x110` (`docs/abi.md`), and any other `port` raises
/// `#GP`. The caller must make sure the host's reaction is what it expects: for the message
/// ports, that the message of length `value` is at the start of the output buffer.
#[inline(always)]
pub(crate) unsafe fn outl(port: u16, value: u32) {
    // SAFETY: `out` touches no guest memory by itself and uses no stack; at CPL3 with IOPL 0 it
    // reaches the host for the ports the TSS I/O bitmap opens and raises #GP (a fault the host
    // reports) for the others. It may change memory only through the host, which the default
    // (memory-clobbering) asm options account for. The caller upholds the protocol (see the
    // function's contract).
    unsafe {
        core::arch::asm!(
            "out dx, eax",
            in("dx") port,
            in("eax") value,
            options(nostack, preserves_flags),
        );
    }
}

/// **Testing hook, hostile by design**: copies `bytes` verbatim to the start of the output buffer
/// (truncated to the buffer's size) and signals the host with `out port, len`, as if they were a
/// message of the port's type. Returns the length sent; returns when (if) the host resumes the
/// guest.
///
/// Nothing is encoded or checked: the bytes may be any garbage and `port` any port. This is how
/// the fuzz guest (`guest/guests/fuzz`) lets the host's fuzzers put arbitrary bytes on the
/// guest-to-host boundary. A real guest never needs it: [`call_host`](crate::call_host), the log
/// macros and the runtime send well-formed messages. What the host does with the bytes is
/// whatever it does with a message on that port: resume the guest (a valid host call or log), end
/// the current call (`PORT_DONE`, `PORT_ABORT`), or fail the call with a typed error and poison
/// the sandbox (a malformed message, a port outside the protocol).
pub fn send_raw(port: u16, bytes: &[u8]) -> usize {
    let len = bytes.len().min(crate::runtime::output_size());
    let message = bytes.get(..len).unwrap_or_default();
    // `send` fails only for a message larger than the output buffer, which the truncation
    // rules out.
    let _ = crate::runtime::send(port, message);
    len
}

//! The binary interface between host and guest that is not a FlatBuffer: memory layout
//! records, I/O ports and segment selectors. `docs/abi.md` describes it in prose.

/// Size of a guest page. Every region of the guest layout is page aligned.
pub const PAGE_SIZE: u64 = 4096;

/// First of the 16 I/O ports the guest may use (`0x100..0x110`): the TSS I/O permission bitmap
/// opens exactly these to ring 3 and denies every other port.
pub const PORT_RANGE_START: u16 = 0x0100;

/// `out` port: the guest asks the host to run a host function. The output buffer holds a
/// `FunctionCall`; `eax` holds its length. The host answers with a `FunctionCallResult`
/// in the input buffer and resumes the guest.
pub const PORT_HOST_CALL: u16 = 0x0101;
/// `out` port: the output buffer holds a `LogRecord` of length `eax`. The host resumes the guest.
pub const PORT_LOG: u16 = 0x0102;
/// `out` port: the guest finished the current call (or its init). The output buffer holds a
/// `FunctionCallResult` of length `eax`. The guest resumes, when the host runs it again, right
/// after this instruction and reads the next call from the input buffer.
pub const PORT_DONE: u16 = 0x0103;
/// `out` port: the guest cannot go on (panic, allocation failure). The output buffer holds a
/// `GuestError` of length `eax`. The host never resumes the guest after this.
pub const PORT_ABORT: u16 = 0x0104;
/// `out` port used only by the host-built ring-0 exception stubs: `al` holds the vector. The
/// exception frame (and error code, if any) is on the ring-0 stack.
pub const PORT_EXCEPTION: u16 = 0x0105;

/// Magic value at the start of [`BootInfo`]: "HLBOOT01" little endian.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"HLBOOT01");

/// Size of the length header at the start of the input buffer, before the FlatBuffer.
pub const INPUT_HEADER_SIZE: u64 = 8;

/// What the host tells the guest about its memory, at the address the guest's entry point
/// receives in `rdi`. The page holding it is mapped read-only for the guest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// Guest address of the heap region.
    pub heap_base: u64,
    /// Size of the heap region in bytes.
    pub heap_size: u64,
    /// Guest address of the input buffer (host -> guest, read-only for the guest).
    pub input_base: u64,
    /// Size of the input buffer in bytes, header included.
    pub input_size: u64,
    /// Guest address of the output buffer (guest -> host).
    pub output_base: u64,
    /// Size of the output buffer in bytes.
    pub output_size: u64,
    /// Lowest guest address of the stack region (the stack grows down from `stack_base + stack_size`).
    pub stack_base: u64,
    /// Size of the stack region in bytes.
    pub stack_size: u64,
    /// Guest address the ELF image was loaded at (its relocation base).
    pub image_base: u64,
}

/// GDT selector of the ring-0 code segment (used only by the exception stubs).
pub const SELECTOR_KERNEL_CODE: u16 = 0x08;
/// GDT selector of the ring-0 data segment.
pub const SELECTOR_KERNEL_DATA: u16 = 0x10;
/// GDT selector of the ring-3 data and stack segment (RPL 3).
pub const SELECTOR_USER_DATA: u16 = 0x18 | 3;
/// GDT selector of the ring-3 64-bit code segment (RPL 3).
pub const SELECTOR_USER_CODE: u16 = 0x20 | 3;
/// GDT selector of the 64-bit TSS (two GDT slots).
pub const SELECTOR_TSS: u16 = 0x28;

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

/// `out` port: the guest stops polling its doorbell ([`DOORBELL`]) because the host closed its
/// window (the state word is no longer [`BELL_POLLING`]). `eax` is 0. The guest resumes, when the
/// host runs it again, right after this instruction and reads the next call from the input
/// buffer, as after [`PORT_DONE`].
pub const PORT_PARK: u16 = 0x0106;

/// Guest address of the doorbell page, mapped read-write for the guest: the state word (a
/// `u32` at offset [`BELL_STATE`]) through which a call reaches a polling guest and its answer
/// comes back without a VM exit, and the answer's length (a `u32` at [`BELL_ANSWER_LEN`]).
/// `docs/abi.md` describes the handshake. The guest may write anything here; the host trusts
/// none of it beyond "look at the output buffer now".
pub const DOORBELL: u64 = 0x6000;
/// Offset of the state word in the doorbell page.
pub const BELL_STATE: u64 = 0;
/// Offset of the answer's length (bytes at the start of the output buffer) in the doorbell page.
pub const BELL_ANSWER_LEN: u64 = 4;
/// State word: the guest does not poll; a call must enter it with `KVM_RUN`. The post-init value.
pub const BELL_PARKED: u32 = 0;
/// State word: the guest polls for a call; the host may post one (`POLLING -> POSTED`) or close
/// the window (`POLLING -> PARKED`), by compare-and-swap.
pub const BELL_POLLING: u32 = 1;
/// State word: the host posted a call in the input buffer; the guest takes it
/// (`POSTED -> BUSY`).
pub const BELL_POSTED: u32 = 2;
/// State word: the guest runs a call whose answer the host collects from memory: the guest
/// answers with `BUSY -> ANSWERED`.
pub const BELL_BUSY: u32 = 3;
/// State word: the answer is in the output buffer. The host copies it and sets `POLLING` (keep
/// polling) or `PARKED` (park now); the guest waits until it has.
pub const BELL_ANSWERED: u32 = 4;
/// State word: during a call answered in memory, the guest calls a host function: the
/// `FunctionCall` is in the output buffer, its length at [`BELL_ANSWER_LEN`]. The host writes
/// the `FunctionCallResult` to the input buffer and sets `BUSY`, or declines with
/// `BUSY | UNWATCHED`: the guest then makes the same call with `out` on [`PORT_HOST_CALL`].
pub const BELL_HOST_CALL: u32 = 5;
/// Flag of the state word, set with `POSTED` or `BUSY`: the host stopped watching the state
/// word; answer this call on [`PORT_DONE`] instead.
pub const BELL_UNWATCHED: u32 = 0x100;

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
    /// Guest address of the module region: bytes the host gave the sandbox at build time (a
    /// WebAssembly module, a script), mapped read-only for the guest. 0 when there are none.
    pub module_base: u64,
    /// Length of the module's bytes (the region is rounded up to whole pages); 0 when none.
    pub module_size: u64,
}

impl BootInfo {
    /// Size of the record in guest memory: twelve `u64`s.
    pub const SIZE: usize = 96;

    /// The fields in the order of the `repr(C)` layout.
    fn fields(&self) -> [u64; 12] {
        [
            self.magic,
            self.heap_base,
            self.heap_size,
            self.input_base,
            self.input_size,
            self.output_base,
            self.output_size,
            self.stack_base,
            self.stack_size,
            self.image_base,
            self.module_base,
            self.module_size,
        ]
    }

    /// The record as it lies in guest memory, where the guest reads it as a `BootInfo`: the
    /// fields in declaration order, each a little-endian `u64`. The host writes these bytes.
    pub fn to_le_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0; Self::SIZE];
        for (chunk, field) in bytes.chunks_exact_mut(8).zip(self.fields()) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        bytes
    }

    /// The inverse of [`to_le_bytes`](Self::to_le_bytes).
    pub fn from_le_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let mut fields = [0u64; 12];
        for (field, chunk) in fields.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0; 8];
            le.copy_from_slice(chunk);
            *field = u64::from_le_bytes(le);
        }
        let [magic, heap_base, heap_size, input_base, input_size, output_base, output_size, stack_base, stack_size, image_base, module_base, module_size] =
            fields;
        Self {
            magic,
            heap_base,
            heap_size,
            input_base,
            input_size,
            output_base,
            output_size,
            stack_base,
            stack_size,
            image_base,
            module_base,
            module_size,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn boot_info_bytes_follow_the_repr_c_layout() {
        assert_eq!(size_of::<BootInfo>(), BootInfo::SIZE);
        let info = BootInfo {
            magic: BOOT_INFO_MAGIC,
            heap_base: 1,
            heap_size: 2,
            input_base: 3,
            input_size: 4,
            output_base: 5,
            output_size: 6,
            stack_base: 7,
            stack_size: 0x0807_0605_0403_0201,
            image_base: u64::MAX,
            module_base: 9,
            module_size: 10,
        };
        let bytes = info.to_le_bytes();
        assert_eq!(&bytes[..8], b"HLBOOT01");
        let at = |offset: usize| u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap());
        assert_eq!(at(offset_of!(BootInfo, heap_base)), 1);
        assert_eq!(at(offset_of!(BootInfo, output_size)), 6);
        assert_eq!(
            bytes[offset_of!(BootInfo, stack_size)..][..8],
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(at(offset_of!(BootInfo, image_base)), u64::MAX);
        assert_eq!(at(offset_of!(BootInfo, module_base)), 9);
        assert_eq!(at(offset_of!(BootInfo, module_size)), 10);
        assert_eq!(BootInfo::from_le_bytes(&bytes), info);
    }
}

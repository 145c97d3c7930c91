//! Why the ELF loader rejected a guest image: [`ElfError`].

/// Why an ELF file was rejected (or could not be loaded). Every variant carries the data needed
/// to understand the failure. Program header indices (`index`, `a`, `b`) count from 0 in file
/// order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// The file is shorter than the ELF header.
    #[error("ELF file too short: {len} bytes, the ELF header needs {need}")]
    TooShort {
        /// Length of the file.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The file does not start with `\x7fELF`.
    #[error("not an ELF file (bad magic)")]
    BadMagic,
    /// `EI_CLASS` is not `ELFCLASS64`.
    #[error("not a 64-bit ELF file (EI_CLASS {class}, expected 2)")]
    NotElf64 {
        /// The `EI_CLASS` byte found.
        class: u8,
    },
    /// `EI_DATA` is not `ELFDATA2LSB`.
    #[error("not a little-endian ELF file (EI_DATA {data}, expected 1)")]
    NotLittleEndian {
        /// The `EI_DATA` byte found.
        data: u8,
    },
    /// `EI_VERSION` or `e_version` is not `EV_CURRENT` (1).
    #[error("unsupported ELF version {version} (expected 1)")]
    BadVersion {
        /// The offending version value.
        version: u32,
    },
    /// `e_machine` is not `EM_X86_64` (62).
    #[error("ELF machine {machine} is not x86_64 (62)")]
    WrongMachine {
        /// The `e_machine` found.
        machine: u16,
    },
    /// `e_type` is not `ET_DYN` (3): only position-independent executables are loaded
    /// (`ET_EXEC`, with its fixed addresses, is rejected too).
    #[error("ELF type {e_type} is not ET_DYN (3): the guest must be a static PIE")]
    WrongType {
        /// The `e_type` found.
        e_type: u16,
    },
    /// `e_phentsize` is not the size of an ELF64 program header (56).
    #[error(
        "program header entry size {phentsize} is not the ELF64 size {}",
        super::PHDR_SIZE
    )]
    BadProgramHeaderSize {
        /// The `e_phentsize` found.
        phentsize: u16,
    },
    /// `e_phnum` exceeds [`MAX_PROGRAM_HEADERS`](super::MAX_PROGRAM_HEADERS).
    #[error("{count} program headers, at most {max} are accepted")]
    TooManyProgramHeaders {
        /// The `e_phnum` found.
        count: u16,
        /// The limit.
        max: u16,
    },
    /// The program header table does not lie inside the file.
    #[error("program header table at offset {offset:#x} ({size:#x} bytes) is outside the {file_len:#x}-byte file")]
    ProgramHeadersOutOfBounds {
        /// `e_phoff`.
        offset: u64,
        /// Size of the table in bytes (`e_phnum * 56`).
        size: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A segment's file contents (`p_offset .. p_offset + p_filesz`) do not lie inside the file.
    #[error("segment {index}: file range {offset:#x}+{filesz:#x} is outside the {file_len:#x}-byte file")]
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        filesz: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A segment has `p_filesz > p_memsz`.
    #[error("segment {index}: file size {filesz:#x} exceeds memory size {memsz:#x}")]
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// An address or size computation overflowed 64 bits.
    #[error("arithmetic overflow computing {what}")]
    Overflow {
        /// The computation that overflowed.
        what: &'static str,
    },
    /// A segment's `p_align` is not 0 or a power of two, or `p_offset` and `p_vaddr` are not
    /// congruent modulo `p_align`.
    #[error("segment {index}: bad alignment {align:#x} (vaddr {vaddr:#x}, offset {offset:#x}): must be 0 or a power of two with vaddr and offset congruent modulo it")]
    BadAlignment {
        /// Program header index.
        index: usize,
        /// `p_align`.
        align: u64,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_offset`.
        offset: u64,
    },
    /// `PT_LOAD` segments are not sorted by `p_vaddr` (program header `b` comes after `a` but has
    /// a lower address).
    #[error("loadable segments not sorted by address: segment {b} is below segment {a}")]
    SegmentsNotSorted {
        /// Program header index of the earlier segment.
        a: usize,
        /// Program header index of the later segment.
        b: usize,
    },
    /// Two `PT_LOAD` segments overlap, or share a page while having different permissions.
    #[error("segments {a} and {b} overlap (or share a page with different permissions)")]
    OverlappingSegments {
        /// Program header index of one segment.
        a: usize,
        /// Program header index of the other segment.
        b: usize,
    },
    /// A segment is both writable and executable (W^X violation).
    #[error("segment {index} is both writable and executable")]
    WritableAndExecutable {
        /// Program header index.
        index: usize,
    },
    /// The entry point does not lie in the file-backed part of an executable segment.
    #[error("entry point {entry:#x} is not inside the file data of an executable segment")]
    EntryNotExecutable {
        /// `e_entry` (link-time address).
        entry: u64,
    },
    /// The file has no `PT_LOAD` segment with a non-zero memory size.
    #[error("no loadable (PT_LOAD) segment")]
    NoLoadableSegments,
    /// A feature this loader does not support (`PT_INTERP`, `PT_TLS`, `DT_NEEDED`, `DT_REL`, ...).
    #[error("unsupported ELF feature: {what}")]
    Unsupported {
        /// The unsupported feature.
        what: &'static str,
    },
    /// The dynamic section is malformed (missing, duplicated or inconsistent tags).
    #[error("malformed dynamic section: {what}")]
    BadDynamic {
        /// What is wrong.
        what: &'static str,
    },
    /// A relocation table does not lie in the file-backed part of a `PT_LOAD` segment.
    #[error("relocation table at {addr:#x} ({size:#x} bytes) is not inside a segment's file data")]
    RelocationTableOutOfBounds {
        /// Link-time address of the table (`DT_RELA` or `DT_RELR`).
        addr: u64,
        /// Size of the table in bytes.
        size: u64,
    },
    /// A relocation table has more entries than [`MAX_RELOCATIONS`](super::MAX_RELOCATIONS).
    #[error("{count} relocation entries, at most {max} are accepted")]
    TooManyRelocations {
        /// Entries in the table.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A relocation other than `R_X86_64_RELATIVE` (or `R_X86_64_NONE`).
    #[error("unsupported relocation type {r_type} at {offset:#x} (only R_X86_64_RELATIVE)")]
    UnsupportedRelocation {
        /// The relocation type (`ELF64_R_TYPE(r_info)`).
        r_type: u32,
        /// `r_offset` of the relocation.
        offset: u64,
    },
    /// A relocation would write 8 bytes not entirely inside one loaded segment.
    #[error("relocation at {offset:#x} is not inside a loaded segment")]
    RelocationOutOfBounds {
        /// Link-time address the relocation applies to.
        offset: u64,
    },
    /// The load base is not aligned as required: to [`PAGE_SIZE`](super::PAGE_SIZE), and the
    /// load bias to the largest segment alignment (see
    /// [`ElfImage::alignment`](super::ElfImage::alignment)).
    #[error("load base {base:#x} is not aligned to {align:#x}")]
    BaseNotAligned {
        /// The base given to [`ElfImage::load`](super::ElfImage::load).
        base: u64,
        /// The required alignment.
        align: u64,
    },
    /// `[base, base + span)` does not fit in guest memory.
    #[error(
        "image of {span:#x} bytes at {base:#x} does not fit in {mem_len:#x} bytes of guest memory"
    )]
    DoesNotFit {
        /// The base given to [`ElfImage::load`](super::ElfImage::load).
        base: u64,
        /// Bytes the image needs ([`ElfImage::span`](super::ElfImage::span)).
        span: u64,
        /// Length of guest memory.
        mem_len: u64,
    },
}

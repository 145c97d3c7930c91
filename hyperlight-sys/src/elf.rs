//! Loader for the guest image: a static-PIE ELF64 x86-64 executable.
//!
//! The guest is built by rustc for `x86_64-unknown-none` and linked by rust-lld as a static
//! position-independent executable (`ET_DYN`, no interpreter, no shared-library dependencies).
//! The host copies it into guest memory at a page-aligned load base of its choosing, applies the
//! relative relocations, and later builds page tables from the segment permissions reported here.
//!
//! Addressing: the lowest page of the image (the first `PT_LOAD`'s `p_vaddr` rounded down to a
//! page) is placed at the load base, so a link-time address `v` ends up at guest address
//! `base + (v - lowest_page)`. For the images rust-lld produces the lowest page is 0, so this is
//! simply `base + p_vaddr`. Guest memory is identity mapped, so guest virtual = guest physical =
//! the offset into the `mem` slice handed to [`ElfImage::load`].
//!
//! Robustness: the input is untrusted. Every integer is read with `from_le_bytes` from a
//! bounds-checked slice, every offset computation is checked, there is no `unsafe`, and the amount
//! of work is bounded ([`MAX_PROGRAM_HEADERS`], [`MAX_RELOCATIONS`]). Parsing validates the whole
//! file, relocations included, so [`ElfImage::load`] can only fail because of its own arguments
//! (base alignment, memory size). The clippy lints denied below make panicking constructs a build
//! error.

// Indexing, unchecked arithmetic, unwrap/expect and `as` casts could panic or truncate on hostile
// input; they are forbidden in this module (the tests opt back in).
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::as_conversions
)]
// The module offers a complete API (e.g. `SegmentPerms::read`, `LoadedImage::end`,
// `ElfImage::alignment`); an embedder that includes it as a private module may not use every
// item. Test builds still check for dead code, since the tests exercise the whole API.

use core::fmt;

/// Guest page size. Segments are page-rounded and the load base must be a multiple of it.
pub const PAGE_SIZE: u64 = 4096;

/// Largest number of program headers accepted (`e_phnum`).
pub const MAX_PROGRAM_HEADERS: u16 = 64;

/// Largest number of entries accepted in each relocation table (`DT_RELA` entries, and
/// separately `DT_RELR` words; one `DT_RELR` word encodes at most 63 relocations).
pub const MAX_RELOCATIONS: u64 = 1_000_000;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const DYN_SIZE: usize = 16;
const RELA_SIZE: usize = 24;
const RELR_SIZE: usize = 8;
/// Bytes written by one relative relocation (a 64-bit address).
const WORD: u64 = 8;

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u32 = 1;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_SHLIB: u32 = 5;
const PT_TLS: u32 = 7;

const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_PLTRELSZ: u64 = 2;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const DT_REL: u64 = 17;
const DT_RELSZ: u64 = 18;
const DT_RELRSZ: u64 = 35;
const DT_RELR: u64 = 36;
const DT_RELRENT: u64 = 37;
const DT_ANDROID_REL: u64 = 0x6000_000f;
const DT_ANDROID_RELSZ: u64 = 0x6000_0010;
const DT_ANDROID_RELA: u64 = 0x6000_0011;
const DT_ANDROID_RELASZ: u64 = 0x6000_0012;
const DT_ANDROID_RELR: u64 = 0x6fff_e000;
const DT_ANDROID_RELRSZ: u64 = 0x6fff_e001;
const DT_RELACOUNT: u64 = 0x6fff_fff9;

const R_X86_64_NONE: u32 = 0;
const R_X86_64_RELATIVE: u32 = 8;

/// Permissions of a loaded segment, from `p_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPerms {
    /// `PF_R`: the segment is readable.
    pub read: bool,
    /// `PF_W`: the segment is writable (never together with `execute`).
    pub write: bool,
    /// `PF_X`: the segment is executable (never together with `write`).
    pub execute: bool,
}

impl SegmentPerms {
    fn from_flags(flags: u32) -> Self {
        Self {
            read: flags & PF_R != 0,
            write: flags & PF_W != 0,
            execute: flags & PF_X != 0,
        }
    }
}

/// One loaded `PT_LOAD` segment, page-rounded, as guest addresses.
///
/// Segments with identical permissions whose page-rounded ranges share a page are merged into
/// one entry; otherwise there is one entry per non-empty `PT_LOAD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSegment {
    /// First guest address of the segment, page aligned.
    pub start: u64,
    /// End of the segment (exclusive), page aligned.
    pub end: u64,
    /// Access the guest may have to `[start, end)`.
    pub perms: SegmentPerms,
}

/// The result of [`ElfImage::load`]: where the image ended up in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Guest address of the image's lowest page (the `base` given to [`ElfImage::load`]).
    pub base: u64,
    /// Relocated guest address of the entry point; it lies in an executable segment.
    pub entry: u64,
    /// The loaded segments: relocated, page-rounded, sorted by address and non-overlapping.
    /// Pages of `[base, end)` not covered by any segment are zero-filled but belong to no
    /// segment (they may be left unmapped).
    pub segments: Vec<LoadedSegment>,
    /// End of the image (exclusive, page aligned): `base + span`.
    pub end: u64,
}

/// Why an ELF file was rejected (or could not be loaded). Every variant carries the data needed
/// to understand the failure. Program header indices (`index`, `a`, `b`) count from 0 in file
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The file is shorter than the ELF header.
    TooShort {
        /// Length of the file.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The file does not start with `\x7fELF`.
    BadMagic,
    /// `EI_CLASS` is not `ELFCLASS64`.
    NotElf64 {
        /// The `EI_CLASS` byte found.
        class: u8,
    },
    /// `EI_DATA` is not `ELFDATA2LSB`.
    NotLittleEndian {
        /// The `EI_DATA` byte found.
        data: u8,
    },
    /// `EI_VERSION` or `e_version` is not `EV_CURRENT` (1).
    BadVersion {
        /// The offending version value.
        version: u32,
    },
    /// `e_machine` is not `EM_X86_64` (62).
    WrongMachine {
        /// The `e_machine` found.
        machine: u16,
    },
    /// `e_type` is not `ET_DYN` (3): only position-independent executables are loaded
    /// (`ET_EXEC`, with its fixed addresses, is rejected too).
    WrongType {
        /// The `e_type` found.
        e_type: u16,
    },
    /// `e_phentsize` is not the size of an ELF64 program header (56).
    BadProgramHeaderSize {
        /// The `e_phentsize` found.
        phentsize: u16,
    },
    /// `e_phnum` exceeds [`MAX_PROGRAM_HEADERS`].
    TooManyProgramHeaders {
        /// The `e_phnum` found.
        count: u16,
        /// The limit.
        max: u16,
    },
    /// The program header table does not lie inside the file.
    ProgramHeadersOutOfBounds {
        /// `e_phoff`.
        offset: u64,
        /// Size of the table in bytes (`e_phnum * 56`).
        size: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A segment's file contents (`p_offset .. p_offset + p_filesz`) do not lie inside the file.
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
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// An address or size computation overflowed 64 bits.
    Overflow {
        /// The computation that overflowed.
        what: &'static str,
    },
    /// A segment's `p_align` is not 0 or a power of two, or `p_offset` and `p_vaddr` are not
    /// congruent modulo `p_align`.
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
    SegmentsNotSorted {
        /// Program header index of the earlier segment.
        a: usize,
        /// Program header index of the later segment.
        b: usize,
    },
    /// Two `PT_LOAD` segments overlap, or share a page while having different permissions.
    OverlappingSegments {
        /// Program header index of one segment.
        a: usize,
        /// Program header index of the other segment.
        b: usize,
    },
    /// A segment is both writable and executable (W^X violation).
    WritableAndExecutable {
        /// Program header index.
        index: usize,
    },
    /// The entry point does not lie in the file-backed part of an executable segment.
    EntryNotExecutable {
        /// `e_entry` (link-time address).
        entry: u64,
    },
    /// The file has no `PT_LOAD` segment with a non-zero memory size.
    NoLoadableSegments,
    /// A feature this loader does not support (`PT_INTERP`, `PT_TLS`, `DT_NEEDED`, `DT_REL`, ...).
    Unsupported {
        /// The unsupported feature.
        what: &'static str,
    },
    /// The dynamic section is malformed (missing, duplicated or inconsistent tags).
    BadDynamic {
        /// What is wrong.
        what: &'static str,
    },
    /// A relocation table does not lie in the file-backed part of a `PT_LOAD` segment.
    RelocationTableOutOfBounds {
        /// Link-time address of the table (`DT_RELA` or `DT_RELR`).
        addr: u64,
        /// Size of the table in bytes.
        size: u64,
    },
    /// A relocation table has more entries than [`MAX_RELOCATIONS`].
    TooManyRelocations {
        /// Entries in the table.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A relocation other than `R_X86_64_RELATIVE` (or `R_X86_64_NONE`).
    UnsupportedRelocation {
        /// The relocation type (`ELF64_R_TYPE(r_info)`).
        r_type: u32,
        /// `r_offset` of the relocation.
        offset: u64,
    },
    /// A relocation would write 8 bytes not entirely inside one loaded segment.
    RelocationOutOfBounds {
        /// Link-time address the relocation applies to.
        offset: u64,
    },
    /// The load base is not aligned as required: to [`PAGE_SIZE`], and the load bias to the
    /// largest segment alignment (see [`ElfImage::alignment`]).
    BaseNotAligned {
        /// The base given to [`ElfImage::load`].
        base: u64,
        /// The required alignment.
        align: u64,
    },
    /// `[base, base + span)` does not fit in guest memory.
    DoesNotFit {
        /// The base given to [`ElfImage::load`].
        base: u64,
        /// Bytes the image needs ([`ElfImage::span`]).
        span: u64,
        /// Length of guest memory.
        mem_len: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len, need } => write!(
                f,
                "ELF file too short: {len} bytes, the ELF header needs {need}"
            ),
            Self::BadMagic => write!(f, "not an ELF file (bad magic)"),
            Self::NotElf64 { class } => {
                write!(f, "not a 64-bit ELF file (EI_CLASS {class}, expected 2)")
            }
            Self::NotLittleEndian { data } => {
                write!(f, "not a little-endian ELF file (EI_DATA {data}, expected 1)")
            }
            Self::BadVersion { version } => {
                write!(f, "unsupported ELF version {version} (expected 1)")
            }
            Self::WrongMachine { machine } => {
                write!(f, "ELF machine {machine} is not x86_64 (62)")
            }
            Self::WrongType { e_type } => write!(
                f,
                "ELF type {e_type} is not ET_DYN (3): the guest must be a static PIE"
            ),
            Self::BadProgramHeaderSize { phentsize } => write!(
                f,
                "program header entry size {phentsize} is not the ELF64 size {PHDR_SIZE}"
            ),
            Self::TooManyProgramHeaders { count, max } => {
                write!(f, "{count} program headers, at most {max} are accepted")
            }
            Self::ProgramHeadersOutOfBounds {
                offset,
                size,
                file_len,
            } => write!(
                f,
                "program header table at offset {offset:#x} ({size:#x} bytes) is outside the \
                 {file_len:#x}-byte file"
            ),
            Self::SegmentOutOfFile {
                index,
                offset,
                filesz,
                file_len,
            } => write!(
                f,
                "segment {index}: file range {offset:#x}+{filesz:#x} is outside the \
                 {file_len:#x}-byte file"
            ),
            Self::FileSizeExceedsMemSize {
                index,
                filesz,
                memsz,
            } => write!(
                f,
                "segment {index}: file size {filesz:#x} exceeds memory size {memsz:#x}"
            ),
            Self::Overflow { what } => write!(f, "arithmetic overflow computing {what}"),
            Self::BadAlignment {
                index,
                align,
                vaddr,
                offset,
            } => write!(
                f,
                "segment {index}: bad alignment {align:#x} (vaddr {vaddr:#x}, offset {offset:#x}): \
                 must be 0 or a power of two with vaddr and offset congruent modulo it"
            ),
            Self::SegmentsNotSorted { a, b } => write!(
                f,
                "loadable segments not sorted by address: segment {b} is below segment {a}"
            ),
            Self::OverlappingSegments { a, b } => write!(
                f,
                "segments {a} and {b} overlap (or share a page with different permissions)"
            ),
            Self::WritableAndExecutable { index } => {
                write!(f, "segment {index} is both writable and executable")
            }
            Self::EntryNotExecutable { entry } => write!(
                f,
                "entry point {entry:#x} is not inside the file data of an executable segment"
            ),
            Self::NoLoadableSegments => write!(f, "no loadable (PT_LOAD) segment"),
            Self::Unsupported { what } => write!(f, "unsupported ELF feature: {what}"),
            Self::BadDynamic { what } => write!(f, "malformed dynamic section: {what}"),
            Self::RelocationTableOutOfBounds { addr, size } => write!(
                f,
                "relocation table at {addr:#x} ({size:#x} bytes) is not inside a segment's file data"
            ),
            Self::TooManyRelocations { count, max } => {
                write!(f, "{count} relocation entries, at most {max} are accepted")
            }
            Self::UnsupportedRelocation { r_type, offset } => write!(
                f,
                "unsupported relocation type {r_type} at {offset:#x} (only R_X86_64_RELATIVE)"
            ),
            Self::RelocationOutOfBounds { offset } => write!(
                f,
                "relocation at {offset:#x} is not inside a loaded segment"
            ),
            Self::BaseNotAligned { base, align } => {
                write!(f, "load base {base:#x} is not aligned to {align:#x}")
            }
            Self::DoesNotFit {
                base,
                span,
                mem_len,
            } => write!(
                f,
                "image of {span:#x} bytes at {base:#x} does not fit in {mem_len:#x} bytes of guest memory"
            ),
        }
    }
}

impl std::error::Error for ElfError {}

/// A validated, non-empty `PT_LOAD` segment (link-time addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    /// Program header index.
    index: usize,
    /// `p_offset`; with `filesz`, known to lie inside the file.
    offset: usize,
    filesz: usize,
    vaddr: u64,
    /// `vaddr + memsz`, known not to overflow.
    vend: u64,
    /// `vaddr` rounded down to a page.
    page_start: u64,
    /// `vend` rounded up to a page, known not to overflow.
    page_end: u64,
    perms: SegmentPerms,
}

/// A validated relocation table inside the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Table {
    /// File offset of the first entry.
    offset: usize,
    /// Size in bytes (a multiple of the entry size, known to lie inside the file).
    size: usize,
}

/// A parsed, validated view of a static-PIE ELF64 x86-64 image.
///
/// Built by [`ElfImage::parse`], which validates everything (headers, segments, dynamic section
/// and every relocation); [`ElfImage::load`] then copies it into guest memory.
#[derive(Clone, PartialEq, Eq)]
pub struct ElfImage<'a> {
    bytes: &'a [u8],
    /// Link-time entry point, inside the file data of an executable segment.
    entry: u64,
    /// Non-empty `PT_LOAD` segments, sorted by address, non-overlapping.
    segments: Vec<Segment>,
    /// Lowest page of the image (link-time).
    min_page: u64,
    /// Page-rounded size of the image.
    span: u64,
    /// Alignment the load bias must have (a power of two, at least `PAGE_SIZE`).
    align: u64,
    rela: Option<Table>,
    relr: Option<Table>,
}

impl fmt::Debug for ElfImage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElfImage")
            .field("file_len", &self.bytes.len())
            .field("entry", &self.entry)
            .field("segments", &self.segments)
            .field("min_page", &self.min_page)
            .field("span", &self.span)
            .field("align", &self.align)
            .field("rela", &self.rela)
            .field("relr", &self.relr)
            .finish()
    }
}

/// Reads `N` bytes at `off`, or `None` if out of bounds.
fn read_array<const N: usize>(bytes: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    bytes.get(off..end)?.try_into().ok()
}

fn read_u16(bytes: &[u8], off: usize) -> Option<u16> {
    read_array(bytes, off).map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], off: usize) -> Option<u32> {
    read_array(bytes, off).map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], off: usize) -> Option<u64> {
    read_array(bytes, off).map(u64::from_le_bytes)
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE.wrapping_sub(1))
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(PAGE_SIZE.wrapping_sub(1)).map(page_down)
}

/// `x` is a multiple of `align`, a non-zero power of two.
fn is_aligned(x: u64, align: u64) -> bool {
    x & align.wrapping_sub(1) == 0
}

/// Converts a `u64` to `usize`, reporting `what` on failure.
fn to_usize(x: u64, what: &'static str) -> Result<usize, ElfError> {
    usize::try_from(x).map_err(|_| ElfError::Overflow { what })
}

fn to_u64(x: usize) -> u64 {
    // usize is at most 64 bits on every supported target; saturate rather than truncate otherwise.
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// One raw program header.
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

impl Phdr {
    fn read(bytes: &[u8], off: usize) -> Option<Self> {
        let field = |rel: usize| off.checked_add(rel);
        Some(Self {
            p_type: read_u32(bytes, field(0)?)?,
            flags: read_u32(bytes, field(4)?)?,
            offset: read_u64(bytes, field(8)?)?,
            vaddr: read_u64(bytes, field(16)?)?,
            // p_paddr at 24 is ignored.
            filesz: read_u64(bytes, field(32)?)?,
            memsz: read_u64(bytes, field(40)?)?,
            align: read_u64(bytes, field(48)?)?,
        })
    }

    /// Checks that the file range of this header lies in the file; returns it as
    /// `(offset, size)`. An empty range is accepted whatever its offset.
    fn file_range(&self, index: usize, file_len: usize) -> Result<(usize, usize), ElfError> {
        if self.filesz == 0 {
            return Ok((0, 0));
        }
        let out = || ElfError::SegmentOutOfFile {
            index,
            offset: self.offset,
            filesz: self.filesz,
            file_len: to_u64(file_len),
        };
        let end = self.offset.checked_add(self.filesz).ok_or_else(out)?;
        if end > to_u64(file_len) {
            return Err(out());
        }
        Ok((
            to_usize(self.offset, "segment file offset")?,
            to_usize(self.filesz, "segment file size")?,
        ))
    }
}

/// Sets a dynamic tag's value, rejecting duplicates.
fn set_once(slot: &mut Option<u64>, value: u64, what: &'static str) -> Result<(), ElfError> {
    if slot.replace(value).is_some() {
        return Err(ElfError::BadDynamic { what });
    }
    Ok(())
}

/// Relocation-related values from the dynamic section.
#[derive(Default)]
struct DynInfo {
    rela: Option<u64>,
    relasz: Option<u64>,
    relaent: Option<u64>,
    relacount: Option<u64>,
    relr: Option<u64>,
    relrsz: Option<u64>,
    relrent: Option<u64>,
}

impl<'a> ElfImage<'a> {
    /// Parses and validates an ELF image.
    ///
    /// Checks: the ELF header (magic, 64-bit, little endian, version 1, x86-64, `ET_DYN`); the
    /// program header table (entry size, at most [`MAX_PROGRAM_HEADERS`], inside the file);
    /// every `PT_LOAD` (file data inside the file, `p_filesz <= p_memsz`, sane alignment, no
    /// address overflow even after page rounding, not both writable and executable); that the
    /// `PT_LOAD`s are sorted, do not overlap, and only share a page when their permissions are
    /// equal; that the entry point lies in the file data of an executable segment; that there is
    /// no `PT_INTERP`, `PT_TLS` or `PT_SHLIB`; and the dynamic section: only `DT_RELA` and
    /// `DT_RELR` relocation tables (no `DT_REL`, PLT relocations or `DT_NEEDED`), each at most
    /// [`MAX_RELOCATIONS`] entries, and every relocation an `R_X86_64_RELATIVE` (or
    /// `R_X86_64_NONE`) whose 8 target bytes lie inside one loaded segment.
    ///
    /// Section headers are ignored. The work done is linear in the file size.
    ///
    /// # Errors
    ///
    /// The first check that fails, as an [`ElfError`] variant naming the offending program
    /// header, tag or relocation.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let file_len = bytes.len();
        let short = || ElfError::TooShort {
            len: file_len,
            need: EHDR_SIZE,
        };
        let ident: [u8; 16] = read_array(bytes, 0).ok_or_else(short)?;
        if ident.get(0..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::BadMagic);
        }
        if file_len < EHDR_SIZE {
            return Err(short());
        }
        let byte = |i: usize| ident.get(i).copied().unwrap_or(0);
        if byte(4) != ELFCLASS64 {
            return Err(ElfError::NotElf64 { class: byte(4) });
        }
        if byte(5) != ELFDATA2LSB {
            return Err(ElfError::NotLittleEndian { data: byte(5) });
        }
        if u32::from(byte(6)) != EV_CURRENT {
            return Err(ElfError::BadVersion {
                version: u32::from(byte(6)),
            });
        }
        let e_type = read_u16(bytes, 16).ok_or_else(short)?;
        let machine = read_u16(bytes, 18).ok_or_else(short)?;
        let version = read_u32(bytes, 20).ok_or_else(short)?;
        let entry = read_u64(bytes, 24).ok_or_else(short)?;
        let phoff = read_u64(bytes, 32).ok_or_else(short)?;
        let phentsize = read_u16(bytes, 54).ok_or_else(short)?;
        let phnum = read_u16(bytes, 56).ok_or_else(short)?;
        if version != EV_CURRENT {
            return Err(ElfError::BadVersion { version });
        }
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine { machine });
        }
        if e_type != ET_DYN {
            return Err(ElfError::WrongType { e_type });
        }
        if usize::from(phentsize) != PHDR_SIZE {
            return Err(ElfError::BadProgramHeaderSize { phentsize });
        }
        if phnum > MAX_PROGRAM_HEADERS {
            return Err(ElfError::TooManyProgramHeaders {
                count: phnum,
                max: MAX_PROGRAM_HEADERS,
            });
        }
        if phnum == 0 {
            return Err(ElfError::NoLoadableSegments);
        }
        let table_size = u64::from(phnum).saturating_mul(to_u64(PHDR_SIZE));
        let table_oob = || ElfError::ProgramHeadersOutOfBounds {
            offset: phoff,
            size: table_size,
            file_len: to_u64(file_len),
        };
        let table_end = phoff.checked_add(table_size).ok_or_else(table_oob)?;
        if table_end > to_u64(file_len) {
            return Err(table_oob());
        }
        let phoff = to_usize(phoff, "program header offset")?;

        let mut segments: Vec<Segment> = Vec::new();
        let mut dynamic: Option<(usize, usize)> = None;
        let mut align = PAGE_SIZE;
        for index in 0..usize::from(phnum) {
            let off = index
                .checked_mul(PHDR_SIZE)
                .and_then(|rel| phoff.checked_add(rel))
                .ok_or_else(table_oob)?;
            let ph = Phdr::read(bytes, off).ok_or_else(table_oob)?;
            match ph.p_type {
                PT_LOAD => {
                    if let Some(seg) = Self::check_load(&ph, index, file_len)? {
                        align = align.max(ph.align);
                        segments.push(seg);
                    }
                }
                PT_DYNAMIC => {
                    if dynamic.is_some() {
                        return Err(ElfError::BadDynamic {
                            what: "more than one PT_DYNAMIC",
                        });
                    }
                    dynamic = Some(ph.file_range(index, file_len)?);
                }
                PT_INTERP => {
                    return Err(ElfError::Unsupported {
                        what: "PT_INTERP (dynamically linked executable)",
                    })
                }
                PT_TLS => {
                    return Err(ElfError::Unsupported {
                        what: "PT_TLS (thread-local storage)",
                    })
                }
                PT_SHLIB => return Err(ElfError::Unsupported { what: "PT_SHLIB" }),
                // PT_NULL, PT_NOTE, PT_PHDR, PT_GNU_STACK, PT_GNU_RELRO, PT_GNU_EH_FRAME, ...
                // need no action from a loader that copies the image and relocates it.
                _ => {}
            }
        }

        let first = segments.first().ok_or(ElfError::NoLoadableSegments)?;
        let min_page = first.page_start;
        let mut max_end = first.page_end;
        for pair in segments.windows(2) {
            if let [a, b] = pair {
                if b.vaddr < a.vaddr {
                    return Err(ElfError::SegmentsNotSorted {
                        a: a.index,
                        b: b.index,
                    });
                }
            }
        }
        for (i, a) in segments.iter().enumerate() {
            max_end = max_end.max(a.page_end);
            for b in segments.iter().skip(i.saturating_add(1)) {
                let raw_overlap = a.vaddr < b.vend && b.vaddr < a.vend;
                let page_overlap = a.page_start < b.page_end && b.page_start < a.page_end;
                if raw_overlap || (page_overlap && a.perms != b.perms) {
                    return Err(ElfError::OverlappingSegments {
                        a: a.index,
                        b: b.index,
                    });
                }
            }
        }
        let span = max_end
            .checked_sub(min_page)
            .ok_or(ElfError::Overflow { what: "image span" })?;

        let entry_ok = segments.iter().any(|s| {
            s.perms.execute
                && entry >= s.vaddr
                && entry
                    .checked_sub(s.vaddr)
                    .is_some_and(|rel| rel < to_u64(s.filesz))
        });
        if !entry_ok {
            return Err(ElfError::EntryNotExecutable { entry });
        }

        let mut image = Self {
            bytes,
            entry,
            segments,
            min_page,
            span,
            align,
            rela: None,
            relr: None,
        };
        if let Some((offset, size)) = dynamic {
            image.parse_dynamic(offset, size)?;
        }
        Ok(image)
    }

    /// Validates one `PT_LOAD`; returns `None` for an (ignored) empty segment.
    fn check_load(ph: &Phdr, index: usize, file_len: usize) -> Result<Option<Segment>, ElfError> {
        let perms = SegmentPerms::from_flags(ph.flags);
        if perms.write && perms.execute {
            return Err(ElfError::WritableAndExecutable { index });
        }
        if ph.filesz > ph.memsz {
            return Err(ElfError::FileSizeExceedsMemSize {
                index,
                filesz: ph.filesz,
                memsz: ph.memsz,
            });
        }
        let (offset, filesz) = ph.file_range(index, file_len)?;
        let bad_align = || ElfError::BadAlignment {
            index,
            align: ph.align,
            vaddr: ph.vaddr,
            offset: ph.offset,
        };
        // p_align 0 and 1 mean no constraint.
        if ph.align > 1 {
            if !ph.align.is_power_of_two() {
                return Err(bad_align());
            }
            let mask = ph.align.wrapping_sub(1);
            if ph.vaddr & mask != ph.offset & mask {
                return Err(bad_align());
            }
        }
        let vend = ph.vaddr.checked_add(ph.memsz).ok_or(ElfError::Overflow {
            what: "segment end (p_vaddr + p_memsz)",
        })?;
        let page_end = page_up(vend).ok_or(ElfError::Overflow {
            what: "segment end rounded up to a page",
        })?;
        if ph.memsz == 0 {
            return Ok(None);
        }
        Ok(Some(Segment {
            index,
            offset,
            filesz,
            vaddr: ph.vaddr,
            vend,
            page_start: page_down(ph.vaddr),
            page_end,
            perms,
        }))
    }

    /// Parses the dynamic section at `[offset, offset + size)` of the file and validates the
    /// relocation tables it names.
    fn parse_dynamic(&mut self, offset: usize, size: usize) -> Result<(), ElfError> {
        let mut info = DynInfo::default();
        let table = offset
            .checked_add(size)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or(ElfError::Overflow {
                what: "dynamic section range",
            })?;
        for entry in table.chunks_exact(DYN_SIZE) {
            let tag = read_u64(entry, 0).ok_or(ElfError::BadDynamic {
                what: "truncated entry",
            })?;
            let val = read_u64(entry, 8).ok_or(ElfError::BadDynamic {
                what: "truncated entry",
            })?;
            match tag {
                DT_NULL => break,
                DT_RELA => set_once(&mut info.rela, val, "duplicate DT_RELA")?,
                DT_RELASZ => set_once(&mut info.relasz, val, "duplicate DT_RELASZ")?,
                DT_RELAENT => set_once(&mut info.relaent, val, "duplicate DT_RELAENT")?,
                DT_RELACOUNT => set_once(&mut info.relacount, val, "duplicate DT_RELACOUNT")?,
                DT_RELR => set_once(&mut info.relr, val, "duplicate DT_RELR")?,
                DT_RELRSZ => set_once(&mut info.relrsz, val, "duplicate DT_RELRSZ")?,
                DT_RELRENT => set_once(&mut info.relrent, val, "duplicate DT_RELRENT")?,
                DT_NEEDED => {
                    return Err(ElfError::Unsupported {
                        what: "DT_NEEDED (shared library dependencies)",
                    })
                }
                DT_REL => {
                    return Err(ElfError::Unsupported {
                        what: "DT_REL (relocations without addends)",
                    })
                }
                DT_RELSZ if val != 0 => {
                    return Err(ElfError::Unsupported {
                        what: "DT_RELSZ (relocations without addends)",
                    })
                }
                DT_PLTRELSZ if val != 0 => {
                    return Err(ElfError::Unsupported {
                        what: "DT_JMPREL/DT_PLTRELSZ (PLT relocations)",
                    })
                }
                DT_ANDROID_REL | DT_ANDROID_RELSZ | DT_ANDROID_RELA | DT_ANDROID_RELASZ
                | DT_ANDROID_RELR | DT_ANDROID_RELRSZ => {
                    return Err(ElfError::Unsupported {
                        what: "Android packed relocations",
                    })
                }
                // Symbol tables, hashes, flags, DT_DEBUG, init/fini arrays (a static PIE built
                // by rustc has none to run), ... need no action here.
                _ => {}
            }
        }

        self.rela = self.table(info.rela, info.relasz, RELA_SIZE, "DT_RELA")?;
        if info.relaent.is_some_and(|ent| ent != to_u64(RELA_SIZE)) {
            return Err(ElfError::BadDynamic {
                what: "DT_RELAENT is not 24",
            });
        }
        let rela_count = self.rela.map_or(0, |t| t.size.wrapping_div(RELA_SIZE));
        if info
            .relacount
            .is_some_and(|count| count > to_u64(rela_count))
        {
            return Err(ElfError::BadDynamic {
                what: "DT_RELACOUNT exceeds the number of DT_RELA entries",
            });
        }
        self.relr = self.table(info.relr, info.relrsz, RELR_SIZE, "DT_RELR")?;
        if info.relrent.is_some_and(|ent| ent != to_u64(RELR_SIZE)) {
            return Err(ElfError::BadDynamic {
                what: "DT_RELRENT is not 8",
            });
        }

        // Validate every relocation now, so that `load` cannot fail half-way.
        self.for_each_relr(|addr| self.target(addr).map(drop))?;
        self.for_each_rela(|offset, _addend| self.target(offset).map(drop))?;
        Ok(())
    }

    /// Locates a relocation table given its address and size tags.
    fn table(
        &self,
        addr: Option<u64>,
        size: Option<u64>,
        entry_size: usize,
        what: &'static str,
    ) -> Result<Option<Table>, ElfError> {
        let (addr, size) = match (addr, size) {
            // An empty table needs no address (and its address is not checked).
            (_, Some(0)) | (None, None) => return Ok(None),
            (Some(addr), Some(size)) => (addr, size),
            (Some(_), None) => {
                return Err(ElfError::BadDynamic {
                    what: if entry_size == RELA_SIZE {
                        "DT_RELA without DT_RELASZ"
                    } else {
                        "DT_RELR without DT_RELRSZ"
                    },
                })
            }
            (None, Some(_)) => {
                return Err(ElfError::BadDynamic {
                    what: if entry_size == RELA_SIZE {
                        "DT_RELASZ without DT_RELA"
                    } else {
                        "DT_RELRSZ without DT_RELR"
                    },
                })
            }
        };
        let entry_size_u64 = to_u64(entry_size);
        if size.checked_rem(entry_size_u64) != Some(0) {
            return Err(ElfError::BadDynamic {
                what: if entry_size == RELA_SIZE {
                    "DT_RELASZ is not a multiple of 24"
                } else {
                    "DT_RELRSZ is not a multiple of 8"
                },
            });
        }
        let count = size.checked_div(entry_size_u64).unwrap_or(0);
        if count > MAX_RELOCATIONS {
            return Err(ElfError::TooManyRelocations {
                count,
                max: MAX_RELOCATIONS,
            });
        }
        let oob = || ElfError::RelocationTableOutOfBounds { addr, size };
        let end = addr.checked_add(size).ok_or_else(oob)?;
        // The table must lie in the file-backed part of one segment.
        let seg = self
            .segments
            .iter()
            .find(|s| {
                addr >= s.vaddr
                    && s.vaddr
                        .checked_add(to_u64(s.filesz))
                        .is_some_and(|file_end| end <= file_end)
            })
            .ok_or_else(oob)?;
        let rel = to_usize(addr.checked_sub(seg.vaddr).ok_or_else(oob)?, what)?;
        let offset = seg.offset.checked_add(rel).ok_or_else(oob)?;
        let size = to_usize(size, what)?;
        // Belt and braces: the segment's file range is inside the file, so this holds.
        offset
            .checked_add(size)
            .and_then(|end| self.bytes.get(offset..end))
            .ok_or_else(oob)?;
        Ok(Some(Table { offset, size }))
    }

    /// Bytes of a validated table.
    fn table_bytes(&self, table: Option<Table>) -> &'a [u8] {
        let bytes: &'a [u8] = self.bytes;
        table
            .and_then(|t| {
                t.offset
                    .checked_add(t.size)
                    .and_then(|end| bytes.get(t.offset..end))
            })
            .unwrap_or(&[])
    }

    /// Calls `f(r_offset, r_addend)` for every `R_X86_64_RELATIVE` entry of the `DT_RELA` table
    /// (skipping `R_X86_64_NONE`), and fails on any other type.
    fn for_each_rela(
        &self,
        mut f: impl FnMut(u64, u64) -> Result<(), ElfError>,
    ) -> Result<(), ElfError> {
        for entry in self.table_bytes(self.rela).chunks_exact(RELA_SIZE) {
            let truncated = ElfError::BadDynamic {
                what: "truncated DT_RELA entry",
            };
            let offset = read_u64(entry, 0).ok_or(truncated.clone())?;
            let info = read_u64(entry, 8).ok_or(truncated.clone())?;
            let addend = read_u64(entry, 16).ok_or(truncated)?;
            // ELF64_R_TYPE: the low 32 bits of r_info.
            let r_type = u32::try_from(info & 0xffff_ffff).unwrap_or(u32::MAX);
            match r_type {
                R_X86_64_NONE => {}
                R_X86_64_RELATIVE => f(offset, addend)?,
                _ => return Err(ElfError::UnsupportedRelocation { r_type, offset }),
            }
        }
        Ok(())
    }

    /// Calls `f(address)` for every relocation encoded in the `DT_RELR` table.
    ///
    /// Format (generic ABI): an even word is an address to relocate, and the next address is the
    /// word after it; an odd word is a bitmap whose bit `i` (1..=63) relocates the `i - 1`th word
    /// from the next address, after which the next address advances by 63 words.
    fn for_each_relr(
        &self,
        mut f: impl FnMut(u64) -> Result<(), ElfError>,
    ) -> Result<(), ElfError> {
        let overflow = ElfError::Overflow {
            what: "DT_RELR address",
        };
        let mut next: Option<u64> = None;
        for word in self.table_bytes(self.relr).chunks_exact(RELR_SIZE) {
            let word = read_u64(word, 0).ok_or(ElfError::BadDynamic {
                what: "truncated DT_RELR entry",
            })?;
            if word & 1 == 0 {
                f(word)?;
                next = Some(word.checked_add(WORD).ok_or(overflow.clone())?);
            } else {
                let start = next.ok_or(ElfError::BadDynamic {
                    what: "DT_RELR bitmap before any address entry",
                })?;
                let mut bits = word >> 1;
                let mut addr = start;
                while bits != 0 {
                    if bits & 1 != 0 {
                        f(addr)?;
                    }
                    bits >>= 1;
                    if bits != 0 {
                        addr = addr.checked_add(WORD).ok_or(overflow.clone())?;
                    }
                }
                next = Some(start.checked_add(63 * WORD).ok_or(overflow.clone())?);
            }
        }
        Ok(())
    }

    /// Offset, relative to the image's lowest page, of the 8 bytes a relocation at link-time
    /// address `addr` writes; they must lie inside one loaded segment.
    fn target(&self, addr: u64) -> Result<u64, ElfError> {
        let oob = ElfError::RelocationOutOfBounds { offset: addr };
        let end = addr.checked_add(WORD).ok_or(oob.clone())?;
        // Segments are sorted and disjoint: the candidate is the last one starting at or below.
        let idx = self.segments.partition_point(|s| s.vaddr <= addr);
        let seg = idx
            .checked_sub(1)
            .and_then(|i| self.segments.get(i))
            .ok_or(oob.clone())?;
        if end > seg.vend {
            return Err(oob);
        }
        addr.checked_sub(self.min_page).ok_or(oob)
    }

    /// Bytes of guest memory the image needs: the page-rounded span of all `PT_LOAD` segments,
    /// from the lowest segment page to the highest segment end page.
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Alignment required of the load bias (`base` minus the image's lowest link-time page; for
    /// rust-lld images, whose lowest page is 0, simply of `base`): the largest `p_align` of the
    /// `PT_LOAD` segments, and at least [`PAGE_SIZE`]. A power of two.
    pub fn alignment(&self) -> u64 {
        self.align
    }

    /// Loads the image into guest memory.
    ///
    /// `mem` covers guest addresses `[0, mem.len())`; the image occupies `[base, base + span)`,
    /// where `base` must be page aligned (and satisfy [`ElfImage::alignment`]). Zero-fills the
    /// whole span, copies each segment's file data (so bss and gaps between segments are
    /// zero), then applies the relocations: `DT_RELR` (`*loc += bias`) and `DT_RELA`
    /// `R_X86_64_RELATIVE` (`*loc = bias + r_addend`), where `bias = base - lowest page`
    /// (so `base + r_addend` for rust-lld images). Bytes of `mem` outside the span are never
    /// touched.
    ///
    /// # Errors
    ///
    /// Everything about the file was validated by [`ElfImage::parse`]; this only fails, before
    /// writing anything, with [`ElfError::BaseNotAligned`] or [`ElfError::DoesNotFit`].
    pub fn load(&self, mem: &mut [u8], base: u64) -> Result<LoadedImage, ElfError> {
        if !is_aligned(base, PAGE_SIZE) {
            return Err(ElfError::BaseNotAligned {
                base,
                align: PAGE_SIZE,
            });
        }
        let bias = base.wrapping_sub(self.min_page);
        if !is_aligned(bias, self.align) {
            return Err(ElfError::BaseNotAligned {
                base,
                align: self.align,
            });
        }
        let mem_len = to_u64(mem.len());
        let no_fit = ElfError::DoesNotFit {
            base,
            span: self.span,
            mem_len,
        };
        let end = base
            .checked_add(self.span)
            .filter(|&end| end <= mem_len)
            .ok_or(no_fit.clone())?;
        let region = to_usize(base, "load base")
            .ok()
            .zip(to_usize(end, "image end").ok())
            .and_then(|(start, end)| mem.get_mut(start..end))
            .ok_or(no_fit)?;

        region.fill(0);
        for seg in &self.segments {
            let rel = seg
                .vaddr
                .checked_sub(self.min_page)
                .ok_or(ElfError::Overflow {
                    what: "segment offset in image",
                })?;
            let rel = to_usize(rel, "segment offset in image")?;
            let src = seg
                .offset
                .checked_add(seg.filesz)
                .and_then(|end| self.bytes.get(seg.offset..end));
            let dst = rel
                .checked_add(seg.filesz)
                .and_then(|end| region.get_mut(rel..end));
            match (src, dst) {
                (Some(src), Some(dst)) => dst.copy_from_slice(src),
                _ => {
                    return Err(ElfError::Overflow {
                        what: "segment copy range",
                    })
                }
            }
        }

        self.for_each_relr(|addr| {
            let at = to_usize(self.target(addr)?, "relocation offset")?;
            let value =
                read_u64(region, at).ok_or(ElfError::RelocationOutOfBounds { offset: addr })?;
            write_u64(region, at, value.wrapping_add(bias), addr)
        })?;
        self.for_each_rela(|offset, addend| {
            let at = to_usize(self.target(offset)?, "relocation offset")?;
            write_u64(region, at, addend.wrapping_add(bias), offset)
        })?;

        let to_guest = |addr: u64, what: &'static str| {
            addr.checked_sub(self.min_page)
                .and_then(|rel| base.checked_add(rel))
                .ok_or(ElfError::Overflow { what })
        };
        let mut segments: Vec<LoadedSegment> = Vec::with_capacity(self.segments.len());
        for seg in &self.segments {
            let start = to_guest(seg.page_start, "segment start")?;
            let seg_end = to_guest(seg.page_end, "segment end")?;
            match segments.last_mut() {
                // Same permissions sharing a page: one mapping.
                Some(last) if last.perms == seg.perms && start < last.end => {
                    last.end = last.end.max(seg_end);
                }
                _ => segments.push(LoadedSegment {
                    start,
                    end: seg_end,
                    perms: seg.perms,
                }),
            }
        }
        Ok(LoadedImage {
            base,
            entry: to_guest(self.entry, "entry point")?,
            segments,
            end,
        })
    }
}

/// Writes a little-endian `u64` at `at` in `region`; `addr` is reported on failure.
fn write_u64(region: &mut [u8], at: usize, value: u64, addr: u64) -> Result<(), ElfError> {
    at.checked_add(8)
        .and_then(|end| region.get_mut(at..end))
        .ok_or(ElfError::RelocationOutOfBounds { offset: addr })?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::as_conversions
)]
mod tests {
    use super::*;

    const R: u32 = PF_R;
    const RX: u32 = PF_R | PF_X;
    const RW: u32 = PF_R | PF_W;
    const PT_NULL: u32 = 0;
    const PT_GNU_STACK: u32 = 0x6474_e551;
    const R_X86_64_64: u64 = 1;

    // Fixture layout, as file offsets; link-time addresses are `vbase + offset`.
    // 0x0000 R  segment [0x0000, 0x2000): ELF header, program headers, RELA at 0x1000,
    //                                      RELR at 0x1800, rodata at 0x1c00
    // 0x2000 RX segment [0x2000, 0x2100): code (the entry point)
    // 0x3000 RW segment [0x3000, 0x3400) in the file, [0x3000, 0x6000) in memory (bss after
    //                                      0x3400); relocated data at 0x3000, DYNAMIC at 0x3200
    const RELA_OFF: usize = 0x1000;
    const RELR_OFF: usize = 0x1800;
    const RODATA_OFF: usize = 0x1c00;
    const CODE_OFF: usize = 0x2000;
    const DATA_OFF: usize = 0x3000;
    const DYN_OFF: usize = 0x3200;
    const FILE_LEN: usize = 0x3400;
    const SPAN: u64 = 0x6000;
    const CODE: [u8; 3] = [0xf4, 0xeb, 0xfd]; // hlt; jmp -3

    #[derive(Clone, Copy, Debug)]
    struct Ph {
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    /// A synthetic static PIE, editable before `build`.
    #[derive(Clone)]
    struct Fixture {
        vbase: u64,
        e_type: u16,
        machine: u16,
        entry: u64,
        phnum: Option<u16>,
        phdrs: Vec<Ph>,
        /// (r_offset, r_info, r_addend)
        rela: Vec<(u64, u64, u64)>,
        relr: Vec<u64>,
        extra_dyn: Vec<(u64, u64)>,
        dyn_override: Option<Vec<(u64, u64)>>,
        data: Vec<(usize, Vec<u8>)>,
    }

    fn ph(p_type: u32, flags: u32, offset: u64, vaddr: u64, size: (u64, u64), align: u64) -> Ph {
        Ph {
            p_type,
            flags,
            offset,
            vaddr,
            filesz: size.0,
            memsz: size.1,
            align,
        }
    }

    impl Fixture {
        fn new() -> Self {
            Self::with_vbase(0)
        }

        fn with_vbase(v: u64) -> Self {
            let rodata: Vec<u8> = (0..0x400u32).map(|i| (i % 251) as u8 | 1).collect();
            Self {
                vbase: v,
                e_type: ET_DYN,
                machine: EM_X86_64,
                entry: v + 0x2000,
                phnum: None,
                phdrs: vec![
                    ph(PT_LOAD, R, 0, v, (0x2000, 0x2000), 0x1000),
                    ph(PT_LOAD, RX, 0x2000, v + 0x2000, (0x100, 0x100), 0x1000),
                    ph(PT_LOAD, RW, 0x3000, v + 0x3000, (0x400, 0x3000), 0x1000),
                    ph(PT_DYNAMIC, RW, 0x3200, v + 0x3200, (0x200, 0x200), 8),
                    ph(PT_GNU_STACK, RW, 0, 0, (0, 0), 0),
                ],
                rela: vec![
                    (v + 0x3000, u64::from(R_X86_64_RELATIVE), v + 0x2000),
                    (v + 0x3008, u64::from(R_X86_64_RELATIVE), v + 0x1c00),
                    (v + 0x3010, u64::from(R_X86_64_RELATIVE), v + 0x3100),
                ],
                relr: Vec::new(),
                extra_dyn: Vec::new(),
                dyn_override: None,
                data: vec![
                    (CODE_OFF, CODE.to_vec()),
                    (RODATA_OFF, rodata),
                    (DATA_OFF + 0x100, vec![0x5a; 0x100]),
                ],
            }
        }

        fn dynamic(&self) -> Vec<(u64, u64)> {
            if let Some(d) = &self.dyn_override {
                return d.clone();
            }
            let v = self.vbase;
            let mut d = vec![(0x1e, 8), (0x6fff_fffb, 0x0800_0001), (0x15, 0)];
            if !self.rela.is_empty() {
                let n = self.rela.len() as u64;
                d.extend([
                    (DT_RELA, v + RELA_OFF as u64),
                    (DT_RELASZ, n * 24),
                    (DT_RELAENT, 24),
                    (DT_RELACOUNT, n),
                ]);
            }
            if !self.relr.is_empty() {
                d.extend([
                    (DT_RELR, v + RELR_OFF as u64),
                    (DT_RELRSZ, self.relr.len() as u64 * 8),
                    (DT_RELRENT, 8),
                ]);
            }
            d.extend(self.extra_dyn.iter().copied());
            d.push((DT_NULL, 0));
            d
        }

        fn build(&self) -> Vec<u8> {
            let mut f = vec![0u8; FILE_LEN];
            let p16 =
                |f: &mut Vec<u8>, o: usize, x: u16| f[o..o + 2].copy_from_slice(&x.to_le_bytes());
            let p32 =
                |f: &mut Vec<u8>, o: usize, x: u32| f[o..o + 4].copy_from_slice(&x.to_le_bytes());
            let p64 =
                |f: &mut Vec<u8>, o: usize, x: u64| f[o..o + 8].copy_from_slice(&x.to_le_bytes());
            f[0..4].copy_from_slice(b"\x7fELF");
            f[4] = ELFCLASS64;
            f[5] = ELFDATA2LSB;
            f[6] = 1;
            p16(&mut f, 16, self.e_type);
            p16(&mut f, 18, self.machine);
            p32(&mut f, 20, EV_CURRENT);
            p64(&mut f, 24, self.entry);
            p64(&mut f, 32, EHDR_SIZE as u64);
            p16(&mut f, 52, EHDR_SIZE as u16);
            p16(&mut f, 54, PHDR_SIZE as u16);
            p16(&mut f, 56, self.phnum.unwrap_or(self.phdrs.len() as u16));
            p16(&mut f, 58, 64);
            for (i, h) in self.phdrs.iter().enumerate() {
                let o = EHDR_SIZE + i * PHDR_SIZE;
                assert!(
                    o + PHDR_SIZE <= RELA_OFF,
                    "too many fixture program headers"
                );
                p32(&mut f, o, h.p_type);
                p32(&mut f, o + 4, h.flags);
                p64(&mut f, o + 8, h.offset);
                p64(&mut f, o + 16, h.vaddr);
                p64(&mut f, o + 24, h.vaddr);
                p64(&mut f, o + 32, h.filesz);
                p64(&mut f, o + 40, h.memsz);
                p64(&mut f, o + 48, h.align);
            }
            for (o, bytes) in &self.data {
                f[*o..*o + bytes.len()].copy_from_slice(bytes);
            }
            assert!(self.rela.len() * 24 <= RELR_OFF - RELA_OFF);
            for (i, (off, info, addend)) in self.rela.iter().enumerate() {
                let o = RELA_OFF + i * 24;
                p64(&mut f, o, *off);
                p64(&mut f, o + 8, *info);
                p64(&mut f, o + 16, *addend);
            }
            assert!(self.relr.len() * 8 <= RODATA_OFF - RELR_OFF);
            for (i, w) in self.relr.iter().enumerate() {
                p64(&mut f, RELR_OFF + i * 8, *w);
            }
            let d = self.dynamic();
            assert!(d.len() * 16 <= FILE_LEN - DYN_OFF);
            for (i, (tag, val)) in d.iter().enumerate() {
                p64(&mut f, DYN_OFF + i * 16, *tag);
                p64(&mut f, DYN_OFF + i * 16 + 8, *val);
            }
            f
        }

        fn parse_err(&self) -> ElfError {
            let bytes = self.build();
            ElfImage::parse(&bytes).expect_err("fixture should be rejected")
        }
    }

    /// Loads into `mem_len` bytes of guest memory prefilled with 0xcc.
    fn load(bytes: &[u8], base: u64, mem_len: usize) -> (Result<LoadedImage, ElfError>, Vec<u8>) {
        let image = ElfImage::parse(bytes).expect("fixture should parse");
        let mut mem = vec![0xccu8; mem_len];
        let r = image.load(&mut mem, base);
        (r, mem)
    }

    fn word(mem: &[u8], at: u64) -> u64 {
        u64::from_le_bytes(mem[at as usize..at as usize + 8].try_into().unwrap())
    }

    const fn perms(read: bool, write: bool, execute: bool) -> SegmentPerms {
        SegmentPerms {
            read,
            write,
            execute,
        }
    }

    #[test]
    fn valid_image_loads() {
        let fx = Fixture::new();
        let file = fx.build();
        let image = ElfImage::parse(&file).unwrap();
        assert_eq!(image.span(), SPAN);
        assert_eq!(image.alignment(), PAGE_SIZE);
        assert!(format!("{image:?}").contains("span"));

        let base = 0x10000u64;
        let (r, mem) = load(&file, base, 0x20000);
        let loaded = r.unwrap();
        let b = base as usize;
        assert_eq!(
            loaded,
            LoadedImage {
                base,
                entry: base + 0x2000,
                segments: vec![
                    LoadedSegment {
                        start: base,
                        end: base + 0x2000,
                        perms: perms(true, false, false)
                    },
                    LoadedSegment {
                        start: base + 0x2000,
                        end: base + 0x3000,
                        perms: perms(true, false, true)
                    },
                    LoadedSegment {
                        start: base + 0x3000,
                        end: base + 0x6000,
                        perms: perms(true, true, false)
                    },
                ],
                end: base + SPAN,
            }
        );
        // Outside the span: untouched.
        assert!(mem[..b].iter().all(|&x| x == 0xcc));
        assert!(mem[b + SPAN as usize..].iter().all(|&x| x == 0xcc));
        // File data copied (headers, rodata, code, data, dynamic).
        assert_eq!(&mem[b..b + 0x3000][..0x100], &file[..0x100]);
        assert_eq!(&mem[b + 0x1c00..b + 0x2000], &file[0x1c00..0x2000]);
        assert_eq!(&mem[b + 0x2000..b + 0x2100], &file[0x2000..0x2100]);
        assert_eq!(&mem[b + 0x3018..b + 0x3400], &file[0x3018..0x3400]);
        // Gap after the code segment and bss: zero.
        assert!(mem[b + 0x2100..b + 0x3000].iter().all(|&x| x == 0));
        assert!(mem[b + 0x3400..b + 0x6000].iter().all(|&x| x == 0));
        // Relocations.
        assert_eq!(word(&mem, base + 0x3000), base + 0x2000);
        assert_eq!(word(&mem, base + 0x3008), base + 0x1c00);
        assert_eq!(word(&mem, base + 0x3010), base + 0x3100);
        assert_eq!(&mem[b + 0x2000..b + 0x2003], &CODE);
    }

    #[test]
    fn load_at_zero_and_end_of_memory() {
        let file = Fixture::new().build();
        let (r, mem) = load(&file, 0, SPAN as usize);
        let loaded = r.unwrap();
        assert_eq!(loaded.entry, 0x2000);
        assert_eq!(loaded.end, SPAN);
        assert_eq!(word(&mem, 0x3000), 0x2000);
        // Exactly fits at the end of a larger memory.
        let (r, _) = load(&file, 0x4000, 0x4000 + SPAN as usize);
        assert_eq!(r.unwrap().end, 0x4000 + SPAN);
    }

    #[test]
    fn relocations_scale_with_base() {
        // Load at two bases: relocated words differ by the base difference, all else is equal.
        let mut fx = Fixture::new();
        fx.relr = vec![0x3020, 0b1011]; // 0x3020, then bitmap: 0x3028, 0x3038
        let file = fx.build();
        let (r1, m1) = load(&file, 0x1000, 0x20000);
        let (r2, m2) = load(&file, 0x9000, 0x20000);
        r1.unwrap();
        r2.unwrap();
        let relocated = [0x3000u64, 0x3008, 0x3010, 0x3020, 0x3028, 0x3038];
        for off in 0..SPAN {
            let (a, b) = (m1[(0x1000 + off) as usize], m2[(0x9000 + off) as usize]);
            if !relocated.iter().any(|r| (*r..r + 8).contains(&off)) {
                assert_eq!(a, b, "offset {off:#x}");
            }
        }
        for r in relocated {
            assert_eq!(
                word(&m2, 0x9000 + r).wrapping_sub(word(&m1, 0x1000 + r)),
                0x8000
            );
        }
    }

    #[test]
    fn relr_applied() {
        let mut fx = Fixture::new();
        fx.rela.clear();
        // Implicit addends stored in the data.
        let mut data = Vec::new();
        for addend in [0x2000u64, 0x1c00, 0, 0x1234, 0x3333, 0x3000] {
            data.extend_from_slice(&addend.to_le_bytes());
        }
        fx.data.push((DATA_OFF + 0x40, data));
        // 0x3040 (address), bitmap bits 1,2: 0x3048, 0x3050; bit 4 -> 0x3060.
        // Then a second bitmap continuing at 0x3048 + 63 * 8 = 0x3240: bit 1 -> 0x3240.
        fx.relr = vec![0x3040, 0b1_0111, 0b11];
        let file = fx.build();
        let base = 0x40000u64;
        let (r, mem) = load(&file, base, 0x80000);
        r.unwrap();
        assert_eq!(word(&mem, base + 0x3040), base + 0x2000);
        assert_eq!(word(&mem, base + 0x3048), base + 0x1c00);
        assert_eq!(word(&mem, base + 0x3050), base);
        assert_eq!(word(&mem, base + 0x3058), 0x1234); // bit 3 clear
        assert_eq!(word(&mem, base + 0x3060), base + 0x3333);
        // 0x3240 is in the dynamic section (DT_RELA tag area); it gets relocated too.
        let dyn_word = u64::from_le_bytes(file[0x3240..0x3248].try_into().unwrap());
        assert_eq!(word(&mem, base + 0x3240), dyn_word.wrapping_add(base));
    }

    #[test]
    fn negative_addend_and_none_relocation() {
        let mut fx = Fixture::new();
        fx.rela
            .push((0x3018, u64::from(R_X86_64_RELATIVE), (-8i64) as u64));
        fx.rela
            .push((0xdead_beef_0000, u64::from(R_X86_64_NONE), 7)); // ignored
        let file = fx.build();
        let (r, mem) = load(&file, 0x10000, 0x20000);
        r.unwrap();
        assert_eq!(word(&mem, 0x10000 + 0x3018), 0x10000 - 8);
    }

    #[test]
    fn nonzero_link_base() {
        // An ET_DYN linked at 0x400000: the lowest page goes at `base`.
        let fx = Fixture::with_vbase(0x40_0000);
        let file = fx.build();
        let base = 0x8000u64;
        let (r, mem) = load(&file, base, 0x20000);
        let loaded = r.unwrap();
        assert_eq!(loaded.entry, base + 0x2000);
        assert_eq!(loaded.end, base + SPAN);
        assert_eq!(loaded.segments[0].start, base);
        assert_eq!(word(&mem, base + 0x3000), base + 0x2000);
        assert_eq!(word(&mem, base + 0x3010), base + 0x3100);
    }

    #[test]
    fn no_dynamic_section() {
        let mut fx = Fixture::new();
        fx.phdrs.remove(3);
        fx.rela.clear();
        let file = fx.build();
        let (r, mem) = load(&file, 0x1000, 0x10000);
        r.unwrap();
        assert_eq!(word(&mem, 0x1000 + 0x3000), 0); // nothing relocated
    }

    #[test]
    fn same_permission_segments_sharing_a_page_merge() {
        let mut fx = Fixture::new();
        // Split the RW segment in two, the second starting mid-page right after the first.
        fx.phdrs[2] = ph(PT_LOAD, RW, 0x3000, 0x3000, (0x300, 0x300), 0x1000);
        fx.phdrs
            .insert(3, ph(PT_LOAD, RW, 0x3300, 0x3300, (0x100, 0x2d00), 0x1000));
        let file = fx.build();
        let (r, _) = load(&file, 0x1000, 0x10000);
        let segs = r.unwrap().segments;
        assert_eq!(segs.len(), 3);
        assert_eq!((segs[2].start, segs[2].end), (0x4000, 0x7000));
        // Merely adjacent segments are not merged.
        let mut fx = Fixture::new();
        fx.phdrs[0] = ph(PT_LOAD, R, 0, 0, (0x1000, 0x1000), 0x1000);
        fx.phdrs
            .insert(1, ph(PT_LOAD, R, 0x1000, 0x1000, (0x1000, 0x1000), 0x1000));
        let file = fx.build();
        let (r, _) = load(&file, 0x1000, 0x10000);
        assert_eq!(r.unwrap().segments.len(), 4);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let file = Fixture::new().build();
        ElfImage::parse(&file).unwrap();
        for len in 0..file.len() {
            assert!(
                ElfImage::parse(&file[..len]).is_err(),
                "prefix {len} parsed"
            );
        }
        assert_eq!(
            ElfImage::parse(&file[..10]),
            Err(ElfError::TooShort { len: 10, need: 64 })
        );
        assert_eq!(
            ElfImage::parse(&file[..63]),
            Err(ElfError::TooShort { len: 63, need: 64 })
        );
        assert!(matches!(
            ElfImage::parse(&file[..0x3300]),
            Err(ElfError::SegmentOutOfFile { index: 2, .. })
        ));
    }

    #[test]
    fn header_checks() {
        let good = Fixture::new().build();
        let patched = |o: usize, bytes: &[u8]| {
            let mut f = good.clone();
            f[o..o + bytes.len()].copy_from_slice(bytes);
            ElfImage::parse(&f).map(|_| ())
        };
        assert_eq!(patched(0, b"\x7fELG"), Err(ElfError::BadMagic));
        assert_eq!(patched(4, &[1]), Err(ElfError::NotElf64 { class: 1 }));
        assert_eq!(patched(5, &[2]), Err(ElfError::NotLittleEndian { data: 2 }));
        assert_eq!(patched(6, &[0]), Err(ElfError::BadVersion { version: 0 }));
        assert_eq!(
            patched(20, &2u32.to_le_bytes()),
            Err(ElfError::BadVersion { version: 2 })
        );
        assert_eq!(
            patched(18, &3u16.to_le_bytes()),
            Err(ElfError::WrongMachine { machine: 3 })
        );
        assert_eq!(
            patched(16, &2u16.to_le_bytes()),
            Err(ElfError::WrongType { e_type: 2 })
        );
        assert_eq!(
            patched(16, &1u16.to_le_bytes()),
            Err(ElfError::WrongType { e_type: 1 })
        );
        assert_eq!(
            patched(54, &32u16.to_le_bytes()),
            Err(ElfError::BadProgramHeaderSize { phentsize: 32 })
        );
        assert_eq!(
            patched(56, &0u16.to_le_bytes()),
            Err(ElfError::NoLoadableSegments)
        );
        assert_eq!(
            patched(32, &(FILE_LEN as u64 - 100).to_le_bytes()),
            Err(ElfError::ProgramHeadersOutOfBounds {
                offset: FILE_LEN as u64 - 100,
                size: 5 * 56,
                file_len: FILE_LEN as u64
            })
        );
        assert!(matches!(
            patched(32, &u64::MAX.to_le_bytes()),
            Err(ElfError::ProgramHeadersOutOfBounds { .. })
        ));
    }

    #[test]
    fn program_header_limit() {
        let mut fx = Fixture::new();
        fx.phnum = Some(MAX_PROGRAM_HEADERS + 1);
        assert_eq!(
            fx.parse_err(),
            ElfError::TooManyProgramHeaders { count: 65, max: 64 }
        );
        fx.phnum = Some(u16::MAX); // PN_XNUM
        assert!(matches!(
            fx.parse_err(),
            ElfError::TooManyProgramHeaders { .. }
        ));
        // Exactly the limit is fine.
        let mut fx = Fixture::new();
        while fx.phdrs.len() < usize::from(MAX_PROGRAM_HEADERS) {
            fx.phdrs.push(ph(PT_NULL, 0, 0, 0, (0, 0), 0));
        }
        ElfImage::parse(&fx.build()).unwrap();
    }

    #[test]
    fn overlapping_segments() {
        // Raw overlap.
        let mut fx = Fixture::new();
        fx.phdrs[2] = ph(PT_LOAD, RW, 0x30f0, 0x20f0, (0x300, 0x3000), 0x1000);
        assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 1, b: 2 });
        // Sharing a page with different permissions.
        let mut fx = Fixture::new();
        fx.phdrs[2] = ph(PT_LOAD, RW, 0x3100, 0x2100, (0x300, 0x3000), 0x1000);
        assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 1, b: 2 });
        // Same address twice.
        let mut fx = Fixture::new();
        fx.phdrs[1] = ph(PT_LOAD, R, 0, 0, (0x10, 0x10), 0x1000);
        fx.entry = 0x3000;
        assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 0, b: 1 });
        // A big segment covering a later non-adjacent one.
        let mut fx = Fixture::new();
        fx.phdrs[0] = ph(PT_LOAD, R, 0, 0, (0x2000, 0x4000), 0x1000);
        assert_eq!(fx.parse_err(), ElfError::OverlappingSegments { a: 0, b: 1 });
    }

    #[test]
    fn unsorted_segments() {
        let mut fx = Fixture::new();
        fx.phdrs.swap(0, 1);
        assert_eq!(fx.parse_err(), ElfError::SegmentsNotSorted { a: 0, b: 1 });
    }

    #[test]
    fn writable_and_executable() {
        let mut fx = Fixture::new();
        fx.phdrs[1].flags = PF_R | PF_W | PF_X;
        assert_eq!(fx.parse_err(), ElfError::WritableAndExecutable { index: 1 });
        // Even an empty one.
        let mut fx = Fixture::new();
        fx.phdrs
            .push(ph(PT_LOAD, PF_W | PF_X, 0, 0x9000, (0, 0), 0));
        assert_eq!(fx.parse_err(), ElfError::WritableAndExecutable { index: 5 });
    }

    #[test]
    fn segment_past_end_of_file() {
        let mut fx = Fixture::new();
        fx.phdrs[2].filesz = 0x401;
        assert_eq!(
            fx.parse_err(),
            ElfError::SegmentOutOfFile {
                index: 2,
                offset: 0x3000,
                filesz: 0x401,
                file_len: FILE_LEN as u64
            }
        );
        let mut fx = Fixture::new();
        fx.phdrs[2].offset = u64::MAX - 0xfff;
        fx.phdrs[2].vaddr = 0x3000;
        assert!(matches!(
            fx.parse_err(),
            ElfError::SegmentOutOfFile { index: 2, .. }
        ));
        // The dynamic segment too.
        let mut fx = Fixture::new();
        fx.phdrs[3].filesz = 0x201;
        assert!(matches!(
            fx.parse_err(),
            ElfError::SegmentOutOfFile { index: 3, .. }
        ));
    }

    #[test]
    fn bss_only_segment_with_offset_past_eof_is_fine() {
        let mut fx = Fixture::new();
        fx.phdrs
            .push(ph(PT_LOAD, RW, 0x10_0000, 0x10_0000, (0, 0x1000), 0x1000));
        let file = fx.build();
        let image = ElfImage::parse(&file).unwrap();
        assert_eq!(image.span(), 0x10_1000);
        let (r, mem) = load(&file, 0, 0x10_1000);
        let loaded = r.unwrap();
        assert_eq!(loaded.segments.len(), 4);
        assert!(mem[0x6000..].iter().all(|&b| b == 0)); // gap and bss zeroed
    }

    #[test]
    fn file_size_exceeds_mem_size() {
        let mut fx = Fixture::new();
        fx.phdrs[1].memsz = 0x80;
        assert_eq!(
            fx.parse_err(),
            ElfError::FileSizeExceedsMemSize {
                index: 1,
                filesz: 0x100,
                memsz: 0x80
            }
        );
    }

    #[test]
    fn address_overflow() {
        let mut fx = Fixture::new();
        fx.phdrs[2].vaddr = u64::MAX - 0xfff;
        assert!(matches!(fx.parse_err(), ElfError::Overflow { .. }));
        // No overflow for vaddr + memsz, but rounding up to a page overflows.
        let mut fx = Fixture::new();
        fx.phdrs[2] = ph(PT_LOAD, RW, 0x3000, u64::MAX - 0xfff, (0x10, 0x10), 0x1000);
        assert!(matches!(fx.parse_err(), ElfError::Overflow { .. }));
        // The last page of the address space: the end rounds to 2^64.
        let mut fx = Fixture::new();
        fx.phdrs[2] = ph(
            PT_LOAD,
            RW,
            0x3000,
            u64::MAX - 0xfff,
            (0x400, 0x1000),
            0x1000,
        );
        assert!(matches!(fx.parse_err(), ElfError::Overflow { .. }));
        // A huge but representable span simply does not fit.
        let mut fx = Fixture::new();
        fx.phdrs[2] = ph(
            PT_LOAD,
            RW,
            0x3000,
            u64::MAX - 0x2fff,
            (0x400, 0x1000),
            0x1000,
        );
        fx.phdrs.remove(3);
        fx.rela.clear();
        let file = fx.build();
        let image = ElfImage::parse(&file).unwrap();
        assert_eq!(image.span(), u64::MAX - 0x1fff);
        let mut mem = vec![0u8; 0x1000];
        assert!(matches!(
            image.load(&mut mem, 0x1000),
            Err(ElfError::DoesNotFit { .. })
        ));
    }

    #[test]
    fn alignment_checks() {
        let mut fx = Fixture::new();
        fx.phdrs[1].align = 3;
        assert!(matches!(
            fx.parse_err(),
            ElfError::BadAlignment {
                index: 1,
                align: 3,
                ..
            }
        ));
        let mut fx = Fixture::new();
        fx.phdrs[2].offset = 0x3008; // not congruent with vaddr 0x3000
        fx.phdrs[2].filesz = 0x3f8;
        assert!(matches!(
            fx.parse_err(),
            ElfError::BadAlignment { index: 2, .. }
        ));
        // p_align 0 / 1 impose nothing.
        let mut fx = Fixture::new();
        fx.phdrs[2].align = 0;
        fx.phdrs[1].align = 1;
        ElfImage::parse(&fx.build()).unwrap();
    }

    #[test]
    fn large_alignment_constrains_base() {
        let mut fx = Fixture::new();
        fx.phdrs[1].align = 0x20_0000;
        let file = fx.build();
        let image = ElfImage::parse(&file).unwrap();
        assert_eq!(image.alignment(), 0x20_0000);
        let mut mem = vec![0u8; 0x30_0000];
        assert_eq!(
            image.load(&mut mem, 0x1_0000),
            Err(ElfError::BaseNotAligned {
                base: 0x1_0000,
                align: 0x20_0000
            })
        );
        let loaded = image.load(&mut mem, 0x20_0000).unwrap();
        assert_eq!(loaded.entry, 0x20_2000);
    }

    #[test]
    fn entry_must_be_executable() {
        for entry in [0x3000u64, 0x1000, 0x2100, 0x20ff + 1, 0x9000, u64::MAX] {
            let mut fx = Fixture::new();
            fx.entry = entry;
            assert_eq!(fx.parse_err(), ElfError::EntryNotExecutable { entry });
        }
        let mut fx = Fixture::new();
        fx.entry = 0x20ff;
        ElfImage::parse(&fx.build()).unwrap();
    }

    #[test]
    fn no_loadable_segments() {
        let mut fx = Fixture::new();
        fx.phdrs = vec![ph(PT_GNU_STACK, RW, 0, 0, (0, 0), 0)];
        assert_eq!(fx.parse_err(), ElfError::NoLoadableSegments);
        // Empty PT_LOADs do not count.
        fx.phdrs.push(ph(PT_LOAD, R, 0, 0, (0, 0), 0x1000));
        assert_eq!(fx.parse_err(), ElfError::NoLoadableSegments);
    }

    #[test]
    fn unsupported_program_headers() {
        for (p_type, what) in [
            (PT_TLS, "PT_TLS"),
            (PT_INTERP, "PT_INTERP"),
            (PT_SHLIB, "PT_SHLIB"),
        ] {
            let mut fx = Fixture::new();
            fx.phdrs.push(ph(p_type, R, 0, 0, (0x10, 0x10), 8));
            match fx.parse_err() {
                ElfError::Unsupported { what: w } => assert!(w.starts_with(what), "{w}"),
                e => panic!("{e:?}"),
            }
        }
        let mut fx = Fixture::new();
        fx.phdrs.push(fx.phdrs[3]);
        assert!(matches!(fx.parse_err(), ElfError::BadDynamic { .. }));
    }

    #[test]
    fn unsupported_relocation_type() {
        for r_type in [
            R_X86_64_64,
            6, /* GLOB_DAT */
            7, /* JUMP_SLOT */
            0x1_0000_0008,
        ] {
            let mut fx = Fixture::new();
            fx.rela[1].1 = r_type;
            if r_type == 0x1_0000_0008 {
                // Symbol index 1, type RELATIVE: the type is what matters.
                ElfImage::parse(&fx.build()).unwrap();
                continue;
            }
            assert_eq!(
                fx.parse_err(),
                ElfError::UnsupportedRelocation {
                    r_type: r_type as u32,
                    offset: 0x3008
                }
            );
        }
    }

    #[test]
    fn relocation_out_of_bounds() {
        for offset in [
            SPAN,           // just past the image
            SPAN - 4,       // straddles the end
            0x1ffc,         // straddles the R and RX segments
            0x2100,         // in the gap after the code segment
            u64::MAX - 3,   // overflows
            u64::MAX - 0xf, // fits in u64 but far outside
        ] {
            let mut fx = Fixture::new();
            fx.rela[2].0 = offset;
            assert_eq!(fx.parse_err(), ElfError::RelocationOutOfBounds { offset });
        }
        // The last word of the bss is fine; so is a relocation in a read-only segment
        // (e.g. .data.rel.ro placed in a R segment) or in the code.
        for offset in [SPAN - 8, 0x1c00, 0x20f8] {
            let mut fx = Fixture::new();
            fx.rela[2].0 = offset;
            ElfImage::parse(&fx.build()).unwrap();
        }
        // RELR targets are checked too.
        let mut fx = Fixture::new();
        fx.relr = vec![SPAN];
        assert_eq!(
            fx.parse_err(),
            ElfError::RelocationOutOfBounds { offset: SPAN }
        );
        let mut fx = Fixture::new();
        fx.relr = vec![SPAN - 0x10, 0b111];
        assert_eq!(
            fx.parse_err(),
            ElfError::RelocationOutOfBounds { offset: SPAN }
        );
        let mut fx = Fixture::new();
        fx.relr = vec![u64::MAX - 7, 0b11];
        assert!(fx.build().len() == FILE_LEN);
        assert!(matches!(
            fx.parse_err(),
            ElfError::RelocationOutOfBounds { .. }
        ));
    }

    #[test]
    fn dynamic_section_checks() {
        let bad = |f: &dyn Fn(&mut Fixture)| {
            let mut fx = Fixture::new();
            f(&mut fx);
            fx.parse_err()
        };
        let is_bad_dynamic = |e: ElfError| matches!(e, ElfError::BadDynamic { .. });
        assert!(matches!(
            bad(&|fx| fx.extra_dyn.push((DT_REL, 0x1000))),
            ElfError::Unsupported { .. }
        ));
        assert!(matches!(
            bad(&|fx| fx.extra_dyn.push((DT_RELSZ, 16))),
            ElfError::Unsupported { .. }
        ));
        assert!(matches!(
            bad(&|fx| fx.extra_dyn.push((DT_NEEDED, 1))),
            ElfError::Unsupported { .. }
        ));
        assert!(matches!(
            bad(&|fx| fx.extra_dyn.push((DT_PLTRELSZ, 24))),
            ElfError::Unsupported { .. }
        ));
        assert!(matches!(
            bad(&|fx| fx.extra_dyn.push((DT_ANDROID_RELA, 0x1000))),
            ElfError::Unsupported { .. }
        ));
        assert!(is_bad_dynamic(bad(&|fx| fx
            .extra_dyn
            .push((DT_RELA, 0x1000)))));
        assert!(is_bad_dynamic(bad(&|fx| fx
            .extra_dyn
            .push((DT_RELACOUNT, 99)))));
        assert!(is_bad_dynamic(bad(&|fx| fx.dyn_override = Some(vec![
            (DT_RELACOUNT, 4),
            (DT_RELA, 0x1000),
            (DT_RELASZ, 72)
        ]))));
        assert!(is_bad_dynamic(bad(&|fx| fx.dyn_override = Some(vec![
            (DT_RELA, 0x1000),
            (DT_RELASZ, 72),
            (DT_RELAENT, 16)
        ]))));
        assert!(is_bad_dynamic(bad(
            &|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x1000), (DT_RELASZ, 70)])
        )));
        assert!(is_bad_dynamic(bad(
            &|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x1000)])
        )));
        assert!(is_bad_dynamic(bad(
            &|fx| fx.dyn_override = Some(vec![(DT_RELASZ, 24)])
        )));
        assert!(is_bad_dynamic(bad(
            &|fx| fx.dyn_override = Some(vec![(DT_RELR, 0x1800)])
        )));
        assert!(is_bad_dynamic(bad(
            &|fx| fx.dyn_override = Some(vec![(DT_RELR, 0x1800), (DT_RELRSZ, 12)])
        )));
        assert!(is_bad_dynamic(bad(&|fx| fx.dyn_override = Some(vec![
            (DT_RELR, 0x1800),
            (DT_RELRSZ, 8),
            (DT_RELRENT, 16)
        ]))));
        // A bitmap with no preceding address.
        assert!(is_bad_dynamic(bad(&|fx| fx.relr = vec![0b11])));
        // The relocation table must be in a segment's file data.
        assert_eq!(
            bad(&|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x5000), (DT_RELASZ, 24)])),
            ElfError::RelocationTableOutOfBounds {
                addr: 0x5000,
                size: 24
            }
        );
        assert_eq!(
            bad(&|fx| fx.dyn_override = Some(vec![(DT_RELA, 0x20f0), (DT_RELASZ, 24)])),
            ElfError::RelocationTableOutOfBounds {
                addr: 0x20f0,
                size: 24
            }
        );
        assert!(matches!(
            bad(&|fx| fx.dyn_override = Some(vec![(DT_RELR, u64::MAX - 7), (DT_RELRSZ, 16)])),
            ElfError::RelocationTableOutOfBounds { .. }
        ));
        // Too many entries, checked before anything is read.
        assert_eq!(
            bad(&|fx| fx.dyn_override = Some(vec![
                (DT_RELA, 0x1000),
                (DT_RELASZ, 24 * (MAX_RELOCATIONS + 1))
            ])),
            ElfError::TooManyRelocations {
                count: MAX_RELOCATIONS + 1,
                max: MAX_RELOCATIONS
            }
        );
        assert!(matches!(
            bad(&|fx| fx.dyn_override = Some(vec![(DT_RELR, 0x1800), (DT_RELRSZ, u64::MAX - 7)])),
            ElfError::TooManyRelocations { .. }
        ));
        // Empty tables and tags after DT_NULL are fine.
        let mut fx = Fixture::new();
        fx.dyn_override = Some(vec![(DT_RELASZ, 0), (DT_NULL, 0), (DT_NEEDED, 1)]);
        ElfImage::parse(&fx.build()).unwrap();
        fx.dyn_override = Some(vec![
            (DT_RELA, 0xdead_0000),
            (DT_RELASZ, 0),
            (DT_RELR, 3),
            (DT_RELRSZ, 0),
        ]);
        ElfImage::parse(&fx.build()).unwrap();
    }

    #[test]
    fn does_not_fit_and_base_alignment() {
        let file = Fixture::new().build();
        let image = ElfImage::parse(&file).unwrap();
        let mut mem = vec![0u8; 0x10000];
        assert_eq!(
            image.load(&mut mem[..0x1000 + SPAN as usize - 1], 0x1000),
            Err(ElfError::DoesNotFit {
                base: 0x1000,
                span: SPAN,
                mem_len: 0x1000 + SPAN - 1
            })
        );
        assert!(matches!(
            image.load(&mut mem, u64::MAX - 0xfff),
            Err(ElfError::DoesNotFit { .. })
        ));
        assert!(matches!(
            image.load(&mut mem, 0x10000),
            Err(ElfError::DoesNotFit { .. })
        ));
        for base in [1u64, 0x800, 0x1008, u64::MAX] {
            assert_eq!(
                image.load(&mut mem, base),
                Err(ElfError::BaseNotAligned {
                    base,
                    align: PAGE_SIZE
                })
            );
        }
        // Failed loads write nothing.
        assert!(mem.iter().all(|&b| b == 0));
    }

    #[test]
    fn errors_display() {
        let all = [
            ElfError::TooShort { len: 1, need: 64 },
            ElfError::BadMagic,
            ElfError::NotElf64 { class: 1 },
            ElfError::NotLittleEndian { data: 2 },
            ElfError::BadVersion { version: 0 },
            ElfError::WrongMachine { machine: 3 },
            ElfError::WrongType { e_type: 2 },
            ElfError::BadProgramHeaderSize { phentsize: 32 },
            ElfError::TooManyProgramHeaders { count: 65, max: 64 },
            ElfError::ProgramHeadersOutOfBounds {
                offset: 1,
                size: 2,
                file_len: 3,
            },
            ElfError::SegmentOutOfFile {
                index: 1,
                offset: 2,
                filesz: 3,
                file_len: 4,
            },
            ElfError::FileSizeExceedsMemSize {
                index: 1,
                filesz: 2,
                memsz: 1,
            },
            ElfError::Overflow { what: "x" },
            ElfError::BadAlignment {
                index: 1,
                align: 3,
                vaddr: 0,
                offset: 0,
            },
            ElfError::SegmentsNotSorted { a: 0, b: 1 },
            ElfError::OverlappingSegments { a: 0, b: 1 },
            ElfError::WritableAndExecutable { index: 1 },
            ElfError::EntryNotExecutable { entry: 5 },
            ElfError::NoLoadableSegments,
            ElfError::Unsupported { what: "PT_TLS" },
            ElfError::BadDynamic { what: "x" },
            ElfError::RelocationTableOutOfBounds { addr: 1, size: 2 },
            ElfError::TooManyRelocations { count: 2, max: 1 },
            ElfError::UnsupportedRelocation {
                r_type: 1,
                offset: 8,
            },
            ElfError::RelocationOutOfBounds { offset: 9 },
            ElfError::BaseNotAligned { base: 1, align: 2 },
            ElfError::DoesNotFit {
                base: 1,
                span: 2,
                mem_len: 3,
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert!(seen.insert(msg.clone()), "duplicate message {msg}");
            let as_error: &dyn std::error::Error = e;
            assert_eq!(as_error.to_string(), msg);
        }
    }

    /// Deterministic PRNG (splitmix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parses and, if that succeeds, loads `bytes`, checking the loader's guarantees: no
    /// panic, nothing written outside `[base, end)`, W^X and entry inside an executable
    /// segment. Returns whether the load succeeded.
    fn exercise(bytes: &[u8], rng: &mut Rng) -> bool {
        let Ok(image) = ElfImage::parse(bytes) else {
            return false;
        };
        let base = [0u64, 0x1000, 0x7000][rng.below(3)];
        let mut mem = vec![0xa5u8; 0x10000 + rng.below(0x10000)];
        let Ok(loaded) = image.load(&mut mem, base) else {
            return false;
        };
        assert_eq!(loaded.end - loaded.base, image.span());
        assert!(mem[..base as usize].iter().all(|&b| b == 0xa5));
        assert!(mem[loaded.end as usize..].iter().all(|&b| b == 0xa5));
        let mut prev_end = loaded.base;
        for s in &loaded.segments {
            assert!(s.start >= prev_end && s.start < s.end && s.end <= loaded.end);
            assert!(s.start % PAGE_SIZE == 0 && s.end % PAGE_SIZE == 0);
            assert!(!(s.perms.write && s.perms.execute));
            prev_end = s.end;
        }
        assert!(loaded
            .segments
            .iter()
            .any(|s| s.perms.execute && (s.start..s.end).contains(&loaded.entry)));
        true
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Rng(0x1234_5678);
        let valid = Fixture::new().build();
        for i in 0..5000 {
            let len = rng.below(600);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them get a plausible header so parsing goes further.
            if i % 2 == 0 && len >= 64 {
                buf[..64].copy_from_slice(&valid[..64]);
                if rng.below(2) == 0 {
                    buf[32..40].copy_from_slice(&(rng.below(len) as u64).to_le_bytes());
                    buf[56..58].copy_from_slice(&(rng.below(8) as u16).to_le_bytes());
                }
            }
            exercise(&buf, &mut rng);
        }
    }

    #[test]
    fn mutated_valid_files_never_panic() {
        let mut rng = Rng(0xfeed_f00d);
        let mut fx = Fixture::new();
        fx.relr = vec![0x3020, 0b1011];
        let valid = fx.build();
        assert!(exercise(&valid, &mut rng));
        // Byte offsets of interesting structures: header, program headers, RELA, RELR, DYNAMIC.
        let hot = [
            (0usize, 64usize),
            (64, 64 + 5 * 56),
            (RELA_OFF, RELA_OFF + 3 * 24),
            (RELR_OFF, RELR_OFF + 16),
            (DYN_OFF, DYN_OFF + 12 * 16),
        ];
        let interesting: [u64; 14] = [
            0,
            1,
            7,
            8,
            0x1000,
            0x2000,
            0x3000,
            0x5ff8,
            0x6000,
            FILE_LEN as u64,
            u64::MAX,
            u64::MAX - 7,
            u64::MAX - 0xfff,
            1 << 63,
        ];
        let mut loaded = 0;
        for i in 0..20_000 {
            let mut buf = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let (lo, hi) = if rng.below(8) == 0 {
                    (0, buf.len())
                } else {
                    hot[rng.below(hot.len())]
                };
                let at = lo + rng.below(hi - lo);
                match i % 3 {
                    0 => buf[at] = rng.next() as u8,
                    1 => buf[at] ^= 1 << rng.below(8),
                    _ => {
                        // Overwrite an aligned field with an interesting value.
                        let width = [2usize, 4, 8][rng.below(3)];
                        let at = at & !(width - 1);
                        let v = interesting[rng.below(interesting.len())]
                            .wrapping_add(rng.below(3) as u64)
                            .wrapping_sub(1);
                        if at + width <= buf.len() {
                            buf[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
                        }
                    }
                }
            }
            if exercise(&buf, &mut rng) {
                loaded += 1;
            }
            // Truncations of mutated files as well.
            let cut = rng.below(buf.len());
            exercise(&buf[..cut], &mut rng);
        }
        // Many mutations hit bytes that do not matter, so a good share still loads.
        assert!(loaded > 1000, "only {loaded} mutated files loaded");
    }

    /// Optional check against a real guest binary, if one has been built. Set
    /// `HYPERLIGHT_TEST_GUEST_ELF` to a file to check it; otherwise ELF files in the guest's
    /// target directory are checked if any exist. Passes trivially when there are none.
    #[test]
    fn real_guest_binaries_if_present() {
        let mut paths = Vec::new();
        if let Some(p) = std::env::var_os("HYPERLIGHT_TEST_GUEST_ELF") {
            paths.push(std::path::PathBuf::from(p));
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/target");
        for profile in ["release", "debug"] {
            let dir = root.join("x86_64-unknown-none").join(profile);
            if let Ok(entries) = std::fs::read_dir(dir) {
                paths.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
        }
        for path in paths {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if !bytes.starts_with(b"\x7fELF") {
                continue;
            }
            let image =
                ElfImage::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let align = image.alignment();
            let (b1, b2) = (align.max(0x10000), align.max(0x10000) * 2);
            let len = (b2 + image.span()) as usize;
            let (mut m1, mut m2) = (vec![0u8; len], vec![0u8; len]);
            let l1 = image.load(&mut m1, b1).unwrap();
            let l2 = image.load(&mut m2, b2).unwrap();
            assert_eq!(l2.entry - l1.entry, b2 - b1);
            // Every relocated word moves with the base; every other byte is identical.
            let mut targets = Vec::new();
            image
                .for_each_relr(|a| {
                    targets.push(image.target(a)?);
                    Ok(())
                })
                .unwrap();
            image
                .for_each_rela(|a, _| {
                    targets.push(image.target(a)?);
                    Ok(())
                })
                .unwrap();
            for t in &targets {
                assert_eq!(
                    word(&m2, b2 + t).wrapping_sub(word(&m1, b1 + t)),
                    b2 - b1,
                    "{}: relocation at {t:#x}",
                    path.display()
                );
            }
            targets.sort_unstable();
            for off in 0..image.span() {
                let in_target = {
                    let i = targets.partition_point(|t| *t + 8 <= off);
                    targets.get(i).is_some_and(|t| *t <= off)
                };
                if !in_target {
                    assert_eq!(m1[(b1 + off) as usize], m2[(b2 + off) as usize]);
                }
            }
            eprintln!(
                "{}: {} segments, {} relocations, span {:#x}",
                path.display(),
                l1.segments.len(),
                targets.len(),
                image.span()
            );
        }
    }
}

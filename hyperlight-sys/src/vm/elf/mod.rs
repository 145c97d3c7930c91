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

mod error;
pub use error::ElfError;

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

/// A validated, non-empty `PT_LOAD` segment (link-time addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoadSegment {
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
    segments: Vec<LoadSegment>,
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

        let mut segments: Vec<LoadSegment> = Vec::new();
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
    fn check_load(
        ph: &Phdr,
        index: usize,
        file_len: usize,
    ) -> Result<Option<LoadSegment>, ElfError> {
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
        Ok(Some(LoadSegment {
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
mod tests;

//! A linear memory that grows without moving.
//!
//! wasmi keeps a memory the module defines in a `Vec`, and grows it by reallocating: the first
//! `memory.grow` of an instance (a Rust module's allocator grows memory on its first
//! allocation) copies the whole memory into a block twice its size. In a sandbox that restores
//! its post-instantiation snapshot after every call, that copy happens in every call, and every
//! page it writes is a page the call dirtied: about 290 pages for a 1.1 MB memory, most of a
//! pool call's time (`docs/performance.md`).
//!
//! A memory the embedder creates can instead live in a buffer of fixed capacity
//! (`wasmi::Memory::new_static`), where growing only zeroes the new pages. But wasmi creates the
//! memories a module defines itself; only an imported memory can be such a buffer. So, for a
//! module that defines exactly one plain memory and imports none, [`rewrite`] moves that
//! memory's definition into a last import, [`IMPORT_MODULE`].[`IMPORT_NAME`], with the same
//! type: the memory keeps index 0 (imported memories come first in the index space, and there
//! are no others), and no function, table or global index changes. Everything else in the
//! module stays byte for byte. The link code hides the import from the host and provides it with
//! a buffer of the memory's whole reach (the smaller of its declared maximum and the limit),
//! reserved from the heap at instantiation and never touched beyond what the memory has grown
//! to.
//!
//! The rewrite is an optimization: whatever this code does not recognize (a second memory, a
//! memory import, an import from [`IMPORT_MODULE`], 64-bit or shared memories, custom page sizes,
//! sections out of order, anything malformed) leaves the module as it is, for wasmi to run or
//! reject. A module whose rewrite wasmi rejects is compiled again as given, so that errors name
//! the module's own bytes.

use alloc::vec::Vec;
use core::alloc::Layout;

/// The module of the synthetic memory import.
pub const IMPORT_MODULE: &str = "__hyperlight";
/// The name of the synthetic memory import.
pub const IMPORT_NAME: &str = "memory";

/// The bytes of a Wasm page.
const PAGE: u64 = 1 << 16;

const SECTION_TYPE: u8 = 1;
const SECTION_IMPORT: u8 = 2;
const SECTION_MEMORY: u8 = 5;

/// The module with its memory moved to an import, and that memory's type.
pub struct Rewritten {
    /// The rewritten module.
    pub bytes: Vec<u8>,
    /// The memory's minimum, in pages.
    pub minimum: u32,
    /// The memory's maximum, in pages, if it declares one.
    pub maximum: Option<u32>,
}

/// A cursor over untrusted bytes: every read is bounds-checked, failing with `None`.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let bytes = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(bytes)
    }

    /// An unsigned LEB128 of at most 32 bits.
    fn u32(&mut self) -> Option<u32> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return u32::try_from(value).ok();
            }
        }
        None
    }

    fn name(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()?;
        self.take(len as usize)
    }

    /// Limits with 32-bit bounds (flags 0 or 1), as tables and plain memories have them.
    fn limits(&mut self) -> Option<(u32, Option<u32>)> {
        match self.byte()? {
            0 => Some((self.u32()?, None)),
            1 => Some((self.u32()?, Some(self.u32()?))),
            _ => None,
        }
    }
}

/// Appends `value` as an unsigned LEB128.
fn push_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends an import section of `count` entries: the encoded `entries`, then `last`.
fn push_imports(out: &mut Vec<u8>, count: u32, entries: &[u8], last: &[u8]) -> Option<()> {
    let mut payload = Vec::with_capacity(entries.len() + last.len() + 5);
    push_u32(&mut payload, count);
    payload.extend_from_slice(entries);
    payload.extend_from_slice(last);
    out.push(SECTION_IMPORT);
    push_u32(out, u32::try_from(payload.len()).ok()?);
    out.extend_from_slice(&payload);
    Some(())
}

/// The rank of a known section in the order the binary format requires; `None` for custom
/// sections (anywhere) and unknown ones.
fn rank(id: u8) -> Option<u8> {
    // type, import, function, table, memory, tag, global, export, start, element, data count,
    // code, data.
    const ORDER: [u8; 13] = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
    ORDER.iter().position(|&s| s == id).map(|r| r as u8)
}

/// Whether the import section's entries (after their count) parse, import no memory and
/// nothing from [`IMPORT_MODULE`] (whose names the runner's import must not clash with).
fn imports_no_memory(entries: &mut Reader<'_>, count: u32) -> Option<bool> {
    for _ in 0..count {
        if entries.name()? == IMPORT_MODULE.as_bytes() {
            return Some(false);
        }
        entries.name()?;
        match entries.byte()? {
            // A function: its type index.
            0 => {
                entries.u32()?;
            }
            // A table: funcref or externref, and its limits.
            1 => {
                if !matches!(entries.byte()?, 0x70 | 0x6f) {
                    return None;
                }
                entries.limits()?;
            }
            2 => return Some(false),
            // A global: a number or reference type, and its mutability.
            3 => {
                if !matches!(entries.byte()?, 0x7c..=0x7f | 0x70 | 0x6f) || entries.byte()? > 1 {
                    return None;
                }
            }
            _ => return None,
        }
    }
    entries.done().then_some(true)
}

/// The module with its one memory moved to the import [`IMPORT_MODULE`].[`IMPORT_NAME`], if it
/// defines exactly one plain (32-bit, unshared, 64 KiB pages) memory and imports none; `None`
/// otherwise (including for anything malformed: the module is then used as it is).
pub fn rewrite(module: &[u8]) -> Option<Rewritten> {
    let mut reader = Reader::new(module);
    let header = reader.take(8)?;
    if header != b"\0asm\x01\0\0\0" {
        return None;
    }
    // Every section: (id, the bytes of the whole section, its payload).
    let mut sections = Vec::new();
    let mut last_rank = None;
    while !reader.done() {
        let start = reader.at;
        let id = reader.byte()?;
        let len = reader.u32()?;
        let payload = reader.take(len as usize)?;
        if id != 0 {
            let rank = rank(id)?;
            if last_rank.is_some_and(|last| rank <= last) {
                return None;
            }
            last_rank = Some(rank);
        }
        sections.push((id, &module[start..reader.at], payload));
    }
    let (_, _, memories) = sections.iter().find(|(id, _, _)| *id == SECTION_MEMORY)?;
    let mut memories = Reader::new(memories);
    if memories.u32()? != 1 {
        return None;
    }
    let memtype_start = memories.at;
    let (minimum, maximum) = memories.limits()?;
    let memtype = &memories.bytes[memtype_start..memories.at];
    let pages = u64::from(maximum.unwrap_or(minimum));
    if !memories.done() || pages > (1 << 16) || maximum.is_some_and(|max| max < minimum) {
        return None;
    }

    let mut import = Vec::new();
    push_u32(&mut import, IMPORT_MODULE.len() as u32);
    import.extend_from_slice(IMPORT_MODULE.as_bytes());
    push_u32(&mut import, IMPORT_NAME.len() as u32);
    import.extend_from_slice(IMPORT_NAME.as_bytes());
    import.push(2);
    import.extend_from_slice(memtype);

    let mut out = Vec::with_capacity(module.len() + import.len() + 8);
    out.extend_from_slice(header);
    let mut imported = false;
    for (id, whole, payload) in &sections {
        match *id {
            SECTION_MEMORY => {}
            SECTION_IMPORT => {
                let mut entries = Reader::new(payload);
                let count = entries.u32()?;
                let first = entries.at;
                if !imports_no_memory(&mut entries, count)? {
                    return None;
                }
                push_imports(&mut out, count.checked_add(1)?, &payload[first..], &import)?;
                imported = true;
            }
            // The import section comes after the type section and before every other known
            // one: without one, a new one goes before the first of those.
            id => {
                if !imported && id != 0 && id != SECTION_TYPE {
                    push_imports(&mut out, 1, &[], &import)?;
                    imported = true;
                }
                out.extend_from_slice(whole);
            }
        }
    }
    // No import section, and no known section after its place but the memory section itself:
    // the new one goes last (after custom sections, which may stand anywhere).
    if !imported {
        push_imports(&mut out, 1, &[], &import)?;
    }
    Some(Rewritten {
        bytes: out,
        minimum,
        maximum,
    })
}

/// The bytes a memory with this type may reach under the limit `max_memory`: its declared
/// maximum or the limit, whichever is smaller; `None` if its minimum is already past the limit
/// (instantiation then fails as it would have without the rewrite) or it can reach nothing.
pub fn reach(minimum: u32, maximum: Option<u32>, max_memory: usize) -> Option<usize> {
    let declared = maximum.map_or(u64::MAX, |max| u64::from(max) * PAGE);
    let reach = declared.min(max_memory as u64);
    (reach >= u64::from(minimum) * PAGE && reach > 0).then_some(reach as usize)
}

/// Reserves `len` bytes (page-aligned) of the heap for a linear memory, for the rest of the
/// guest's life, without writing them; `None` if the heap cannot spare them.
pub fn reserve(len: usize) -> Option<&'static mut [u8]> {
    if len == 0 {
        return None;
    }
    let layout = Layout::from_size_align(len, 4096).ok()?;
    // SAFETY: the layout's size is not zero (checked above).
    let ptr = unsafe { alloc::alloc::alloc(layout) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the block's bytes are uninitialized as far as Rust knows; a `&mut [u8]` over them
    // must have initialized bytes. This empty assembly block receives the block's address and is
    // declared free to read and write memory (no `nomem`/`readonly`), so the compiler must treat
    // the bytes as written by it: as initialized to whatever they hold (`freeze`). That is what
    // the hardware gives: the bytes are ordinary RAM of the guest heap with some values. The
    // block touches no page. wasmi never reads a byte of the buffer before it zeroed it (at
    // creation the minimum size, at each `memory.grow` the new pages), so the values do not
    // matter; only that reading them later is defined.
    unsafe {
        core::arch::asm!("/* {0} */", in(reg) ptr, options(nostack, preserves_flags));
    }
    // SAFETY: `ptr` is a live allocation of `len` bytes, initialized (above), never freed (the
    // memory lives as long as the instance, which lives as long as the guest) and referenced
    // nowhere else: the slice is its only owner.
    Some(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

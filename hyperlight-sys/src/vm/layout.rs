//! Where everything lives in guest memory. `docs/abi.md` documents the same layout.

use hyperlight_schema::abi::{BootInfo, BOOT_INFO_MAGIC, PAGE_SIZE};

use crate::config::SandboxConfig;
use crate::error::Error;

/// Guest address of the GDT.
pub const GDT: u64 = 0x1000;
/// Guest address of the TSS (in the GDT's page).
pub const TSS: u64 = 0x1800;
/// Guest address of the IDT.
pub const IDT: u64 = 0x2000;
/// Guest address of the ring-0 exception stubs.
pub const STUBS: u64 = 0x3000;
/// Guest address of the ring-0 stack page.
pub const RING0_STACK: u64 = 0x4000;
/// Top of the ring-0 stack (`TSS.rsp0`).
pub const RSP0: u64 = RING0_STACK + PAGE_SIZE;
/// Guest address of the boot info page.
pub const BOOT_INFO: u64 = 0x5000;
/// Guest address of the doorbell page (read-write for the guest): see
/// [`hyperlight_schema::abi::DOORBELL`].
pub const DOORBELL: u64 = hyperlight_schema::abi::DOORBELL;
/// Guest address the ELF image is loaded at.
pub const IMAGE_BASE: u64 = 0x10000;
/// Bytes per exception stub.
pub const STUB_SIZE: u64 = 16;
/// Number of IDT gates (the CPU exception vectors).
pub const IDT_VECTORS: u64 = 32;
/// Memory covered by one page table.
const PT_SPAN: u64 = 512 * PAGE_SIZE;
/// Largest guest memory: what one page directory maps.
pub const MAX_MEMORY: u64 = 512 * PT_SPAN;

/// A region of guest memory, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

impl Region {
    /// The region of `size` bytes from `start`.
    pub(crate) fn at(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start + size,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// Whether `addr` lies in the region.
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// The computed memory layout of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The loaded image span.
    pub image: Region,
    /// The heap.
    pub heap: Region,
    /// The stack (grows down from `stack.end`).
    pub stack: Region,
    /// The unmapped guard page below the stack: a fault here is a stack overflow.
    pub stack_guard: Region,
    /// The input buffer (host -> guest).
    pub input: Region,
    /// The output buffer (guest -> host).
    pub output: Region,
    /// The module region: bytes the host gives the guest at build time, read-only for it (empty,
    /// at the end of the output buffer, when there are none).
    pub module: Region,
    /// Length of the module's bytes (`module` is that, rounded up to whole pages).
    pub module_len: u64,
    /// The page tables: PML4, PDPT, PD, then one PT per 2 MiB.
    pub page_tables: Region,
    /// Total size of guest memory.
    pub total: u64,
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

impl Layout {
    /// Lays out a sandbox for an image of `image_span` bytes (page multiple) and a module of
    /// `module_len` bytes (0: none).
    pub fn new(config: &SandboxConfig, image_span: u64, module_len: u64) -> Result<Self, Error> {
        config.validate()?;
        if module_len > config.max_module_size {
            return Err(Error::InvalidConfig {
                field: "module size",
                value: module_len,
                reason: "larger than max_module_size",
            });
        }
        if image_span > SandboxConfig::MAX_GUEST_FILE {
            return Err(Error::InvalidConfig {
                field: "guest image span",
                value: image_span,
                reason: "above the hard upper limit",
            });
        }
        // All sizes are bounded by the config limits, so these sums cannot overflow.
        let image = Region::at(IMAGE_BASE, pages(image_span));
        let heap = Region::at(image.end + PAGE_SIZE, pages(config.heap_size));
        let stack_guard = Region::at(heap.end, PAGE_SIZE);
        let stack = Region::at(stack_guard.end, pages(config.stack_size));
        let input = Region::at(stack.end + PAGE_SIZE, pages(config.input_size));
        let output = Region::at(input.end, pages(config.output_size));
        // The module after a guard page, then another before the page tables; without a module
        // the layout is as it always was.
        let (module, pt_start) = match module_len {
            0 => (Region::at(output.end, 0), output.end + PAGE_SIZE),
            len => {
                let module = Region::at(output.end + PAGE_SIZE, pages(len));
                (module, module.end + PAGE_SIZE)
            }
        };
        // Page tables map everything below their own end; grow until they cover themselves.
        let mut count = 3 + pt_start.div_ceil(PT_SPAN);
        while 3 + (pt_start + count * PAGE_SIZE).div_ceil(PT_SPAN) > count {
            count += 1;
        }
        let page_tables = Region::at(pt_start, count * PAGE_SIZE);
        let total = page_tables.end;
        if total > MAX_MEMORY {
            return Err(Error::InvalidConfig {
                field: "total memory",
                value: total,
                reason: "above the 1 GiB that one page directory maps",
            });
        }
        Ok(Self {
            image,
            heap,
            stack,
            stack_guard,
            input,
            output,
            module,
            module_len,
            page_tables,
            total,
        })
    }

    /// The boot info record the guest receives.
    pub fn boot_info(&self) -> BootInfo {
        BootInfo {
            magic: BOOT_INFO_MAGIC,
            heap_base: self.heap.start,
            heap_size: self.heap.size(),
            input_base: self.input.start,
            input_size: self.input.size(),
            output_base: self.output.start,
            output_size: self.output.size(),
            stack_base: self.stack.start,
            stack_size: self.stack.size(),
            image_base: self.image.start,
            module_base: if self.module_len == 0 {
                0
            } else {
                self.module.start
            },
            module_size: self.module_len,
        }
    }

    /// Initial stack pointer: the stack top minus 8, as at a function entry.
    pub fn initial_rsp(&self) -> u64 {
        self.stack.end - 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_ordered_page_aligned_and_disjoint() {
        let l = Layout::new(&SandboxConfig::default(), 3 * PAGE_SIZE, 0).unwrap();
        let order = [
            l.image,
            l.heap,
            l.stack_guard,
            l.stack,
            l.input,
            l.output,
            l.page_tables,
        ];
        for pair in order.windows(2) {
            assert!(pair[0].end <= pair[1].start, "{pair:?}");
        }
        for r in order {
            assert_eq!(r.start % PAGE_SIZE, 0);
            assert_eq!(r.end % PAGE_SIZE, 0);
        }
        assert!(l.image.start >= DOORBELL + PAGE_SIZE);
        const { assert!(DOORBELL >= BOOT_INFO + PAGE_SIZE) };
        // Enough page tables to map all of memory.
        let pts = l.page_tables.size() / PAGE_SIZE - 3;
        assert!(pts * PT_SPAN >= l.total);
    }

    #[test]
    fn too_large_is_rejected() {
        let config = SandboxConfig {
            heap_size: SandboxConfig::MAX_HEAP,
            stack_size: SandboxConfig::MAX_STACK,
            input_size: SandboxConfig::MAX_BUFFER,
            output_size: SandboxConfig::MAX_BUFFER,
            ..SandboxConfig::default()
        };
        assert!(Layout::new(&config, SandboxConfig::MAX_GUEST_FILE, 0).is_err());
    }
}

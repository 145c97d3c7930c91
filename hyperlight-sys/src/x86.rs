//! The CPU tables the host builds in guest memory (GDT, TSS, IDT, ring-0 exception stubs, page
//! tables) and the initial register state that enters the guest directly at CPL3.

use hyperlight_schema::abi::{
    PAGE_SIZE, PORT_EXCEPTION, PORT_RANGE_START, SELECTOR_KERNEL_CODE, SELECTOR_TSS,
    SELECTOR_USER_CODE, SELECTOR_USER_DATA,
};

use crate::elf::{LoadedImage, SegmentPerms};
use crate::error::Error;
use crate::hypervisor::{Registers, Segment, SpecialRegisters};
use crate::layout::{self, Layout, Region};
use crate::mem::GuestMemory;

const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 1 << 1;
const PTE_USER: u64 = 1 << 2;
const PTE_ACCESSED: u64 = 1 << 5;
const PTE_DIRTY: u64 = 1 << 6;
const PTE_NX: u64 = 1 << 63;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_AM: u64 = 1 << 18;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_SCE: u64 = 1;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
/// RFLAGS: reserved bit 1 only: IOPL 0 (ring 3 reaches only the ports the TSS I/O bitmap opens),
/// interrupts off.
pub const RFLAGS_INIT: u64 = 0x2;
/// The interrupt stack table entry every IDT gate uses (TSS `ist1` = the ring-0 stack).
const IST_INDEX: u64 = 1;
/// Offset of the I/O permission bitmap in the TSS (right after the 104-byte 64-bit TSS).
const IO_BITMAP_OFFSET: u64 = 104;
/// The bitmap covers ports `0..IO_BITMAP_PORTS`; higher ports are beyond the TSS limit (denied).
const IO_BITMAP_PORTS: u64 = 0x110;
/// TSS limit: the TSS, the bitmap and the all-ones byte the CPU may read past its end.
const TSS_LIMIT: u64 = IO_BITMAP_OFFSET + IO_BITMAP_PORTS / 8;

/// Vectors for which the CPU pushes an error code.
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// Access rights of one guest page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    SupervisorData,
    SupervisorReadOnly,
    SupervisorCode,
    User(SegmentPerms),
}

impl Access {
    fn pte(self, addr: u64) -> u64 {
        let base = addr | PTE_PRESENT | PTE_ACCESSED;
        let (user, write, exec) = match self {
            Access::SupervisorData => (false, true, false),
            Access::SupervisorReadOnly => (false, false, false),
            Access::SupervisorCode => (false, false, true),
            Access::User(p) => (true, p.write, p.execute),
        };
        // Accessed and dirty are preset so the CPU never writes page tables.
        base | if user { PTE_USER } else { 0 }
            | if write { PTE_WRITE | PTE_DIRTY } else { 0 }
            | if exec { 0 } else { PTE_NX }
    }
}

const USER_RW: SegmentPerms = SegmentPerms {
    read: true,
    write: true,
    execute: false,
};
const USER_RO: SegmentPerms = SegmentPerms {
    read: true,
    write: false,
    execute: false,
};

/// Writes GDT, TSS, IDT, stubs, boot info and page tables for `layout` and `image`.
pub fn write_tables(
    mem: &mut GuestMemory,
    layout: &Layout,
    image: &LoadedImage,
) -> Result<(), Error> {
    write_gdt_tss(mem)?;
    write_idt_and_stubs(mem)?;
    write_boot_info(mem, layout)?;

    let page = |start: u64| Region {
        start,
        end: start + PAGE_SIZE,
    };
    let mut mapped: Vec<(Region, Access)> = vec![
        (page(layout::GDT), Access::SupervisorData),
        (page(layout::IDT), Access::SupervisorReadOnly),
        (page(layout::STUBS), Access::SupervisorCode),
        (page(layout::RING0_STACK), Access::SupervisorData),
        (page(layout::BOOT_INFO), Access::User(USER_RO)),
    ];
    mapped.extend(image.segments.iter().map(|s| {
        (
            Region {
                start: s.start,
                end: s.end,
            },
            Access::User(s.perms),
        )
    }));
    mapped.extend([
        (layout.heap, Access::User(USER_RW)),
        (layout.stack, Access::User(USER_RW)),
        (layout.input, Access::User(USER_RO)),
        (layout.output, Access::User(USER_RW)),
    ]);
    write_page_tables(mem, layout, &mapped)
}

fn write_gdt_tss(mem: &mut GuestMemory) -> Result<(), Error> {
    let tss = layout::TSS;
    let tss_limit = TSS_LIMIT;
    let tss_low = (tss_limit & 0xffff)
        | ((tss & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((tss_limit >> 16) & 0xf) << 48)
        | (((tss >> 24) & 0xff) << 56);
    let gdt: [u64; 7] = [
        0,
        0x00af_9b00_0000_ffff, // ring-0 code, long mode
        0x00cf_9300_0000_ffff, // ring-0 data
        0x00cf_f300_0000_ffff, // ring-3 data
        0x00af_fb00_0000_ffff, // ring-3 code, long mode
        tss_low,
        tss >> 32,
    ];
    let bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write(layout::GDT, &bytes)?;
    // TSS: rsp0 at offset 4, ist1 at offset 36; the I/O map base at offset 102. Every IDT
    // gate uses IST 1 = the same ring-0 stack: an exception raised at CPL0 (which the guest
    // cannot reach, but see docs/security.md on `syscall`) never pushes its frame onto a stack
    // the guest chose.
    mem.write_u64(tss + 4, layout::RSP0)?;
    mem.write_u64(tss + 36, layout::RSP0)?;
    mem.write(tss + 102, &(IO_BITMAP_OFFSET as u16).to_le_bytes())?;
    mem.write(tss + IO_BITMAP_OFFSET, &io_bitmap())
}

/// The I/O permission bitmap: a set bit denies a port. Only the protocol ports
/// `PORT_RANGE_START..PORT_RANGE_START + 16` are open (a 4-byte `out` checks four bits), so ring 3
/// can signal the host but reach no other port.
fn io_bitmap() -> Vec<u8> {
    let mut bitmap = vec![0xffu8; (IO_BITMAP_PORTS / 8 + 1) as usize];
    for port in PORT_RANGE_START..PORT_RANGE_START + 16 {
        bitmap[usize::from(port / 8)] &= !(1 << (port % 8));
    }
    bitmap
}

/// The code of a ring-0 stub: `mov al, code; mov dx, PORT_EXCEPTION; out dx, al; hlt; jmp $`.
/// It touches no stack, so it is safe on whatever stack it runs.
fn stub(code: u8) -> [u8; 10] {
    let [port_lo, port_hi] = PORT_EXCEPTION.to_le_bytes();
    [
        0xb0, code, 0x66, 0xba, port_lo, port_hi, 0xee, 0xf4, 0xeb, 0xfe,
    ]
}

/// What the `syscall` stub reports in `al` (not an exception vector).
pub const SYSCALL_CODE: u8 = 0x80;
/// Where `syscall` lands (`LSTAR`): the stub slot after the 32 exception stubs.
pub const SYSCALL_STUB: u64 = layout::STUBS + layout::IDT_VECTORS * layout::STUB_SIZE;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_FMASK: u32 = 0xc000_0084;

/// The syscall MSRs: `syscall` from ring 3 enters the ring-0 stub at [`SYSCALL_STUB`] (CS 0x08,
/// SS 0x10) with TF, DF, IF, IOPL, AC and NT cleared, and the stub reports it. EFER.SCE is set, so
/// hardware KVM and PVM (which does not raise #UD for `syscall` with SCE clear) behave the same.
pub fn syscall_msrs() -> [(u32, u64); 3] {
    [
        (MSR_STAR, u64::from(SELECTOR_KERNEL_CODE) << 32),
        (MSR_LSTAR, SYSCALL_STUB),
        (MSR_FMASK, 0x4_7700),
    ]
}

fn write_idt_and_stubs(mem: &mut GuestMemory) -> Result<(), Error> {
    mem.write(SYSCALL_STUB, &stub(SYSCALL_CODE))?;
    for vector in 0..layout::IDT_VECTORS {
        let handler = layout::STUBS + vector * layout::STUB_SIZE;
        let low = (handler & 0xffff)
            | (u64::from(SELECTOR_KERNEL_CODE) << 16)
            | (IST_INDEX << 32) // always switch to the ring-0 stack, even from ring 0
            | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
            | (((handler >> 16) & 0xffff) << 48);
        let mut gate = low.to_le_bytes().to_vec();
        gate.extend_from_slice(&(handler >> 32).to_le_bytes());
        mem.write(layout::IDT + vector * 16, &gate)?;
        mem.write(handler, &stub(vector as u8))?;
    }
    Ok(())
}

fn write_boot_info(mem: &mut GuestMemory, layout: &Layout) -> Result<(), Error> {
    mem.write(layout::BOOT_INFO, &layout.boot_info().to_le_bytes())
}

fn write_page_tables(
    mem: &mut GuestMemory,
    layout: &Layout,
    mapped: &[(Region, Access)],
) -> Result<(), Error> {
    let pml4 = layout.page_tables.start;
    let pdpt = pml4 + PAGE_SIZE;
    let pd = pdpt + PAGE_SIZE;
    let first_pt = pd + PAGE_SIZE;
    let table = PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_ACCESSED;
    mem.write_u64(pml4, pdpt | table)?;
    mem.write_u64(pdpt, pd | table)?;
    let pt_count = layout.page_tables.size() / PAGE_SIZE - 3;
    let mut pd_entries = Vec::with_capacity(pt_count as usize * 8);
    for i in 0..pt_count {
        pd_entries.extend_from_slice(&((first_pt + i * PAGE_SIZE) | table).to_le_bytes());
    }
    mem.write(pd, &pd_entries)?;
    // One PTE per mapped page; everything else stays zero (not present).
    let mut ptes = vec![0u8; (pt_count * PAGE_SIZE) as usize];
    for (region, access) in mapped {
        let mut addr = region.start;
        while addr < region.end {
            let index = (addr / PAGE_SIZE) as usize * 8;
            let slot = ptes.get_mut(index..index + 8).ok_or(Error::OutOfBounds {
                gpa: addr,
                len: PAGE_SIZE as usize,
                size: layout.total as usize,
            })?;
            slot.copy_from_slice(&access.pte(addr).to_le_bytes());
            addr += PAGE_SIZE;
        }
    }
    mem.write(first_pt, &ptes)
}

fn segment(selector: u16, code: bool) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: true,
        dpl: (selector & 3) as u8,
        db: !code,
        s: true,
        l: code,
        g: true,
    }
}

/// Special registers that enter long mode with paging, at CPL3, on the host-built tables.
pub fn initial_special_registers(layout: &Layout) -> SpecialRegisters {
    let data = segment(SELECTOR_USER_DATA, false);
    SpecialRegisters {
        cs: segment(SELECTOR_USER_CODE, true),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            base: layout::TSS,
            limit: TSS_LIMIT as u32,
            selector: SELECTOR_TSS,
            type_: 11,
            present: true,
            dpl: 0,
            db: false,
            s: false,
            l: false,
            g: false,
        },
        gdt_base: layout::GDT,
        gdt_limit: 7 * 8 - 1,
        idt_base: layout::IDT,
        idt_limit: (layout::IDT_VECTORS * 16 - 1) as u16,
        cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG,
        cr3: layout.page_tables.start,
        cr4: CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
        efer: EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE,
    }
}

/// General registers at the guest's entry point.
pub fn initial_registers(layout: &Layout, entry: u64) -> Registers {
    Registers {
        rip: entry,
        rsp: layout.initial_rsp(),
        rdi: layout::BOOT_INFO,
        rflags: RFLAGS_INIT,
    }
}

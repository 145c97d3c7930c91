//! The CPU tables the host builds in guest memory (GDT, TSS, IDT, ring-0 exception stubs, page
//! tables) and the initial register state that enters the guest directly at CPL3.

use hyperlight_schema::abi::{
    PAGE_SIZE, PORT_EXCEPTION, PORT_RANGE_START, SELECTOR_KERNEL_CODE, SELECTOR_TSS,
    SELECTOR_USER_CODE, SELECTOR_USER_DATA,
};

use crate::error::Error;
use crate::hypervisor::{Registers, Segment, SpecialRegisters};
use crate::vm::elf::{LoadedImage, SegmentPerms};
use crate::vm::layout::{self, Layout, Region};
use crate::vm::memory::GuestMemory;

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

/// The rights of one guest page: who may use it (supervisor or user), and whether it is
/// writable or executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageRights {
    SupervisorData,
    SupervisorReadOnly,
    SupervisorCode,
    User(SegmentPerms),
}

impl PageRights {
    fn pte(self, addr: u64) -> u64 {
        let base = addr | PTE_PRESENT | PTE_ACCESSED;
        let (user, write, exec) = match self {
            PageRights::SupervisorData => (false, true, false),
            PageRights::SupervisorReadOnly => (false, false, false),
            PageRights::SupervisorCode => (false, false, true),
            PageRights::User(p) => (true, p.write, p.execute),
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
    let mut mapped: Vec<(Region, PageRights)> = vec![
        (page(layout::GDT), PageRights::SupervisorData),
        (page(layout::IDT), PageRights::SupervisorReadOnly),
        (page(layout::STUBS), PageRights::SupervisorCode),
        (page(layout::RING0_STACK), PageRights::SupervisorData),
        (page(layout::BOOT_INFO), PageRights::User(USER_RO)),
        (page(layout::DOORBELL), PageRights::User(USER_RW)),
    ];
    mapped.extend(image.segments.iter().map(|s| {
        (
            Region {
                start: s.start,
                end: s.end,
            },
            PageRights::User(s.perms),
        )
    }));
    mapped.extend([
        (layout.heap, PageRights::User(USER_RW)),
        (layout.stack, PageRights::User(USER_RW)),
        (layout.input, PageRights::User(USER_RO)),
        (layout.output, PageRights::User(USER_RW)),
    ]);
    if layout.module_len != 0 {
        mapped.push((layout.module, PageRights::User(USER_RO)));
    }
    write_page_tables(mem, layout, &mapped)
}

/// The 64-bit TSS descriptor (two GDT slots) of a TSS at `base` with limit `limit`: present,
/// DPL 0, type 9 (available 64-bit TSS).
fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// The GDT, indexed by selector / 8 (see the `SELECTOR_*` constants).
fn gdt() -> [u64; 7] {
    let [tss_low, tss_high] = tss_descriptor(layout::TSS, TSS_LIMIT);
    [
        0,
        0x00af_9b00_0000_ffff, // ring-0 code, long mode
        0x00cf_9300_0000_ffff, // ring-0 data
        0x00cf_f300_0000_ffff, // ring-3 data
        0x00af_fb00_0000_ffff, // ring-3 code, long mode
        tss_low,
        tss_high,
    ]
}

fn write_gdt_tss(mem: &mut GuestMemory) -> Result<(), Error> {
    let tss = layout::TSS;
    let bytes: Vec<u8> = gdt().iter().flat_map(|d| d.to_le_bytes()).collect();
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

/// The code of an exception stub: `push rax; push rdx` (onto the ring-0 stack the IDT's IST
/// entry switched to, below the CPU's frame, which stays where it was), then [`stub`]. The two
/// registers the stub changes stay readable, so a crash dump shows them and a debugger can
/// resume the guest ([`GuestFrame`]).
fn exception_stub(vector: u8) -> [u8; 12] {
    let mut code = [0x50, 0x52, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    code[2..].copy_from_slice(&stub(vector));
    code
}

/// What an exception stub leaves on the ring-0 stack about the guest it interrupted: the
/// frame the CPU pushed and the registers the stub saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFrame {
    /// The error code (0 for vectors without one).
    pub error_code: u64,
    /// RIP: the faulting instruction (a fault) or the next one (a trap, `int3`).
    pub rip: u64,
    /// CS selector.
    pub cs: u16,
    /// RFLAGS.
    pub rflags: u64,
    /// RSP.
    pub rsp: u64,
    /// SS selector.
    pub ss: u16,
    /// RAX before the stub loaded the vector into AL.
    pub rax: u64,
    /// RDX before the stub loaded the port into DX.
    pub rdx: u64,
}

impl GuestFrame {
    /// Reads the frame of an exception of `vector` (not [`SYSCALL_CODE`], which pushes none).
    /// The ring-0 stack is a supervisor page the guest cannot write.
    pub fn read(mem: &GuestMemory, vector: u8) -> Result<Self, Error> {
        let frame = if has_error_code(vector) { 48 } else { 40 };
        let start = layout::RSP0 - frame;
        let word = |i: u64| mem.read_u64(start + 8 * i);
        let skip = if frame == 48 { 1 } else { 0 };
        Ok(GuestFrame {
            error_code: if skip == 1 { word(0)? } else { 0 },
            rip: word(skip)?,
            cs: word(skip + 1)? as u16,
            rflags: word(skip + 2)?,
            rsp: word(skip + 3)?,
            ss: word(skip + 4)? as u16,
            rax: mem.read_u64(start - 8)?,
            rdx: mem.read_u64(start - 16)?,
        })
    }
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

/// The 16-byte IDT gate to the ring-0 code at `handler`.
fn idt_gate(handler: u64) -> [u8; 16] {
    let low = (handler & 0xffff)
        | (u64::from(SELECTOR_KERNEL_CODE) << 16)
        | (IST_INDEX << 32) // always switch to the ring-0 stack, even from ring 0
        | (0x8e << 40) // present, DPL 0, 64-bit interrupt gate
        | (((handler >> 16) & 0xffff) << 48);
    let mut gate = [0; 16];
    gate[..8].copy_from_slice(&low.to_le_bytes());
    gate[8..].copy_from_slice(&(handler >> 32).to_le_bytes());
    gate
}

fn write_idt_and_stubs(mem: &mut GuestMemory) -> Result<(), Error> {
    mem.write(SYSCALL_STUB, &stub(SYSCALL_CODE))?;
    for vector in 0..layout::IDT_VECTORS {
        let handler = layout::STUBS + vector * layout::STUB_SIZE;
        mem.write(layout::IDT + vector * 16, &idt_gate(handler))?;
        mem.write(handler, &exception_stub(vector as u8))?;
    }
    Ok(())
}

fn write_boot_info(mem: &mut GuestMemory, layout: &Layout) -> Result<(), Error> {
    mem.write(layout::BOOT_INFO, &layout.boot_info().to_le_bytes())
}

fn write_page_tables(
    mem: &mut GuestMemory,
    layout: &Layout,
    mapped: &[(Region, PageRights)],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;
    use crate::vm::elf::LoadedSegment;
    use hyperlight_schema::abi::SELECTOR_KERNEL_DATA;

    /// What a segment descriptor says, decoded bit by bit (Intel SDM vol. 3, 3.4.5).
    fn decode_segment(d: u64) -> Segment {
        Segment {
            base: ((d >> 16) & 0xff_ffff) | (((d >> 56) & 0xff) << 24),
            limit: ((d & 0xffff) | (((d >> 48) & 0xf) << 16)) as u32,
            selector: 0,
            type_: ((d >> 40) & 0xf) as u8,
            present: d & (1 << 47) != 0,
            dpl: ((d >> 45) & 3) as u8,
            db: d & (1 << 54) != 0,
            s: d & (1 << 44) != 0,
            l: d & (1 << 53) != 0,
            g: d & (1 << 55) != 0,
        }
    }

    #[test]
    fn the_gdt_holds_the_segments_the_registers_are_loaded_with() {
        let gdt = gdt();
        let sregs = initial_special_registers(&default_layout());
        assert_eq!(gdt[0], 0, "null descriptor");
        for (name, reg) in [("cs", sregs.cs), ("ss", sregs.ss), ("ds", sregs.ds)] {
            let mut described = decode_segment(gdt[usize::from(reg.selector >> 3)]);
            described.selector = reg.selector;
            // The limit is in pages (G): 0xfffff pages cover the 4 GiB of `limit`.
            assert_eq!(described.limit, 0xfffff, "{name}");
            described.limit = reg.limit;
            // The CPU sets the accessed bit (type bit 0) when it loads a selector.
            described.type_ |= 1;
            assert_eq!(described, reg, "{name}");
            assert_eq!(reg.dpl, 3, "{name} is a ring-3 segment");
        }
        let kernel_code = decode_segment(gdt[usize::from(SELECTOR_KERNEL_CODE >> 3)]);
        assert!(kernel_code.present && kernel_code.l && !kernel_code.db);
        assert_eq!((kernel_code.dpl, kernel_code.type_), (0, 0xb));
        let kernel_data = decode_segment(gdt[usize::from(SELECTOR_KERNEL_DATA >> 3)]);
        assert!(kernel_data.present && kernel_data.s);
        assert_eq!((kernel_data.dpl, kernel_data.type_), (0, 0x3));
        // `limit` counts the GDT's bytes minus one: exactly the seven slots.
        assert_eq!(usize::from(sregs.gdt_limit) + 1, gdt.len() * 8);
    }

    #[test]
    fn the_tss_descriptor_splits_base_and_limit_as_the_cpu_reads_them() {
        let base = 0x1234_5678_9abc_def0;
        let [low, high] = tss_descriptor(base, 0xa_bcde);
        let d = decode_segment(low);
        assert_eq!(d.base | (high << 32), base);
        assert_eq!(d.limit, 0xa_bcde);
        assert!(d.present && !d.s && !d.g);
        assert_eq!((d.type_, d.dpl), (9, 0), "available 64-bit TSS, DPL 0");
        // The one in the GDT is the task register's.
        let gdt = gdt();
        let tr = initial_special_registers(&default_layout()).tr;
        let slot = usize::from(SELECTOR_TSS >> 3);
        let d = decode_segment(gdt[slot]);
        assert_eq!(d.base | (gdt[slot + 1] << 32), tr.base);
        assert_eq!(u64::from(d.limit), u64::from(tr.limit));
        // The CPU marks the TSS busy (type 11) when it loads TR.
        assert_eq!(d.type_ | 2, tr.type_);
        assert_eq!(
            TSS_LIMIT,
            104 + 0x110 / 8,
            "TSS, bitmap and its closing byte"
        );
    }

    #[test]
    fn an_idt_gate_splits_the_handler_address_and_enters_ring_0_on_ist_1() {
        let handler = 0x1234_5678_9abc_def0u64;
        let gate = idt_gate(handler);
        let low = u64::from_le_bytes(gate[..8].try_into().unwrap());
        let high = u64::from_le_bytes(gate[8..].try_into().unwrap());
        let offset = (low & 0xffff) | (((low >> 48) & 0xffff) << 16) | ((high & 0xffff_ffff) << 32);
        assert_eq!(offset, handler);
        assert_eq!(high >> 32, 0, "reserved");
        assert_eq!((low >> 16) & 0xffff, u64::from(SELECTOR_KERNEL_CODE));
        assert_eq!((low >> 32) & 7, 1, "IST 1");
        assert_eq!((low >> 40) & 0xf, 0xe, "64-bit interrupt gate");
        assert_eq!((low >> 45) & 3, 0, "DPL 0: `int n` from ring 3 raises #GP");
        assert_ne!(low & (1 << 47), 0, "present");
    }

    #[test]
    fn the_io_bitmap_opens_the_sixteen_protocol_ports_only() {
        let bitmap = io_bitmap();
        assert_eq!(bitmap.len() as u64, TSS_LIMIT - IO_BITMAP_OFFSET + 1);
        let open = |port: u16| bitmap[usize::from(port / 8)] & (1 << (port % 8)) == 0;
        for port in 0..IO_BITMAP_PORTS as u16 {
            let protocol = (PORT_RANGE_START..PORT_RANGE_START + 16).contains(&port);
            assert_eq!(open(port), protocol, "port {port:#x}");
        }
        assert_eq!(
            bitmap.last(),
            Some(&0xff),
            "the byte the CPU may read past the end"
        );
    }

    #[test]
    fn a_stub_reports_its_code_on_the_exception_port_and_halts() {
        let [lo, hi] = PORT_EXCEPTION.to_le_bytes();
        // mov al, 13; mov dx, PORT_EXCEPTION; out dx, al; hlt; jmp $
        assert_eq!(
            stub(13),
            [0xb0, 13, 0x66, 0xba, lo, hi, 0xee, 0xf4, 0xeb, 0xfe]
        );
        assert!(stub(0).len() as u64 <= layout::STUB_SIZE);
        // push rax; push rdx; then the same
        assert_eq!(exception_stub(13)[..2], [0x50, 0x52]);
        assert_eq!(exception_stub(13)[2..], stub(13));
        assert!(exception_stub(0).len() as u64 <= layout::STUB_SIZE);
        assert_eq!(SYSCALL_STUB, layout::STUBS + 32 * layout::STUB_SIZE);
    }

    #[test]
    fn syscall_enters_the_stub_with_the_dangerous_flags_cleared() {
        let msrs = syscall_msrs();
        let msr = |index: u32| msrs.iter().find(|(i, _)| *i == index).unwrap().1;
        assert_eq!(msr(MSR_LSTAR), SYSCALL_STUB);
        assert_eq!(
            (msr(MSR_STAR) >> 32) & 0xffff,
            u64::from(SELECTOR_KERNEL_CODE)
        );
        // TF, IF, DF, IOPL (two bits), NT, AC, and nothing else.
        let masked = [8, 9, 10, 12, 13, 14, 18];
        assert_eq!(
            msr(MSR_FMASK),
            masked.iter().map(|b| 1u64 << b).sum::<u64>()
        );
    }

    #[test]
    fn error_codes_are_pushed_for_exactly_the_architectural_vectors() {
        let with: Vec<u8> = (0..32).filter(|&v| has_error_code(v)).collect();
        assert_eq!(with, [8, 10, 11, 12, 13, 14, 17, 21, 29, 30]);
    }

    #[test]
    fn the_entry_state_is_long_mode_at_cpl3_with_iopl_0() {
        let layout = default_layout();
        let sregs = initial_special_registers(&layout);
        assert_eq!(sregs.cs.selector & 3, 3, "CPL 3");
        assert!(sregs.cs.l && !sregs.cs.db, "64-bit code");
        assert_eq!(sregs.cr3, layout.page_tables.start);
        assert_eq!(
            sregs.cr0 & (CR0_PE | CR0_PG | CR0_WP),
            CR0_PE | CR0_PG | CR0_WP
        );
        assert_eq!(sregs.cr4, CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT);
        assert_eq!(sregs.efer, EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE);
        let regs = initial_registers(&layout, 0x10_0123);
        assert_eq!((regs.rip, regs.rdi), (0x10_0123, layout::BOOT_INFO));
        assert_eq!((regs.rflags >> 12) & 3, 0, "IOPL 0");
        assert_eq!(regs.rflags & (1 << 9), 0, "IF clear");
        assert_eq!(regs.rsp % 16, 8, "the alignment of a function entry");
    }

    fn default_layout() -> Layout {
        Layout::new(&SandboxConfig::default(), 3 * PAGE_SIZE, 0).unwrap()
    }

    /// The leaf entry that maps `addr` on the tables at `cr3`, walked as the CPU walks them; `None`
    /// where an entry on the way is not present.
    fn walk(mem: &GuestMemory, cr3: u64, addr: u64) -> Option<u64> {
        const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
        let mut table = cr3;
        for level in [39, 30, 21, 12] {
            let entry = mem.read_u64(table + ((addr >> level) & 0x1ff) * 8).unwrap();
            if entry & PTE_PRESENT == 0 {
                return None;
            }
            if level == 12 {
                return Some(entry);
            }
            // Intermediate entries allow everything; the leaf decides.
            assert_eq!(
                entry & (PTE_WRITE | PTE_USER | PTE_NX),
                PTE_WRITE | PTE_USER
            );
            table = entry & ADDRESS;
        }
        None
    }

    #[test]
    fn the_page_tables_map_each_region_with_its_rights_and_nothing_else() {
        let layout = default_layout();
        let code = SegmentPerms {
            read: true,
            write: false,
            execute: true,
        };
        let image = LoadedImage {
            base: layout::IMAGE_BASE,
            entry: layout::IMAGE_BASE,
            segments: vec![
                LoadedSegment {
                    start: layout::IMAGE_BASE,
                    end: layout::IMAGE_BASE + PAGE_SIZE,
                    perms: code,
                },
                // A hole: the middle page belongs to no segment.
                LoadedSegment {
                    start: layout::IMAGE_BASE + 2 * PAGE_SIZE,
                    end: layout::IMAGE_BASE + 3 * PAGE_SIZE,
                    perms: USER_RW,
                },
            ],
            end: layout::IMAGE_BASE + 3 * PAGE_SIZE,
        };
        let mut mem = GuestMemory::new(layout.total as usize).unwrap();
        write_tables(&mut mem, &layout, &image).unwrap();
        let cr3 = initial_special_registers(&layout).cr3;

        // (user, write, execute) of every page, `None` for unmapped.
        type Rights = Option<(bool, bool, bool)>;
        let rights = |addr: u64| -> Rights {
            walk(&mem, cr3, addr).map(|pte| {
                assert_eq!(pte & 0x000f_ffff_ffff_f000, addr, "identity mapped");
                assert_ne!(pte & PTE_ACCESSED, 0, "accessed preset at {addr:#x}");
                let write = pte & PTE_WRITE != 0;
                assert_eq!(pte & PTE_DIRTY != 0, write, "dirty preset at {addr:#x}");
                (pte & PTE_USER != 0, write, pte & PTE_NX == 0)
            })
        };
        let mut expected: Vec<(u64, Rights)> = vec![
            (0, None),
            (layout::GDT, Some((false, true, false))),
            (layout::IDT, Some((false, false, false))),
            (layout::STUBS, Some((false, false, true))),
            (layout::RING0_STACK, Some((false, true, false))),
            (layout::BOOT_INFO, Some((true, false, false))),
            (layout::DOORBELL, Some((true, true, false))),
            (layout::DOORBELL + PAGE_SIZE, None),
            (layout::IMAGE_BASE, Some((true, false, true))),
            (layout::IMAGE_BASE + PAGE_SIZE, None),
            (
                layout::IMAGE_BASE + 2 * PAGE_SIZE,
                Some((true, true, false)),
            ),
        ];
        for (region, want) in [
            (layout.heap, Some((true, true, false))),
            (layout.stack, Some((true, true, false))),
            (layout.input, Some((true, false, false))),
            (layout.output, Some((true, true, false))),
            (layout.page_tables, None),
        ] {
            expected.push((region.start, want));
            expected.push((region.end - PAGE_SIZE, want));
        }
        // The guard pages around the stack and after the output buffer.
        for guard in [
            layout.heap.end,
            layout.stack.start - PAGE_SIZE,
            layout.stack.end,
            layout.output.end,
        ] {
            expected.push((guard, None));
        }
        for (addr, want) in expected {
            assert_eq!(rights(addr), want, "page {addr:#x}");
        }
        // Nothing is mapped past the end of guest memory.
        assert_eq!(rights(layout.total), None);
    }
}

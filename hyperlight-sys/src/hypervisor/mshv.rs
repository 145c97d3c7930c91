//! The mshv backend (Microsoft Hypervisor: `/dev/mshv` on Linux running as a Hyper-V root
//! partition), on `mshv-ioctls`. Built with the `mshv` cargo feature.
//!
//! **Not run on real hardware here**: the project's machines have no `/dev/mshv`. The
//! translation between the neutral types and mshv's registers and intercept messages is pure code
//! and unit-tested below; the ioctl plumbing follows `mshv-ioctls`' own examples. See
//! `docs/hypervisors.md`.
//!
//! Semantics match the KVM backend:
//! - **Memory**: one user-memory region, readable, writable and executable, like a KVM slot with
//!   no flags. mshv pins the pages while they are mapped.
//! - **Registers**: special registers are read, patched and written back (as KVM's
//!   `KVM_GET_SREGS`/`KVM_SET_SREGS`); general registers other than RIP, RSP, RDI and RFLAGS are
//!   zeroed.
//! - **Port I/O**: KVM completes an `in`/`out` on the next `KVM_RUN` (RIP moves past it then);
//!   mshv leaves RIP on the instruction. This backend remembers the length the intercept message
//!   reports and moves RIP on the next [`Vcpu::run`], so a resumed guest continues after the
//!   instruction, and a register read in between sees the instruction's own RIP, as on KVM.
//!   [`Vcpu::set_registers`] drops the pending move (KVM does the same when RIP was changed).
//! - **Kick**: mshv has no `immediate_exit` byte, so the vCPU owns an [`AtomicU8`] that the kick
//!   signal handler sets; [`Vcpu::run`] checks it before entering the guest and returns
//!   [`Exit::Interrupted`] without entering when it is set, and `EINTR`/`EAGAIN` from the run
//!   ioctl is [`Exit::Interrupted`] too. A kick landing between that check and the ioctl is
//!   delayed until the guest's next exit (see `docs/hypervisors.md`).

use std::fs::OpenOptions;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use mshv_bindings::{
    hv_message, hv_message_type, hv_message_type_HVMSG_GPA_INTERCEPT,
    hv_message_type_HVMSG_UNMAPPED_GPA, hv_message_type_HVMSG_UNRECOVERABLE_EXCEPTION,
    hv_message_type_HVMSG_X64_EXCEPTION_INTERCEPT, hv_message_type_HVMSG_X64_HALT,
    hv_message_type_HVMSG_X64_IO_PORT_INTERCEPT,
    hv_partition_property_code_HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0,
    hv_partition_property_code_HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES, hv_register_assoc,
    hv_register_name, hv_register_name_HV_X64_REGISTER_CR2, hv_register_name_HV_X64_REGISTER_CS,
    hv_register_name_HV_X64_REGISTER_LSTAR, hv_register_name_HV_X64_REGISTER_RDI,
    hv_register_name_HV_X64_REGISTER_RFLAGS, hv_register_name_HV_X64_REGISTER_RIP,
    hv_register_name_HV_X64_REGISTER_RSP, hv_register_name_HV_X64_REGISTER_SFMASK,
    hv_register_name_HV_X64_REGISTER_STAR, hv_register_value, hv_x64_io_port_intercept_message,
    mshv_create_partition_v2, mshv_user_mem_region, SegmentRegister,
    SpecialRegisters as MshvSpecialRegisters, StandardRegisters, XSave, HV_INTERCEPT_ACCESS_WRITE,
    MSHV_GPAP_ACCESS_OP_CLEAR, MSHV_SET_MEM_BIT_EXECUTABLE, MSHV_SET_MEM_BIT_WRITABLE,
};
use mshv_ioctls::{Mshv, MshvError, VcpuFd, VmFd};

use super::{
    bitmap_pages, DirtyLog, Exit, FaultState, GeneralRegisters, Hypervisor, Registers, Segment,
    SpecialRegisters, Vcpu, VcpuState, Vm,
};
use crate::error::{Error, Unusable, UnusableReason};
use crate::vm::memory::GuestMemory;

pub use super::select::MSHV_DEVICE;

/// Guest page size of mshv memory regions (`guest_pfn` counts these).
const PAGE_SIZE: u64 = 4096;

/// Every ioctl request an mshv sandbox's vCPU thread issues (through `mshv-ioctls`, so not
/// through the syscall gate), with its name: running the vCPU, its registers (one generic
/// hypercall ioctl, `MSHV_ROOT_HVCALL`), its XSAVE state, and the partition's dirty bitmap.
/// Creating partitions and vCPUs, mapping memory and setting MSRs happen on the threads that
/// build sandboxes.
pub(crate) fn vcpu_thread_ioctls() -> [(u64, &'static str); 5] {
    use mshv_ioctls::{
        MSHV_GET_GPAP_ACCESS_BITMAP, MSHV_GET_VP_STATE, MSHV_ROOT_HVCALL, MSHV_RUN_VP,
        MSHV_SET_VP_STATE,
    };
    [
        (MSHV_RUN_VP(), "MSHV_RUN_VP"),
        (MSHV_ROOT_HVCALL(), "MSHV_ROOT_HVCALL"),
        (MSHV_GET_VP_STATE(), "MSHV_GET_VP_STATE"),
        (MSHV_SET_VP_STATE(), "MSHV_SET_VP_STATE"),
        (MSHV_GET_GPAP_ACCESS_BITMAP(), "MSHV_GET_GPAP_ACCESS_BITMAP"),
    ]
}

/// mshv opened from a device path.
#[derive(Debug)]
pub struct MshvHypervisor {
    mshv: Mshv,
}

/// mshv at `path` is not usable for `reason`.
fn unusable(path: &Path, reason: UnusableReason) -> Error {
    Error::HypervisorUnusable {
        hypervisor: "mshv",
        why: Unusable::new(path, reason),
    }
}

impl MshvHypervisor {
    /// Opens mshv at `path` (as `Mshv::new` opens `/dev/mshv`: read-only, non-blocking,
    /// close-on-exec) and checks that the device answers the root-partition hypercall interface.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| unusable(path, UnusableReason::of_open_error(source)))?;
        // SAFETY: the fd was just opened by us and its ownership moves into `Mshv`.
        let mshv = unsafe { Mshv::new_with_fd_number(file.into_raw_fd()) };
        // `Mshv::create_vm` asks this property and panics if it cannot; asking here turns any
        // device that is not mshv (or an mshv too old for mshv-ioctls 0.7) into a typed error.
        mshv.get_host_partition_property(
            hv_partition_property_code_HV_PARTITION_PROPERTY_PROCESSOR_FEATURES0,
        )
        .map_err(|e| {
            unusable(
                path,
                UnusableReason::Unsupported {
                    reason: format!("does not answer the mshv root hypercall interface: {e}"),
                },
            )
        })?;
        Ok(Self { mshv })
    }
}

fn mshv_err(op: &'static str) -> impl FnOnce(MshvError) -> Error {
    move |e| {
        // A failed hypercall becomes EIO; keep its status in the log.
        tracing::warn!(op, error = %e, "mshv operation failed");
        Error::Hypervisor {
            op,
            errno: e.errno(),
        }
    }
}

impl Hypervisor for MshvHypervisor {
    fn create_vm(&self) -> Result<Box<dyn Vm>, Error> {
        // No partition flags: no LAPIC, no SynIC, no CPU-feature banks. The guest takes no
        // interrupts. (`Mshv::create_vm` would ask for a LAPIC and synthetic features.)
        let vm = self
            .mshv
            .create_vm_with_args(&mshv_create_partition_v2::default())
            .map_err(mshv_err("MSHV_CREATE_PARTITION"))?;
        // No synthetic (Hyper-V enlightenment) processor features either; this must be set
        // between creation and initialization.
        vm.set_partition_property(
            hv_partition_property_code_HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES,
            0,
        )
        .map_err(mshv_err("HV_PARTITION_PROPERTY_SYNTHETIC_PROC_FEATURES"))?;
        vm.initialize()
            .map_err(mshv_err("MSHV_INITIALIZE_PARTITION"))?;
        Ok(Box::new(MshvVm { vm, mapped: None }))
    }
}

struct MshvVm {
    vm: VmFd,
    /// The current guest memory region, if any.
    mapped: Option<mshv_user_mem_region>,
}

/// The mshv region mapping `size` bytes at `host_addr` to guest physical address `gpa`, readable,
/// writable and executable (what a KVM slot without flags allows). All three must be page aligned.
pub(crate) fn memory_region(
    gpa: u64,
    host_addr: u64,
    size: u64,
) -> Result<mshv_user_mem_region, Error> {
    if size == 0 || !(gpa | host_addr | size).is_multiple_of(PAGE_SIZE) {
        return Err(Error::Hypervisor {
            op: "MSHV_SET_GUEST_MEMORY",
            errno: libc::EINVAL,
        });
    }
    Ok(mshv_user_mem_region {
        size,
        guest_pfn: gpa / PAGE_SIZE,
        userspace_addr: host_addr,
        flags: (1u8 << MSHV_SET_MEM_BIT_WRITABLE) | (1u8 << MSHV_SET_MEM_BIT_EXECUTABLE),
        ..Default::default()
    })
}

impl Vm for MshvVm {
    unsafe fn map_memory(&mut self, gpa: u64, host_addr: u64, size: u64) -> Result<(), Error> {
        let region = memory_region(gpa, host_addr, size)?;
        self.vm
            .enable_dirty_page_tracking()
            .map_err(mshv_err("HV_PARTITION_PROPERTY_GPA_PAGE_ACCESS_TRACKING"))?;
        // The caller guarantees the host range stays mapped until the VM is dropped; the kernel
        // pins it while it is mapped.
        self.vm
            .map_user_memory(region)
            .map_err(mshv_err("MSHV_SET_GUEST_MEMORY"))?;
        self.mapped = Some(region);
        Ok(())
    }

    fn create_vcpu(&mut self) -> Result<Box<dyn Vcpu>, Error> {
        let vcpu = self.vm.create_vcpu(0).map_err(mshv_err("MSHV_CREATE_VP"))?;
        Ok(Box::new(MshvVcpu {
            vcpu,
            immediate_exit: AtomicU8::new(0),
            resume_rip: None,
        }))
    }

    /// mshv pins guest memory, so the host's page tables never see the guest's writes: the
    /// partition's own access bitmap is the log, and the VM stays open for it.
    fn into_dirty_log(mut self: Box<Self>, mem: &GuestMemory) -> Result<Box<dyn DirtyLog>, Error> {
        // Forget the writes of the set-up (the guest's init): the log starts now.
        self.written(mem)?;
        Ok(self)
    }
}

/// The partition's access bitmap lists the guest's writes only, and is cleared when read.
impl DirtyLog for MshvVm {
    fn written(&mut self, _: &GuestMemory) -> Result<Vec<usize>, Error> {
        let Some(region) = self.mapped else {
            return Ok(Vec::new());
        };
        let bitmap = self
            .vm
            .get_dirty_log(
                region.guest_pfn,
                region.size as usize,
                MSHV_GPAP_ACCESS_OP_CLEAR as u8,
            )
            .map_err(mshv_err("HVCALL_GET_GPA_PAGES_ACCESS_STATES"))?;
        Ok(bitmap_pages(&bitmap))
    }

    fn restored(&mut self, _: &GuestMemory, _: &[usize], _: &[usize]) -> Result<(), Error> {
        Ok(())
    }
}

/// What [`Vcpu::save_state`] saves on mshv.
struct MshvState {
    regs: StandardRegisters,
    sregs: MshvSpecialRegisters,
    xsave: XSave,
}

struct MshvVcpu {
    vcpu: VcpuFd,
    /// Set by the kick signal handler; checked before every run ioctl. Cleared by the runtime.
    immediate_exit: AtomicU8,
    /// Where the guest continues after the last port-I/O exit; written to RIP on the next run.
    resume_rip: Option<u64>,
}

/// The neutral segment as mshv's `SegmentRegister` (which `mshv-bindings` packs into the
/// hypervisor's attribute word).
pub(crate) fn segment_to_mshv(s: &Segment) -> SegmentRegister {
    SegmentRegister {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present.into(),
        dpl: s.dpl,
        db: s.db.into(),
        s: s.s.into(),
        l: s.l.into(),
        g: s.g.into(),
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// mshv's `SegmentRegister` as the neutral segment.
pub(crate) fn segment_from_mshv(s: &SegmentRegister) -> Segment {
    Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present != 0,
        dpl: s.dpl,
        db: s.db != 0,
        s: s.s != 0,
        l: s.l != 0,
        g: s.g != 0,
    }
}

/// Writes the neutral special registers over `sregs` (read from the vCPU), leaving what the
/// runtime does not set (LDT, CR2, CR8, APIC base, pending interrupts) as it was.
pub(crate) fn apply_special_registers(sregs: &mut MshvSpecialRegisters, s: &SpecialRegisters) {
    sregs.cs = segment_to_mshv(&s.cs);
    sregs.ds = segment_to_mshv(&s.ds);
    sregs.es = segment_to_mshv(&s.es);
    sregs.fs = segment_to_mshv(&s.fs);
    sregs.gs = segment_to_mshv(&s.gs);
    sregs.ss = segment_to_mshv(&s.ss);
    sregs.tr = segment_to_mshv(&s.tr);
    sregs.gdt.base = s.gdt_base;
    sregs.gdt.limit = s.gdt_limit;
    sregs.idt.base = s.idt_base;
    sregs.idt.limit = s.idt_limit;
    sregs.cr0 = s.cr0;
    sregs.cr3 = s.cr3;
    sregs.cr4 = s.cr4;
    sregs.efer = s.efer;
}

/// The general registers to write: the four the runtime sets, every other one zero.
pub(crate) fn standard_registers(r: &Registers) -> StandardRegisters {
    StandardRegisters {
        rip: r.rip,
        rsp: r.rsp,
        rdi: r.rdi,
        rflags: r.rflags,
        ..Default::default()
    }
}

/// The registers [`Vcpu::fault_state`] reads, in the order [`fault_state_from`] expects.
pub(crate) const FAULT_REGISTERS: [hv_register_name; 6] = [
    hv_register_name_HV_X64_REGISTER_RIP,
    hv_register_name_HV_X64_REGISTER_RSP,
    hv_register_name_HV_X64_REGISTER_RDI,
    hv_register_name_HV_X64_REGISTER_RFLAGS,
    hv_register_name_HV_X64_REGISTER_CS,
    hv_register_name_HV_X64_REGISTER_CR2,
];

/// Reads a 64-bit register value.
fn reg64(assoc: &hv_register_assoc) -> u64 {
    // SAFETY: every variant of the 16-byte `hv_register_value` union is plain integers, so any
    // bit pattern is a valid u64.
    unsafe { assoc.value.reg64 }
}

/// The fault state from the values of [`FAULT_REGISTERS`], as `get_reg` filled them.
pub(crate) fn fault_state_from(regs: &[hv_register_assoc; 6]) -> FaultState {
    // SAFETY: as in `reg64`: the segment variant is plain integers too.
    let cs = segment_from_mshv(&SegmentRegister::from(unsafe { regs[4].value.segment }));
    FaultState {
        regs: Registers {
            rip: reg64(&regs[0]),
            rsp: reg64(&regs[1]),
            rdi: reg64(&regs[2]),
            rflags: reg64(&regs[3]),
        },
        cs_selector: cs.selector,
        cr2: reg64(&regs[5]),
    }
}

/// Bits of `hv_x64_io_port_access_info`: access size in bytes (bits 0-2), string op (3), rep (4).
fn io_access(io: &hv_x64_io_port_intercept_message) -> (u8, bool) {
    // SAFETY: both variants of the union are one plain byte.
    let bits = unsafe { io.access_info.as_uint8 };
    (bits & 0x7, bits & 0x18 != 0)
}

const IO_PORT: hv_message_type = hv_message_type_HVMSG_X64_IO_PORT_INTERCEPT;
const UNMAPPED_GPA: hv_message_type = hv_message_type_HVMSG_UNMAPPED_GPA;
const GPA_INTERCEPT: hv_message_type = hv_message_type_HVMSG_GPA_INTERCEPT;
const HALT: hv_message_type = hv_message_type_HVMSG_X64_HALT;
const UNRECOVERABLE: hv_message_type = hv_message_type_HVMSG_UNRECOVERABLE_EXCEPTION;
const EXCEPTION: hv_message_type = hv_message_type_HVMSG_X64_EXCEPTION_INTERCEPT;

/// The neutral exit for an mshv intercept message, exactly as the KVM backend reports the
/// corresponding KVM exit.
pub(crate) fn exit_from_message(msg: &hv_message) -> Exit {
    let kind: hv_message_type = msg.header.message_type;
    match kind {
        IO_PORT => {
            let Ok(io) = msg.to_ioport_info() else {
                return other(kind);
            };
            if io.header.instruction_length() == 0 {
                // Without a length RIP cannot be moved past the instruction; never resume.
                return Exit::Other {
                    reason: "HVMSG_X64_IO_PORT_INTERCEPT without an instruction length".into(),
                };
            }
            let port = io.port_number;
            if io.header.intercept_access_type != HV_INTERCEPT_ACCESS_WRITE as u8 {
                return Exit::In { port };
            }
            let (width, string) = io_access(&io);
            let size = match width {
                n @ (1 | 2 | 4) if !string => n,
                _ => 0,
            };
            let value = match size {
                1 => io.rax & 0xff,
                2 => io.rax & 0xffff,
                4 => io.rax & 0xffff_ffff,
                _ => 0,
            } as u32;
            Exit::Out { port, value, size }
        }
        UNMAPPED_GPA | GPA_INTERCEPT => match msg.to_memory_info() {
            Ok(mem) => Exit::Mmio {
                gpa: mem.guest_physical_address,
                write: mem.header.intercept_access_type == HV_INTERCEPT_ACCESS_WRITE as u8,
            },
            Err(_) => other(kind),
        },
        HALT => Exit::Halt,
        // A triple fault: the hypervisor reports it as an unrecoverable exception.
        UNRECOVERABLE => Exit::Shutdown,
        EXCEPTION => match msg.to_exception_info() {
            Ok(e) => {
                let (vector, error_code, rip) = (e.exception_vector, e.error_code, e.header.rip);
                Exit::Other {
                    reason: format!(
                        "HVMSG_X64_EXCEPTION_INTERCEPT vector {vector} error code \
                         {error_code:#x} at rip {rip:#x}"
                    ),
                }
            }
            Err(_) => other(kind),
        },
        _ => other(kind),
    }
}

fn other(kind: hv_message_type) -> Exit {
    use mshv_bindings::*;
    // Message types the runtime does not expect, named for error messages.
    let names = [
        (hv_message_type_HVMSG_NONE, "HVMSG_NONE"),
        (hv_message_type_HVMSG_UNACCEPTED_GPA, "HVMSG_UNACCEPTED_GPA"),
        (
            hv_message_type_HVMSG_GPA_ATTRIBUTE_INTERCEPT,
            "HVMSG_GPA_ATTRIBUTE_INTERCEPT",
        ),
        (hv_message_type_HVMSG_TIMER_EXPIRED, "HVMSG_TIMER_EXPIRED"),
        (
            hv_message_type_HVMSG_INVALID_VP_REGISTER_VALUE,
            "HVMSG_INVALID_VP_REGISTER_VALUE",
        ),
        (
            hv_message_type_HVMSG_UNSUPPORTED_FEATURE,
            "HVMSG_UNSUPPORTED_FEATURE",
        ),
        (
            hv_message_type_HVMSG_HYPERCALL_INTERCEPT,
            "HVMSG_HYPERCALL_INTERCEPT",
        ),
        (
            hv_message_type_HVMSG_X64_MSR_INTERCEPT,
            "HVMSG_X64_MSR_INTERCEPT",
        ),
        (
            hv_message_type_HVMSG_X64_CPUID_INTERCEPT,
            "HVMSG_X64_CPUID_INTERCEPT",
        ),
        (hv_message_type_HVMSG_X64_APIC_EOI, "HVMSG_X64_APIC_EOI"),
        (
            hv_message_type_HVMSG_X64_INTERRUPTION_DELIVERABLE,
            "HVMSG_X64_INTERRUPTION_DELIVERABLE",
        ),
        (
            hv_message_type_HVMSG_X64_SIPI_INTERCEPT,
            "HVMSG_X64_SIPI_INTERCEPT",
        ),
        (IO_PORT, "HVMSG_X64_IO_PORT_INTERCEPT"),
        (UNMAPPED_GPA, "HVMSG_UNMAPPED_GPA"),
        (GPA_INTERCEPT, "HVMSG_GPA_INTERCEPT"),
        (EXCEPTION, "HVMSG_X64_EXCEPTION_INTERCEPT"),
    ];
    Exit::Other {
        reason: match names.iter().find(|(k, _)| *k == kind) {
            Some((_, name)) => name.to_string(),
            None => format!("mshv message type {kind:#x}"),
        },
    }
}

/// Where the guest continues after a port-I/O intercept: just past the instruction. `None` for
/// any other message, and for string (`ins`/`outs`) or repeated accesses, which the runtime
/// never resumes (KVM would emulate them; this backend does not).
pub(crate) fn resume_rip(msg: &hv_message) -> Option<u64> {
    if msg.header.message_type != IO_PORT {
        return None;
    }
    let io = msg.to_ioport_info().ok()?;
    let len = io.header.instruction_length();
    let (_, string) = io_access(&io);
    if len == 0 || string {
        return None;
    }
    Some(io.header.rip.wrapping_add(u64::from(len)))
}

impl Vcpu for MshvVcpu {
    fn set_special_registers(&mut self, s: &SpecialRegisters) -> Result<(), Error> {
        let mut sregs = self.vcpu.get_sregs().map_err(mshv_err("GET_SREGS"))?;
        apply_special_registers(&mut sregs, s);
        self.vcpu.set_sregs(&sregs).map_err(mshv_err("SET_SREGS"))
    }

    fn set_registers(&mut self, r: &Registers) -> Result<(), Error> {
        // New registers replace the pending move past an `out`, as on KVM.
        self.resume_rip = None;
        self.vcpu
            .set_regs(&standard_registers(r))
            .map_err(mshv_err("SET_REGS"))
    }

    fn general_registers(&mut self) -> Result<GeneralRegisters, Error> {
        let r = self
            .vcpu
            .get_regs()
            .map_err(mshv_err("HVCALL_GET_VP_REGISTERS"))?;
        let s = self
            .vcpu
            .get_sregs()
            .map_err(mshv_err("HVCALL_GET_VP_REGISTERS"))?;
        Ok(GeneralRegisters {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: r.rsp,
            r: [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15],
            // `run` moves RIP past a port access on re-entry: report where the guest resumes.
            rip: self.resume_rip.unwrap_or(r.rip),
            rflags: r.rflags,
            selectors: [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].map(|seg| seg.selector),
            fs_base: s.fs.base,
            gs_base: s.gs.base,
        })
    }

    #[cfg(feature = "gdb")]
    fn set_general_registers(&mut self, r: &GeneralRegisters) -> Result<(), Error> {
        // New registers replace the pending move past an `out`, as on KVM.
        self.resume_rip = None;
        let regs = StandardRegisters {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: r.rsp,
            r8: r.r[0],
            r9: r.r[1],
            r10: r.r[2],
            r11: r.r[3],
            r12: r.r[4],
            r13: r.r[5],
            r14: r.r[6],
            r15: r.r[7],
            rip: r.rip,
            rflags: r.rflags,
        };
        self.vcpu.set_regs(&regs).map_err(mshv_err("SET_REGS"))
    }

    fn fault_state(&mut self) -> Result<FaultState, Error> {
        let mut regs = FAULT_REGISTERS.map(|name| hv_register_assoc {
            name,
            ..Default::default()
        });
        self.vcpu
            .get_reg(&mut regs)
            .map_err(mshv_err("HVCALL_GET_VP_REGISTERS"))?;
        Ok(fault_state_from(&regs))
    }

    fn set_msrs(&mut self, msrs: &[(u32, u64)]) -> Result<(), Error> {
        let regs = msrs
            .iter()
            .map(|&(index, value)| {
                let name = match index {
                    0xc000_0081 => hv_register_name_HV_X64_REGISTER_STAR,
                    0xc000_0082 => hv_register_name_HV_X64_REGISTER_LSTAR,
                    0xc000_0084 => hv_register_name_HV_X64_REGISTER_SFMASK,
                    other => {
                        return Err(Error::HypervisorFeature {
                            reason: format!("MSR {other:#x} has no mshv register mapping"),
                        })
                    }
                };
                Ok(hv_register_assoc {
                    name,
                    value: hv_register_value { reg64: value },
                    ..Default::default()
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.vcpu
            .set_reg(&regs)
            .map_err(mshv_err("HVCALL_SET_VP_REGISTERS"))
    }

    fn finish_exit(&mut self) -> Result<(), Error> {
        // mshv finishes nothing on re-entry but the RIP move `run` makes itself after a plain
        // `out` (string accesses are never resumed, see `io_exit`): no exit writes guest memory.
        Ok(())
    }

    fn save_state(&mut self) -> Result<VcpuState, Error> {
        let mut regs = self
            .vcpu
            .get_regs()
            .map_err(mshv_err("HVCALL_GET_VP_REGISTERS"))?;
        // mshv does not advance RIP past a port access by itself (`run` does it on re-entry):
        // save the state the guest resumes in.
        if let Some(rip) = self.resume_rip {
            regs.rip = rip;
        }
        Ok(VcpuState::new(MshvState {
            regs,
            sregs: self
                .vcpu
                .get_sregs()
                .map_err(mshv_err("HVCALL_GET_VP_REGISTERS"))?,
            xsave: self
                .vcpu
                .get_xsave()
                .map_err(mshv_err("MSHV_GET_VP_STATE (xsave)"))?,
        }))
    }

    fn restore_state(&mut self, state: &VcpuState) -> Result<(), Error> {
        let state = state.get::<MshvState>().ok_or(Error::HypervisorFeature {
            reason: "vCPU state saved by another backend".into(),
        })?;
        self.vcpu
            .set_regs(&state.regs)
            .map_err(mshv_err("HVCALL_SET_VP_REGISTERS"))?;
        self.vcpu
            .set_sregs(&state.sregs)
            .map_err(mshv_err("HVCALL_SET_VP_REGISTERS"))?;
        self.vcpu
            .set_xsave(&state.xsave)
            .map_err(mshv_err("MSHV_SET_VP_STATE (xsave)"))?;
        self.resume_rip = None;
        Ok(())
    }

    fn run(&mut self) -> Result<Exit, Error> {
        // Complete the last port access first, as KVM_RUN does before it looks at immediate_exit.
        if let Some(rip) = self.resume_rip.take() {
            self.vcpu
                .set_reg(&[hv_register_assoc {
                    name: hv_register_name_HV_X64_REGISTER_RIP,
                    value: hv_register_value { reg64: rip },
                    ..Default::default()
                }])
                .map_err(mshv_err("HVCALL_SET_VP_REGISTERS"))?;
        }
        if self.immediate_exit.load(Ordering::SeqCst) != 0 {
            return Ok(Exit::Interrupted);
        }
        match self.vcpu.run() {
            Ok(msg) => {
                self.resume_rip = resume_rip(&msg);
                Ok(exit_from_message(&msg))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(Exit::Interrupted)
            }
            Err(e) => Err(mshv_err("MSHV_RUN_VP")(e)),
        }
    }

    fn immediate_exit(&mut self) -> &AtomicU8 {
        // The flag lives in the boxed vCPU, so its address is stable while the vCPU lives.
        &self.immediate_exit
    }
}

#[cfg(test)]
mod tests {
    use mshv_bindings::{
        hv_message_type_HVMSG_X64_CPUID_INTERCEPT, hv_x64_exception_intercept_message,
        hv_x64_io_port_access_info, hv_x64_memory_intercept_message, hv_x64_segment_register,
        TableRegister, HV_INTERCEPT_ACCESS_EXECUTE, HV_INTERCEPT_ACCESS_READ,
    };

    use super::*;

    /// An intercept message of type `kind` carrying `payload`, as the run ioctl would fill it.
    fn message<T: Copy>(kind: hv_message_type, payload: T) -> hv_message {
        assert!(
            std::mem::size_of::<T>() <= 240,
            "payload larger than hv_message"
        );
        let mut msg = hv_message::default();
        msg.header.message_type = kind;
        msg.header.payload_size = std::mem::size_of::<T>() as u8;
        // SAFETY: the payload area is 240 bytes, at least `size_of::<T>()` (checked above), and
        // the unaligned write needs no alignment; `T` is a plain `Copy` bindgen struct.
        unsafe {
            std::ptr::write_unaligned(std::ptr::addr_of_mut!(msg.u.payload).cast::<T>(), payload)
        };
        msg
    }

    fn io(port: u16, write: bool, access: u8, rax: u64, rip: u64, len: u8) -> hv_message {
        let mut io = hv_x64_io_port_intercept_message::default();
        io.header.intercept_access_type = if write {
            HV_INTERCEPT_ACCESS_WRITE
        } else {
            HV_INTERCEPT_ACCESS_READ
        } as u8;
        io.header.rip = rip;
        io.header.set_instruction_length(len);
        io.port_number = port;
        io.access_info = hv_x64_io_port_access_info { as_uint8: access };
        io.instruction_byte_count = len;
        io.rax = rax;
        message(hv_message_type_HVMSG_X64_IO_PORT_INTERCEPT, io)
    }

    fn memory(kind: hv_message_type, gpa: u64, access: u32) -> hv_message {
        let mut mem = hv_x64_memory_intercept_message::default();
        mem.header.intercept_access_type = access as u8;
        mem.guest_physical_address = gpa;
        message(kind, mem)
    }

    const RAX: u64 = 0x1234_5678_9abc_def0;

    #[test]
    fn out_of_each_width_carries_the_zero_extended_data() {
        assert_eq!(
            exit_from_message(&io(0x103, true, 4, RAX, 0x10000, 1)),
            Exit::Out {
                port: 0x103,
                value: 0x9abc_def0,
                size: 4
            }
        );
        assert_eq!(
            exit_from_message(&io(0x105, true, 1, RAX, 0x3000, 2)),
            Exit::Out {
                port: 0x105,
                value: 0xf0,
                size: 1
            }
        );
        assert_eq!(
            exit_from_message(&io(0x101, true, 2, RAX, 0x3000, 2)),
            Exit::Out {
                port: 0x101,
                value: 0xdef0,
                size: 2
            }
        );
    }

    #[test]
    fn string_and_rep_outs_have_size_zero_and_are_not_resumed() {
        for access in [0x08 | 1, 0x10 | 0x08 | 4] {
            let msg = io(0x102, true, access, RAX, 0x10000, 2);
            assert_eq!(
                exit_from_message(&msg),
                Exit::Out {
                    port: 0x102,
                    value: 0,
                    size: 0
                }
            );
            assert_eq!(resume_rip(&msg), None);
        }
    }

    #[test]
    fn odd_access_width_has_size_zero() {
        assert_eq!(
            exit_from_message(&io(0x103, true, 3, RAX, 0x10000, 1)),
            Exit::Out {
                port: 0x103,
                value: 0,
                size: 0
            }
        );
    }

    #[test]
    fn in_is_reported_with_its_port() {
        assert_eq!(
            exit_from_message(&io(0x60, false, 1, RAX, 0x10000, 1)),
            Exit::In { port: 0x60 }
        );
    }

    #[test]
    fn port_access_resumes_past_the_instruction() {
        // `out dx, eax` is one byte; `out 0x80, al` two; `in ax, dx` two (operand-size prefix).
        assert_eq!(
            resume_rip(&io(0x103, true, 4, 0, 0x10_0040, 1)),
            Some(0x10_0041)
        );
        assert_eq!(resume_rip(&io(0x80, true, 1, 0, 0x3000, 2)), Some(0x3002));
        assert_eq!(
            resume_rip(&io(0x60, false, 2, 0, 0x10_0000, 2)),
            Some(0x10_0002)
        );
    }

    #[test]
    fn port_access_without_length_is_not_resumed() {
        let msg = io(0x103, true, 4, 0, 0x10000, 0);
        assert_eq!(resume_rip(&msg), None);
        assert!(matches!(exit_from_message(&msg), Exit::Other { .. }));
    }

    #[test]
    fn other_exits_do_not_move_rip() {
        for msg in [
            message(hv_message_type_HVMSG_X64_HALT, [0u8; 40]),
            memory(hv_message_type_HVMSG_UNMAPPED_GPA, 0x1000, 1),
        ] {
            assert_eq!(resume_rip(&msg), None);
        }
    }

    #[test]
    fn unbacked_memory_is_mmio_with_direction() {
        let gpa = 0x4000_0000;
        assert_eq!(
            exit_from_message(&memory(
                hv_message_type_HVMSG_UNMAPPED_GPA,
                gpa,
                HV_INTERCEPT_ACCESS_WRITE
            )),
            Exit::Mmio { gpa, write: true }
        );
        assert_eq!(
            exit_from_message(&memory(
                hv_message_type_HVMSG_GPA_INTERCEPT,
                gpa,
                HV_INTERCEPT_ACCESS_READ
            )),
            Exit::Mmio { gpa, write: false }
        );
        assert_eq!(
            exit_from_message(&memory(
                hv_message_type_HVMSG_UNMAPPED_GPA,
                gpa,
                HV_INTERCEPT_ACCESS_EXECUTE
            )),
            Exit::Mmio { gpa, write: false }
        );
    }

    #[test]
    fn halt_and_triple_fault() {
        assert_eq!(
            exit_from_message(&message(hv_message_type_HVMSG_X64_HALT, [0u8; 40])),
            Exit::Halt
        );
        assert_eq!(
            exit_from_message(&message(
                hv_message_type_HVMSG_UNRECOVERABLE_EXCEPTION,
                [0u8; 40]
            )),
            Exit::Shutdown
        );
    }

    #[test]
    fn exception_intercept_names_the_vector() {
        let mut e = hv_x64_exception_intercept_message {
            exception_vector: 14,
            error_code: 0x6,
            ..Default::default()
        };
        e.header.rip = 0x10_0123;
        let Exit::Other { reason } =
            exit_from_message(&message(hv_message_type_HVMSG_X64_EXCEPTION_INTERCEPT, e))
        else {
            panic!("expected Other");
        };
        assert!(reason.contains("vector 14"), "{reason}");
        assert!(reason.contains("0x6"), "{reason}");
        assert!(reason.contains("0x100123"), "{reason}");
    }

    #[test]
    fn unexpected_messages_are_named() {
        assert_eq!(
            exit_from_message(&message(
                hv_message_type_HVMSG_X64_CPUID_INTERCEPT,
                [0u8; 40]
            )),
            Exit::Other {
                reason: "HVMSG_X64_CPUID_INTERCEPT".into()
            }
        );
        assert_eq!(
            exit_from_message(&message(0x8001_2345, [0u8; 40])),
            Exit::Other {
                reason: "mshv message type 0x80012345".into()
            }
        );
    }

    /// The ring-3 code segment and TSS the runtime sets (see `x86::initial_special_registers`).
    fn user_code() -> Segment {
        Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: 0x23,
            type_: 0xb,
            present: true,
            dpl: 3,
            db: false,
            s: true,
            l: true,
            g: true,
        }
    }

    fn tss() -> Segment {
        Segment {
            base: 0x1800,
            limit: 0x67 + 0x22,
            selector: 0x28,
            type_: 0xb,
            present: true,
            dpl: 0,
            db: false,
            s: false,
            l: false,
            g: false,
        }
    }

    fn attributes(s: &Segment) -> u16 {
        let hv = hv_x64_segment_register::from(segment_to_mshv(s));
        // SAFETY: both union variants are the same plain 16-bit word.
        unsafe { hv.__bindgen_anon_1.attributes }
    }

    #[test]
    fn segments_pack_into_the_hypervisor_attribute_word() {
        // type | S << 4 | DPL << 5 | P << 7 | L << 13 | D/B << 14 | G << 15 (as in a descriptor).
        assert_eq!(
            attributes(&user_code()),
            0xb | 1 << 4 | 3 << 5 | 1 << 7 | 1 << 13 | 1 << 15
        );
        assert_eq!(attributes(&tss()), 0xb | 1 << 7);
        let data = Segment {
            selector: 0x1b,
            type_: 0x3,
            l: false,
            db: true,
            ..user_code()
        };
        assert_eq!(
            attributes(&data),
            0x3 | 1 << 4 | 3 << 5 | 1 << 7 | 1 << 14 | 1 << 15
        );
    }

    #[test]
    fn segments_round_trip_through_the_hypervisor_form() {
        for s in [user_code(), tss(), Segment::default()] {
            let hv = hv_x64_segment_register::from(segment_to_mshv(&s));
            assert_eq!(segment_from_mshv(&SegmentRegister::from(hv)), s);
            assert_eq!(segment_from_mshv(&segment_to_mshv(&s)), s);
        }
    }

    #[test]
    fn special_registers_are_patched_over_what_the_vcpu_had() {
        let mut sregs = MshvSpecialRegisters {
            apic_base: 0xfee0_0900,
            cr2: 0xdead_0000,
            cr8: 3,
            ldt: SegmentRegister {
                selector: 0x30,
                ..Default::default()
            },
            gdt: TableRegister {
                base: 0xffff,
                limit: 0xffff,
            },
            ..Default::default()
        };
        let data = Segment {
            selector: 0x1b,
            type_: 0x3,
            l: false,
            ..user_code()
        };
        let s = SpecialRegisters {
            cs: user_code(),
            ds: data,
            es: data,
            fs: data,
            gs: data,
            ss: data,
            tr: tss(),
            gdt_base: 0x1000,
            gdt_limit: 55,
            idt_base: 0x2000,
            idt_limit: 511,
            cr0: 0x8005_0033,
            cr3: 0x20_0000,
            cr4: 0x620,
            efer: 0xd00,
        };
        apply_special_registers(&mut sregs, &s);
        let back = SpecialRegisters {
            cs: segment_from_mshv(&sregs.cs),
            ds: segment_from_mshv(&sregs.ds),
            es: segment_from_mshv(&sregs.es),
            fs: segment_from_mshv(&sregs.fs),
            gs: segment_from_mshv(&sregs.gs),
            ss: segment_from_mshv(&sregs.ss),
            tr: segment_from_mshv(&sregs.tr),
            gdt_base: sregs.gdt.base,
            gdt_limit: sregs.gdt.limit,
            idt_base: sregs.idt.base,
            idt_limit: sregs.idt.limit,
            cr0: sregs.cr0,
            cr3: sregs.cr3,
            cr4: sregs.cr4,
            efer: sregs.efer,
        };
        assert_eq!(back, s);
        // What the runtime does not set is left alone.
        assert_eq!(sregs.apic_base, 0xfee0_0900);
        assert_eq!(sregs.cr2, 0xdead_0000);
        assert_eq!(sregs.cr8, 3);
        assert_eq!(sregs.ldt.selector, 0x30);
    }

    #[test]
    fn general_registers_zero_all_but_four() {
        let r = Registers {
            rip: 0x10_0000,
            rsp: 0x7fff8,
            rdi: 0x5000,
            rflags: 0x2,
        };
        let regs = standard_registers(&r);
        assert_eq!(
            (regs.rip, regs.rsp, regs.rdi, regs.rflags),
            (r.rip, r.rsp, r.rdi, r.rflags)
        );
        let others = [
            regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rbp, regs.r8, regs.r9, regs.r10,
            regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
        ];
        assert!(others.iter().all(|&v| v == 0));
    }

    #[test]
    fn fault_state_reads_registers_by_name() {
        let mut regs = FAULT_REGISTERS.map(|name| hv_register_assoc {
            name,
            ..Default::default()
        });
        let values = [0x3004, 0x4fc8, 0x5000, 0x46];
        for (assoc, v) in regs.iter_mut().zip(values) {
            assoc.value = hv_register_value { reg64: v };
        }
        let mut cs = segment_to_mshv(&Segment {
            selector: 0x08,
            dpl: 0,
            ..user_code()
        });
        cs.base = 0;
        regs[4].value = hv_register_value {
            segment: hv_x64_segment_register::from(cs),
        };
        regs[5].value = hv_register_value { reg64: 0x7000 };
        assert_eq!(
            fault_state_from(&regs),
            FaultState {
                regs: Registers {
                    rip: 0x3004,
                    rsp: 0x4fc8,
                    rdi: 0x5000,
                    rflags: 0x46,
                },
                cs_selector: 0x08,
                cr2: 0x7000,
            }
        );
        assert_eq!(
            regs.map(|r| r.name),
            [
                hv_register_name_HV_X64_REGISTER_RIP,
                hv_register_name_HV_X64_REGISTER_RSP,
                hv_register_name_HV_X64_REGISTER_RDI,
                hv_register_name_HV_X64_REGISTER_RFLAGS,
                hv_register_name_HV_X64_REGISTER_CS,
                hv_register_name_HV_X64_REGISTER_CR2,
            ]
        );
    }

    #[test]
    fn memory_is_one_rwx_region_in_pages() {
        let r = memory_region(0, 0x7f00_0000_0000, 0x40_0000).unwrap();
        assert_eq!(r.guest_pfn, 0);
        assert_eq!(r.userspace_addr, 0x7f00_0000_0000);
        assert_eq!(r.size, 0x40_0000);
        assert_eq!(
            r.flags,
            (1 << MSHV_SET_MEM_BIT_WRITABLE) | (1 << MSHV_SET_MEM_BIT_EXECUTABLE)
        );
        assert_eq!(
            memory_region(0x20_0000, 0x1000, 0x1000).unwrap().guest_pfn,
            0x200
        );
        for (gpa, host, size) in [
            (0x800, 0x1000, 0x1000),
            (0, 0x1001, 0x1000),
            (0, 0x1000, 0x10),
            (0, 0x1000, 0),
        ] {
            assert!(matches!(
                memory_region(gpa, host, size),
                Err(Error::Hypervisor {
                    errno: libc::EINVAL,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_device_that_is_not_mshv_is_unsupported() {
        match MshvHypervisor::open(Path::new("/dev/null")) {
            Err(Error::HypervisorUnusable {
                hypervisor: "mshv",
                why,
            }) => {
                assert_eq!(why.path, Path::new("/dev/null"));
                assert!(
                    matches!(why.reason, UnusableReason::Unsupported { .. }),
                    "{why}"
                );
            }
            other => panic!("expected HypervisorUnusable, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_device_is_not_found() {
        match MshvHypervisor::open(Path::new("/nonexistent/mshv")) {
            Err(Error::HypervisorUnusable { why, .. }) => {
                assert!(matches!(why.reason, UnusableReason::NotFound), "{why}")
            }
            other => panic!("expected HypervisorUnusable, got {other:?}"),
        }
    }
}

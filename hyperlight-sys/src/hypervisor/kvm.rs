//! The KVM backend, on `kvm-ioctls`.

use std::fs::OpenOptions;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::Path;
use std::sync::atomic::AtomicU8;

use kvm_bindings::{
    kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region, kvm_xsave, Msrs,
    KVM_MEM_LOG_DIRTY_PAGES,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};

use super::{
    bitmap_pages, DirtyLog, Exit, FaultState, Hypervisor, Registers, Segment, SpecialRegisters,
    Vcpu, VcpuState, Vm,
};
use crate::dirty::{self, HostWriteLog};
use crate::error::Error;
use crate::mem::GuestMemory;

/// The KVM ioctls a running sandbox needs, all on its vCPU's fd (or, with
/// [`WriteTracking::KvmDirtyLog`], its VM's): the vCPU thread issues them through the syscall
/// gate (`gate.rs`), and its seccomp filter allows them from the gate only. Creating VMs and
/// vCPUs, mapping memory and setting MSRs happen on the threads that build sandboxes, which are
/// not filtered.
mod requests {
    use kvm_bindings::{kvm_dirty_log, kvm_regs, kvm_sregs, kvm_xsave, KVMIO};
    vmm_sys_util::ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_sregs);
    vmm_sys_util::ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
    vmm_sys_util::ioctl_iow_nr!(KVM_SET_XSAVE, KVMIO, 0xa5, kvm_xsave);
    vmm_sys_util::ioctl_iow_nr!(KVM_GET_DIRTY_LOG, KVMIO, 0x42, kvm_dirty_log);
}

/// Every ioctl request a KVM sandbox's vCPU thread issues (through the gate), with its name.
pub(crate) fn vcpu_thread_ioctls() -> [(u64, &'static str); 8] {
    use requests::*;
    [
        (KVM_RUN(), "KVM_RUN"),
        (KVM_GET_REGS(), "KVM_GET_REGS"),
        (KVM_SET_REGS(), "KVM_SET_REGS"),
        (KVM_GET_SREGS(), "KVM_GET_SREGS"),
        (KVM_SET_SREGS(), "KVM_SET_SREGS"),
        (KVM_GET_XSAVE(), "KVM_GET_XSAVE"),
        (KVM_SET_XSAVE(), "KVM_SET_XSAVE"),
        (KVM_GET_DIRTY_LOG(), "KVM_GET_DIRTY_LOG"),
    ]
    .map(|(request, name)| (request as u64, name))
}

/// The default KVM device.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// How KVM sandboxes find the pages their guest wrote, to restore only those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteTracking {
    /// The host kernel's page tables (userfaultfd write protection in asynchronous mode and
    /// `PAGEMAP_SCAN`, Linux 6.7 or later; see `dirty.rs`). A sandbox holds one file descriptor,
    /// its vCPU's: the VM's is closed once the vCPU exists.
    HostPageTables,
    /// KVM's dirty log (`KVM_GET_DIRTY_LOG`): any KVM, but every sandbox keeps its VM's file
    /// descriptor open beside its vCPU's.
    KvmDirtyLog,
}

/// KVM opened from a device path.
#[derive(Debug)]
pub struct KvmHypervisor {
    kvm: Kvm,
    tracking: WriteTracking,
}

impl KvmHypervisor {
    /// Opens KVM at `path` and checks the API version and the capabilities the runtime needs.
    /// Sandboxes track writes in the host's page tables where the kernel can
    /// ([`WriteTracking::HostPageTables`]), else with KVM's dirty log.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| Error::HypervisorUnavailable {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: the fd was just opened by us and ownership moves into `Kvm`.
        let kvm = unsafe { Kvm::from_raw_fd(file.into_raw_fd()) };
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(Error::HypervisorUnsupported {
                reason: format!("KVM API version {version}, need 12"),
            });
        }
        for (cap, name) in [
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(Error::HypervisorUnsupported {
                    reason: format!("missing {name}"),
                });
            }
        }
        let tracking = match dirty::available() {
            Ok(()) => WriteTracking::HostPageTables,
            Err(why) => {
                tracing::debug!(%why, "KVM sandboxes fall back to KVM's dirty log");
                WriteTracking::KvmDirtyLog
            }
        };
        Ok(Self { kvm, tracking })
    }

    /// Uses `tracking` for the sandboxes of this hypervisor; fails if this kernel cannot track
    /// writes that way.
    pub fn with_write_tracking(mut self, tracking: WriteTracking) -> Result<Self, Error> {
        if tracking == WriteTracking::HostPageTables {
            dirty::available()?;
        }
        self.tracking = tracking;
        Ok(self)
    }

    /// How this hypervisor's sandboxes track writes.
    pub fn write_tracking(&self) -> WriteTracking {
        self.tracking
    }
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |e| Error::Hypervisor {
        op,
        errno: e.errno(),
    }
}

impl Hypervisor for KvmHypervisor {
    fn create_vm(&self) -> Result<Box<dyn Vm>, Error> {
        let vm = self.kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        Ok(Box::new(KvmVm {
            vm,
            tracking: self.tracking,
            mapped: 0,
        }))
    }
}

struct KvmVm {
    vm: VmFd,
    tracking: WriteTracking,
    /// Size of the mapped slot, 0 before the mapping.
    mapped: u64,
}

impl Vm for KvmVm {
    unsafe fn map_memory(&mut self, gpa: u64, host_addr: u64, size: u64) -> Result<(), Error> {
        let flags = match self.tracking {
            WriteTracking::KvmDirtyLog => KVM_MEM_LOG_DIRTY_PAGES,
            WriteTracking::HostPageTables => 0,
        };
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: the caller guarantees the host range stays mapped until the VM is dropped.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        self.mapped = size;
        Ok(())
    }

    fn create_vcpu(&mut self) -> Result<Box<dyn Vcpu>, Error> {
        let vcpu = self.vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        Ok(Box::new(KvmVcpu { vcpu, ran: false }))
    }

    fn into_dirty_log(mut self: Box<Self>, mem: &GuestMemory) -> Result<Box<dyn DirtyLog>, Error> {
        match self.tracking {
            // Dropping `self` closes the VM's fd; its vCPU holds the VM.
            WriteTracking::HostPageTables => Ok(Box::new(HostWriteLog::start(mem)?)),
            WriteTracking::KvmDirtyLog => {
                // Forget the writes of the set-up (the guest's init): the log starts now.
                self.take_dirty_bitmap()?;
                Ok(self)
            }
        }
    }
}

impl KvmVm {
    fn take_dirty_bitmap(&mut self) -> Result<Vec<u64>, Error> {
        self.vm
            .get_dirty_log(0, self.mapped as usize)
            .map_err(kvm_err("KVM_GET_DIRTY_LOG"))
    }
}

/// KVM's dirty log lists the guest's writes only, and resets when read.
impl DirtyLog for KvmVm {
    fn written(&mut self, _: &GuestMemory) -> Result<Vec<usize>, Error> {
        Ok(bitmap_pages(&self.take_dirty_bitmap()?))
    }

    fn restored(&mut self, _: &GuestMemory, _: &[usize], _: &[usize]) -> Result<(), Error> {
        Ok(())
    }
}

struct KvmVcpu {
    vcpu: VcpuFd,
    /// Whether KVM_RUN was ever called: a vCPU that never ran has no pending I/O.
    ran: bool,
}

impl KvmVcpu {
    /// After an I/O exit KVM completes the instruction on the next KVM_RUN. Entering with
    /// `immediate_exit` set completes it without running the guest (KVM's documented way to make
    /// the register state consistent), so RIP is past the `out`.
    fn complete_pending_io(&mut self) -> Result<(), Error> {
        if !self.ran {
            return Ok(());
        }
        self.vcpu.set_kvm_immediate_exit(1);
        let completed = match self.vcpu.run() {
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Err(e) => Err(Error::Hypervisor {
                op: "KVM_RUN (complete pending I/O)",
                errno: e.errno(),
            }),
            Ok(exit) => Err(Error::UnexpectedExit {
                exit: format!("{exit:?} while completing pending I/O"),
            }),
        };
        self.vcpu.set_kvm_immediate_exit(0);
        completed
    }
}

/// What [`Vcpu::save_state`] saves on KVM.
struct KvmState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    xsave: Box<kvm_xsave>,
}

fn to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
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

impl Vcpu for KvmVcpu {
    fn set_special_registers(&mut self, s: &SpecialRegisters) -> Result<(), Error> {
        let mut sregs = self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        sregs.cs = to_kvm(&s.cs);
        sregs.ds = to_kvm(&s.ds);
        sregs.es = to_kvm(&s.es);
        sregs.fs = to_kvm(&s.fs);
        sregs.gs = to_kvm(&s.gs);
        sregs.ss = to_kvm(&s.ss);
        sregs.tr = to_kvm(&s.tr);
        sregs.gdt.base = s.gdt_base;
        sregs.gdt.limit = s.gdt_limit;
        sregs.idt.base = s.idt_base;
        sregs.idt.limit = s.idt_limit;
        sregs.cr0 = s.cr0;
        sregs.cr3 = s.cr3;
        sregs.cr4 = s.cr4;
        sregs.efer = s.efer;
        self.vcpu
            .set_sregs(&sregs)
            .map_err(kvm_err("KVM_SET_SREGS"))
    }

    fn set_registers(&mut self, r: &Registers) -> Result<(), Error> {
        let regs = kvm_regs {
            rip: r.rip,
            rsp: r.rsp,
            rdi: r.rdi,
            rflags: r.rflags,
            ..Default::default()
        };
        self.vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
    }

    fn fault_state(&mut self) -> Result<FaultState, Error> {
        let regs = self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        let sregs = self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        Ok(FaultState {
            regs: Registers {
                rip: regs.rip,
                rsp: regs.rsp,
                rdi: regs.rdi,
                rflags: regs.rflags,
            },
            cs_selector: sregs.cs.selector,
            cr2: sregs.cr2,
        })
    }

    fn run(&mut self) -> Result<Exit, Error> {
        self.ran = true;
        match self.vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                let size = match data.len() {
                    n @ (1 | 2 | 4) => n as u8,
                    _ => 0,
                };
                let mut le = [0u8; 4];
                let n = data.len().min(4);
                le[..n].copy_from_slice(&data[..n]);
                Ok(Exit::Out {
                    port,
                    value: u32::from_le_bytes(le),
                    size,
                })
            }
            Ok(VcpuExit::IoIn(port, _)) => Ok(Exit::In { port }),
            Ok(VcpuExit::MmioRead(gpa, _)) => Ok(Exit::Mmio { gpa, write: false }),
            Ok(VcpuExit::MmioWrite(gpa, _)) => Ok(Exit::Mmio { gpa, write: true }),
            Ok(VcpuExit::Hlt) => Ok(Exit::Halt),
            Ok(VcpuExit::Shutdown) => Ok(Exit::Shutdown),
            Ok(VcpuExit::Intr) => Ok(Exit::Interrupted),
            Ok(other) => Ok(Exit::Other {
                reason: format!("{other:?}"),
            }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(Exit::Interrupted)
            }
            Err(e) => Err(Error::Hypervisor {
                op: "KVM_RUN",
                errno: e.errno(),
            }),
        }
    }

    fn set_msrs(&mut self, msrs: &[(u32, u64)]) -> Result<(), Error> {
        let entries: Vec<kvm_msr_entry> = msrs
            .iter()
            .map(|&(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let wrapper = Msrs::from_entries(&entries).map_err(|_| Error::HypervisorUnsupported {
            reason: format!("too many MSRs ({})", entries.len()),
        })?;
        let set = self
            .vcpu
            .set_msrs(&wrapper)
            .map_err(kvm_err("KVM_SET_MSRS"))?;
        if set != entries.len() {
            return Err(Error::HypervisorUnsupported {
                reason: format!("KVM set {set} of {} MSRs ({msrs:x?})", entries.len()),
            });
        }
        Ok(())
    }

    fn save_state(&mut self) -> Result<VcpuState, Error> {
        self.complete_pending_io()?;
        Ok(VcpuState::new(KvmState {
            regs: self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?,
            sregs: self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?,
            xsave: Box::new(self.vcpu.get_xsave().map_err(kvm_err("KVM_GET_XSAVE"))?),
        }))
    }

    fn restore_state(&mut self, state: &VcpuState) -> Result<(), Error> {
        let state = state
            .get::<KvmState>()
            .ok_or(Error::HypervisorUnsupported {
                reason: "vCPU state saved by another backend".into(),
            })?;
        // An I/O left pending by the last exit would otherwise be completed on the next run,
        // on top of the restored registers (advancing RIP past an instruction it never ran).
        self.complete_pending_io()?;
        self.vcpu
            .set_regs(&state.regs)
            .map_err(kvm_err("KVM_SET_REGS"))?;
        // The guest (ring 3) can change segment selectors but not descriptor tables or control
        // registers; skip the costly KVM_SET_SREGS when nothing differs.
        let sregs = self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        if sregs != state.sregs {
            self.vcpu
                .set_sregs(&state.sregs)
                .map_err(kvm_err("KVM_SET_SREGS"))?;
        }
        // SAFETY: the buffer came from KVM_GET_XSAVE on a vCPU of the same KVM, so its size and
        // layout are what KVM_SET_XSAVE expects.
        unsafe { self.vcpu.set_xsave(&state.xsave) }.map_err(kvm_err("KVM_SET_XSAVE"))
    }

    fn immediate_exit(&mut self) -> &AtomicU8 {
        let flag: *mut u8 = &mut self.vcpu.get_kvm_run().immediate_exit;
        // SAFETY: `immediate_exit` is a byte in the kvm_run page that stays mapped while the vCPU
        // lives (the returned borrow is tied to `self`). AtomicU8 has the same layout as u8, and
        // every access to the byte from this crate goes through this atomic (the signal handler
        // on this same thread and the vCPU loop), while the kernel reads it only inside KVM_RUN.
        unsafe { AtomicU8::from_ptr(flag) }
    }
}

//! The KVM backend, on `kvm-ioctls`.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::Path;
use std::sync::atomic::AtomicU8;

use kvm_bindings::{
    kvm_dirty_log, kvm_dirty_log__bindgen_ty_1, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs,
    kvm_userspace_memory_region, kvm_xsave, Msrs, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT,
    KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO,
    KVM_EXIT_SHUTDOWN, KVM_MEM_LOG_DIRTY_PAGES, KVM_SYNC_X86_REGS, KVM_SYNC_X86_SREGS,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use super::{
    bitmap_pages, DirtyLog, Exit, FaultState, GeneralRegisters, Hypervisor, Registers, Segment,
    SpecialRegisters, Vcpu, VcpuState, Vm,
};
use crate::error::{Error, Unusable, UnusableReason};
use crate::seccomp::gate;
use crate::vm::memory::GuestMemory;
use host_write_log::HostWriteLog;

/// The KVM ioctls a running sandbox needs, all on its vCPU's fd (or, with
/// [`WriteTracking::KvmDirtyLog`], its VM's): the vCPU thread issues them through the syscall
/// gate (`seccomp/gate.rs`), and its seccomp filter allows them from the gate only. Creating VMs and
/// vCPUs, mapping memory and setting MSRs happen on the threads that build sandboxes, which are
/// not filtered.
pub(crate) mod host_write_log;

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
}

/// The default KVM device.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// How KVM sandboxes find the pages their guest wrote, to restore only those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteTracking {
    /// The host kernel's page tables (userfaultfd write protection in asynchronous mode and
    /// `PAGEMAP_SCAN`, Linux 6.7 or later; see `hypervisor/kvm/host_write_log.rs`). A sandbox holds one file descriptor,
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
            .map_err(|source| unusable(path, UnusableReason::of_open_error(source)))?;
        // SAFETY: the fd was just opened by us and ownership moves into `Kvm`.
        let kvm = unsafe { Kvm::from_raw_fd(file.into_raw_fd()) };
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(unusable(
                path,
                UnusableReason::Unsupported {
                    reason: format!("KVM API version {version}, need 12"),
                },
            ));
        }
        for (cap, name) in [
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(unusable(
                    path,
                    UnusableReason::Unsupported {
                        reason: format!("missing {name}"),
                    },
                ));
            }
        }
        let tracking = match host_write_log::available() {
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
            host_write_log::available()?;
        }
        self.tracking = tracking;
        Ok(self)
    }

    /// How this hypervisor's sandboxes track writes.
    pub fn write_tracking(&self) -> WriteTracking {
        self.tracking
    }
}

/// KVM at `path` is not usable for `reason`.
fn unusable(path: &Path, reason: UnusableReason) -> Error {
    Error::HypervisorUnusable {
        hypervisor: "KVM",
        why: Unusable::new(path, reason),
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
        let mut vcpu = self.vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        // KVM_CAP_SYNC_REGS answers with the set of registers it can sync.
        let synced = u64::try_from(self.vm.check_extension_int(Cap::SyncRegs)).unwrap_or(0);
        let sync = synced & SYNCED == SYNCED;
        if sync {
            vcpu.get_kvm_run().kvm_valid_regs = SYNCED;
        }
        Ok(Box::new(KvmVcpu {
            vcpu,
            pending: Pending::Nothing,
            sync,
            staged: None,
        }))
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
    /// The pages of the slot the guest wrote since the last call, through the syscall gate
    /// (the vCPU thread calls this at every restore).
    fn take_dirty_bitmap(&mut self) -> Result<Vec<u64>, Error> {
        let pages = self.mapped.div_ceil(hyperlight_schema::abi::PAGE_SIZE) as usize;
        let mut bitmap = vec![0u64; pages.div_ceil(64)];
        let log = kvm_dirty_log {
            slot: 0,
            padding1: 0,
            __bindgen_anon_1: kvm_dirty_log__bindgen_ty_1 {
                dirty_bitmap: bitmap.as_mut_ptr().cast(),
            },
        };
        // SAFETY: KVM_GET_DIRTY_LOG reads one kvm_dirty_log and writes one bit per page of slot
        // 0 to its bitmap, which has room for every page of the slot.
        unsafe {
            gate::ioctl(
                self.vm.as_raw_fd(),
                requests::KVM_GET_DIRTY_LOG(),
                &log as *const kvm_dirty_log as usize,
            )
        }
        .map_err(|errno| Error::Hypervisor {
            op: "KVM_GET_DIRTY_LOG",
            errno,
        })?;
        Ok(bitmap)
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

/// The registers a KVM vCPU syncs through its `kvm_run` page (`KVM_CAP_SYNC_REGS`): KVM copies
/// them there at every return from `KVM_RUN`, and copies those marked in `kvm_dirty_regs` back
/// into the vCPU at the start of the next one, before it finishes a pending exit. A restore
/// then costs no `KVM_SET_REGS` and no `KVM_GET_SREGS` ioctl.
const SYNCED: u64 = (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS) as u64;

struct KvmVcpu {
    vcpu: VcpuFd,
    /// What the last `KVM_RUN` left for the next one to finish.
    pending: Pending,
    /// Whether KVM syncs [`SYNCED`] through `kvm_run`. If it does, `kvm_run`'s copy of the
    /// special registers always equals the vCPU's (KVM writes it at every return from
    /// `KVM_RUN`, [`KvmVcpu::set_sregs`] at every change), and general registers a restore
    /// set wait there for the next entry ([`KvmVcpu::staged`]).
    sync: bool,
    /// General registers a restore wrote into `kvm_run` (marked dirty) that no `KVM_RUN` has
    /// applied yet. The host's own copy: should a `KVM_RUN` ever return without applying them,
    /// KVM may have overwritten `kvm_run`'s with the vCPU's old ones, and they are written
    /// again ([`KvmVcpu::enter`]). Read or set through an ioctl only after
    /// [`KvmVcpu::flush_staged`].
    staged: Option<kvm_regs>,
}

/// The part of an instruction that KVM finishes on the next `KVM_RUN` after an exit to
/// userspace (KVM's `complete_userspace_io`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// Nothing: the vCPU never ran, or its last exit needs no completion.
    Nothing,
    /// A plain `out` (one access of 1, 2 or 4 bytes): finishing it only moves RIP past the
    /// instruction. The only exit a guest is resumed from.
    Out,
    /// A plain `out` whose finishing was left to the next `KVM_RUN` by a restore that set RIP
    /// elsewhere ([`Vcpu::settle_exit_for_restore`]): KVM's completion of an `out` moves RIP
    /// past the instruction only if RIP still points at it (`complete_fast_pio_out` compares
    /// the linear RIP of the exit), and an `out` KVM emulated was finished before the exit
    /// already; so the next entry finishes it with no effect. Finished like [`Pending::Out`]
    /// where a finish is asked for.
    Moot,
    /// An `in`, a string or repeated access, or MMIO: finishing it would write guest registers
    /// or guest memory (a `rep insb` of up to a page of whatever the data area holds). The
    /// protocol uses none of these, so this vCPU never finishes them: it refuses to run or to
    /// be restored, and the sandbox gets a new vCPU from its snapshot.
    Refused,
}

impl KvmVcpu {
    /// Reads a `T` with `request` through the syscall gate.
    ///
    /// # Safety
    /// `request` must be a vCPU ioctl that writes exactly one `T` to its argument.
    unsafe fn read<T: Default>(
        &self,
        op: &'static str,
        request: libc::c_ulong,
    ) -> Result<T, Error> {
        let mut value = T::default();
        // SAFETY: the caller guarantees that `request` writes one `T`, and `value` is one.
        unsafe {
            gate::ioctl(
                self.vcpu.as_raw_fd(),
                request,
                &mut value as *mut T as usize,
            )
        }
        .map_err(|errno| Error::Hypervisor { op, errno })?;
        Ok(value)
    }

    /// Hands a `T` to `request` through the syscall gate.
    ///
    /// # Safety
    /// `request` must be a vCPU ioctl that reads exactly one `T` from its argument.
    unsafe fn write<T>(
        &self,
        op: &'static str,
        request: libc::c_ulong,
        value: &T,
    ) -> Result<(), Error> {
        // SAFETY: the caller guarantees that `request` reads one `T`, and `value` is one; the
        // kernel does not write through the pointer.
        unsafe { gate::ioctl(self.vcpu.as_raw_fd(), request, value as *const T as usize) }
            .map(drop)
            .map_err(|errno| Error::Hypervisor { op, errno })
    }

    fn get_regs(&mut self) -> Result<kvm_regs, Error> {
        self.flush_staged()?;
        // SAFETY: KVM_GET_REGS writes one kvm_regs.
        unsafe { self.read("KVM_GET_REGS", requests::KVM_GET_REGS()) }
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), Error> {
        // SAFETY: KVM_SET_REGS reads one kvm_regs.
        unsafe { self.write("KVM_SET_REGS", requests::KVM_SET_REGS(), regs) }?;
        // Only once the vCPU has them: should the ioctl fail, registers a restore staged stay
        // staged for the next entry, rather than the guest resuming in the registers it left.
        self.drop_staged();
        Ok(())
    }

    /// Hands general registers a restore staged in `kvm_run` to the vCPU now, through
    /// `KVM_SET_REGS`: before anything reads or sets registers through an ioctl.
    fn flush_staged(&mut self) -> Result<(), Error> {
        if let Some(regs) = self.staged {
            self.set_regs(&regs)?;
        }
        Ok(())
    }

    /// Forgets staged general registers (new ones are set through an ioctl).
    fn drop_staged(&mut self) {
        if self.staged.take().is_some() {
            self.vcpu.get_kvm_run().kvm_dirty_regs &= !u64::from(KVM_SYNC_X86_REGS);
        }
    }

    fn get_sregs(&self) -> Result<kvm_sregs, Error> {
        // SAFETY: KVM_GET_SREGS writes one kvm_sregs.
        unsafe { self.read("KVM_GET_SREGS", requests::KVM_GET_SREGS()) }
    }

    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), Error> {
        // SAFETY: KVM_SET_SREGS reads one kvm_sregs.
        unsafe { self.write("KVM_SET_SREGS", requests::KVM_SET_SREGS(), sregs) }?;
        if self.sync {
            // Keep kvm_run's copy equal to the vCPU's: KVM refreshes it only as KVM_RUN returns.
            self.vcpu.sync_regs_mut().sregs = *sregs;
        }
        Ok(())
    }

    /// The special registers as they are now: `kvm_run`'s copy where KVM syncs them (no ioctl),
    /// else `KVM_GET_SREGS`.
    fn current_sregs(&self) -> Result<kvm_sregs, Error> {
        if self.sync {
            Ok(self.vcpu.sync_regs().sregs)
        } else {
            self.get_sregs()
        }
    }

    /// Enters the guest once (through the gate) and reports why it left: the exit as KVM
    /// describes it in the vCPU's `kvm_run` page.
    fn enter(&mut self) -> Result<Exit, Error> {
        // SAFETY: KVM_RUN takes no argument.
        let ran = unsafe { gate::ioctl(self.vcpu.as_raw_fd(), requests::KVM_RUN(), 0) };
        if let Some(regs) = self.staged {
            let run = self.vcpu.get_kvm_run();
            if run.kvm_dirty_regs & u64::from(KVM_SYNC_X86_REGS) == 0 {
                // KVM applied the staged registers (it clears the flag as it does).
                self.staged = None;
            } else {
                // Not applied (KVM_RUN returned before it got there): as it returned, KVM may
                // have copied the vCPU's old registers over them; stage them again.
                self.vcpu.sync_regs_mut().regs = regs;
            }
        }
        match ran {
            Ok(_) => {}
            Err(libc::EINTR | libc::EAGAIN) => return Ok(Exit::Interrupted),
            Err(errno) => {
                return Err(Error::Hypervisor {
                    op: "KVM_RUN",
                    errno,
                })
            }
        }
        let run = self.vcpu.get_kvm_run();
        Ok(match run.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: after an I/O exit the union holds `io`, plain integers.
                let io = unsafe { run.__bindgen_anon_1.io };
                let port = io.port;
                if io.direction != KVM_EXIT_IO_OUT as u8 {
                    return Ok(Exit::In { port });
                }
                let size = plain_out_width(io.count, io.size);
                let mut le = [0u8; 4];
                if size != 0 {
                    let base = run as *const kvm_bindings::kvm_run as *const u8;
                    // SAFETY: for an `out` KVM puts the `size` bytes written at `data_offset`
                    // inside the vCPU's kvm_run mapping (the page after the kvm_run struct),
                    // which stays mapped while `self.vcpu` lives.
                    let data = unsafe {
                        std::slice::from_raw_parts(base.add(io.data_offset as usize), size.into())
                    };
                    le[..data.len()].copy_from_slice(data);
                }
                Exit::Out {
                    port,
                    value: u32::from_le_bytes(le),
                    size,
                }
            }
            KVM_EXIT_MMIO => {
                // SAFETY: after an MMIO exit the union holds `mmio`, plain integers.
                let mmio = unsafe { run.__bindgen_anon_1.mmio };
                Exit::Mmio {
                    gpa: mmio.phys_addr,
                    write: mmio.is_write != 0,
                }
            }
            KVM_EXIT_HLT => Exit::Halt,
            KVM_EXIT_SHUTDOWN => Exit::Shutdown,
            KVM_EXIT_INTR => Exit::Interrupted,
            KVM_EXIT_FAIL_ENTRY => {
                // SAFETY: after a failed entry the union holds `fail_entry`, plain integers.
                let fail = unsafe { run.__bindgen_anon_1.fail_entry };
                Exit::Other {
                    reason: format!(
                        "FailEntry (reason {:#x})",
                        fail.hardware_entry_failure_reason
                    ),
                }
            }
            KVM_EXIT_INTERNAL_ERROR => {
                // SAFETY: after an internal error the union holds `internal`, plain integers.
                let internal = unsafe { run.__bindgen_anon_1.internal };
                Exit::Other {
                    reason: format!("InternalError (suberror {})", internal.suberror),
                }
            }
            reason => Exit::Other {
                reason: format!("exit reason {reason}"),
            },
        })
    }
}

/// The width of an `out` exit of `count` elements of `size` bytes if it is a plain `out` (one
/// access of 1, 2 or 4 bytes), else 0: a string or repeated access. KVM's emulator hands string
/// `out`s to userspace one element per exit today, but the count is what says so: a batch of two
/// 2-byte elements carries 4 bytes, as many as a valid `out` of a message length. A
/// single-element `outs` is indistinguishable from a plain `out` here, and no different in
/// effect (one value to the port; RIP, RSI and RCX move on).
fn plain_out_width(count: u32, size: u8) -> u8 {
    match (count, size) {
        (1, n @ (1 | 2 | 4)) => n,
        _ => 0,
    }
}

/// Whether an `out` instruction (after any prefixes) may start at guest address `rip`, as the
/// guest memory holds it now: conservative, true if the bytes cannot be read.
fn out_may_start_at(mem: &GuestMemory, rip: u64) -> bool {
    /// The longest x86 instruction.
    const MAX_LEN: u64 = 15;
    let len = MAX_LEN.min((mem.size() as u64).saturating_sub(rip));
    let Ok(bytes) = mem.read(rip, len as usize) else {
        return true;
    };
    starts_out(&bytes)
}

/// Whether `code` begins with an `out` (`E6`, `E7`, `EE`, `EF`) after legacy and REX prefixes;
/// true if it holds only prefixes (the instruction may go on beyond it).
fn starts_out(code: &[u8]) -> bool {
    let opcode = code.iter().find(|b| {
        !matches!(
            b,
            0x26 | 0x2e | 0x36 | 0x3e | 0x40..=0x4f | 0x64..=0x67 | 0xf0 | 0xf2 | 0xf3
        )
    });
    opcode.is_none_or(|op| matches!(op, 0xe6 | 0xe7 | 0xee | 0xef))
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
        let mut sregs = self.get_sregs()?;
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
        self.set_sregs(&sregs)
    }

    fn set_registers(&mut self, r: &Registers) -> Result<(), Error> {
        let regs = kvm_regs {
            rip: r.rip,
            rsp: r.rsp,
            rdi: r.rdi,
            rflags: r.rflags,
            ..Default::default()
        };
        self.set_regs(&regs)
    }

    fn general_registers(&mut self) -> Result<GeneralRegisters, Error> {
        let r = self.get_regs()?;
        let s = self.get_sregs()?;
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
            rip: r.rip,
            rflags: r.rflags,
            selectors: [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].map(|seg| seg.selector),
            fs_base: s.fs.base,
            gs_base: s.gs.base,
        })
    }

    #[cfg(feature = "gdb")]
    fn set_general_registers(&mut self, r: &GeneralRegisters) -> Result<(), Error> {
        self.set_regs(&kvm_regs {
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
        })
    }

    fn fault_state(&mut self) -> Result<FaultState, Error> {
        let regs = self.get_regs()?;
        let sregs = self.get_sregs()?;
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
        if self.pending == Pending::Refused {
            // Entering would finish the refused access first.
            return Err(Error::UnfinishableExit);
        }
        let exit = self.enter()?;
        self.pending = match exit {
            Exit::Out {
                size: 1 | 2 | 4, ..
            } => Pending::Out,
            Exit::Out { .. } | Exit::In { .. } | Exit::Mmio { .. } => Pending::Refused,
            // An interrupted entry finished what was pending before it was interrupted.
            Exit::Halt | Exit::Shutdown | Exit::Interrupted | Exit::Other { .. } => {
                Pending::Nothing
            }
        };
        Ok(exit)
    }

    /// Finishes the instruction of the last exit if it was a plain `out` (KVM's documented way:
    /// `KVM_RUN` with `immediate_exit` set finishes it without running the guest, so RIP is past
    /// the `out`). An exit whose finishing would write guest state is refused: see
    /// [`Pending::Refused`].
    fn finish_exit(&mut self) -> Result<(), Error> {
        match self.pending {
            Pending::Nothing => return Ok(()),
            Pending::Refused => return Err(Error::UnfinishableExit),
            Pending::Out | Pending::Moot => {}
        }
        self.vcpu.set_kvm_immediate_exit(1);
        let finished = match self.enter() {
            Ok(Exit::Interrupted) => Ok(()),
            Ok(exit) => Err(Error::UnexpectedExit {
                exit: format!("{exit:?} while finishing an `out`"),
            }),
            Err(e) => Err(e),
        };
        self.vcpu.set_kvm_immediate_exit(0);
        // Whatever happened, KVM no longer holds a completion: it ran it first (or the vCPU is
        // broken, and the caller rebuilds it).
        self.pending = Pending::Nothing;
        finished
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
        let wrapper = Msrs::from_entries(&entries).map_err(|_| Error::HypervisorFeature {
            reason: format!("too many MSRs ({})", entries.len()),
        })?;
        let set = self
            .vcpu
            .set_msrs(&wrapper)
            .map_err(kvm_err("KVM_SET_MSRS"))?;
        if set != entries.len() {
            return Err(Error::HypervisorFeature {
                reason: format!("KVM set {set} of {} MSRs ({msrs:x?})", entries.len()),
            });
        }
        Ok(())
    }

    fn save_state(&mut self) -> Result<VcpuState, Error> {
        self.finish_exit()?;
        Ok(VcpuState::new(KvmState {
            regs: self.get_regs()?,
            sregs: self.get_sregs()?,
            // SAFETY: KVM_GET_XSAVE writes one kvm_xsave (its legacy 4 KiB form).
            xsave: Box::new(unsafe { self.read("KVM_GET_XSAVE", requests::KVM_GET_XSAVE())? }),
        }))
    }

    fn restore_state(&mut self, state: &VcpuState) -> Result<(), Error> {
        let state = state.get::<KvmState>().ok_or(Error::HypervisorFeature {
            reason: "vCPU state saved by another backend".into(),
        })?;
        // An exit left unfinished would otherwise be finished on the next run, on top of the
        // restored registers (moving RIP past an instruction it never ran). A restore settles
        // it before it looks at memory (`Machine::restore`): finished, or proven moot
        // (`Pending::Moot`, left to the next run); this is a no-op then.
        if self.pending != Pending::Moot {
            self.finish_exit()?;
        }
        // General registers, RIP and RFLAGS: ring 3 can change all of them, so all are set.
        // Where KVM syncs them they are staged in `kvm_run`, and the next call's own `KVM_RUN`
        // applies them (before it finishes any exit) instead of a `KVM_SET_REGS` now.
        if self.sync {
            self.drop_staged();
            self.vcpu.sync_regs_mut().regs = state.regs;
            self.vcpu.get_kvm_run().kvm_dirty_regs |= u64::from(KVM_SYNC_X86_REGS);
            self.staged = Some(state.regs);
        } else {
            self.set_regs(&state.regs)?;
        }
        // Special registers: ring 3 can load data segment selectors (and so their hidden
        // descriptor parts, from the host's GDT), and a fault it causes sets CR2; it cannot
        // change CS to anything but the host's ring-3 code segment, nor descriptor tables, TR,
        // control registers or EFER (all privileged). Compare all of them anyway and skip the
        // costly KVM_SET_SREGS (it resets KVM's MMU context) only when nothing differs. Where
        // KVM syncs them, the comparison reads `kvm_run` (no ioctl).
        if self.current_sregs()? != state.sregs {
            self.set_sregs(&state.sregs)?;
        }
        // x87, SSE, AVX and MXCSR (and PKRU, where enabled) are all writable from ring 3: always
        // set.
        // SAFETY: KVM_SET_XSAVE reads one kvm_xsave: this buffer came from KVM_GET_XSAVE on a
        // vCPU of the same KVM, in the same legacy 4 KiB form.
        unsafe { self.write("KVM_SET_XSAVE", requests::KVM_SET_XSAVE(), &*state.xsave) }
    }

    fn settle_exit_for_restore(
        &mut self,
        state: &VcpuState,
        mem: &GuestMemory,
    ) -> Result<(), Error> {
        let Some(state) = state.get::<KvmState>() else {
            return self.finish_exit();
        };
        if self.pending != Pending::Out || !self.sync {
            return self.finish_exit();
        }
        // The exit's RIP, as KVM synced it when KVM_RUN returned: nothing has changed it since
        // (a pending `Out` means no register was set after the exit).
        let exit_rip = self.vcpu.sync_regs().regs.rip;
        if exit_rip == state.regs.rip && out_may_start_at(mem, state.regs.rip) {
            // KVM may hold the completion of an `out` at exactly the RIP restored: it would
            // skip the restored state's first instruction. Finish it now instead.
            return self.finish_exit();
        }
        // Either KVM emulated the `out` and finished it before the exit, or its completion
        // compares RIP with the `out`'s own address, which is not the restored RIP (or no `out`
        // starts at the restored RIP): finishing it on the next entry changes nothing.
        self.pending = Pending::Moot;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outs_are_found_after_any_prefixes() {
        assert!(starts_out(&[0xef]));
        assert!(starts_out(&[0x66, 0xef, 0x90]));
        assert!(starts_out(&[0xe6, 0x80]));
        assert!(starts_out(&[0x48, 0x2e, 0x66, 0xe7, 0x00]));
        assert!(starts_out(&[0x66, 0x66]), "only prefixes: may go on");
        assert!(starts_out(&[]));
        assert!(!starts_out(&[0x48, 0x89, 0xc7]), "mov rdi, rax");
        assert!(!starts_out(&[0xc3]), "ret");
        assert!(
            !starts_out(&[0x6f]),
            "outsd: a string access, refused anyway"
        );
        assert!(!starts_out(&[0xeb, 0xfe]));
    }

    #[test]
    fn only_single_accesses_are_plain_outs() {
        assert_eq!(plain_out_width(1, 4), 4);
        assert_eq!(plain_out_width(1, 2), 2);
        assert_eq!(plain_out_width(1, 1), 1);
        // `rep outsw` of two elements: 4 bytes of data, but not a 4-byte `out`.
        assert_eq!(plain_out_width(2, 2), 0);
        assert_eq!(plain_out_width(4, 1), 0);
        assert_eq!(plain_out_width(1024, 4), 0);
        assert_eq!(plain_out_width(0, 4), 0);
        assert_eq!(plain_out_width(1, 8), 0);
    }

    /// What `KVM_SET_GUEST_DEBUG` single-stepping does on this host, for `docs/debugging.md`:
    /// a ring-3 guest as the runtime builds it (`nop; nop; out; jmp`), stepped once. The gdb stub
    /// steps with RFLAGS.TF instead (`vm/debug.rs`); this records whether the hypervisor's own
    /// interface would work too. Prints the outcome; fails only if KVM refuses the ioctl.
    #[cfg(feature = "gdb")]
    #[test]
    fn probe_kvm_set_guest_debug_single_step() {
        use kvm_bindings::{
            kvm_guest_debug, kvm_userspace_memory_region, KVM_GUESTDBG_ENABLE,
            KVM_GUESTDBG_SINGLESTEP,
        };
        use kvm_ioctls::VcpuExit;

        use crate::vm::layout;
        use crate::vm::x86;

        let Ok(kvm) = Kvm::new() else {
            eprintln!("SKIPPED: probe_kvm_set_guest_debug_single_step: no /dev/kvm");
            return;
        };
        let code = [0x90, 0x90, 0x66, 0xba, 0x03, 0x01, 0xef, 0xeb, 0xfd];
        let (layout, mem, image) = crate::floor::code_only(&code).unwrap();
        let vm = kvm.create_vm().unwrap();
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: layout.total,
            userspace_addr: mem.host_addr(),
        };
        // SAFETY: `mem` outlives the VM and its vCPU (both dropped at the end of this test,
        // before `mem`, which was declared first).
        unsafe { vm.set_user_memory_region(region).unwrap() };
        let mut vcpu = vm.create_vcpu(0).unwrap();
        let s = x86::initial_special_registers(&layout);
        let mut sregs = vcpu.get_sregs().unwrap();
        (
            sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss, sregs.tr,
        ) = (
            to_kvm(&s.cs),
            to_kvm(&s.ds),
            to_kvm(&s.es),
            to_kvm(&s.fs),
            to_kvm(&s.gs),
            to_kvm(&s.ss),
            to_kvm(&s.tr),
        );
        (sregs.gdt.base, sregs.gdt.limit) = (s.gdt_base, s.gdt_limit);
        (sregs.idt.base, sregs.idt.limit) = (s.idt_base, s.idt_limit);
        (sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer) = (s.cr0, s.cr3, s.cr4, s.efer);
        vcpu.set_sregs(&sregs).unwrap();
        let r = x86::initial_registers(&layout, image.entry);
        let regs = kvm_regs {
            rip: r.rip,
            rsp: r.rsp,
            rflags: r.rflags,
            ..Default::default()
        };
        vcpu.set_regs(&regs).unwrap();
        let debug = kvm_guest_debug {
            control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
            ..Default::default()
        };
        vcpu.set_guest_debug(&debug)
            .expect("KVM refuses KVM_SET_GUEST_DEBUG single-step");
        let exit = vcpu.run().map(|exit| match exit {
            VcpuExit::Debug(arch) => Some((arch.exception, arch.pc)),
            _ => None,
        });
        let rip = vcpu.get_regs().unwrap().rip;
        eprintln!(
            "PROBE KVM_SET_GUEST_DEBUG single-step: first exit {exit:?}, rip {rip:#x} (entry \
             {:#x}; a working step stops at entry + 1)",
            image.entry
        );
        // Hardware KVM stops after the first `nop`. PVM (this project's hosts) lets the #DB of
        // the ring-3 step into the guest's IDT and stops one instruction into the ring-0 stub of
        // vector 1, after its `push rax`: the guest's own state is then on the ring-0 stack.
        let db_stub = layout::STUBS + layout::STUB_SIZE;
        assert!(
            rip == image.entry + 1 || rip == db_stub + 1,
            "neither a working step nor PVM's known behaviour: {exit:?}, rip {rip:#x}"
        );
    }
}

//! The hypervisor abstraction: what the sandbox runtime needs from a backend (KVM, and mshv with
//! the `mshv` cargo feature). Backends translate these neutral types to their own ioctls;
//! [`select`] picks one at run time.

use std::sync::atomic::AtomicU8;

use crate::error::Error;
use crate::vm::memory::GuestMemory;

pub mod kvm;
#[cfg(feature = "mshv")]
pub mod mshv;
pub mod select;

/// A segment register, in the neutral form every backend can translate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type field.
    pub type_: u8,
    /// Present bit.
    pub present: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size (D/B).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity (4 KiB units).
    pub g: bool,
}

/// The special registers the runtime sets: segments, descriptor tables and control registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpecialRegisters {
    /// Code segment.
    pub cs: Segment,
    /// Data segment.
    pub ds: Segment,
    /// Extra segment.
    pub es: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// Stack segment.
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// GDT base.
    pub gdt_base: u64,
    /// GDT limit.
    pub gdt_limit: u16,
    /// IDT base.
    pub idt_base: u64,
    /// IDT limit.
    pub idt_limit: u16,
    /// CR0.
    pub cr0: u64,
    /// CR3 (page table root).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// The general registers the runtime sets at entry and reads on a fault. Others are zeroed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// First argument register.
    pub rdi: u64,
    /// Flags.
    pub rflags: u64,
}

/// Every general register with the segment selectors and bases: what a crash dump records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeneralRegisters {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP (the guest keeps frame pointers).
    pub rbp: u64,
    /// RSP.
    pub rsp: u64,
    /// R8 to R15.
    pub r: [u64; 8],
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// Selectors of CS, SS, DS, ES, FS and GS, in that order.
    pub selectors: [u16; 6],
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
}

/// What the CPU says about a fault: the code segment it stopped in and CR2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultState {
    /// The registers at the exit.
    pub regs: Registers,
    /// CS selector at the exit (ring 0 inside an exception stub).
    pub cs_selector: u16,
    /// CR2: the faulting linear address of the last page fault.
    pub cr2: u64,
}

/// Why `run` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `out` to `port`; `value` holds the data (zero-extended), `size` its width in bytes.
    Out {
        /// I/O port.
        port: u16,
        /// Data written.
        value: u32,
        /// Access width in bytes (1, 2 or 4); 0 for a string or repeated access.
        size: u8,
    },
    /// `in` from `port`.
    In {
        /// I/O port.
        port: u16,
    },
    /// An access to guest physical memory that no memory slot backs.
    Mmio {
        /// Guest physical address.
        gpa: u64,
        /// Whether it was a write.
        write: bool,
    },
    /// `hlt`.
    Halt,
    /// Triple fault or other shutdown.
    Shutdown,
    /// A kick (signal or immediate exit) interrupted the run.
    Interrupted,
    /// Any other exit reason the runtime does not handle.
    Other {
        /// The backend's name for the exit.
        reason: String,
    },
}

/// The complete state of a vCPU: every register a guest can change (general, segment, control,
/// x87/SSE/AVX). Opaque: only the backend that saved it can restore it.
pub struct VcpuState(Box<dyn std::any::Any + Send + Sync>);

impl VcpuState {
    /// Wraps a backend's state.
    pub fn new<T: std::any::Any + Send + Sync>(state: T) -> Self {
        Self(Box::new(state))
    }

    /// The backend's state, if it is of type `T`.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VcpuState(..)")
    }
}

/// A hypervisor backend.
pub trait Hypervisor: Send + Sync {
    /// Creates an empty VM.
    fn create_vm(&self) -> Result<Box<dyn Vm>, Error>;
}

/// A VM: its memory slot and its vCPU, while they are set up.
pub trait Vm: Send {
    /// Maps `size` bytes of host memory at `host_addr` to guest physical address `gpa`. A VM has
    /// one memory slot: map it once.
    ///
    /// # Safety
    /// The host range must stay mapped and valid until the VM and all its vCPUs are dropped.
    unsafe fn map_memory(&mut self, gpa: u64, host_addr: u64, size: u64) -> Result<(), Error>;
    /// Creates the VM's single vCPU.
    fn create_vcpu(&mut self) -> Result<Box<dyn Vcpu>, Error>;
    /// Ends the set-up: the VM runs on through its vCPU, and the returned log lists the pages of
    /// `mem` (the memory mapped into it) written from now on. What the log holds is the
    /// backend's choice: KVM tracks writes in the host kernel's page tables where it can and
    /// closes the VM's file descriptor (the vCPU keeps the VM alive), else it keeps the VM for
    /// its dirty log.
    fn into_dirty_log(self: Box<Self>, mem: &GuestMemory) -> Result<Box<dyn DirtyLog>, Error>;
}

/// How a sandbox finds the pages of its memory that may differ from its snapshot.
pub trait DirtyLog: Send {
    /// The pages of `mem` (indices, ascending) that may differ from the snapshot: every page
    /// the guest wrote since the log last tracked it afresh (see [`DirtyLog::restored`]), or
    /// since the log started. May include pages the host wrote.
    fn written(&mut self, mem: &GuestMemory) -> Result<Vec<usize>, Error>;
    /// The restore brought every page of `pages` (what [`DirtyLog::written`] listed, plus any
    /// the caller added; ascending) back to the snapshot: it copied the pages that differed and
    /// found the others, `unchanged` (ascending, a subset), already equal. The log chooses which
    /// pages to track afresh; the others it lists again next time.
    fn restored(
        &mut self,
        mem: &GuestMemory,
        pages: &[usize],
        unchanged: &[usize],
    ) -> Result<(), Error>;
}

/// The pages set in a hypervisor's dirty bitmap (bit `i` of word `i / 64` is page `i`),
/// ascending: for backends whose own dirty log lists the guest's writes and resets when read.
pub(crate) fn bitmap_pages(bitmap: &[u64]) -> Vec<usize> {
    bitmap
        .iter()
        .enumerate()
        .flat_map(|(word, &bits)| {
            (0..64)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| word * 64 + bit)
        })
        .collect()
}

/// A vCPU. Used only from the thread that created it.
pub trait Vcpu: Send {
    /// Sets segments, descriptor tables and control registers.
    fn set_special_registers(&mut self, sregs: &SpecialRegisters) -> Result<(), Error>;
    /// Sets the general registers (all others are zeroed).
    fn set_registers(&mut self, regs: &Registers) -> Result<(), Error>;
    /// Reads every general register, the segment selectors and the FS/GS bases (for a crash
    /// dump): the state the guest resumes in, should it resume.
    fn general_registers(&mut self) -> Result<GeneralRegisters, Error>;
    /// Sets every general register, RIP and RFLAGS (not the segments): what a debugger
    /// changed, or the guest's state to resume it from an exception stub.
    #[cfg(feature = "gdb")]
    fn set_general_registers(&mut self, regs: &GeneralRegisters) -> Result<(), Error>;
    /// Reads what the runtime needs to explain a fault.
    fn fault_state(&mut self) -> Result<FaultState, Error>;
    /// Sets model-specific registers (index, value).
    fn set_msrs(&mut self, msrs: &[(u32, u64)]) -> Result<(), Error>;
    /// Finishes the instruction the last exit stopped in, if the backend leaves that to the
    /// next run: only a plain `out`, which writes no guest memory. An exit whose finishing would
    /// write guest memory or registers (an `in`, string I/O, MMIO) is refused with
    /// [`Error::UnfinishableExit`]: the vCPU is then unusable, and its sandbox needs a new one.
    /// A restore settles the exit before it reads the write log
    /// ([`Vcpu::settle_exit_for_restore`]), so nothing writes guest memory after.
    fn finish_exit(&mut self) -> Result<(), Error>;
    /// Before a restore to `state` reads the write log: settles the last exit as
    /// [`Vcpu::finish_exit`] does, or, where the backend can prove that finishing it could not
    /// change the state restored over it, leaves it to the next run (which then is the only
    /// entry a call + restore needs). `mem` is the guest memory as the guest left it. Refuses
    /// an unfinishable exit like [`Vcpu::finish_exit`].
    fn settle_exit_for_restore(
        &mut self,
        _state: &VcpuState,
        _mem: &GuestMemory,
    ) -> Result<(), Error> {
        self.finish_exit()
    }
    /// Saves the complete register state. Must be called only after an exit the guest is meant
    /// to resume from (it finishes the exit first: [`Vcpu::finish_exit`]).
    fn save_state(&mut self) -> Result<VcpuState, Error>;
    /// Restores a state saved by [`Vcpu::save_state`] of the same backend.
    fn restore_state(&mut self, state: &VcpuState) -> Result<(), Error>;
    /// Runs the vCPU until the next exit.
    fn run(&mut self) -> Result<Exit, Error>;
    /// The flag that, when set, makes the next or current `run` return [`Exit::Interrupted`]
    /// (KVM's `immediate_exit`). Valid as long as the vCPU lives.
    fn immediate_exit(&mut self) -> &AtomicU8;
}

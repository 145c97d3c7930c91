//! One booted micro-VM: guest memory, the VM and its vCPU, and the exit loop that runs one guest
//! call (or the guest's init) to completion. Built on a thread that may create VMs and files
//! (the one that builds the sandbox, or an unfiltered helper thread), then run and used only by
//! its vCPU thread, whose seccomp filter allows neither.

use std::sync::atomic::Ordering;

use hyperlight_schema::abi::{
    INPUT_HEADER_SIZE, PAGE_SIZE, PORT_EXCEPTION, PORT_PARK, SELECTOR_KERNEL_CODE,
};
use hyperlight_schema::{
    wire, ErrorCode, FunctionCall, FunctionCallResult, GuestError, LogLevel, LogRecord, Value,
};

use crate::boundary::{self, GuestMessage};
use crate::config::SandboxConfig;
use crate::error::{Access, Error};
use crate::hypervisor::{DirtyLog, Exit, Hypervisor, Vcpu};
use crate::vcpu::doorbell::{Closed, Doorbell, InFlight};
use crate::vcpu::kick::{ArmedVcpu, KickState};
use crate::vm::crash_dump::CrashDump;
use crate::vm::elf::ElfImage;
use crate::vm::layout::{self, Layout};
use crate::vm::memory::{GuestMemory, SnapshotTarget};
use crate::vm::snapshot::Snapshot;
use crate::vm::x86;

/// How the exit loop reaches the owner when the guest calls a host function.
pub(crate) trait HostCalls {
    /// Runs a checked host call of the guest call `generation`; `None` if that call was
    /// cancelled while it ran.
    fn host_call(&mut self, generation: u64, call: FunctionCall) -> Option<FunctionCallResult>;

    /// The guest stopped for gdb (`regs` are its registers, to resume with; `image` is where
    /// its ELF image is loaded): serves the debugger until it resumes the guest. `None` if no debugger takes this stop.
    #[cfg(feature = "gdb")]
    fn debug_stop(
        &mut self,
        _stop: crate::vm::debug::Stop,
        _regs: &mut crate::hypervisor::GeneralRegisters,
        _mem: &mut GuestMemory,
        _image: layout::Region,
    ) -> Option<crate::vm::debug::Resumed> {
        None
    }
}

/// How the exit loop ended without an error.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The guest answered the call in flight with an exit (`PORT_DONE`), with this value.
    Done(Value),
    /// The guest parked (`PORT_PARK`): every call was answered in memory.
    Parked,
}

/// Whose exits the exit loop serves: the guest's init (one generation, no doorbell), or the
/// calls of a doorbell session, whichever is in flight at each exit.
#[derive(Clone, Copy)]
enum Calls<'a> {
    Init(u64),
    Session(&'a Doorbell),
}

impl Calls<'_> {
    /// The generation of the call in flight, if any.
    fn generation(&self) -> Option<u64> {
        match self {
            Calls::Init(generation) => Some(*generation),
            Calls::Session(bell) => bell.with_call(|call| call.map(|c| c.generation)),
        }
    }

    /// Whether the guest ignored the end of its polling window past every kick.
    fn overdue(&self) -> bool {
        matches!(self, Calls::Session(bell) if bell.overdue())
    }

    /// Emits a guest log record in the span of the call in flight, with its name.
    fn log(&self, record: &LogRecord, sandbox: u64) -> Result<(), Error> {
        let between_calls = LogFields {
            sandbox,
            function: None,
        };
        match self {
            Calls::Init(_) => emit_log(record, between_calls),
            Calls::Session(bell) => bell.with_call(|call| match call {
                Some(call) => call.span.in_scope(|| {
                    let function = Some(call.name.as_str());
                    emit_log(record, LogFields { sandbox, function })
                }),
                None => emit_log(record, between_calls),
            }),
        }
    }
}

/// A booted VM with the snapshot it restores to. Field order is drop order: the kick guard
/// goes before the vCPU.
pub(crate) struct Machine {
    /// Points the kick signal at this vCPU; set on the thread that runs it ([`Machine::arm`]).
    armed: Option<ArmedVcpu>,
    core: Core,
    /// The snapshot a restore brings the machine back to: its post-init state, or the snapshot
    /// it was created from.
    base: Snapshot,
}

/// The vCPU, the write log and the memory they map, and the exit loop. Field order is drop
/// order: the vCPU and the log (which holds the VM, if anything does) go before the memory.
struct Core {
    vcpu: Box<dyn Vcpu>,
    dirty: Box<dyn DirtyLog>,
    mem: GuestMemory,
    layout: Layout,
    /// Bytes of the input buffer the host wrote since the last restore (a hypervisor's own
    /// dirty log records only the guest's writes).
    input_written: u64,
}

/// A VM loaded from a guest ELF with its registers set, whose guest's init has not run yet:
/// made on the thread that builds the sandbox ([`Machine::load`]), which may create VMs and
/// files; the init runs on the vCPU thread ([`Loaded::init`]), which may not.
pub(crate) struct Loaded {
    core: Core,
    /// Where the post-init snapshot's memory will be copied.
    target: SnapshotTarget,
}

impl Machine {
    /// Loads the ELF and the module (bytes mapped read-only for the guest; may be empty), builds
    /// the tables, creates the VM and its vCPU and sets its registers;
    /// also makes the memfd the post-init snapshot will be copied into. Any thread may call it;
    /// the guest's init then runs on the vCPU thread ([`Loaded::init`]).
    pub(crate) fn load(
        hv: &dyn Hypervisor,
        elf: &[u8],
        module: &[u8],
        config: &SandboxConfig,
    ) -> Result<Loaded, Error> {
        let image = ElfImage::parse(elf)?;
        let layout = Layout::new(config, image.span(), module.len() as u64)?;
        let mut mem = GuestMemory::new(layout.total as usize)?;
        let loaded = image.load(mem.as_mut_slice(), layout.image.start)?;
        mem.write(layout.module.start, module)?;
        x86::write_tables(&mut mem, &layout, &loaded)?;
        let target = SnapshotTarget::new(mem.size())?;
        let mut core = Core::new(hv, mem, layout)?;
        let sregs = x86::initial_special_registers(&core.layout);
        let regs = x86::initial_registers(&core.layout, loaded.entry);
        core.vcpu.set_special_registers(&sregs)?;
        core.vcpu.set_registers(&regs)?;
        core.vcpu.set_msrs(&x86::syscall_msrs())?;
        Ok(Loaded { core, target })
    }

    /// Creates a VM in the state of `snapshot`, its memory mapped copy-on-write: no ELF loading,
    /// no init. Any thread may create it; the thread that runs it must [`Machine::arm`] it first.
    pub(crate) fn from_snapshot(hv: &dyn Hypervisor, snapshot: &Snapshot) -> Result<Self, Error> {
        let mem = GuestMemory::from_snapshot(&snapshot.data.memory)?;
        let mut core = Core::new(hv, mem, snapshot.data.layout.clone())?;
        core.vcpu.set_msrs(&x86::syscall_msrs())?;
        core.vcpu.restore_state(&snapshot.data.vcpu)?;
        Ok(Machine {
            armed: None,
            core,
            base: snapshot.clone(),
        })
    }

    /// Points the kick signal handler of the calling thread at this vCPU: call it on the thread
    /// that runs the vCPU, before the first call.
    pub(crate) fn arm(&mut self) {
        self.armed = None;
        self.armed = Some(ArmedVcpu::arm(self.core.vcpu.immediate_exit()));
    }

    /// The snapshot this machine restores to: its post-init state, or the snapshot it was
    /// created from.
    pub(crate) fn base(&self) -> &Snapshot {
        &self.base
    }

    /// Takes a snapshot of the current state (between calls), its memory copied into
    /// `target` (made on a thread that may create files: [`SnapshotTarget::new`]).
    pub(crate) fn snapshot(&mut self, target: SnapshotTarget) -> Result<Snapshot, Error> {
        self.core.snapshot(target)
    }

    /// Takes a snapshot of the current state (between calls) into `target` and makes it
    /// [`Machine::base`]: restores return to it from now on.
    pub(crate) fn rebase(&mut self, target: SnapshotTarget) -> Result<Snapshot, Error> {
        self.base = self.core.take_base(target)?;
        Ok(self.base.clone())
    }

    /// Size of the guest memory in bytes, for [`SnapshotTarget::new`].
    pub(crate) fn memory_size(&self) -> usize {
        self.core.mem.size()
    }

    /// Brings memory and registers back to [`Machine::base`] and resets every register. Only
    /// the pages the write log lists (plus the host's own input-buffer writes) are looked at:
    /// each that differs from the snapshot is copied back.
    pub(crate) fn restore(&mut self) -> Result<(), Error> {
        let core = &mut self.core;
        let base = &self.base.data;
        // First settle (or refuse to finish) the guest's last exit: finishing an access may
        // write guest memory, and nothing may write it once the write log has been read. A
        // plain `out` whose finishing cannot touch the restored state is left to the next
        // call's entry: the restore then enters the guest not at all.
        core.vcpu.settle_exit_for_restore(&base.vcpu, &core.mem)?;
        let input = (core.layout.input.start / PAGE_SIZE) as usize;
        let mut pages = core.dirty.written(&core.mem)?;
        pages.extend(input..input + core.input_written.div_ceil(PAGE_SIZE) as usize);
        // The host writes the doorbell's state word too (a write log records only the guest's).
        pages.push((layout::DOORBELL / PAGE_SIZE) as usize);
        pages.sort_unstable();
        pages.dedup();
        let unchanged = core.mem.restore_pages(&base.memory, &pages)?;
        core.dirty.restored(&core.mem, &pages, &unchanged)?;
        core.vcpu.restore_state(&base.vcpu)?;
        core.input_written = 0;
        Ok(())
    }

    /// Captures a crash dump of the guest as it is now (after `fault`, or on demand between
    /// calls), at most `max_bytes` of its memory: to be written by a thread that may create
    /// files ([`CrashDump::write`]).
    pub(crate) fn crash_dump(
        &mut self,
        fault: Option<&Error>,
        max_bytes: u64,
    ) -> Result<CrashDump, Error> {
        let core = &mut self.core;
        let regs = core.vcpu.general_registers()?;
        CrashDump::capture(regs, &core.mem, &core.layout, fault, max_bytes)
    }

    /// Stops the guest between calls for gdb: `serve` gets its registers (as it resumes) and
    /// memory; registers it changed are set before the guest runs again.
    #[cfg(feature = "gdb")]
    pub(crate) fn debug_between_calls<T>(
        &mut self,
        serve: impl FnOnce(
            &mut crate::hypervisor::GeneralRegisters,
            &mut GuestMemory,
            layout::Region,
        ) -> T,
    ) -> Result<T, Error> {
        let core = &mut self.core;
        let mut regs = core.vcpu.general_registers()?;
        let before = regs;
        let served = serve(&mut regs, &mut core.mem, core.layout.image);
        if regs != before {
            // Finish the guest's last `out` first: new registers replace what it left.
            core.vcpu.finish_exit()?;
            core.vcpu.set_general_registers(&regs)?;
        }
        Ok(served)
    }

    /// Runs guest call `call` (`in_flight` says whose it is) and the doorbell session it opens,
    /// until the guest parks, answers with an exit, or fails: `in_memory` lets the guest answer
    /// in memory, and take more calls posted to `bell`. `sandbox` (the sandbox's id) and the
    /// name of the call in flight are fields of guest log events.
    ///
    /// `Err` if the call could not start (nothing ran; it is the caller's to answer); else
    /// the closed session with how it ended, for [`Closed::answer`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call(
        &mut self,
        call: &FunctionCall,
        in_flight: InFlight,
        in_memory: bool,
        bell: &Doorbell,
        kick: &KickState,
        host: &mut dyn HostCalls,
        sandbox: u64,
    ) -> Result<(Closed, Result<Ended, Error>), Error> {
        let core = &mut self.core;
        core.write_input(&wire::encode_function_call(call))?;
        let (input, output) = (core.layout.input, core.layout.output);
        bell.open(core.mem.shared(), input, output, in_flight, in_memory)?;
        let outcome = core.run(Calls::Session(bell), kick, host, sandbox);
        let closed = bell.close();
        core.input_written = core.input_written.max(closed.input_written);
        Ok((closed, outcome))
    }
}

impl Loaded {
    /// Runs the guest's init and takes the post-init snapshot: on the thread that runs the
    /// vCPU from now on (the kick signal is pointed at it here).
    /// `sandbox` is the sandbox's id, a field of the init's guest log events.
    pub(crate) fn init(self, kick: &KickState, sandbox: u64) -> Result<Machine, Error> {
        let Loaded { mut core, target } = self;
        let armed = ArmedVcpu::arm(core.vcpu.immediate_exit());
        let generation = kick.next_generation();
        kick.begin(generation);
        let init = core.run(Calls::Init(generation), kick, &mut NoHostCalls, sandbox);
        kick.end();
        match init? {
            Ended::Done(Value::Void) => {}
            Ended::Done(_) => {
                return Err(Error::Protocol {
                    reason: "guest init reported a value instead of void".into(),
                })
            }
            Ended::Parked => {
                return Err(Error::Protocol {
                    reason: "the guest parked during its init".into(),
                })
            }
        }
        let base = core.take_base(target)?;
        Ok(Machine {
            armed: Some(armed),
            core,
            base,
        })
    }
}

impl Core {
    /// A VM mapping `mem` at guest address 0, with its vCPU and write log.
    fn new(hv: &dyn Hypervisor, mem: GuestMemory, layout: Layout) -> Result<Self, Error> {
        let mut vm = hv.create_vm()?;
        // SAFETY: `mem` moves into the returned Core, which drops the vCPU and the log (which
        // holds the VM, if anything does) before the memory; on an error here the VM is dropped
        // before `mem`, a parameter.
        unsafe { vm.map_memory(0, mem.host_addr(), layout.total)? };
        let vcpu = vm.create_vcpu()?;
        let dirty = vm.into_dirty_log(&mem)?;
        Ok(Core {
            vcpu,
            dirty,
            mem,
            layout,
            input_written: 0,
        })
    }

    /// Takes the snapshot that restores return to from now on. The memory equals it now, so
    /// once the writes so far are forgotten, copying back the pages written from here on
    /// restores it exactly. (The booted sandbox keeps its own memory: mapping the snapshot
    /// copy-on-write instead would take a new VM.)
    fn take_base(&mut self, target: SnapshotTarget) -> Result<Snapshot, Error> {
        let base = self.snapshot(target)?;
        let written = self.dirty.written(&self.mem)?;
        self.dirty.restored(&self.mem, &written, &written)?;
        // The input buffer's content is in the snapshot too.
        self.input_written = 0;
        Ok(base)
    }

    fn snapshot(&mut self, target: SnapshotTarget) -> Result<Snapshot, Error> {
        let vcpu = self.vcpu.save_state()?;
        Ok(Snapshot::new(
            self.mem.snapshot_into(target)?,
            self.layout.clone(),
            vcpu,
        ))
    }

    fn write_input(&mut self, message: &[u8]) -> Result<(), Error> {
        let capacity = self.layout.input.size() - INPUT_HEADER_SIZE;
        let len = message.len() as u64;
        if len > capacity {
            return Err(Error::MessageTooLarge {
                buffer: "input",
                len,
                capacity,
            });
        }
        self.input_written = self.input_written.max(INPUT_HEADER_SIZE + len);
        self.mem.write_u64(self.layout.input.start, len)?;
        self.mem
            .write(self.layout.input.start + INPUT_HEADER_SIZE, message)
    }

    /// The exit loop: runs the vCPU until the guest answers with an exit or parks, answering
    /// host calls and logs of the call in flight.
    fn run(
        &mut self,
        calls: Calls<'_>,
        kick: &KickState,
        host: &mut dyn HostCalls,
        sandbox: u64,
    ) -> Result<Ended, Error> {
        loop {
            if matches!(calls.generation(), Some(g) if kick.is_cancelled(g)) {
                return Err(Error::Cancelled);
            }
            let exit = self.vcpu.run()?;
            match exit {
                // The one path of every guest message: copy it out once, then decode it.
                Exit::Out { port, value, size } if boundary::is_message_port(port) => {
                    let bytes =
                        boundary::read_guest_message(&self.mem, self.layout.output, value, size)?;
                    match boundary::decode_guest_message(port, &bytes)? {
                        GuestMessage::Done(result) => {
                            return boundary::call_result(result).map(Ended::Done)
                        }
                        GuestMessage::HostCall(call) => {
                            let reply = match calls.generation() {
                                Some(generation) => match host.host_call(generation, call) {
                                    Some(reply) => reply,
                                    None => return Err(Error::Cancelled),
                                },
                                // Between calls no host function runs.
                                None => Err(GuestError {
                                    code: ErrorCode::HostCallNotAllowed,
                                    message: "no guest call is in flight".into(),
                                }),
                            };
                            self.write_reply(&reply)?;
                        }
                        GuestMessage::Log(record) => calls.log(&record, sandbox)?,
                        GuestMessage::Abort(GuestError { code, message }) => {
                            let fault = match code {
                                ErrorCode::OutOfMemory => Error::GuestOutOfMemory { message },
                                _ => Error::GuestPanic { message },
                            };
                            #[cfg(feature = "gdb")]
                            self.debug_fault(&fault, host)?;
                            return Err(fault);
                        }
                    }
                }
                Exit::Out {
                    port: PORT_EXCEPTION,
                    value,
                    ..
                } => {
                    #[cfg(feature = "gdb")]
                    if self.debug_trap(value as u8, host)? {
                        continue;
                    }
                    let fault = self.exception(value as u8);
                    #[cfg(feature = "gdb")]
                    self.debug_fault(&fault, host)?;
                    return Err(fault);
                }
                Exit::Out {
                    port: PORT_PARK, ..
                } => return Ok(Ended::Parked),
                Exit::Interrupted => {
                    self.vcpu.immediate_exit().store(0, Ordering::SeqCst);
                    if calls.generation().is_none() && calls.overdue() {
                        return Err(Error::Protocol {
                            reason: "the guest did not park when its polling window ended".into(),
                        });
                    }
                }
                other => {
                    return Err(Error::UnexpectedExit {
                        exit: format!("{other:?}"),
                    })
                }
            }
        }
    }

    /// Writes a host-call reply, replacing one too large for the input buffer by an error.
    fn write_reply(&mut self, reply: &FunctionCallResult) -> Result<(), Error> {
        let capacity = self.layout.input.size() - INPUT_HEADER_SIZE;
        self.write_input(&boundary::reply_message(reply, capacity))
    }

    /// A breakpoint or single-step trap for gdb: serves the debugger, then resumes the guest
    /// where it stopped (`Ok(true)`). `Ok(false)`: no debugger takes it, it is a fault.
    #[cfg(feature = "gdb")]
    fn debug_trap(&mut self, vector: u8, host: &mut dyn HostCalls) -> Result<bool, Error> {
        use crate::vm::debug::{Resumed, Stop, INT3_GP_ERROR, TRAP_FLAG};
        if !matches!(vector, 1 | 3 | 13) {
            return Ok(false);
        }
        let state = self.vcpu.fault_state()?;
        if state.cs_selector != SELECTOR_KERNEL_CODE {
            return Ok(false);
        }
        let frame = x86::GuestFrame::read(&self.mem, vector)?;
        let (stop, rip) = match vector {
            // #BP is a trap: RIP is past the one-byte `int3`.
            3 => (Stop::Breakpoint, frame.rip.wrapping_sub(1)),
            // The gate's DPL 0 turned the `int3` into a #GP fault: RIP is at it.
            13 if frame.error_code == INT3_GP_ERROR => (Stop::Breakpoint, frame.rip),
            1 => (Stop::Step, frame.rip),
            _ => return Ok(false),
        };
        tracing::debug!(target: "hyperlight::gdb", vector, rip, ?stop, "debug trap");
        let mut regs = self.vcpu.general_registers()?;
        regs.rip = rip;
        regs.rsp = frame.rsp;
        regs.rflags = frame.rflags & !TRAP_FLAG;
        regs.rax = frame.rax;
        regs.rdx = frame.rdx;
        regs.selectors[0] = frame.cs;
        regs.selectors[1] = frame.ss;
        match host.debug_stop(stop, &mut regs, &mut self.mem, self.layout.image) {
            None => return Ok(false),
            Some(Resumed::Interrupted) => return Err(Error::Cancelled),
            Some(Resumed::Continue | Resumed::Step | Resumed::Detached) => {}
        }
        // Leave the stub as an `iretq` would: finish its `out`, back to ring 3.
        self.vcpu.finish_exit()?;
        self.vcpu
            .set_special_registers(&x86::initial_special_registers(&self.layout))?;
        self.vcpu.set_general_registers(&regs)?;
        Ok(true)
    }

    /// A guest fault with gdb attached: stops for gdb (as the signal a crash dump reports)
    /// until it resumes the guest, which does not run again: the call ends with `fault`.
    #[cfg(feature = "gdb")]
    fn debug_fault(&mut self, fault: &Error, host: &mut dyn HostCalls) -> Result<(), Error> {
        use crate::vm::debug::{Resumed, Stop};
        if !fault.is_guest_fault() {
            return Ok(());
        }
        let regs = self.vcpu.general_registers()?;
        let (mut regs, signal) = crate::vm::crash_dump::guest_view(regs, &self.mem, Some(fault));
        match host.debug_stop(
            Stop::Fault(signal as u8),
            &mut regs,
            &mut self.mem,
            self.layout.image,
        ) {
            Some(Resumed::Interrupted) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Explains an exception reported by a ring-0 stub.
    fn exception(&mut self, vector: u8) -> Error {
        let state = match self.vcpu.fault_state() {
            Ok(state) => state,
            Err(e) => return e,
        };
        if state.cs_selector != SELECTOR_KERNEL_CODE {
            return Error::Protocol {
                reason: format!(
                    "exception port written from ring 3 (cs {:#x})",
                    state.cs_selector
                ),
            };
        }
        // The CPU pushed [error code,] rip, cs, rflags, rsp, ss on the ring-0 stack.
        let frame = if x86::has_error_code(vector) { 48 } else { 40 };
        let read = |offset| {
            self.mem
                .read_u64(layout::RSP0 - frame + offset)
                .unwrap_or(0)
        };
        let (error_code, rip) = if frame == 48 {
            (read(0), read(8))
        } else {
            (0, read(0))
        };
        if vector == x86::SYSCALL_CODE {
            // `syscall` pushes no frame; the return address is in RCX, which the stub keeps.
            return Error::SyscallInstruction;
        }
        match vector {
            0 => Error::DivideByZero { rip },
            // PVM enters LSTAR for `syscall` but stays in ring 3, so the fetch of the
            // supervisor-only stub faults; hardware runs the stub (the branch above). Either way
            // it is the same error (a ring-3 jump to the stub is reported the same way).
            14 if state.cr2 == x86::SYSCALL_STUB && error_code & 0x10 != 0 => {
                Error::SyscallInstruction
            }
            14 if self.layout.stack_guard.contains(state.cr2) => Error::StackOverflow {
                addr: state.cr2,
                rip,
            },
            14 => Error::MemoryViolation {
                addr: state.cr2,
                access: if error_code & 0x10 != 0 {
                    Access::Execute
                } else if error_code & 0x2 != 0 {
                    Access::Write
                } else {
                    Access::Read
                },
                rip,
                error_code,
            },
            _ => Error::CpuException {
                vector,
                error_code,
                rip,
            },
        }
    }
}

/// The guest's init: no host function may run before a guest function is called.
struct NoHostCalls;

impl HostCalls for NoHostCalls {
    fn host_call(&mut self, _: u64, _: FunctionCall) -> Option<FunctionCallResult> {
        Some(Err(GuestError {
            code: ErrorCode::HostCallNotAllowed,
            message: "host functions cannot be called during guest init".into(),
        }))
    }
}

/// Whose guest log records these are: fields of every event made of them, so that a log
/// formatter that drops span fields still shows them.
#[derive(Clone, Copy)]
struct LogFields<'a> {
    /// The sandbox's id.
    sandbox: u64,
    /// The guest function called; `None` during the guest's init.
    function: Option<&'a str>,
}

/// Emits a guest log record as a `tracing` event, inside whatever span the call runs in, with
/// the sandbox id and the function name as fields (`sandbox.id`, `function`). A subscriber that
/// panics on it (the guest chooses when records come) fails the call with [`Error::HostPanic`];
/// the machine is left as it was, between two exits.
fn emit_log(record: &LogRecord, log: LogFields<'_>) -> Result<(), Error> {
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "hyperlight_guest",
                $level,
                sandbox.id = log.sandbox,
                function = log.function,
                guest.target = %record.target,
                guest.file = %record.file,
                guest.line = record.line,
                "{}",
                record.message
            )
        };
    }
    crate::vcpu::contain::run(|| match record.level {
        LogLevel::Trace => emit!(tracing::Level::TRACE),
        LogLevel::Debug => emit!(tracing::Level::DEBUG),
        LogLevel::Info => emit!(tracing::Level::INFO),
        LogLevel::Warn => emit!(tracing::Level::WARN),
        LogLevel::Error => emit!(tracing::Level::ERROR),
    })
    .map_err(|message| Error::HostPanic {
        during: "a guest log record",
        message,
    })
}

//! The vCPU thread's side of a gdb session (cargo feature `gdb`): where the guest stops
//! (before the sandbox's first call, at a breakpoint, after a single step), the commands of
//! the gdb thread (`vcpu/gdb.rs`) it serves while stopped (registers, memory, breakpoints),
//! and how the guest resumes.
//!
//! Breakpoints are `int3` bytes written into guest memory by the host. The guest runs in
//! ring 3 and every IDT gate has DPL 0, so an `int3` reaches the ring-0 stubs as #BP (vector 3,
//! a trap: RIP is past it) or, where the CPU checks the gate's DPL, as #GP with the error code
//! of IDT entry 3 (a fault: RIP is at it). A single step sets RFLAGS.TF: the #DB after one
//! instruction reaches the stub of vector 1. No hypervisor debug interface is needed, so this
//! works where the guest runs natively in ring 3 (PVM) as on hardware KVM. A guest fault stops
//! too, as a signal, so that gdb can look at it before the call ends with its error.

use std::collections::BTreeMap;

use flume::{Receiver, Sender};

use crate::hypervisor::GeneralRegisters;
use crate::vcpu::thread::Request;
use crate::vm::crash_dump;
use crate::vm::layout::Region;
use crate::vm::memory::GuestMemory;

/// RFLAGS.TF: a #DB trap after the next instruction.
pub(crate) const TRAP_FLAG: u64 = 1 << 8;
/// The error code of a #GP raised by `int3` through a gate of too high a privilege: IDT entry 3.
pub(crate) const INT3_GP_ERROR: u64 = (3 << 3) | 2;
const INT3: u8 = 0xcc;

/// A command of the gdb thread to the stopped vCPU thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// The guest's registers.
    ReadRegisters(Sender<GeneralRegisters>),
    /// Replace the guest's registers (they take effect when it resumes).
    WriteRegisters(GeneralRegisters),
    /// Read `len` bytes of guest memory at `addr` (inserted breakpoints read as the bytes they
    /// replaced); `None` outside guest memory.
    ReadMemory {
        addr: u64,
        len: usize,
        reply: Sender<Option<Vec<u8>>>,
    },
    /// Write guest memory; `false` outside guest memory.
    WriteMemory {
        addr: u64,
        data: Vec<u8>,
        reply: Sender<bool>,
    },
    /// Insert (`true`) or remove a breakpoint at `addr`; the reply says whether it worked.
    Breakpoint {
        addr: u64,
        insert: bool,
        reply: Sender<bool>,
    },
    /// The auxiliary vector gdb relocates the image with, as bytes (`qXfer:auxv:read`).
    ReadAuxv(Sender<Vec<u8>>),
    /// Resume the guest: run on, or for one instruction.
    Resume { step: bool },
}

/// Why the guest stopped, as the vCPU thread reports it to the gdb thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Stopped for gdb to attach, before the sandbox's first call.
    Attached,
    /// At a breakpoint (RIP is the `int3`'s address).
    Breakpoint,
    /// After a single step.
    Step,
    /// At a fault of the guest, reported to gdb as this signal; the call ends with the fault's
    /// error once gdb resumes the guest.
    Fault(u8),
}

/// How a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// gdb continued the guest.
    Continue,
    /// gdb stepped the guest: it runs one instruction (TF is set in the registers).
    Step,
    /// gdb went away: the guest runs on without a debugger.
    Detached,
    /// The owner's request ended the wait (a kick cancelled the call, or the owner is gone).
    Interrupted,
}

/// What the vCPU thread does with a request that comes while the guest is stopped.
pub(crate) enum OnRequest {
    /// Keep waiting for gdb.
    Wait,
    /// Stop waiting: [`Resumed::Interrupted`].
    Interrupt,
}

/// The vCPU thread's end of a gdb session.
#[derive(Debug)]
pub(crate) struct DebugLink {
    commands: Receiver<Command>,
    stops: Sender<Stop>,
    /// Inserted breakpoints: address -> the byte the `int3` replaced.
    breakpoints: BTreeMap<u64, u8>,
    /// gdb has gone: the guest no longer stops.
    detached: bool,
    /// gdb has not continued the guest yet: it stops before its first call.
    waiting_for_attach: bool,
}

impl DebugLink {
    /// The vCPU thread's end of the channels to a gdb thread.
    pub(crate) fn new(commands: Receiver<Command>, stops: Sender<Stop>) -> Self {
        DebugLink {
            commands,
            stops,
            breakpoints: BTreeMap::new(),
            detached: false,
            waiting_for_attach: true,
        }
    }

    /// Whether the guest should stop for gdb to attach before it runs next.
    pub(crate) fn waiting_for_attach(&self) -> bool {
        self.waiting_for_attach && !self.detached
    }

    /// Reports `stop` to gdb and serves its commands on `regs` and `mem` until it resumes the
    /// guest. A request from the owner meanwhile goes to `on_request`, which may end the wait.
    /// `None` if this is no stop for gdb: no session, or an `int3` that is not one of gdb's
    /// breakpoints (the guest's own: a fault as without a debugger).
    pub(crate) fn serve(
        &mut self,
        stop: Stop,
        regs: &mut GeneralRegisters,
        mem: &mut GuestMemory,
        image: Region,
        requests: &Receiver<Request>,
        on_request: &mut dyn FnMut(Request) -> OnRequest,
    ) -> Option<Resumed> {
        if self.detached || (stop == Stop::Breakpoint && !self.breakpoints.contains_key(&regs.rip))
        {
            return None;
        }
        if self.stops.send(stop).is_err() {
            return Some(self.detach(mem));
        }
        Some(self.serve_commands(regs, mem, image, requests, on_request))
    }

    fn serve_commands(
        &mut self,
        regs: &mut GeneralRegisters,
        mem: &mut GuestMemory,
        image: Region,
        requests: &Receiver<Request>,
        on_request: &mut dyn FnMut(Request) -> OnRequest,
    ) -> Resumed {
        loop {
            enum Next {
                Command(Result<Command, flume::RecvError>),
                Request(Result<Request, flume::RecvError>),
            }
            let next = flume::Selector::new()
                .recv(&self.commands, Next::Command)
                .recv(requests, Next::Request)
                .wait();
            let command = match next {
                Next::Command(Ok(command)) => command,
                Next::Command(Err(_)) => return self.detach(mem),
                Next::Request(Ok(request)) => match on_request(request) {
                    OnRequest::Wait => continue,
                    OnRequest::Interrupt => return self.end(mem),
                },
                Next::Request(Err(_)) => return self.end(mem),
            };
            match command {
                Command::ReadRegisters(reply) => drop(reply.send(*regs)),
                Command::WriteRegisters(new) => *regs = new,
                Command::ReadMemory { addr, len, reply } => {
                    drop(reply.send(self.read(mem, addr, len)));
                }
                Command::WriteMemory { addr, data, reply } => {
                    let _ = reply.send(mem.write(addr, &data).is_ok());
                }
                Command::Breakpoint {
                    addr,
                    insert,
                    reply,
                } => drop(reply.send(self.breakpoint(mem, addr, insert))),
                Command::ReadAuxv(reply) => {
                    let header = mem.read(image.start, 64).unwrap_or_default();
                    let bytes = crash_dump::aux_vector_of(&header, image)
                        .into_iter()
                        .flat_map(|(key, value)| [key.to_le_bytes(), value.to_le_bytes()])
                        .flatten()
                        .collect();
                    let _ = reply.send(bytes);
                }
                Command::Resume { step } => {
                    self.waiting_for_attach = false;
                    if step {
                        regs.rflags |= TRAP_FLAG;
                        return Resumed::Step;
                    }
                    regs.rflags &= !TRAP_FLAG;
                    return Resumed::Continue;
                }
            }
        }
    }

    /// Guest memory as the guest's own code has it: inserted breakpoints read as the bytes
    /// they replaced.
    fn read(&self, mem: &GuestMemory, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut bytes = mem.read(addr, len).ok()?;
        let end = addr.checked_add(len as u64)?;
        for (&at, &original) in self.breakpoints.range(addr..end) {
            bytes[(at - addr) as usize] = original;
        }
        Some(bytes)
    }

    fn breakpoint(&mut self, mem: &mut GuestMemory, addr: u64, insert: bool) -> bool {
        if insert {
            if self.breakpoints.contains_key(&addr) {
                return true;
            }
            let Ok(original) = mem.read(addr, 1) else {
                return false;
            };
            if mem.write(addr, &[INT3]).is_err() {
                return false;
            }
            self.breakpoints.insert(addr, original[0]);
            true
        } else {
            match self.breakpoints.remove(&addr) {
                Some(original) => mem.write(addr, &[original]).is_ok(),
                None => false,
            }
        }
    }

    /// Ends the session from this side while gdb thinks the guest is stopped (a kick ended
    /// the stop): detaches and closes both channels, so that the gdb thread's next command
    /// fails and its session ends instead of talking to a guest that runs on.
    fn end(&mut self, mem: &mut GuestMemory) -> Resumed {
        self.detach(mem);
        self.commands = flume::bounded(0).1;
        self.stops = flume::bounded(0).0;
        Resumed::Interrupted
    }

    /// Ends the session: takes every breakpoint out of guest memory.
    fn detach(&mut self, mem: &mut GuestMemory) -> Resumed {
        self.detached = true;
        for (addr, original) in std::mem::take(&mut self.breakpoints) {
            let _ = mem.write(addr, &[original]);
        }
        Resumed::Detached
    }
}

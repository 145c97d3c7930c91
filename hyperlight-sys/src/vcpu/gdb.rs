//! The gdb stub of one sandbox (cargo feature `gdb`): a thread of its own listens on
//! `127.0.0.1:SandboxConfig::gdb_port`, takes one gdb connection and speaks the GDB Remote
//! Serial Protocol (`gdbstub`) to it. It never touches the VM: it sends commands to the vCPU
//! thread, which serves them while the guest is stopped (`vm/debug.rs`), and waits for its
//! stops. The vCPU thread's seccomp filter forbids sockets, so the socket lives here.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flume::{Receiver, RecvTimeoutError, Sender};
use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::auxv::{Auxv, AuxvOps};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::{X86SegmentRegs, X86_64CoreRegs};
use gdbstub_arch::x86::X86_64_SSE;

use crate::error::Error;
use crate::hypervisor::GeneralRegisters;
use crate::vm::debug::{Command, DebugLink, Stop};

/// How often the gdb thread looks for a Ctrl-C from gdb while the guest runs.
const POLL: Duration = Duration::from_millis(50);

/// The owner's handle on a sandbox's gdb thread: dropping it ends a wait for gdb to connect.
#[derive(Debug)]
pub(crate) struct GdbServer {
    addr: SocketAddr,
    closing: Arc<AtomicBool>,
}

impl Drop for GdbServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wake the thread's `accept`, if it still waits: it sees `closing` and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Listens on `127.0.0.1:port` and starts the gdb thread: on a thread that may open sockets
/// and start threads (the one that builds the sandbox). Returns the owner's handle and the
/// vCPU thread's end of the session.
pub(crate) fn start(port: u16) -> Result<(GdbServer, DebugLink), Error> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|source| Error::GdbListen {
            port,
            source: Arc::new(source),
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::os("gdb local_addr", e))?;
    let (commands, command_rx) = flume::unbounded();
    let (stop_tx, stops) = flume::unbounded();
    let closing = Arc::new(AtomicBool::new(false));
    let thread_closing = closing.clone();
    std::thread::Builder::new()
        .name("hyperlight-gdb".into())
        .spawn(move || serve(listener, &thread_closing, commands, stops))
        .map_err(|e| Error::os("spawn gdb thread", e))?;
    tracing::info!(target: "hyperlight::gdb", %addr, "gdb stub listening: target remote {addr}");
    Ok((
        GdbServer { addr, closing },
        DebugLink::new(command_rx, stop_tx),
    ))
}

/// The gdb thread: one connection, then the protocol until gdb or the sandbox goes.
fn serve(
    listener: TcpListener,
    closing: &AtomicBool,
    commands: Sender<Command>,
    stops: Receiver<Stop>,
) {
    let stream = match listener.accept() {
        Ok((stream, _)) if !closing.load(Ordering::SeqCst) => stream,
        _ => return,
    };
    drop(listener);
    let _ = stream.set_nodelay(true);
    // The guest stops before the sandbox's first call; until then there is nothing to show.
    if stops.recv() != Ok(Stop::Attached) {
        return;
    }
    let mut target = GdbTarget { commands, stops };
    match GdbStub::new(stream).run_blocking::<EventLoop>(&mut target) {
        Ok(DisconnectReason::Disconnect) => {
            tracing::info!(target: "hyperlight::gdb", "gdb disconnected; the guest runs on")
        }
        Ok(reason) => tracing::info!(target: "hyperlight::gdb", ?reason, "gdb session over"),
        Err(error) => tracing::warn!(target: "hyperlight::gdb", %error, "gdb session failed"),
    }
}

/// The sandbox as `gdbstub` sees it: the ends of the channels to the vCPU thread.
struct GdbTarget {
    commands: Sender<Command>,
    stops: Receiver<Stop>,
}

impl GdbTarget {
    /// Sends a command that has an answer and waits for it.
    fn ask<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, TargetError<Error>> {
        let (reply, answer) = flume::bounded(1);
        self.commands
            .send(command(reply))
            .map_err(|_| TargetError::Fatal(Error::ThreadGone))?;
        answer
            .recv()
            .map_err(|_| TargetError::Fatal(Error::ThreadGone))
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::ThreadGone)
    }
}

impl Target for GdbTarget {
    type Arch = X86_64_SSE;
    type Error = Error;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_auxv(&mut self) -> Option<AuxvOps<'_, Self>> {
        Some(self)
    }
}

impl Auxv for GdbTarget {
    fn get_auxv(&self, offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let auxv = self.ask(Command::ReadAuxv)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(auxv.len());
        let end = start.saturating_add(length.min(buf.len())).min(auxv.len());
        buf[..end - start].copy_from_slice(&auxv[start..end]);
        Ok(end - start)
    }
}

impl SingleThreadBase for GdbTarget {
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let r = self.ask(Command::ReadRegisters)?;
        regs.regs = [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r[0], r.r[1], r.r[2], r.r[3],
            r.r[4], r.r[5], r.r[6], r.r[7],
        ];
        regs.rip = r.rip;
        regs.eflags = r.rflags as u32;
        let [cs, ss, ds, es, fs, gs] = r.selectors.map(u32::from);
        regs.segments = X86SegmentRegs {
            cs,
            ss,
            ds,
            es,
            fs,
            gs,
        };
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let old = self.ask(Command::ReadRegisters)?;
        let g = &regs.regs;
        let new = GeneralRegisters {
            rax: g[0],
            rbx: g[1],
            rcx: g[2],
            rdx: g[3],
            rsi: g[4],
            rdi: g[5],
            rbp: g[6],
            rsp: g[7],
            r: [g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]],
            rip: regs.rip,
            // The upper half of RFLAGS is reserved (zero).
            rflags: u64::from(regs.eflags),
            // Segments, their bases: the runtime's, not gdb's to change.
            ..old
        };
        self.send(Command::WriteRegisters(new))
            .map_err(TargetError::Fatal)
    }

    fn read_addrs(&mut self, start_addr: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let len = data.len();
        match self.ask(|reply| Command::ReadMemory {
            addr: start_addr,
            len,
            reply,
        })? {
            Some(bytes) => {
                data.copy_from_slice(&bytes);
                Ok(len)
            }
            None => Err(TargetError::NonFatal),
        }
    }

    fn write_addrs(&mut self, start_addr: u64, data: &[u8]) -> TargetResult<(), Self> {
        let data = data.to_vec();
        match self.ask(|reply| Command::WriteMemory {
            addr: start_addr,
            data,
            reply,
        })? {
            true => Ok(()),
            false => Err(TargetError::NonFatal),
        }
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.send(Command::Resume { step: false })
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.send(Command::Resume { step: true })
    }
}

impl Breakpoints for GdbTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.ask(|reply| Command::Breakpoint {
            addr,
            insert: true,
            reply,
        })
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.ask(|reply| Command::Breakpoint {
            addr,
            insert: false,
            reply,
        })
    }
}

/// Waits for the vCPU thread's next stop while the guest runs.
enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = GdbTarget;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut GdbTarget,
        conn: &mut TcpStream,
    ) -> Result<
        run_blocking::Event<SingleThreadStopReason<u64>>,
        run_blocking::WaitForStopReasonError<Error, <TcpStream as Connection>::Error>,
    > {
        loop {
            match target.stops.recv_timeout(POLL) {
                Ok(Stop::Breakpoint) => {
                    return Ok(run_blocking::Event::TargetStopped(
                        SingleThreadStopReason::SwBreak(()),
                    ))
                }
                Ok(Stop::Step) => {
                    return Ok(run_blocking::Event::TargetStopped(
                        SingleThreadStopReason::DoneStep,
                    ))
                }
                Ok(Stop::Fault(signal)) => {
                    return Ok(run_blocking::Event::TargetStopped(
                        SingleThreadStopReason::Signal(Signal(signal)),
                    ))
                }
                Ok(Stop::Attached) => {
                    return Ok(run_blocking::Event::TargetStopped(
                        SingleThreadStopReason::Signal(Signal::SIGTRAP),
                    ))
                }
                // The vCPU thread ended: the sandbox is gone.
                Err(RecvTimeoutError::Disconnected) => {
                    return Ok(run_blocking::Event::TargetStopped(
                        SingleThreadStopReason::Exited(0),
                    ))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if conn
                .peek()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?
                .is_some()
            {
                let byte = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(byte));
            }
        }
    }

    /// A running guest cannot be stopped from outside (that would take a kick, which ends the
    /// call): gdb's Ctrl-C waits for the next breakpoint.
    fn on_interrupt(_target: &mut GdbTarget) -> Result<Option<SingleThreadStopReason<u64>>, Error> {
        tracing::info!(target: "hyperlight::gdb", "Ctrl-C: a running guest stops only at a breakpoint");
        Ok(None)
    }
}

//! The vCPU thread: one dedicated OS thread per sandbox creates the VM, runs its vCPU, and talks
//! to the sandbox's owner only through messages, so that a blocking caller and an async task can
//! drive it alike.

use std::sync::Arc;
use std::time::Duration;

use flume::{Receiver, Sender};
use hyperlight_schema::{FunctionCall, FunctionCallResult, Value};

use crate::config::SandboxConfig;
use crate::error::Error;
use crate::host_fn::{check_call, invoke, HostFunctions, Signatures};
use crate::hypervisor::Hypervisor;
use crate::kick::{InterruptHandle, KickState};
use crate::machine::{HostCalls, Machine};
use crate::spin::Spinner;

/// A message from the owner to the vCPU thread.
#[derive(Debug)]
pub enum Request {
    /// Run a guest call. `generation` comes from [`VcpuThread::next_generation`].
    Call {
        /// Identifies the call for kicks and replies.
        generation: u64,
        /// The call.
        call: FunctionCall,
        /// The span guest logs of this call are emitted in.
        span: tracing::Span,
    },
    /// The answer to [`Event::HostCall`] of the same generation.
    HostReply {
        /// The call the reply belongs to.
        generation: u64,
        /// The host function's result.
        result: FunctionCallResult,
    },
    /// Bring the sandbox back to its state right after init (clears poisoning); the outcome is
    /// sent on the given channel.
    Restore(Sender<Result<(), Error>>),
    /// Sent by a kick to wake a wait for a host reply; carries no data.
    Wake,
}

/// A message from the vCPU thread to the owner.
#[derive(Debug)]
pub enum Event {
    /// The guest calls a host function. The request was already checked against the declared
    /// signatures; answer with [`Request::HostReply`] of the same generation.
    HostCall {
        /// The running call.
        generation: u64,
        /// The checked request.
        call: FunctionCall,
    },
    /// A call is over.
    Done {
        /// The call.
        generation: u64,
        /// Its result.
        result: Result<Value, Error>,
    },
}

/// Where a sandbox's guest and settings come from; what a restore rebuilds from.
#[derive(Clone)]
pub struct VcpuSpec {
    /// The hypervisor to create the VM on.
    pub hypervisor: Arc<dyn Hypervisor>,
    /// The guest ELF bytes.
    pub elf: Arc<[u8]>,
    /// Memory sizes.
    pub config: SandboxConfig,
    /// The signatures of every host function the guest may call.
    pub signatures: Arc<Signatures>,
    /// Host functions that run right on the vCPU thread, with no round trip to the owner.
    /// Calls of the other functions in `signatures` go to the owner as [`Event::HostCall`].
    pub inline: Arc<HostFunctions>,
}

/// The owner's end of a running vCPU thread.
#[derive(Debug)]
pub struct VcpuThread {
    /// Send requests here.
    pub requests: Sender<Request>,
    /// Receive events here.
    pub events: Receiver<Event>,
    /// Kicks the vCPU.
    pub interrupt: InterruptHandle,
    init_timeout: Duration,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VcpuThread {
    /// Starts the thread, which boots the VM and runs the guest's init; waits for the outcome.
    /// The guest's init must finish within `spec.config.init_timeout`, or it is killed and this
    /// returns [`Error::InitTimeout`].
    pub fn spawn(spec: VcpuSpec) -> Result<Self, Error> {
        let init_timeout = spec.config.init_timeout;
        let (req_tx, req_rx) = flume::unbounded();
        let (ev_tx, ev_rx) = flume::unbounded();
        let (ready_tx, ready_rx) = flume::bounded(1);
        let state = Arc::new(KickState::default());
        let weak = req_tx.downgrade();
        let interrupt = InterruptHandle {
            state: state.clone(),
            wake: Arc::new(move || {
                if let Some(tx) = weak.upgrade() {
                    let _ = tx.send(Request::Wake);
                }
            }),
        };
        let thread = std::thread::Builder::new()
            .name("hyperlight-vcpu".into())
            .spawn(move || thread_main(spec, state, req_rx, ev_tx, ready_tx))
            .map_err(|source| Error::Os {
                op: "spawn vCPU thread",
                source,
            })?;
        let mut this = VcpuThread {
            requests: req_tx,
            events: ev_rx,
            interrupt,
            init_timeout,
            thread: Some(thread),
        };
        match recv_or_kill(&ready_rx, init_timeout, &this.interrupt).and_then(|r| r) {
            Ok(()) => Ok(this),
            Err(e) => {
                this.join();
                Err(e)
            }
        }
    }

    /// Brings the sandbox back to its state right after init and clears poisoning; blocks until
    /// done. Requests sent before it are served first. Until the snapshot work lands this
    /// re-creates the VM and re-runs the guest's init (bounded by the init timeout).
    pub fn restore(&self) -> Result<(), Error> {
        let (done, result) = flume::bounded(1);
        self.requests
            .send(Request::Restore(done))
            .map_err(|_| Error::ThreadGone)?;
        recv_or_kill(&result, self.init_timeout, &self.interrupt)?
    }

    /// A new call generation for [`Request::Call`].
    pub fn next_generation(&self) -> u64 {
        self.interrupt.state.next_generation()
    }

    /// Tells the thread to end without waiting: kicks the running call, if any, and closes the
    /// request channel. Returns the thread's handle to join (once; later calls return `None`).
    /// The thread ends as soon as the call or host function it runs is over.
    pub fn shutdown(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.interrupt.kill();
        let (closed, _) = flume::bounded(0);
        drop(std::mem::replace(&mut self.requests, closed));
        self.thread.take()
    }

    fn join(&mut self) {
        if let Some(thread) = self.shutdown() {
            let _ = thread.join();
        }
    }
}

impl Drop for VcpuThread {
    /// Ends the thread and waits for it: every fd and mapping of the sandbox is closed when
    /// this returns.
    fn drop(&mut self) {
        self.join();
    }
}

/// Waits for `rx` up to `timeout`; past it, kicks the vCPU until the answer comes. A run that
/// the kick cancelled becomes [`Error::InitTimeout`]: used for the guest's init (boot and restore).
pub(crate) fn recv_or_kill<T>(
    rx: &Receiver<Result<T, Error>>,
    timeout: Duration,
    interrupt: &InterruptHandle,
) -> Result<Result<T, Error>, Error> {
    match rx.recv_timeout(timeout) {
        Ok(result) => return Ok(result),
        Err(flume::RecvTimeoutError::Disconnected) => return Err(Error::ThreadGone),
        Err(flume::RecvTimeoutError::Timeout) => {}
    }
    // Init may not have started running yet: kick until it answers.
    loop {
        interrupt.kill();
        match rx.recv_timeout(Duration::from_millis(1)) {
            Ok(Err(Error::Cancelled)) => return Ok(Err(Error::InitTimeout { timeout })),
            Ok(result) => return Ok(result),
            Err(flume::RecvTimeoutError::Disconnected) => return Err(Error::ThreadGone),
            Err(flume::RecvTimeoutError::Timeout) => {}
        }
    }
}

struct Channels<'a> {
    generation: u64,
    kick: &'a KickState,
    signatures: &'a Signatures,
    inline: &'a HostFunctions,
    requests: &'a Receiver<Request>,
    events: &'a Sender<Event>,
    spinner: &'a mut Spinner,
}

impl HostCalls for Channels<'_> {
    fn host_call(&mut self, call: FunctionCall) -> Option<FunctionCallResult> {
        if let Err(rejected) = check_call(self.signatures, &call) {
            return Some(Err(rejected));
        }
        if let Some(f) = self.inline.get(&call.name) {
            return Some(invoke(f, call));
        }
        let generation = self.generation;
        self.events
            .send(Event::HostCall { generation, call })
            .ok()?;
        loop {
            if self.kick.is_cancelled(generation) {
                return None;
            }
            match self.spinner.recv(self.requests).ok()? {
                Request::HostReply {
                    generation: g,
                    result,
                } if g == generation => return Some(result),
                // A stale reply or wake-up; a new call or restore cannot come while one runs.
                _ => continue,
            }
        }
    }
}

fn thread_main(
    spec: VcpuSpec,
    kick: Arc<KickState>,
    requests: Receiver<Request>,
    events: Sender<Event>,
    ready: Sender<Result<(), Error>>,
) {
    kick.thread_started();
    let boot = || Machine::boot(&*spec.hypervisor, &spec.elf, &spec.config, &kick);
    let mut machine = match boot() {
        Ok(m) => Some(m),
        Err(e) => {
            let _ = ready.send(Err(e));
            kick.thread_exiting();
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut poisoned: Option<String> = None;
    let mut spinner = Spinner::new(spec.config.spin_wait);
    while let Ok(request) = spinner.recv(&requests) {
        match request {
            Request::Call {
                generation,
                call,
                span,
            } => {
                kick.begin(generation);
                let result = match (&mut machine, &poisoned) {
                    (Some(m), None) => {
                        let mut host = Channels {
                            generation,
                            kick: &kick,
                            signatures: &spec.signatures,
                            inline: &spec.inline,
                            requests: &requests,
                            events: &events,
                            spinner: &mut spinner,
                        };
                        span.in_scope(|| m.call(generation, &call, &kick, &mut host))
                    }
                    (_, Some(reason)) => Err(Error::Poisoned {
                        reason: reason.clone(),
                    }),
                    (None, None) => Err(Error::Poisoned {
                        reason: "an earlier restore failed".into(),
                    }),
                };
                kick.end();
                if let Err(e) = &result {
                    if e.is_fatal() {
                        poisoned = Some(e.to_string());
                    }
                }
                if events.send(Event::Done { generation, result }).is_err() {
                    break;
                }
            }
            Request::Restore(done) => {
                // Drop the old VM first so the new one does not double the memory.
                machine = None;
                let result = boot().map(|m| {
                    machine = Some(m);
                    poisoned = None;
                });
                let _ = done.send(result);
            }
            Request::HostReply { .. } | Request::Wake => {}
        }
    }
    drop(machine);
    kick.thread_exiting();
}

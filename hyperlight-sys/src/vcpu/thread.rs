//! The vCPU thread: one dedicated OS thread per sandbox runs its vCPU (the thread that builds the
//! sandbox creates the VM) and talks to the sandbox's owner only through messages, so that a
//! blocking caller and an async task can drive it alike.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flume::{Receiver, Sender};
use hyperlight_schema::{FunctionCall, FunctionCallResult, Value};

use crate::config::SandboxConfig;
use crate::error::Error;
use crate::host_fn::{check_call, invoke, HostFunctions, Signatures};
use crate::hypervisor::Hypervisor;
use crate::sandbox::{GuestBinary, SandboxSource};
use crate::vcpu::doorbell::{Answer, Collected, Doorbell, DoorbellStats, InFlight};
use crate::vcpu::factory::ThreadFactory;
use crate::vcpu::kick::{InterruptHandle, KickState};
use crate::vcpu::spin::Spinner;
use crate::vm::crash_dump::{self, CrashDump};
use crate::vm::machine::{HostCalls, Loaded, Machine};
use crate::vm::memory::SnapshotTarget;
use crate::vm::snapshot::Snapshot;

/// Where the vCPU thread puts the snapshot of a [`Request::Rebase`] for its owner; `None` until
/// the first rebase.
type Rebased = Arc<Mutex<Option<Snapshot>>>;

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
        /// Restore the post-init snapshot right after the call (after its result is sent).
        restore_after: bool,
    },
    /// The answer to [`Event::HostCall`] of the same generation.
    HostReply {
        /// The call the reply belongs to.
        generation: u64,
        /// The host function's result.
        result: FunctionCallResult,
    },
    /// Bring the sandbox back to a snapshot (`None`: its post-init state) and clear poisoning;
    /// the outcome is sent on `done`.
    Restore {
        /// The snapshot, of a sandbox with the same memory layout; `None` for post-init.
        to: Option<Snapshot>,
        /// Where the outcome goes.
        done: Sender<Result<(), Error>>,
    },
    /// Take a snapshot of the current state; it is sent on the given channel.
    Snapshot(Sender<Result<Snapshot, Error>>),
    /// Take a snapshot of the current state and make it the one restores return to (the
    /// post-init snapshot from now on); it is sent on the given channel.
    Rebase(Sender<Result<Snapshot, Error>>),
    /// Write a crash dump of the guest as it is now (after the requests sent before it) to
    /// `path`, which must not exist; the file's size is sent on `done`. A poisoned sandbox that
    /// still has its machine is dumped as the fault left it.
    CrashDump {
        /// The file to create.
        path: PathBuf,
        /// Where the outcome goes.
        done: Sender<Result<u64, Error>>,
    },
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

/// Where a sandbox's guest and settings come from: made by
/// [`SandboxBuilder::into_spec`](crate::SandboxBuilder::into_spec), consumed by
/// [`VcpuThread::spawn`].
#[derive(Clone)]
pub struct VcpuSpec {
    /// The hypervisor to create the VM on.
    pub(crate) hypervisor: Arc<dyn Hypervisor>,
    /// What the sandbox starts from; a guest binary is already read (its bytes, bounded by
    /// `config.max_guest_file`).
    pub(crate) source: SandboxSource,
    /// Bytes mapped read-only into the guest at build time, if any (only with a guest binary:
    /// a snapshot holds its own).
    pub(crate) module: Option<Arc<[u8]>>,
    /// Memory sizes.
    pub(crate) config: SandboxConfig,
    /// The signatures of every host function the guest may call.
    pub(crate) signatures: Arc<Signatures>,
    /// Host functions that run right on the vCPU thread, with no round trip to the owner.
    /// Calls of the other functions in `signatures` go to the owner as [`Event::HostCall`].
    pub(crate) inline: Arc<HostFunctions>,
    /// Where a guest fault writes its crash dump, if anywhere
    /// ([`SandboxConfig::effective_crash_dump_dir`]).
    pub(crate) crash_dump_dir: Option<PathBuf>,
}

impl VcpuSpec {
    /// Everything a vCPU thread needs, from a builder's parts: validates the config, reads the
    /// ELF (bounded by `max_guest_file`) and opens the hypervisor. `module` are bytes to map
    /// read-only into the guest (bounded by `max_module_size` when the VM is laid out), used
    /// with a guest binary; a
    /// snapshot holds its own module, and `module` is ignored for one. `inline` are the sync host functions; `signatures` lists every
    /// host function the guest may call (a superset).
    pub fn new(
        source: SandboxSource,
        module: Option<Arc<[u8]>>,
        config: SandboxConfig,
        hypervisor: Option<Arc<dyn Hypervisor>>,
        inline: HostFunctions,
        signatures: Signatures,
    ) -> Result<Self, Error> {
        config.validate()?;
        let source = match source {
            SandboxSource::Binary(guest) => {
                SandboxSource::Binary(GuestBinary::Bytes(guest.load(config.max_guest_file)?))
            }
            snapshot @ SandboxSource::Snapshot(_) => snapshot,
        };
        let hypervisor = match hypervisor {
            Some(hv) => hv,
            None => crate::hypervisor_for(&config)?,
        };
        Ok(VcpuSpec {
            hypervisor,
            source,
            module,
            crash_dump_dir: config.effective_crash_dump_dir(),
            config,
            signatures: Arc::new(signatures),
            inline: Arc::new(inline),
        })
    }
}

/// The owner's end of a vCPU thread's request channel: an unbounded queue whose sends fail once
/// the thread has exited.
///
/// A request that was queued is answered, or, if the thread exits first (a panic ended it, or
/// the sandbox is shutting down), dropped as the thread exits, which disconnects the channel its
/// answer would come on: a wait for an answer (a restore, a snapshot, a call's events) never
/// outlives the thread.
#[derive(Debug)]
pub struct Requests {
    tx: Sender<Request>,
    /// Closed before every request but a host reply or a wake-up, so that a polling guest
    /// parks and the thread takes the request.
    bell: Arc<Doorbell>,
    /// `true` while the thread takes requests; the thread clears it as it exits, under the lock,
    /// so that no send slips in between its last look at the queue and its exit.
    open: Arc<Mutex<bool>>,
}

impl Requests {
    /// Queues `request` for the thread; gives it back if the thread has exited.
    pub fn send(&self, request: Request) -> Result<(), flume::SendError<Request>> {
        if !matches!(request, Request::HostReply { .. } | Request::Wake) {
            self.bell.close_window();
        }
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return Err(flume::SendError(request));
        }
        self.tx.send(request)
    }

    /// Stops sending: once every `Requests` of the channel is closed or dropped, the thread
    /// sees the channel disconnect and ends.
    fn close(&mut self) {
        let (closed, _) = flume::bounded(0);
        drop(std::mem::replace(&mut self.tx, closed));
    }
}

/// The thread's end of the request channel.
struct Inbox {
    rx: Receiver<Request>,
    open: Arc<Mutex<bool>>,
}

/// A request channel: the owner's end and the thread's.
fn request_channel(bell: Arc<Doorbell>) -> (Requests, Inbox) {
    let (tx, rx) = flume::unbounded();
    let open = Arc::new(Mutex::new(true));
    let inbox = Inbox {
        rx,
        open: open.clone(),
    };
    (Requests { tx, bell, open }, inbox)
}

/// The next [`VcpuThread::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The owner's end of a running vCPU thread.
#[derive(Debug)]
pub struct VcpuThread {
    /// The sandbox's process-unique id: a field of its guest log events.
    pub id: u64,
    /// Send requests here.
    pub requests: Requests,
    /// Receive events here.
    pub events: Receiver<Event>,
    /// Kicks the vCPU.
    pub interrupt: InterruptHandle,
    /// Calls to a polling guest go here, with no exit.
    bell: Arc<Doorbell>,
    /// The post-init snapshot the sandbox started with.
    post_init: Snapshot,
    /// The snapshot of the last [`Request::Rebase`], set by the vCPU thread: the post-init
    /// snapshot from then on.
    rebased: Rebased,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The sandbox's gdb stub, if it has one; dropped after the thread is joined.
    #[cfg(feature = "gdb")]
    _gdb: Option<crate::vcpu::gdb::GdbServer>,
}

impl VcpuThread {
    /// Starts the sandbox's vCPU thread (from the thread factory of its seccomp policy, so it
    /// runs filtered from its first instruction). This thread creates the VM, its vCPU and its
    /// memory, and installs the process's kick signal handler, none of which the filter allows.
    /// A guest ELF is loaded here, its init runs on the vCPU thread, and this waits for the
    /// outcome: the init must finish within `spec.config.init_timeout`, or it is killed and this
    /// returns [`Error::InitTimeout`]. A VM from a snapshot runs no guest code to be created, so
    /// this returns without waiting for the vCPU thread.
    pub fn spawn(spec: VcpuSpec) -> Result<Self, Error> {
        let config = &spec.config;
        crate::vcpu::kick::install_handler(config.kick_signal_offset)?;
        crate::seccomp::warn_if_disabled_by_env(&config.seccomp);
        // Started from this (unfiltered) thread, so that its threads are unfiltered too.
        let helpers = crate::seccomp::helper_threads()?;
        let factory = crate::seccomp::vcpu_threads(&config.seccomp, config.thread_stack_size)?;
        // Host functions with extra syscalls get worker threads of their own.
        let inline = crate::seccomp::start_host_workers(
            &spec.inline,
            &config.seccomp,
            config.thread_stack_size,
        )?;
        let state = Arc::new(KickState::default());
        // The host functions callers run themselves: the async ones.
        let caller_runs = spec
            .signatures
            .keys()
            .filter(|name| spec.inline.get(name).is_none())
            .cloned()
            .collect();
        let bell = Arc::new(Doorbell::new(
            config.poll_window,
            state.clone(),
            spec.signatures.clone(),
            caller_runs,
        ));
        crate::vcpu::watchdog::watch(&bell)?;
        let spec = VcpuSpec { inline, ..spec };
        let (req_tx, req_rx) = request_channel(bell.clone());
        let (ev_tx, ev_rx) = flume::unbounded();
        // A wake-up carries no answer channel: it may bypass the exit gate of `Requests`.
        let weak = req_tx.tx.downgrade();
        let interrupt = InterruptHandle {
            state: state.clone(),
            wake: Arc::new(move || {
                if let Some(tx) = weak.upgrade() {
                    let _ = tx.send(Request::Wake);
                }
            }),
        };
        let init_timeout = spec.config.init_timeout;
        let (start, post_init) = match &spec.source {
            SandboxSource::Snapshot(snapshot) => {
                let machine = Machine::from_snapshot(&*spec.hypervisor, snapshot)?;
                (Start::Built(machine), PostInit::Known(snapshot.clone()))
            }
            SandboxSource::Binary(guest) => {
                let elf = guest.load(spec.config.max_guest_file)?;
                let module = spec.module.as_deref().unwrap_or_default();
                let loaded = Machine::load(&*spec.hypervisor, &elf, module, &spec.config)?;
                let (ready, init) = flume::bounded(1);
                (Start::Boot { loaded, ready }, PostInit::AfterInit(init))
            }
        };
        let rebased = Rebased::default();
        let thread_rebased = rebased.clone();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // The stub's socket and thread are made here: the vCPU thread may make neither.
        #[cfg(feature = "gdb")]
        let (gdb, debug) = match spec.config.gdb_port {
            Some(port) => {
                let (server, link) = crate::vcpu::gdb::start(port)?;
                (Some(server), Some(link))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "gdb"))]
        let debug = None;
        let thread_bell = bell.clone();
        let thread = factory.run(Box::new(move || {
            thread_main(
                spec,
                id,
                helpers,
                state,
                thread_bell,
                start,
                req_rx,
                ev_tx,
                thread_rebased,
                debug,
            )
        }))?;
        let post_init = match post_init {
            PostInit::Known(snapshot) => Ok(snapshot),
            PostInit::AfterInit(init) => {
                recv_or_kill(&init, init_timeout, &interrupt).and_then(|r| r)
            }
        };
        match post_init {
            Ok(post_init) => Ok(VcpuThread {
                id,
                requests: req_tx,
                events: ev_rx,
                interrupt,
                bell,
                post_init,
                rebased,
                thread: Some(thread),
                #[cfg(feature = "gdb")]
                _gdb: gdb,
            }),
            Err(e) => {
                interrupt.kill();
                drop(req_tx);
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// The sandbox's post-init snapshot (taken after the guest's init, the snapshot it was
    /// created from, or the last rebase's): what [`VcpuThread::restore`] returns to, and a source
    /// for more sandboxes.
    pub fn post_init_snapshot(&self) -> Snapshot {
        let rebased = self.rebased.lock().unwrap_or_else(|e| e.into_inner());
        rebased.clone().unwrap_or_else(|| self.post_init.clone())
    }

    /// Makes the sandbox's state after the requests sent before it its post-init snapshot:
    /// restores return to it from now on. Returns the snapshot.
    pub fn rebase(&self) -> Result<Snapshot, Error> {
        let (done, result) = flume::bounded(1);
        self.requests
            .send(Request::Rebase(done))
            .map_err(|_| Error::ThreadGone)?;
        result.recv().map_err(|_| Error::ThreadGone)?
    }

    /// Brings the sandbox back to `to` (`None`: its post-init snapshot) and clears poisoning;
    /// blocks until done, waiting as `spinner` says (the restore of a small call takes less
    /// time than waking a parked thread). Requests sent before it are served first. Only the
    /// pages the guest wrote since the last restore are copied back.
    pub fn restore(&self, to: Option<Snapshot>, spinner: &mut Spinner) -> Result<(), Error> {
        let (done, result) = flume::bounded(1);
        self.requests
            .send(Request::Restore { to, done })
            .map_err(|_| Error::ThreadGone)?;
        spinner.recv(&result).map_err(|_| Error::ThreadGone)?
    }

    /// Takes a snapshot of the sandbox's state after the requests sent before it.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let (done, result) = flume::bounded(1);
        self.requests
            .send(Request::Snapshot(done))
            .map_err(|_| Error::ThreadGone)?;
        result.recv().map_err(|_| Error::ThreadGone)?
    }

    /// Writes a crash dump of the guest as it is after the requests sent before it to `path`
    /// (which must not exist): an ELF core file for gdb, at most
    /// [`SandboxConfig::crash_dump_max_size`] bytes of guest memory. The vCPU thread copies the
    /// state and an unfiltered helper thread writes the file. Returns the file's size.
    pub fn crash_dump(&self, path: PathBuf) -> Result<u64, Error> {
        let (done, result) = flume::bounded(1);
        self.requests
            .send(Request::CrashDump { path, done })
            .map_err(|_| Error::ThreadGone)?;
        result.recv().map_err(|_| Error::ThreadGone)?
    }

    /// A new call generation for [`VcpuThread::start_call`].
    pub fn next_generation(&self) -> u64 {
        self.interrupt.state.next_generation()
    }

    /// Starts guest call `call` of `generation` (from [`VcpuThread::next_generation`]): posts
    /// it to the guest through the doorbell if the guest polls right now (no exit), else queues
    /// a [`Request::Call`]. Either way its host calls come as [`Event::HostCall`]; its result
    /// comes from [`VcpuThread::collect`] or as [`Event::Done`]: a waiter polls the first while
    /// it polls, and calls [`VcpuThread::unwatch`] before it blocks on the events.
    ///
    /// Returns whether the answer may come in memory: the waiter should then poll for it (for
    /// up to its spin window) whatever its spinner's record says, or the guest answers with an
    /// exit after all.
    ///
    /// `restore_after` restores the post-init snapshot after the call; such a call is never
    /// posted, and its guest never polls.
    pub fn start_call(
        &self,
        generation: u64,
        call: FunctionCall,
        span: tracing::Span,
        restore_after: bool,
    ) -> Result<bool, Error> {
        let call = if restore_after {
            call
        } else {
            match self.bell.post(generation, call, &span) {
                Ok(()) => return Ok(true),
                Err(call) => call,
            }
        };
        self.requests
            .send(Request::Call {
                generation,
                call,
                span,
                restore_after,
            })
            .map_err(|_| Error::ThreadGone)?;
        Ok(!restore_after && self.bell.answers_in_memory())
    }

    /// The result of call `generation` if the guest answered it in memory; `None` if it did
    /// not yet, or answers with an exit ([`Event::Done`]).
    pub fn collect(&self, generation: u64) -> Option<Result<Value, Error>> {
        match self.bell.collect(generation, false) {
            Some(Collected::Answer(result)) => Some(result),
            _ => None,
        }
    }

    /// As [`VcpuThread::collect`], for a caller that runs the async host functions: also hands
    /// out a host call of one of them that the guest made in memory, already checked against
    /// its signature. Run it and give its result to [`VcpuThread::reply_in_memory`]; the guest
    /// waits for it without an exit. (Sync host functions still run on the vCPU thread: the
    /// guest makes their calls with an exit.)
    pub fn collect_or_host_call(&self, generation: u64) -> Option<Collected> {
        self.bell.collect(generation, true)
    }

    /// Answers the host call that [`VcpuThread::collect_or_host_call`] handed out for call
    /// `generation`, in memory. Returns `false` if the call is over (cancelled): the result is
    /// dropped, and the call's end comes as an [`Event::Done`].
    pub fn reply_in_memory(&self, generation: u64, result: &FunctionCallResult) -> bool {
        self.bell.reply(generation, result)
    }

    /// What the sandbox's doorbell did so far.
    pub fn doorbell_stats(&self) -> DoorbellStats {
        self.bell.stats()
    }

    /// Stops watching call `generation`'s answer in memory: from now on it comes as
    /// [`Event::Done`], unless this returns it because it came first.
    pub fn unwatch(&self, generation: u64) -> Option<Result<Value, Error>> {
        self.bell.unwatch(generation)
    }

    /// Tells the thread to end without waiting: kicks the running call, if any, and closes the
    /// request channel. Returns the thread's handle to join (once; later calls return `None`).
    /// The thread ends as soon as the call or host function it runs is over.
    pub fn shutdown(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.interrupt.kill();
        self.requests.close();
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
/// the kick cancelled becomes [`Error::InitTimeout`]: used for the guest's init.
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

struct HostCallDispatcher<'a> {
    /// Whose call is in flight (for a debugger stop).
    #[cfg(feature = "gdb")]
    bell: &'a Doorbell,
    /// The gdb session, if the sandbox has one.
    #[cfg(feature = "gdb")]
    debug: Option<&'a mut crate::vm::debug::DebugLink>,
    kick: &'a KickState,
    signatures: &'a Signatures,
    inline: &'a HostFunctions,
    requests: &'a Receiver<Request>,
    events: &'a Sender<Event>,
    spinner: &'a mut Spinner,
}

impl HostCalls for HostCallDispatcher<'_> {
    fn host_call(&mut self, generation: u64, call: FunctionCall) -> Option<FunctionCallResult> {
        if let Err(rejected) = check_call(self.signatures, &call) {
            return Some(Err(rejected));
        }
        if let Some(f) = self.inline.get(&call.name) {
            return Some(invoke(f, call));
        }
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

    #[cfg(feature = "gdb")]
    fn debug_stop(
        &mut self,
        stop: crate::vm::debug::Stop,
        regs: &mut crate::hypervisor::GeneralRegisters,
        mem: &mut crate::vm::memory::GuestMemory,
        image: crate::vm::layout::Region,
    ) -> Option<crate::vm::debug::Resumed> {
        use crate::vm::debug::OnRequest;
        let link = self.debug.as_deref_mut()?;
        let kick = self.kick;
        let generation = self.bell.with_call(|call| call.map_or(0, |c| c.generation));
        // While the guest is stopped, only a kick (a wake-up request) can come: it ends the
        // stop if it cancelled this call.
        link.serve(stop, regs, mem, image, self.requests, &mut |_| {
            if kick.is_cancelled(generation) {
                OnRequest::Interrupt
            } else {
                OnRequest::Wait
            }
        })
    }
}

/// The vCPU thread's state between requests.
struct ThreadState {
    hypervisor: Arc<dyn Hypervisor>,
    /// Unfiltered threads, for what the vCPU thread's filter does not allow: building a VM,
    /// making a snapshot's memfd.
    helpers: &'static ThreadFactory,
    vm: Vm,
    /// The post-init snapshot.
    post_init: Snapshot,
    /// Where a guest fault writes its crash dump, if anywhere.
    crash_dump_dir: Option<PathBuf>,
    /// Most bytes of guest memory in one crash dump.
    crash_dump_max_size: u64,
    /// The gdb session, if the sandbox has one.
    #[cfg(feature = "gdb")]
    debug: Option<crate::vm::debug::DebugLink>,
}

/// The sandbox's VM, usable or poisoned (then with the error that poisoned it).
enum Vm {
    Ready(Machine),
    /// Calls fail with [`Error::Poisoned`] until a restore succeeds. `machine` is `None` when
    /// there is none to restore (a rebuild failed, or contained host code left it mid-change):
    /// the next restore builds one from the snapshot.
    Poisoned {
        machine: Option<Machine>,
        cause: Error,
    },
}

impl Vm {
    /// Poisons the VM with `cause`, keeping the first cause if it is poisoned already.
    fn poison(&mut self, cause: Error) {
        if let Vm::Ready(_) = self {
            let machine = std::mem::replace(self, Vm::lost(cause)).take();
            if let Vm::Poisoned { machine: slot, .. } = self {
                *slot = machine;
            }
        }
    }

    /// Poisoned with `cause`, with no machine left.
    fn lost(cause: Error) -> Self {
        Vm::Poisoned {
            machine: None,
            cause,
        }
    }

    /// The machine, usable or not.
    fn take(self) -> Option<Machine> {
        match self {
            Vm::Ready(machine) => Some(machine),
            Vm::Poisoned { machine, .. } => machine,
        }
    }
}

impl ThreadState {
    /// Restores `to`: the fast path copies back the pages written since the last restore, for
    /// the snapshot the machine restores to anyway; for another snapshot, or if the fast path
    /// fails (the vCPU is in a state the hypervisor will not restore from), a new VM is built
    /// from the snapshot on a helper thread. A failed rebuild leaves the VM poisoned by its error.
    fn restore(&mut self, to: Option<Snapshot>) -> Result<(), Error> {
        let target = to.unwrap_or_else(|| self.post_init.clone());
        if target.data.layout != self.post_init.data.layout {
            return Err(Error::InvalidConfig {
                field: "snapshot memory size",
                value: target.data.layout.total,
                reason: "the snapshot is of a sandbox with another memory layout",
            });
        }
        // Until a machine is back in place (below), the VM has none; a panic meanwhile is
        // contained by `thread_main`, which records its own cause.
        let vm = std::mem::replace(&mut self.vm, Vm::lost(Error::ThreadGone));
        let fast = match vm.take() {
            Some(mut machine) if target.same_as(machine.base()) => match machine.restore() {
                Ok(()) => Some(machine),
                Err(e) => {
                    tracing::debug!(error = %e, "fast restore failed; building a new VM");
                    None
                }
            },
            // Another snapshot, or no machine left.
            _ => None,
        };
        let machine = match fast {
            Some(machine) => machine,
            None => {
                let hypervisor = self.hypervisor.clone();
                let built = self
                    .helpers
                    .run_and_wait(move || Machine::from_snapshot(&*hypervisor, &target));
                let mut machine = built.inspect_err(|e| self.vm = Vm::lost(e.clone()))?;
                machine.arm();
                machine
            }
        };
        self.vm = Vm::Ready(machine);
        Ok(())
    }

    /// Takes a snapshot of the machine, into a memfd a helper thread makes.
    fn snapshot(&mut self) -> Result<Snapshot, Error> {
        let helpers = self.helpers;
        let machine = self.machine()?;
        let size = machine.memory_size();
        let target = helpers.run_and_wait(move || SnapshotTarget::new(size))?;
        machine.snapshot(target)
    }

    /// Takes a snapshot and makes it the one restores return to, for this thread and its owner.
    fn rebase(&mut self, rebased: &Rebased) -> Result<Snapshot, Error> {
        let helpers = self.helpers;
        let machine = self.machine()?;
        let size = machine.memory_size();
        let target = helpers.run_and_wait(move || SnapshotTarget::new(size))?;
        let snapshot = machine.rebase(target)?;
        self.post_init = snapshot.clone();
        *rebased.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// Captures a crash dump of the machine (usable, or poisoned by `fault`) on this thread and
    /// has a helper thread write it to `path` (`None`: a fresh file in the configured
    /// directory). Returns the file's path and size.
    fn crash_dump(
        &mut self,
        fault: Option<&Error>,
        path: Option<PathBuf>,
    ) -> Result<(PathBuf, u64), Error> {
        let helpers = self.helpers;
        let max = self.crash_dump_max_size;
        let machine = match &mut self.vm {
            Vm::Ready(machine)
            | Vm::Poisoned {
                machine: Some(machine),
                ..
            } => machine,
            Vm::Poisoned { cause, .. } => {
                return Err(Error::Poisoned {
                    cause: Box::new(cause.clone()),
                })
            }
        };
        let dump: CrashDump = machine.crash_dump(fault, max)?;
        let dir = self.crash_dump_dir.clone();
        helpers.run_and_wait(move || {
            let path = match (path, dir) {
                (Some(path), _) => path,
                (None, Some(dir)) => {
                    std::fs::create_dir_all(&dir).map_err(|source| Error::CrashDumpFile {
                        path: dir.clone(),
                        source: Arc::new(source),
                    })?;
                    crash_dump::file_in(&dir)
                }
                (None, None) => {
                    return Err(Error::InvalidConfig {
                        field: "crash_dump_dir",
                        value: 0,
                        reason: "no crash dump directory is configured",
                    })
                }
            };
            let size = dump.write(path.clone())?;
            Ok((path, size))
        })
    }

    /// After a call failed with a guest fault: writes its crash dump if a directory is
    /// configured, before the call's error is reported, and says where in a `tracing` event.
    fn dump_fault(&mut self, fault: &Error) {
        if self.crash_dump_dir.is_none() || !fault.is_guest_fault() {
            return;
        }
        match self.crash_dump(Some(fault), None) {
            Ok((path, size)) => tracing::warn!(
                target: "hyperlight::crash_dump",
                path = %path.display(),
                size,
                fault = %fault,
                "guest fault: crash dump written"
            ),
            Err(error) => tracing::warn!(
                target: "hyperlight::crash_dump",
                %error,
                fault = %fault,
                "guest fault: crash dump failed"
            ),
        }
    }

    fn machine(&mut self) -> Result<&mut Machine, Error> {
        ready(&mut self.vm)
    }

    /// With a gdb stub: stops the guest before its first call until gdb has connected and
    /// continued it. Requests that come meanwhile are kept in `early`, in order.
    #[cfg(feature = "gdb")]
    fn wait_for_debugger(
        &mut self,
        requests: &Receiver<Request>,
        early: &mut std::collections::VecDeque<Request>,
    ) {
        use crate::vm::debug::{OnRequest, Stop};
        let (Some(link), Vm::Ready(machine)) = (self.debug.as_mut(), &mut self.vm) else {
            return;
        };
        if !link.waiting_for_attach() {
            return;
        }
        tracing::info!(target: "hyperlight::gdb", "the guest waits for gdb to attach");
        let served = machine.debug_between_calls(|regs, mem, image| {
            link.serve(Stop::Attached, regs, mem, image, requests, &mut |request| {
                early.push_back(request);
                OnRequest::Wait
            })
        });
        if let Err(e) = served {
            self.vm.poison(e);
        }
    }
}

/// The machine of `vm`, if it is usable.
fn ready(vm: &mut Vm) -> Result<&mut Machine, Error> {
    match vm {
        Vm::Ready(machine) => Ok(machine),
        Vm::Poisoned { cause, .. } => Err(Error::Poisoned {
            cause: Box::new(cause.clone()),
        }),
    }
}

/// The post-init snapshot of a sandbox being created: known (it is created from it), or sent by
/// the vCPU thread after the guest's init.
enum PostInit {
    Known(Snapshot),
    AfterInit(Receiver<Result<Snapshot, Error>>),
}

/// How a vCPU thread gets its machine.
enum Start {
    /// Run the guest's init of this loaded VM and send the post-init snapshot, or the error.
    Boot {
        loaded: Loaded,
        ready: Sender<Result<Snapshot, Error>>,
    },
    /// Take over a machine built from a snapshot by the creating thread.
    Built(Machine),
}

/// Ends a vCPU thread's service however the thread ends, by returning or by unwinding: no kick
/// signals it after this, no request can be queued any more, and the requests still queued are
/// dropped, so that every owner waiting for an answer sees its channel disconnect
/// ([`Error::ThreadGone`]) at once. (A flume channel keeps its queued messages while any sender
/// lives: a request queued after the thread's last receive would otherwise keep its answer
/// channel open for ever, and its owner waiting.)
struct Exiting<'a> {
    kick: &'a KickState,
    inbox: &'a Inbox,
}

impl Drop for Exiting<'_> {
    fn drop(&mut self) {
        self.kick.thread_exiting();
        *self.inbox.open.lock().unwrap_or_else(|e| e.into_inner()) = false;
        drop(self.inbox.rx.drain());
    }
}

/// Who waits for the answer to a request: kept apart from the request, so that a request whose
/// serving panicked is still answered.
enum Pending {
    Call(u64),
    CrashDump(Sender<Result<u64, Error>>),
    Restore(Sender<Result<(), Error>>),
    Snapshot(Sender<Result<Snapshot, Error>>),
    /// Answered already, or nobody waits.
    Nobody,
}

impl Pending {
    fn of(request: &Request) -> Self {
        match request {
            Request::Call { generation, .. } => Pending::Call(*generation),
            Request::Restore { done, .. } => Pending::Restore(done.clone()),
            Request::Snapshot(done) | Request::Rebase(done) => Pending::Snapshot(done.clone()),
            Request::CrashDump { done, .. } => Pending::CrashDump(done.clone()),
            Request::HostReply { .. } | Request::Wake => Pending::Nobody,
        }
    }

    /// What the thread was doing, for [`Error::HostPanic`].
    fn during(&self) -> &'static str {
        match self {
            Pending::Call(_) => "serving a guest call",
            Pending::Restore(_) => "serving a restore",
            Pending::Snapshot(_) => "serving a snapshot",
            Pending::CrashDump(_) => "writing a crash dump",
            Pending::Nobody => "after answering a request",
        }
    }

    /// Answers with `error`, if anyone still waits.
    fn fail(self, events: &Sender<Event>, error: Error) {
        match self {
            Pending::Call(generation) => {
                let result = Err(error);
                let _ = events.send(Event::Done { generation, result });
            }
            Pending::Restore(done) => drop(done.send(Err(error))),
            Pending::Snapshot(done) => drop(done.send(Err(error))),
            Pending::CrashDump(done) => drop(done.send(Err(error))),
            Pending::Nobody => {}
        }
    }
}

/// What the request loop does after a request.
enum Served {
    Next,
    /// The owner stopped listening: end the thread.
    OwnerGone,
}

/// The vCPU thread's end of a gdb session (none without the `gdb` feature).
#[cfg(feature = "gdb")]
type Debug = Option<crate::vm::debug::DebugLink>;
#[cfg(not(feature = "gdb"))]
type Debug = Option<std::convert::Infallible>;

// Everything the thread owns, handed over once at spawn.
#[allow(clippy::too_many_arguments)]
fn thread_main(
    spec: VcpuSpec,
    id: u64,
    helpers: &'static ThreadFactory,
    kick: Arc<KickState>,
    bell: Arc<Doorbell>,
    start: Start,
    inbox: Inbox,
    events: Sender<Event>,
    rebased: Rebased,
    debug: Debug,
) {
    kick.thread_started();
    let _exiting = Exiting {
        kick: &kick,
        inbox: &inbox,
    };
    let requests = &inbox.rx;
    let machine = match start {
        Start::Built(mut machine) => {
            machine.arm();
            machine
        }
        Start::Boot { loaded, ready } => match loaded.init(&kick, id) {
            Ok(machine) => {
                let _ = ready.send(Ok(machine.base().clone()));
                machine
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        },
    };
    let mut state = ThreadState {
        hypervisor: spec.hypervisor.clone(),
        helpers,
        post_init: machine.base().clone(),
        vm: Vm::Ready(machine),
        crash_dump_dir: spec.crash_dump_dir.clone(),
        crash_dump_max_size: spec.config.crash_dump_max_size,
        #[cfg(feature = "gdb")]
        debug,
    };
    #[cfg(not(feature = "gdb"))]
    let _ = debug;
    // Requests that came while the guest waited for gdb to attach, served first.
    let mut early = std::collections::VecDeque::new();
    #[cfg(feature = "gdb")]
    state.wait_for_debugger(requests, &mut early);
    let mut spinner = Spinner::new(spec.config.spin_wait);
    // Nothing is imminent before the first request (polling then would only take CPU from
    // whoever is still building sandboxes); between calls, the next one often is.
    let mut first = Some(early.pop_front().map_or_else(|| requests.recv(), Ok));
    while let Ok(request) = first
        .take()
        .or_else(|| early.pop_front().map(Ok))
        .unwrap_or_else(|| spinner.recv(requests))
    {
        // Host code runs while a request is served (tracing subscribers for the call's span and
        // guest logs, host functions, which catch their own panics): a panic that escapes it
        // fails the request, not the thread.
        let mut pending = Pending::of(&request);
        let served = crate::vcpu::contain::run(|| {
            match request {
                Request::Call {
                    generation,
                    call,
                    span,
                    restore_after,
                } => {
                    kick.begin(generation);
                    #[cfg(feature = "gdb")]
                    let debug = state.debug.as_mut();
                    let in_flight = InFlight {
                        generation,
                        name: call.name.clone(),
                        return_type: call.return_type,
                        span: span.clone(),
                    };
                    let session = ready(&mut state.vm).and_then(|m| {
                        let mut host = HostCallDispatcher {
                            #[cfg(feature = "gdb")]
                            bell: &bell,
                            #[cfg(feature = "gdb")]
                            debug,
                            kick: &kick,
                            signatures: &spec.signatures,
                            inline: &spec.inline,
                            requests,
                            events: &events,
                            spinner: &mut spinner,
                        };
                        span.in_scope(|| {
                            m.call(
                                &call,
                                in_flight,
                                !restore_after,
                                &bell,
                                &kick,
                                &mut host,
                                id,
                            )
                        })
                    });
                    kick.end();
                    let answer = match session {
                        Ok((closed, outcome)) => closed.answer(outcome),
                        // It could not start: nothing ran, and it is still this call's.
                        Err(e) => Answer {
                            call: Some((generation, Err(e))),
                            stray: None,
                        },
                    };
                    pending = Pending::Nobody;
                    if let Some(e) = answer.stray {
                        // Between calls: nobody waits for this error, the next call sees it.
                        state.dump_fault(&e);
                        state.vm.poison(e);
                    }
                    if let Some((generation, result)) = answer.call {
                        if let Err(e) = &result {
                            // The machine is as the fault left it: nothing has run since.
                            state.dump_fault(e);
                            if e.is_fatal() {
                                state.vm.poison(e.clone());
                            }
                        }
                        if events.send(Event::Done { generation, result }).is_err() {
                            return Served::OwnerGone;
                        }
                    }
                    if restore_after {
                        // A failed restore leaves the VM poisoned by its error.
                        let _ = state.restore(None);
                    }
                }
                Request::Restore { to, done } => {
                    let restored = state.restore(to);
                    pending = Pending::Nobody;
                    let _ = done.send(restored);
                }
                Request::Snapshot(done) => {
                    let snapshot = state.snapshot();
                    pending = Pending::Nobody;
                    let _ = done.send(snapshot);
                }
                Request::Rebase(done) => {
                    let snapshot = state.rebase(&rebased);
                    pending = Pending::Nobody;
                    let _ = done.send(snapshot);
                }
                Request::CrashDump { path, done } => {
                    let written = state.crash_dump(None, Some(path)).map(|(_, size)| size);
                    pending = Pending::Nobody;
                    let _ = done.send(written);
                }
                Request::HostReply { .. } | Request::Wake => {}
            }
            Served::Next
        });
        match served {
            Ok(Served::Next) => {}
            Ok(Served::OwnerGone) => break,
            Err(message) => {
                kick.end();
                // The machine may be mid-change (a call, a restore): drop it, so that the next
                // restore builds a new VM from the snapshot.
                let error = Error::HostPanic {
                    during: pending.during(),
                    message,
                };
                let vm = std::mem::replace(&mut state.vm, Vm::lost(error.clone()));
                let _ = crate::vcpu::contain::run(move || drop(vm));
                pending.fail(&events, error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_dies_fails_its_queued_and_later_requests_at_once() {
        let kick = Arc::new(KickState::default());
        let bell = Doorbell::new(
            Duration::ZERO,
            kick.clone(),
            Arc::default(),
            Default::default(),
        );
        let (requests, inbox) = request_channel(Arc::new(bell));
        let (done, answer) = flume::bounded(1);
        requests.send(Request::Restore { to: None, done }).unwrap();
        let on_thread = kick.clone();
        let died = std::thread::spawn(move || {
            on_thread.thread_started();
            let _exiting = Exiting {
                kick: &on_thread,
                inbox: &inbox,
            };
            panic!("the vCPU thread dies with a request queued");
        })
        .join();
        assert!(died.is_err());
        // The owner still holds its sender: only the drain drops the queued request.
        assert!(matches!(
            answer.recv_timeout(Duration::from_secs(10)),
            Err(flume::RecvTimeoutError::Disconnected)
        ));
        assert!(requests.send(Request::Wake).is_err(), "later requests fail");
    }
}

//! The async sandbox: a cheap, cloneable handle to one micro-VM whose calls queue in FIFO order.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperlight_sys::host_fn::{HostFunction, Signature};
use hyperlight_sys::hypervisor::Hypervisor;
use hyperlight_sys::schema::{
    ErrorCode, FunctionCall, GuestError, Value, ValueType, WireArgs, WireType,
};
use hyperlight_sys::vcpu::Spinner;
use hyperlight_sys::vcpu::{Collected, Event, Request, VcpuThread};
use hyperlight_sys::{
    DoorbellStats, Error as SandboxError, InterruptHandle, SandboxConfig, SandboxSource, Snapshot,
};
use tracing::field::Empty;
use tracing::Instrument;

use crate::error::Error;
use crate::host::{invoke, AsyncHostFunction, DynAsyncHostFn};
use crate::metrics::{self, CallRecord, RestoreReason};

tokio::task_local! {
    /// The async host functions this task is awaiting, outermost first: (sandbox id, function
    /// name). A call into one of those sandboxes would wait for itself ([`Error::Reentrant`]).
    static AWAITING: Vec<(u64, String)>;
}

/// Fails a call, restore or snapshot of `inner` made from within one of its own async host
/// functions (directly, or through other sandboxes' host functions), before it takes the
/// sandbox's turn: that turn is held by the call awaiting the host function.
fn check_reentry(inner: &Inner) -> Result<(), Error> {
    AWAITING
        .try_with(
            |awaiting| match awaiting.iter().find(|(sandbox, _)| *sandbox == inner.id) {
                Some((sandbox, function)) => Err(Error::Reentrant {
                    sandbox: *sandbox,
                    function: function.clone(),
                }),
                None => Ok(()),
            },
        )
        // Not inside any host function of this crate.
        .unwrap_or(Ok(()))
}

/// Builds a [`Sandbox`]. See [`Sandbox::builder`]. Cloneable, to build several alike.
///
/// It wraps the blocking API's builder ([`hyperlight_sys::SandboxBuilder`]) for everything but
/// async host functions and the default timeout.
#[derive(Clone)]
pub struct SandboxBuilder {
    sys: hyperlight_sys::SandboxBuilder,
    async_fns: HashMap<String, (Signature, DynAsyncHostFn)>,
    default_timeout: Option<Duration>,
}

impl SandboxBuilder {
    /// Sets the memory and runtime configuration.
    pub fn config(mut self, config: SandboxConfig) -> Self {
        self.sys = self.sys.config(config);
        self
    }

    /// Uses this hypervisor instead of the one the config selects.
    pub fn hypervisor(mut self, hypervisor: Arc<dyn Hypervisor>) -> Self {
        self.sys = self.sys.hypervisor(hypervisor);
        self
    }

    /// Registers a synchronous host function. It runs on the sandbox's vCPU thread, right where
    /// the guest calls it (no hop to the async runtime), so it must not block for long: use
    /// [`SandboxBuilder::host_fn_async`] for anything that waits.
    pub fn host_fn<Args, F: HostFunction<Args>>(mut self, name: &str, f: F) -> Self {
        self.async_fns.remove(name);
        self.sys = self.sys.host_fn(name, f);
        self
    }

    /// Registers a synchronous host function that needs syscalls beyond the sandbox's seccomp
    /// allowlist (`libc::SYS_*`). It runs on a worker thread of its own whose filter allows the
    /// default list plus `syscalls` (see `docs/security.md`); async host functions are not
    /// filtered (they run on the caller's runtime).
    pub fn host_fn_with_syscalls<Args, F: HostFunction<Args>>(
        mut self,
        name: &str,
        syscalls: &[i64],
        f: F,
    ) -> Self {
        self.async_fns.remove(name);
        self.sys = self.sys.host_fn_with_syscalls(name, syscalls, f);
        self
    }

    /// Registers an async host function, e.g. `|url: String| async move { fetch(url).await }`.
    ///
    /// It runs in the task that awaits the guest call that calls it (the vCPU thread waits for
    /// its result), so it uses that task's runtime and, when the call is cancelled or times out,
    /// its future is dropped with the call.
    pub fn host_fn_async<Args, F: AsyncHostFunction<Args>>(mut self, name: &str, f: F) -> Self {
        self.sys = self.sys.without_host_fn(name);
        self.async_fns
            .insert(name.to_string(), (f.signature(), f.into_dyn()));
        self
    }

    /// Default timeout of every call (none by default); [`Call::timeout`] overrides it per call.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Makes every call start from the post-init snapshot: the sandbox is restored right after
    /// each call (after its result is sent), so no call sees what an earlier one left.
    pub fn fresh_per_call(mut self, fresh: bool) -> Self {
        self.sys = self.sys.fresh_per_call(fresh);
        self
    }

    /// Builds from `source` instead (e.g. a snapshot of a sandbox built by this builder).
    pub fn source(mut self, source: impl Into<SandboxSource>) -> Self {
        self.sys = self.sys.source(source);
        self
    }

    /// Gives the guest `bytes` (a WebAssembly module, a script) in a region of its memory mapped
    /// read-only at build time; see [`hyperlight_sys::SandboxBuilder::module`].
    pub fn module(mut self, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.sys = self.sys.module(bytes);
        self
    }

    /// Creates the VM: from a binary it loads the guest and runs its init; from a snapshot it
    /// maps the snapshot. The blocking work (file I/O, KVM ioctls, the guest's init) runs on
    /// Tokio's blocking thread pool, never on a worker thread.
    ///
    /// # Cancel safety
    ///
    /// dropping the future before it completes drops the sandbox being built as
    /// soon as it is ready; nothing leaks.
    ///
    /// # Errors
    ///
    /// What building the VM reports ([`Error::Sandbox`]): an invalid configuration, an
    /// unreadable or invalid guest ELF, no usable hypervisor, a guest init that failed or timed
    /// out; [`Error::Task`] if the blocking task did not complete.
    pub async fn build(self) -> Result<Sandbox, Error> {
        let SandboxBuilder {
            sys,
            async_fns,
            default_timeout,
        } = self;
        let fresh_per_call = sys.is_fresh_per_call();
        let spinner = Spinner::new(sys.current_config().spin_wait);
        let signatures = async_fns
            .iter()
            .map(|(name, (sig, _))| (name.clone(), sig.clone()))
            .collect();
        let start = Instant::now();
        let thread =
            tokio::task::spawn_blocking(move || VcpuThread::spawn(sys.into_spec(signatures)?))
                .await
                .map_err(|source| Error::Task {
                    task: "build",
                    source,
                })
                .and_then(|built| built.map_err(Error::from));
        metrics::built(start, &thread);
        let thread = thread?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                id: thread.id,
                thread,
                async_fns: async_fns.into_iter().map(|(n, (_, f))| (n, f)).collect(),
                queue: tokio::sync::Mutex::new(spinner),
                poisoned: AtomicBool::new(false),
                default_timeout,
                fresh_per_call,
            }),
        })
    }
}

struct Inner {
    id: u64,
    thread: VcpuThread,
    async_fns: HashMap<String, DynAsyncHostFn>,
    /// Held by the call that owns the vCPU, with the polling policy of its event waits; Tokio's
    /// mutex is fair, so calls run in FIFO order.
    queue: tokio::sync::Mutex<Spinner>,
    /// Set when a call failed fatally or was abandoned: the next call restores first.
    poisoned: AtomicBool,
    default_timeout: Option<Duration>,
    fresh_per_call: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        metrics::sandbox_dropped();
        // End the vCPU thread without blocking a runtime worker: it stops once the call or host
        // function it runs is over; joining happens on the blocking pool.
        if let Some(thread) = self.thread.shutdown() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || thread.join())),
                Err(_) => drop(thread.join()),
            }
        }
    }
}

/// A micro-VM running one guest, awaited from async code.
///
/// `Sandbox` is `Send + Sync` and cheap to clone: clones are handles to the same VM. A VM has
/// one vCPU, so concurrent calls on one sandbox queue and run one at a time in FIFO order;
/// use several sandboxes (or a [`crate::SandboxPool`]) for parallelism. The VM and its
/// thread end when the last handle is dropped, even in the middle of a call.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts building a sandbox from `source`: a guest ELF (path or bytes) or a [`Snapshot`].
    pub fn builder(source: impl Into<SandboxSource>) -> SandboxBuilder {
        SandboxBuilder {
            sys: hyperlight_sys::Sandbox::builder(source),
            async_fns: HashMap::new(),
            default_timeout: None,
        }
    }

    /// This sandbox's process-unique id (also on its tracing spans).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Calls guest function `name` with typed arguments; `.await` it for a typed result, or
    /// set a [`Call::timeout`] first.
    pub fn call<R: WireType>(&self, name: &str, args: impl WireArgs) -> Call<R> {
        Call {
            sandbox: self.clone(),
            call: FunctionCall {
                name: name.to_string(),
                args: args.into_values(),
                return_type: R::TYPE,
            },
            timeout: self.inner.default_timeout,
            _result: PhantomData,
        }
    }

    /// Calls guest function `name` with dynamically typed arguments and return type.
    pub fn call_value(&self, name: &str, args: Vec<Value>, return_type: ValueType) -> Call<Value> {
        Call {
            sandbox: self.clone(),
            call: FunctionCall {
                name: name.to_string(),
                args,
                return_type,
            },
            timeout: self.inner.default_timeout,
            _result: PhantomData,
        }
    }

    /// What this sandbox's doorbell did so far: calls posted with no exit, answers taken from
    /// memory, kicks of a guest that did not park ([`SandboxConfig::poll_window`]).
    pub fn doorbell_stats(&self) -> DoorbellStats {
        self.inner.thread.doorbell_stats()
    }

    /// A handle that cancels the call running now from any thread or task (see
    /// [`InterruptHandle::kill`]); the cancelled call returns [`Error::Cancelled`] at once, also
    /// while its guest awaits an async host function, whose future is then dropped (as when the
    /// call's future is dropped). The sandbox is restored before its next call.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.inner.thread.interrupt.clone()
    }

    /// Brings the sandbox back to its post-init snapshot, after the calls queued before this
    /// one. Calls do this by themselves after a fatal error, timeout or cancellation. Only the
    /// pages written since the last restore are copied back, and every register is reset.
    ///
    /// # Cancel safety
    ///
    /// if dropped while it waits for its turn, nothing happens; once sent, the
    /// restore completes on the vCPU thread even if the future is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Reentrant`] from within one of this sandbox's async host functions; otherwise
    /// what the restore reports ([`SandboxError::ThreadGone`] at once if the vCPU thread is gone).
    pub async fn restore(&self) -> Result<(), Error> {
        check_reentry(&self.inner)?;
        let _turn = self.inner.queue.lock().await;
        restore(&self.inner, None, RestoreReason::Requested).await
    }

    /// Brings the sandbox back to `snapshot` (of a sandbox of the same guest and memory
    /// configuration), after the calls queued before this one.
    ///
    /// # Cancel safety
    ///
    /// As [`Sandbox::restore`].
    ///
    /// # Errors
    ///
    /// As [`Sandbox::restore`], and [`SandboxError::InvalidConfig`] for a snapshot of a sandbox
    /// with another memory layout.
    pub async fn restore_to(&self, snapshot: &Snapshot) -> Result<(), Error> {
        check_reentry(&self.inner)?;
        let _turn = self.inner.queue.lock().await;
        restore(
            &self.inner,
            Some(snapshot.clone()),
            RestoreReason::Requested,
        )
        .await
    }

    /// Takes a snapshot of the sandbox's state after the calls queued before this one: memory
    /// and every vCPU register. Sandboxes built from it start in exactly this state.
    ///
    /// # Cancel safety
    ///
    /// dropping the future while it waits for its turn does nothing; once sent,
    /// the snapshot is taken and discarded.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::restore`].
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        self.snapshot_request(Request::Snapshot).await
    }

    /// Takes a snapshot of the sandbox's state after the calls queued before this one and makes
    /// it the sandbox's post-init snapshot: restores, and [`SandboxBuilder::fresh_per_call`],
    /// return to it from now on. For guests that finish setting up in a call (a WebAssembly
    /// runner instantiating its module); build more sandboxes from the returned snapshot to
    /// start them in that state.
    ///
    /// # Cancel safety
    ///
    /// As [`Sandbox::snapshot`]: once sent, the rebase happens even if the future is dropped.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::snapshot`].
    pub async fn rebase(&self) -> Result<Snapshot, Error> {
        self.snapshot_request(Request::Rebase).await
    }

    /// Writes an ELF core file of the guest, as it is after the calls queued before this one,
    /// to `path` (which must not exist): its memory regions at their guest addresses and its
    /// registers, for `gdb guest-elf path` (see `docs/debugging.md`). A sandbox poisoned by a
    /// fault is dumped as the fault left it (the restore waits for the next call). The vCPU
    /// thread copies the state and a helper thread writes the file; this task only awaits.
    /// Returns the file's size.
    ///
    /// ```
    /// # use hyperlight_async::Sandbox;
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let sandbox = Sandbox::builder(hyperlight_testing::simple_guest()).build().await?;
    /// assert!(sandbox.call::<u64>("fault_in_callee", (1u64,)).await.is_err());
    /// let path = std::env::temp_dir().join(format!("doc-{}.core", std::process::id()));
    /// // The state the fault left: `gdb simple <path>`, then `bt`.
    /// let size = sandbox.crash_dump(&path).await?;
    /// assert_eq!(std::fs::metadata(&path)?.len(), size);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for its turn does nothing; once sent, the dump is
    /// written all the same.
    ///
    /// # Errors
    ///
    /// As [`hyperlight_sys::Sandbox::crash_dump`].
    pub async fn crash_dump(&self, path: impl Into<std::path::PathBuf>) -> Result<u64, Error> {
        check_reentry(&self.inner)?;
        let path = path.into();
        let _turn = self.inner.queue.lock().await;
        let (done, result) = flume::bounded(1);
        self.inner
            .thread
            .requests
            .send(Request::CrashDump { path, done })
            .map_err(|_| SandboxError::ThreadGone)?;
        let size = result
            .recv_async()
            .await
            .map_err(|_| SandboxError::ThreadGone)??;
        Ok(size)
    }

    async fn snapshot_request(
        &self,
        request: fn(flume::Sender<Result<Snapshot, SandboxError>>) -> Request,
    ) -> Result<Snapshot, Error> {
        check_reentry(&self.inner)?;
        let _turn = self.inner.queue.lock().await;
        if self.inner.poisoned.load(Ordering::SeqCst) {
            restore(&self.inner, None, RestoreReason::Poisoned).await?;
        }
        let (done, result) = flume::bounded(1);
        self.inner
            .thread
            .requests
            .send(request(done))
            .map_err(|_| SandboxError::ThreadGone)?;
        let snapshot = result
            .recv_async()
            .await
            .map_err(|_| SandboxError::ThreadGone)??;
        Ok(snapshot)
    }

    /// The snapshot taken right after the guest's init (or the one this sandbox was built from,
    /// or the one of its last [`Sandbox::rebase`]): build more sandboxes from it without loading
    /// or initializing the guest again.
    pub fn post_init_snapshot(&self) -> Snapshot {
        self.inner.thread.post_init_snapshot()
    }
}

/// Restores `to` (`None`: post-init) on the vCPU thread; the caller holds the queue.
async fn restore(inner: &Inner, to: Option<Snapshot>, reason: RestoreReason) -> Result<(), Error> {
    let start = Instant::now();
    let restored = send_restore(inner, to).await;
    metrics::restored(reason, start, &restored);
    restored
}

/// The restore itself: asks the vCPU thread, waits for its answer, clears the poisoning.
async fn send_restore(inner: &Inner, to: Option<Snapshot>) -> Result<(), Error> {
    let (done, result) = flume::bounded(1);
    inner
        .thread
        .requests
        .send(Request::Restore { to, done })
        .map_err(|_| SandboxError::ThreadGone)?;
    result
        .recv_async()
        .await
        .map_err(|_| SandboxError::ThreadGone)??;
    inner.poisoned.store(false, Ordering::SeqCst);
    Ok(())
}

/// A guest call, awaitable (it implements [`IntoFuture`]); made by [`Sandbox::call`].
///
/// # Cancel safety
///
/// dropping the future (the caller gave up, `tokio::time::timeout`, `select!`,
/// a client disconnect) before it completes cancels the call. A call still waiting for its turn
/// just leaves the queue. A running call is kicked out of the guest through the interrupt
/// handle, an async host function it is awaiting is dropped with it, and the sandbox is restored
/// to its post-init state before the next call runs. Dropping it after it completed does nothing.
///
/// # Errors
///
/// [`Error::Timeout`] past its timeout, [`Error::Cancelled`] when killed through the
/// [`Sandbox::interrupt_handle`], [`Error::Reentrant`] (at once, before it queues) when awaited
/// within one of the same sandbox's async host functions, and [`Error::Sandbox`] for what the
/// guest or the runtime reports: among them [`SandboxError::HostPanic`] when host code (a
/// `tracing` subscriber) panicked on the vCPU thread, and [`SandboxError::ThreadGone`] at once
/// if that thread is gone.
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<R> {
    sandbox: Sandbox,
    call: FunctionCall,
    timeout: Option<Duration>,
    _result: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
    /// Fails the call with [`Error::Timeout`] if it has not finished `timeout` after it was
    /// first polled (time spent queued behind other calls counts).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The result type of a call: every [`WireType`], or [`Value`] for dynamically typed calls.
pub trait FromCallValue: Sized + Send + 'static {
    /// Unwraps the value.
    fn from_call_value(value: Value) -> Result<Self, Error>;
}

macro_rules! from_call_value {
    ($($ty:ty),*) => {$(
        impl FromCallValue for $ty {
            fn from_call_value(value: Value) -> Result<Self, Error> {
                let actual = value.value_type();
                <$ty as WireType>::from_value(value).ok_or(Error::Sandbox(
                    hyperlight_sys::Error::ReturnTypeMismatch { expected: <$ty as WireType>::TYPE, actual },
                ))
            }
        }
    )*};
}

from_call_value!(i32, u32, i64, u64, f32, f64, bool, String, Vec<u8>, ());

impl FromCallValue for Value {
    fn from_call_value(value: Value) -> Result<Self, Error> {
        Ok(value)
    }
}

impl<R: FromCallValue> IntoFuture for Call<R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let value = run_call(self.sandbox.inner, self.call, self.timeout).await?;
            R::from_call_value(value)
        })
    }
}

async fn run_call(
    inner: Arc<Inner>,
    call: FunctionCall,
    timeout: Option<Duration>,
) -> Result<Value, Error> {
    let span = tracing::info_span!(
        "sandbox.call",
        sandbox.id = inner.id,
        function = %call.name,
        outcome = Empty,
        duration_us = Empty,
    );
    let record = CallRecord::start();
    let work = exclusive_call(&inner, call, span.clone());
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(Error::Timeout { timeout: limit })),
        None => work.await,
    };
    let elapsed = record.finish(&result);
    span.record("duration_us", elapsed.as_micros() as u64);
    match &result {
        Ok(_) => span.record("outcome", "ok"),
        Err(e) => span.record("outcome", tracing::field::display(e)),
    };
    result
}

/// Waits for the vCPU, restores a poisoned sandbox, then runs the call.
async fn exclusive_call(
    inner: &Arc<Inner>,
    call: FunctionCall,
    span: tracing::Span,
) -> Result<Value, Error> {
    async {
        check_reentry(inner)?;
        let mut turn = inner.queue.lock().await;
        if inner.poisoned.load(Ordering::SeqCst) {
            restore(inner, None, RestoreReason::Poisoned).await?;
        }
        let generation = inner.thread.next_generation();
        let in_memory = inner.thread.start_call(
            generation,
            call,
            tracing::Span::current(),
            inner.fresh_per_call,
        )?;
        // From here on, dropping this future abandons a running call: kick it and poison.
        let mut abandon = Abandon {
            inner,
            generation,
            armed: true,
        };
        let result = drive(inner, generation, in_memory, &mut turn).await;
        abandon.armed = false;
        if inner.fresh_per_call && vcpu_restores_after(&result) {
            metrics::restored_after_call();
        }
        if matches!(&result, Err(e) if e.poisons()) {
            inner.poisoned.store(true, Ordering::SeqCst);
        }
        result
    }
    .instrument(span)
    .await
}

/// Whether the vCPU thread goes on to restore a `fresh_per_call` sandbox after a call with this
/// result: unless the thread is gone or host code panicked on it while it served the call.
fn vcpu_restores_after(result: &Result<Value, Error>) -> bool {
    !matches!(
        result,
        Err(Error::Sandbox(
            SandboxError::ThreadGone | SandboxError::HostPanic { .. }
        ))
    )
}

/// Receives the call's events: runs async host functions until the call is done.
async fn drive(
    inner: &Inner,
    generation: u64,
    in_memory: bool,
    spinner: &mut Spinner,
) -> Result<Value, Error> {
    // After a host call the answer may still come in memory, but the guest is known to be
    // slower than a poll: the spinner's own record decides from then on.
    let mut expected = in_memory;
    loop {
        let next = next_event(inner, generation, std::mem::take(&mut expected), spinner).await?;
        let event = match next {
            Next::Answer(result) => return result.map_err(Error::from),
            Next::HostCallInMemory(call) => {
                if let Some(done) = host_call(inner, generation, call, Reply::InMemory).await {
                    return done;
                }
                // The guest waited in memory: its next step is as hot as the call was.
                expected = true;
                continue;
            }
            Next::Event(event) => event,
        };
        match event {
            Event::Done {
                generation: g,
                result,
            } if g == generation => return result.map_err(Error::from),
            Event::HostCall {
                generation: g,
                call,
            } if g == generation => {
                if let Some(done) = host_call(inner, generation, call, Reply::ByRequest).await {
                    return done;
                }
            }
            // Events of an earlier, abandoned call.
            _ => {}
        }
    }
}

/// How the result of an async host function reaches the guest.
#[derive(Clone, Copy)]
enum Reply {
    /// As a request to the vCPU thread, which the guest waits for in the exit.
    ByRequest,
    /// In memory, where the guest waits for it polling (the doorbell).
    InMemory,
}

/// Runs the async host function the guest called and sends its result to the guest as `reply`
/// says; `None` when it did. Meanwhile it watches the thread's events: if the call ends first (it was
/// killed through the interrupt handle, whose kick the thread's wait for the reply sees), the
/// host function's future is dropped at once and the call's result returned.
async fn host_call(
    inner: &Inner,
    generation: u64,
    call: FunctionCall,
    reply: Reply,
) -> Option<Result<Value, Error>> {
    // The vCPU thread checked the call against the declared signatures, which are exactly the
    // registered sync (run inline there) and async functions.
    let mut awaiting = AWAITING.try_with(Vec::clone).unwrap_or_default();
    awaiting.push((inner.id, call.name.clone()));
    let host = async {
        match inner.async_fns.get(&call.name) {
            Some(f) => invoke(f, call).await,
            None => Err(GuestError {
                code: ErrorCode::UnknownFunction,
                message: format!("no async host function named {:?}", call.name),
            }),
        }
    };
    let host = AWAITING.scope(awaiting, host);
    tokio::pin!(host);
    loop {
        // Events first: a call that is over does not poll its host function again. Both
        // branches are cancel safe: an event stays queued unless `recv_async` returns it, and
        // the host future, pinned here, is polled again on the next turn.
        tokio::select! {
            biased;
            event = inner.thread.events.recv_async() => match event {
                Ok(Event::Done { generation: g, result }) if g == generation => {
                    return Some(result.map_err(Error::from));
                }
                // Events of an earlier, abandoned call; the thread sends no other event of
                // this call while it waits for the reply.
                Ok(_) => {}
                Err(_) => return Some(Err(Error::Sandbox(SandboxError::ThreadGone))),
            },
            result = &mut host => {
                // If the vCPU thread is gone, or the call is over, the next event says why.
                match reply {
                    Reply::ByRequest => {
                        let _ = inner
                            .thread
                            .requests
                            .send(Request::HostReply { generation, result });
                    }
                    Reply::InMemory => {
                        let _ = inner.thread.reply_in_memory(generation, &result);
                    }
                }
                return None;
            }
        }
    }
}

/// What the wait for call `generation` brings next.
enum Next {
    /// Its answer, given in memory (through the doorbell).
    Answer(Result<Value, hyperlight_sys::Error>),
    /// A host call of its guest, made in memory (already checked): run it, answer in memory.
    HostCallInMemory(FunctionCall),
    /// An event of the vCPU thread.
    Event(Event),
}

/// The answer of call `generation` from memory, or the next event of the vCPU thread: both
/// polled (yielding to other tasks between polls) while the spinner says it pays, or anyway if
/// the answer is expected `in_memory`; then the answer is unwatched (it comes as an event from
/// then on) and the events awaited.
async fn next_event(
    inner: &Inner,
    generation: u64,
    in_memory: bool,
    spinner: &mut Spinner,
) -> Result<Next, Error> {
    let thread = &inner.thread;
    let events = &thread.events;
    let gone = || Error::Sandbox(hyperlight_sys::Error::ThreadGone);
    if let Some(polling) = spinner.begin_if(in_memory) {
        loop {
            match thread.collect_or_host_call(generation) {
                Some(Collected::Answer(result)) => {
                    spinner.end(polling, true);
                    return Ok(Next::Answer(result));
                }
                Some(Collected::HostCall(call)) => {
                    spinner.end(polling, true);
                    return Ok(Next::HostCallInMemory(call));
                }
                None => {}
            }
            match events.try_recv() {
                Ok(event) => {
                    spinner.end(polling, true);
                    return Ok(Next::Event(event));
                }
                Err(flume::TryRecvError::Disconnected) => return Err(gone()),
                Err(flume::TryRecvError::Empty) if !polling.expired() => {
                    tokio::task::yield_now().await
                }
                Err(flume::TryRecvError::Empty) => {
                    spinner.end(polling, false);
                    break;
                }
            }
        }
    }
    if let Some(result) = thread.unwatch(generation) {
        return Ok(Next::Answer(result));
    }
    events
        .recv_async()
        .await
        .map(Next::Event)
        .map_err(|_| gone())
}

/// Cancels and poisons a call that is dropped while it runs.
struct Abandon<'a> {
    inner: &'a Inner,
    generation: u64,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.poisoned.store(true, Ordering::SeqCst);
            self.inner.thread.interrupt.cancel(self.generation);
            // The vCPU thread ends the kicked call as any other: a fresh_per_call sandbox is
            // restored after it.
            if self.inner.fresh_per_call {
                metrics::restored_after_call();
            }
        }
    }
}

//! `SandboxPool`: pre-built sandboxes of one guest; every call gets a fresh one.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperlight_sys::schema::{FunctionCall, Value, ValueType, WireArgs, WireType};
use hyperlight_sys::Snapshot;
use tokio::sync::Semaphore;

use crate::error::Error;
use crate::metrics;
use crate::sandbox::{FromCallValue, Sandbox, SandboxBuilder};

/// What a pool is doing, at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Sandboxes in the pool.
    pub size: usize,
    /// Sandboxes running a call.
    pub busy: usize,
    /// Callers waiting for a sandbox.
    pub waiting: usize,
    /// Sandboxes built to replace ones that could not be restored.
    pub replaced: usize,
}

/// A bounded pool of sandboxes of one guest, each restored to the guest's post-init snapshot
/// after every call: every call sees a fresh sandbox, at the cost of a restore (which copies
/// back only the pages the call wrote) instead of a VM creation.
///
/// The first sandbox is built from the builder (loading the guest and running its init); the
/// others are created from its post-init snapshot and share its memory copy-on-write. Callers
/// beyond the pool's size wait in FIFO order, each with its own timeout. A sandbox whose call
/// failed fatally is restored; one that cannot be restored is dropped (with a warning) and
/// replaced by a new one from the snapshot when its slot is next taken. `SandboxPool` is a
/// cheap, cloneable handle.
///
/// ```no_run
/// use std::time::Duration;
/// use hyperlight_async::{Sandbox, SandboxPool};
///
/// # async fn example() -> Result<(), hyperlight_async::Error> {
/// let pool = SandboxPool::new(Sandbox::builder(hyperlight_testing::simple_guest()), 8).await?;
/// let n: u64 = pool.call("counter", ()).timeout(Duration::from_secs(1)).await?;
/// assert_eq!(n, 1); // every call starts from the post-init state
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SandboxPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    /// Last in, first out: a call gets the sandbox returned last. Its thread may still be
    /// restoring it after the previous call, and the call then waits for that restore, but the
    /// thread takes the call without parking in between; waking a parked thread costs more on a
    /// virtualized host than a small restore. Handing out the longest-idle sandbox, or the one
    /// whose thread began waiting last, was measured slower for one caller and no faster for
    /// four (`docs/performance.md`, "WebAssembly guests").
    idle: Mutex<Vec<Sandbox>>,
    /// One permit per idle sandbox; Tokio's semaphore is fair, so waiters are served FIFO.
    permits: Semaphore,
    size: usize,
    busy: AtomicUsize,
    waiting: AtomicUsize,
    replaced: AtomicUsize,
    /// Builds replacements: the pool's builder, sourced from the snapshot.
    builder: SandboxBuilder,
    snapshot: Snapshot,
}

impl std::fmt::Debug for SandboxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SandboxPool {
    /// Builds `size` sandboxes (at least one) from `builder`: the first from its source, the
    /// others from the first one's post-init snapshot, concurrently.
    ///
    /// # Errors
    ///
    /// The first error of a sandbox build ([`SandboxBuilder::build`]), or [`Error::Task`] if a
    /// build task did not complete.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the sandboxes built so far; builds still running on the
    /// blocking pool finish there and their sandboxes are dropped as soon as they are ready.
    pub async fn new(builder: SandboxBuilder, size: usize) -> Result<Self, Error> {
        let size = size.max(1);
        let builder = builder.fresh_per_call(true);
        let first = builder.clone().build().await?;
        let snapshot = first.post_init_snapshot().clone();
        let builder = builder.source(snapshot.clone());
        let rest: Vec<_> = (1..size)
            .map(|_| tokio::spawn(builder.clone().build()))
            .collect();
        let mut sandboxes = vec![first];
        for task in rest {
            sandboxes.push(task.await.map_err(|source| Error::Task {
                task: "build",
                source,
            })??);
        }
        metrics::pool_idle(size as f64);
        Ok(SandboxPool {
            inner: Arc::new(PoolInner {
                idle: Mutex::new(sandboxes),
                permits: Semaphore::new(size),
                size,
                busy: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                replaced: AtomicUsize::new(0),
                builder,
                snapshot,
            }),
        })
    }

    /// Calls guest function `name` on a fresh sandbox; `.await` it for a typed result, or set a
    /// [`PoolCall::timeout`] first.
    pub fn call<R: WireType>(&self, name: &str, args: impl WireArgs) -> PoolCall<R> {
        PoolCall {
            pool: self.clone(),
            call: FunctionCall {
                name: name.to_string(),
                args: args.into_values(),
                return_type: R::TYPE,
            },
            timeout: None,
            _result: PhantomData,
        }
    }

    /// Calls guest function `name` on a fresh sandbox with dynamically typed arguments and
    /// return type.
    pub fn call_value(
        &self,
        name: &str,
        args: Vec<Value>,
        return_type: ValueType,
    ) -> PoolCall<Value> {
        PoolCall {
            pool: self.clone(),
            call: FunctionCall {
                name: name.to_string(),
                args,
                return_type,
            },
            timeout: None,
            _result: PhantomData,
        }
    }

    /// The guest's post-init snapshot every sandbox of the pool returns to.
    pub fn snapshot(&self) -> &Snapshot {
        &self.inner.snapshot
    }

    /// Size, busy and waiting counts now.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.inner.size,
            busy: self.inner.busy.load(Ordering::Relaxed),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
            replaced: self.inner.replaced.load(Ordering::Relaxed),
        }
    }
}

/// A call through a [`SandboxPool`], awaitable (it implements [`IntoFuture`]).
///
/// # Cancel safety
///
/// dropped while waiting for a sandbox, it leaves the queue; dropped while its
/// call runs, the call is cancelled as [`crate::Call`]'s is, and the sandbox goes back to the
/// pool to be restored before its next call.
///
/// # Errors
///
/// As [`crate::Call`]'s, plus [`Error::Timeout`] while still waiting for a sandbox, and
/// [`Error::PoolRebuild`] when the sandbox of the slot it got had been lost and could not be
/// rebuilt.
#[must_use = "a call does nothing until it is awaited"]
pub struct PoolCall<R> {
    pool: SandboxPool,
    call: FunctionCall,
    timeout: Option<Duration>,
    _result: PhantomData<fn() -> R>,
}

impl<R> PoolCall<R> {
    /// Fails with [`Error::Timeout`] if the call has not finished `timeout` after it was first
    /// polled, time spent waiting for a sandbox included. (The sandbox's call gets what is left
    /// of it as its own timeout; a restore after a failed call is not counted in it.)
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<R: FromCallValue> PoolCall<R> {
    /// Runs the call like `.await` does, and also returns the [`Sandbox::id`] of the pool's
    /// sandbox that ran it (for events about the call the caller records afterwards).
    ///
    /// # Cancel safety
    ///
    /// As the call's own future.
    pub async fn with_sandbox_id(self) -> Result<(R, u64), Error> {
        let (value, id) = self.pool.inner.clone().run(self.call, self.timeout).await?;
        Ok((R::from_call_value(value)?, id))
    }
}

impl<R: FromCallValue> IntoFuture for PoolCall<R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { Ok(self.with_sandbox_id().await?.0) })
    }
}

/// Counts a waiting caller while it lives (also in the `hyperlight_pool_waiting` gauge).
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::pool_waiting(1.0);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::pool_waiting(-1.0);
    }
}

/// A sandbox taken from the pool; goes back when dropped (also when the call is cancelled).
struct Lease<'a> {
    pool: &'a PoolInner,
    sandbox: Option<Sandbox>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sandbox);
        }
        self.pool.busy.fetch_sub(1, Ordering::Relaxed);
        metrics::pool_busy(-1.0);
        metrics::pool_idle(1.0);
        self.pool.permits.add_permits(1);
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Every lease has ended (each borrows the pool): all its slots are idle.
        metrics::pool_idle(-(self.size as f64));
    }
}

impl PoolInner {
    async fn run(
        self: Arc<Self>,
        call: FunctionCall,
        timeout: Option<Duration>,
    ) -> Result<(hyperlight_sys::schema::Value, u64), Error> {
        let deadline = timeout.map(|limit| (tokio::time::Instant::now() + limit, limit));
        let (mut lease, sandbox) = match deadline {
            Some((at, limit)) => tokio::time::timeout_at(at, self.lease())
                .await
                .unwrap_or_else(|_| {
                    metrics::pool_timeout();
                    Err(Error::Timeout { timeout: limit })
                })?,
            None => self.lease().await?,
        };
        let mut sandbox_call = sandbox.call_value(&call.name, call.args, call.return_type);
        if let Some((at, _)) = deadline {
            sandbox_call =
                sandbox_call.timeout(at.saturating_duration_since(tokio::time::Instant::now()));
        }
        let result = match (sandbox_call.await, deadline) {
            (Err(Error::Timeout { .. }), Some((_, limit))) => {
                Err(Error::Timeout { timeout: limit })
            }
            (result, _) => result,
        };
        if matches!(&result, Err(e) if e.poisons()) {
            // Restore now rather than on the next call. A sandbox that cannot be restored is
            // dropped; the next call that finds its slot empty builds a new one.
            if let Err(error) = sandbox.restore().await {
                tracing::warn!(
                    sandbox.id = sandbox.id(),
                    %error,
                    "a pooled sandbox could not be restored and is dropped"
                );
                lease.sandbox = None;
            }
        }
        result.map(|value| (value, sandbox.id()))
    }

    /// Waits for a sandbox (building one if its slot's was lost).
    async fn lease(&self) -> Result<(Lease<'_>, Sandbox), Error> {
        let permit = {
            let _waiting = Counted::new(&self.waiting);
            self.permits
                .acquire()
                .await
                .map_err(|_| Error::PoolClosed)?
        };
        // The lease hands the permit back when the sandbox returns to the pool.
        permit.forget();
        self.busy.fetch_add(1, Ordering::Relaxed);
        metrics::pool_idle(-1.0);
        metrics::pool_busy(1.0);
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut lease = Lease {
            pool: self,
            sandbox: idle,
        };
        let sandbox = match &lease.sandbox {
            Some(sandbox) => sandbox.clone(),
            // A permit without an idle sandbox: the sandbox of this slot was lost (see below).
            None => {
                let fresh = self
                    .builder
                    .clone()
                    .build()
                    .await
                    .map_err(|e| Error::PoolRebuild {
                        source: Box::new(e),
                    })?;
                self.replaced.fetch_add(1, Ordering::Relaxed);
                metrics::pool_replaced();
                lease.sandbox.insert(fresh).clone()
            }
        };
        Ok((lease, sandbox))
    }
}

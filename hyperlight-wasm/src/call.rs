//! `WasmCall`: one export call, checked before it runs, awaited for a typed result.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use hyperlight_async::{Call, FromCallValue, PoolCall, Sandbox, Value};

use crate::error::Error;

/// A call of a module's export, awaitable (it implements [`IntoFuture`]); made by
/// [`WasmSandbox::call`](crate::WasmSandbox::call) or [`WasmPool::call`](crate::WasmPool::call).
///
/// The call was checked against the export's core type when it was made: a call of an unknown
/// export or with the wrong types fails at once, before anything runs in the sandbox.
///
/// # Cancel safety
///
/// As the native call it wraps ([`Call`], [`PoolCall`]): dropping the future cancels the call,
/// kicks the vCPU out of the guest, drops an async import it awaits, and the instance is
/// restored before the next call. After a trap the sandbox is restored before the future
/// completes; if the future is dropped during that restore, the restore still completes.
///
/// # Errors
///
/// [`Error::UnknownExport`], [`Error::ExportType`] or [`Error::Abi`] before anything runs;
/// [`Error::Trap`] or [`Error::Abi`] from the instance; [`Error::Sandbox`] for what the sandbox
/// reports (a timeout, a cancellation, a failed import).
#[must_use = "a call does nothing until it is awaited"]
pub struct WasmCall<R> {
    export: String,
    target: Result<Target, Error>,
    _result: PhantomData<fn() -> R>,
}

pub(crate) enum Target {
    /// A call of one sandbox; `restore` holds it when a trap must be cleaned up after (it does
    /// not restore after every call by itself).
    Sandbox {
        call: Call<Value>,
        restore: Option<Sandbox>,
        /// The sandbox's id.
        id: u64,
    },
    /// A pool call, restored after every call anyway.
    Pool(PoolCall<Value>),
}

impl<R> WasmCall<R> {
    pub(crate) fn new(export: &str, target: Result<Target, Error>) -> Self {
        WasmCall {
            export: export.to_string(),
            target,
            _result: PhantomData,
        }
    }

    /// Fails the call with a timeout ([`hyperlight_async::Error::Timeout`] inside
    /// [`Error::Sandbox`]) if it has not finished `timeout` after it was first polled; the vCPU
    /// is kicked out of the guest, also while an async import is pending.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.target = self.target.map(|target| match target {
            Target::Sandbox { call, restore, id } => Target::Sandbox {
                call: call.timeout(timeout),
                restore,
                id,
            },
            Target::Pool(call) => Target::Pool(call.timeout(timeout)),
        });
        self
    }
}

impl<R: FromCallValue> WasmCall<R> {
    /// Runs the call, and also returns the id of the sandbox that ran it.
    pub(crate) async fn with_sandbox_id(self) -> Result<(R, u64), Error> {
        let WasmCall { export, target, .. } = self;
        let (value, id) = match target? {
            Target::Sandbox { call, restore, id } => {
                match call.await {
                    Ok(value) => (value, id),
                    Err(error) => {
                        let error = Error::of_call(&export, error);
                        if let Some(sandbox) = restore.filter(|_| error.leaves_instance_dirty()) {
                            if let Err(e) = sandbox.restore().await {
                                // The sandbox is poisoned then: its next call restores first.
                                tracing::warn!(sandbox.id = sandbox.id(), error = %e, "restore after a trap failed");
                            }
                        }
                        return Err(error);
                    }
                }
            }
            Target::Pool(call) => call
                .with_sandbox_id()
                .await
                .map_err(|e| Error::of_call(&export, e))?,
        };
        Ok((R::from_call_value(value).map_err(Error::Sandbox)?, id))
    }
}

impl<R: FromCallValue> IntoFuture for WasmCall<R> {
    type Output = Result<R, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { Ok(self.with_sandbox_id().await?.0) })
    }
}

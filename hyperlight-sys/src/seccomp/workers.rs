//! Host functions registered with extra syscalls: each runs on a worker thread of its own, under
//! the host-function filter plus those syscalls, and the vCPU thread hands it each call.

use std::collections::HashMap;
use std::sync::Arc;

use hyperlight_schema::Value;

use super::{factory, Filter, SeccompPolicy};
use crate::error::Error;
use crate::host_fn::{DynHostFn, HostFunctions};
use crate::vcpu::factory::ThreadFactory;

/// A worker thread running one host function under its own filter.
struct HostFnWorker {
    calls: Option<flume::Sender<HostCall>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Outcome = std::thread::Result<Result<Value, String>>;

struct HostCall {
    args: Vec<Value>,
    reply: flume::Sender<Outcome>,
}

impl Drop for HostFnWorker {
    fn drop(&mut self) {
        // Closing the queue ends the worker's loop.
        drop(self.calls.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl HostFnWorker {
    /// Starts the worker of `f` on a thread of `factory`, which is already filtered.
    fn spawn(f: DynHostFn, factory: &ThreadFactory) -> Result<Self, Error> {
        let (calls, queue) = flume::bounded::<HostCall>(1);
        let thread = factory.run(Box::new(move || {
            while let Ok(HostCall { args, reply }) = queue.recv() {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(args)));
                // Nobody waits (the sandbox is gone): a panic's payload is dropped here, where
                // its `Drop` must not end the worker.
                if let Err(Err(payload)) = reply.send(outcome).map_err(|e| e.into_inner()) {
                    crate::vcpu::contain::discard(payload);
                }
            }
        }))?;
        Ok(HostFnWorker {
            calls: Some(calls),
            thread: Some(thread),
        })
    }

    /// Runs `args` on the worker and waits for the outcome; a panic there resumes here (so the
    /// caller's `catch_unwind` reports it as a panic of the host function).
    fn call(&self, args: Vec<Value>) -> Result<Value, String> {
        let gone = || String::from("its worker thread is gone");
        let (reply, outcome) = flume::bounded(1);
        self.calls
            .as_ref()
            .ok_or_else(gone)?
            .send(HostCall { args, reply })
            .map_err(|_| gone())?;
        match outcome.recv() {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(gone()),
        }
    }
}

/// The host functions a vCPU thread runs: `functions` with each function registered with
/// extra syscalls replaced by a stub that hands the call to its own worker thread (with `stack`
/// bytes of stack), started here. Under [`SeccompPolicy::Disabled`], or when no function has
/// extra syscalls, `functions` itself. The workers end when the returned set is dropped.
pub(crate) fn start_host_workers(
    functions: &Arc<HostFunctions>,
    policy: &SeccompPolicy,
    stack: usize,
) -> Result<Arc<HostFunctions>, Error> {
    let SeccompPolicy::Enabled { extra, on_denied } = policy else {
        return Ok(functions.clone());
    };
    let with_syscalls: HashMap<String, Vec<i64>> = functions.extra_syscalls().clone();
    if with_syscalls.is_empty() {
        return Ok(functions.clone());
    }
    let mut started = (**functions).clone();
    for (name, own) in with_syscalls {
        let Some(f) = functions.get(&name) else {
            continue;
        };
        let all: Vec<i64> = extra.iter().chain(&own).copied().collect();
        let workers = factory(
            Some((Filter::HostFunction, *on_denied, &all)),
            "hyperlight-hfn",
            stack,
        )?;
        let worker = HostFnWorker::spawn(f.clone(), workers)?;
        let stub: DynHostFn = Arc::new(move |args| worker.call(args));
        started.replace_runner(&name, stub);
    }
    Ok(Arc::new(started))
}

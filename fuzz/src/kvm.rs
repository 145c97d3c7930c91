//! Real sandboxes for the end-to-end targets: one per guest and per process (creating a VM costs
//! milliseconds, a call microseconds), restored whenever a call poisons it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hyperlight_schema::{Value, ValueType};
use hyperlight_sys::{Error, InterruptHandle, OnDenied, Sandbox, SandboxConfig, SeccompPolicy};

use crate::model::register_host_functions;

/// How long one guest call may run before the watchdog cancels it. Every call the targets make
/// finishes in microseconds; only a guest that damaged itself (`write_addr`) could loop.
pub const CALL_LIMIT: Duration = Duration::from_secs(2);

/// A sandbox of one of the test guests with the model's host functions, and a watchdog that
/// cancels a call running longer than [`CALL_LIMIT`] (so that a looping guest ends as
/// `Error::Cancelled`, a typed error, rather than as a libFuzzer timeout).
pub struct Harness {
    sandbox: Sandbox,
    watch: Arc<Watch>,
    /// Calls made.
    pub calls: u64,
    /// Restores done.
    pub restores: u64,
}

#[derive(Default)]
struct Watch {
    /// The start of the call running now, if any.
    started: Mutex<Option<Instant>>,
    wake: Condvar,
}

impl Harness {
    /// Builds a sandbox of the guest binary `guest` (e.g. `"fuzz"`, `"simple"`), built from
    /// source by `hyperlight-testing`. Panics if it cannot: the target cannot run without KVM.
    pub fn new(guest: &str) -> Self {
        let path = hyperlight_testing::guest_path(guest);
        // AddressSanitizer's allocator maps its shadow and quarantine memory with `MAP_FIXED`
        // on whatever thread allocates, the vCPU thread included, which the default filter
        // refuses (docs/security.md); the policy's `extra` allows `mmap` with any arguments,
        // the rest of the filter as it is.
        let config = SandboxConfig {
            seccomp: SeccompPolicy::Enabled {
                extra: vec![libc::SYS_mmap],
                on_denied: OnDenied::default(),
            },
            ..SandboxConfig::default()
        };
        let sandbox = register_host_functions(Sandbox::builder(path.clone()).config(config))
            .build()
            .unwrap_or_else(|e| panic!("cannot create a sandbox of {}: {e}", path.display()));
        let watch = Arc::new(Watch::default());
        let handle = sandbox.interrupt_handle();
        let w = watch.clone();
        std::thread::Builder::new()
            .name(format!("watchdog-{guest}"))
            .spawn(move || watchdog(&w, &handle))
            .expect("spawn the watchdog");
        Self {
            sandbox,
            watch,
            calls: 0,
            restores: 0,
        }
    }

    /// Calls guest function `name`; a panic inside is a crash, any `Err` is a typed error.
    pub fn call(
        &mut self,
        name: &str,
        args: Vec<Value>,
        return_type: ValueType,
    ) -> Result<Value, Error> {
        self.calls += 1;
        *self.watch.started.lock().unwrap() = Some(Instant::now());
        self.watch.wake.notify_one();
        let result = self.sandbox.call_value(name, args, return_type);
        *self.watch.started.lock().unwrap() = None;
        result
    }

    /// Restores the sandbox if `result` poisoned it (or found it poisoned).
    pub fn recover(&mut self, result: &Result<Value, Error>) {
        if let Err(e) = result {
            if e.is_fatal() || matches!(e, Error::Poisoned { .. }) {
                self.restore();
            }
        }
    }

    /// Restores the sandbox; a failure to restore is a bug (a crash).
    pub fn restore(&mut self) {
        self.restores += 1;
        if let Err(e) = self.sandbox.restore() {
            panic!("restore failed: {e}");
        }
    }
}

/// Cancels a call that runs longer than [`CALL_LIMIT`]. Holding the lock while it cancels means
/// no new call can start meanwhile, and a call that just finished is not affected: cancelling a
/// generation that is over is a no-op.
fn watchdog(watch: &Watch, handle: &InterruptHandle) {
    let mut started = watch.started.lock().unwrap();
    loop {
        match *started {
            None => started = watch.wake.wait(started).unwrap(),
            Some(t) if t.elapsed() >= CALL_LIMIT => {
                let generation = handle.running_generation();
                if generation != 0 {
                    handle.cancel(generation);
                }
                // Wait for this call to end before looking again.
                started = watch
                    .wake
                    .wait_timeout(started, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
            Some(t) => {
                let left = CALL_LIMIT.saturating_sub(t.elapsed());
                started = watch.wake.wait_timeout(started, left).unwrap().0;
            }
        }
    }
}

//! The one error type of `hyperlight-async`.

use std::time::Duration;

/// What can go wrong building, calling or restoring an async sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime reported an error: the guest failed or faulted, a message was malformed, the
    /// hypervisor failed, and so on. [`hyperlight_sys::Error::is_fatal`] says whether the
    /// sandbox was poisoned (it is restored before its next call).
    #[error(transparent)]
    Sandbox(hyperlight_sys::Error),
    /// The call did not finish within its timeout. The vCPU was kicked out of the guest; the
    /// sandbox is restored to its post-init snapshot before its next call.
    #[error("guest call timed out after {timeout:?}")]
    Timeout {
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The call was cancelled through the sandbox's interrupt handle. The sandbox is restored
    /// before its next call.
    #[error("guest call cancelled")]
    Cancelled,
    /// A call (or restore, or snapshot) into a sandbox from within one of its own async host
    /// functions, directly or through other sandboxes (A's host function calls B, whose host
    /// function calls A): it would wait for the call that awaits it, for ever. Nothing ran; the
    /// sandbox is not poisoned. Detected for futures awaited in the host function's own task,
    /// not for ones it hands to another task (`tokio::spawn`) and waits for.
    #[error("re-entrant call into sandbox {sandbox} from its own async host function {function:?}: it would wait for itself")]
    Reentrant {
        /// The sandbox called.
        sandbox: u64,
        /// Its async host function that the calling task is awaiting.
        function: String,
    },
    /// The blocking task that creates a sandbox did not complete (it panicked, or the runtime is
    /// shutting down).
    #[error("sandbox {task} task failed")]
    Task {
        /// Which task.
        task: &'static str,
        /// Why it did not complete.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A pool had lost a sandbox (one that could not be restored after a failed call) and could
    /// not build its replacement from the pool's snapshot. The pool stays usable: the next call
    /// that finds the slot empty tries again.
    #[error("the pool could not rebuild a lost sandbox")]
    PoolRebuild {
        /// Why the new sandbox could not be built.
        #[source]
        source: Box<Error>,
    },
    /// The pool's semaphore was closed. `SandboxPool` never closes it, so this is a bug.
    #[error("the sandbox pool is closed")]
    PoolClosed,
}

impl From<hyperlight_sys::Error> for Error {
    fn from(error: hyperlight_sys::Error) -> Self {
        match error {
            hyperlight_sys::Error::Cancelled => Error::Cancelled,
            other => Error::Sandbox(other),
        }
    }
}

impl Error {
    /// Whether the sandbox is restored before its next call because of this error.
    pub fn poisons(&self) -> bool {
        match self {
            // The vCPU thread poisoned the sandbox without a call seeing why (host code panicked
            // on it after the call was answered): restore, as after a fatal error.
            Error::Sandbox(hyperlight_sys::Error::Poisoned { .. }) => true,
            Error::Sandbox(e) => e.is_fatal(),
            Error::Timeout { .. } | Error::Cancelled => true,
            Error::Task { .. }
            | Error::PoolRebuild { .. }
            | Error::PoolClosed
            | Error::Reentrant { .. } => false,
        }
    }

    /// A short, fixed name of what went wrong (`timeout`, `guest_panic`, ...): the `kind` label
    /// of the `hyperlight_call_errors_total` metric. Never guest-controlled text; the names
    /// are listed in `docs/debugging.md`.
    pub fn kind(&self) -> &'static str {
        use hyperlight_sys::Error as E;
        match self {
            Error::Timeout { .. } => "timeout",
            Error::Cancelled => "cancelled",
            Error::Reentrant { .. } => "reentrant",
            Error::Task { .. } => "task",
            Error::PoolRebuild { .. } => "pool_rebuild",
            Error::PoolClosed => "pool_closed",
            Error::Sandbox(e) => match e {
                E::GuestCall { .. } => "guest_error",
                E::GuestPanic { .. } => "guest_panic",
                E::GuestOutOfMemory { .. } => "guest_out_of_memory",
                E::DivideByZero { .. }
                | E::StackOverflow { .. }
                | E::MemoryViolation { .. }
                | E::CpuException { .. }
                | E::SyscallInstruction => "guest_fault",
                E::ReturnTypeMismatch { .. } => "return_type_mismatch",
                E::MessageTooLarge { .. } => "message_too_large",
                E::Protocol { .. } | E::Malformed { .. } | E::OutOfBounds { .. } => "protocol",
                E::UnexpectedExit { .. } | E::UnfinishableExit => "unexpected_exit",
                E::InitTimeout { .. } => "init_timeout",
                E::Cancelled => "cancelled",
                E::Poisoned { .. } => "poisoned",
                E::ThreadGone => "thread_gone",
                E::HostPanic { .. } => "host_panic",
                E::InvalidConfig { .. } => "invalid_config",
                E::GuestFile { .. } | E::Elf { .. } => "guest_image",
                _ => "runtime",
            },
        }
    }
}

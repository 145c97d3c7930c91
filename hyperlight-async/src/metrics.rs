//! The metrics this crate records through the [`metrics`] facade, and the helpers that record
//! them: every name is here, so that `docs/debugging.md` and a dashboard can rely on them.
//!
//! Nothing is recorded anywhere unless the application installs a recorder (for example
//! `metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()`); without one
//! each helper costs a load of the global recorder and a no-op call. Names are static strings
//! and the successful call path has no labels, so recording allocates nothing per call. Labels
//! are fixed sets of names chosen here (never guest-controlled text). Everything is recorded on
//! the caller's task, never on the vCPU thread. Durations are in seconds.
//!
//! Calls counted here are calls on a [`crate::Sandbox`]; a [`crate::SandboxPool`] call runs
//! one on a pooled sandbox, so it is counted too.

use std::time::Instant;

use crate::error::Error;

/// Counter: guest calls that returned a result, success or error.
pub const CALLS: &str = "hyperlight_calls_total";
/// Counter: guest calls that returned an error, by `kind` ([`Error::kind`]).
pub const CALL_ERRORS: &str = "hyperlight_call_errors_total";
/// Counter: guest calls that failed with [`Error::Timeout`] (also in [`CALL_ERRORS`]).
pub const CALL_TIMEOUTS: &str = "hyperlight_call_timeouts_total";
/// Counter: guest calls cancelled, by `reason`: `interrupt` (through the interrupt handle:
/// [`Error::Cancelled`], also in [`CALL_ERRORS`]) or `dropped` (the call's future was dropped
/// after its first poll, queued or running; it returned nothing, so it is not in [`CALLS`]).
pub const CALL_CANCELLATIONS: &str = "hyperlight_call_cancellations_total";
/// Histogram, seconds: from a call's first poll to its result (queueing behind other calls on
/// the same sandbox included).
pub const CALL_DURATION: &str = "hyperlight_call_duration_seconds";
/// Counter: restores, by `reason`: `requested` ([`crate::Sandbox::restore`],
/// [`crate::Sandbox::restore_to`], and a pool's restore after a failed call), `poisoned` (before
/// a call, after a fatal error, timeout or cancellation) or `fresh_per_call` (after every call
/// of a [`crate::SandboxBuilder::fresh_per_call`] sandbox, on its vCPU thread), and `outcome`
/// (`ok` or `error`; a `fresh_per_call` restore is counted as `ok`: its failure surfaces as the
/// next call's error).
pub const RESTORES: &str = "hyperlight_restores_total";
/// Histogram, seconds: restores that the caller waited for (`requested` and `poisoned`).
pub const RESTORE_DURATION: &str = "hyperlight_restore_duration_seconds";
/// Counter: sandboxes built ([`crate::SandboxBuilder::build`] succeeded).
pub const SANDBOXES_CREATED: &str = "hyperlight_sandboxes_created_total";
/// Counter: sandbox builds that failed.
pub const SANDBOX_BUILD_ERRORS: &str = "hyperlight_sandbox_build_errors_total";
/// Gauge: sandboxes alive now (built and not yet dropped).
pub const SANDBOXES_LIVE: &str = "hyperlight_sandboxes_live";
/// Histogram, seconds: how long a successful build took.
pub const SANDBOX_CREATION_DURATION: &str = "hyperlight_sandbox_creation_duration_seconds";
/// Gauge: pooled sandboxes waiting for a call, summed over the process's pools.
pub const POOL_IDLE: &str = "hyperlight_pool_idle";
/// Gauge: pooled sandboxes running a call, summed over the process's pools.
pub const POOL_BUSY: &str = "hyperlight_pool_busy";
/// Gauge: pool callers waiting for a sandbox, summed over the process's pools.
pub const POOL_WAITING: &str = "hyperlight_pool_waiting";
/// Counter: pooled sandboxes rebuilt because one could not be restored.
pub const POOL_REPLACED: &str = "hyperlight_pool_replaced_total";
/// Counter: pool calls that timed out while waiting for a sandbox (one that times out in its
/// sandbox's call is a call timeout, [`CALL_TIMEOUTS`]).
pub const POOL_TIMEOUTS: &str = "hyperlight_pool_timeouts_total";

/// Registers the unit and a one-line description of every metric above with the installed
/// recorder (an exporter shows them, e.g. as Prometheus `# HELP` lines). Call it once, after
/// installing the recorder; recording works without it.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(CALLS, "guest calls that returned a result");
    describe_counter!(CALL_ERRORS, "guest calls that returned an error, by kind");
    describe_counter!(CALL_TIMEOUTS, "guest calls that timed out");
    describe_counter!(CALL_CANCELLATIONS, "guest calls cancelled, by reason");
    describe_histogram!(CALL_DURATION, Unit::Seconds, "guest call time");
    describe_counter!(RESTORES, "sandbox restores, by reason and outcome");
    describe_histogram!(RESTORE_DURATION, Unit::Seconds, "restore time");
    describe_counter!(SANDBOXES_CREATED, "sandboxes built");
    describe_counter!(SANDBOX_BUILD_ERRORS, "sandbox builds that failed");
    describe_gauge!(SANDBOXES_LIVE, "sandboxes alive");
    describe_histogram!(
        SANDBOX_CREATION_DURATION,
        Unit::Seconds,
        "sandbox build time"
    );
    describe_gauge!(POOL_IDLE, "pooled sandboxes idle");
    describe_gauge!(POOL_BUSY, "pooled sandboxes running a call");
    describe_gauge!(POOL_WAITING, "callers waiting for a pooled sandbox");
    describe_counter!(POOL_REPLACED, "pooled sandboxes rebuilt");
    describe_counter!(
        POOL_TIMEOUTS,
        "pool calls that timed out waiting for a sandbox"
    );
}

/// Records one guest call: started by [`CallRecord::start`], finished by
/// [`CallRecord::finish`]; dropped unfinished, it counts a `dropped` cancellation.
pub(crate) struct CallRecord {
    start: Instant,
    finished: bool,
}

impl CallRecord {
    pub(crate) fn start() -> Self {
        CallRecord {
            start: Instant::now(),
            finished: false,
        }
    }

    /// Records the call's result; returns its duration.
    pub(crate) fn finish<T>(mut self, result: &Result<T, Error>) -> std::time::Duration {
        self.finished = true;
        let elapsed = self.start.elapsed();
        metrics::counter!(CALLS).increment(1);
        metrics::histogram!(CALL_DURATION).record(elapsed.as_secs_f64());
        if let Err(error) = result {
            metrics::counter!(CALL_ERRORS, "kind" => error.kind()).increment(1);
            match error {
                Error::Timeout { .. } => metrics::counter!(CALL_TIMEOUTS).increment(1),
                Error::Cancelled => {
                    metrics::counter!(CALL_CANCELLATIONS, "reason" => "interrupt").increment(1)
                }
                _ => {}
            }
        }
        elapsed
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            metrics::counter!(CALL_CANCELLATIONS, "reason" => "dropped").increment(1);
        }
    }
}

/// Why a restore ran: the `reason` label of [`RESTORES`].
#[derive(Clone, Copy)]
pub(crate) enum RestoreReason {
    Requested,
    Poisoned,
}

/// Records a restore the caller waited for.
pub(crate) fn restored<T>(reason: RestoreReason, start: Instant, result: &Result<T, Error>) {
    let reason = match reason {
        RestoreReason::Requested => "requested",
        RestoreReason::Poisoned => "poisoned",
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(RESTORES, "reason" => reason, "outcome" => outcome).increment(1);
    metrics::histogram!(RESTORE_DURATION).record(start.elapsed().as_secs_f64());
}

/// Records the restore the vCPU thread makes after a `fresh_per_call` sandbox's call.
pub(crate) fn restored_after_call() {
    metrics::counter!(RESTORES, "reason" => "fresh_per_call", "outcome" => "ok").increment(1);
}

/// Records a build: a live sandbox more on success.
pub(crate) fn built<T>(start: Instant, result: &Result<T, Error>) {
    if result.is_ok() {
        metrics::counter!(SANDBOXES_CREATED).increment(1);
        metrics::gauge!(SANDBOXES_LIVE).increment(1.0);
        metrics::histogram!(SANDBOX_CREATION_DURATION).record(start.elapsed().as_secs_f64());
    } else {
        metrics::counter!(SANDBOX_BUILD_ERRORS).increment(1);
    }
}

/// Records that a built sandbox was dropped.
pub(crate) fn sandbox_dropped() {
    metrics::gauge!(SANDBOXES_LIVE).decrement(1.0);
}

/// Adds `n` (negative to remove) to the idle pooled sandboxes.
pub(crate) fn pool_idle(n: f64) {
    metrics::gauge!(POOL_IDLE).increment(n);
}

/// Adds `n` (negative to remove) to the busy pooled sandboxes.
pub(crate) fn pool_busy(n: f64) {
    metrics::gauge!(POOL_BUSY).increment(n);
}

/// Adds `n` (negative to remove) to the callers waiting for a pooled sandbox.
pub(crate) fn pool_waiting(n: f64) {
    metrics::gauge!(POOL_WAITING).increment(n);
}

/// Records a pooled sandbox rebuilt.
pub(crate) fn pool_replaced() {
    metrics::counter!(POOL_REPLACED).increment(1);
}

/// Records a pool call that timed out at the pool.
pub(crate) fn pool_timeout() {
    metrics::counter!(POOL_TIMEOUTS).increment(1);
}

//! Kicking a vCPU out of the guest from any thread.
//!
//! The kicker records which call generation it cancels, then signals the vCPU thread. The signal
//! handler (on the vCPU thread) sets the vCPU's `immediate_exit` flag, so a kick that lands just
//! before `KVM_RUN` still stops it; a kick that lands inside `KVM_RUN` interrupts it with `EINTR`.
//! After every interruption the vCPU thread compares the cancelled generation with the call it
//! runs: a kick meant for an earlier call is ignored and the guest resumes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::Error;

thread_local! {
    /// The running vCPU's `immediate_exit` flag, or null when this thread runs no vCPU.
    static IMMEDIATE_EXIT: Cell<*const AtomicU8> = const { Cell::new(std::ptr::null()) };
}

/// The kick signal of the process once its handler is installed: the offset from `SIGRTMIN`
/// it was asked for, and the signal number.
static INSTALLED: OnceLock<(u8, libc::c_int)> = OnceLock::new();

/// The signal used to kick vCPU threads: `SIGRTMIN +`
/// [`SandboxConfig::kick_signal_offset`](crate::SandboxConfig::kick_signal_offset) of the first
/// sandbox of the process (`SIGRTMIN` until one was built).
pub fn kick_signal() -> libc::c_int {
    INSTALLED
        .get()
        .map_or_else(|| libc::SIGRTMIN(), |&(_, signal)| signal)
}

/// The signal `SIGRTMIN + offset`, if it is a real-time signal (at most `SIGRTMAX`).
pub(crate) fn signal_at(offset: u8) -> Result<libc::c_int, Error> {
    let signal = libc::SIGRTMIN() + libc::c_int::from(offset);
    if signal > libc::SIGRTMAX() {
        return Err(Error::InvalidConfig {
            field: "kick_signal_offset",
            value: offset.into(),
            reason: "SIGRTMIN + offset is above SIGRTMAX",
        });
    }
    Ok(signal)
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Async-signal-safe: a const-initialized thread local without destructor, and an atomic store.
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: the pointer is set by `ArmedVcpu` only while the vCPU (and so the flag) lives on
        // this thread, and cleared before the vCPU is dropped.
        unsafe { (*flag).store(1, Ordering::SeqCst) };
    }
}

/// Makes `SIGRTMIN + offset` the kick signal of the process and installs its handler, once per
/// process: called by every sandbox build, on the building thread, before any vCPU thread or
/// seccomp filter of the sandbox exists (so no filtered thread ever needs to install a
/// handler). Returns the signal.
///
/// Fails with [`Error::KickSignalMismatch`] if the process already kicks with another signal,
/// and with [`Error::KickSignalInUse`] if the signal has a disposition other than `SIG_DFL`
/// that is not ours (an application's handler, or `SIG_IGN`): that disposition is left as it
/// was. (An application installing a handler for the same signal at the same moment, from
/// another thread, can still lose that race.)
pub(crate) fn install_handler(offset: u8) -> Result<libc::c_int, Error> {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(installed, signal)) = INSTALLED.get() {
        return if installed == offset {
            Ok(signal)
        } else {
            Err(Error::KickSignalMismatch {
                installed,
                requested: offset,
            })
        };
    }
    let signal = signal_at(offset)?;
    let failed = |op| Error::os(op, std::io::Error::last_os_error());
    // SAFETY: sigaction with a null new action only reads the current one into `current`, a
    // zeroed (valid) sigaction.
    let current = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
            return Err(failed("sigaction (read the kick signal's disposition)"));
        }
        current
    };
    if current.sa_sigaction != libc::SIG_DFL {
        return Err(Error::KickSignalInUse { signal, offset });
    }
    // SAFETY: a zeroed sigaction is a valid starting value; we set a handler with the
    // SA_SIGINFO signature and no SA_RESTART, so blocking ioctls return EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_kick as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(failed("sigaction (install the kick signal handler)"));
        }
    }
    // Only set here, under the lock, after the check above found it unset.
    let _ = INSTALLED.set((offset, signal));
    Ok(signal)
}

/// Registers the current thread's vCPU flag with the signal handler for as long as it lives.
pub(crate) struct ArmedVcpu;

impl ArmedVcpu {
    /// Points the handler at `flag` and unblocks the kick signal on this thread (a thread
    /// inherits the signal mask of the thread that created it, which may block it); the caller
    /// keeps the vCPU alive until this guard drops. The handler was installed when the sandbox
    /// was built ([`install_handler`]).
    pub(crate) fn arm(flag: &AtomicU8) -> Self {
        // SAFETY: a sigset_t initialized by sigemptyset and filled by sigaddset; pthread_sigmask
        // changes only the calling thread's mask. Both fail only for an invalid signal number,
        // and the kick signal is a valid real-time signal (`signal_at`).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, kick_signal());
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        IMMEDIATE_EXIT.with(|c| c.set(flag));
        ArmedVcpu
    }
}

impl Drop for ArmedVcpu {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null()));
    }
}

/// State shared between a vCPU thread and its interrupt handles.
///
/// A cancel of the call that runs is recorded in `stop`, which is only ever set to the running
/// generation: a cancel aimed at any other generation cannot hide it (nor can a later kill
/// record nothing). A cancel of a call handed out but not started yet waits in `queued` until
/// the call starts.
#[derive(Debug, Default)]
pub(crate) struct KickState {
    /// The last generation handed out; every call and init gets a new one.
    last: AtomicU64,
    /// Generation of the call the vCPU thread is executing, 0 when idle.
    running: AtomicU64,
    /// The running call's generation once it has been cancelled.
    stop: AtomicU64,
    /// The calls that started, and the cancels of calls handed out but not started yet.
    starts: Mutex<Starts>,
    /// The vCPU thread while it lives.
    thread: Mutex<Option<libc::pthread_t>>,
}

/// What [`KickState::cancel`] and [`KickState::begin`] decide under one lock, so that a cancel
/// of a call that is just starting is seen by one of them.
#[derive(Debug, Default)]
struct Starts {
    /// The highest generation started (every generation below it is over or never ran).
    started: u64,
    /// Generations above `started`, handed out, whose cancel came before they started: at most
    /// one entry per generation handed out and not started.
    queued: Vec<u64>,
}

impl KickState {
    /// Called by the vCPU thread when it starts: kicks may signal it from now on.
    pub(crate) fn thread_started(&self) {
        // SAFETY: pthread_self has no preconditions.
        *self.lock() = Some(unsafe { libc::pthread_self() });
    }

    /// Called by the vCPU thread before it exits: no signal reaches it after this returns.
    pub(crate) fn thread_exiting(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<libc::pthread_t>> {
        self.thread.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn starts(&self) -> std::sync::MutexGuard<'_, Starts> {
        self.starts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new generation, greater than every earlier one (never 0).
    pub(crate) fn next_generation(&self) -> u64 {
        self.last.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The vCPU thread starts running `generation` (handed out by
    /// [`KickState::next_generation`], greater than every generation started before).
    pub(crate) fn begin(&self, generation: u64) {
        let mut starts = self.starts();
        self.running.store(generation, Ordering::SeqCst);
        starts.started = generation;
        if starts.queued.contains(&generation) {
            self.stop.store(generation, Ordering::SeqCst);
        }
        starts.queued.retain(|&g| g > generation);
    }

    /// The vCPU thread is idle again.
    pub(crate) fn end(&self) {
        self.running.store(0, Ordering::SeqCst);
    }

    /// Whether the call of `generation` has been cancelled.
    pub(crate) fn is_cancelled(&self, generation: u64) -> bool {
        self.stop.load(Ordering::SeqCst) == generation
    }

    fn cancel(&self, generation: u64, wake: &dyn Fn()) {
        if generation == 0 || generation > self.last.load(Ordering::SeqCst) {
            // Never handed out: nothing to cancel.
            return;
        }
        {
            let mut starts = self.starts();
            if generation > starts.started {
                // Handed out, not started: `begin` sees it.
                if !starts.queued.contains(&generation) {
                    starts.queued.push(generation);
                }
                return;
            }
            if self.running.load(Ordering::SeqCst) != generation {
                // Over.
                return;
            }
            self.stop.store(generation, Ordering::SeqCst);
        }
        self.nudge();
        // The vCPU thread may be waiting for a host-call reply instead of running the guest.
        wake();
    }

    /// Signals the vCPU thread, if it lives, without cancelling anything: a `KVM_RUN` it is in
    /// (or enters next) returns, and the thread looks at what changed (a cancel, a polling
    /// window that ended) before it runs the guest again.
    pub(crate) fn nudge(&self) {
        if let Some(thread) = *self.lock() {
            // SAFETY: the thread is alive: it clears this slot under the same lock before it
            // exits, and we hold the lock while signalling.
            unsafe { libc::pthread_kill(thread, kick_signal()) };
        }
    }
}

/// Kicks a sandbox's vCPU out of the guest from any thread. `Send + Sync`, cheap to clone.
///
/// [`InterruptHandle::kill`] stops whatever call runs at that moment; [`InterruptHandle::cancel`]
/// stops only the call of one generation, so a kill meant for one call never stops a later one.
#[derive(Clone)]
pub struct InterruptHandle {
    pub(crate) state: Arc<KickState>,
    pub(crate) wake: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for InterruptHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterruptHandle")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl InterruptHandle {
    /// Stops the call running now, if any; returns its generation (0 if the vCPU was idle).
    /// The call returns [`Error::Cancelled`](crate::Error::Cancelled) and the sandbox must be
    /// restored before the next call.
    pub fn kill(&self) -> u64 {
        let generation = self.state.running.load(Ordering::SeqCst);
        self.cancel(generation);
        generation
    }

    /// Stops the call of `generation` if it is queued or running; a no-op once it is over.
    pub fn cancel(&self, generation: u64) {
        self.state.cancel(generation, &*self.wake);
    }

    /// Generation of the call running now, 0 when idle.
    pub fn running_generation(&self) -> u64 {
        self.state.running.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancel(state: &KickState, generation: u64) {
        state.cancel(generation, &|| {});
    }

    #[test]
    fn a_cancel_before_the_start_stops_the_call_when_it_starts() {
        let state = KickState::default();
        let first = state.next_generation();
        let second = state.next_generation();
        cancel(&state, second);
        state.begin(first);
        assert!(
            !state.is_cancelled(first),
            "the cancel was for the next call"
        );
        state.end();
        state.begin(second);
        assert!(state.is_cancelled(second));
        state.end();
        // Nothing stays queued once the call started.
        assert!(state.starts().queued.is_empty());
    }

    #[test]
    fn cancels_of_other_generations_never_hide_the_running_calls() {
        let state = KickState::default();
        let over = state.next_generation();
        state.begin(over);
        state.end();
        let running = state.next_generation();
        let queued = state.next_generation();
        state.begin(running);
        for other in [over, queued, queued + 1, u64::MAX, 0] {
            cancel(&state, other);
            assert!(!state.is_cancelled(running));
        }
        cancel(&state, running);
        for other in [over, queued, u64::MAX] {
            cancel(&state, other);
            assert!(state.is_cancelled(running));
        }
        // Never-handed-out generations queue nothing; the handed-out one is queued once.
        assert_eq!(state.starts().queued, vec![queued]);
    }
}

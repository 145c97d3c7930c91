//! The doorbell watchdog: one process-wide thread that enforces every polling window.
//!
//! A guest polls its doorbell only while the host lets it: when a sandbox's window ends, the
//! watchdog closes it (the guest sees that and parks) and kicks a guest that has not parked
//! [`GRACE`](crate::vcpu::doorbell::GRACE) later, so that an idle sandbox never burns a CPU on
//! its own. It sleeps until the earliest deadline of all sandboxes; a caller that sets an
//! earlier one wakes it. It is started by the first sandbox build, on the building thread (no
//! seccomp filter), and does nothing but read atomics, take doorbell locks and send the kick
//! signal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::error::Error;
use crate::vcpu::doorbell::{now_ns, Doorbell};

/// How long the watchdog sleeps with no deadline set, before it drops the doorbells of
/// sandboxes that are gone.
const IDLE: Duration = Duration::from_secs(1);

struct Watchdog {
    bells: Mutex<Vec<Weak<Doorbell>>>,
    /// When the watchdog wakes next (ns, [`now_ns`]).
    wake_at: AtomicU64,
    /// The watchdog thread, once started.
    thread: OnceLock<std::thread::Thread>,
}

static WATCHDOG: Watchdog = Watchdog {
    bells: Mutex::new(Vec::new()),
    wake_at: AtomicU64::new(u64::MAX),
    thread: OnceLock::new(),
};

/// Puts `bell` under the watchdog, starting the watchdog thread if it is the first.
pub(crate) fn watch(bell: &Arc<Doorbell>) -> Result<(), Error> {
    static STARTING: Mutex<()> = Mutex::new(());
    {
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        if WATCHDOG.thread.get().is_none() {
            let thread = std::thread::Builder::new()
                .name("hyperlight-watchdog".into())
                .spawn(|| run(&WATCHDOG))
                .map_err(|e| Error::os("spawn the doorbell watchdog thread", e))?;
            let _ = WATCHDOG.thread.set(thread.thread().clone());
        }
    }
    WATCHDOG
        .bells
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(bell));
    Ok(())
}

/// A doorbell's deadline was set to `deadline`: wakes the watchdog if it would sleep past it.
pub(crate) fn armed(deadline: u64) {
    if deadline < WATCHDOG.wake_at.load(Ordering::SeqCst) {
        if let Some(thread) = WATCHDOG.thread.get() {
            thread.unpark();
        }
    }
}

/// The earliest time any doorbell wants to be looked at again, after enforcing every deadline
/// that has passed; drops the doorbells of sandboxes that are gone.
fn scan(watchdog: &Watchdog) -> u64 {
    let now = now_ns();
    let mut bells = watchdog.bells.lock().unwrap_or_else(|e| e.into_inner());
    let mut next = u64::MAX;
    bells.retain(|weak| match weak.upgrade() {
        Some(bell) => {
            if let Some(at) = bell.watch(now) {
                next = next.min(at);
            }
            true
        }
        None => false,
    });
    next
}

fn run(watchdog: &Watchdog) {
    loop {
        let next = scan(watchdog);
        // Publish the wake-up time, then look once more: a deadline set before the store is
        // seen by the second scan, one set after it sees the store (and unparks if earlier).
        watchdog.wake_at.store(next, Ordering::SeqCst);
        let next = next.min(scan(watchdog));
        watchdog.wake_at.store(next, Ordering::SeqCst);
        let now = now_ns();
        if next > now {
            std::thread::park_timeout(Duration::from_nanos(next - now).min(IDLE));
        }
    }
}

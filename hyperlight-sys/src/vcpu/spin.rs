//! Adaptive polling before parking a thread or task.
//!
//! Waking a parked thread costs tens of microseconds on virtualized hosts, more than a guest
//! call, so a waiter that expects its answer soon should poll first. Polling only pays when the
//! answer comes within the window, and it takes a CPU from the vCPU threads that do the work, so
//! a [`Spinner`] polls only while polling has been paying off for it (it stops after repeated
//! misses and probes again every so often), and only while fewer waiters than CPUs poll in the
//! whole process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flume::{Receiver, RecvError, TryRecvError};

/// Waiters polling right now, process-wide.
static POLLING: AtomicUsize = AtomicUsize::new(0);

fn max_polling() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Misses in a row after which a spinner stops polling.
const MAX_SCORE: u8 = 3;
/// A spinner that stopped polling tries again once every this many waits.
const PROBE_EVERY: u8 = 32;

/// One waiter's polling policy. Keep one per channel end and reuse it for every wait.
#[derive(Debug, Clone)]
pub struct Spinner {
    window: Duration,
    score: u8,
    skipped: u8,
}

/// Permission to poll until a deadline; releases the process-wide slot when dropped.
#[derive(Debug)]
pub struct Polling {
    deadline: Instant,
}

impl Polling {
    /// Whether the window is over.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Spinner {
    /// A spinner that polls for at most `window` per wait (zero: never).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            score: MAX_SCORE,
            skipped: 0,
        }
    }

    /// Whether this wait should poll first, and for how long.
    pub fn begin(&mut self) -> Option<Polling> {
        self.begin_if(false)
    }

    /// As [`Spinner::begin`], but `expected` says the answer is known to come soon (a guest
    /// that answers in memory: not polling would cost it an exit): then the record of misses
    /// does not stop the poll. The process-wide bound still does.
    pub fn begin_if(&mut self, expected: bool) -> Option<Polling> {
        if self.window.is_zero() {
            return None;
        }
        if self.score == 0 && !expected {
            self.skipped += 1;
            if self.skipped < PROBE_EVERY {
                return None;
            }
            self.skipped = 0;
        }
        if POLLING.fetch_add(1, Ordering::Relaxed) >= max_polling() {
            POLLING.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Polling {
            deadline: Instant::now() + self.window,
        })
    }

    /// Records whether the poll found the answer in time.
    pub fn end(&mut self, polling: Polling, hit: bool) {
        drop(polling);
        self.score = if hit {
            MAX_SCORE
        } else {
            self.score.saturating_sub(1)
        };
    }

    /// Receives from `rx`, polling first when the policy says so.
    pub fn recv<T>(&mut self, rx: &Receiver<T>) -> Result<T, RecvError> {
        if let Some(polling) = self.begin() {
            loop {
                match rx.try_recv() {
                    Ok(value) => {
                        self.end(polling, true);
                        return Ok(value);
                    }
                    Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                    Err(TryRecvError::Empty) if !polling.expired() => std::hint::spin_loop(),
                    Err(TryRecvError::Empty) => {
                        self.end(polling, false);
                        break;
                    }
                }
            }
        }
        rx.recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_polling_after_misses_and_probes_again() {
        let mut spinner = Spinner::new(Duration::from_micros(1));
        for _ in 0..MAX_SCORE {
            let p = spinner.begin().expect("polls while it has not missed");
            spinner.end(p, false);
        }
        for _ in 1..PROBE_EVERY {
            assert!(spinner.begin().is_none(), "stopped after misses");
        }
        let probe = spinner.begin().expect("probes again");
        spinner.end(probe, true);
        assert!(spinner.begin().is_some(), "a hit restores polling");
    }

    #[test]
    fn zero_window_never_polls() {
        assert!(Spinner::new(Duration::ZERO).begin().is_none());
    }
}

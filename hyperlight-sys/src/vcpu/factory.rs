//! Thread factories: threads started by one long-lived spawner thread, so that they inherit
//! whatever the spawner set up once (its seccomp filter), with one thread always started ahead
//! so that taking one costs a channel hand-over rather than a thread start.
//!
//! A seccomp filter attached to a thread is inherited by the threads it creates, sharing one
//! kernel copy of the program. Attaching a filter to every vCPU thread instead costs ~115 µs of
//! kernel time per thread (the kernel checks and JIT-compiles the program on every attach) and
//! keeps one JIT'd program per live thread: thousands of them for thousands of sandboxes, and
//! freeing thousands at once (a process with thousands of sandboxes killed) once deadlocked this
//! project's PVM host in `bpf_prog_pack_free` (docs/security.md).
//!
//! Every thread of a factory runs one job and exits when it returns. The spawner keeps one
//! started thread waiting; when a caller takes it, the spawner starts the next.

use std::thread::JoinHandle;

use flume::{Receiver, Sender};

use crate::error::Error;

/// What a factory thread runs: once, then it exits.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A started thread waiting for its job.
struct Idle {
    job: Sender<Job>,
    handle: JoinHandle<()>,
}

/// Starts threads of one name and stack size that inherit what their spawner set up.
pub(crate) struct ThreadFactory {
    /// Started threads (or why the spawner could not start one), one at a time.
    stock: Receiver<Result<Idle, std::io::Error>>,
}

/// How long the spawner waits before trying again after the OS refused it a thread.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

impl ThreadFactory {
    /// Starts the spawner thread, which runs `setup` (e.g. installs a seccomp filter) on itself
    /// first; returns once `setup` succeeded, or its error. The spawner lives as long as the
    /// factory; `name` and `stack` are its threads' name and stack size.
    pub(crate) fn start(
        name: &'static str,
        stack: usize,
        setup: impl FnOnce() -> Result<(), Error> + Send + 'static,
    ) -> Result<Self, Error> {
        let (stock_tx, stock) = flume::bounded(0);
        let (ready_tx, ready) = flume::bounded(1);
        std::thread::Builder::new()
            .name(format!("{name}-spawner"))
            .spawn(move || {
                let set_up = setup();
                let ok = set_up.is_ok();
                let _ = ready_tx.send(set_up);
                if ok {
                    spawn_loop(name, stack, &stock_tx);
                }
            })
            .map_err(|source| Error::os("spawn thread-factory spawner", source))?;
        match ready.recv() {
            Ok(set_up) => set_up.map(|()| Self { stock }),
            Err(_) => Err(Error::os(
                "start thread-factory spawner",
                std::io::Error::other("the spawner thread died during set-up"),
            )),
        }
    }

    /// Runs `job` on a new thread of this factory and returns its handle; the thread exits when
    /// the job returns. Waits only if the factory's waiting thread was just taken by another
    /// caller (for the spawner to start the next, tens of microseconds).
    pub(crate) fn run(&self, mut job: Job) -> Result<JoinHandle<()>, Error> {
        loop {
            let idle = self.stock.recv().map_err(|_| {
                Error::os(
                    "take a thread from a thread factory",
                    std::io::Error::other("the factory's spawner thread is gone"),
                )
            })?;
            let idle = idle.map_err(|source| Error::os("spawn sandbox thread", source))?;
            match idle.job.send(job) {
                Ok(()) => return Ok(idle.handle),
                // The waiting thread is gone before its job (not expected): take the next.
                Err(flume::SendError(back)) => job = back,
            }
        }
    }

    /// Runs `job` on a new thread of this factory and waits for its result: for work the
    /// calling thread's seccomp filter does not allow, given to a factory with a wider one.
    pub(crate) fn run_and_wait<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (done, result) = flume::bounded(1);
        let thread = self.run(Box::new(move || {
            let _ = done.send(crate::vcpu::contain::run(job));
        }))?;
        let result = result.recv();
        // The job's panic, if any, was caught on its thread: joining cannot bring one here.
        let _ = thread.join();
        match result {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(Error::os(
                "a job on a helper thread",
                std::io::Error::other(format!("it panicked: {panic}")),
            )),
            Err(_) => Err(Error::os(
                "a job on a helper thread",
                std::io::Error::other("the thread ended without an answer"),
            )),
        }
    }
}

/// The spawner's loop: keeps one started thread on offer until nobody holds the factory.
fn spawn_loop(name: &'static str, stack: usize, stock: &Sender<Result<Idle, std::io::Error>>) {
    loop {
        let (job_tx, job_rx) = flume::bounded::<Job>(1);
        let started = std::thread::Builder::new()
            .name(name.into())
            .stack_size(stack)
            .spawn(move || {
                if let Ok(job) = job_rx.recv() {
                    job();
                }
            });
        let offer = started.map(|handle| Idle {
            job: job_tx,
            handle,
        });
        let refused = offer.is_err();
        if stock.send(offer).is_err() {
            return;
        }
        if refused {
            // Thread or memory limits: the caller got the error; do not spin on it.
            std::thread::sleep(RETRY_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_runs_once_on_a_fresh_thread_after_the_spawners_setup() {
        let (setup_tx, setup_rx) = flume::bounded(1);
        let factory = ThreadFactory::start("hl-test", 64 << 10, move || {
            setup_tx.send(std::thread::current().id()).unwrap();
            Ok(())
        })
        .unwrap();
        let spawner = setup_rx.recv().unwrap();
        assert_ne!(
            spawner,
            std::thread::current().id(),
            "setup runs on the spawner"
        );
        let (tx, rx) = flume::unbounded();
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let tx = tx.clone();
                let job = move || {
                    let me = std::thread::current();
                    tx.send((i, me.id(), me.name().map(String::from))).unwrap();
                };
                factory.run(Box::new(job)).unwrap()
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let ran: Vec<_> = rx.try_iter().collect();
        assert_eq!(ran.len(), 3);
        let mut ids: Vec<_> = ran.iter().map(|r| r.1).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 3, "one thread per job");
        assert!(ran
            .iter()
            .all(|r| r.1 != spawner && r.2.as_deref() == Some("hl-test")));
    }

    #[test]
    fn run_and_wait_returns_the_jobs_result_from_another_thread() {
        let factory = ThreadFactory::start("hl-test-wait", 64 << 10, || Ok(())).unwrap();
        let me = std::thread::current().id();
        let ran_on = factory
            .run_and_wait(|| Ok(std::thread::current().id()))
            .unwrap();
        assert_ne!(ran_on, me);
        let failed = factory.run_and_wait(|| Err::<(), _>(Error::ThreadGone));
        assert!(matches!(failed, Err(Error::ThreadGone)));
        let panicked = factory.run_and_wait(|| -> Result<(), Error> { panic!("job bug") });
        assert!(matches!(panicked, Err(Error::Os { .. })));
    }

    #[test]
    fn a_failed_setup_is_the_callers_error() {
        let failed = ThreadFactory::start("hl-test-fail", 64 << 10, || Err(Error::ThreadGone));
        assert!(matches!(failed, Err(Error::ThreadGone)));
    }
}

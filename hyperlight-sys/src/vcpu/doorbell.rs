//! The doorbell: calls to a hot sandbox without a VM exit.
//!
//! After it answers a call, a guest may poll a state word in its doorbell page
//! ([`hyperlight_schema::abi::DOORBELL`]) for a short window instead of parking in an `out`. A
//! call that finds it polling is posted through shared memory by the caller's own thread, and
//! its answer collected from memory by that thread, while the vCPU thread stays in `KVM_RUN`:
//! no exit at all. Everything else (host calls, logs, faults, kicks) still exits as always and
//! is served by the vCPU thread, which tells calls apart by the one in flight here.
//!
//! The handshake is one state word, changed by compare-and-swap on both sides, so that a host
//! posting a call and a window closing can never both win (`docs/abi.md` has the diagram):
//!
//! - `PARKED`: the guest is (or must get) out of the loop; calls enter it with `KVM_RUN`.
//! - `POLLING -> POSTED` (host posts) or `POLLING -> PARKED` (the window closes).
//! - `POSTED -> BUSY` (the guest takes the call), `BUSY -> ANSWERED` (it answers in memory).
//! - `ANSWERED -> POLLING | PARKED` (the host copied the answer and opens or closes a window).
//! - `| UNWATCHED` on `POSTED` or `BUSY` (the host stopped watching): the guest answers with an
//!   exit instead.
//!
//! What a hostile guest can do with the word, it can do to its own calls only: the host copies
//! an answer once and verifies it like any message, a call in flight ends at its deadline like
//! any other, and the window is the host's. The watchdog ([`crate::vcpu::watchdog`]) closes a
//! window when it ends and kicks a guest that has not parked soon after; a guest that still does
//! not park is poisoned. At most one guest fewer than the CPUs polls at once in the process.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hyperlight_schema::abi::{
    BELL_ANSWERED, BELL_ANSWER_LEN, BELL_BUSY, BELL_HOST_CALL, BELL_PARKED, BELL_POLLING,
    BELL_POSTED, BELL_STATE, BELL_UNWATCHED, DOORBELL, INPUT_HEADER_SIZE, PORT_DONE,
    PORT_HOST_CALL,
};
use hyperlight_schema::{wire, FunctionCall, FunctionCallResult, Value, ValueType};

use crate::boundary::{self, GuestMessage};
use crate::error::Error;
use crate::host_fn::{check_call, Signatures};
use crate::vcpu::kick::KickState;
use crate::vm::layout::Region;
use crate::vm::machine::Ended;
use crate::vm::memory::SharedMemory;

/// How long after its window ended a guest that has not parked is kicked, and again after
/// each kick.
pub(crate) const GRACE: Duration = Duration::from_millis(1);
/// Kicks after which a guest that still has not parked is poisoned.
pub(crate) const MAX_NUDGES: u32 = 8;
/// Every this many calls entered with `KVM_RUN`, one is answered the other way than the
/// averages say, so that both averages stay current.
const PROBE_EVERY: u64 = 32;
/// The first window after a miss that would have been a hit.
const START_WINDOW: Duration = Duration::from_micros(10);

/// Guests polling right now, process-wide.
static POLLING: AtomicUsize = AtomicUsize::new(0);

/// At most this many guests poll at once: one fewer than the CPUs (at least one), so that a
/// caller and the vCPU threads that do work always have a CPU.
fn max_polling() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    })
}

/// Nanoseconds since the process's first use of the doorbell: the clock of deadlines.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What a polling caller finds in memory ([`crate::vcpu::VcpuThread::collect_or_host_call`]).
#[derive(Debug)]
pub enum Collected {
    /// The answer of its call.
    Answer(Result<Value, Error>),
    /// A checked host call of its call, for the caller to run and answer
    /// ([`crate::vcpu::VcpuThread::reply_in_memory`]).
    HostCall(FunctionCall),
}

/// Declines a host call made in memory: the guest makes it with an exit
/// (`HOST_CALL -> BUSY | UNWATCHED`).
fn decline(state: &AtomicU32) {
    let _ = state.compare_exchange(
        BELL_HOST_CALL,
        BELL_BUSY | BELL_UNWATCHED,
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
}

/// The call in flight in a session: whose events exits belong to.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// The call's generation.
    pub(crate) generation: u64,
    /// The guest function called (a field of its guest log events).
    pub(crate) name: String,
    /// The type the caller expects.
    pub(crate) return_type: ValueType,
    /// The span guest logs of this call are emitted in.
    pub(crate) span: tracing::Span,
}

impl InFlight {
    /// The call's result: `result`, or [`Error::ReturnTypeMismatch`] for a value of another type.
    pub(crate) fn check(&self, result: Result<Value, Error>) -> Result<Value, Error> {
        let value = result?;
        if value.value_type() != self.return_type {
            return Err(Error::ReturnTypeMismatch {
                expected: self.return_type,
                actual: value.value_type(),
            });
        }
        Ok(value)
    }
}

/// The guest's memory as the doorbell reaches it while a session is open.
#[derive(Debug, Clone)]
struct Bell {
    mem: SharedMemory,
    input: Region,
    output: Region,
}

impl Bell {
    fn state(&self) -> Result<&AtomicU32, Error> {
        self.mem.word(DOORBELL + BELL_STATE)
    }

    fn answer_len(&self) -> Result<&AtomicU32, Error> {
        self.mem.word(DOORBELL + BELL_ANSWER_LEN)
    }

    /// Writes `message` (that fits) to the input buffer after its length header, as the
    /// guest reads it, and records the bytes written in `session` for the restore.
    fn write_input(&self, session: &mut Session, message: &[u8]) -> Result<(), Error> {
        let len = message.len() as u64;
        session.input_written = session.input_written.max(INPUT_HEADER_SIZE + len);
        self.mem.write(self.input.start, &len.to_le_bytes())?;
        self.mem
            .write(self.input.start + INPUT_HEADER_SIZE, message)
    }
}

/// The doorbell's state word as callers poll it without the lock: a pointer into the guest
/// memory of the latest session's machine. Before that memory may go (a new session on a
/// rebuilt machine), the pointer is retired and the readers that may hold it waited out.
#[derive(Debug, Default)]
struct Published {
    word: AtomicPtr<AtomicU32>,
    /// Callers between loading `word` and their last use of it.
    readers: AtomicUsize,
}

impl Published {
    /// vCPU thread, under the session lock: publishes `bell`'s state word. Returns the memory
    /// the published word lies in, to keep alive until the next publication.
    fn publish(&self, bell: &Bell) -> Result<SharedMemory, Error> {
        let word = std::ptr::from_ref(bell.state()?).cast_mut();
        if self.word.load(Ordering::SeqCst) != word {
            self.word.store(std::ptr::null_mut(), Ordering::SeqCst);
            // A reader that loaded the old pointer announced itself before; one that comes
            // now loads null. Readers hold it for a few instructions.
            while self.readers.load(Ordering::SeqCst) != 0 {
                std::hint::spin_loop();
            }
            self.word.store(word, Ordering::SeqCst);
        }
        Ok(bell.mem.clone())
    }

    /// Caller: the state word's value now, if a session ever published it.
    fn load(&self) -> Option<u32> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let word = self.word.load(Ordering::SeqCst);
        // SAFETY: a non-null `word` points at the state word (4-byte aligned, inside guest
        // memory) of the memory `Session::published` keeps mapped; that memory is replaced only
        // after `publish` stored another pointer and waited for `readers` to drop to zero,
        // which it cannot while this reader, counted before it loaded `word`, still uses it.
        let value = (!word.is_null()).then(|| unsafe { (*word).load(Ordering::Acquire) });
        self.readers.fetch_sub(1, Ordering::SeqCst);
        value
    }
}

/// What the vCPU thread and callers share under the doorbell's lock.
#[derive(Debug, Default)]
struct Session {
    /// The guest's memory while the vCPU thread runs a session (from the `KVM_RUN` of a call to
    /// the exit that ends it); `None` between sessions, when calls go through the vCPU thread.
    bell: Option<Bell>,
    /// The call in flight, whose exits the vCPU thread serves and whose answer a caller collects.
    call: Option<InFlight>,
    /// Bytes of the input buffer callers wrote this session (the restore copies them back).
    input_written: u64,
    /// When the last answer was collected; `None` before the first.
    answered_at: Option<u64>,
    /// Whether this session's calls are answered in memory, and more may be posted: not for a
    /// sandbox restored after every call, whose guest must never see two calls.
    in_memory: bool,
    /// The latest call whose caller stopped watching for an answer in memory, maybe before
    /// the vCPU thread started it: it must answer with an exit.
    unwatched: u64,
    /// The memory [`Published`] points into, kept mapped while it does.
    published: Option<SharedMemory>,
    /// A host call the guest made in memory was handed to the caller, who has not answered.
    host_call_pending: bool,
}

impl Session {
    /// The guest's memory, if call `generation` is the one in flight in an open session.
    fn bell_for(&self, generation: u64) -> Option<Bell> {
        match (&self.call, &self.bell) {
            (Some(call), Some(bell)) if call.generation == generation => Some(bell.clone()),
            _ => None,
        }
    }
}

/// What a session's end hands the vCPU thread.
#[derive(Debug)]
pub(crate) struct Closed {
    /// The call still in flight, if any: the vCPU thread answers it.
    pub(crate) call: Option<InFlight>,
    /// Bytes of the input buffer callers wrote during the session.
    pub(crate) input_written: u64,
}

/// What a sandbox's doorbell did since the sandbox was built: counters for tests, metrics and
/// tuning ([`SandboxConfig::poll_window`](crate::SandboxConfig::poll_window)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DoorbellStats {
    /// Calls posted to a polling guest: each ran with no VM exit of its own.
    pub posted: u64,
    /// Answers collected from memory (of posted calls, and of calls that entered the guest
    /// with `KVM_RUN` but answered without an exit).
    pub answered_in_memory: u64,
    /// Host calls made and answered in memory (to async host functions, during calls answered
    /// in memory).
    pub host_calls_in_memory: u64,
    /// Kicks of a guest that had not parked when its window ended.
    pub kicks: u64,
    /// Times a guest was poisoned for still not parking after every kick.
    pub overdue: u64,
}

#[derive(Debug, Default)]
struct Counters {
    host_calls_in_memory: AtomicU64,
    posted: AtomicU64,
    answered_in_memory: AtomicU64,
    kicks: AtomicU64,
    overdue: AtomicU64,
}

/// A sandbox's doorbell: shared by its vCPU thread, its callers and the watchdog.
#[derive(Debug)]
pub struct Doorbell {
    counters: Counters,
    /// Every host function the guest may call, to check a host call made in memory.
    signatures: Arc<Signatures>,
    /// The host functions a caller runs itself (the async ones): only these are served in
    /// memory.
    caller_runs: HashSet<String>,
    /// Taken to change the session, and to look at it from the vCPU thread; a polling caller
    /// never takes it until its answer is there (it reads `awaited` and `word`).
    session: Mutex<Session>,
    /// The call whose answer may come in memory (0: none).
    awaited: AtomicU64,
    /// The state word, for polling.
    word: Published,
    /// The longest window; zero disables the doorbell.
    max_window: u64,
    /// The adaptive window (ns): grows while calls keep arriving within it, drops to nothing
    /// when they do not.
    window: AtomicU64,
    /// When the guest's idle time ends (ns, [`now_ns`]): it must have parked by then (plus
    /// [`GRACE`]). 0 while a call is in flight or no session is open.
    deadline: AtomicU64,
    /// When the watchdog found the deadline passed and closed the window (0: not yet): kicks
    /// count their grace from here, not from the deadline, which a late watchdog (no CPU for
    /// it) may have found long past.
    closed_at: AtomicU64,
    /// Kicks the watchdog sent since it closed the window.
    nudges: AtomicU32,
    /// Of those, the ones the vCPU thread took (each time it then ran the guest again).
    nudges_taken: AtomicU32,
    /// Whether this sandbox holds one of the process's polling slots.
    holds_slot: AtomicBool,
    /// When the call in flight started (posted, or entered with `KVM_RUN`), ns.
    started: AtomicU64,
    /// Moving averages of call latency answered in memory and by exit (0: no sample yet).
    memory_ns: AtomicU64,
    exit_ns: AtomicU64,
    /// Calls started, to try the other way every [`PROBE_EVERY`]-th call.
    calls: AtomicU64,
    kick: Arc<KickState>,
}

impl Doorbell {
    /// A doorbell whose windows last at most `max_window` (zero: never poll), for a guest that
    /// may call the host functions of `signatures`, of which the caller runs `caller_runs`.
    pub(crate) fn new(
        max_window: Duration,
        kick: Arc<KickState>,
        signatures: Arc<Signatures>,
        caller_runs: HashSet<String>,
    ) -> Self {
        Self {
            counters: Counters::default(),
            signatures,
            caller_runs,
            session: Mutex::default(),
            awaited: AtomicU64::new(0),
            word: Published::default(),
            max_window: ns(max_window),
            window: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            closed_at: AtomicU64::new(0),
            nudges: AtomicU32::new(0),
            nudges_taken: AtomicU32::new(0),
            holds_slot: AtomicBool::new(false),
            started: AtomicU64::new(0),
            memory_ns: AtomicU64::new(0),
            exit_ns: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            kick,
        }
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> DoorbellStats {
        let c = &self.counters;
        DoorbellStats {
            posted: c.posted.load(Ordering::Relaxed),
            answered_in_memory: c.answered_in_memory.load(Ordering::Relaxed),
            host_calls_in_memory: c.host_calls_in_memory.load(Ordering::Relaxed),
            kicks: c.kicks.load(Ordering::Relaxed),
            overdue: c.overdue.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the guest should answer calls in memory: the doorbell is on, its window has not
    /// shrunk to nothing, and answers in memory have been faster than answers by exit. A
    /// caller whose call may be answered so polls for the answer.
    pub(crate) fn answers_in_memory(&self) -> bool {
        self.max_window != 0 && self.window.load(Ordering::Relaxed) != 0 && self.pays()
    }

    /// Whether polling pays: calls answered in memory took no longer, on average, than calls
    /// answered by exit. It does not on a host whose CPUs are all busy: a polling guest or
    /// caller then waits for a CPU that the other one spins on, and parking would be faster.
    /// Without a sample of either kind it is assumed to pay.
    fn pays(&self) -> bool {
        let memory = self.memory_ns.load(Ordering::Relaxed);
        let exit = self.exit_ns.load(Ordering::Relaxed);
        memory == 0 || exit == 0 || memory <= exit
    }

    /// Adds a call's latency (`kind`: in memory or by exit) to its moving average (1/8 weight).
    fn sample(kind: &AtomicU64, started: u64, now: u64) {
        let latency = now.saturating_sub(started).max(1);
        let average = kind.load(Ordering::Relaxed);
        let next = if average == 0 {
            latency
        } else {
            average - average / 8 + latency / 8
        };
        kind.store(next.max(1), Ordering::Relaxed);
    }

    /// Adapts the window to a call that came `gap` after the last answer and found the guest
    /// parked: had the window been that long, it would have been a hit.
    fn missed(&self, session: &Session, now: u64) {
        let Some(answered) = session.answered_at else {
            return;
        };
        let window = self.window.load(Ordering::Relaxed);
        let next = if now.saturating_sub(answered) <= self.max_window {
            (window * 2).max(ns(START_WINDOW)).min(self.max_window)
        } else {
            0
        };
        self.window.store(next, Ordering::Relaxed);
    }

    /// Takes one of the process's polling slots, or keeps the one this sandbox holds: a guest
    /// holds it from the call it answers in memory until it parks (or is told to).
    fn take_slot(&self) -> bool {
        if self.holds_slot.load(Ordering::SeqCst) {
            return true;
        }
        if POLLING.fetch_add(1, Ordering::SeqCst) >= max_polling() {
            POLLING.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        if self.holds_slot.swap(true, Ordering::SeqCst) {
            // Taken meanwhile by another caller of this sandbox: keep one.
            POLLING.fetch_sub(1, Ordering::SeqCst);
        }
        true
    }

    fn release_slot(&self) {
        if self.holds_slot.swap(false, Ordering::SeqCst) {
            POLLING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Caller: posts `call` to the guest if it polls right now, and returns `Ok` (the answer
    /// then comes through [`Doorbell::collect`] or as an event); gives the call back if the
    /// guest does not poll, for the vCPU thread to run.
    pub(crate) fn post(
        &self,
        generation: u64,
        call: FunctionCall,
        span: &tracing::Span,
    ) -> Result<(), FunctionCall> {
        if self.max_window == 0 {
            return Err(call);
        }
        let mut session = self.lock();
        let now = now_ns();
        let Some(bell) = session.bell.clone().filter(|_| session.in_memory) else {
            self.missed(&session, now);
            return Err(call);
        };
        if session.call.is_some() {
            // Another call is still in flight (a guest that set `POLLING` itself cannot make
            // the host post over it): this one waits for the vCPU thread.
            return Err(call);
        }
        let Ok(state) = bell.state() else {
            return Err(call);
        };
        if state.load(Ordering::Acquire) != BELL_POLLING {
            self.missed(&session, now);
            return Err(call);
        }
        let message = wire::encode_function_call(&call);
        let len = message.len() as u64;
        // Too large: the vCPU thread reports it as for any call.
        if len > bell.input.size() - INPUT_HEADER_SIZE {
            return Err(call);
        }
        if bell.write_input(&mut session, &message).is_err() {
            return Err(call);
        }
        if state
            .compare_exchange(
                BELL_POLLING,
                BELL_POSTED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // The window closed meanwhile.
            self.missed(&session, now);
            return Err(call);
        }
        self.deadline.store(0, Ordering::SeqCst);
        self.started.store(now, Ordering::Relaxed);
        self.kick.begin(generation);
        if self.kick.is_cancelled(generation) {
            // Cancelled before it was posted: nobody signalled the vCPU thread yet.
            self.kick.nudge();
        }
        session.call = Some(InFlight {
            generation,
            name: call.name,
            return_type: call.return_type,
            span: span.clone(),
        });
        self.awaited.store(generation, Ordering::Release);
        self.counters.posted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Caller: the answer of call `generation` if the guest gave it in memory, or (with
    /// `host_calls`) a checked call of one of the functions the caller runs itself (the async
    /// host functions), which the guest made in memory: the caller runs it and answers with
    /// [`Doorbell::reply`]. `None` if neither is there (yet), or if the answer comes as an event
    /// instead. With an answer, opens the next window, or closes it.
    ///
    /// A host call the caller does not run (a sync host function, which runs on the vCPU
    /// thread under its seccomp filter) is declined: the guest makes it with an exit. One that
    /// fails its check is answered with the error at once.
    pub(crate) fn collect(&self, generation: u64, host_calls: bool) -> Option<Collected> {
        // Look first, without the lock: this is what a polling caller does over and over.
        if self.awaited.load(Ordering::Acquire) != generation {
            return None;
        }
        let seen = self.word.load()?;
        if seen != BELL_ANSWERED && seen != BELL_HOST_CALL {
            return None;
        }
        let mut session = self.lock();
        let bell = session.bell_for(generation).filter(|_| session.in_memory)?;
        let state = bell.state().ok()?;
        let message = || {
            let len = bell.answer_len()?.load(Ordering::Acquire);
            boundary::check_message_len(bell.output, len)?;
            bell.mem.read(bell.output.start, len as usize)
        };
        match state.load(Ordering::Acquire) {
            BELL_ANSWERED => {}
            BELL_HOST_CALL if !session.host_call_pending => {
                let call = message()
                    .and_then(|bytes| boundary::decode_guest_message(PORT_HOST_CALL, &bytes));
                let call = match call {
                    Ok(GuestMessage::HostCall(call)) => call,
                    // Not a host call: let the exit's checks report it, as for any exit.
                    _ => {
                        decline(state);
                        return None;
                    }
                };
                if let Err(rejected) = check_call(&self.signatures, &call) {
                    self.answer_host_call(&mut session, &bell, &Err(rejected));
                    return None;
                }
                if !host_calls || !self.caller_runs.contains(&call.name) {
                    decline(state);
                    return None;
                }
                session.host_call_pending = true;
                self.counters
                    .host_calls_in_memory
                    .fetch_add(1, Ordering::Relaxed);
                return Some(Collected::HostCall(call));
            }
            _ => return None,
        }
        let call = session.call.take()?;
        self.awaited.store(0, Ordering::Release);
        self.kick.end();
        self.counters
            .answered_in_memory
            .fetch_add(1, Ordering::Relaxed);
        let bytes = message();
        let now = now_ns();
        session.answered_at = Some(now);
        Self::sample(&self.memory_ns, self.started.load(Ordering::Relaxed), now);
        let window = self.window.load(Ordering::Relaxed);
        let next = if window != 0 && self.pays() && self.take_slot() {
            BELL_POLLING
        } else {
            self.release_slot();
            BELL_PARKED
        };
        state.store(next, Ordering::Release);
        // The guest must park by its deadline; the watchdog enforces it. Set under the lock, so
        // that the session's end (which clears it) cannot come in between.
        self.arm(now.saturating_add(if next == BELL_POLLING { window } else { 0 }));
        drop(session);
        Some(Collected::Answer(
            call.check(bytes.and_then(|bytes| decode_answer(&bytes))),
        ))
    }

    /// Caller: the result of the host call that [`Doorbell::collect`] handed out for call
    /// `generation`, written to the input buffer for the waiting guest. Returns `false` if the
    /// call is over (cancelled, or its guest gave up waiting): the result is dropped.
    pub(crate) fn reply(&self, generation: u64, result: &FunctionCallResult) -> bool {
        let mut session = self.lock();
        let Some(bell) = session.bell_for(generation) else {
            return false;
        };
        if !std::mem::take(&mut session.host_call_pending) {
            return false;
        }
        self.answer_host_call(&mut session, &bell, result)
    }

    /// Writes `result` for the guest's host call in memory and lets it go on (`HOST_CALL ->
    /// BUSY`). Returns `false` if the guest no longer waits for it.
    fn answer_host_call(
        &self,
        session: &mut Session,
        bell: &Bell,
        result: &FunctionCallResult,
    ) -> bool {
        let capacity = bell.input.size() - INPUT_HEADER_SIZE;
        let message = boundary::reply_message(result, capacity);
        let written = bell.write_input(session, &message);
        let Ok(state) = bell.state() else {
            return false;
        };
        written.is_ok()
            && state
                .compare_exchange(
                    BELL_HOST_CALL,
                    BELL_BUSY,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Caller: stops watching call `generation`: its answer comes as an event from now on.
    /// Returns the answer if the guest gave it in memory first.
    pub(crate) fn unwatch(&self, generation: u64) -> Option<Result<Value, Error>> {
        {
            let mut session = self.lock();
            session.unwatched = session.unwatched.max(generation);
            // None: not started yet (the vCPU thread sees `unwatched`), or over.
            let bell = session.bell_for(generation)?;
            let state = bell.state().ok()?;
            let mut seen = state.load(Ordering::Acquire);
            loop {
                if seen == BELL_HOST_CALL && !session.host_call_pending {
                    // A host call nobody will serve in memory now: make the guest exit with it.
                    decline(state);
                    return None;
                }
                if seen != BELL_POSTED && seen != BELL_BUSY {
                    break;
                }
                match state.compare_exchange(
                    seen,
                    seen | BELL_UNWATCHED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return None,
                    Err(now) => seen = now,
                }
            }
            if seen != BELL_ANSWERED {
                // Unwatched already, or a guest that left the protocol: the vCPU thread
                // answers at the exit that ends the session.
                return None;
            }
        }
        match self.collect(generation, false) {
            Some(Collected::Answer(result)) => Some(result),
            _ => None,
        }
    }

    /// Caller, before any request to the vCPU thread: closes an open window, so that the guest
    /// parks and the thread takes the request.
    pub(crate) fn close_window(&self) {
        let session = self.lock();
        if let Some(bell) = &session.bell {
            self.park(bell);
        }
    }

    /// Ends the guest's window: `POLLING -> PARKED`, releasing its polling slot (a no-op in any
    /// other state: a call was posted, or the window is closed already).
    fn park(&self, bell: &Bell) {
        if let Ok(state) = bell.state() {
            if state
                .compare_exchange(
                    BELL_POLLING,
                    BELL_PARKED,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                self.release_slot();
            }
        }
    }

    /// vCPU thread, before it runs call `call` (the guest is parked): opens a session on
    /// `mem`. The guest answers in memory if `in_memory` allows it and the doorbell's window
    /// is open, else with an exit.
    pub(crate) fn open(
        &self,
        mem: SharedMemory,
        input: Region,
        output: Region,
        call: InFlight,
        in_memory: bool,
    ) -> Result<(), Error> {
        let bell = Bell { mem, input, output };
        let mut session = self.lock();
        let watched = session.unwatched < call.generation;
        let doorbell = self.max_window != 0 && self.window.load(Ordering::Relaxed) != 0;
        // The way the averages say pays, or the other one now and then.
        let probe = self.calls.fetch_add(1, Ordering::Relaxed) % PROBE_EVERY == PROBE_EVERY - 1;
        let choose = in_memory && watched && doorbell && (self.pays() != probe);
        let answer = if choose && self.take_slot() {
            BELL_BUSY
        } else {
            BELL_PARKED
        };
        self.started.store(now_ns(), Ordering::Relaxed);
        // The guest is stopped: only its host can store here now.
        bell.state()?.store(answer, Ordering::Release);
        session.published = Some(self.word.publish(&bell)?);
        if answer == BELL_BUSY {
            self.awaited.store(call.generation, Ordering::Release);
        }
        session.bell = Some(bell);
        session.call = Some(call);
        session.input_written = 0;
        session.host_call_pending = false;
        session.in_memory = answer == BELL_BUSY;
        Ok(())
    }

    /// vCPU thread: the call in flight, for an exit it serves (a host call, a log, a kick).
    pub(crate) fn with_call<R>(&self, f: impl FnOnce(Option<&InFlight>) -> R) -> R {
        f(self.lock().call.as_ref())
    }

    /// vCPU thread, at an interrupted `KVM_RUN` with no call in flight: whether the guest has
    /// ignored its deadline past every kick (it is then poisoned). A kick counts once the vCPU
    /// thread takes it and runs the guest again: a guest that got no CPU (a loaded host) has
    /// not ignored anything.
    pub(crate) fn overdue(&self) -> bool {
        if self.deadline.load(Ordering::SeqCst) == 0 || self.nudges.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let taken = self.nudges_taken.fetch_add(1, Ordering::SeqCst) + 1;
        let overdue = taken > MAX_NUDGES;
        if overdue {
            self.counters.overdue.fetch_add(1, Ordering::Relaxed);
        }
        overdue
    }

    /// vCPU thread, once the guest stopped (parked, faulted or kicked): ends the session.
    pub(crate) fn close(&self) -> Closed {
        let mut session = self.lock();
        session.bell = None;
        let in_memory = std::mem::take(&mut session.in_memory);
        session.host_call_pending = false;
        self.awaited.store(0, Ordering::Release);
        let call = session.call.take();
        if call.is_some() {
            self.kick.end();
            // The vCPU thread answers it now: the guest is idle from here.
            let now = now_ns();
            session.answered_at = Some(now);
            if !in_memory {
                Self::sample(&self.exit_ns, self.started.load(Ordering::Relaxed), now);
            }
        }
        self.set_deadline(0);
        self.release_slot();
        Closed {
            call,
            input_written: std::mem::take(&mut session.input_written),
        }
    }

    /// Sets the deadline by which the guest must park, and tells the watchdog.
    fn arm(&self, deadline: u64) {
        self.set_deadline(deadline.max(1));
        crate::vcpu::watchdog::armed(deadline);
    }

    /// Starts a new idle period that ends at `deadline` (0: none), with no kicks sent or taken.
    fn set_deadline(&self, deadline: u64) {
        self.closed_at.store(0, Ordering::SeqCst);
        self.nudges.store(0, Ordering::SeqCst);
        self.nudges_taken.store(0, Ordering::SeqCst);
        self.deadline.store(deadline, Ordering::SeqCst);
    }

    /// Watchdog: enforces the deadline at `now`: closes the window once it is over and kicks a
    /// guest that has not parked [`GRACE`] after that, and after every further `GRACE`. Returns when
    /// it wants to look again (`None`: no deadline set).
    pub(crate) fn watch(&self, now: u64) -> Option<u64> {
        let deadline = self.deadline.load(Ordering::SeqCst);
        if deadline == 0 {
            return None;
        }
        if now < deadline {
            return Some(deadline);
        }
        let session = self.lock();
        // Still the same idle period of an open session (a call or the session's end clears
        // the deadline, and an answer sets it, under this lock).
        if self.deadline.load(Ordering::SeqCst) != deadline {
            return Some(now);
        }
        let Some(bell) = &session.bell else {
            return None;
        };
        self.park(bell);
        let closed = match self.closed_at.load(Ordering::SeqCst) {
            0 => {
                self.closed_at.store(now, Ordering::SeqCst);
                now
            }
            at => at,
        };
        drop(session);
        let nudges = self.nudges.load(Ordering::SeqCst);
        let due = closed.saturating_add(ns(GRACE).saturating_mul(u64::from(nudges) + 1));
        if now >= due {
            self.nudges.fetch_add(1, Ordering::SeqCst);
            self.counters.kicks.fetch_add(1, Ordering::Relaxed);
            self.kick.nudge();
            return Some(now.saturating_add(ns(GRACE)));
        }
        Some(due)
    }
}

/// What the vCPU thread owes after a session.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The result of the call still in flight at the end, if one was.
    pub(crate) call: Option<(u64, Result<Value, Error>)>,
    /// What went wrong with no call in flight (the guest faulted, left the protocol or did not
    /// park between calls): the sandbox is poisoned with it.
    pub(crate) stray: Option<Error>,
}

impl Closed {
    /// Who gets the session's `outcome`: the call still in flight, or, with none, nobody (a
    /// park) or the sandbox's poisoning.
    pub(crate) fn answer(self, outcome: Result<Ended, Error>) -> Answer {
        let protocol = |reason: &str| Error::Protocol {
            reason: reason.into(),
        };
        match (self.call, outcome) {
            (Some(call), outcome) => {
                let result = match outcome {
                    Ok(Ended::Done(value)) => call.check(Ok(value)),
                    Ok(Ended::Parked) => Err(protocol("the guest parked with a call in flight")),
                    Err(e) => Err(e),
                };
                Answer {
                    call: Some((call.generation, result)),
                    stray: None,
                }
            }
            (None, Ok(Ended::Parked)) => Answer {
                call: None,
                stray: None,
            },
            (None, Ok(Ended::Done(_))) => Answer {
                call: None,
                stray: Some(protocol("the guest answered with no call in flight")),
            },
            (None, Err(e)) => Answer {
                call: None,
                stray: Some(e),
            },
        }
    }
}

/// Decodes an answer the guest left in memory, as a `PORT_DONE` message.
fn decode_answer(bytes: &[u8]) -> Result<Value, Error> {
    match boundary::decode_guest_message(PORT_DONE, bytes)? {
        GuestMessage::Done(result) => boundary::call_result(result),
        _ => Err(Error::Protocol {
            reason: "the doorbell answer is not a call result".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bell(max: Duration) -> Doorbell {
        Doorbell::new(
            max,
            Arc::new(KickState::default()),
            Arc::default(),
            HashSet::new(),
        )
    }

    #[test]
    fn no_more_guests_poll_than_the_bound() {
        let bells: Vec<_> = (0..max_polling() + 2)
            .map(|_| bell(Duration::from_millis(1)))
            .collect();
        let held: Vec<_> = bells.iter().map(Doorbell::take_slot).collect();
        let taken = held.iter().filter(|&&t| t).count();
        assert!(taken <= max_polling(), "{taken} > {}", max_polling());
        for b in &bells {
            b.release_slot();
        }
        // A second release gives nothing back twice: the slots are all free again, once.
        for b in &bells {
            b.release_slot();
        }
        let again: Vec<_> = bells.iter().map(Doorbell::take_slot).collect();
        assert_eq!(again.iter().filter(|&&t| t).count(), taken);
        for b in &bells {
            b.release_slot();
        }
    }

    #[test]
    fn the_window_grows_on_near_misses_and_drops_to_nothing_on_far_ones() {
        let max = Duration::from_micros(100);
        let b = bell(max);
        let mut session = Session {
            answered_at: Some(1_000),
            ..Session::default()
        };
        let mut windows = Vec::new();
        for _ in 0..6 {
            // A call 30 µs after the answer found the guest parked: a window would have paid.
            b.missed(&session, 1_000 + 30_000);
            windows.push(b.window.load(Ordering::Relaxed));
        }
        assert_eq!(windows, [10_000, 20_000, 40_000, 80_000, 100_000, 100_000]);
        // A call long after the window's longest: polling would not have paid.
        session.answered_at = Some(0);
        b.missed(&session, ns(max) + 1);
        assert_eq!(b.window.load(Ordering::Relaxed), 0);
        assert!(!b.answers_in_memory());
    }
}

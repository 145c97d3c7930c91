//! One run of a command module: the state its WASI functions see, and the run function.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use hyperlight_guest::schema::wasm::{FuncType, WasiOutcome, WasiStream};
use hyperlight_guest::schema::wire::{decode_wasi_run, encode_wasi_outcome};
use hyperlight_guest::{ErrorCode, Global, GuestError};

use crate::engine::{CallError, Stop};
use crate::link::INSTANCE;

/// The export a command module runs.
const START_EXPORT: &str = "_start";

/// Where the deterministic clock starts: 2023-11-14T22:13:20Z, in nanoseconds.
const DETERMINISTIC_EPOCH: u64 = 1_700_000_000 * 1_000_000_000;
/// How far the deterministic clock advances at each reading, and its resolution: 1 µs.
const DETERMINISTIC_TICK: u64 = 1_000;

/// What the WASI functions of one run see. Between runs (and in export calls of a module that
/// imports WASI) it is the idle state: no arguments, no environment, an empty stdin, and writes
/// to stdout and stderr accepted and dropped.
pub struct RunState {
    /// `argv`.
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE` each.
    pub env: Vec<String>,
    /// All of stdin.
    pub stdin: Vec<u8>,
    /// How much of it was read.
    pub stdin_pos: usize,
    /// Whether fds 0, 1 and 2 were closed.
    pub closed: [bool; 3],
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// `None` in the idle state: writes are dropped.
    max: Option<(usize, usize)>,
    /// The deterministic clock and PRNG (splitmix64) of a deterministic run.
    deterministic: Option<(u64, u64)>,
}

impl RunState {
    const IDLE: RunState = RunState {
        args: Vec::new(),
        env: Vec::new(),
        stdin: Vec::new(),
        stdin_pos: 0,
        closed: [false; 3],
        stdout: Vec::new(),
        stderr: Vec::new(),
        max: None,
        deterministic: None,
    };

    /// How many more bytes `stream` takes.
    pub fn room(&self, stream: WasiStream) -> usize {
        match (self.max, stream) {
            (None, _) => usize::MAX,
            (Some((max, _)), WasiStream::Stdout) => max.saturating_sub(self.stdout.len()),
            (Some((_, max)), WasiStream::Stderr) => max.saturating_sub(self.stderr.len()),
        }
    }

    /// Captures `bytes` written to `stream` (within [`RunState::room`]).
    pub fn append(&mut self, stream: WasiStream, bytes: &[u8]) {
        if self.max.is_some() {
            match stream {
                WasiStream::Stdout => self.stdout.extend_from_slice(bytes),
                WasiStream::Stderr => self.stderr.extend_from_slice(bytes),
            }
        }
    }

    /// In a deterministic run, the clock's reading (which then advances one tick).
    pub fn deterministic_now(&mut self) -> Option<u64> {
        let (clock, _) = self.deterministic.as_mut()?;
        let now = *clock;
        *clock = clock.saturating_add(DETERMINISTIC_TICK);
        Some(now)
    }

    /// In a deterministic run, the clocks' resolution.
    pub fn deterministic_resolution(&self) -> Option<u64> {
        self.deterministic.map(|_| DETERMINISTIC_TICK)
    }

    /// In a deterministic run, advances the clock by `nanoseconds` (a sleep that does not wait)
    /// and answers `true`; `false` otherwise.
    pub fn deterministic_sleep(&mut self, nanoseconds: u64) -> bool {
        match self.deterministic.as_mut() {
            Some((clock, _)) => {
                *clock = clock.saturating_add(nanoseconds);
                true
            }
            None => false,
        }
    }

    /// In a deterministic run, `len` bytes of the seeded PRNG.
    pub fn deterministic_bytes(&mut self, len: usize) -> Option<Vec<u8>> {
        let (_, state) = self.deterministic.as_mut()?;
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            // splitmix64
            *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        bytes.truncate(len);
        Some(bytes)
    }
}

static STATE: Global<RefCell<RunState>> = Global::new(RefCell::new(RunState::IDLE));

/// Runs `f` on the run's state. The WASI functions never call each other, nor run Wasm, while
/// they hold it.
pub fn with_state<R>(f: impl FnOnce(&mut RunState) -> R) -> R {
    f(&mut STATE.borrow_mut())
}

fn failed(message: String) -> GuestError {
    GuestError {
        code: ErrorCode::GuestFunctionFailed,
        message,
    }
}

/// The guest function [`WASI_RUN_FUNCTION`](hyperlight_guest::schema::wasm::WASI_RUN_FUNCTION):
/// takes an encoded `WasiRunRequest`, runs `_start` once with its arguments, environment and
/// stdin, and answers an encoded [`WasiOutcome`]. A trap or a failed host function is the call's
/// error instead, as for an export.
pub fn run(message: Vec<u8>) -> Result<Vec<u8>, GuestError> {
    let request = decode_wasi_run(&message).map_err(|e| GuestError {
        code: ErrorCode::MalformedMessage,
        message: format!("cannot decode the WASI run request: {e}"),
    })?;
    drop(message);
    let Ok(mut slot) = INSTANCE.try_borrow_mut() else {
        return Err(failed(String::from(
            "a WASI run was started while another call runs",
        )));
    };
    let Some(instance) = slot.as_mut() else {
        return Err(failed(String::from("the module is not linked")));
    };
    let start_type = FuncType {
        params: Vec::new(),
        results: Vec::new(),
    };
    if instance.export_type(START_EXPORT) != Some(start_type) {
        return Err(GuestError {
            code: ErrorCode::UnknownFunction,
            message: format!(
                "the module exports no `{START_EXPORT}` of type () -> (): it is not a WASI command"
            ),
        });
    }
    *STATE.borrow_mut() = RunState {
        args: request.args,
        env: request.env,
        stdin: request.stdin,
        max: Some((request.max_stdout as usize, request.max_stderr as usize)),
        deterministic: request
            .deterministic
            .map(|seed| (DETERMINISTIC_EPOCH, seed)),
        ..RunState::IDLE
    };
    let result = instance
        .begin_call()
        .and_then(|()| instance.call(START_EXPORT, &[]));
    let state = core::mem::replace(&mut *STATE.borrow_mut(), RunState::IDLE);
    let (exit_code, limit) = match result {
        Ok(_) => (0, None),
        Err(CallError::Stop(Stop::Exit(code))) => (code, None),
        Err(CallError::Stop(Stop::Limit(stream))) => (-1, Some(stream)),
        Err(error) => return Err(error.into()),
    };
    Ok(encode_wasi_outcome(&WasiOutcome {
        exit_code,
        stdout: state.stdout,
        stderr: state.stderr,
        limit,
    }))
}

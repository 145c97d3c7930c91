//! WASI preview 1 for command modules: the configuration, one run's input and output, the run
//! call, and the host functions that answer the clocks, randomness and sleeps the runner cannot
//! answer inside the VM (`docs/wasm.md`, "WASI programs").

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyperlight_async::{SandboxBuilder, SandboxConfig, Value, ValueType};
use hyperlight_schema::wasm::{wasi_host, WasiRunRequest, WasiStream, WASI_RUN_FUNCTION};
use hyperlight_schema::wire::{decode_wasi_outcome, encode_wasi_run};

use crate::call::{Target, WasmCall};
use crate::error::Error;

/// The export a command module runs, named in errors of a run.
const START_EXPORT: &str = "_start";

/// Bytes of a call message besides a run request's stdin, arguments and environment (the
/// FlatBuffer framing), and of a result message besides stdout and stderr.
const MESSAGE_SLACK: u64 = 4096;

/// WASI for a module: turned on with [`WasmSandboxBuilder::wasi`](crate::WasmSandboxBuilder::wasi).
///
/// ```
/// use hyperlight_wasm::{WasiConfig, WasiLimits};
///
/// let config = WasiConfig {
///     limits: WasiLimits { max_stdout: 1 << 20, ..WasiLimits::default() },
///     deterministic: Some(42),
/// };
/// assert_eq!(config.limits.max_stdin, 64 << 10);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WasiConfig {
    /// The sizes a run may pass in and out.
    pub limits: WasiLimits,
    /// `Some(seed)`: reproducible runs. The clocks start at a fixed instant and advance one
    /// microsecond per reading and by each sleep, which does not wait; `random_get` gives a
    /// PRNG's bytes seeded with `seed`, the same in every run. `None` (the default): the host's
    /// clocks, real sleeps and OS randomness.
    pub deterministic: Option<u64>,
}

/// Size limits of one WASI run; past one a run fails with [`Error::WasiLimit`], before the
/// program starts for what goes in, and as soon as a write passes it for what comes out. Both
/// directions also fit the sandbox's call buffers: the builder enlarges the default
/// configuration's, and refuses a given configuration whose buffers are too small
/// ([`Error::InvalidLimit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasiLimits {
    /// The most bytes of stdin. Default 64 KiB.
    pub max_stdin: usize,
    /// The most bytes the program may write to stdout. Default 64 KiB.
    pub max_stdout: usize,
    /// The most bytes the program may write to stderr. Default 16 KiB.
    pub max_stderr: usize,
    /// The most bytes of arguments, counted as WASI does (each with its NUL). Default 16 KiB.
    pub max_args: usize,
    /// The most bytes of environment, each `KEY=VALUE` with its NUL. Default 16 KiB.
    pub max_env: usize,
}

impl Default for WasiLimits {
    fn default() -> Self {
        WasiLimits {
            max_stdin: 64 << 10,
            max_stdout: 64 << 10,
            max_stderr: 16 << 10,
            max_args: 16 << 10,
            max_env: 16 << 10,
        }
    }
}

/// Which [`WasiLimits`] limit a run passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WasiLimit {
    /// [`WasiLimits::max_stdin`].
    Stdin,
    /// [`WasiLimits::max_stdout`].
    Stdout,
    /// [`WasiLimits::max_stderr`].
    Stderr,
    /// [`WasiLimits::max_args`].
    Args,
    /// [`WasiLimits::max_env`].
    Env,
}

impl WasiLimits {
    /// The call buffers a run needs: `(input, output)` bytes.
    fn buffers(&self) -> (u64, u64) {
        let input = (self.max_stdin as u64)
            .saturating_add(self.max_args as u64)
            .saturating_add(self.max_env as u64)
            .saturating_add(MESSAGE_SLACK);
        let output = (self.max_stdout as u64)
            .saturating_add(self.max_stderr as u64)
            .saturating_add(MESSAGE_SLACK);
        (input, output)
    }

    /// `config` with call buffers large enough for these limits.
    pub(crate) fn enlarge(&self, config: SandboxConfig) -> SandboxConfig {
        let (input, output) = self.buffers();
        SandboxConfig {
            input_size: config.input_size.max(input),
            output_size: config.output_size.max(output),
            ..config
        }
    }

    /// Checks the limits against the call buffers of `config`.
    pub(crate) fn validate(&self, config: &SandboxConfig) -> Result<(), Error> {
        let (input, output) = self.buffers();
        let too_small = |field, size, needed| Error::InvalidLimit {
            field,
            reason: format!(
                "the sandbox's {field} ({size} bytes) cannot hold a WASI run of these limits \
                 ({needed} bytes): raise it or lower the WASI limits"
            ),
        };
        if config.input_size < input {
            return Err(too_small("input_size", config.input_size, input));
        }
        if config.output_size < output {
            return Err(too_small("output_size", config.output_size, output));
        }
        let fits_u32 = |n: usize| u32::try_from(n).is_ok();
        if !fits_u32(self.max_stdout) || !fits_u32(self.max_stderr) {
            return Err(Error::InvalidLimit {
                field: "max_stdout / max_stderr",
                reason: "must be below 4 GiB".into(),
            });
        }
        Ok(())
    }
}

/// The input of one run of a WASI command: what its `_start` sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasiRun {
    /// `argv`: by convention the program's name first (`args_get` gives them as they are).
    pub args: Vec<String>,
    /// The environment (`environ_get` gives `KEY=VALUE`).
    pub env: Vec<(String, String)>,
    /// All of stdin; reading past its end is end of file.
    pub stdin: Vec<u8>,
}

/// How a WASI run ended: its exit code and what it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasiOutput {
    /// 0 if `_start` returned, else the code the program gave `proc_exit`.
    pub exit_code: i32,
    /// What the program wrote to fd 1.
    pub stdout: Vec<u8>,
    /// What the program wrote to fd 2 (also emitted line by line as `tracing` events).
    pub stderr: Vec<u8>,
}

impl WasiOutput {
    /// Whether the exit code is 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

fn input_error(reason: String) -> Error {
    Error::WasiInput { reason }
}

/// The run request of `run` under `config`, checked against the limits.
pub(crate) fn request(config: &WasiConfig, run: WasiRun) -> Result<Vec<u8>, Error> {
    let limits = &config.limits;
    let over = |limit, max| Error::WasiLimit { limit, max };
    if run.stdin.len() > limits.max_stdin {
        return Err(over(WasiLimit::Stdin, limits.max_stdin));
    }
    for arg in &run.args {
        if arg.contains('\0') {
            return Err(input_error(format!("the argument {arg:?} contains a NUL")));
        }
    }
    let env: Vec<String> = run
        .env
        .iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(input_error(format!(
                    "the environment variable {key:?} is empty or contains `=` or a NUL, or its value a NUL"
                )));
            }
            Ok(format!("{key}={value}"))
        })
        .collect::<Result<_, _>>()?;
    let size = |strings: &[String]| strings.iter().map(|s| s.len() + 1).sum::<usize>();
    if size(&run.args) > limits.max_args {
        return Err(over(WasiLimit::Args, limits.max_args));
    }
    if size(&env) > limits.max_env {
        return Err(over(WasiLimit::Env, limits.max_env));
    }
    // `validate` checked that both fit a u32.
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(encode_wasi_run(&WasiRunRequest {
        args: run.args,
        env,
        stdin: run.stdin,
        max_stdout: clamp(limits.max_stdout),
        max_stderr: clamp(limits.max_stderr),
        deterministic: config.deterministic,
    }))
}

/// The arguments of the runner's run function.
pub(crate) fn run_args(message: Vec<u8>) -> (&'static str, Vec<Value>, ValueType) {
    (
        WASI_RUN_FUNCTION,
        vec![Value::Bytes(message)],
        ValueType::Bytes,
    )
}

/// One run of a WASI command (made by [`WasmSandbox::run`](crate::WasmSandbox::run) or
/// [`WasmPool::run`](crate::WasmPool::run)), awaitable.
///
/// # Cancel safety
///
/// As [`WasmCall`]: dropping the future cancels the run, also while it sleeps in
/// `poll_oneoff`; the instance is restored before the next call.
///
/// # Errors
///
/// [`Error::WasiLimit`] (stdin, arguments or environment too large, before anything runs; or a
/// write past the stdout or stderr limit), [`Error::WasiInput`], [`Error::WasiDisabled`],
/// [`Error::Trap`] and [`Error::Abi`] (with the export `_start`), [`Error::Sandbox`] (a timeout,
/// a cancellation, a module that is not a command), [`Error::Protocol`].
#[must_use = "a run does nothing until it is awaited"]
pub struct WasiCall {
    call: WasmCall<Vec<u8>>,
    limits: WasiLimits,
}

impl WasiCall {
    pub(crate) fn new(target: Result<Target, Error>, limits: WasiLimits) -> Self {
        WasiCall {
            call: WasmCall::new(START_EXPORT, target),
            limits,
        }
    }

    /// Fails the run with a timeout ([`hyperlight_async::Error::Timeout`] inside
    /// [`Error::Sandbox`]) if it has not ended `timeout` after it was first polled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.call = self.call.timeout(timeout);
        self
    }
}

impl IntoFuture for WasiCall {
    type Output = Result<WasiOutput, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<WasiOutput, Error>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let WasiCall { call, limits } = self;
        Box::pin(async move {
            let (answer, sandbox_id) = call.with_sandbox_id().await?;
            let outcome = decode_wasi_outcome(&answer).map_err(Error::Protocol)?;
            for line in String::from_utf8_lossy(&outcome.stderr).lines() {
                tracing::info!(sandbox.id = sandbox_id, stderr = %line, "WASI stderr");
            }
            match outcome.limit {
                Some(WasiStream::Stdout) => Err(Error::WasiLimit {
                    limit: WasiLimit::Stdout,
                    max: limits.max_stdout,
                }),
                Some(WasiStream::Stderr) => Err(Error::WasiLimit {
                    limit: WasiLimit::Stderr,
                    max: limits.max_stderr,
                }),
                None => Ok(WasiOutput {
                    exit_code: outcome.exit_code,
                    stdout: outcome.stdout,
                    stderr: outcome.stderr,
                }),
            }
        })
    }
}

/// Where the monotonic clock counts from: the first reading in this process.
fn monotonic_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Registers the host functions of [`wasi_host`] on `native`. They are async, so that they run in
/// the task awaiting the run (not under the vCPU thread's seccomp filter), and a sleep parks
/// the vCPU in its exit without blocking a runtime thread. CPU-time clocks read the monotonic
/// clock.
pub(crate) fn host_functions(native: SandboxBuilder) -> SandboxBuilder {
    native
        .host_fn_async(
            wasi_host::CLOCK_TIME_GET,
            |id: u32, _precision: u64| async move {
                if id == 0 {
                    let since = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or(Duration::ZERO);
                    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
                } else {
                    u64::try_from(monotonic_base().elapsed().as_nanos()).unwrap_or(u64::MAX)
                }
            },
        )
        .host_fn_async(wasi_host::CLOCK_RES_GET, |_id: u32| async move { 1u64 })
        .host_fn_async(wasi_host::RANDOM_GET, |len: u32| async move {
            if len > wasi_host::MAX_RANDOM_CHUNK {
                return Err(format!(
                    "random_get asked for {len} bytes, more than {} at once",
                    wasi_host::MAX_RANDOM_CHUNK
                ));
            }
            let mut bytes = vec![0u8; len as usize];
            getrandom::fill(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
            Ok(bytes)
        })
        .host_fn_async(wasi_host::SLEEP, |nanoseconds: u64| async move {
            tokio::time::sleep(Duration::from_nanos(nanoseconds)).await;
        })
}

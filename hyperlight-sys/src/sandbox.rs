//! The blocking sandbox API: build a sandbox, register host functions, call guest functions.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hyperlight_schema::{FunctionCall, Value, ValueType, WireArgs, WireType};

use crate::config::SandboxConfig;
use crate::error::Error;
use crate::host_fn::{HostFunction, HostFunctions, Signatures};
use crate::hypervisor::select::{self, HypervisorChoice, HypervisorPaths};
use crate::hypervisor::Hypervisor;
use crate::vcpu::kick::InterruptHandle;
use crate::vcpu::spin::Spinner;
use crate::vcpu::{DoorbellStats, Event, VcpuSpec, VcpuThread};
use crate::vm::snapshot::Snapshot;

/// Where the guest binary comes from.
#[derive(Clone, Debug)]
pub enum GuestBinary {
    /// An ELF file on disk.
    Path(PathBuf),
    /// ELF bytes in memory.
    Bytes(Arc<[u8]>),
}

impl GuestBinary {
    /// Reads the ELF, refusing files larger than `max` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::GuestFile`] if the file cannot be read; [`Error::InvalidConfig`] if it (or the
    /// bytes) are larger than `max`.
    pub fn load(&self, max: u64) -> Result<Arc<[u8]>, Error> {
        let too_large = |len: u64| Error::InvalidConfig {
            field: "guest binary size",
            value: len,
            reason: "larger than max_guest_file",
        };
        match self {
            GuestBinary::Bytes(bytes) if bytes.len() as u64 > max => {
                Err(too_large(bytes.len() as u64))
            }
            GuestBinary::Bytes(bytes) => Ok(bytes.clone()),
            GuestBinary::Path(path) => {
                let file_err = |source| Error::GuestFile {
                    path: path.clone(),
                    source: Arc::new(source),
                };
                let mut file = std::fs::File::open(path).map_err(file_err)?;
                let mut bytes = Vec::new();
                file.by_ref()
                    .take(max.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(file_err)?;
                if bytes.len() as u64 > max {
                    return Err(too_large(bytes.len() as u64));
                }
                Ok(bytes.into())
            }
        }
    }
}

impl From<&Path> for GuestBinary {
    fn from(path: &Path) -> Self {
        GuestBinary::Path(path.to_path_buf())
    }
}

impl From<PathBuf> for GuestBinary {
    fn from(path: PathBuf) -> Self {
        GuestBinary::Path(path)
    }
}

/// A path given as a string: `Sandbox::builder("target/x86_64-unknown-none/release/my-guest")`.
impl From<&str> for GuestBinary {
    fn from(path: &str) -> Self {
        GuestBinary::Path(PathBuf::from(path))
    }
}

impl From<String> for GuestBinary {
    fn from(path: String) -> Self {
        GuestBinary::Path(PathBuf::from(path))
    }
}

impl From<&PathBuf> for GuestBinary {
    fn from(path: &PathBuf) -> Self {
        GuestBinary::Path(path.clone())
    }
}

impl From<Vec<u8>> for GuestBinary {
    fn from(bytes: Vec<u8>) -> Self {
        GuestBinary::Bytes(bytes.into())
    }
}

/// The hypervisor `config` asks for. The default choice (auto, default device paths) is opened
/// once per process and shared; any other is opened for each sandbox.
pub fn hypervisor_for(config: &SandboxConfig) -> Result<Arc<dyn Hypervisor>, Error> {
    static DEFAULT: OnceLock<Arc<dyn Hypervisor>> = OnceLock::new();
    let is_default = config.hypervisor == HypervisorChoice::Auto
        && config.hypervisor_paths == HypervisorPaths::default();
    if !is_default {
        return select::open(config.hypervisor, &config.hypervisor_paths);
    }
    if let Some(hv) = DEFAULT.get() {
        return Ok(hv.clone());
    }
    let hv = select::open(HypervisorChoice::Auto, &HypervisorPaths::default())?;
    Ok(DEFAULT.get_or_init(|| hv).clone())
}

/// What a sandbox is built from: a guest binary (loaded, then its init runs) or a snapshot
/// (mapped copy-on-write: no loading, no init).
#[derive(Clone, Debug)]
pub enum SandboxSource {
    /// A guest ELF.
    Binary(GuestBinary),
    /// A snapshot of another sandbox.
    Snapshot(Snapshot),
}

impl<T: Into<GuestBinary>> From<T> for SandboxSource {
    fn from(guest: T) -> Self {
        SandboxSource::Binary(guest.into())
    }
}

impl From<Snapshot> for SandboxSource {
    fn from(snapshot: Snapshot) -> Self {
        SandboxSource::Snapshot(snapshot)
    }
}

impl From<&Snapshot> for SandboxSource {
    fn from(snapshot: &Snapshot) -> Self {
        SandboxSource::Snapshot(snapshot.clone())
    }
}

/// Builds a [`Sandbox`]. Cloneable, to build several alike; the async API's builder wraps it.
#[derive(Clone)]
pub struct SandboxBuilder {
    source: SandboxSource,
    module: Option<Arc<[u8]>>,
    config: SandboxConfig,
    fresh_per_call: bool,
    hypervisor: Option<Arc<dyn Hypervisor>>,
    host_fns: HostFunctions,
}

impl SandboxBuilder {
    /// Sets the memory configuration.
    pub fn config(mut self, config: SandboxConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this hypervisor instead of the one the config selects.
    pub fn hypervisor(mut self, hypervisor: Arc<dyn Hypervisor>) -> Self {
        self.hypervisor = Some(hypervisor);
        self
    }

    /// Registers a host function the guest may call by `name`. Its parameter and return types
    /// are the closure's; the guest's calls are checked against them before it runs.
    pub fn host_fn<Args, F: HostFunction<Args>>(mut self, name: &str, f: F) -> Self {
        self.host_fns.insert(name, f);
        self
    }

    /// Registers a host function that needs syscalls beyond the sandbox's seccomp allowlist,
    /// e.g. `&[libc::SYS_openat, libc::SYS_read, libc::SYS_close]` to read a file. It runs on a
    /// worker thread of its own whose filter allows the default list plus `syscalls`; the vCPU
    /// thread's filter stays as it is. See `docs/security.md`.
    pub fn host_fn_with_syscalls<Args, F: HostFunction<Args>>(
        mut self,
        name: &str,
        syscalls: &[i64],
        f: F,
    ) -> Self {
        self.host_fns.insert_with_syscalls(name, syscalls, f);
        self
    }

    /// Removes the host function `name`, if registered.
    pub fn without_host_fn(mut self, name: &str) -> Self {
        self.host_fns.remove(name);
        self
    }

    /// Makes every call start from the post-init snapshot: the sandbox is restored right after
    /// each call (after its result is returned), so no call sees what an earlier one left.
    pub fn fresh_per_call(mut self, fresh: bool) -> Self {
        self.fresh_per_call = fresh;
        self
    }

    /// Gives the guest `bytes` (a WebAssembly module, a script) in a region of its memory
    /// mapped read-only at build time, outside the call buffers: the guest reads them with
    /// `hyperlight_guest::module()` (its `BootInfo` names the region). At most
    /// [`SandboxConfig::max_module_size`] bytes (16 MiB by default). Used when building from a
    /// guest binary; a sandbox built from a snapshot has the snapshot's module (the same bytes,
    /// shared copy-on-write), whatever this says.
    pub fn module(mut self, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.module = Some(bytes.into());
        self
    }

    /// Builds from `source` instead (e.g. a snapshot of a sandbox built by this builder).
    pub fn source(mut self, source: impl Into<SandboxSource>) -> Self {
        self.source = source.into();
        self
    }

    /// The configuration set so far.
    pub fn current_config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Whether calls restore the post-init snapshot after they finish.
    pub fn is_fresh_per_call(&self) -> bool {
        self.fresh_per_call
    }

    /// Everything [`SandboxBuilder::build`] does before it starts the vCPU thread, for other
    /// front ends: `extra` are signatures of host functions the front end serves itself (the
    /// vCPU thread sends their calls as [`Event::HostCall`]).
    ///
    /// # Errors
    ///
    /// As [`SandboxBuilder::build`], for what happens before the VM exists: the configuration,
    /// the guest file, the hypervisor.
    pub fn into_spec(self, extra: Signatures) -> Result<VcpuSpec, Error> {
        let mut signatures = self.host_fns.signatures();
        signatures.extend(extra);
        VcpuSpec::new(
            self.source,
            self.module,
            self.config,
            self.hypervisor,
            self.host_fns,
            signatures,
        )
    }

    /// Creates the VM on a new vCPU thread: from a binary it loads the guest and runs its init;
    /// from a snapshot it maps the snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a configuration out of its limits; [`Error::GuestFile`] or
    /// [`Error::Elf`] for a guest binary that cannot be read or loaded;
    /// [`Error::HypervisorUnusable`] or [`Error::NoHypervisor`] without a usable hypervisor;
    /// [`Error::KickSignalInUse`] or [`Error::KickSignalMismatch`] for a kick signal that cannot
    /// be taken; what the guest's init fails with, or [`Error::InitTimeout`]; [`Error::Os`] or
    /// [`Error::Hypervisor`] when the OS or the hypervisor refuses a step.
    pub fn build(self) -> Result<Sandbox, Error> {
        let fresh_per_call = self.fresh_per_call;
        let spec = self.into_spec(Signatures::new())?;
        let config = spec.config.clone();
        let thread = VcpuThread::spawn(spec)?;
        Ok(Sandbox {
            thread,
            spinner: Spinner::new(config.spin_wait),
            fresh_per_call,
            config,
        })
    }
}

/// A micro-VM running one guest, driven by blocking calls.
///
/// Calls and the host functions the guest calls back run on the sandbox's own vCPU thread.
pub struct Sandbox {
    thread: VcpuThread,
    spinner: Spinner,
    fresh_per_call: bool,
    config: SandboxConfig,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts building a sandbox from `source`: a guest ELF (path or bytes) or a [`Snapshot`].
    pub fn builder(source: impl Into<SandboxSource>) -> SandboxBuilder {
        SandboxBuilder {
            source: source.into(),
            module: None,
            config: SandboxConfig::default(),
            fresh_per_call: false,
            hypervisor: None,
            host_fns: HostFunctions::default(),
        }
    }

    /// Calls guest function `name` with typed arguments and a typed result.
    ///
    /// # Errors
    ///
    /// [`Error::GuestCall`] when the guest function reports an error (the sandbox stays usable);
    /// [`Error::ReturnTypeMismatch`] for a result of another type; a fatal error (a guest fault,
    /// panic or protocol violation, [`Error::Cancelled`] by the interrupt handle, ...), after
    /// which the sandbox is poisoned: later calls get [`Error::Poisoned`] until
    /// [`Sandbox::restore`]; [`Error::ThreadGone`] if the vCPU thread is gone.
    pub fn call<R: WireType>(&mut self, name: &str, args: impl WireArgs) -> Result<R, Error> {
        let value = self.call_value(name, args.into_values(), R::TYPE)?;
        let actual = value.value_type();
        R::from_value(value).ok_or(Error::ReturnTypeMismatch {
            expected: R::TYPE,
            actual,
        })
    }

    /// Calls guest function `name` with dynamically typed arguments.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::call`].
    pub fn call_value(
        &mut self,
        name: &str,
        args: Vec<Value>,
        return_type: ValueType,
    ) -> Result<Value, Error> {
        let generation = self.thread.next_generation();
        let span = tracing::info_span!("guest_call", function = name, generation);
        let call = FunctionCall {
            name: name.to_string(),
            args,
            return_type,
        };
        let in_memory = self
            .thread
            .start_call(generation, call, span, self.fresh_per_call)?;
        // Every host function of a blocking sandbox runs inline on the vCPU thread, so no
        // host-call event comes; stale events of earlier calls are skipped.
        let done = |event| match event {
            Event::Done {
                generation: g,
                result,
            } if g == generation => Some(result),
            _ => None,
        };
        if let Some(polling) = self.spinner.begin_if(in_memory) {
            loop {
                if let Some(result) = self.thread.collect(generation) {
                    self.spinner.end(polling, true);
                    return result;
                }
                match self.thread.events.try_recv() {
                    Ok(event) => {
                        if let Some(result) = done(event) {
                            self.spinner.end(polling, true);
                            return result;
                        }
                    }
                    Err(flume::TryRecvError::Disconnected) => return Err(Error::ThreadGone),
                    Err(flume::TryRecvError::Empty) if !polling.expired() => std::hint::spin_loop(),
                    Err(flume::TryRecvError::Empty) => {
                        self.spinner.end(polling, false);
                        break;
                    }
                }
            }
        }
        if let Some(result) = self.thread.unwatch(generation) {
            return result;
        }
        loop {
            let event = self.thread.events.recv().map_err(|_| Error::ThreadGone)?;
            if let Some(result) = done(event) {
                return result;
            }
        }
    }

    /// What this sandbox's doorbell did so far: calls posted with no exit, answers taken from
    /// memory, kicks of a guest that did not park ([`SandboxConfig::poll_window`]).
    pub fn doorbell_stats(&self) -> DoorbellStats {
        self.thread.doorbell_stats()
    }

    /// A handle that kicks this sandbox's vCPU out of the guest from any thread.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.thread.interrupt.clone()
    }

    /// Brings the sandbox back to its post-init snapshot and clears poisoning. Only the pages
    /// written since the last restore are copied back, and every register is reset.
    ///
    /// # Errors
    ///
    /// What building a new VM from the snapshot fails with, when the fast path cannot restore
    /// this one (the sandbox then stays poisoned by that error); [`Error::ThreadGone`] if the
    /// vCPU thread is gone.
    pub fn restore(&mut self) -> Result<(), Error> {
        self.thread.restore(None, &mut self.spinner)
    }

    /// Brings the sandbox back to `snapshot`, which must come from a sandbox of the same guest
    /// and memory configuration.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a snapshot of another memory layout; otherwise as
    /// [`Sandbox::restore`].
    pub fn restore_to(&mut self, snapshot: &Snapshot) -> Result<(), Error> {
        self.thread
            .restore(Some(snapshot.clone()), &mut self.spinner)
    }

    /// Takes a snapshot of the sandbox's current state: memory and every vCPU register. Other
    /// sandboxes built from it ([`Sandbox::builder`]) start in exactly this state.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] for a poisoned sandbox (restore it first); [`Error::Os`] if the
    /// snapshot's memory cannot be made; [`Error::ThreadGone`] if the vCPU thread is gone.
    pub fn snapshot(&mut self) -> Result<Snapshot, Error> {
        self.thread.snapshot()
    }

    /// Takes a snapshot of the sandbox's current state and makes it the sandbox's post-init
    /// snapshot: restores (and [`SandboxBuilder::fresh_per_call`]) return to it from now on.
    /// For guests that finish setting up in a call (a WebAssembly runner instantiating its
    /// module); sandboxes built from the snapshot start in that state too.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::snapshot`].
    pub fn rebase(&mut self) -> Result<Snapshot, Error> {
        self.thread.rebase()
    }

    /// Writes an ELF core file of the guest as it is now to `path` (which must not exist):
    /// its memory regions at their guest addresses (at most
    /// [`SandboxConfig::crash_dump_max_size`] bytes) and its registers, for
    /// `gdb guest-elf path` (see `docs/debugging.md`). A sandbox poisoned by a fault is dumped
    /// as the fault left it, until it is restored. Returns the file's size.
    ///
    /// # Errors
    ///
    /// [`Error::CrashDumpFile`] if the file cannot be created or written;
    /// [`Error::Poisoned`] if the sandbox has no machine left to dump (restore it);
    /// [`Error::ThreadGone`] if the vCPU thread is gone.
    pub fn crash_dump(&mut self, path: impl Into<std::path::PathBuf>) -> Result<u64, Error> {
        self.thread.crash_dump(path.into())
    }

    /// The snapshot taken right after the guest's init (or the one this sandbox was built from,
    /// or the one of its last [`Sandbox::rebase`]).
    pub fn post_init_snapshot(&self) -> Snapshot {
        self.thread.post_init_snapshot()
    }
}

//! The blocking sandbox API: build a sandbox, register host functions, call guest functions.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hyperlight_schema::{FunctionCall, Value, ValueType, WireArgs, WireType};

use crate::config::SandboxConfig;
use crate::error::Error;
use crate::host_fn::{HostFunction, HostFunctions};
use crate::hypervisor::select::{self, HypervisorChoice, HypervisorPaths};
use crate::hypervisor::Hypervisor;
use crate::kick::InterruptHandle;
use crate::spin::Spinner;
use crate::vcpu::{Event, Request, VcpuSpec, VcpuThread};

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
                    source,
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

/// Builds a [`Sandbox`].
pub struct SandboxBuilder {
    guest: GuestBinary,
    config: SandboxConfig,
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

    /// Creates the VM, loads the guest and runs its init, on a new vCPU thread.
    pub fn build(self) -> Result<Sandbox, Error> {
        self.config.validate()?;
        let elf = self.guest.load(self.config.max_guest_file)?;
        let hypervisor = match self.hypervisor {
            Some(hv) => hv,
            None => hypervisor_for(&self.config)?,
        };
        let config = self.config.clone();
        let thread = VcpuThread::spawn(VcpuSpec {
            hypervisor,
            elf,
            config: self.config,
            signatures: Arc::new(self.host_fns.signatures()),
            inline: Arc::new(self.host_fns),
        })?;
        Ok(Sandbox {
            thread,
            spinner: Spinner::new(config.spin_wait),
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
    /// Starts building a sandbox for `guest`.
    pub fn builder(guest: impl Into<GuestBinary>) -> SandboxBuilder {
        SandboxBuilder {
            guest: guest.into(),
            config: SandboxConfig::default(),
            hypervisor: None,
            host_fns: HostFunctions::default(),
        }
    }

    /// Calls guest function `name` with typed arguments and a typed result.
    pub fn call<R: WireType>(&mut self, name: &str, args: impl WireArgs) -> Result<R, Error> {
        let value = self.call_value(name, args.into_values(), R::TYPE)?;
        let actual = value.value_type();
        R::from_value(value).ok_or(Error::ReturnTypeMismatch {
            expected: R::TYPE,
            actual,
        })
    }

    /// Calls guest function `name` with dynamically typed arguments.
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
        self.thread
            .requests
            .send(Request::Call {
                generation,
                call,
                span,
            })
            .map_err(|_| Error::ThreadGone)?;
        loop {
            match self
                .spinner
                .recv(&self.thread.events)
                .map_err(|_| Error::ThreadGone)?
            {
                Event::Done {
                    generation: g,
                    result,
                } if g == generation => return result,
                // Every host function of a blocking sandbox runs inline on the vCPU thread, so no
                // host-call event reaches this loop; stale events of earlier calls are skipped.
                _ => {}
            }
        }
    }

    /// A handle that kicks this sandbox's vCPU out of the guest from any thread.
    pub fn interrupt_handle(&self) -> InterruptHandle {
        self.thread.interrupt.clone()
    }

    /// Brings the sandbox back to its state right after init and clears poisoning. Until the
    /// snapshot work lands this re-creates the VM and re-runs the guest's init.
    pub fn restore(&mut self) -> Result<(), Error> {
        self.thread.restore()
    }
}

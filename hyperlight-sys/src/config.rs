//! Sandbox configuration: sizes with sane defaults and hard upper limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::hypervisor::select::{HypervisorChoice, HypervisorPaths};
use crate::seccomp::SeccompPolicy;

/// Sizes of a sandbox's memory regions. Every size is rounded up to whole pages.
///
/// The defaults suit small guests; every field has a hard upper limit checked by
/// [`SandboxConfig::validate`], and nothing the guest does can make the host map more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Guest heap size in bytes. Default 4 MiB, at most [`SandboxConfig::MAX_HEAP`].
    pub heap_size: u64,
    /// Guest stack size in bytes. Default 256 KiB, at most [`SandboxConfig::MAX_STACK`].
    pub stack_size: u64,
    /// Input (host -> guest) buffer size. Default 256 KiB, at most [`SandboxConfig::MAX_BUFFER`].
    pub input_size: u64,
    /// Output (guest -> host) buffer size. Default 256 KiB, at most [`SandboxConfig::MAX_BUFFER`].
    pub output_size: u64,
    /// Largest guest ELF file accepted, in bytes. Default and maximum 64 MiB.
    pub max_guest_file: u64,
    /// Largest module accepted ([`crate::SandboxBuilder::module`]: bytes mapped read-only into
    /// the guest at build time, e.g. a WebAssembly module), in bytes; a larger one fails the
    /// build with [`Error::InvalidConfig`]. Default 16 MiB, at most
    /// [`SandboxConfig::MAX_MODULE`].
    pub max_module_size: u64,
    /// How long a waiting thread (the caller waiting for a result, the vCPU thread waiting for
    /// the next request) polls before it parks. Waking a parked thread costs tens of
    /// microseconds on virtualized hosts, more than a whole guest call; a short poll avoids it
    /// for back-to-back calls at the price of that much CPU per wait. Polling is adaptive (see
    /// [`crate::vcpu::spin::Spinner`]): a waiter stops polling when it stops paying off, and no more
    /// waiters than CPUs poll at once. Default 100 µs, at most [`SandboxConfig::MAX_SPIN_WAIT`];
    /// zero disables polling.
    pub spin_wait: Duration,
    /// The longest polling window of the doorbell: after it answers a call, the guest polls
    /// shared memory for the next one for up to this long, and a call that finds it polling
    /// runs with no VM exit at all (`docs/performance.md`, "Below the exit floor"). The window
    /// adapts like KVM's halt polling: it grows while calls keep coming within it and drops to
    /// nothing when they do not; the host ends it (a guest that does not park is kicked, then
    /// poisoned) and at most one guest fewer than the CPUs polls at once in the process. A
    /// polling guest keeps its CPU busy for the window. Default zero (off), at most
    /// [`SandboxConfig::MAX_POLL_WINDOW`]; a sandbox restored after every call never polls.
    pub poll_window: Duration,
    /// How long the guest's init may run (at creation and at every restore) before it is killed
    /// and creation fails with [`Error::InitTimeout`]. Default 10 s, at most
    /// [`SandboxConfig::MAX_INIT_TIMEOUT`].
    pub init_timeout: Duration,
    /// Which hypervisor to use: [`HypervisorChoice::Auto`] (default) takes KVM if `/dev/kvm` is
    /// usable, else mshv; an explicit choice uses only that one.
    pub hypervisor: HypervisorChoice,
    /// Where the hypervisor devices are (default `/dev/kvm` and `/dev/mshv`).
    pub hypervisor_paths: HypervisorPaths,
    /// Stack size of the sandbox's vCPU thread (which also runs sync host functions) and of its
    /// host-function workers. Default 256 KiB, at least [`SandboxConfig::MIN_THREAD_STACK`];
    /// raise it for host functions that need deep stacks. Each distinct size (with each seccomp
    /// policy) keeps a spawner thread and one thread started ahead for the life of the process,
    /// at most 64 such combinations.
    pub thread_stack_size: usize,
    /// The seccomp filter of the sandbox's vCPU thread and host-function workers (see
    /// `docs/security.md`). Default [`SeccompPolicy::enabled`]; [`SeccompPolicy::Disabled`]
    /// opts out.
    pub seccomp: SeccompPolicy,
    /// Which signal kicks vCPU threads out of the guest (timeouts, cancellation): the
    /// real-time signal `SIGRTMIN + kick_signal_offset`. Default 0; at most `SIGRTMAX -
    /// SIGRTMIN` (checked by [`SandboxConfig::validate`]).
    ///
    /// The signal is **one per process**: the first sandbox built installs its handler, for
    /// the life of the process, and a later sandbox asking for another offset fails with
    /// [`Error::KickSignalMismatch`]. A signal that already has a disposition other than
    /// `SIG_DFL` (the application's own handler, a library's, or `SIG_IGN`) is never replaced:
    /// building fails with [`Error::KickSignalInUse`], naming the signal; choose an offset the
    /// application does not use. The handler is installed on the building thread before any
    /// filtered thread of the sandbox exists; filtered threads cannot install signal handlers
    /// (`docs/security.md`).
    pub kick_signal_offset: u8,
    /// Where crash dumps go: with a directory set, every guest fault (an exception, a panic,
    /// heap exhaustion) writes an ELF core file of the guest into it before the call returns its
    /// error (see `docs/debugging.md`), named `hyperlight-<pid>-<n>.core`; the directory is
    /// created if missing. Default `None`: no dumps, unless the environment variable
    /// [`SandboxConfig::CRASH_DUMP_DIR_ENV`] names a directory (for operators).
    pub crash_dump_dir: Option<PathBuf>,
    /// Most bytes of guest memory one crash dump holds (the file adds headers and notes of a
    /// few KiB). Regions go in by priority (the image's first page, stack, image, boot info,
    /// buffers, heap, module); a
    /// region that no longer fits is left out, the stack keeps its top. Default 64 MiB, between
    /// [`SandboxConfig::MIN_CRASH_DUMP`] and [`SandboxConfig::MAX_CRASH_DUMP`].
    pub crash_dump_max_size: u64,
    /// With a port, the sandbox has a gdb stub (cargo feature `gdb`; see `docs/debugging.md`):
    /// it listens on `127.0.0.1:port` from the build on, and the guest waits before its first
    /// call until gdb has connected and continued it. Breakpoints stop a call until gdb
    /// continues. Default `None`; one port per sandbox.
    #[cfg(feature = "gdb")]
    pub gdb_port: Option<u16>,
}

impl SandboxConfig {
    /// Upper limit of [`SandboxConfig::heap_size`]: 768 MiB.
    pub const MAX_HEAP: u64 = 768 << 20;
    /// Upper limit of [`SandboxConfig::stack_size`]: 64 MiB.
    pub const MAX_STACK: u64 = 64 << 20;
    /// Upper limit of the input and output buffer sizes: 64 MiB each.
    pub const MAX_BUFFER: u64 = 64 << 20;
    /// Upper limit of [`SandboxConfig::max_guest_file`] and of the loaded image: 64 MiB.
    pub const MAX_GUEST_FILE: u64 = 64 << 20;
    /// Upper limit of [`SandboxConfig::max_module_size`]: 256 MiB.
    pub const MAX_MODULE: u64 = 256 << 20;
    /// Upper limit of [`SandboxConfig::poll_window`]: 10 ms.
    pub const MAX_POLL_WINDOW: Duration = Duration::from_millis(10);
    /// Upper limit of [`SandboxConfig::spin_wait`]: 10 ms.
    pub const MAX_SPIN_WAIT: Duration = Duration::from_millis(10);
    /// Upper limit of [`SandboxConfig::init_timeout`]: 10 minutes.
    pub const MAX_INIT_TIMEOUT: Duration = Duration::from_secs(600);
    /// Lower limit of [`SandboxConfig::thread_stack_size`]: 64 KiB.
    pub const MIN_THREAD_STACK: usize = 64 << 10;
    /// Lower limit of [`SandboxConfig::crash_dump_max_size`]: 64 KiB.
    pub const MIN_CRASH_DUMP: u64 = 64 << 10;
    /// Upper limit of [`SandboxConfig::crash_dump_max_size`]: 2 GiB (more than any guest's
    /// memory).
    pub const MAX_CRASH_DUMP: u64 = 2 << 30;
    /// The environment variable that turns crash dumps on for sandboxes whose configuration
    /// sets no [`SandboxConfig::crash_dump_dir`]: the directory to write them to.
    pub const CRASH_DUMP_DIR_ENV: &'static str = "HYPERLIGHT_CRASH_DUMP_DIR";
    /// Smallest size of each region: one page (the input buffer needs room for its header).
    pub const MIN_REGION: u64 = 4096;

    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), Error> {
        let check = |field: &'static str, value: u64, max: u64| {
            if value < Self::MIN_REGION {
                Err(Error::InvalidConfig {
                    field,
                    value,
                    reason: "smaller than one page",
                })
            } else if value > max {
                Err(Error::InvalidConfig {
                    field,
                    value,
                    reason: "above the hard upper limit",
                })
            } else {
                Ok(())
            }
        };
        check("heap_size", self.heap_size, Self::MAX_HEAP)?;
        check("stack_size", self.stack_size, Self::MAX_STACK)?;
        check("input_size", self.input_size, Self::MAX_BUFFER)?;
        check("output_size", self.output_size, Self::MAX_BUFFER)?;
        check("max_guest_file", self.max_guest_file, Self::MAX_GUEST_FILE)?;
        check("max_module_size", self.max_module_size, Self::MAX_MODULE)?;
        let check_duration = |field: &'static str, value: Duration, max: Duration| {
            if value > max {
                Err(Error::InvalidConfig {
                    field,
                    value: value.as_micros() as u64,
                    reason: "above the hard upper limit",
                })
            } else {
                Ok(())
            }
        };
        check_duration("spin_wait (µs)", self.spin_wait, Self::MAX_SPIN_WAIT)?;
        check_duration("poll_window (µs)", self.poll_window, Self::MAX_POLL_WINDOW)?;
        crate::vcpu::kick::signal_at(self.kick_signal_offset)?;
        if !(Self::MIN_CRASH_DUMP..=Self::MAX_CRASH_DUMP).contains(&self.crash_dump_max_size) {
            return Err(Error::InvalidConfig {
                field: "crash_dump_max_size",
                value: self.crash_dump_max_size,
                reason: "outside [MIN_CRASH_DUMP, MAX_CRASH_DUMP]",
            });
        }
        #[cfg(feature = "gdb")]
        if self.gdb_port == Some(0) {
            return Err(Error::InvalidConfig {
                field: "gdb_port",
                value: 0,
                reason: "port 0 is no port gdb could be told",
            });
        }
        if self.thread_stack_size < Self::MIN_THREAD_STACK {
            return Err(Error::InvalidConfig {
                field: "thread_stack_size",
                value: self.thread_stack_size as u64,
                reason: "below the lower limit",
            });
        }
        check_duration(
            "init_timeout (µs)",
            self.init_timeout,
            Self::MAX_INIT_TIMEOUT,
        )
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            heap_size: 4 << 20,
            stack_size: 256 << 10,
            input_size: 256 << 10,
            output_size: 256 << 10,
            max_guest_file: Self::MAX_GUEST_FILE,
            max_module_size: 16 << 20,
            spin_wait: Duration::from_micros(100),
            poll_window: Duration::ZERO,
            init_timeout: Duration::from_secs(10),
            hypervisor: HypervisorChoice::Auto,
            hypervisor_paths: HypervisorPaths::default(),
            thread_stack_size: 256 << 10,
            seccomp: SeccompPolicy::default(),
            kick_signal_offset: 0,
            crash_dump_dir: None,
            crash_dump_max_size: 64 << 20,
            #[cfg(feature = "gdb")]
            gdb_port: None,
        }
    }
}

impl SandboxConfig {
    /// The directory crash dumps go to: [`SandboxConfig::crash_dump_dir`], else the one the
    /// environment variable [`SandboxConfig::CRASH_DUMP_DIR_ENV`] names (if set and not
    /// empty), else `None` (no dumps).
    pub fn effective_crash_dump_dir(&self) -> Option<PathBuf> {
        self.crash_dump_dir.clone().or_else(|| {
            std::env::var_os(Self::CRASH_DUMP_DIR_ENV)
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        SandboxConfig::default().validate().unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let too_big = SandboxConfig {
            heap_size: SandboxConfig::MAX_HEAP + 1,
            ..SandboxConfig::default()
        };
        assert!(matches!(
            too_big.validate(),
            Err(Error::InvalidConfig {
                field: "heap_size",
                ..
            })
        ));
        let too_small = SandboxConfig {
            output_size: 0,
            ..SandboxConfig::default()
        };
        assert!(matches!(
            too_small.validate(),
            Err(Error::InvalidConfig {
                field: "output_size",
                ..
            })
        ));
        let past_sigrtmax = SandboxConfig {
            kick_signal_offset: (libc::SIGRTMAX() - libc::SIGRTMIN() + 1) as u8,
            ..SandboxConfig::default()
        };
        assert!(matches!(
            past_sigrtmax.validate(),
            Err(Error::InvalidConfig {
                field: "kick_signal_offset",
                ..
            })
        ));
        let last = SandboxConfig {
            kick_signal_offset: (libc::SIGRTMAX() - libc::SIGRTMIN()) as u8,
            ..SandboxConfig::default()
        };
        last.validate().unwrap();
        let tiny_dump = SandboxConfig {
            crash_dump_max_size: SandboxConfig::MIN_CRASH_DUMP - 1,
            ..SandboxConfig::default()
        };
        assert!(matches!(
            tiny_dump.validate(),
            Err(Error::InvalidConfig {
                field: "crash_dump_max_size",
                ..
            })
        ));
    }
}

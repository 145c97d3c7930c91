//! seccomp-BPF filters on the threads that act for a guest: each sandbox's vCPU thread (which
//! also runs the sync host functions inline) and the worker threads of host functions registered
//! with extra syscalls.
//!
//! A filter applies to one thread and to threads it creates, and can never be removed or widened:
//! if host code on a filtered thread is made to misbehave (a bug in a host function, in the
//! exit loop, in the FlatBuffers verifier), it still cannot open or map a file, create a socket,
//! start a process, map executable memory, install a signal handler, signal another thread with
//! anything but the kick signal, or issue a hypervisor ioctl of its own. See `docs/security.md`
//! for the threat model, and for what a filter does not give: every sandbox and the application
//! share one address space, and a filter limits system calls, not what memory code can reach.
//!
//! - **vCPU threads** run under [`vcpu_allowlist`] (plus the policy's `extra`) from their first
//!   instruction: they are started by a spawner thread that installed the filter once
//!   (`vcpu/factory.rs`) and inherit it. The thread that builds the sandbox (not filtered) creates
//!   the VM, its vCPU and memory and installs the kick signal's handler; the vCPU thread runs
//!   the guest, its init included. What it may not do itself (build a new VM for a restore,
//!   make a snapshot's memfd) it hands to an unfiltered helper thread (`helper_threads`).
//!   Inheriting shares one kernel copy of the program among all vCPU threads; attaching it per
//!   thread cost ~115 µs of kernel time each and one JIT'd program per live thread.
//! - **The gate.** The hypervisor and write-tracking ioctls of a running sandbox are allowed
//!   only from one `syscall` instruction of the runtime (`seccomp/gate.rs`), checked on
//!   `seccomp_data.instruction_pointer` by instructions put before seccompiler's program
//!   (`gate_prelude`): a sync host function that calls `ioctl` itself gets the denial, and
//!   still runs inline, with no thread hop.
//! - A **host function registered with extra syscalls**
//!   ([`crate::SandboxBuilder::host_fn_with_syscalls`]) runs on a worker thread of its own, from
//!   a spawner whose filter is [`host_fn_allowlist`] (no ioctl at all) plus those syscalls.
//!   Workers are not started by the vCPU thread, so they do not inherit its filter.
//! - Threads so started may start threads themselves (`clone` with `CLONE_THREAD`: threads of
//!   this process, under the same filter), nothing else: `fork`, `vfork` and `clone` without
//!   `CLONE_THREAD` are denied, and `clone3`, whose flags a filter cannot read, fails with
//!   `ENOSYS` (glibc then falls back to `clone`).
//! - A syscall outside the list fails with `EPERM` by default ([`OnDenied`]): the host code sees
//!   an ordinary error. Killing instead would take down every sandbox of the process.

mod filter;
pub(crate) mod gate;
mod workers;

use std::collections::HashMap;
use std::sync::{Mutex, Once, OnceLock};

use seccompiler::SeccompAction;

use crate::error::Error;
use crate::vcpu::factory::ThreadFactory;

use filter::apply;
pub use filter::{compile, host_fn_allowlist, vcpu_allowlist, Allowed, Filter};
pub(crate) use workers::start_host_workers;

/// Which threads of a sandbox run under a seccomp filter, and with what. Part of
/// [`SandboxConfig`](crate::SandboxConfig); the default is [`SeccompPolicy::enabled`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeccompPolicy {
    /// The vCPU thread runs under [`vcpu_allowlist`] plus `extra`; host functions registered
    /// with extra syscalls run on worker threads under [`host_fn_allowlist`] plus `extra` plus
    /// their own.
    Enabled {
        /// Syscall numbers (`libc::SYS_*`) allowed on the vCPU thread beyond the default list,
        /// with any arguments, and so to every sync host function that runs inline there.
        /// Prefer [`crate::SandboxBuilder::host_fn_with_syscalls`], which widens the filter of
        /// one function only.
        extra: Vec<i64>,
        /// What a syscall outside the list does.
        on_denied: OnDenied,
    },
    /// No filter at all: the opt-out, for hosts that confine the whole process another way
    /// (or that run on a kernel without seccomp). Host functions registered with extra syscalls
    /// then run inline like the others.
    Disabled,
}

impl SeccompPolicy {
    /// The default: the filter on, nothing beyond the default list, `EPERM` for the rest.
    pub fn enabled() -> Self {
        SeccompPolicy::Enabled {
            extra: Vec::new(),
            on_denied: OnDenied::default(),
        }
    }
}

/// Environment variable an operator sets to `off` to make the *default* policy
/// [`SeccompPolicy::Disabled`]: for hosts whose kernel cannot attach filters (no seccomp, or a
/// kernel whose BPF JIT is stuck, where every attach would block forever). Policies set
/// explicitly are not affected. The first sandbox built without a filter because of it logs a
/// warning.
pub const SECCOMP_ENV: &str = "HYPERLIGHT_SECCOMP";

/// Whether the operator turned the default filter off with [`SECCOMP_ENV`]`=off`.
pub fn default_disabled_by_env() -> bool {
    std::env::var(SECCOMP_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off"))
}

impl Default for SeccompPolicy {
    /// [`SeccompPolicy::enabled`], unless [`SECCOMP_ENV`] is `off`.
    fn default() -> Self {
        if default_disabled_by_env() {
            Self::Disabled
        } else {
            Self::enabled()
        }
    }
}

/// Logs one warning per process when a sandbox is built without a filter while
/// [`SECCOMP_ENV`]`=off` is in effect (so the default policy is off because of it).
pub(crate) fn warn_if_disabled_by_env(policy: &SeccompPolicy) {
    static WARNED: Once = Once::new();
    if *policy == SeccompPolicy::Disabled && default_disabled_by_env() {
        WARNED.call_once(|| {
            tracing::warn!(
                "{SECCOMP_ENV}=off: sandboxes with the default seccomp policy run without a \
                 filter; their vCPU threads and host functions are not confined"
            );
        });
    }
}

/// What the kernel does when a filtered thread makes a syscall outside its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnDenied {
    /// The syscall fails with this `errno` and does nothing (default `EPERM`): the host code
    /// gets an ordinary I/O error (`std::fs::File::open` returns `Err`), so a host function
    /// that tries something it may not fails on its own, and the process carries on.
    Errno(i32),
    /// The syscall runs and the kernel logs it (audit log / `dmesg`): for finding out which
    /// syscalls a host function needs. No protection.
    Log,
    /// The kernel kills the whole process with `SIGSYS`, every other sandbox with it. For hosts
    /// that would rather die than run on after host code was subverted.
    KillProcess,
}

impl Default for OnDenied {
    fn default() -> Self {
        OnDenied::Errno(libc::EPERM)
    }
}

impl From<OnDenied> for SeccompAction {
    fn from(on_denied: OnDenied) -> Self {
        match on_denied {
            OnDenied::Errno(errno) => SeccompAction::Errno(errno as u32),
            OnDenied::Log => SeccompAction::Log,
            OnDenied::KillProcess => SeccompAction::KillProcess,
        }
    }
}

/// spawner thread and one waiting thread for the life of the process.
const MAX_FACTORIES: usize = 64;

/// The factory of threads named `name` with `stack` bytes of stack that run under `filter`
/// plus `extra` with `on_denied` (`None`: unfiltered): one per distinct combination per
/// process, started on first use and kept for the life of the process. Compiling and
/// installing the filter happen once, on the factory's spawner thread, which inherits the
/// filter of the thread that calls this first: call it for an unfiltered factory from an
/// unfiltered thread. The kick signal's handler must be installed before (a filtered thread
/// can install none, and the filter allows signalling with the kick signal of that moment).
fn factory(
    filter: Option<(Filter, OnDenied, &[i64])>,
    name: &'static str,
    stack: usize,
) -> Result<&'static ThreadFactory, Error> {
    type Key = (Option<(Filter, OnDenied, Vec<i64>)>, &'static str, usize);
    static FACTORIES: OnceLock<Mutex<HashMap<Key, &'static ThreadFactory>>> = OnceLock::new();
    let filter = filter.map(|(filter, on_denied, extra)| {
        let mut extra = extra.to_vec();
        extra.sort_unstable();
        extra.dedup();
        (filter, on_denied, extra)
    });
    let key = (filter, name, stack);
    let mut factories = FACTORIES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(factory) = factories.get(&key) {
        return Ok(factory);
    }
    if factories.len() >= MAX_FACTORIES {
        return Err(Error::InvalidConfig {
            field: "distinct seccomp policies and thread stack sizes in one process",
            value: factories.len() as u64 + 1,
            reason: "at most 64",
        });
    }
    let program = match &key.0 {
        Some((filter, on_denied, extra)) => Some(compile(*filter, *on_denied, extra)?),
        None => None,
    };
    let factory = ThreadFactory::start(name, stack, move || {
        let Some(program) = program else {
            return Ok(());
        };
        // Process-wide lazy state that reads files the filter denies: compute it now. The
        // polling limit of vcpu/spin.rs is the number of CPUs (cgroup files, /proc).
        drop(crate::vcpu::spin::Spinner::new(std::time::Duration::from_nanos(1)).begin());
        apply(&program)
    })?;
    // Kept for the life of the process, like the threads it starts.
    let factory: &'static ThreadFactory = Box::leak(Box::new(factory));
    factories.insert(key, factory);
    Ok(factory)
}

/// The factory of vCPU threads under `policy`, with `stack` bytes of stack.
pub(crate) fn vcpu_threads(
    policy: &SeccompPolicy,
    stack: usize,
) -> Result<&'static ThreadFactory, Error> {
    let filter = match policy {
        SeccompPolicy::Enabled { extra, on_denied } => {
            Some((Filter::VcpuThread, *on_denied, extra.as_slice()))
        }
        SeccompPolicy::Disabled => None,
    };
    factory(filter, "hyperlight-vcpu", stack)
}

/// Stack size of helper threads: they build a VM or a memfd and return.
const HELPER_STACK: usize = 256 << 10;

/// The factory of unfiltered helper threads, which do for a vCPU thread what its filter does
/// not allow (build a VM from a snapshot, make a snapshot's memfd). Call it first from an
/// unfiltered thread (the one that builds a sandbox), so that its spawner is unfiltered.
pub(crate) fn helper_threads() -> Result<&'static ThreadFactory, Error> {
    factory(None, "hyperlight-helper", HELPER_STACK)
}

/// The seccomp mode of thread `tid` of this process, from `/proc`: 0 none, 1 strict, 2 filter.
/// For tests and diagnostics.
pub fn thread_seccomp_mode(tid: i32) -> Option<u8> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .and_then(|mode| mode.trim().parse().ok())
}

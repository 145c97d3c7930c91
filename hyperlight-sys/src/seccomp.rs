//! seccomp-BPF filters on the threads that act for a guest: each sandbox's vCPU thread (which
//! also runs the sync host functions inline) and the worker threads of host functions registered
//! with extra syscalls.
//!
//! A filter applies to one thread and to threads it creates, and can never be removed or widened:
//! if host code on a filtered thread is made to misbehave (a bug in a host function, in the
//! exit loop, in the FlatBuffers verifier), it still cannot open a file, create a socket, start a
//! process or map executable memory. See `docs/security.md` for the threat model.
//!
//! - The **vCPU thread** installs [`vcpu_allowlist`] (plus the policy's `extra`)
//!   right after it starts, before it creates the VM (or takes over one built from a snapshot),
//!   so before the guest's first instruction.
//! - A **host function registered with extra syscalls**
//!   ([`crate::SandboxBuilder::host_fn_with_syscalls`]) runs on a worker thread of its own, started
//!   when the sandbox is built, whose filter is the same allowlist plus those syscalls. Workers
//!   are started by the building thread, not by the vCPU thread, so they do not inherit the
//!   vCPU thread's narrower filter.
//! - A syscall outside the list fails with `EPERM` by default ([`OnDenied`]): the host code sees
//!   an ordinary error. Killing instead would take down every sandbox of the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use hyperlight_schema::Value;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::Error;
use crate::host_fn::{DynHostFn, HostFunctions};

/// Which threads of a sandbox run under a seccomp filter, and with what. Part of
/// [`SandboxConfig`](crate::SandboxConfig); the default is [`SeccompPolicy::enabled`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeccompPolicy {
    /// The vCPU thread runs under [`vcpu_allowlist`] plus `extra`; host functions registered
    /// with extra syscalls run on worker threads under the same list plus their own.
    Enabled {
        /// Syscall numbers (`libc::SYS_*`) allowed on the vCPU thread beyond the default list,
        /// and so to every sync host function that runs inline there. Prefer
        /// [`crate::SandboxBuilder::host_fn_with_syscalls`], which widens the filter of one
        /// function only.
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
/// explicitly are not affected.
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

/// `ioctl` type of KVM (`KVMIO`): every `/dev/kvm`, VM and vCPU ioctl has it in bits 8..16.
const KVMIO: u64 = 0xae;
/// `ioctl` type of mshv (`MSHV_IOCTL`).
const MSHV_IOCTL: u64 = 0xb8;

/// A syscall on the default list: its number, its name, the argument condition (if any) and
/// why the vCPU thread needs it.
#[derive(Clone, Debug)]
pub struct Allowed {
    /// `libc::SYS_*`.
    pub nr: i64,
    /// Its name.
    pub name: &'static str,
    /// The restriction on its arguments, if it is allowed only with some.
    pub only: Option<&'static str>,
    /// What needs it.
    pub why: &'static str,
}

/// Every syscall the vCPU thread may make: the default allowlist, measured with `strace -f` on
/// the test suite's vCPU threads (see `docs/security.md`). Host-function workers get the same
/// list plus their own extras.
pub fn vcpu_allowlist() -> Vec<Allowed> {
    macro_rules! allow {
        ($($nr:ident $(if $only:literal)? => $why:literal,)*) => {
            vec![$(Allowed {
                nr: libc::$nr,
                name: &stringify!($nr)[4..],
                only: None $(.or(Some($only)))?,
                why: $why,
            }),*]
        };
    }
    allow! {
        SYS_ioctl if "KVM (type 0xAE) and mshv (type 0xB8) ioctls only" =>
            "create the VM, map its memory, run the vCPU, registers, dirty log, restore",
        SYS_memfd_create => "guest memory and snapshots are memfds (creation and restore)",
        SYS_ftruncate => "sizing those memfds",
        SYS_fcntl if "F_GETFD, F_SETFD, F_GETFL, F_ADD_SEALS, F_GET_SEALS" =>
            "kvm-ioctls checks the fds it wraps; snapshots seal their memfd",
        SYS_pwrite64 => "writing a snapshot's pages into its memfd",
        SYS_close => "dropping a VM, a vCPU, guest memory",
        SYS_mmap if "not PROT_EXEC" => "guest memory, the vCPU's kvm_run page, the allocator",
        SYS_mprotect if "not PROT_EXEC" => "the allocator (glibc grows thread arenas with it)",
        SYS_munmap => "dropping guest memory, the allocator, thread exit",
        SYS_mremap => "the allocator (realloc of large blocks)",
        SYS_madvise => "the allocator, resetting guest memory, thread exit",
        SYS_brk => "the allocator (main arena)",
        SYS_mincore => "snapshots: which pages of guest memory were ever touched",
        SYS_futex => "channels to the owner, mutexes, thread parking and join",
        SYS_sched_yield => "polling waits (spin.rs) and channel back-off",
        SYS_nanosleep => "std::thread::sleep",
        SYS_clock_nanosleep => "std::thread::sleep",
        SYS_clock_gettime => "Instant::now when the vDSO is unavailable",
        SYS_gettimeofday => "SystemTime::now when the vDSO is unavailable",
        SYS_sched_getaffinity => "std::thread::available_parallelism",
        SYS_getrandom => "HashMap seeds of the thread",
        SYS_gettid => "std and tracing thread ids",
        SYS_getpid => "std::process::id, abort",
        SYS_rt_sigreturn => "return from the kick signal handler",
        SYS_restart_syscall => "a wait interrupted by the kick signal resumes",
        SYS_rt_sigprocmask => "glibc at thread exit and in abort",
        SYS_rt_sigaction if "the kick signal (SIGRTMIN) only" =>
            "the first vCPU of the process installs the kick handler",
        SYS_sigaltstack => "Rust's stack-overflow handler, torn down at thread exit",
        SYS_tgkill if "to this process only" => "abort (raise) after a panic in a panic",
        SYS_write => "tracing subscribers, panic messages, waking an async runtime (eventfd)",
        SYS_writev => "the same, vectored",
        SYS_exit => "thread exit",
        SYS_exit_group => "process exit (abort)",
    }
}

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    // Only fails for an argument index above 5; ours are all constants below.
    SeccompCondition::new(arg, len, op, value).expect("valid seccomp condition")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    // Only fails for an empty condition list; every caller passes one or more.
    SeccompRule::new(conditions).expect("non-empty seccomp rule")
}

/// The argument rules of the syscalls that are allowed only with some arguments.
fn conditional_rules(nr: i64) -> Vec<SeccompRule> {
    use SeccompCmpArgLen::{Dword, Qword};
    use SeccompCmpOp::{Eq, MaskedEq};
    let prot_not_exec = || rule(vec![cond(2, Qword, MaskedEq(libc::PROT_EXEC as u64), 0)]);
    match nr {
        libc::SYS_ioctl => [KVMIO, MSHV_IOCTL]
            .iter()
            .map(|kind| rule(vec![cond(1, Dword, MaskedEq(0xff00), kind << 8)]))
            .collect(),
        libc::SYS_fcntl => [
            libc::F_GETFD,
            libc::F_SETFD,
            libc::F_GETFL,
            libc::F_ADD_SEALS,
            libc::F_GET_SEALS,
        ]
        .iter()
        .map(|&cmd| rule(vec![cond(1, Dword, Eq, cmd as u64)]))
        .collect(),
        libc::SYS_mmap | libc::SYS_mprotect => vec![prot_not_exec()],
        libc::SYS_rt_sigaction => {
            vec![rule(vec![cond(
                0,
                Dword,
                Eq,
                crate::kick::kick_signal() as u64,
            )])]
        }
        libc::SYS_tgkill => vec![rule(vec![cond(0, Dword, Eq, std::process::id().into())])],
        _ => Vec::new(),
    }
}

/// Compiles the filter of a thread: the default list plus `extra` (syscalls in `extra` are
/// allowed with any arguments).
pub fn compile(on_denied: OnDenied, extra: &[i64]) -> Result<BpfProgram, Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = vcpu_allowlist()
        .into_iter()
        .map(|a| (a.nr, conditional_rules(a.nr)))
        .collect();
    for &nr in extra {
        if !(0..1024).contains(&nr) {
            return Err(Error::InvalidConfig {
                field: "seccomp extra syscall",
                value: nr as u64,
                reason: "not an x86_64 syscall number",
            });
        }
        rules.insert(nr, Vec::new());
    }
    let mismatch = match on_denied {
        OnDenied::Errno(errno) => SeccompAction::Errno(errno as u32),
        OnDenied::Log => SeccompAction::Log,
        OnDenied::KillProcess => SeccompAction::KillProcess,
    };
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .and_then(BpfProgram::try_from)
        .map_err(|e| Error::Os {
            op: "compile seccomp filter",
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(filter)
}

/// [`compile`], remembered per policy: compiling costs far more than installing, and nearly every
/// sandbox of a process uses the same policy. At most 64 distinct policies are remembered.
pub fn compile_cached(on_denied: OnDenied, extra: &[i64]) -> Result<Arc<BpfProgram>, Error> {
    type Cache = Mutex<HashMap<(OnDenied, Vec<i64>), Arc<BpfProgram>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut key_extra = extra.to_vec();
    key_extra.sort_unstable();
    key_extra.dedup();
    let key = (on_denied, key_extra);
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(program) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(program.clone());
    }
    let program = Arc::new(compile(on_denied, extra)?);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() < 64 {
        cache.insert(key, program.clone());
    }
    Ok(program)
}

/// Installs `program` on the calling thread, for good.
fn apply(program: &BpfProgram) -> Result<(), Error> {
    seccompiler::apply_filter(program).map_err(|e| Error::Os {
        op: "install seccomp filter",
        source: match e {
            seccompiler::Error::Prctl(source) | seccompiler::Error::Seccomp(source) => source,
            other => std::io::Error::other(other.to_string()),
        },
    })
}

/// Installs the vCPU thread's filter on the calling thread (a no-op for
/// [`SeccompPolicy::Disabled`]). Called by the vCPU thread before it creates the VM.
pub(crate) fn install_vcpu_filter(policy: &SeccompPolicy) -> Result<(), Error> {
    let SeccompPolicy::Enabled { extra, on_denied } = policy else {
        return Ok(());
    };
    let program = compile_cached(*on_denied, extra)?;
    // Process-wide lazy state that reads files the filter denies: compute it now. The polling
    // limit of spin.rs is the number of CPUs (cgroup files, /proc).
    drop(crate::spin::Spinner::new(std::time::Duration::from_nanos(1)).begin());
    apply(&program)
}

/// A worker thread running one host function under its own filter.
struct Worker {
    jobs: Option<flume::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Outcome = std::thread::Result<Result<Value, String>>;

struct Job {
    args: Vec<Value>,
    reply: flume::Sender<Outcome>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the worker's loop.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Worker {
    /// Starts the worker of `f` under the default list plus `extra` (the policy's and the
    /// function's own), and waits until its filter is installed.
    fn spawn(
        name: &str,
        f: DynHostFn,
        on_denied: OnDenied,
        extra: Vec<i64>,
    ) -> Result<Self, Error> {
        let program = compile_cached(on_denied, &extra)?;
        let (jobs, queue) = flume::bounded::<Job>(1);
        let (ready_tx, ready) = flume::bounded(1);
        let thread = std::thread::Builder::new()
            .name("hyperlight-hfn".into())
            .spawn(move || {
                let installed = apply(&program);
                let ok = installed.is_ok();
                let _ = ready_tx.send(installed);
                if !ok {
                    return;
                }
                while let Ok(Job { args, reply }) = queue.recv() {
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(args)));
                    let _ = reply.send(outcome);
                }
            })
            .map_err(|source| Error::Os {
                op: "spawn host-function worker thread",
                source,
            })?;
        let mut worker = Worker {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        match ready.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                worker.jobs = None;
                Err(Error::Os {
                    op: "start host-function worker thread",
                    source: std::io::Error::other(format!("worker of {name:?} died")),
                })
            }
        }
    }

    /// Runs `args` on the worker and waits for the outcome; a panic there resumes here (so the
    /// caller's `catch_unwind` reports it as a panic of the host function).
    fn call(&self, args: Vec<Value>) -> Result<Value, String> {
        let gone = || String::from("its worker thread is gone");
        let (reply, outcome) = flume::bounded(1);
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Job { args, reply })
            .map_err(|_| gone())?;
        match outcome.recv() {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(gone()),
        }
    }
}

/// The host functions a vCPU thread runs: `functions` with each function registered with
/// extra syscalls replaced by a stub that hands the call to its own worker thread, started
/// here (on the building thread). Under [`SeccompPolicy::Disabled`], or when no function has
/// extra syscalls, `functions` itself. The workers end when the returned set is dropped.
pub(crate) fn start_host_workers(
    functions: &Arc<HostFunctions>,
    policy: &SeccompPolicy,
) -> Result<Arc<HostFunctions>, Error> {
    let SeccompPolicy::Enabled { extra, on_denied } = policy else {
        return Ok(functions.clone());
    };
    let with_syscalls: HashMap<String, Vec<i64>> = functions.extra_syscalls().clone();
    if with_syscalls.is_empty() {
        return Ok(functions.clone());
    }
    let mut started = (**functions).clone();
    for (name, own) in with_syscalls {
        let Some(f) = functions.get(&name) else {
            continue;
        };
        let all: Vec<i64> = extra.iter().chain(&own).copied().collect();
        let worker = Worker::spawn(&name, f.clone(), *on_denied, all)?;
        let stub: DynHostFn = Arc::new(move |args| worker.call(args));
        started.replace_runner(&name, stub);
    }
    Ok(Arc::new(started))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_compiles_and_rejects_bad_extras() {
        let program = compile(OnDenied::default(), &[]).unwrap();
        assert!(!program.is_empty() && program.len() < 4096);
        assert!(compile(OnDenied::KillProcess, &[libc::SYS_openat]).is_ok());
        assert!(matches!(
            compile(OnDenied::default(), &[-1]),
            Err(Error::InvalidConfig { .. })
        ));
    }

    #[test]
    fn allowlist_excludes_what_a_subverted_thread_would_want() {
        let list = vcpu_allowlist();
        for forbidden in [
            libc::SYS_open,
            libc::SYS_openat,
            libc::SYS_openat2,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_ptrace,
            libc::SYS_process_vm_writev,
            libc::SYS_kill,
            libc::SYS_read,
            libc::SYS_seccomp,
            libc::SYS_prctl,
        ] {
            assert!(list.iter().all(|a| a.nr != forbidden), "{forbidden}");
        }
    }

    #[test]
    fn filter_denies_on_this_thread_only() {
        if default_disabled_by_env() {
            eprintln!("{SECCOMP_ENV}=off: this kernel cannot attach filters; not attaching one");
            return;
        }
        let tid = std::thread::spawn(|| {
            install_vcpu_filter(&SeccompPolicy::enabled()).unwrap();
            let denied = std::fs::File::open("/etc/hostname").unwrap_err();
            assert_eq!(denied.raw_os_error(), Some(libc::EPERM));
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            // Allowed: memory, time, threads' own exit.
            let v = vec![0u8; 1 << 20];
            assert_eq!(v.len(), 1 << 20);
            let _ = std::time::Instant::now();
            tid
        })
        .join()
        .unwrap();
        assert!(tid > 0);
        // This thread is not filtered.
        std::fs::File::open("/proc/self/status").unwrap();
    }
}

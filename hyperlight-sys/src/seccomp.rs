//! seccomp-BPF filters on the threads that act for a guest: each sandbox's vCPU thread (which
//! also runs the sync host functions inline) and the worker threads of host functions registered
//! with extra syscalls.
//!
//! A filter applies to one thread and to threads it creates, and can never be removed or widened:
//! if host code on a filtered thread is made to misbehave (a bug in a host function, in the
//! exit loop, in the FlatBuffers verifier), it still cannot open a file, create a socket, start a
//! process or map executable memory. See `docs/security.md` for the threat model.
//!
//! - **vCPU threads** run under [`vcpu_allowlist`] (plus the policy's `extra`) from their first
//!   instruction: they are started by a spawner thread that installed the filter once
//!   (`threads.rs`) and inherit it, before they create the VM (or take over one built from
//!   a snapshot), so before the guest's first instruction. Inheriting shares one kernel copy of
//!   the program among all of them; attaching it per thread cost ~115 µs of kernel time each
//!   and one JIT'd program per live thread.
//! - A **host function registered with extra syscalls**
//!   ([`crate::SandboxBuilder::host_fn_with_syscalls`]) runs on a worker thread of its own, from
//!   a spawner whose filter is the same allowlist plus those syscalls. Workers are not started by
//!   the vCPU thread, so they do not inherit its narrower filter.
//! - Threads so started may start threads themselves (`clone` with `CLONE_THREAD`: threads of
//!   this process, under the same filter), nothing else: `fork`, `vfork` and `clone` without
//!   `CLONE_THREAD` are denied, and `clone3`, whose flags a filter cannot read, fails with
//!   `ENOSYS` (glibc then falls back to `clone`).
//! - A syscall outside the list fails with `EPERM` by default ([`OnDenied`]): the host code sees
//!   an ordinary error. Killing instead would take down every sandbox of the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use hyperlight_schema::Value;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::dirty::{PAGEMAP_SCAN, UFFDIO_REGISTER, UFFDIO_WRITEPROTECT};
use crate::error::Error;
use crate::host_fn::{DynHostFn, HostFunctions};
use crate::threads::ThreadFactory;

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
        SYS_ioctl if "KVM (type 0xAE) and mshv (type 0xB8) ioctls; UFFDIO_REGISTER, UFFDIO_WRITEPROTECT, PAGEMAP_SCAN" =>
            "create the VM, map its memory, run the vCPU, registers, write tracking, restore",
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
        SYS_clone if "CLONE_THREAD set: a thread of this process, under this filter" =>
            "the spawner thread starts vCPU and worker threads (threads.rs)",
        SYS_set_robust_list => "thread start (glibc)",
        SYS_rseq => "thread start (glibc registers restartable sequences)",
        SYS_prctl if "PR_SET_NAME only" => "a new thread names itself",
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
            .chain(
                [UFFDIO_REGISTER, UFFDIO_WRITEPROTECT, PAGEMAP_SCAN]
                    .iter()
                    .map(|&request| rule(vec![cond(1, Dword, Eq, request)])),
            )
            .collect(),
        libc::SYS_clone => vec![rule(vec![cond(
            0,
            Qword,
            MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )])],
        libc::SYS_prctl => vec![rule(vec![cond(0, Dword, Eq, libc::PR_SET_NAME as u64)])],
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
/// allowed with any arguments), with `clone3` answered `ENOSYS` (see the module docs).
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
    Ok(clone3_enosys().into_iter().chain(filter).collect())
}

/// Instructions that make `clone3` fail with `ENOSYS` whatever the rest of the filter says
/// (its flags are in memory, out of a filter's reach, so it cannot be allowed for threads only;
/// glibc's `pthread_create` falls back to `clone` on `ENOSYS` and on nothing else). Put before
/// the program seccompiler generates, which begins by loading what it checks itself.
fn clone3_enosys() -> [sock_filter; 3] {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    [
        // seccomp_data.nr is at offset 0.
        insn(LD_W_ABS, 0, 0, 0),
        insn(JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
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

/// Most distinct (filter, thread name, stack size) factories a process may use; each keeps a
/// spawner thread and one waiting thread for the life of the process.
const MAX_FACTORIES: usize = 64;

/// The factory of threads named `name` with `stack` bytes of stack that run under the default
/// list plus `extra` with `on_denied` (`None`: unfiltered): one per distinct combination per
/// process, started on first use and kept for the life of the process. Compiling and
/// installing the filter happen once, on the factory's spawner thread.
fn factory(
    filter: Option<(OnDenied, &[i64])>,
    name: &'static str,
    stack: usize,
) -> Result<&'static ThreadFactory, Error> {
    type Key = (Option<(OnDenied, Vec<i64>)>, &'static str, usize);
    static FACTORIES: OnceLock<Mutex<HashMap<Key, &'static ThreadFactory>>> = OnceLock::new();
    let filter = filter.map(|(on_denied, extra)| {
        let mut extra = extra.to_vec();
        extra.sort_unstable();
        extra.dedup();
        (on_denied, extra)
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
        Some((on_denied, extra)) => Some(compile(*on_denied, extra)?),
        None => None,
    };
    let factory = ThreadFactory::start(name, stack, move || {
        let Some(program) = program else {
            return Ok(());
        };
        // Process-wide lazy state that reads files the filter denies: compute it now. The
        // polling limit of spin.rs is the number of CPUs (cgroup files, /proc).
        drop(crate::spin::Spinner::new(std::time::Duration::from_nanos(1)).begin());
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
        SeccompPolicy::Enabled { extra, on_denied } => Some((*on_denied, extra.as_slice())),
        SeccompPolicy::Disabled => None,
    };
    factory(filter, "hyperlight-vcpu", stack)
}

/// A worker thread running one host function under its own filter.
struct Worker {
    calls: Option<flume::Sender<HostCall>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Outcome = std::thread::Result<Result<Value, String>>;

struct HostCall {
    args: Vec<Value>,
    reply: flume::Sender<Outcome>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the worker's loop.
        drop(self.calls.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Worker {
    /// Starts the worker of `f` on a thread of `factory`, which is already filtered.
    fn spawn(f: DynHostFn, factory: &ThreadFactory) -> Result<Self, Error> {
        let (calls, queue) = flume::bounded::<HostCall>(1);
        let thread = factory.run(Box::new(move || {
            while let Ok(HostCall { args, reply }) = queue.recv() {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(args)));
                let _ = reply.send(outcome);
            }
        }))?;
        Ok(Worker {
            calls: Some(calls),
            thread: Some(thread),
        })
    }

    /// Runs `args` on the worker and waits for the outcome; a panic there resumes here (so the
    /// caller's `catch_unwind` reports it as a panic of the host function).
    fn call(&self, args: Vec<Value>) -> Result<Value, String> {
        let gone = || String::from("its worker thread is gone");
        let (reply, outcome) = flume::bounded(1);
        self.calls
            .as_ref()
            .ok_or_else(gone)?
            .send(HostCall { args, reply })
            .map_err(|_| gone())?;
        match outcome.recv() {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(gone()),
        }
    }
}

/// The host functions a vCPU thread runs: `functions` with each function registered with
/// extra syscalls replaced by a stub that hands the call to its own worker thread (with `stack`
/// bytes of stack), started here. Under [`SeccompPolicy::Disabled`], or when no function has
/// extra syscalls, `functions` itself. The workers end when the returned set is dropped.
pub(crate) fn start_host_workers(
    functions: &Arc<HostFunctions>,
    policy: &SeccompPolicy,
    stack: usize,
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
        let workers = factory(Some((*on_denied, &all)), "hyperlight-hfn", stack)?;
        let worker = Worker::spawn(f.clone(), workers)?;
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
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_process_vm_writev,
            libc::SYS_kill,
            libc::SYS_read,
            libc::SYS_seccomp,
        ] {
            assert!(list.iter().all(|a| a.nr != forbidden), "{forbidden}");
        }
        // Allowed only with arguments that keep to this process: new threads, thread names.
        for conditional in [libc::SYS_clone, libc::SYS_prctl, libc::SYS_ioctl] {
            let entry = list.iter().find(|a| a.nr == conditional).unwrap();
            assert!(entry.only.is_some(), "{}", entry.name);
            assert!(!conditional_rules(conditional).is_empty(), "{}", entry.name);
        }
    }

    #[test]
    fn factory_threads_inherit_the_filter_and_cannot_leave_the_process() {
        if default_disabled_by_env() {
            hyperlight_testing::skip(format!("{SECCOMP_ENV}=off: no seccomp filter to test"));
            return;
        }
        let factory = vcpu_threads(&SeccompPolicy::enabled(), 256 << 10).unwrap();
        let gettid = || {
            // SAFETY: gettid has no preconditions.
            unsafe { libc::gettid() }
        };
        let open = || std::fs::File::open("/etc/hostname").map_err(|e| e.raw_os_error());
        // Both threads stay alive until this thread has read their seccomp mode from /proc.
        let (release_tx, release) = flume::bounded::<()>(0);
        let (tx, rx) = flume::bounded(1);
        let thread = factory
            .run(Box::new(move || {
                let denied = open();
                // Allowed: memory, time, and threads of this process, which inherit the filter.
                let v = vec![0u8; 1 << 20];
                let _ = std::time::Instant::now();
                let (child_tx, child_rx) = flume::bounded(1);
                let child_release = release.clone();
                let child = std::thread::spawn(move || {
                    child_tx.send((gettid(), open().err())).unwrap();
                    let _ = child_release.recv();
                });
                let child_seen = child_rx.recv().ok();
                // SAFETY: fork has no preconditions; were it allowed, the child exits at once.
                let fork = unsafe { libc::fork() };
                if fork == 0 {
                    // SAFETY: the forked child ends immediately, touching nothing.
                    unsafe { libc::_exit(0) };
                }
                let fork_errno = std::io::Error::last_os_error().raw_os_error();
                // SAFETY: clone3 with no arguments creates nothing; it only reports an error.
                let clone3 = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
                let clone3_errno = std::io::Error::last_os_error().raw_os_error();
                let report = (
                    gettid(),
                    denied.err(),
                    v.len(),
                    child_seen,
                    (fork, fork_errno),
                    (clone3, clone3_errno),
                );
                tx.send(report).unwrap();
                let _ = release.recv();
                child.join().unwrap();
            }))
            .unwrap();
        let (tid, open_errno, len, child, fork, clone3) = rx.recv().unwrap();
        let (child_tid, child_open_errno) = child.expect("the thread could start a thread");
        assert_eq!(thread_seccomp_mode(tid), Some(2), "the thread is filtered");
        assert_eq!(thread_seccomp_mode(child_tid), Some(2), "so is its child");
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(open_errno, Some(Some(libc::EPERM)), "open is denied");
        assert_eq!(
            child_open_errno,
            Some(Some(libc::EPERM)),
            "in the child too"
        );
        assert_eq!(len, 1 << 20);
        assert_eq!(fork, (-1, Some(libc::EPERM)), "no new processes");
        assert_eq!(clone3, (-1, Some(libc::ENOSYS)), "clone3 reports ENOSYS");
        // This thread is not filtered.
        std::fs::File::open("/proc/self/status").unwrap();
    }
}

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
//!   (`threads.rs`) and inherit it. The thread that builds the sandbox (not filtered) creates
//!   the VM, its vCPU and memory and installs the kick signal's handler; the vCPU thread runs
//!   the guest, its init included. What it may not do itself (build a new VM for a restore,
//!   make a snapshot's memfd) it hands to an unfiltered helper thread (`helper_threads`).
//!   Inheriting shares one kernel copy of the program among all vCPU threads; attaching it per
//!   thread cost ~115 µs of kernel time each and one JIT'd program per live thread.
//! - **The gate.** The hypervisor and write-tracking ioctls of a running sandbox are allowed
//!   only from one `syscall` instruction of the runtime (`gate.rs`), checked on
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Once, OnceLock};

use hyperlight_schema::Value;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::dirty::{PAGEMAP_SCAN, UFFDIO_WRITEPROTECT};
use crate::error::Error;
use crate::host_fn::{DynHostFn, HostFunctions};
use crate::threads::ThreadFactory;

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

/// The two filters of the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// A vCPU thread's: [`vcpu_allowlist`].
    VcpuThread,
    /// A host-function worker's: [`host_fn_allowlist`].
    HostFunction,
}

/// A syscall on a default list: its number, its name, the argument condition (if any) and
/// why the runtime needs it.
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

/// Every syscall a vCPU thread may make: the default allowlist, measured with `strace -f` on
/// the test suite's vCPU threads (see `docs/security.md`, which lists it, and a test that keeps
/// the two equal).
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
        SYS_ioctl if "only the requests of a running sandbox (KVM_RUN, KVM_GET/SET_REGS, KVM_GET/SET_SREGS, KVM_GET/SET_XSAVE, KVM_GET_DIRTY_LOG, UFFDIO_WRITEPROTECT, PAGEMAP_SCAN), and only from the syscall gate; with the mshv feature also MSHV_RUN_VP, MSHV_ROOT_HVCALL, MSHV_GET/SET_VP_STATE, MSHV_GET_GPAP_ACCESS_BITMAP, from anywhere" =>
            "run the vCPU, read and write its registers, list and protect written pages (restore, snapshots)",
        SYS_close => "dropping a VM, a vCPU, a snapshot's memfd",
        SYS_fcntl if "F_GETFD only" =>
            "std checks that an OwnedFd it drops is open (debug builds)",
        SYS_mmap if "MAP_ANONYMOUS without MAP_FIXED, not PROT_EXEC" =>
            "the allocator, thread stacks",
        SYS_mprotect if "not PROT_EXEC" => "the allocator (glibc grows thread arenas with it), stack guard pages",
        SYS_munmap => "dropping guest memory, the allocator, thread exit, a snapshot's writable mapping",
        SYS_madvise if "MADV_DONTNEED only" => "the allocator, thread exit (glibc frees stacks and arenas)",
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
        SYS_rt_sigprocmask => "unblocking the kick signal; glibc at thread exit and in abort",
        SYS_sigaltstack => "Rust's stack-overflow handler, torn down at thread exit",
        SYS_tgkill if "to this process, with the kick signal or SIGABRT" =>
            "InterruptHandle::kill from a host function; abort (raise) after a panic in a panic",
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

/// Every syscall a host-function worker may make besides its function's own: the vCPU list
/// without `ioctl` (a worker runs no vCPU, and tracks no writes).
pub fn host_fn_allowlist() -> Vec<Allowed> {
    vcpu_allowlist()
        .into_iter()
        .filter(|a| a.nr != libc::SYS_ioctl)
        .collect()
}

/// The ioctl requests a vCPU thread issues through the gate, each allowed from there only.
fn gated_ioctls() -> Vec<u64> {
    crate::hypervisor::kvm::vcpu_thread_ioctls()
        .iter()
        .map(|&(request, _)| request)
        .chain([UFFDIO_WRITEPROTECT, PAGEMAP_SCAN])
        .collect()
}

/// The ioctl requests a vCPU thread issues without the gate (mshv's go through the mshv-ioctls
/// crate, which calls `libc::ioctl`): allowed from anywhere.
#[cfg(feature = "mshv")]
fn ungated_ioctls() -> Vec<u64> {
    crate::hypervisor::mshv::vcpu_thread_ioctls()
        .iter()
        .map(|&(request, _)| request)
        .collect()
}

/// Without the mshv backend, none: every ioctl of a vCPU thread goes through the gate.
#[cfg(not(feature = "mshv"))]
fn ungated_ioctls() -> Vec<u64> {
    Vec::new()
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
    let prot_not_exec = || cond(2, Qword, MaskedEq(libc::PROT_EXEC as u64), 0);
    match nr {
        // The kernel reads the request as an unsigned int: compare the low 32 bits only.
        libc::SYS_ioctl => gated_ioctls()
            .into_iter()
            .chain(ungated_ioctls())
            .map(|request| rule(vec![cond(1, Dword, Eq, request)]))
            .collect(),
        libc::SYS_clone => vec![rule(vec![cond(
            0,
            Qword,
            MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )])],
        libc::SYS_prctl => vec![rule(vec![cond(0, Dword, Eq, libc::PR_SET_NAME as u64)])],
        // No file: the kernel ignores the fd of an anonymous mapping. No MAP_FIXED: nothing
        // is mapped over what exists (glibc uses it only to shrink a thread arena under
        // vm.overcommit_memory = 2, and keeps the memory when that fails).
        libc::SYS_mmap => vec![rule(vec![
            prot_not_exec(),
            cond(
                3,
                Dword,
                MaskedEq((libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64),
                libc::MAP_ANONYMOUS as u64,
            ),
        ])],
        libc::SYS_mprotect => vec![rule(vec![prot_not_exec()])],
        libc::SYS_fcntl => vec![rule(vec![cond(1, Dword, Eq, libc::F_GETFD as u64)])],
        libc::SYS_madvise => vec![rule(vec![cond(2, Dword, Eq, libc::MADV_DONTNEED as u64)])],
        libc::SYS_tgkill => [crate::kick::kick_signal(), libc::SIGABRT]
            .into_iter()
            .map(|signal| {
                rule(vec![
                    cond(0, Dword, Eq, std::process::id().into()),
                    cond(2, Dword, Eq, signal as u64),
                ])
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Compiles `filter` for a thread: its default list plus `extra` (syscalls in `extra` are
/// allowed with any arguments), with `clone3` answered `ENOSYS` and the gated ioctls allowed
/// from the gate only, even if `extra` allows `ioctl` (see the module docs). (No gated ioctl
/// is on a worker's list; its prelude only keeps an `extra` ioctl off the vCPUs.)
pub fn compile(filter: Filter, on_denied: OnDenied, extra: &[i64]) -> Result<BpfProgram, Error> {
    let list = match filter {
        Filter::VcpuThread => vcpu_allowlist(),
        Filter::HostFunction => host_fn_allowlist(),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = list
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
    let denied = SeccompAction::from(on_denied);
    let program = SeccompFilter::new(
        rules,
        denied.clone(),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| Error::Os {
        op: "compile seccomp filter",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(gate_prelude(&gated_ioctls(), u32::from(denied))
        .into_iter()
        .chain(fault_reset_kills(on_denied))
        .chain(clone3_enosys())
        .chain(program)
        .collect())
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Instructions that answer an `ioctl` whose request (its low 32 bits, all the kernel reads) is
/// one of `gated` with `denied` (the policy's action) unless it was made by the gate's `syscall`
/// instruction (`seccomp_data.instruction_pointer == gate::return_address()`); every other
/// system call, and a gated request from the gate, go on to the rest of the filter, which allows
/// exactly the requests the runtime makes. seccompiler cannot express a condition on the
/// instruction pointer, hence these.
///
/// The prelude only ever denies: a system call of another architecture whose number happens to
/// be `ioctl`'s is denied here or by seccompiler's architecture check after it.
fn gate_prelude(gated: &[u64], denied: u32) -> Vec<sock_filter> {
    // seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args[i] at 16 + 8 i
    // (little-endian: the low word first).
    const NR: u32 = 0;
    const IP_LOW: u32 = 8;
    const IP_HIGH: u32 = 12;
    const REQUEST_LOW: u32 = 24;
    let gate = crate::gate::return_address();
    let n = u8::try_from(gated.len()).expect("fewer than 256 gated requests");
    assert!(n < 240, "the prelude's jumps must fit a byte");
    // Instruction indices: 0..=6 below, 7..7+n the request checks, 7+n the jump past the
    // denial, 8+n the denial, 9+n the first instruction after the prelude. A jump offset
    // counts from the next instruction.
    let mut prelude = vec![
        insn(LD_W_ABS, 0, 0, NR),
        // 1: not an ioctl -> past the prelude.
        insn(JEQ_K, 0, 7 + n, libc::SYS_ioctl as u32),
        insn(LD_W_ABS, 0, 0, IP_LOW),
        // 3: another instruction -> check the request (6).
        insn(JEQ_K, 0, 2, gate as u32),
        insn(LD_W_ABS, 0, 0, IP_HIGH),
        // 5: the gate -> past the prelude; another instruction -> check the request.
        insn(JEQ_K, 3 + n, 0, (gate >> 32) as u32),
        insn(LD_W_ABS, 0, 0, REQUEST_LOW),
    ];
    // 7 + i: a gated request -> the denial (8 + n).
    prelude.extend(
        gated
            .iter()
            .zip(0..n)
            .map(|(&request, i)| insn(JEQ_K, n - i, 0, request as u32)),
    );
    prelude.push(insn(JA, 0, 0, 1));
    prelude.push(insn(RET_K, 0, 0, denied));
    prelude
}

/// The synchronous fault signals: the kernel raises them for the faulting instruction, and the
/// instruction faults again if the handler returns.
const FAULT_SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// Instructions that end the process when a filtered thread sets the action of a fault signal
/// (`rt_sigaction` of one of [`FAULT_SIGNALS`] with a non-NULL `act`), unless the policy only
/// logs denials. Host code that faults on a filtered thread (a host function's bug) reaches
/// Rust's handler, which resets the signal to `SIG_DFL` and returns so that the repeated fault
/// ends the process, as it would without a filter; denied, the reset would leave the thread
/// faulting forever. Ending the process at the reset is what the fault would do next, and it
/// also answers a deliberate attempt to install a fault handler (which a thread could then
/// trigger on an unfiltered thread by unmapping memory it uses). Every other `rt_sigaction`
/// goes on to the rest of the filter, which denies it.
fn fault_reset_kills(on_denied: OnDenied) -> Vec<sock_filter> {
    if on_denied == OnDenied::Log {
        return Vec::new();
    }
    // seccomp_data.args[0] (the signal) at 16, args[1] (`act`) at 24 (low word) and 28.
    const NR: u32 = 0;
    const SIGNAL: u32 = 16;
    const ACT_LOW: u32 = 24;
    const ACT_HIGH: u32 = 28;
    let kill = u32::from(SeccompAction::KillProcess);
    let [segv, bus, ill, fpe] = FAULT_SIGNALS.map(|signal| signal as u32);
    // Instruction indices: 11 is the kill, 12 the first instruction after the prelude. A jump
    // offset counts from the next instruction.
    vec![
        insn(LD_W_ABS, 0, 0, NR),
        // 1: not rt_sigaction -> past the prelude.
        insn(JEQ_K, 0, 10, libc::SYS_rt_sigaction as u32),
        insn(LD_W_ABS, 0, 0, SIGNAL),
        // 3..=6: a fault signal -> check `act` (7); another signal -> past the prelude.
        insn(JEQ_K, 3, 0, segv),
        insn(JEQ_K, 2, 0, bus),
        insn(JEQ_K, 1, 0, ill),
        insn(JEQ_K, 0, 5, fpe),
        insn(LD_W_ABS, 0, 0, ACT_LOW),
        // 8: low word not 0 -> the kill.
        insn(JEQ_K, 0, 2, 0),
        insn(LD_W_ABS, 0, 0, ACT_HIGH),
        // 10: NULL `act` (a query) -> past the prelude (denied there); else the kill.
        insn(JEQ_K, 1, 0, 0),
        insn(RET_K, 0, 0, kill),
    ]
}

/// Instructions that make `clone3` fail with `ENOSYS` whatever the rest of the filter says
/// (its flags are in memory, out of a filter's reach, so it cannot be allowed for threads only;
/// glibc's `pthread_create` falls back to `clone` on `ENOSYS` and on nothing else). Put before
/// the program seccompiler generates, which begins by loading what it checks itself.
fn clone3_enosys() -> [sock_filter; 3] {
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
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
                // Nobody waits (the sandbox is gone): a panic's payload is dropped here, where
                // its `Drop` must not end the worker.
                if let Err(Err(payload)) = reply.send(outcome).map_err(|e| e.into_inner()) {
                    crate::contain::discard(payload);
                }
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
        let workers = factory(
            Some((Filter::HostFunction, *on_denied, &all)),
            "hyperlight-hfn",
            stack,
        )?;
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
        for filter in [Filter::VcpuThread, Filter::HostFunction] {
            let program = compile(filter, OnDenied::default(), &[]).unwrap();
            assert!(!program.is_empty() && program.len() < 4096);
            assert!(compile(filter, OnDenied::KillProcess, &[libc::SYS_openat]).is_ok());
            assert!(matches!(
                compile(filter, OnDenied::default(), &[-1]),
                Err(Error::InvalidConfig { .. })
            ));
        }
    }

    /// Runs a classic-BPF program of the instructions the preludes use on a `seccomp_data` of
    /// system call `nr` made at `ip` whose second argument (an ioctl's request) is `request`.
    fn run_prelude(program: &[sock_filter], nr: i32, ip: u64, request: u64) -> Option<u32> {
        run_bpf(program, nr, ip, [0, request])
    }

    /// The same with the first two arguments given.
    fn run_bpf(program: &[sock_filter], nr: i32, ip: u64, args: [u64; 2]) -> Option<u32> {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[8..16].copy_from_slice(&ip.to_le_bytes());
        data[16..24].copy_from_slice(&args[0].to_le_bytes());
        data[24..32].copy_from_slice(&args[1].to_le_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        while let Some(i) = program.get(pc) {
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let at = i.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JA => pc += i.k as usize,
                RET_K => return Some(i.k),
                other => panic!("instruction {other:#x} not in the prelude"),
            }
        }
        // Fell off the end: on to the rest of the filter.
        None
    }

    #[test]
    fn setting_a_fault_signals_action_ends_the_process() {
        let kill = Some(u32::from(SeccompAction::KillProcess));
        let prelude = fault_reset_kills(OnDenied::default());
        let sigaction = libc::SYS_rt_sigaction as i32;
        let act = 0x7fff_0000_1000u64;
        for signal in FAULT_SIGNALS {
            let signal = signal as u64;
            assert_eq!(run_bpf(&prelude, sigaction, 0, [signal, act]), kill);
            // Either half of the pointer set counts; a query (NULL) goes on, to be denied.
            assert_eq!(run_bpf(&prelude, sigaction, 0, [signal, 1 << 40]), kill);
            assert_eq!(run_bpf(&prelude, sigaction, 0, [signal, 0]), None);
        }
        for other in [libc::SIGUSR1, libc::SIGRTMIN(), libc::SIGABRT] {
            assert_eq!(run_bpf(&prelude, sigaction, 0, [other as u64, act]), None);
        }
        let write = libc::SYS_write as i32;
        assert_eq!(
            run_bpf(&prelude, write, 0, [libc::SIGSEGV as u64, act]),
            None
        );
        // A policy that only logs denials lets the reset through.
        assert!(fault_reset_kills(OnDenied::Log).is_empty());
    }

    #[test]
    fn the_gate_prelude_denies_gated_requests_from_anywhere_else() {
        let gate = crate::gate::return_address();
        let (denied, gated, other) = (0x0005_0001, 0xc008_ae81_u64, 0x5401);
        let prelude = gate_prelude(&[0x1234, gated, 0x5678], denied);
        let ioctl = libc::SYS_ioctl as i32;
        // From the gate: on to seccompiler's rules (which allow exactly the runtime's requests).
        assert_eq!(run_prelude(&prelude, ioctl, gate, gated), None);
        // From anywhere else, with any of the gated requests: the policy's denial.
        for request in [0x1234, gated, 0x5678] {
            assert_eq!(
                run_prelude(&prelude, ioctl, gate + 1, request),
                Some(denied)
            );
        }
        // Same low half, another high half of the address: denied too.
        assert_eq!(
            run_prelude(&prelude, ioctl, gate ^ (1 << 40), gated),
            Some(denied)
        );
        // The kernel reads a request's low 32 bits only, and so does the prelude.
        assert_eq!(
            run_prelude(&prelude, ioctl, 0, gated | 0xffff_ffff_0000_0000),
            Some(denied)
        );
        // Other requests, and other system calls, are left to the rest of the filter.
        assert_eq!(run_prelude(&prelude, ioctl, 0, other), None);
        assert_eq!(
            run_prelude(&prelude, libc::SYS_write as i32, 0, gated),
            None
        );
        // The policy's action is what a denial returns.
        let kill = compile(Filter::VcpuThread, OnDenied::KillProcess, &[]).unwrap();
        let real_prelude = &kill[..gate_prelude(&gated_ioctls(), 0).len()];
        assert_eq!(
            run_prelude(real_prelude, ioctl, 0, gated_ioctls()[0]),
            Some(u32::from(SeccompAction::KillProcess))
        );
    }

    #[test]
    fn gated_ioctls_are_allowed_from_the_gate_only_on_a_filtered_thread() {
        if default_disabled_by_env() {
            eprintln!("{SECCOMP_ENV}=off: this kernel cannot attach filters; not attaching one");
            return;
        }
        // fd -1: a call the filter lets through fails with EBADF, before any effect.
        fn direct(request: u64) -> Result<i32, i32> {
            // SAFETY: no fd is -1, so the kernel fails the call without reading `arg`.
            match unsafe { libc::ioctl(-1, request as libc::Ioctl, 0) } {
                -1 => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
                rc => Ok(rc),
            }
        }
        fn gated(request: u64) -> Result<i32, i32> {
            // SAFETY: as in `direct`.
            unsafe { crate::gate::ioctl(-1, request, 0) }
        }
        let vcpu = compile(Filter::VcpuThread, OnDenied::default(), &[]).unwrap();
        std::thread::spawn(move || {
            apply(&vcpu).unwrap();
            for request in gated_ioctls() {
                assert_eq!(
                    gated(request),
                    Err(libc::EBADF),
                    "{request:#x} from the gate"
                );
                assert_eq!(direct(request), Err(libc::EPERM), "{request:#x}");
            }
            // Requests the running sandbox never makes are denied even from the gate.
            for request in [0xae01 /* KVM_CREATE_VM */, libc::TCGETS] {
                assert_eq!(gated(request), Err(libc::EPERM), "{request:#x}");
            }
        })
        .join()
        .unwrap();
        // A policy that allows every ioctl still keeps the gated ones to the gate, on a vCPU
        // thread and on a worker.
        for filter in [Filter::VcpuThread, Filter::HostFunction] {
            let program = compile(filter, OnDenied::default(), &[libc::SYS_ioctl]).unwrap();
            std::thread::spawn(move || {
                apply(&program).unwrap();
                assert_eq!(direct(libc::TCGETS), Err(libc::EBADF), "{filter:?}");
                for request in gated_ioctls() {
                    assert_eq!(direct(request), Err(libc::EPERM), "{filter:?} {request:#x}");
                }
            })
            .join()
            .unwrap();
        }
    }

    /// The rows (cells) of the first table after the line that starts with `heading` in
    /// `docs/security.md`.
    fn documented(heading: &str) -> Vec<Vec<String>> {
        let doc = include_str!("../../docs/security.md");
        let at = doc
            .lines()
            .position(|line| line.starts_with(heading))
            .unwrap_or_else(|| panic!("docs/security.md has no heading {heading:?}"));
        doc.lines()
            .skip(at)
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and its rule
            .map(|row| {
                let cells = row.trim_matches('|').split(" | ");
                cells.map(|cell| cell.trim().to_string()).collect()
            })
            .collect()
    }

    #[test]
    fn security_md_lists_exactly_the_syscalls_of_each_filter() {
        for (heading, list) in [
            ("#### vCPU thread", vcpu_allowlist()),
            ("#### Host-function worker", host_fn_allowlist()),
        ] {
            let rows = documented(heading);
            let mut in_doc: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
            let mut in_code: Vec<&str> = list.iter().map(|a| a.name).collect();
            in_doc.sort_unstable();
            in_code.sort_unstable();
            assert_eq!(
                in_doc, in_code,
                "{heading}: the table and the code disagree"
            );
            // A syscall allowed only with some arguments says which, and why it is needed.
            for row in &rows {
                let name = row[0].trim_matches('`');
                let conditional = list.iter().any(|a| a.name == name && a.only.is_some());
                assert_eq!(row.len(), 3, "{heading}: {row:?}");
                if conditional {
                    assert!(!["—", "any"].contains(&row[1].as_str()), "{name}: {row:?}");
                }
                assert!(!row[2].is_empty(), "{name}: no reason");
            }
        }
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
            // Files the process holds: no reading them by mapping, no writing at an offset, no
            // resizing, no new memfds (snapshots are written through a mapping instead).
            libc::SYS_memfd_create,
            libc::SYS_ftruncate,
            libc::SYS_pwrite64,
            libc::SYS_mremap,
            // No signal handlers (the kick handler is installed before any filter), and no
            // signals but the kick signal and SIGABRT, to this process only.
            libc::SYS_rt_sigaction,
            libc::SYS_tkill,
            libc::SYS_rt_tgsigqueueinfo,
        ] {
            assert!(list.iter().all(|a| a.nr != forbidden), "{forbidden}");
        }
        // A worker has the same list without any ioctl.
        let worker = host_fn_allowlist();
        assert_eq!(worker.len(), list.len() - 1);
        assert!(worker.iter().all(|a| a.nr != libc::SYS_ioctl));
        // Allowed only with arguments that keep to this process: new threads, thread names,
        // the runtime's ioctls, anonymous memory, no signal handlers, only the kick signal.
        for conditional in [
            libc::SYS_clone,
            libc::SYS_prctl,
            libc::SYS_ioctl,
            libc::SYS_mmap,
            libc::SYS_mprotect,
            libc::SYS_madvise,
            libc::SYS_fcntl,
            libc::SYS_tgkill,
        ] {
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
        crate::kick::install_handler(0).unwrap();
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

//! The filter programs: the allowlist of each kind of filtered thread, with the argument
//! conditions of its syscalls, compiled by seccompiler behind the hand-written preludes it cannot
//! express (the syscall gate's instruction-pointer check, fault-signal resets, `clone3`).

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::OnDenied;
use crate::error::Error;

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
        SYS_sched_yield => "polling waits (vcpu/spin.rs) and channel back-off",
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
            "the spawner thread starts vCPU and worker threads (vcpu/factory.rs)",
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
        .chain(crate::hypervisor::kvm::host_write_log::vcpu_thread_ioctls())
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
        libc::SYS_tgkill => [crate::vcpu::kick::kick_signal(), libc::SIGABRT]
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
    .map_err(|e| {
        Error::os(
            "compile seccomp filter",
            std::io::Error::other(e.to_string()),
        )
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
    let gate = crate::seccomp::gate::return_address();
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
pub(super) fn apply(program: &BpfProgram) -> Result<(), Error> {
    seccompiler::apply_filter(program).map_err(|e| {
        let source = match e {
            seccompiler::Error::Prctl(source) | seccompiler::Error::Seccomp(source) => source,
            other => std::io::Error::other(other.to_string()),
        };
        Error::os("install seccomp filter", source)
    })
}

/// Most distinct (filter, thread name, stack size) factories a process may use; each keeps a
#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{
        default_disabled_by_env, thread_seccomp_mode, vcpu_threads, SeccompPolicy, SECCOMP_ENV,
    };

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
        let gate = crate::seccomp::gate::return_address();
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
            unsafe { crate::seccomp::gate::ioctl(-1, request, 0) }
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
        let doc = include_str!("../../../docs/security.md");
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
        crate::vcpu::kick::install_handler(0).unwrap();
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

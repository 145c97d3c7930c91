//! Escapes from a filtered thread (issue 12, findings 2 and 3), one test each. The attacker is a
//! sync host function: it runs inline on its sandbox's vCPU thread, under that thread's seccomp
//! filter, and tries, with plain system calls, to make the process do what the filter keeps the
//! thread from doing itself. Every attempt must fail with `EPERM` (the default policy's answer),
//! and the sandbox, whose own ioctls go through the syscall gate, must keep working.

mod common;

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyperlight_sys::{Sandbox, SandboxBuilder};

fn hostile() -> SandboxBuilder {
    Sandbox::builder(hyperlight_testing::guest_path("hostile"))
}

/// Whether this run can attach filters at all (`HYPERLIGHT_SECCOMP=off` says it cannot).
fn filters_on() -> bool {
    if hyperlight_sys::seccomp::default_disabled_by_env() {
        eprintln!("HYPERLIGHT_SECCOMP=off: this kernel cannot attach filters; skipped");
        return false;
    }
    true
}

/// The result of a raw system call that returns -1 on failure: the value, or the errno.
fn outcome(rc: i64) -> Result<i64, i32> {
    if rc == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Runs `probe` as a sync host function, inline on the vCPU thread of a new sandbox (checked:
/// another thread, filtered), and returns what it returned. The sandbox must keep answering
/// afterwards.
fn on_vcpu_thread<T: Send + 'static>(probe: impl Fn() -> T + Send + Sync + 'static) -> T {
    on_host_fn_thread(|builder, name, f| builder.host_fn(name, f), probe)
}

/// [`on_vcpu_thread`] for a host function registered with `builder_with` (which decides where
/// it runs).
fn on_host_fn_thread<T: Send + 'static>(
    builder_with: impl FnOnce(
        SandboxBuilder,
        &str,
        Box<dyn Fn() -> u64 + Send + Sync + 'static>,
    ) -> SandboxBuilder,
    probe: impl Fn() -> T + Send + Sync + 'static,
) -> T {
    let slot: Arc<Mutex<Option<(i32, T)>>> = Arc::default();
    let out = slot.clone();
    let f = Box::new(move || {
        let result = probe();
        *out.lock().unwrap() = Some((gettid(), result));
        0u64
    });
    let mut sb = builder_with(hostile(), "host_probe", f).build().unwrap();
    sb.call::<u64>("host_call_flood", ("host_probe".to_string(), 1u32))
        .unwrap();
    let (tid, result) = slot.lock().unwrap().take().expect("the probe ran");
    assert_ne!(tid, gettid(), "the probe ran on this (unfiltered) thread");
    assert_eq!(
        hyperlight_sys::seccomp::thread_seccomp_mode(tid),
        Some(2),
        "the probe's thread is filtered"
    );
    // The sandbox is unharmed: its own ioctls still go through.
    assert_eq!(sb.call::<u64>("echo", (5u64,)).unwrap(), 5);
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("echo", (6u64,)).unwrap(), 6);
    result
}

/// A file in the temporary directory holding `content`, opened read-write, removed on drop.
struct HeldFile {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl HeldFile {
    fn new(name: &str, content: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all(content).unwrap();
        HeldFile { file, path }
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn content(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.file.rewind().unwrap();
        self.file.read_to_end(&mut bytes).unwrap();
        bytes
    }
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The descriptors of this process whose `/proc/self/fd` link `matches`.
fn fds_linking_to(matches: impl Fn(&str) -> bool) -> Vec<RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            matches(&target.to_string_lossy()).then(|| entry.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// How often the attacker's signal handler ran, on whatever thread.
static ATTACKER_HANDLER_RAN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn attacker_handler(_: libc::c_int) {
    ATTACKER_HANDLER_RAN.fetch_add(1, Ordering::SeqCst);
}

/// Finding 2, the proven escape: a host function installed a handler for the kick signal and
/// sent that signal to an unfiltered thread, which ran the handler (and with it, code the
/// filter would have denied). Installing any handler is denied now.
#[test]
fn a_host_function_cannot_install_a_signal_handler() {
    if !filters_on() {
        return;
    }
    let kick = libc::SIGRTMIN();
    let tried = on_vcpu_thread(move || {
        // (Setting a fault signal's action ends the process instead: `tests/host_fault.rs`.)
        [kick, libc::SIGUSR2].map(|signal| {
            // SAFETY: installs a handler that only counts (were the call allowed); a zeroed
            // sigaction with a plain handler is valid.
            let installed = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = attacker_handler as *const () as usize;
                outcome(libc::sigaction(signal, &action, std::ptr::null_mut()).into())
            };
            (signal, installed)
        })
    });
    for (signal, installed) in tried {
        assert_eq!(
            installed,
            Err(libc::EPERM),
            "rt_sigaction({signal}, handler)"
        );
    }
    // The kick handler is the runtime's still: kicks work, and the attacker's never runs.
    let attacker = attacker_handler as *const () as libc::sighandler_t;
    assert_ne!(common::handler_of(kick), attacker);
    assert_ne!(common::handler_of(kick), libc::SIG_DFL);
    assert_ne!(common::handler_of(libc::SIGUSR2), attacker);
    assert_eq!(ATTACKER_HANDLER_RAN.load(Ordering::SeqCst), 0);
}

/// Finding 2: signals to other threads of the process are limited to the kick signal (whose
/// handler only acts on a thread that runs a vCPU) and `SIGABRT` (abort); `tkill`, `kill` and
/// queued signals are denied.
#[test]
fn a_host_function_can_signal_only_with_the_kick_signal() {
    if !filters_on() {
        return;
    }
    let pid = std::process::id() as libc::c_int;
    // This test's thread: unfiltered, and blocked in the call while the probe runs. SIGWINCH and
    // SIGURG are ignored by default, so a signal that got through would be harmless here.
    let target = gettid();
    let kick = libc::SIGRTMIN();
    let tried = on_vcpu_thread(move || {
        // SAFETY: signals to a thread of this process (or to init, which a filtered thread may
        // not signal at all); none of them is fatal to the process.
        unsafe {
            let tgkill = |tgid: libc::c_int, tid: libc::c_int, signal: libc::c_int| {
                outcome(libc::syscall(libc::SYS_tgkill, tgid, tid, signal))
            };
            [
                ("tgkill SIGWINCH", tgkill(pid, target, libc::SIGWINCH)),
                ("tgkill SIGURG", tgkill(pid, target, libc::SIGURG)),
                ("tgkill kick to init", tgkill(1, 1, kick)),
                (
                    "tkill SIGWINCH",
                    outcome(libc::syscall(libc::SYS_tkill, target, libc::SIGWINCH)),
                ),
                (
                    "kill SIGWINCH",
                    outcome(libc::kill(pid, libc::SIGWINCH).into()),
                ),
                (
                    "rt_tgsigqueueinfo",
                    outcome(libc::syscall(
                        libc::SYS_rt_tgsigqueueinfo,
                        pid,
                        target,
                        libc::SIGWINCH,
                        std::ptr::null::<libc::siginfo_t>(),
                    )),
                ),
                // Allowed: what InterruptHandle::kill does (the handler does nothing on a
                // thread without a vCPU).
                ("tgkill kick", tgkill(pid, target, kick)),
            ]
        }
    });
    for (what, result) in tried {
        let expected = if what == "tgkill kick" {
            Ok(0)
        } else {
            Err(libc::EPERM)
        };
        assert_eq!(result, expected, "{what}");
    }
}

/// Finding 3: `mmap` of a file the process holds read it from a filtered thread. Only anonymous
/// mappings are allowed now.
#[test]
fn a_host_function_cannot_map_a_file_the_process_holds() {
    if !filters_on() {
        return;
    }
    let held = HeldFile::new("hyperlight-escape-mmap", b"secret held by the application");
    let fd = held.fd();
    let tried = on_vcpu_thread(move || {
        [libc::MAP_PRIVATE, libc::MAP_SHARED].map(|flags| {
            // SAFETY: a fresh read-only mapping the kernel places (unmapped right away if it is
            // created at all); the fd is open for the whole call.
            unsafe {
                let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, flags, fd, 0);
                if p == libc::MAP_FAILED {
                    outcome(-1)
                } else {
                    libc::munmap(p, 4096);
                    Ok(0)
                }
            }
        })
    });
    assert_eq!(tried, [Err(libc::EPERM), Err(libc::EPERM)]);
}

/// Finding 3: `pwrite64` overwrote and `ftruncate` cut a file the process held; snapshots no
/// longer need them (or `memfd_create`) on the vCPU thread.
#[test]
fn a_host_function_cannot_write_resize_or_create_files() {
    if !filters_on() {
        return;
    }
    let content = b"the application's data, not to be overwritten";
    let mut held = HeldFile::new("hyperlight-escape-write", content);
    let fd = held.fd();
    let tried = on_vcpu_thread(move || {
        // SAFETY: plain syscalls with valid arguments on an fd open for the whole call; a memfd
        // created against expectations is closed.
        unsafe {
            [
                (
                    "pwrite64",
                    outcome(libc::pwrite(fd, b"OVERWRITTEN".as_ptr().cast(), 11, 0) as i64),
                ),
                ("ftruncate", outcome(libc::ftruncate(fd, 0).into())),
                (
                    "fallocate",
                    outcome(libc::fallocate(fd, 0, 0, 1 << 20).into()),
                ),
                (
                    "memfd_create",
                    outcome(libc::memfd_create(c"escape".as_ptr(), 0).into()).inspect(|&memfd| {
                        libc::close(memfd as RawFd);
                    }),
                ),
            ]
        }
    });
    for (what, result) in tried {
        assert_eq!(result, Err(libc::EPERM), "{what}");
    }
    assert_eq!(held.content(), content, "the file changed");
}

/// Finding 3: the ioctl rule allowed every KVM request on any fd. Now a host function gets
/// `EPERM` for `KVM_CREATE_VM` on `/dev/kvm`, for the register ioctls and `KVM_RUN` on a vCPU's
/// fd (its own sandbox's and another's), and for the write-tracking ioctls on the process's
/// userfaultfd and pagemap; every sandbox keeps running, its own ioctls made by the gate.
#[test]
fn a_host_function_cannot_issue_hypervisor_or_write_tracking_ioctls() {
    if !filters_on() {
        return;
    }
    let mut bystander = common::simple().build().unwrap();
    assert_eq!(bystander.call::<u64>("counter", ()).unwrap(), 1);
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .unwrap();
    let kvm_fd = kvm.as_raw_fd();
    let vcpus = fds_linking_to(|link| link.starts_with("anon_inode:kvm-vcpu"));
    assert!(!vcpus.is_empty(), "the bystander has a vCPU fd");
    // The process's write tracking (when the kernel has it, as on this project's hosts).
    let uffds = fds_linking_to(|link| link == "anon_inode:[userfaultfd]");
    let pagemaps = fds_linking_to(|link| link.ends_with("/pagemap"));
    // KVM's ioctl numbers (linux/kvm.h).
    const KVM_GET_API_VERSION: u64 = 0xae00;
    const KVM_CREATE_VM: u64 = 0xae01;
    const KVM_RUN: u64 = 0xae80;
    const KVM_GET_REGS: u64 = 0x8090_ae81;
    const KVM_SET_REGS: u64 = 0x4090_ae82;
    const UFFDIO_REGISTER: u64 = 0xc020_aa00;
    const UFFDIO_WRITEPROTECT: u64 = 0xc018_aa06;
    const PAGEMAP_SCAN: u64 = 0xc060_6610;
    let tried = on_vcpu_thread(move || {
        let mut tried = Vec::new();
        let mut buffer = [0u8; 4096];
        let ioctl = |fd: RawFd, request: u64, arg: *mut u8| {
            // SAFETY: each request gets a 4 KiB buffer, more than any of them reads or writes;
            // an ioctl that is allowed acts on this process's own objects.
            outcome(unsafe { libc::ioctl(fd, request as libc::Ioctl, arg) }.into())
        };
        let arg = buffer.as_mut_ptr();
        // Reading registers first: were it allowed, the rest is not tried.
        for &vcpu in &vcpus {
            let got = ioctl(vcpu, KVM_GET_REGS, arg);
            tried.push(("KVM_GET_REGS", got));
            if got != Err(libc::EPERM) {
                return tried;
            }
            tried.push(("KVM_SET_REGS", ioctl(vcpu, KVM_SET_REGS, arg)));
            tried.push(("KVM_RUN", ioctl(vcpu, KVM_RUN, std::ptr::null_mut())));
        }
        tried.push((
            "KVM_GET_API_VERSION",
            ioctl(kvm_fd, KVM_GET_API_VERSION, arg),
        ));
        let vm = ioctl(kvm_fd, KVM_CREATE_VM, std::ptr::null_mut());
        if let Ok(vm) = vm {
            // SAFETY: the VM fd was just created by this probe.
            unsafe { libc::close(vm as RawFd) };
        }
        tried.push(("KVM_CREATE_VM", vm));
        for &uffd in &uffds {
            tried.push(("UFFDIO_WRITEPROTECT", ioctl(uffd, UFFDIO_WRITEPROTECT, arg)));
            tried.push(("UFFDIO_REGISTER", ioctl(uffd, UFFDIO_REGISTER, arg)));
        }
        for &pagemap in &pagemaps {
            tried.push(("PAGEMAP_SCAN", ioctl(pagemap, PAGEMAP_SCAN, arg)));
        }
        tried
    });
    for (what, result) in &tried {
        assert_eq!(*result, Err(libc::EPERM), "{what}");
    }
    // Every attempt was made (the write-tracking ones where this kernel has it).
    for what in ["KVM_GET_REGS", "KVM_SET_REGS", "KVM_RUN", "KVM_CREATE_VM"] {
        assert!(tried.iter().any(|(w, _)| *w == what), "{what}: {tried:?}");
    }
    // The bystander, whose vCPU the probe aimed at, is intact.
    assert_eq!(bystander.call::<u64>("counter", ()).unwrap(), 2);
    drop(kvm);
}

/// Executable memory, anonymous or by `mprotect`, and mappings over existing memory are denied.
#[test]
fn a_host_function_cannot_map_executable_memory_or_map_over_memory() {
    if !filters_on() {
        return;
    }
    let tried = on_vcpu_thread(|| {
        let map = |prot: libc::c_int, flags: libc::c_int, at: *mut libc::c_void| {
            // SAFETY: an anonymous mapping (at `at` only with MAP_FIXED, over a page this probe
            // mapped itself); unmapped right away if created.
            unsafe {
                let p = libc::mmap(at, 4096, prot, flags | libc::MAP_ANONYMOUS, -1, 0);
                if p == libc::MAP_FAILED {
                    (outcome(-1), p)
                } else {
                    (Ok(0), p)
                }
            }
        };
        let private = libc::MAP_PRIVATE;
        let (rw, page) = map(
            libc::PROT_READ | libc::PROT_WRITE,
            private,
            std::ptr::null_mut(),
        );
        let exec = map(
            libc::PROT_READ | libc::PROT_EXEC,
            private,
            std::ptr::null_mut(),
        );
        let fixed = map(libc::PROT_READ, private | libc::MAP_FIXED, page);
        // SAFETY: `page` is the page mapped above (or MAP_FAILED, which mprotect refuses).
        let protect = outcome(unsafe {
            libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC).into()
        });
        // SAFETY: as above; unmapping MAP_FAILED fails harmlessly.
        unsafe { libc::munmap(page, 4096) };
        [
            ("mmap rw", rw),
            ("mmap exec", exec.0),
            ("mmap fixed", fixed.0),
            ("mprotect exec", protect),
        ]
    });
    for (what, result) in tried {
        let expected = if what == "mmap rw" {
            Ok(0)
        } else {
            Err(libc::EPERM)
        };
        assert_eq!(result, expected, "{what}");
    }
}

/// A host function registered with extra syscalls runs on a worker that runs no vCPU: its
/// filter has no ioctl at all (before, it had the vCPU thread's).
#[test]
fn a_host_function_worker_has_no_ioctl() {
    if !filters_on() {
        return;
    }
    let kvm = std::fs::File::open("/dev/kvm").unwrap();
    let kvm_fd = kvm.as_raw_fd();
    let tried = on_host_fn_thread(
        |builder, name, f| builder.host_fn_with_syscalls(name, &[libc::SYS_getuid], f),
        move || {
            let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
            // SAFETY: KVM_GET_API_VERSION takes no argument; TCGETS writes a termios, for
            // which `termios` has room.
            unsafe {
                [
                    outcome(libc::ioctl(kvm_fd, 0xae00 as libc::Ioctl, 0).into()),
                    outcome(libc::ioctl(0, libc::TCGETS, termios.as_mut_ptr()).into()),
                ]
            }
        },
    );
    assert_eq!(tried, [Err(libc::EPERM), Err(libc::EPERM)]);
    drop(kvm);
}

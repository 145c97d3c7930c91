//! Shared helpers of the KVM integration tests.
#![allow(dead_code)]

use hyperlight_sys::{Sandbox, SandboxBuilder};

/// A builder for the `simple` test guest with the host functions its functions call.
pub fn simple() -> SandboxBuilder {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn("host_echo", |s: String| s)
}

/// A builder for a sandbox from `snapshot` (of the `simple` guest) with the same host functions.
pub fn simple_from(snapshot: &hyperlight_sys::Snapshot) -> SandboxBuilder {
    Sandbox::builder(snapshot)
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .host_fn("host_echo", |s: String| s)
}

/// [`simple`] on the hypervisor `hv`.
pub fn simple_on(
    hv: &std::sync::Arc<dyn hyperlight_sys::hypervisor::Hypervisor>,
) -> SandboxBuilder {
    simple().hypervisor(hv.clone())
}

/// [`simple_from`] on the hypervisor `hv`.
pub fn simple_from_on(
    snapshot: &hyperlight_sys::Snapshot,
    hv: &std::sync::Arc<dyn hyperlight_sys::hypervisor::Hypervisor>,
) -> SandboxBuilder {
    simple_from(snapshot).hypervisor(hv.clone())
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads of this process that the runtime started (see
/// [`hyperlight_testing::runtime_thread_count`]).
pub fn thread_count() -> usize {
    hyperlight_testing::runtime_thread_count()
}

/// A KVM hypervisor for each way a sandbox can track its guest's writes: the host kernel's page
/// tables (the default, on Linux 6.7 or later) and KVM's dirty log.
pub fn kvm_write_trackings() -> Vec<std::sync::Arc<dyn hyperlight_sys::hypervisor::Hypervisor>> {
    use hyperlight_sys::hypervisor::kvm::{KvmHypervisor, WriteTracking, KVM_DEVICE};
    [WriteTracking::HostPageTables, WriteTracking::KvmDirtyLog]
        .into_iter()
        .map(|tracking| {
            let hv = KvmHypervisor::open(KVM_DEVICE.as_ref())
                .and_then(|hv| hv.with_write_tracking(tracking))
                .unwrap_or_else(|e| panic!("KVM with {tracking:?}: {e}"));
            std::sync::Arc::new(hv) as _
        })
        .collect()
}

/// The handler address (or `SIG_DFL`, `SIG_IGN`) of `signal`'s current disposition.
pub fn handler_of(signal: libc::c_int) -> libc::sighandler_t {
    // SAFETY: a null new action only reads the current one into a zeroed sigaction.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut current), 0);
        current.sa_sigaction
    }
}

/// The default configuration with the kick signal `SIGRTMIN + offset`.
pub fn with_kick_offset(offset: u8) -> hyperlight_sys::SandboxConfig {
    hyperlight_sys::SandboxConfig {
        kick_signal_offset: offset,
        ..Default::default()
    }
}

/// Runs the `simple` guest's `infinite_loop` in `sb` and kills it from another thread once it
/// runs (polling, with a deadline): the call must end `Cancelled`, and `sb` is restored.
pub fn kill_an_endless_call(sb: &mut Sandbox) {
    let handle = sb.interrupt_handle();
    let killer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while handle.running_generation() == 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        handle.kill()
    });
    let err = sb.call::<()>("infinite_loop", ()).unwrap_err();
    assert!(matches!(err, hyperlight_sys::Error::Cancelled), "{err:?}");
    assert_ne!(killer.join().unwrap(), 0, "the kill found no call running");
    sb.restore().unwrap();
}

//! How KVM sandboxes find the pages their guest wrote: the host kernel's page tables by default,
//! which lets a sandbox hold one file descriptor; KVM's dirty log otherwise, with two.

mod common;

use hyperlight_sys::hypervisor::kvm::{KvmHypervisor, WriteTracking, KVM_DEVICE};

/// Linux version of this machine as (major, minor).
fn kernel() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn the_default_is_host_page_tables_on_kernels_that_have_them() {
    let hv = KvmHypervisor::open(KVM_DEVICE.as_ref()).unwrap();
    if kernel() >= (6, 7) {
        assert_eq!(hv.write_tracking(), WriteTracking::HostPageTables);
    } else {
        assert_eq!(hv.write_tracking(), WriteTracking::KvmDirtyLog);
    }
}

#[test]
fn a_live_sandbox_holds_one_fd_with_host_page_tables_and_two_with_the_dirty_log() {
    for (hv, want) in common::kvm_write_trackings().into_iter().zip([1, 2]) {
        // Warm up the process-wide state (factories, the KVM fd of the hypervisor) first.
        let template = common::simple_on(&hv).build().unwrap();
        let snapshot = template.post_init_snapshot().clone();
        drop(common::simple_from_on(&snapshot, &hv).build().unwrap());
        let before = common::fd_count();
        let mut sandboxes: Vec<_> = (0..10)
            .map(|_| common::simple_from_on(&snapshot, &hv).build().unwrap())
            .collect();
        for (i, sb) in sandboxes.iter_mut().enumerate() {
            assert_eq!(sb.call::<i32>("echo_i32", (i as i32,)).unwrap(), i as i32);
            sb.restore().unwrap();
        }
        assert_eq!(common::fd_count() - before, 10 * want, "from a snapshot");
        sandboxes.push(common::simple_on(&hv).build().unwrap());
        // A booted sandbox holds its post-init snapshot too: a sealed memfd, which every
        // sandbox created from that snapshot shares.
        assert_eq!(
            common::fd_count() - before,
            11 * want + 1,
            "booted from the ELF"
        );
        drop(sandboxes);
        assert_eq!(common::fd_count(), before);
    }
}

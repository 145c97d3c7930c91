//! A guest's last exit is never finished on top of a restored sandbox (issue 12, finding 1).
//!
//! After an I/O exit KVM finishes the instruction on the next `KVM_RUN`. For a `rep insb` that
//! means writing guest memory: done during a restore, after the write log was read, it would
//! leave its bytes in every later call (and in snapshots taken afterwards). The runtime never
//! finishes an `in`, a string access or MMIO: the call fails, and the restore gives the sandbox a
//! new vCPU (an `in` is an unexpected exit). A string `out` is refused like any other protocol
//! violation, whatever it carries.

mod common;

use std::sync::Arc;

use hyperlight_sys::hypervisor::Hypervisor;
use hyperlight_sys::schema::abi::PORT_DONE;
use hyperlight_sys::schema::{wire, Value};
use hyperlight_sys::{Error, Sandbox, SandboxBuilder};

/// What every byte of the hostile guest's marker page holds after init.
const MARKER: u64 = 0xa5a5_a5a5_a5a5_a5a5;
/// One of the sixteen protocol ports, open to ring 3 in both directions.
const OPEN_PORT: u32 = 0x100;

fn hostile_on(hv: &Arc<dyn Hypervisor>) -> SandboxBuilder {
    Sandbox::builder(hyperlight_testing::guest_path("hostile")).hypervisor(hv.clone())
}

/// The first and last words of the marker page.
fn marker_words(sb: &mut Sandbox, page: u64) -> [u64; 2] {
    [page, page + 4096 - 8].map(|addr| sb.call::<u64>("read_addr", (addr,)).unwrap())
}

/// Runs a `rep insb` of a whole page into the marker page; the call must fail and poison.
fn insb_into_marker(sb: &mut Sandbox, page: u64) {
    let r = sb.call::<()>("ins", (OPEN_PORT, page, 4096u32));
    assert!(
        matches!(&r, Err(e) if e.is_fatal()),
        "an `in` ends the call: {r:?}"
    );
    assert!(matches!(
        sb.call::<u64>("echo", (1u64,)),
        Err(Error::Poisoned { .. })
    ));
}

#[test]
fn a_pending_in_is_never_finished_by_restore() {
    for hv in common::kvm_write_trackings() {
        let mut sb = hostile_on(&hv).build().unwrap();
        let page = sb.call::<u64>("marker_page", ()).unwrap();
        assert_eq!(marker_words(&mut sb, page), [MARKER; 2]);
        // Positive control: the guest can change the page, and a restore puts it back.
        sb.call::<()>("write_addr", (page, 0u64)).unwrap();
        assert_eq!(marker_words(&mut sb, page), [0, MARKER]);
        sb.restore().unwrap();
        assert_eq!(marker_words(&mut sb, page), [MARKER; 2]);

        insb_into_marker(&mut sb, page);
        sb.restore().unwrap();
        assert_eq!(marker_words(&mut sb, page), [MARKER; 2], "after restore()");

        // A snapshot taken after such a restore, and every sandbox built from it, is clean.
        insb_into_marker(&mut sb, page);
        sb.restore().unwrap();
        let snapshot = sb.snapshot().unwrap();
        let mut child = Sandbox::builder(&snapshot)
            .hypervisor(hv.clone())
            .build()
            .unwrap();
        assert_eq!(marker_words(&mut child, page), [MARKER; 2], "from snapshot");
        // A restore to that snapshot (a new VM) after another pending `in`.
        insb_into_marker(&mut sb, page);
        sb.restore_to(&snapshot).unwrap();
        assert_eq!(marker_words(&mut sb, page), [MARKER; 2], "restore_to");
        // And once more on the fast path of the snapshot it now restores to.
        insb_into_marker(&mut sb, page);
        sb.restore_to(&snapshot).unwrap();
        assert_eq!(marker_words(&mut sb, page), [MARKER; 2], "restore_to again");
    }
}

#[test]
fn a_pending_in_is_never_finished_by_fresh_per_call() {
    for hv in common::kvm_write_trackings() {
        let mut sb = hostile_on(&hv).fresh_per_call(true).build().unwrap();
        let page = sb.call::<u64>("marker_page", ()).unwrap();
        for _ in 0..3 {
            let r = sb.call::<()>("ins", (OPEN_PORT, page, 4096u32));
            assert!(matches!(&r, Err(e) if e.is_fatal()), "{r:?}");
            // The restore after the call cleared the poisoning and left the page as it was.
            assert_eq!(marker_words(&mut sb, page), [MARKER; 2]);
        }
    }
}

/// KVM's emulator hands a `rep outsw` to userspace one 2-byte element per exit, so the narrow
/// width alone refuses it here; the backend also refuses any batch of elements by its count
/// (unit-tested in `kvm.rs`), for kernels that batch them.
#[test]
fn a_string_out_is_refused_whatever_it_carries() {
    for hv in common::kvm_write_trackings() {
        let mut sb = hostile_on(&hv).build().unwrap();
        // A well-formed `Done` message whose length goes out by `rep outsw` (2 x 2 bytes): the
        // same 4 bytes a valid `out` carries.
        let done = wire::encode_function_call_result(&Ok(Value::Void));
        let r = sb.call::<()>("outs_message", (u32::from(PORT_DONE), done.clone()));
        assert!(matches!(r, Err(Error::Protocol { .. })), "{r:?}");
        sb.restore().unwrap();
        // Positive control: the same bytes sent by a plain `out` end the call normally (the
        // guest stays inside `raw`, so restore before the next call).
        sb.call::<()>("raw", (u32::from(PORT_DONE), done)).unwrap();
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("echo", (5u64,)).unwrap(), 5);
    }
}

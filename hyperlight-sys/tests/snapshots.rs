//! Snapshots and restore on KVM: restore is exact and leaves nothing of a call behind;
//! sandboxes built from a snapshot behave like the sandbox it was taken in.

mod common;

use hyperlight_sys::{Error, Sandbox};

fn xor(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b ^ 0xff).collect()
}

#[test]
fn counter_counts_without_restore_and_restarts_after_restore() {
    for hv in common::kvm_write_trackings() {
        let mut sb = common::simple_on(&hv).build().unwrap();
        for want in 1..=3u64 {
            assert_eq!(sb.call::<u64>("counter", ()).unwrap(), want);
        }
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
        let mut fresh = common::simple_on(&hv).fresh_per_call(true).build().unwrap();
        for _ in 0..5 {
            assert_eq!(fresh.call::<u64>("counter", ()).unwrap(), 1);
        }
    }
}

#[test]
fn data_of_one_call_is_not_readable_after_restore() {
    for hv in common::kvm_write_trackings() {
        let mut sb = common::simple_on(&hv).build().unwrap();
        let secret = b"s3cr3t-0f-request-one-7f2a9c".to_vec();
        assert_eq!(
            sb.call::<Vec<u8>>("leave_secret", (secret.clone(),))
                .unwrap(),
            secret
        );
        // Positive control: without a restore the secret is found (static, heap, stack, output).
        let found = sb.call::<u64>("count_bytes", (xor(&secret),)).unwrap();
        assert!(
            found >= 3,
            "the secret should be visible before restore, found {found}"
        );
        sb.call::<Vec<u8>>("leave_secret", (secret.clone(),))
            .unwrap();
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("count_bytes", (xor(&secret),)).unwrap(), 0);
        // The same with restore after every call.
        let mut fresh = common::simple_on(&hv).fresh_per_call(true).build().unwrap();
        fresh
            .call::<Vec<u8>>("leave_secret", (secret.clone(),))
            .unwrap();
        assert_eq!(
            fresh.call::<u64>("count_bytes", (xor(&secret),)).unwrap(),
            0
        );
    }
}

#[test]
fn a_snapshot_creates_a_sandbox_that_behaves_identically() {
    for hv in common::kvm_write_trackings() {
        let mut original = common::simple_on(&hv).build().unwrap();
        for _ in 0..3 {
            original.call::<u64>("counter", ()).unwrap();
        }
        original.call::<u32>("touch_pages", (64u32,)).unwrap();
        let snapshot = original.snapshot().unwrap();
        let mut copies: Vec<Sandbox> = (0..3)
            .map(|_| common::simple_from_on(&snapshot, &hv).build().unwrap())
            .collect();
        copies.push(original);
        for sb in &mut copies {
            assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 4);
            assert_eq!(sb.call::<i32>("call_host_add", (2i32, 3i32)).unwrap(), 5);
            assert_eq!(
                sb.call::<String>("echo_string", ("x".to_string(),))
                    .unwrap(),
                "x"
            );
            sb.restore_to(&snapshot).unwrap();
            assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 4);
        }
        // A copy's restore() goes back to the snapshot it was built from.
        let mut copy = common::simple_from_on(&snapshot, &hv).build().unwrap();
        copy.call::<u64>("counter", ()).unwrap();
        copy.restore().unwrap();
        assert_eq!(copy.call::<u64>("counter", ()).unwrap(), 4);
    }
}

#[test]
fn faults_in_sandboxes_from_a_snapshot_restore_to_it() {
    for hv in common::kvm_write_trackings() {
        let template = common::simple_on(&hv).build().unwrap();
        let mut sb = common::simple_from_on(&template.post_init_snapshot(), &hv)
            .build()
            .unwrap();
        assert!(matches!(
            sb.call::<u64>("divide_by_zero", (1u64,)),
            Err(Error::DivideByZero { .. })
        ));
        assert!(matches!(
            sb.call::<u64>("counter", ()),
            Err(Error::Poisoned { .. })
        ));
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
        // A fault with restore after every call leaves the sandbox usable at once.
        let mut fresh = common::simple_from_on(&template.post_init_snapshot(), &hv)
            .fresh_per_call(true)
            .build()
            .unwrap();
        assert!(fresh.call::<u64>("read_addr", (0u64,)).is_err());
        assert_eq!(fresh.call::<u64>("counter", ()).unwrap(), 1);
    }
}

#[test]
fn a_snapshot_of_another_layout_is_refused() {
    let small = hyperlight_sys::SandboxConfig {
        heap_size: 1 << 20,
        ..Default::default()
    };
    let other = Sandbox::builder(hyperlight_testing::simple_guest())
        .config(small)
        .build()
        .unwrap();
    let mut sb = common::simple().build().unwrap();
    let err = sb.restore_to(&other.post_init_snapshot()).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
    assert_eq!(sb.call::<i32>("echo_i32", (1i32,)).unwrap(), 1);
}

#[test]
fn registers_do_not_carry_data_across_a_restore() {
    for hv in common::kvm_write_trackings() {
        let mut sb = common::simple_on(&hv).build().unwrap();
        let secret = 0x5ec2_e7f0_0d15_ea5eu64;
        sb.call::<()>("stash_xmm", (secret,)).unwrap();
        // Positive control: without a restore the vector register keeps the value between calls.
        assert_eq!(sb.call::<u64>("read_xmm", ()).unwrap(), secret);
        sb.restore().unwrap();
        assert_ne!(sb.call::<u64>("read_xmm", ()).unwrap(), secret);
        let mut fresh = common::simple_on(&hv).fresh_per_call(true).build().unwrap();
        fresh.call::<()>("stash_xmm", (secret,)).unwrap();
        assert_ne!(fresh.call::<u64>("read_xmm", ()).unwrap(), secret);
    }
}

/// Vector state beyond SSE (AVX's upper halves, AVX-512's registers and opmasks): the guest's CR4
/// enables none of it, so on hardware KVM ring 3 gets #UD; PVM runs ring 3 on the host's CR4 and
/// XCR0, where the instructions work. Wherever they work, a restore must reset that state too.
#[test]
fn wide_vector_state_does_not_carry_data_across_a_restore() {
    let names = ["ymm15 (upper half)", "zmm31", "k7"];
    let mut reachable = 0;
    for hv in common::kvm_write_trackings() {
        for (which, name) in names.iter().enumerate() {
            let which = which as u32;
            // k7 keeps 16 bits (kmovw).
            let secret = 0x5ec2_e7f0_0d15_ea5eu64 & if which == 2 { 0xffff } else { u64::MAX };
            let mut sb = common::simple_on(&hv).build().unwrap();
            match sb.call::<()>("stash_wide", (which, secret)) {
                Err(Error::CpuException { vector: 6, .. }) => continue,
                other => other.unwrap_or_else(|e| panic!("{name}: {e:?}")),
            }
            reachable += 1;
            // Positive control: without a restore the register keeps the value between calls.
            assert_eq!(
                sb.call::<u64>("read_wide", (which,)).unwrap(),
                secret,
                "{name}"
            );
            sb.restore().unwrap();
            assert_ne!(
                sb.call::<u64>("read_wide", (which,)).unwrap(),
                secret,
                "{name}"
            );
            let mut fresh = common::simple_on(&hv).fresh_per_call(true).build().unwrap();
            fresh.call::<()>("stash_wide", (which, secret)).unwrap();
            assert_ne!(
                fresh.call::<u64>("read_wide", (which,)).unwrap(),
                secret,
                "{name}"
            );
        }
    }
    if reachable == 0 {
        hyperlight_testing::skip("ring 3 reaches no vector state beyond SSE on this vCPU (#UD)");
    }
}

/// A restore leaves the guest's last `out` for the next entry to finish and stages the restored
/// general registers in `kvm_run` for it (no ioctl). What reads registers before that entry (a
/// snapshot, a second restore, a snapshot of a sandbox that never ran) must see the restored
/// ones.
#[test]
fn a_snapshot_or_restore_right_after_a_restore_holds_the_restored_state() {
    for hv in common::kvm_write_trackings() {
        let secret = 0x0ddb_a115_ec2e_7a11u64;
        let mut sb = common::simple_on(&hv).build().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
        sb.call::<()>("stash_xmm", (secret,)).unwrap();
        sb.restore().unwrap();
        let snapshot = sb.snapshot().unwrap();
        sb.restore().unwrap();
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
        assert_ne!(sb.call::<u64>("read_xmm", ()).unwrap(), secret);
        let mut copy = common::simple_from_on(&snapshot, &hv).build().unwrap();
        // A sandbox from a snapshot has its registers staged and has never run.
        let again = copy.snapshot().unwrap();
        for mut sb in [copy, common::simple_from_on(&again, &hv).build().unwrap()] {
            assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
            assert_ne!(sb.call::<u64>("read_xmm", ()).unwrap(), secret);
            assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 2);
        }
    }
}

#[test]
fn rebase_moves_the_restore_point() {
    for hv in common::kvm_write_trackings() {
        let mut sb = common::simple_on(&hv).build().unwrap();
        let post_init = sb.post_init_snapshot();
        for want in 1..=2u64 {
            assert_eq!(sb.call::<u64>("counter", ()).unwrap(), want);
        }
        let rebased = sb.rebase().unwrap();
        assert!(!rebased.same_as(&post_init));
        assert!(sb.post_init_snapshot().same_as(&rebased));
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 3);
        // Restores now return to the rebased state, not to the guest's init.
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 3);
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 3);
        // A restore to the old snapshot still works (a new VM), and does not move the base.
        sb.restore_to(&post_init).unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 1);
        sb.restore().unwrap();
        assert_eq!(sb.call::<u64>("counter", ()).unwrap(), 3);
        // Sandboxes built from the rebased snapshot start there, and a fresh-per-call one
        // returns there after every call.
        let mut fresh = common::simple_from_on(&rebased, &hv)
            .fresh_per_call(true)
            .build()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(fresh.call::<u64>("counter", ()).unwrap(), 3);
        }
    }
}

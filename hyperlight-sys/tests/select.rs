//! Run-time choice of hypervisor: which backend `select::open` takes and the typed errors when it
//! cannot take one. Missing and unusable devices are simulated with paths the test controls.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hyperlight_sys::error::{Unusable, UnusableReason};
use hyperlight_sys::hypervisor::select::{open, HypervisorChoice, HypervisorPaths, MSHV_BUILT};
use hyperlight_sys::Error;

fn paths(kvm: impl Into<PathBuf>, mshv: impl Into<PathBuf>) -> HypervisorPaths {
    HypervisorPaths {
        kvm: kvm.into(),
        mshv: mshv.into(),
    }
}

fn open_err(choice: HypervisorChoice, paths: &HypervisorPaths) -> Error {
    match open(choice, paths) {
        Ok(_) => panic!("{choice} opened a hypervisor at {paths:?}"),
        Err(e) => e,
    }
}

fn no_hypervisor(err: Error) -> (Unusable, Unusable) {
    match err {
        Error::NoHypervisor { kvm, mshv } => (kvm, mshv),
        other => panic!("expected NoHypervisor, got {other:?}"),
    }
}

fn not_usable(err: Error) -> (&'static str, Unusable) {
    match err {
        Error::HypervisorUnusable { hypervisor, why } => (hypervisor, why),
        other => panic!("expected HypervisorUnusable, got {other:?}"),
    }
}

const MISSING_KVM: &str = "/nonexistent/hyperlight-select/kvm";
const MISSING_MSHV: &str = "/nonexistent/hyperlight-select/mshv";

#[test]
fn auto_takes_kvm_on_this_machine() {
    let hv = open(HypervisorChoice::Auto, &HypervisorPaths::default())
        .expect("this machine has /dev/kvm");
    hv.create_vm().expect("the chosen hypervisor creates a VM");
    open(HypervisorChoice::Kvm, &HypervisorPaths::default()).expect("explicit KVM opens");
    // A missing mshv device does not matter when KVM is usable.
    open(HypervisorChoice::Auto, &paths("/dev/kvm", MISSING_MSHV)).expect("KVM first");
}

#[test]
fn no_hypervisor_names_both_devices_and_why() {
    let err = open_err(HypervisorChoice::Auto, &paths(MISSING_KVM, MISSING_MSHV));
    let text = err.to_string();
    assert!(
        text.contains(&format!("{MISSING_KVM}: not found")),
        "{text}"
    );
    assert!(text.contains(MISSING_MSHV), "{text}");
    let (kvm, mshv) = no_hypervisor(err);
    assert_eq!(kvm.path, Path::new(MISSING_KVM));
    assert!(matches!(kvm.reason, UnusableReason::NotFound), "{kvm}");
    assert_eq!(mshv.path, Path::new(MISSING_MSHV));
    if MSHV_BUILT {
        assert!(matches!(mshv.reason, UnusableReason::NotFound), "{mshv}");
        assert!(
            text.contains(&format!("{MISSING_MSHV}: not found")),
            "{text}"
        );
    } else {
        assert!(
            matches!(
                mshv.reason,
                UnusableReason::NotBuilt {
                    feature: "mshv",
                    device_exists: false
                }
            ),
            "{mshv}"
        );
        assert!(text.contains("`mshv` cargo feature"), "{text}");
    }
}

#[test]
fn devices_that_are_not_hypervisors_are_unsupported() {
    // /dev/null opens, but answers no KVM or mshv ioctl.
    let (kvm, mshv) = no_hypervisor(open_err(
        HypervisorChoice::Auto,
        &paths("/dev/null", "/dev/null"),
    ));
    assert!(
        matches!(&kvm.reason, UnusableReason::Unsupported { reason } if reason.contains("API version")),
        "{kvm}"
    );
    if MSHV_BUILT {
        assert!(
            matches!(mshv.reason, UnusableReason::Unsupported { .. }),
            "{mshv}"
        );
    } else {
        assert!(
            matches!(
                mshv.reason,
                UnusableReason::NotBuilt {
                    device_exists: true,
                    ..
                }
            ),
            "{mshv}"
        );
        assert!(mshv.to_string().contains("the device exists"), "{mshv}");
    }
}

#[test]
fn explicit_kvm_tries_only_kvm() {
    let (hypervisor, why) = not_usable(open_err(
        HypervisorChoice::Kvm,
        &paths(MISSING_KVM, "/dev/null"),
    ));
    assert_eq!(hypervisor, "KVM");
    assert_eq!(why.path, Path::new(MISSING_KVM));
    assert!(matches!(why.reason, UnusableReason::NotFound), "{why}");
}

#[cfg(not(feature = "mshv"))]
#[test]
fn explicit_mshv_without_the_feature_is_a_typed_error() {
    // Even with a usable KVM at hand, an explicit mshv choice does not fall back to it.
    let err = open_err(HypervisorChoice::Mshv, &HypervisorPaths::default());
    assert!(err.to_string().contains("`mshv` cargo feature"), "{err}");
    let (hypervisor, why) = not_usable(err);
    assert_eq!(hypervisor, "mshv");
    assert_eq!(why.path, Path::new("/dev/mshv"));
    assert!(
        matches!(
            why.reason,
            UnusableReason::NotBuilt {
                feature: "mshv",
                ..
            }
        ),
        "{why}"
    );
}

#[cfg(feature = "mshv")]
#[test]
fn explicit_mshv_tries_only_mshv() {
    let (hypervisor, why) = not_usable(open_err(
        HypervisorChoice::Mshv,
        &paths("/dev/kvm", MISSING_MSHV),
    ));
    assert_eq!(hypervisor, "mshv");
    assert!(matches!(why.reason, UnusableReason::NotFound), "{why}");
}

/// Drops `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` from the calling thread's effective set,
/// so that file modes apply even to root. Capabilities are per thread in Linux (the raw syscall,
/// unlike glibc's set*id wrappers, does not touch other threads), so run this on a thread of its
/// own.
fn drop_file_capabilities_of_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_DAC_OVERRIDE: u32 = 1;
    const CAP_DAC_READ_SEARCH: u32 = 2;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes one header and two data records (version 3), both valid here.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH));
    // SAFETY: capset reads the same header and two records; pid 0 is the calling thread, and
    // dropping effective capabilities is always permitted.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn a_device_that_exists_but_may_not_be_opened_is_permission_denied() {
    let file =
        std::env::temp_dir().join(format!("hyperlight-select-{}-mode000", std::process::id()));
    fs::write(&file, b"").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o000)).unwrap();
    let path = file.clone();
    // Root could open a mode-000 file: drop the capabilities that let it, on this thread only.
    let result = std::thread::spawn(move || {
        drop_file_capabilities_of_this_thread();
        (
            open_err(HypervisorChoice::Auto, &paths(&path, &path)),
            open_err(HypervisorChoice::Kvm, &paths(&path, MISSING_MSHV)),
        )
    })
    .join();
    fs::remove_file(&file).unwrap();
    let (auto, kvm_only) = result.unwrap();

    let text = auto.to_string();
    let (kvm, mshv) = no_hypervisor(auto);
    assert_eq!(kvm.path, file);
    assert!(
        matches!(kvm.reason, UnusableReason::PermissionDenied { .. }),
        "{kvm}"
    );
    assert!(text.contains("permission denied"), "{text}");
    if MSHV_BUILT {
        assert!(
            matches!(mshv.reason, UnusableReason::PermissionDenied { .. }),
            "{mshv}"
        );
    } else {
        assert!(
            matches!(
                mshv.reason,
                UnusableReason::NotBuilt {
                    device_exists: true,
                    ..
                }
            ),
            "{mshv}"
        );
    }

    let (hypervisor, why) = not_usable(kvm_only);
    assert_eq!(hypervisor, "KVM");
    assert!(
        matches!(why.reason, UnusableReason::PermissionDenied { .. }),
        "{why}"
    );
}

#[test]
fn config_override_reaches_the_sandbox_builder() {
    use hyperlight_sys::hypervisor::select::{HypervisorChoice, HypervisorPaths};
    use hyperlight_sys::{Error, Sandbox, SandboxConfig};
    let missing = SandboxConfig {
        hypervisor: HypervisorChoice::Kvm,
        hypervisor_paths: HypervisorPaths {
            kvm: "/nonexistent/kvm".into(),
            mshv: "/nonexistent/mshv".into(),
        },
        ..SandboxConfig::default()
    };
    let err = Sandbox::builder(hyperlight_testing::simple_guest())
        .config(missing)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::HypervisorUnusable {
                hypervisor: "KVM",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/kvm"), "{err}");
    let explicit_kvm = SandboxConfig {
        hypervisor: HypervisorChoice::Kvm,
        ..SandboxConfig::default()
    };
    let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
        .config(explicit_kvm)
        .build()
        .unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (5i32,)).unwrap(), 5);
}

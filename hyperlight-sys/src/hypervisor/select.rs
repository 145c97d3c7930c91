//! Run-time choice of hypervisor: KVM, mshv, or whichever of them opens (KVM first).
//!
//! ```no_run
//! use hyperlight_sys::hypervisor::select::{open, HypervisorChoice, HypervisorPaths};
//!
//! # fn main() -> Result<(), hyperlight_sys::Error> {
//! let hv = open(HypervisorChoice::Auto, &HypervisorPaths::default())?;
//! # let _ = hv;
//! # Ok(())
//! # }
//! ```
//!
//! [`HypervisorChoice::Auto`] takes KVM when its device opens and has what the runtime needs,
//! else mshv likewise (when built with the `mshv` feature), else fails with
//! [`Error::NoHypervisor`], which says for each device why it is not usable. An explicit
//! [`HypervisorChoice::Kvm`] or [`HypervisorChoice::Mshv`] tries only that one and fails with
//! [`Error::HypervisorUnusable`]. See `docs/hypervisors.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::kvm::{KvmHypervisor, KVM_DEVICE};
use super::Hypervisor;
use crate::error::{Error, Unusable, UnusableReason};

/// The default mshv device.
pub const MSHV_DEVICE: &str = "/dev/mshv";

/// Whether this build contains the mshv backend (the `mshv` cargo feature).
pub const MSHV_BUILT: bool = cfg!(feature = "mshv");

/// Which hypervisor to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HypervisorChoice {
    /// KVM if its device is usable, else mshv if its device is usable.
    #[default]
    Auto,
    /// KVM only.
    Kvm,
    /// mshv only (needs the `mshv` cargo feature).
    Mshv,
}

impl HypervisorChoice {
    /// The lower-case name [`FromStr`] accepts: `auto`, `kvm` or `mshv`.
    pub fn as_str(self) -> &'static str {
        match self {
            HypervisorChoice::Auto => "auto",
            HypervisorChoice::Kvm => "kvm",
            HypervisorChoice::Mshv => "mshv",
        }
    }
}

impl fmt::Display for HypervisorChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hypervisor name that is not `auto`, `kvm` or `mshv`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown hypervisor {0:?}: expected auto, kvm or mshv")]
pub struct UnknownHypervisor(pub String);

impl FromStr for HypervisorChoice {
    type Err = UnknownHypervisor;

    /// Parses `auto`, `kvm` or `mshv`, ignoring case and surrounding blanks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(HypervisorChoice::Auto),
            "kvm" => Ok(HypervisorChoice::Kvm),
            "mshv" => Ok(HypervisorChoice::Mshv),
            _ => Err(UnknownHypervisor(s.to_string())),
        }
    }
}

/// Where each hypervisor's device is. Tests point these at missing or unusable paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypervisorPaths {
    /// The KVM device, `/dev/kvm` by default.
    pub kvm: PathBuf,
    /// The mshv device, `/dev/mshv` by default.
    pub mshv: PathBuf,
}

impl Default for HypervisorPaths {
    fn default() -> Self {
        Self {
            kvm: PathBuf::from(KVM_DEVICE),
            mshv: PathBuf::from(MSHV_DEVICE),
        }
    }
}

/// Opens the hypervisor `choice` names, at `paths`.
///
/// Errors: [`Error::NoHypervisor`] for [`HypervisorChoice::Auto`] when neither is usable (with
/// each one's reason); [`Error::HypervisorUnusable`] when the explicitly chosen one is not
/// usable, including [`HypervisorChoice::Mshv`] in a build without the `mshv` feature.
pub fn open(
    choice: HypervisorChoice,
    paths: &HypervisorPaths,
) -> Result<Arc<dyn Hypervisor>, Error> {
    match choice {
        HypervisorChoice::Auto => {
            let kvm = match open_kvm(&paths.kvm) {
                Ok(hv) => return Ok(hv),
                Err(e) => why_unusable(&paths.kvm, e),
            };
            let mshv = match open_mshv(&paths.mshv) {
                Ok(hv) => {
                    tracing::debug!(kvm = %kvm, "KVM not usable; using mshv");
                    return Ok(hv);
                }
                Err(e) => why_unusable(&paths.mshv, e),
            };
            Err(Error::NoHypervisor { kvm, mshv })
        }
        HypervisorChoice::Kvm => open_kvm(&paths.kvm),
        HypervisorChoice::Mshv => open_mshv(&paths.mshv),
    }
}

fn open_kvm(path: &Path) -> Result<Arc<dyn Hypervisor>, Error> {
    Ok(Arc::new(KvmHypervisor::open(path)?))
}

#[cfg(feature = "mshv")]
fn open_mshv(path: &Path) -> Result<Arc<dyn Hypervisor>, Error> {
    Ok(Arc::new(super::mshv::MshvHypervisor::open(path)?))
}

#[cfg(not(feature = "mshv"))]
fn open_mshv(path: &Path) -> Result<Arc<dyn Hypervisor>, Error> {
    Err(Error::HypervisorUnusable {
        hypervisor: "mshv",
        why: Unusable::new(
            path,
            UnusableReason::NotBuilt {
                feature: "mshv",
                device_exists: path.exists(),
            },
        ),
    })
}

/// Why the backend at `path` is not usable, from the error its `open` returned (always
/// [`Error::HypervisorUnusable`]; anything else is kept as its message).
fn why_unusable(path: &Path, error: Error) -> Unusable {
    match error {
        Error::HypervisorUnusable { why, .. } => why,
        other => Unusable::new(
            path,
            UnusableReason::Unsupported {
                reason: other.to_string(),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn missing() -> HypervisorPaths {
        HypervisorPaths {
            kvm: PathBuf::from("/nonexistent/hyperlight/kvm"),
            mshv: PathBuf::from("/nonexistent/hyperlight/mshv"),
        }
    }

    #[test]
    fn choices_parse_and_print() {
        for choice in [
            HypervisorChoice::Auto,
            HypervisorChoice::Kvm,
            HypervisorChoice::Mshv,
        ] {
            assert_eq!(choice.to_string().parse::<HypervisorChoice>(), Ok(choice));
        }
        assert_eq!(" KVM ".parse(), Ok(HypervisorChoice::Kvm));
        assert_eq!(
            "hyperv".parse::<HypervisorChoice>(),
            Err(UnknownHypervisor("hyperv".into()))
        );
        assert_eq!(HypervisorChoice::default(), HypervisorChoice::Auto);
    }

    #[test]
    fn default_paths_are_the_device_nodes() {
        let paths = HypervisorPaths::default();
        assert_eq!(paths.kvm, Path::new("/dev/kvm"));
        assert_eq!(paths.mshv, Path::new("/dev/mshv"));
    }

    #[test]
    fn open_errors_are_classified_by_kind() {
        assert!(matches!(
            UnusableReason::of_open_error(io::Error::from_raw_os_error(libc::ENOENT)),
            UnusableReason::NotFound
        ));
        for errno in [libc::EACCES, libc::EPERM] {
            assert!(matches!(
                UnusableReason::of_open_error(io::Error::from_raw_os_error(errno)),
                UnusableReason::PermissionDenied { .. }
            ));
        }
        assert!(matches!(
            UnusableReason::of_open_error(io::Error::from_raw_os_error(libc::ENXIO)),
            UnusableReason::Open { .. }
        ));
    }

    #[test]
    fn a_backends_open_says_which_device_and_why() {
        let path = Path::new("/nonexistent/hyperlight/kvm");
        let Err(Error::HypervisorUnusable { hypervisor, why }) = KvmHypervisor::open(path) else {
            panic!("opened KVM at a missing path");
        };
        assert_eq!((hypervisor, why.path.as_path()), ("KVM", path));
        assert!(matches!(why.reason, UnusableReason::NotFound));
        assert_eq!(why.to_string(), "/nonexistent/hyperlight/kvm: not found");
        // A device that opens but is not KVM: its API-version check fails.
        let Err(Error::HypervisorUnusable { why, .. }) = KvmHypervisor::open("/dev/null".as_ref())
        else {
            panic!("/dev/null opened as KVM");
        };
        assert!(
            matches!(why.reason, UnusableReason::Unsupported { .. }),
            "{why}"
        );
    }

    #[test]
    fn nothing_usable_names_both_devices() {
        let err = match open(HypervisorChoice::Auto, &missing()) {
            Err(e) => e,
            Ok(_) => panic!("opened a hypervisor at a missing path"),
        };
        let mshv_why = if MSHV_BUILT {
            "not found"
        } else {
            "not built with the `mshv` cargo feature"
        };
        assert_eq!(
            err.to_string(),
            format!(
                "no usable hypervisor: KVM (/nonexistent/hyperlight/kvm: not found); \
                 mshv (/nonexistent/hyperlight/mshv: {mshv_why})"
            )
        );
        let Error::NoHypervisor { kvm, mshv } = err else {
            panic!("expected NoHypervisor, got {err:?}");
        };
        assert!(matches!(kvm.reason, UnusableReason::NotFound));
        if MSHV_BUILT {
            assert!(matches!(mshv.reason, UnusableReason::NotFound));
        } else {
            assert!(matches!(
                mshv.reason,
                UnusableReason::NotBuilt {
                    feature: "mshv",
                    device_exists: false
                }
            ));
        }
    }
}

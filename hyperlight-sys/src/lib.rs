//! Blocking micro-VM sandboxes on KVM.
//!
//! Each [`Sandbox`] is a VM with one vCPU, run by a dedicated OS thread, with its guest entered
//! directly in ring 3 of 64-bit long mode on page tables, GDT, IDT and TSS the host built. The
//! host calls guest functions by name with typed arguments; the guest calls back only the host
//! functions the host registered, with the declared types. Every message across the boundary is a
//! verified FlatBuffer, copied out of guest memory once before it is parsed.
//!
//! ```
//! use hyperlight_sys::{Error, Sandbox};
//!
//! # fn main() -> Result<(), Error> {
//! // A guest ELF built for x86_64-unknown-none with the hyperlight-guest library.
//! let guest = hyperlight_testing::simple_guest();
//! let mut sandbox = Sandbox::builder(guest)
//!     .host_fn("host_add", |a: i32, b: i32| a + b) // the only host function the guest may call
//!     .build()?;
//! let sum: i32 = sandbox.call("call_host_add", (2i32, 3i32))?; // guest -> host -> guest
//! assert_eq!(sum, 5);
//!
//! // A fault is a typed error; the sandbox is poisoned until restored to its post-init state.
//! assert!(matches!(sandbox.call::<u64>("divide_by_zero", (1u64,)), Err(Error::DivideByZero { .. })));
//! sandbox.restore()?;
//! assert_eq!(sandbox.call::<u64>("counter", ())?, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The async API (`hyperlight-async`) builds on this crate. The host's hand-written `unsafe`
//! code lives in this crate only (memory mapping, ioctls, signals); every block says why it
//! holds.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod boundary;
mod config;
pub mod error;
#[doc(hidden)]
pub mod floor;
pub mod host_fn;
pub mod hypervisor;
mod sandbox;
pub mod seccomp;
#[doc(hidden)]
pub mod vcpu;
#[doc(hidden)]
pub mod vm;

pub use config::SandboxConfig;
pub use error::{Access, Error};
pub use host_fn::{HostFunction, Signature};
pub use hyperlight_schema as schema;
pub use sandbox::{hypervisor_for, GuestBinary, Sandbox, SandboxBuilder, SandboxSource};
pub use seccomp::{OnDenied, SeccompPolicy};
pub use vcpu::{DoorbellStats, InterruptHandle};
pub use vm::snapshot::Snapshot;

//! The vCPU thread of a sandbox and what it needs: the messages it exchanges with the sandbox's
//! owner ([`VcpuThread`]), the kick that stops a running guest from any thread
//! ([`InterruptHandle`]), the adaptive polling of its waits, the factories that start its
//! threads under their seccomp filter, and the containment of panics of host code on it.
//!
//! Public for front ends of this crate's runtime (`hyperlight-async`); the crate root hides it
//! from the docs and re-exports [`InterruptHandle`].

pub(crate) mod contain;
pub(crate) mod doorbell;
pub(crate) mod factory;
#[cfg(feature = "gdb")]
pub(crate) mod gdb;
pub(crate) mod kick;
pub mod spin;
pub(crate) mod thread;
pub(crate) mod watchdog;

pub use doorbell::{Collected, DoorbellStats};
pub use kick::InterruptHandle;
pub use spin::Spinner;
pub use thread::{Event, Request, VcpuSpec, VcpuThread};

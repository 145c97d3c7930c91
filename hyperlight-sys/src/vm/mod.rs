//! One sandbox's virtual machine: its memory and the layout of it, the CPU tables the host
//! builds in it, the guest image loaded into it, the snapshots it is restored from, and the
//! `Machine` that ties them to a vCPU and runs guest calls.
//!
//! `layout`, `memory` and `elf` are public for the fuzz targets, benchmarks and regression tests
//! only (the crate root hides this module from the docs).

pub(crate) mod crash_dump;
#[cfg(feature = "gdb")]
pub(crate) mod debug;
pub mod elf;
pub mod layout;
pub(crate) mod machine;
pub mod memory;
pub(crate) mod snapshot;
pub(crate) mod x86;

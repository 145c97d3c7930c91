//! Run WebAssembly modules in hyperlight micro-VMs (work in progress, issue 14).
#![forbid(unsafe_code)]

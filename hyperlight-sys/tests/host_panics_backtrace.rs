//! The tests of `host_panics.rs` with `RUST_BACKTRACE=1`: the default panic hook then captures
//! and prints a backtrace on the vCPU thread (under its seccomp filter) before unwinding, and
//! no call or restore may hang meanwhile.

mod panics;

panic_tests!(true);

//! No panic of host code on a vCPU thread (a host function's payload, a tracing subscriber)
//! takes the thread down: the call fails with a typed error and the sandbox restores.

mod panics;

panic_tests!(false);

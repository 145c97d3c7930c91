//! The Wasm runner computes what wasmi in this process computes, on KVM: 50 SHA-256 rounds over
//! 1 KiB (a long run of integer instructions, which a tail-call dispatch whose handlers end in
//! calls would overflow the guest stack with) and 2,000 steps of n-body (floats, which the
//! runner's SSE2 target does in XMM registers), bit for bit. The benchmarks check the same before
//! they time anything; this runs it in the test suite.

use hyperlight_benches::compute::{check_agreement, Compute, SandboxCompute};
use hyperlight_benches::in_process::Wasmi;
use hyperlight_benches::wasm::compute_bytes;

#[test]
fn the_sandbox_computes_what_wasmi_in_process_computes() {
    let mut sandbox = SandboxCompute::new().expect("a sandbox of the compute module");
    let mut wasmi = Wasmi::new(&compute_bytes()).expect("wasmi in process");
    check_agreement(&mut [
        ("in_process_wasmi", &mut wasmi as &mut dyn Compute),
        ("sandbox_wasmi", &mut sandbox),
    ]);
}

//! The blocking runtime against the raw KVM floor, in one run so ratios are comparable:
//! `floor/*` is what the hypervisor costs with the same crates and ring-3 tables;
//! `sandbox/*` is what a sandbox costs on top of it.

use criterion::{criterion_group, criterion_main, Criterion};
use hyperlight_benches::{host_add, simple_sandbox};
use hyperlight_sys::floor::FloorVm;
use hyperlight_sys::{hypervisor_for, Sandbox, SandboxConfig};

fn floor(c: &mut Criterion) {
    let hv = hypervisor_for(&SandboxConfig::default()).unwrap();
    let mut group = c.benchmark_group("floor");
    group.bench_function("vm_setup", |b| {
        b.iter_with_large_drop(|| FloorVm::new(&*hv).unwrap())
    });
    let mut vm = FloorVm::new(&*hv).unwrap();
    group.bench_function("kvm_round_trip", |b| b.iter(|| vm.round_trip().unwrap()));
    group.finish();
}

fn sandbox(c: &mut Criterion) {
    let mut group = c.benchmark_group("sandbox");
    group.bench_function("create_from_elf", |b| {
        b.iter_with_large_drop(|| simple_sandbox().unwrap())
    });
    let mut sb = simple_sandbox().unwrap();
    group.bench_function("trivial_call", |b| {
        b.iter(|| sb.call::<()>("nop", ()).unwrap())
    });
    group.bench_function("guest_host_guest_call", |b| {
        b.iter(|| sb.call::<i32>("call_host_add", (1i32, 2i32)).unwrap())
    });
    // The same host function on a worker thread of its own (what `host_fn_with_syscalls` does):
    // what running sync host functions off the vCPU thread would cost every host call, the
    // design the syscall gate avoids (docs/security.md).
    let mut worker = Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn_with_syscalls("host_add", &[], host_add)
        .build()
        .unwrap();
    group.bench_function("guest_host_guest_call_on_a_worker", |b| {
        b.iter(|| worker.call::<i32>("call_host_add", (1i32, 2i32)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, floor, sandbox);
criterion_main!(benches);

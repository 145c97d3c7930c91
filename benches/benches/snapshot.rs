//! Snapshots in one run beside the raw VM set-up floor: create from ELF and from snapshot,
//! restore after a call touching 1 or 64 pages, and the ways of restoring compared over whole
//! call + restore cycles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hyperlight_benches::simple_sandbox;
use hyperlight_sys::floor::FloorVm;
use hyperlight_sys::hypervisor::kvm::{KvmHypervisor, WriteTracking, KVM_DEVICE};
use hyperlight_sys::hypervisor::Hypervisor;
use hyperlight_sys::{hypervisor_for, Sandbox, SandboxConfig, Snapshot};

fn from_snapshot(snapshot: &Snapshot) -> Sandbox {
    Sandbox::builder(snapshot)
        .host_fn("host_add", hyperlight_benches::host_add)
        .build()
        .unwrap()
}

fn create(c: &mut Criterion) {
    let mut group = c.benchmark_group("create");
    let hv = hypervisor_for(&SandboxConfig::default()).unwrap();
    group.bench_function("floor_vm_setup", |b| {
        b.iter_with_large_drop(|| FloorVm::new(&*hv).unwrap())
    });
    group.bench_function("from_elf", |b| {
        b.iter_with_large_drop(|| simple_sandbox().unwrap())
    });
    let snapshot = simple_sandbox().unwrap().post_init_snapshot().clone();
    group.bench_function("from_snapshot", |b| {
        b.iter_with_large_drop(|| from_snapshot(&snapshot))
    });
    // The sandbox's vCPU thread takes over the VM after `build` returns: its first call shows
    // that nothing was put off. Against the floor's set-up plus its first run.
    group.bench_function("floor_vm_setup_and_first_run", |b| {
        b.iter_with_large_drop(|| {
            let mut vm = FloorVm::new(&*hv).unwrap();
            vm.round_trip().unwrap();
            vm
        })
    });
    group.bench_function("from_snapshot_and_first_call", |b| {
        b.iter_with_large_drop(|| {
            let mut sb = from_snapshot(&snapshot);
            sb.call::<()>("nop", ()).unwrap();
            sb
        })
    });
    group.finish();
}

/// Times only the restore after each call of `touch_pages(pages)` (0: `nop`).
fn restore_after(sb: &mut Sandbox, pages: u32, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        match pages {
            0 => sb.call::<()>("nop", ()).unwrap(),
            n => drop(sb.call::<u32>("touch_pages", (n,)).unwrap()),
        }
        let start = Instant::now();
        sb.restore().unwrap();
        total += start.elapsed();
    }
    total
}

fn restore(c: &mut Criterion) {
    let mut group = c.benchmark_group("restore");
    let mut sb = simple_sandbox().unwrap();
    group.bench_function("after_trivial_call", |b| {
        b.iter_custom(|iters| restore_after(&mut sb, 0, iters))
    });
    for pages in [1u32, 64] {
        group.bench_with_input(
            BenchmarkId::new("after_touching_pages", pages),
            &pages,
            |b, &p| b.iter_custom(|iters| restore_after(&mut sb, p, iters)),
        );
    }
    group.finish();
}

/// Whole cycles (call + restore), since a way of restoring also costs the next call what it
/// makes the guest fault on: the two write trackings, each copying back the written pages, and
/// building a new VM from the snapshot (what a restore to another snapshot does).
fn cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle");
    for (name, tracking) in [
        ("host_page_tables", WriteTracking::HostPageTables),
        ("kvm_dirty_log", WriteTracking::KvmDirtyLog),
    ] {
        let hv = KvmHypervisor::open(KVM_DEVICE.as_ref())
            .and_then(|hv| hv.with_write_tracking(tracking))
            .unwrap();
        let hv: Arc<dyn Hypervisor> = Arc::new(hv);
        let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
            .hypervisor(hv)
            .build()
            .unwrap();
        for pages in [1u32, 64] {
            group.bench_with_input(BenchmarkId::new(name, pages), &pages, |b, &p| {
                b.iter(|| {
                    sb.call::<u32>("touch_pages", (p,)).unwrap();
                    sb.restore().unwrap();
                })
            });
        }
    }
    // What a `SandboxPool` request costs its sandbox: a `fresh_per_call` sandbox restores right
    // after answering, while the caller already has its result; the next call waits for it.
    let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
        .fresh_per_call(true)
        .build()
        .unwrap();
    group.bench_with_input(BenchmarkId::new("fresh_per_call", 1), &1u32, |b, &p| {
        b.iter(|| sb.call::<u32>("touch_pages", (p,)).unwrap())
    });
    let mut sb = simple_sandbox().unwrap();
    let a = sb.post_init_snapshot().clone();
    let b_snapshot = sb.snapshot().unwrap();
    group.bench_with_input(BenchmarkId::new("new_vm", 1), &1u32, |b, &p| {
        // Alternating between two snapshots of the same state builds a VM per restore.
        let mut flip = false;
        b.iter(|| {
            sb.call::<u32>("touch_pages", (p,)).unwrap();
            flip = !flip;
            sb.restore_to(if flip { &b_snapshot } else { &a }).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, create, restore, cycle);
criterion_main!(benches);

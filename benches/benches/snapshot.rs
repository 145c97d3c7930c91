//! Snapshots in one run beside the raw VM set-up floor: create from ELF and from snapshot,
//! restore after a call touching 1 or 64 pages, and the two restore strategies compared over
//! whole call + restore cycles.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hyperlight_benches::simple_sandbox;
use hyperlight_sys::floor::FloorVm;
use hyperlight_sys::{hypervisor_for, Sandbox, SandboxConfig};

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
        b.iter_with_large_drop(|| {
            Sandbox::builder(&snapshot)
                .host_fn("host_add", hyperlight_benches::host_add)
                .build()
                .unwrap()
        })
    });
    group.finish();
}

/// Times only the restore after each call of `touch_pages(pages)`.
fn restore_after(sb: &mut Sandbox, pages: u32, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        sb.call::<u32>("touch_pages", (pages,)).unwrap();
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
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                sb.call::<()>("nop", ()).unwrap();
                let start = Instant::now();
                sb.restore().unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    for pages in [1u32, 64] {
        group.bench_with_input(
            BenchmarkId::new("after_touching_pages", pages),
            &pages,
            |b, &p| b.iter_custom(|iters| restore_after(&mut sb, p, iters)),
        );
    }
    group.finish();

    // Whole cycles (call + restore): copying back dirty pages keeps the hypervisor's mappings;
    // remapping a fresh copy-on-write mapping makes the next call fault every page it touches.
    let mut group = c.benchmark_group("cycle");
    let a = sb.post_init_snapshot().clone();
    let b_snapshot = sb.snapshot().unwrap();
    for pages in [1u32, 64] {
        group.bench_with_input(BenchmarkId::new("dirty_copy", pages), &pages, |b, &p| {
            sb.restore_to(&a).unwrap();
            b.iter(|| {
                sb.call::<u32>("touch_pages", (p,)).unwrap();
                sb.restore_to(&a).unwrap();
            })
        });
        group.bench_with_input(BenchmarkId::new("remap", pages), &pages, |b, &p| {
            // Alternating between two snapshots of the same state forces the remap path.
            let mut flip = false;
            b.iter(|| {
                sb.call::<u32>("touch_pages", (p,)).unwrap();
                flip = !flip;
                sb.restore_to(if flip { &b_snapshot } else { &a }).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, create, restore);
criterion_main!(benches);

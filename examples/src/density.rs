//! Many live sandboxes of one guest in one process, created from its post-init snapshot: what
//! one costs in time and memory.

use std::time::{Duration, Instant};

use hyperlight_sys::{Error, Sandbox};

/// Memory of this process, from `/proc/self/smaps_rollup` (KiB).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident set size.
    pub rss_kib: u64,
    /// Proportional set size: shared pages divided among their sharers.
    pub pss_kib: u64,
}

impl Memory {
    /// Reads the current figures.
    pub fn now() -> Memory {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("Rss:"),
            pss_kib: field("Pss:"),
        }
    }
}

/// What [`run`] measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Sandboxes alive at once.
    pub sandboxes: usize,
    /// Time to create them all from the snapshot.
    pub create: Duration,
    /// Time for one call on each.
    pub call: Duration,
    /// Time to drop them all.
    pub teardown: Duration,
    /// Memory before creating them.
    pub before: Memory,
    /// Memory with all of them alive, each after one call.
    pub alive: Memory,
}

impl Report {
    /// Memory growth per sandbox, in KiB (RSS, PSS).
    pub fn per_sandbox_kib(&self) -> (f64, f64) {
        let n = self.sandboxes.max(1) as f64;
        (
            self.alive.rss_kib.saturating_sub(self.before.rss_kib) as f64 / n,
            self.alive.pss_kib.saturating_sub(self.before.pss_kib) as f64 / n,
        )
    }
}

/// Open file descriptors each live sandbox holds: its vCPU's (the host kernel tracks its writes,
/// so the VM's fd is closed once the vCPU exists).
pub const FDS_PER_SANDBOX: u64 = 1;
/// Memory mappings each live sandbox adds: its guest memory, its vCPU's `kvm_run` page, and its
/// thread's stack and signal stack, each with a guard page.
pub const MAPS_PER_SANDBOX: u64 = 6;
/// Tasks each live sandbox adds: its vCPU thread and the kernel worker KVM starts for every VM
/// (`kvm-nx-lpage-re`, at its first run).
pub const TASKS_PER_SANDBOX: u64 = 2;

/// What bounds the number of sandboxes [`max_sandboxes`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Nothing: as many as asked for fit.
    None,
    /// The open-file limit (`ulimit -n`), raised as far as this process may.
    OpenFiles,
    /// `vm.max_map_count`, the mappings a process may have.
    MemoryMaps,
    /// `kernel.pid_max` and `kernel.threads-max`, the tasks the system may have.
    Tasks,
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// How many of `wanted` sandboxes fit this process and machine (open files, memory mappings,
/// tasks), keeping room for the template sandbox and the runtime; and what bounds it.
pub fn max_sandboxes(wanted: usize) -> (usize, Limit) {
    // Raises the soft limit up to the hard one; raising the hard limit needs CAP_SYS_RESOURCE.
    let _ = rlimit::increase_nofile_limit(wanted as u64 * FDS_PER_SANDBOX + 256);
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    let fds = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64);
    let maps = std::fs::read_to_string("/proc/self/maps").map_or(64, |m| m.lines().count() as u64);
    let max_maps = read_number("/proc/sys/vm/max_map_count").unwrap_or(65_530);
    // The fourth field of /proc/loadavg is "running/total" tasks of the system.
    let tasks = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(1_000);
    let max_tasks = read_number("/proc/sys/kernel/pid_max")
        .unwrap_or(32_768)
        .min(read_number("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX));
    let room = |limit: u64, used: u64, each: u64| {
        (limit.saturating_sub(used + 2 * each + 64) / each) as usize
    };
    [
        (wanted, Limit::None),
        (room(soft, fds, FDS_PER_SANDBOX), Limit::OpenFiles),
        (room(max_maps, maps, MAPS_PER_SANDBOX), Limit::MemoryMaps),
        (room(max_tasks, tasks, TASKS_PER_SANDBOX), Limit::Tasks),
    ]
    .into_iter()
    .min_by_key(|&(n, _)| n)
    .unwrap_or((wanted, Limit::None))
}

/// Creates `n` sandboxes of the `simple` test guest from one post-init snapshot, calls each
/// once, measures, and drops them. `n` must fit this machine's limits (see [`max_sandboxes`]).
pub fn run(n: usize) -> Result<Report, Error> {
    let template = Sandbox::builder(hyperlight_testing::simple_guest()).build()?;
    let snapshot = template.post_init_snapshot().clone();
    let before = Memory::now();
    let start = Instant::now();
    let mut sandboxes = Vec::with_capacity(n);
    for _ in 0..n {
        sandboxes.push(Sandbox::builder(&snapshot).build()?);
    }
    let create = start.elapsed();
    let start = Instant::now();
    for (i, sb) in sandboxes.iter_mut().enumerate() {
        let v = i as i32;
        assert_eq!(sb.call::<i32>("echo_i32", (v,))?, v);
    }
    let call = start.elapsed();
    let alive = Memory::now();
    let start = Instant::now();
    drop(sandboxes);
    let teardown = start.elapsed();
    Ok(Report {
        sandboxes: n,
        create,
        call,
        teardown,
        before,
        alive,
    })
}

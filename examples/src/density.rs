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

/// Open file descriptors each live sandbox holds: its VM and its vCPU.
pub const FDS_PER_SANDBOX: u64 = 2;

/// How many sandboxes fit in this process's open-file limit, after raising it as far as this
/// process may (raising the hard limit needs `CAP_SYS_RESOURCE`).
pub fn max_sandboxes(wanted: usize) -> usize {
    let need = wanted as u64 * FDS_PER_SANDBOX + 64;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, need, need).is_err() {
        let _ = rlimit::increase_nofile_limit(need);
    }
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
    let open = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64);
    // Keep room for the template sandbox and a few descriptors of the runtime.
    let room = soft.saturating_sub(open + FDS_PER_SANDBOX + 8) / FDS_PER_SANDBOX;
    wanted.min(room as usize)
}

/// Creates `n` sandboxes of the `simple` test guest from one post-init snapshot, calls each
/// once, measures, and drops them. `n` must fit the open-file limit (see [`max_sandboxes`]).
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

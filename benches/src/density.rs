//! Memory per live sandbox: the process's resident memory before and after making many.

use std::io;

/// The process's resident memory, from `/proc/self/smaps_rollup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size, in bytes (what `VmRSS` shows).
    pub rss: u64,
    /// Proportional set size, in bytes: each shared page divided among the processes mapping it.
    pub pss: u64,
}

impl Memory {
    /// The process's memory now.
    ///
    /// # Errors
    ///
    /// If `/proc/self/smaps_rollup` cannot be read or lacks the `Rss` or `Pss` line.
    pub fn now() -> io::Result<Memory> {
        let text = std::fs::read_to_string("/proc/self/smaps_rollup")?;
        let field = |name: &str| -> io::Result<u64> {
            text.lines()
                .find_map(|line| {
                    let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                    rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
                })
                .map(|kib| kib * 1024)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("no {name} line in /proc/self/smaps_rollup"),
                    )
                })
        };
        Ok(Memory {
            rss: field("Rss")?,
            pss: field("Pss")?,
        })
    }
}

/// The memory growth per live sandbox, measured over `count` sandboxes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Density {
    /// How many sandboxes were alive at the second measurement.
    pub count: usize,
    /// Growth of the resident set per sandbox, in bytes.
    pub rss_per_sandbox: f64,
    /// Growth of the proportional set per sandbox, in bytes.
    pub pss_per_sandbox: f64,
}

impl Density {
    /// The growth from `before` to `after` with `count` more sandboxes alive.
    pub fn between(before: Memory, after: Memory, count: usize) -> Density {
        let per = |a: u64, b: u64| (b as f64 - a as f64) / count.max(1) as f64;
        Density {
            count,
            rss_per_sandbox: per(before.rss, after.rss),
            pss_per_sandbox: per(before.pss, after.pss),
        }
    }
}

impl std::fmt::Display for Density {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sandboxes: {:.1} KiB RSS, {:.1} KiB PSS per sandbox",
            self.count,
            self.rss_per_sandbox / 1024.0,
            self.pss_per_sandbox / 1024.0
        )
    }
}

/// Forks `count` sandboxes from `template` (from its post-instantiation snapshot), calls `export`
/// (no parameters, an `i32` result) once on each, and measures the memory growth while all are
/// alive. One fork is made, called and dropped first, so one-time allocations are not counted.
///
/// # Errors
///
/// What [`hyperlight_wasm::WasmSandbox::fork`] or the call reports.
///
/// # Panics
///
/// If `/proc/self/smaps_rollup` cannot be read.
pub async fn wasm_density(
    template: &hyperlight_wasm::WasmSandbox,
    count: usize,
    export: &str,
) -> Result<Density, hyperlight_wasm::Error> {
    template.fork().await?.call::<i32>(export, ()).await?;
    let before = Memory::now().expect("/proc/self/smaps_rollup");
    let mut alive = Vec::with_capacity(count);
    for _ in 0..count {
        let sandbox = template.fork().await?;
        sandbox.call::<i32>(export, ()).await?;
        alive.push(sandbox);
    }
    let after = Memory::now().expect("/proc/self/smaps_rollup");
    drop(alive);
    Ok(Density::between(before, after, count))
}

//! Crash dumps on real KVM: a guest fault writes an ELF core file that stock gdb opens with the
//! guest's ELF and backtraces by function name; dumps on demand; the size bound.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use hyperlight_sys::{Access, Error, SandboxConfig};

/// A fresh, empty directory for one test's dumps.
fn dump_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hl-dumps-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The dump files in `dir`.
fn dumps_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "core"))
        .collect()
}

/// `gdb -batch` on the simple guest's ELF and `core` with the commands `ex`; `None` (and a
/// SKIPPED line) if gdb is not installed.
fn gdb(core: &Path, ex: &[&str]) -> Option<String> {
    let gdb = Path::new("/usr/bin/gdb");
    if !gdb.exists() {
        hyperlight_testing::skip("gdb is not installed (apt-get install gdb)");
        return None;
    }
    let mut command = Command::new(gdb);
    command.args(["-nx", "-batch"]);
    for e in ex {
        command.args(["-ex", e]);
    }
    let out = command
        .arg(hyperlight_testing::simple_guest())
        .arg(core)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "gdb failed:\n{text}");
    Some(text)
}

/// The position of the backtrace frame line (`#N ...`) that names `function`.
fn frame_of(bt: &str, function: &str) -> usize {
    bt.lines()
        .position(|l| l.starts_with('#') && l.contains(function))
        .unwrap_or_else(|| panic!("no frame of {function} in:\n{bt}"))
}

#[test]
fn a_fault_writes_a_core_that_gdb_backtraces_by_function_name() {
    let dir = dump_dir("fault");
    let config = SandboxConfig {
        crash_dump_dir: Some(dir.clone()),
        ..SandboxConfig::default()
    };
    let mut sb = common::simple().config(config).build().unwrap();
    let err = sb.call::<u64>("fault_in_callee", (7u64,)).unwrap_err();
    let Error::MemoryViolation {
        addr: 16,
        access: Access::Write,
        rip,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    // The dump is written before the call's error is returned.
    let dumps = dumps_in(&dir);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let Some(out) = gdb(&dumps[0], &["bt", "info registers rip"]) else {
        return;
    };
    // The faulting function is frame 0, its caller above it, and the registers are the
    // guest's at the fault (not the ring-0 stub's).
    let callee = frame_of(&out, "fault_callee");
    let caller = frame_of(&out, "fault_caller");
    assert!(callee < caller, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("#0") && l.contains("fault_callee")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{rip:#x}")),
        "rip {rip:#x} not in:\n{out}"
    );
    assert!(out.contains("SIGSEGV"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dump_on_demand_of_a_faulted_sandbox_shows_the_fault() {
    // No directory: faults write nothing; `crash_dump` writes where it is told.
    let dir = dump_dir("demand");
    std::fs::create_dir_all(&dir).unwrap();
    let mut sb = common::simple().build().unwrap();
    assert_eq!(sb.call::<u64>("echo_u64", (5u64,)).unwrap(), 5);
    let idle = dir.join("idle.core");
    assert!(sb.crash_dump(&idle).unwrap() > 0);
    let Some(out) = gdb(&idle, &["info registers rip"]) else {
        return;
    };
    assert!(out.contains("rip"), "{out}");
    // An existing file is never overwritten.
    assert!(matches!(
        sb.crash_dump(&idle),
        Err(Error::CrashDumpFile { .. })
    ));
    sb.call::<u64>("fault_in_callee", (1u64,)).unwrap_err();
    assert!(dumps_in(&dir).iter().all(|p| p == &idle));
    let faulted = dir.join("faulted.core");
    sb.crash_dump(&faulted).unwrap();
    let out = gdb(&faulted, &["bt"]).unwrap();
    assert!(
        frame_of(&out, "fault_callee") < frame_of(&out, "fault_caller"),
        "{out}"
    );
    // A restore ends the poisoning as usual.
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("echo_u64", (6u64,)).unwrap(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dump_holds_at_most_its_bound_of_memory_and_keeps_the_stack_top() {
    let dir = dump_dir("bound");
    let config = SandboxConfig {
        crash_dump_dir: Some(dir.clone()),
        crash_dump_max_size: SandboxConfig::MIN_CRASH_DUMP,
        ..SandboxConfig::default()
    };
    let mut sb = common::simple().config(config).build().unwrap();
    sb.call::<u64>("fault_in_callee", (3u64,)).unwrap_err();
    let dumps = dumps_in(&dir);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let size = std::fs::metadata(&dumps[0]).unwrap().len();
    // Headers and notes add a few KiB.
    assert!(size <= SandboxConfig::MIN_CRASH_DUMP + 16 * 1024, "{size}");
    // The image is left out (gdb reads the code from the ELF), the top of the stack is in.
    let Some(out) = gdb(&dumps[0], &["bt"]) else {
        return;
    };
    assert!(
        frame_of(&out, "fault_callee") < frame_of(&out, "fault_caller"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_out_of_range_bound_is_refused() {
    let config = SandboxConfig {
        crash_dump_max_size: SandboxConfig::MAX_CRASH_DUMP + 1,
        ..SandboxConfig::default()
    };
    assert!(matches!(
        common::simple().config(config).build(),
        Err(Error::InvalidConfig {
            field: "crash_dump_max_size",
            ..
        })
    ));
}

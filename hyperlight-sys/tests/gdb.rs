//! The gdb stub on real KVM (cargo feature `gdb`; `scripts/test.sh` runs this with it): stock
//! gdb, in batch mode, connects to a sandbox's debug port, breaks in a guest function that the
//! host calls, shows the backtrace and registers, and continues; the call returns its result.
#![cfg(feature = "gdb")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use hyperlight_sys::SandboxConfig;

/// A port nothing listens on now (the kernel's choice of a free one).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts `gdb -batch` on the simple guest's ELF against the stub at `port`, with `ex`;
/// `None` (and a SKIPPED line) if gdb is not installed.
fn start_gdb(port: u16, ex: &[&str]) -> Option<std::process::Child> {
    gdb_command(port, ex).map(|mut c| c.spawn().unwrap())
}

/// [`start_gdb`] with a pipe to gdb's standard input.
fn start_gdb_with_stdin(port: u16, ex: &[&str]) -> Option<std::process::Child> {
    gdb_command(port, ex).map(|mut c| c.stdin(Stdio::piped()).spawn().unwrap())
}

/// The gdb command of [`start_gdb`].
fn gdb_command(port: u16, ex: &[&str]) -> Option<Command> {
    if !Path::new("/usr/bin/gdb").exists() {
        hyperlight_testing::skip("gdb is not installed (apt-get install gdb)");
        return None;
    }
    // A bound on a broken session, not a synchronisation: every step below waits for gdb.
    let mut command = Command::new("timeout");
    command.args(["120", "/usr/bin/gdb", "-nx", "-batch"]);
    command.args(["-ex", "set pagination off"]);
    command.args(["-ex", &format!("target remote 127.0.0.1:{port}")]);
    for e in ex {
        command.args(["-ex", e]);
    }
    command
        .arg(hyperlight_testing::simple_guest())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Some(command)
}

#[test]
fn gdb_breaks_in_a_guest_function_the_host_calls_and_continues() {
    let port = free_port();
    let config = SandboxConfig {
        gdb_port: Some(port),
        ..SandboxConfig::default()
    };
    let mut sb = common::simple().config(config).build().unwrap();
    let Some(gdb) = start_gdb(
        port,
        &[
            "break debug_inner",
            // From the stop before the first call: the call below runs into the breakpoint.
            "continue",
            "bt",
            "info registers rip rdi",
            // Write a register, run one instruction (`lea rax, [rdi + 2 * rdi]`), read memory.
            "set var $rdi = 100",
            "stepi",
            "info registers rax",
            "x/2xg $sp",
            "continue",
        ],
    ) else {
        return;
    };
    // Blocks until gdb has attached and continued, then at the breakpoint until gdb continues.
    // gdb changed the argument from 14 to 100 at the breakpoint.
    let result: u64 = sb.call("debug_target", (14u64,)).unwrap();
    assert_eq!(result, 301);
    // The sandbox goes: gdb sees the target exit and its batch ends.
    drop(sb);
    let out = gdb.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "gdb failed ({:?}):\n{text}",
        out.status
    );
    let frame = |n: usize, f: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("#{n} ")) && l.contains(f))
    };
    assert!(text.contains("Breakpoint 1, "), "{text}");
    assert!(frame(0, "debug_inner"), "{text}");
    assert!(frame(1, "debug_outer"), "{text}");
    // `info registers`: RIP in the function, and its argument in RDI (the System V ABI).
    let reg = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_string()
    };
    assert!(reg("rip").contains("debug_inner"), "{text}");
    assert!(reg("rdi").contains("0xe"), "{text}");
    // After the step, RAX holds 3 * 100 and the stop is past the 4-byte `lea`.
    assert!(reg("rax").contains("0x12c"), "{text}");
    let at = text
        .lines()
        .find_map(|l| l.strip_prefix("Breakpoint 1 at 0x"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no breakpoint address in:\n{text}"));
    let stepped = format!("{:#018x} in debug_inner", at + 4);
    assert!(text.contains(&stepped), "{stepped} not in:\n{text}");
    // `x/2xg $sp`: the saved RBP and the return address into debug_outer.
    assert!(
        text.lines()
            .any(|l| l.starts_with("0x") && l.contains(":\t0x")),
        "{text}"
    );
    assert!(text.contains("exited normally"), "{text}");
}

#[test]
fn a_sandbox_that_waits_for_gdb_is_dropped_without_it() {
    let config = SandboxConfig {
        gdb_port: Some(free_port()),
        ..SandboxConfig::default()
    };
    let sb = common::simple().config(config).build().unwrap();
    // Its vCPU thread waits for gdb before the first call; dropping the sandbox ends the wait
    // and the stub's wait for a connection (the drop joins the vCPU thread).
    drop(sb);
}

#[test]
fn a_gdb_port_in_use_fails_the_build() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = SandboxConfig {
        gdb_port: Some(port),
        ..SandboxConfig::default()
    };
    match common::simple().config(config).build() {
        Err(hyperlight_sys::Error::GdbListen { port: p, .. }) => assert_eq!(p, port),
        other => panic!("expected GdbListen, got {:?}", other.err()),
    }
}

#[test]
fn gdb_stops_at_a_guest_fault_before_the_call_fails() {
    let port = free_port();
    let config = SandboxConfig {
        gdb_port: Some(port),
        ..SandboxConfig::default()
    };
    let mut sb = common::simple().config(config).build().unwrap();
    let Some(gdb) = start_gdb(port, &["continue", "bt", "continue"]) else {
        return;
    };
    // gdb sees the fault first; when it continues, the call ends with the fault's error.
    let err = sb.call::<u64>("fault_in_callee", (5u64,)).unwrap_err();
    assert!(
        matches!(err, hyperlight_sys::Error::MemoryViolation { addr: 16, .. }),
        "{err:?}"
    );
    drop(sb);
    let out = gdb.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "gdb failed ({:?}):\n{text}",
        out.status
    );
    assert!(text.contains("received signal SIGSEGV"), "{text}");
    let frame = |n: usize, f: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("#{n} ")) && l.contains(f))
    };
    assert!(frame(0, "fault_callee"), "{text}");
    assert!(frame(1, "fault_caller"), "{text}");
    assert!(text.contains("exited normally"), "{text}");
}

#[test]
fn a_kick_at_a_breakpoint_cancels_the_call_and_ends_the_gdb_session() {
    use std::io::{BufRead, Write};

    let port = free_port();
    let config = SandboxConfig {
        gdb_port: Some(port),
        ..SandboxConfig::default()
    };
    let mut sb = common::simple().config(config).build().unwrap();
    // `shell read` holds gdb at the breakpoint until this test writes a line to its stdin.
    let Some(mut gdb) = start_gdb_with_stdin(
        port,
        &[
            "break debug_inner",
            "continue",
            "shell read line",
            // Memory gdb has not cached: a packet to the stub.
            "x/2xg 0x5000",
        ],
    ) else {
        return;
    };
    let interrupt = sb.interrupt_handle();
    let stdout = gdb.stdout.take().unwrap();
    let watcher = std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen += &line;
            seen += "\n";
            if line.starts_with("Breakpoint 1, ") {
                // The guest is stopped at the breakpoint: kick it.
                interrupt.kill();
                break;
            }
        }
        seen + &lines.map(|l| l.unwrap() + "\n").collect::<String>()
    });
    let err = sb.call::<u64>("debug_target", (14u64,)).unwrap_err();
    assert!(matches!(err, hyperlight_sys::Error::Cancelled), "{err:?}");
    // Let gdb go on: its next command finds the session over.
    writeln!(gdb.stdin.take().unwrap()).unwrap();
    let status = gdb.wait().unwrap();
    let text = watcher.join().unwrap();
    assert!(text.contains("Breakpoint 1, "), "{text}");
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut gdb.stderr.take().unwrap(), &mut errors).unwrap();
    // The read fails: the stub's session is over (gdb prints the address, then the error).
    assert!(!text.contains("0x5000:\t0x"), "{status:?}:\n{text}{errors}");
    assert!(!status.success(), "{status:?}:\n{text}{errors}");
    // The sandbox runs on without a debugger: its breakpoint is out of guest memory.
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("debug_target", (14u64,)).unwrap(), 43);
}

//! A host function that faults on a filtered thread ends the process, as it would without a
//! filter, instead of faulting forever; one that tries to install a fault-signal handler ends it
//! too. Rust's handler answers a fault outside a stack guard page by resetting the signal to
//! `SIG_DFL` and returning, so that the repeated fault kills the process; the filter answers that
//! reset (any `rt_sigaction` setting a fault signal's action) by ending the process itself, with
//! `SIGSYS`. Each case runs in a child process (this test binary, run again for one test).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use hyperlight_sys::Sandbox;

/// Names the test a child process runs.
const CHILD: &str = "HYPERLIGHT_HOST_FAULT_CHILD";

/// Runs test `name` of this binary in a child process with [`CHILD`] set, and returns how the
/// child ended; fails if it has not ended within a minute (the fault spins).
fn in_child(name: &str) -> std::process::ExitStatus {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name}: the child still runs a minute later (the fault spins)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// In the child: calls `host_add` of the simple guest, whose host function is `f`. Returns only
/// if the process survived the call.
fn call_host_fn(f: fn(i32, i32) -> i32) {
    let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", f)
        .build()
        .unwrap();
    let r = sb.call::<i32>("call_host_add", (1i32, 2i32));
    eprintln!("the process survived the call: {r:?}");
}

fn filters_on() -> bool {
    !hyperlight_sys::seccomp::default_disabled_by_env()
}

#[test]
fn a_fault_in_a_host_function_ends_the_process_instead_of_spinning() {
    let name = "a_fault_in_a_host_function_ends_the_process_instead_of_spinning";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        call_host_fn(|a, _| {
            // SAFETY: not sound, on purpose: a read of an unmapped address, the host-function
            // bug this test is about.
            unsafe { std::ptr::read_volatile(std::ptr::null::<i32>().wrapping_add(a as usize)) }
        });
        return;
    }
    if !filters_on() {
        return;
    }
    let status = in_child(name);
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

extern "C" fn attacker_handler(_: libc::c_int) {}

#[test]
fn installing_a_fault_handler_on_a_filtered_thread_ends_the_process() {
    let name = "installing_a_fault_handler_on_a_filtered_thread_ends_the_process";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        call_host_fn(|a, b| {
            // SAFETY: a zeroed sigaction with a plain handler is valid; the handler does nothing.
            let rc = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = attacker_handler as *const () as usize;
                libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut())
            };
            eprintln!("sigaction(SIGSEGV, handler) returned {rc}");
            a + b
        });
        return;
    }
    if !filters_on() {
        return;
    }
    let status = in_child(name);
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

//! The syscall gate: the one `syscall` instruction through which the runtime issues the ioctls
//! of a running sandbox (KVM's vCPU ioctls, write tracking), so that the vCPU thread's seccomp
//! filter can allow those requests from this instruction only.
//!
//! Sync host functions run inline on the vCPU thread, under its filter. Without the gate, the
//! filter would have to allow KVM's ioctls to any code on the thread, and so to a host
//! function: `KVM_SET_REGS` on another sandbox's vCPU fd, `KVM_CREATE_VM` on `/dev/kvm`. The
//! kernel tells a filter the address of the instruction that made the system call
//! (`seccomp_data.instruction_pointer`), so the filter allows the gated requests only when they
//! come from [`return_address`]: code that calls `libc::ioctl` (or has a `syscall` of its own)
//! gets the denial, with no thread hop on the call path. Chromium's seccomp-bpf sandbox checks
//! its trusted syscall entry point the same way.
//!
//! What the gate does not stop: code that has taken over the thread's control flow can jump to
//! the gate with registers of its choice. The filter limits what host code can ask the kernel
//! for, not what code that runs arbitrary instructions in this address space can do
//! (`docs/security.md`).

use std::sync::OnceLock;

/// `ioctl(fd, request, arg)` made by the gate's own `syscall` instruction: returns the
/// kernel's raw result (a negative errno on failure; errno itself is untouched).
///
/// # Safety
/// As for `ioctl(2)`: `arg` must be what `request` expects on `fd` (for a pointer, valid for
/// the reads and writes the request makes, for as long as the call runs).
#[unsafe(naked)]
unsafe extern "C" fn gate_ioctl(fd: libc::c_int, request: libc::c_ulong, arg: usize) -> isize {
    // The System V arguments (rdi, rsi, rdx) are already where the syscall wants them; the
    // syscall clobbers rcx and r11, which the C ABI lets a callee clobber.
    std::arch::naked_asm!(
        "mov eax, {nr}",
        "syscall",
        "ret",
        nr = const libc::SYS_ioctl,
    )
}

/// `ioctl(fd, request, arg)` through the gate; a failure is the errno.
///
/// # Safety
/// As for `ioctl(2)`: `arg` must be what `request` expects on `fd` (for a pointer, valid for
/// the reads and writes the request makes, for as long as the call runs).
pub(crate) unsafe fn ioctl(
    fd: libc::c_int,
    request: libc::c_ulong,
    arg: usize,
) -> Result<libc::c_int, i32> {
    // SAFETY: the caller's contract is ioctl(2)'s, which is all the gate does.
    let rc = unsafe { gate_ioctl(fd, request, arg) };
    if (-4095..0).contains(&rc) {
        Err(-rc as i32)
    } else {
        Ok(rc as libc::c_int)
    }
}

/// The address the kernel reports as `seccomp_data.instruction_pointer` for a system call made
/// by the gate: the byte after its `syscall` instruction.
pub fn return_address() -> u64 {
    static ADDRESS: OnceLock<u64> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        let start = gate_ioctl as *const () as *const u8;
        // SAFETY: the gate's code is mapped readable (text), and its body is 8 bytes long
        // (`mov eax, imm32`: 5, `syscall`: 2, `ret`: 1); reading them does not execute them.
        let code = unsafe { std::slice::from_raw_parts(start, 8) };
        let syscall = code
            .windows(2)
            .position(|w| w == [0x0f, 0x05])
            .expect("the syscall gate contains a syscall instruction");
        start as u64 + syscall as u64 + 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_makes_ioctls_and_reports_errno() {
        // TCGETS on a pipe is not a terminal: ENOTTY, from the kernel, through the gate.
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: TCGETS writes a termios, for which `termios` has room.
        let rc = unsafe { ioctl(fds[0], libc::TCGETS, termios.as_mut_ptr() as usize) };
        assert_eq!(rc, Err(libc::ENOTTY));
        // FIONREAD on the pipe succeeds and writes the byte count.
        let mut n: libc::c_int = -1;
        // SAFETY: FIONREAD writes a c_int.
        let rc = unsafe { ioctl(fds[0], libc::FIONREAD, &mut n as *mut _ as usize) };
        assert_eq!((rc, n), (Ok(0), 0));
        for fd in fds {
            // SAFETY: both fds are ours.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn the_return_address_is_right_after_the_syscall_instruction() {
        let addr = return_address();
        // SAFETY: the two bytes before the address are the gate's syscall instruction (text).
        let before = unsafe { std::slice::from_raw_parts((addr - 2) as *const u8, 2) };
        assert_eq!(before, [0x0f, 0x05]);
        assert!(addr > gate_ioctl as *const () as u64);
    }
}

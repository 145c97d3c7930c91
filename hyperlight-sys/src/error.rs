//! The one error type of `hyperlight-sys`.

use std::path::PathBuf;
use std::sync::Arc;

use hyperlight_schema::wire::DecodeError;
use hyperlight_schema::{ErrorCode, ValueType};

use crate::vm::elf::ElfError;

/// Everything that can go wrong creating, calling or running a sandbox.
///
/// Errors marked *fatal* leave the sandbox poisoned: every later call returns
/// [`Error::Poisoned`] until [`Sandbox::restore`](crate::Sandbox::restore) succeeds.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hypervisor is not usable: its device could not be opened, or it lacks what the runtime
    /// needs (API version, a capability). A backend's `open` returns it, and so does an explicit
    /// [`HypervisorChoice`](crate::hypervisor::select::HypervisorChoice) whose backend is not
    /// usable (or not built).
    #[error("hypervisor {hypervisor} is not usable: {why}")]
    HypervisorUnusable {
        /// The backend: `"KVM"` or `"mshv"`.
        hypervisor: &'static str,
        /// Which device, and why it is not usable.
        why: Unusable,
    },
    /// Automatic selection found no usable hypervisor: neither KVM nor mshv. Says why for each.
    #[error("no usable hypervisor: KVM ({kvm}); mshv ({mshv})")]
    NoHypervisor {
        /// Why KVM is not usable.
        kvm: Unusable,
        /// Why mshv is not usable.
        mshv: Unusable,
    },
    /// A usable hypervisor cannot do what an operation asks: set an MSR the runtime needs,
    /// restore a vCPU state another backend saved, track writes the way a caller asked.
    #[error("the hypervisor cannot do this: {reason}")]
    HypervisorFeature {
        /// What it cannot do.
        reason: String,
    },
    /// A hypervisor ioctl failed.
    #[error("hypervisor operation {op} failed: errno {errno}")]
    Hypervisor {
        /// The ioctl, by its name (`KVM_RUN`, `KVM_SET_REGS`, ...).
        op: &'static str,
        /// The errno the kernel returned.
        errno: i32,
    },
    /// An OS call (memory mapping, thread creation) failed.
    #[error("{op} failed: {source}")]
    Os {
        /// What the runtime was doing (`memfd_create`, `spawn sandbox thread`, ...).
        op: &'static str,
        /// The OS error it got.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The configuration field (or the setting) that is out of range.
        field: &'static str,
        /// The value it was given (durations in microseconds).
        value: u64,
        /// Why it is rejected.
        reason: &'static str,
    },
    // The kick signal (one per process; see `SandboxConfig::kick_signal_offset`).
    /// The kick signal a sandbox asked for already has a disposition (a handler of the
    /// application or of a library, or `SIG_IGN`) that is not hyperlight's. It was left in
    /// place; nothing was built.
    #[error(
        "kick signal {signal} (SIGRTMIN+{offset}) already has a handler that is not hyperlight's; \
         it was left in place: choose another SandboxConfig::kick_signal_offset"
    )]
    KickSignalInUse {
        /// The signal number.
        signal: i32,
        /// Its offset from `SIGRTMIN`, as configured.
        offset: u8,
    },
    /// A sandbox asked for another kick signal than the one the process already uses (the
    /// first sandbox of the process chose it).
    #[error(
        "this process kicks vCPUs with SIGRTMIN+{installed}; a sandbox asked for \
         SIGRTMIN+{requested}, but the kick signal is one per process"
    )]
    KickSignalMismatch {
        /// The offset from `SIGRTMIN` of the signal in use.
        installed: u8,
        /// The offset the sandbox's configuration asked for.
        requested: u8,
    },
    /// The guest file could not be read.
    #[error("cannot read guest binary {path}: {source}")]
    GuestFile {
        /// The path the guest binary was to be read from.
        path: PathBuf,
        /// Why reading it failed (not found, permission, I/O).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A crash dump could not be written: its directory or file could not be created or
    /// written.
    #[error("cannot write crash dump {path}: {source}")]
    CrashDumpFile {
        /// The dump file (or the directory it was to go in).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The ELF core writer refused a crash dump (`elfcore` could not lay out the notes or the
    /// memory of the guest as it was captured).
    #[error("cannot lay out crash dump {path}: {source}")]
    CrashDumpFormat {
        /// The dump file.
        path: PathBuf,
        /// What the core writer reported.
        #[source]
        source: Arc<elfcore::CoreError>,
    },
    /// The gdb stub could not listen on its port (`SandboxConfig::gdb_port`, cargo feature
    /// `gdb`): in use, or not allowed.
    #[cfg(feature = "gdb")]
    #[error("gdb stub cannot listen on 127.0.0.1:{port}: {source}")]
    GdbListen {
        /// The port.
        port: u16,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The guest file is not a loadable ELF.
    #[error("invalid guest ELF: {0}")]
    Elf(#[from] ElfError),
    /// A host access to guest memory fell outside the mapping (a host bug or a bad length).
    #[error("guest memory access out of bounds: {len} bytes at {gpa:#x} in {size} bytes")]
    OutOfBounds {
        /// Guest physical address of the access.
        gpa: u64,
        /// Bytes the access covered.
        len: usize,
        /// Size of the guest memory in bytes.
        size: usize,
    },
    /// A message is larger than the buffer it must fit in.
    #[error("message of {len} bytes does not fit the {buffer} buffer of {capacity} bytes")]
    MessageTooLarge {
        /// Which buffer: `"input"` (host to guest) or `"output"` (guest to host).
        buffer: &'static str,
        /// The message's length in bytes.
        len: u64,
        /// How many bytes of message the buffer holds.
        capacity: u64,
    },
    /// Fatal: the guest broke the protocol (bad length, message off-schema, wrong port width).
    #[error("guest protocol violation: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// Fatal: a guest message did not verify against its schema.
    #[error("malformed guest message: {0}")]
    Malformed(#[from] DecodeError),
    /// The guest function reported an error; the sandbox stays usable.
    #[error("guest call failed ({code:?}): {message}")]
    GuestCall {
        /// The kind of failure the guest reported (unknown function, wrong arguments, its own).
        code: ErrorCode,
        /// The guest's message (guest-controlled text).
        message: String,
    },
    /// The guest returned a value of another type than the caller asked for.
    #[error("guest returned {actual:?}, caller expected {expected:?}")]
    ReturnTypeMismatch {
        /// The type the caller asked for.
        expected: ValueType,
        /// The type the guest returned.
        actual: ValueType,
    },
    /// Fatal: the guest panicked.
    #[error("guest panicked: {message}")]
    GuestPanic {
        /// Panic message and location.
        message: String,
    },
    /// Fatal: the guest's heap is exhausted.
    #[error("guest out of memory: {message}")]
    GuestOutOfMemory {
        /// The guest's report: the allocation that failed (guest-controlled text).
        message: String,
    },
    /// Fatal: integer divide by zero (#DE) in the guest.
    #[error("guest divide error at rip {rip:#x}")]
    DivideByZero {
        /// Guest address of the faulting instruction.
        rip: u64,
    },
    /// Fatal: the guest ran off the bottom of its stack.
    #[error("guest stack overflow at {addr:#x} (rip {rip:#x})")]
    StackOverflow {
        /// The address the guest touched, in the stack's guard page.
        addr: u64,
        /// Guest address of the faulting instruction.
        rip: u64,
    },
    /// Fatal: the guest touched memory it may not (unmapped, guard page, or forbidden access).
    #[error("guest memory violation: {access:?} at {addr:#x} (rip {rip:#x}, error code {error_code:#x})")]
    MemoryViolation {
        /// Faulting address (CR2).
        addr: u64,
        /// Whether the guest read, wrote or fetched an instruction there.
        access: Access,
        /// Guest address of the faulting instruction.
        rip: u64,
        /// The page-fault error code.
        error_code: u64,
    },
    /// Fatal: another CPU exception in the guest.
    #[error("guest CPU exception {vector} (error code {error_code:#x}) at rip {rip:#x}")]
    CpuException {
        /// The exception vector (13: #GP, 6: #UD, 3: #BP, ...).
        vector: u8,
        /// The error code the CPU pushed, 0 if the vector has none.
        error_code: u64,
        /// Guest address of the faulting instruction.
        rip: u64,
    },
    /// Fatal: the guest executed `syscall`; a sandbox has no system calls.
    #[error("guest executed `syscall`")]
    SyscallInstruction,
    /// Fatal: the vCPU stopped for a reason the protocol does not allow.
    #[error("unexpected vCPU exit: {exit}")]
    UnexpectedExit {
        /// Description of the exit.
        exit: String,
    },
    /// Fatal: the guest's last exit was an access the runtime never finishes (an `in`, a string
    /// or repeated port access, MMIO): finishing it would write guest registers or memory after
    /// the call ended. The vCPU is not entered again; a restore gives the sandbox a new one.
    #[error("the guest's last exit was an I/O access that is never finished (in, string I/O or MMIO); the vCPU must be rebuilt")]
    UnfinishableExit,
    /// The guest's init did not finish in time and was killed.
    #[error("guest init did not finish within {timeout:?}")]
    InitTimeout {
        /// The configured limit.
        timeout: std::time::Duration,
    },
    /// Fatal: the call was cancelled through the interrupt handle.
    #[error("call cancelled")]
    Cancelled,
    /// The sandbox is poisoned by an earlier fatal error (its source): restore it first.
    #[error("sandbox poisoned by an earlier error; restore it first")]
    Poisoned {
        /// The fatal error that poisoned it: what a call, a restore or contained host code
        /// failed with.
        #[source]
        cause: Box<Error>,
    },
    /// The vCPU thread is gone: the sandbox is shutting down, or its thread ended (a panic that
    /// could not be contained, such as one while unwinding). Every pending and later request
    /// gets this at once.
    #[error("sandbox vCPU thread is gone")]
    ThreadGone,
    /// Fatal: host code panicked on the vCPU thread while it served the sandbox: a `tracing`
    /// subscriber called for a guest log record or a call's span, or other host code outside a
    /// host function (a host function's panic becomes the error the guest receives instead).
    /// The thread lives on; the sandbox is poisoned until restored.
    #[error("host code panicked on the vCPU thread ({during}): {message}")]
    HostPanic {
        /// What the thread was doing: `"a guest log record"`, `"a request"`.
        during: &'static str,
        /// The panic's message (its `&str` or `String` payload).
        message: String,
    },
}

/// Why one hypervisor backend could not be used: the device path and the reason.
///
/// Part of [`Error::NoHypervisor`] (one per backend) and [`Error::HypervisorUnusable`].
#[derive(Clone, Debug, thiserror::Error)]
#[error("{path}: {reason}", path = path.display())]
pub struct Unusable {
    /// The device path that was tried (or, for [`UnusableReason::NotBuilt`], would have been).
    pub path: PathBuf,
    /// Why it is not usable.
    pub reason: UnusableReason,
}

impl Unusable {
    /// `path` is not usable for `reason`.
    pub fn new(path: &std::path::Path, reason: UnusableReason) -> Self {
        Unusable {
            path: path.to_path_buf(),
            reason,
        }
    }
}

impl UnusableReason {
    /// Why opening a hypervisor device failed with `source`: not found, permission denied, or
    /// another OS error.
    pub fn of_open_error(source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => UnusableReason::NotFound,
            std::io::ErrorKind::PermissionDenied => UnusableReason::PermissionDenied {
                source: Arc::new(source),
            },
            _ => UnusableReason::Open {
                source: Arc::new(source),
            },
        }
    }
}

/// The reason inside [`Unusable`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnusableReason {
    /// The device node does not exist (the hypervisor or its driver is not there).
    #[error("not found")]
    NotFound,
    /// The device exists but this process may not open it (file mode, group, or a security
    /// module).
    #[error("permission denied")]
    PermissionDenied {
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// Opening the device failed for another reason (e.g. the driver is not loaded).
    #[error("cannot open: {source}")]
    Open {
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The device opened but lacks something the runtime needs (API version, capability).
    #[error("unsupported: {reason}")]
    Unsupported {
        /// What is missing.
        reason: String,
    },
    /// This build of `hyperlight-sys` does not contain the backend.
    #[error(
        "not built with the `{feature}` cargo feature{}",
        if *device_exists { " (the device exists: rebuild with that feature)" } else { "" }
    )]
    NotBuilt {
        /// The cargo feature that enables the backend.
        feature: &'static str,
        /// Whether the device path exists on this machine all the same.
        device_exists: bool,
    },
}

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A read.
    Read,
    /// A write.
    Write,
    /// An instruction fetch.
    Execute,
}

impl Error {
    /// [`Error::Os`] for `op`, with the calling thread's last OS error.
    pub(crate) fn last_os(op: &'static str) -> Self {
        Error::os(op, std::io::Error::last_os_error())
    }

    /// [`Error::Os`] for `op`, failed with `source`.
    pub(crate) fn os(op: &'static str, source: std::io::Error) -> Self {
        Error::Os {
            op,
            source: Arc::new(source),
        }
    }

    /// Whether this error is a fault of the guest's own code (an exception, a panic, heap
    /// exhaustion, a `syscall`): the errors a crash dump is written for.
    pub fn is_guest_fault(&self) -> bool {
        matches!(
            self,
            Error::DivideByZero { .. }
                | Error::StackOverflow { .. }
                | Error::MemoryViolation { .. }
                | Error::CpuException { .. }
                | Error::SyscallInstruction
                | Error::GuestPanic { .. }
                | Error::GuestOutOfMemory { .. }
        )
    }

    /// Whether this error poisons the sandbox.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Error::GuestCall { .. }
                | Error::ReturnTypeMismatch { .. }
                | Error::MessageTooLarge { .. }
                | Error::Poisoned { .. }
                | Error::InvalidConfig { .. }
                | Error::CrashDumpFile { .. }
                | Error::CrashDumpFormat { .. }
        )
    }
}

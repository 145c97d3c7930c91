//! The functions of `wasi_snapshot_preview1`, every one of them: served in the runner (arguments,
//! environment, stdio, `proc_exit`, `sched_yield`), answered by the host (clocks, randomness,
//! sleeps), or refused with their errno (files, sockets, signals). The table in `docs/wasm.md`
//! lists what each does.

use alloc::vec;
use alloc::vec::Vec;

use hyperlight_guest::schema::wasm::wasi_host;
use hyperlight_guest::{call_host_values, ErrorCode, GuestError, Value, ValueType};

use super::run::{with_state, RunState};
use super::{Errno, Fail, Function};
use crate::abi;
use crate::engine::{CallError, Context, CoreValue, Stop};
use hyperlight_guest::schema::wasm::CoreType::{I32, I64};
use hyperlight_guest::schema::wasm::WasiStream;

const EBADF: Errno = 8;
const EFAULT: Errno = 21;
const EINVAL: Errno = 28;
const ENOSYS: Errno = 52;
const ESPIPE: Errno = 70;
const ENOTCAPABLE: Errno = 76;

/// `filetype::character_device`.
const CHARACTER_DEVICE: u8 = 2;
/// `rights::fd_read`, `rights::fd_write`, `rights::poll_fd_readwrite`.
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_POLL: u64 = 1 << 27;

/// The size of a `subscription` and of an `event`.
const SUBSCRIPTION_SIZE: u32 = 48;
const EVENT_SIZE: u32 = 32;

/// The clocks preview 1 names: realtime, monotonic, process and thread CPU time.
const CLOCKS: u32 = 4;

macro_rules! function {
    ($name:ident ( $($param:ident),* ) $body:expr) => {
        Function {
            name: stringify!($name),
            params: &[$($param),*],
            returns_errno: true,
            body: $body,
        }
    };
}

/// Every function of preview 1, with its core type.
pub static FUNCTIONS: [Function; 46] = [
    function!(
        args_get(I32, I32) | ctx,
        a | strings_get(ctx, a, |s| &s.args)
    ),
    function!(
        args_sizes_get(I32, I32) | ctx,
        a | strings_sizes(ctx, a, |s| &s.args)
    ),
    function!(
        environ_get(I32, I32) | ctx,
        a | strings_get(ctx, a, |s| &s.env)
    ),
    function!(
        environ_sizes_get(I32, I32) | ctx,
        a | strings_sizes(ctx, a, |s| &s.env)
    ),
    function!(clock_res_get(I32, I32) clock_res_get),
    function!(clock_time_get(I32, I64, I32) clock_time_get),
    function!(fd_advise(I32, I64, I64, I32) deny_fd0),
    function!(fd_allocate(I32, I64, I64) deny_fd0),
    function!(fd_close(I32) fd_close),
    function!(fd_datasync(I32) deny_fd0),
    function!(fd_fdstat_get(I32, I32) fd_fdstat_get),
    function!(fd_fdstat_set_flags(I32, I32) deny_fd0),
    function!(fd_fdstat_set_rights(I32, I64, I64) deny_fd0),
    function!(fd_filestat_get(I32, I32) deny_fd0),
    function!(fd_filestat_set_size(I32, I64) deny_fd0),
    function!(fd_filestat_set_times(I32, I64, I64, I32) deny_fd0),
    function!(fd_pread(I32, I32, I32, I64, I32) deny_seek),
    function!(fd_prestat_get(I32, I32) no_preopen),
    function!(fd_prestat_dir_name(I32, I32, I32) no_preopen),
    function!(fd_pwrite(I32, I32, I32, I64, I32) deny_seek),
    function!(fd_read(I32, I32, I32, I32) fd_read),
    function!(fd_readdir(I32, I32, I32, I64, I32) deny_fd0),
    function!(fd_renumber(I32, I32) fd_renumber),
    function!(fd_seek(I32, I64, I32, I32) deny_seek),
    function!(fd_sync(I32) deny_fd0),
    function!(fd_tell(I32, I32) deny_seek),
    function!(fd_write(I32, I32, I32, I32) fd_write),
    function!(path_create_directory(I32, I32, I32) deny_fd0),
    function!(path_filestat_get(I32, I32, I32, I32, I32) deny_fd0),
    function!(path_filestat_set_times(I32, I32, I32, I32, I64, I64, I32) deny_fd0),
    function!(path_link(I32, I32, I32, I32, I32, I32, I32) deny_fd0),
    function!(path_open(I32, I32, I32, I32, I32, I64, I64, I32, I32) deny_fd0),
    function!(path_readlink(I32, I32, I32, I32, I32, I32) deny_fd0),
    function!(path_remove_directory(I32, I32, I32) deny_fd0),
    function!(path_rename(I32, I32, I32, I32, I32, I32) deny_fd0),
    function!(
        path_symlink(I32, I32, I32, I32, I32) | _,
        a | deny(u32_arg(a, 2))
    ),
    function!(path_unlink_file(I32, I32, I32) deny_fd0),
    function!(poll_oneoff(I32, I32, I32, I32) poll_oneoff),
    Function {
        name: "proc_exit",
        params: &[I32],
        returns_errno: false,
        body: |_, a| {
            Err(Fail::Stop(CallError::Stop(
                Stop::Exit(u32_arg(a, 0) as i32),
            )))
        },
    },
    function!(proc_raise(I32) | _, _ | Err(Fail::Errno(ENOSYS))),
    function!(sched_yield() | _, _ | Ok(())),
    function!(random_get(I32, I32) random_get),
    function!(sock_accept(I32, I32, I32) deny_fd0),
    function!(sock_recv(I32, I32, I32, I32, I32, I32) deny_fd0),
    function!(sock_send(I32, I32, I32, I32, I32) deny_fd0),
    function!(sock_shutdown(I32, I32) deny_fd0),
];

// ---------------------------------------------------------------------------------------------
// Arguments and memory

/// The `i`-th argument as a `u32` (the engine checked the types: an `i32` is there).
fn u32_arg(args: &[CoreValue], i: usize) -> u32 {
    match args.get(i) {
        Some(CoreValue::I32(x)) => *x as u32,
        _ => 0,
    }
}

/// The `i`-th argument as a `u64` (an `i64` by the checked type).
fn u64_arg(args: &[CoreValue], i: usize) -> u64 {
    match args.get(i) {
        Some(CoreValue::I64(x)) => *x as u64,
        _ => 0,
    }
}

/// A pointer the module passed that does not lie in its memory: `EFAULT`, not a trap.
fn fault(_: GuestError) -> Fail {
    Fail::Errno(EFAULT)
}

fn read(ctx: &mut dyn Context, ptr: u32, len: u32) -> Result<Vec<u8>, Fail> {
    abi::read(ctx, ptr, len, "a WASI argument").map_err(fault)
}

fn write(ctx: &mut dyn Context, ptr: u32, bytes: &[u8]) -> Result<(), Fail> {
    abi::write(ctx, ptr, bytes, "a WASI result").map_err(fault)
}

fn write_u32(ctx: &mut dyn Context, ptr: u32, value: u32) -> Result<(), Fail> {
    write(ctx, ptr, &value.to_le_bytes())
}

fn write_u64(ctx: &mut dyn Context, ptr: u32, value: u64) -> Result<(), Fail> {
    write(ctx, ptr, &value.to_le_bytes())
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from(le_u32(bytes, at)) | (u64::from(le_u32(bytes, at + 4)) << 32)
}

/// `count` records of `size` bytes at `ptr`, as one buffer (`EFAULT` if out of memory).
fn read_records(ctx: &mut dyn Context, ptr: u32, count: u32, size: u32) -> Result<Vec<u8>, Fail> {
    let len = count.checked_mul(size).ok_or(Fail::Errno(EFAULT))?;
    read(ctx, ptr, len)
}

/// The `(buf, len)` pairs of an iovec array.
fn iovecs(ctx: &mut dyn Context, ptr: u32, count: u32) -> Result<Vec<(u32, u32)>, Fail> {
    let bytes = read_records(ctx, ptr, count, 8)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|v| (le_u32(v, 0), le_u32(v, 4)))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Arguments and environment

fn strings_sizes(
    ctx: &mut dyn Context,
    a: &[CoreValue],
    list: fn(&RunState) -> &Vec<alloc::string::String>,
) -> Result<(), Fail> {
    let (count, size) = with_state(|s| {
        let strings = list(s);
        (
            strings.len(),
            strings.iter().map(|s| s.len() + 1).sum::<usize>(),
        )
    });
    let count = u32::try_from(count).map_err(|_| Fail::Errno(EINVAL))?;
    let size = u32::try_from(size).map_err(|_| Fail::Errno(EINVAL))?;
    write_u32(ctx, u32_arg(a, 0), count)?;
    write_u32(ctx, u32_arg(a, 1), size)
}

fn strings_get(
    ctx: &mut dyn Context,
    a: &[CoreValue],
    list: fn(&RunState) -> &Vec<alloc::string::String>,
) -> Result<(), Fail> {
    let (pointers, buf) = (u32_arg(a, 0), u32_arg(a, 1));
    let (table, bytes) = with_state(|s| {
        let mut table = Vec::new();
        let mut bytes = Vec::new();
        for string in list(s) {
            let at = u32::try_from(bytes.len())
                .ok()
                .and_then(|offset| buf.checked_add(offset));
            table.extend_from_slice(&at.unwrap_or(u32::MAX).to_le_bytes());
            bytes.extend_from_slice(string.as_bytes());
            bytes.push(0);
        }
        (table, bytes)
    });
    write(ctx, pointers, &table)?;
    write(ctx, buf, &bytes)
}

// ---------------------------------------------------------------------------------------------
// File descriptors: 0, 1 and 2 only

/// Whether `fd` is one of the standard streams, not closed.
fn is_open(fd: u32) -> bool {
    fd < 3 && with_state(|s| !s.closed[fd as usize])
}

/// The answer of a function that needs a right or a kind of file the open standard streams do
/// not have: `ENOTCAPABLE` for them, `EBADF` for every other descriptor (none is open).
fn deny(fd: u32) -> Result<(), Fail> {
    Err(Fail::Errno(if is_open(fd) { ENOTCAPABLE } else { EBADF }))
}

fn deny_fd0(_: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    deny(u32_arg(a, 0))
}

/// Seeking, and reading or writing at an offset, on a stream: `ESPIPE`.
fn deny_seek(_: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    if is_open(u32_arg(a, 0)) {
        return Err(Fail::Errno(ESPIPE));
    }
    deny(u32_arg(a, 0))
}

/// There are no preopened directories: `EBADF` for every descriptor, which ends a libc's search
/// for them.
fn no_preopen(_: &mut dyn Context, _: &[CoreValue]) -> Result<(), Fail> {
    Err(Fail::Errno(EBADF))
}

fn fd_renumber(_: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    if !is_open(u32_arg(a, 1)) {
        return Err(Fail::Errno(EBADF));
    }
    deny(u32_arg(a, 0))
}

fn fd_close(_: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let fd = u32_arg(a, 0);
    if !is_open(fd) {
        return Err(Fail::Errno(EBADF));
    }
    with_state(|s| s.closed[fd as usize] = true);
    Ok(())
}

fn fd_fdstat_get(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let fd = u32_arg(a, 0);
    if !is_open(fd) {
        return Err(Fail::Errno(EBADF));
    }
    let rights = RIGHT_POLL
        | if fd == 0 {
            RIGHT_FD_READ
        } else {
            RIGHT_FD_WRITE
        };
    let mut stat = [0u8; 24];
    stat[0] = CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    write(ctx, u32_arg(a, 1), &stat)
}

fn fd_read(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let fd = u32_arg(a, 0);
    if fd != 0 || !is_open(fd) {
        return deny(fd);
    }
    let mut total: u32 = 0;
    for (buf, len) in iovecs(ctx, u32_arg(a, 1), u32_arg(a, 2))? {
        let chunk = with_state(|s| {
            let rest = &s.stdin[s.stdin_pos..];
            rest[..rest.len().min(len as usize)].to_vec()
        });
        if chunk.is_empty() {
            break;
        }
        write(ctx, buf, &chunk)?;
        with_state(|s| s.stdin_pos += chunk.len());
        // At most len (a u32) bytes per iovec, and the stdin's length is bounded by the message.
        total = total.saturating_add(chunk.len() as u32);
        if chunk.len() < len as usize {
            break;
        }
    }
    write_u32(ctx, u32_arg(a, 3), total)
}

fn fd_write(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let fd = u32_arg(a, 0);
    let stream = match fd {
        1 if is_open(fd) => WasiStream::Stdout,
        2 if is_open(fd) => WasiStream::Stderr,
        _ => return deny(fd),
    };
    let mut total: u32 = 0;
    for (buf, len) in iovecs(ctx, u32_arg(a, 1), u32_arg(a, 2))? {
        let room = with_state(|s| s.room(stream));
        if len as usize > room {
            return Err(Fail::Stop(CallError::Stop(Stop::Limit(stream))));
        }
        let bytes = read(ctx, buf, len)?;
        with_state(|s| s.append(stream, &bytes));
        total = total.saturating_add(len);
    }
    write_u32(ctx, u32_arg(a, 3), total)
}

// ---------------------------------------------------------------------------------------------
// Clocks, randomness, sleeps: the host's (or the runner's, in a deterministic run)

/// A host function's answer of the wrong type: the host is not the one the runner expects.
fn wrong_answer(name: &str, value: &Value) -> Fail {
    Fail::Stop(CallError::Failed(GuestError {
        code: ErrorCode::WrongReturnType,
        message: alloc::format!(
            "the host function `{name}` returned {:?}",
            value.value_type()
        ),
    }))
}

fn host_u64(name: &str, args: Vec<Value>) -> Result<u64, Fail> {
    match call_host_values(name, args, ValueType::U64)? {
        Value::U64(x) => Ok(x),
        other => Err(wrong_answer(name, &other)),
    }
}

/// The reading of clock `id` in nanoseconds.
fn now(id: u32, precision: u64) -> Result<u64, Fail> {
    if id >= CLOCKS {
        return Err(Fail::Errno(EINVAL));
    }
    match with_state(RunState::deterministic_now) {
        Some(now) => Ok(now),
        None => host_u64(
            wasi_host::CLOCK_TIME_GET,
            vec![Value::U32(id), Value::U64(precision)],
        ),
    }
}

fn clock_time_get(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let time = now(u32_arg(a, 0), u64_arg(a, 1))?;
    write_u64(ctx, u32_arg(a, 2), time)
}

fn clock_res_get(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let id = u32_arg(a, 0);
    if id >= CLOCKS {
        return Err(Fail::Errno(EINVAL));
    }
    let resolution = match with_state(|s| s.deterministic_resolution()) {
        Some(resolution) => resolution,
        None => host_u64(wasi_host::CLOCK_RES_GET, vec![Value::U32(id)])?,
    };
    write_u64(ctx, u32_arg(a, 1), resolution)
}

fn random_get(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let (buf, len) = (u32_arg(a, 0), u32_arg(a, 1));
    let memory = ctx.memory().ok_or(Fail::Errno(EFAULT))?;
    abi::range(memory, buf, len, "random_get's buffer").map_err(fault)?;
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(wasi_host::MAX_RANDOM_CHUNK);
        let bytes = match with_state(|s| s.deterministic_bytes(chunk as usize)) {
            Some(bytes) => bytes,
            None => match call_host_values(
                wasi_host::RANDOM_GET,
                vec![Value::U32(chunk)],
                ValueType::Bytes,
            )? {
                Value::Bytes(bytes) if bytes.len() == chunk as usize => bytes,
                other => return Err(wrong_answer(wasi_host::RANDOM_GET, &other)),
            },
        };
        write(ctx, buf + done, &bytes)?;
        done += chunk;
    }
    Ok(())
}

/// `poll_oneoff`: stdin is always ready to read and stdout and stderr to write (events at once);
/// any other descriptor gets an event with `EBADF`; if no descriptor event is due, the run sleeps
/// until the earliest clock subscription (on the host, or on the deterministic clock) and reports
/// the clock subscriptions due then.
fn poll_oneoff(ctx: &mut dyn Context, a: &[CoreValue]) -> Result<(), Fail> {
    let (subs_ptr, events_ptr, count, nevents_ptr) =
        (u32_arg(a, 0), u32_arg(a, 1), u32_arg(a, 2), u32_arg(a, 3));
    if count == 0 {
        return Err(Fail::Errno(EINVAL));
    }
    let subs = read_records(ctx, subs_ptr, count, SUBSCRIPTION_SIZE)?;
    // Check the events' room before anything waits.
    read_records(ctx, events_ptr, count, EVENT_SIZE)?;
    let mut ready = Vec::new();
    let mut clocks = Vec::new();
    for sub in subs.chunks_exact(SUBSCRIPTION_SIZE as usize) {
        let userdata = le_u64(sub, 0);
        match sub[8] {
            0 => {
                let (id, timeout, flags) = (le_u32(sub, 16), le_u64(sub, 24), le_u16(sub, 40));
                if id >= CLOCKS {
                    ready.push(event(userdata, EINVAL, 0, 0));
                    continue;
                }
                let remaining = if flags & 1 == 1 {
                    timeout.saturating_sub(now(id, 0)?)
                } else {
                    timeout
                };
                clocks.push((userdata, remaining));
            }
            tag @ (1 | 2) => {
                let fd = le_u32(sub, 16);
                let ok = is_open(fd) && (fd == 0) == (tag == 1);
                let available = if tag == 1 && ok {
                    with_state(|s| (s.stdin.len() - s.stdin_pos) as u64)
                } else {
                    0
                };
                let error = if ok { 0 } else { EBADF };
                ready.push(event(userdata, error, tag, available));
            }
            _ => return Err(Fail::Errno(EINVAL)),
        }
    }
    if ready.is_empty() {
        let earliest = clocks.iter().map(|&(_, r)| r).min().unwrap_or(0);
        if !with_state(|s| s.deterministic_sleep(earliest)) && earliest > 0 {
            match call_host_values(
                wasi_host::SLEEP,
                vec![Value::U64(earliest)],
                ValueType::Void,
            )? {
                Value::Void => {}
                other => return Err(wrong_answer(wasi_host::SLEEP, &other)),
            }
        }
        ready.extend(
            clocks
                .iter()
                .filter(|&&(_, r)| r <= earliest)
                .map(|&(userdata, _)| event(userdata, 0, 0, 0)),
        );
    }
    let bytes: Vec<u8> = ready.concat();
    write(ctx, events_ptr, &bytes)?;
    write_u32(ctx, nevents_ptr, ready.len() as u32)
}

/// An `event`: userdata, error, type, and for descriptor events the bytes available.
fn event(userdata: u64, error: Errno, kind: u8, nbytes: u64) -> [u8; EVENT_SIZE as usize] {
    let mut event = [0u8; EVENT_SIZE as usize];
    event[0..8].copy_from_slice(&userdata.to_le_bytes());
    event[8..10].copy_from_slice(&error.to_le_bytes());
    event[10] = kind;
    event[16..24].copy_from_slice(&nbytes.to_le_bytes());
    event
}

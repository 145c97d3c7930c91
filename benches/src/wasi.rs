//! The in-process baseline of the WASI benchmark (`benches/wasi.rs`): a WASI command run on
//! wasmi 2.0 in the benchmark's own process, with a minimal preview 1 of its own.
//!
//! No `wasmi_wasi` release works with wasmi 2.0, so this glue serves what a Rust command
//! needs (arguments, environment, stdin, captured stdout and stderr, `proc_exit`, clocks and
//! `random_get`, `fd_fdstat_get`, `fd_close`, `sched_yield`) and answers `ENOSYS` for every other
//! `wasi_snapshot_preview1` import. It is a baseline to measure against, not a sandbox: the
//! module runs in the host process, without a VM boundary.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmi::{Caller, Engine, Linker, Module, Store};

const WASI: &str = "wasi_snapshot_preview1";
const EFAULT: i32 = 21;
const EBADF: i32 = 8;
const ENOSYS: i32 = 52;

/// The functions the glue serves.
const SERVED: &[&str] = &[
    "args_sizes_get",
    "args_get",
    "environ_sizes_get",
    "environ_get",
    "fd_write",
    "fd_read",
    "proc_exit",
    "sched_yield",
    "fd_close",
    "fd_fdstat_get",
    "clock_time_get",
    "random_get",
];

/// The state one run's functions see.
#[derive(Default)]
struct Run {
    args: Vec<String>,
    env: Vec<String>,
    stdin: Vec<u8>,
    read: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// A compiled WASI command, run in a fresh wasmi instance each time.
pub struct InProcessWasi {
    engine: Engine,
    module: Module,
    linker: Linker<Run>,
}

/// One run's result: exit code, stdout, stderr.
pub type Output = (i32, Vec<u8>, Vec<u8>);

fn memory<'a>(caller: &'a mut Caller<'_, Run>) -> Option<(&'a mut [u8], &'a mut Run)> {
    let memory = caller.get_export("memory")?.into_memory()?;
    Some(memory.data_and_store_mut(caller))
}

fn put(mem: &mut [u8], at: u32, bytes: &[u8]) -> Result<(), i32> {
    let start = at as usize;
    mem.get_mut(start..start.checked_add(bytes.len()).ok_or(EFAULT)?)
        .ok_or(EFAULT)?
        .copy_from_slice(bytes);
    Ok(())
}

fn get(mem: &[u8], at: u32, len: u32) -> Result<&[u8], i32> {
    let start = at as usize;
    mem.get(start..start.checked_add(len as usize).ok_or(EFAULT)?)
        .ok_or(EFAULT)
}

fn word(mem: &[u8], at: u32) -> Result<u32, i32> {
    let b = get(mem, at, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn errno(result: Result<(), i32>) -> i32 {
    result.err().unwrap_or(0)
}

fn sizes(caller: &mut Caller<'_, Run>, env: bool, count: u32, size: u32) -> i32 {
    let Some((mem, run)) = memory(caller) else {
        return EFAULT;
    };
    let list = if env { &run.env } else { &run.args };
    let total: usize = list.iter().map(|s| s.len() + 1).sum();
    errno(
        put(mem, count, &(list.len() as u32).to_le_bytes())
            .and_then(|()| put(mem, size, &(total as u32).to_le_bytes())),
    )
}

fn strings(caller: &mut Caller<'_, Run>, env: bool, pointers: u32, buf: u32) -> i32 {
    let Some((mem, run)) = memory(caller) else {
        return EFAULT;
    };
    let list = if env { &run.env } else { &run.args };
    let mut offset = 0u32;
    for (i, s) in list.iter().enumerate() {
        let result = put(mem, pointers + 4 * i as u32, &(buf + offset).to_le_bytes())
            .and_then(|()| put(mem, buf + offset, s.as_bytes()))
            .and_then(|()| put(mem, buf + offset + s.len() as u32, &[0]));
        if let Err(e) = result {
            return e;
        }
        offset += s.len() as u32 + 1;
    }
    0
}

fn fd_write(caller: &mut Caller<'_, Run>, fd: i32, iovs: u32, count: u32, written: u32) -> i32 {
    let Some((mem, run)) = memory(caller) else {
        return EFAULT;
    };
    let mut total = 0u32;
    for i in 0..count {
        let (buf, len) = match (word(mem, iovs + 8 * i), word(mem, iovs + 8 * i + 4)) {
            (Ok(buf), Ok(len)) => (buf, len),
            _ => return EFAULT,
        };
        let bytes = match get(mem, buf, len) {
            Ok(bytes) => bytes,
            Err(e) => return e,
        };
        match fd {
            1 => run.stdout.extend_from_slice(bytes),
            2 => run.stderr.extend_from_slice(bytes),
            _ => return EBADF,
        }
        total += len;
    }
    errno(put(mem, written, &total.to_le_bytes()))
}

fn fd_read(caller: &mut Caller<'_, Run>, fd: i32, iovs: u32, count: u32, read: u32) -> i32 {
    if fd != 0 {
        return EBADF;
    }
    let Some((mem, run)) = memory(caller) else {
        return EFAULT;
    };
    let mut total = 0u32;
    for i in 0..count {
        let (buf, len) = match (word(mem, iovs + 8 * i), word(mem, iovs + 8 * i + 4)) {
            (Ok(buf), Ok(len)) => (buf, len),
            _ => return EFAULT,
        };
        let rest = &run.stdin[run.read..];
        let n = rest.len().min(len as usize);
        if let Err(e) = put(mem, buf, &rest[..n]) {
            return e;
        }
        run.read += n;
        total += n as u32;
        if n < len as usize {
            break;
        }
    }
    errno(put(mem, read, &total.to_le_bytes()))
}

impl InProcessWasi {
    /// Compiles `wasm` and links the glue.
    pub fn new(wasm: &[u8]) -> Result<Self, wasmi::Error> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm)?;
        let mut linker = Linker::<Run>::new(&engine);
        linker.func_wrap(
            WASI,
            "args_sizes_get",
            |mut c: Caller<'_, Run>, n: u32, s: u32| sizes(&mut c, false, n, s),
        )?;
        linker.func_wrap(
            WASI,
            "args_get",
            |mut c: Caller<'_, Run>, p: u32, b: u32| strings(&mut c, false, p, b),
        )?;
        linker.func_wrap(
            WASI,
            "environ_sizes_get",
            |mut c: Caller<'_, Run>, n: u32, s: u32| sizes(&mut c, true, n, s),
        )?;
        linker.func_wrap(
            WASI,
            "environ_get",
            |mut c: Caller<'_, Run>, p: u32, b: u32| strings(&mut c, true, p, b),
        )?;
        linker.func_wrap(
            WASI,
            "fd_write",
            |mut c: Caller<'_, Run>, fd: i32, iovs: u32, n: u32, w: u32| {
                fd_write(&mut c, fd, iovs, n, w)
            },
        )?;
        linker.func_wrap(
            WASI,
            "fd_read",
            |mut c: Caller<'_, Run>, fd: i32, iovs: u32, n: u32, r: u32| {
                fd_read(&mut c, fd, iovs, n, r)
            },
        )?;
        linker.func_wrap(WASI, "proc_exit", |code: i32| -> Result<(), wasmi::Error> {
            Err(wasmi::Error::i32_exit(code))
        })?;
        linker.func_wrap(WASI, "sched_yield", || 0i32)?;
        linker.func_wrap(WASI, "fd_close", |_fd: i32| 0i32)?;
        linker.func_wrap(
            WASI,
            "fd_fdstat_get",
            |mut c: Caller<'_, Run>, fd: i32, at: u32| {
                if !(0..3).contains(&fd) {
                    return EBADF;
                }
                let mut stat = [0u8; 24];
                stat[0] = 2;
                match memory(&mut c) {
                    Some((mem, _)) => errno(put(mem, at, &stat)),
                    None => EFAULT,
                }
            },
        )?;
        linker.func_wrap(
            WASI,
            "clock_time_get",
            |mut c: Caller<'_, Run>, _id: i32, _precision: i64, at: u32| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                match memory(&mut c) {
                    Some((mem, _)) => errno(put(mem, at, &now.to_le_bytes())),
                    None => EFAULT,
                }
            },
        )?;
        linker.func_wrap(
            WASI,
            "random_get",
            |mut c: Caller<'_, Run>, at: u32, len: u32| {
                let mut bytes = vec![0u8; len as usize];
                if getrandom::fill(&mut bytes).is_err() {
                    return ENOSYS;
                }
                match memory(&mut c) {
                    Some((mem, _)) => errno(put(mem, at, &bytes)),
                    None => EFAULT,
                }
            },
        )?;
        // Every other preview 1 import: ENOSYS.
        for import in module.imports() {
            if import.module() != WASI || SERVED.contains(&import.name()) {
                continue;
            }
            if let wasmi::ExternType::Func(ty) = import.ty() {
                linker.func_new(WASI, import.name(), ty.clone(), |_, _, results| {
                    if let Some(slot) = results.first_mut() {
                        *slot = wasmi::Val::I32(ENOSYS);
                    }
                    Ok(())
                })?;
            }
        }
        Ok(InProcessWasi {
            engine,
            module,
            linker,
        })
    }

    /// Runs `_start` once in a fresh instance.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Result<Output, wasmi::Error> {
        let run = Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: stdin.to_vec(),
            ..Run::default()
        };
        let mut store = Store::new(&self.engine, run);
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &self.module)?;
        let start = instance.get_typed_func::<(), ()>(&store, "_start")?;
        let code = match start.call(&mut store, ()) {
            Ok(()) => 0,
            Err(e) => e.i32_exit_status().ok_or(e)?,
        };
        let run = store.into_data();
        Ok((code, run.stdout, run.stderr))
    }
}

//! Crash dumps: an ELF core file of a guest (its memory regions at their guest virtual
//! addresses, its registers, and an auxiliary vector that tells gdb where the static-PIE image
//! was loaded), so that `gdb guest.elf core` shows the guest's frames by name.
//!
//! A dump is captured on the vCPU thread ([`CrashDump::capture`]: registers and a copy of the
//! memory, bounded by `SandboxConfig::crash_dump_max_size`) and written by an unfiltered helper
//! thread ([`CrashDump::write`]): the vCPU thread's seccomp filter forbids creating files. The
//! ELF layout (headers, `NT_PRSTATUS`, `NT_PRPSINFO`, `NT_AUXV`) is the `elfcore` crate's.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use elfcore::{
    ArchState, CoreDumpBuilder, CoreError, Elf64_Auxv, MappedFile, ProcessInfoSource,
    ReadProcessMemory, ThreadView, VaProtection, VaRegion,
};
use hyperlight_schema::abi::{PAGE_SIZE, SELECTOR_KERNEL_CODE};

use crate::error::Error;
use crate::hypervisor::GeneralRegisters;
use crate::vm::layout::{self, Layout, Region};
use crate::vm::memory::GuestMemory;
use crate::vm::x86;

/// Stack size of the thread that writes a dump.
const WRITER_STACK: usize = 4 << 20;
/// The thread id the dump gives the guest's one vCPU (gdb shows it as `LWP 1`).
const GUEST_TID: i32 = 1;
// Auxiliary vector entries gdb reads to relocate a PIE (see `<elf.h>`).
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_ENTRY: u64 = 9;
// Signals the dump reports the fault as, so that gdb says what happened.
const SIGILL: u16 = 4;
const SIGTRAP: u16 = 5;
const SIGABRT: u16 = 6;
const SIGBUS: u16 = 7;
const SIGFPE: u16 = 8;
const SIGSEGV: u16 = 11;

/// A guest's registers and a copy of its memory, captured on the vCPU thread, to be written as
/// an ELF core file by a thread that may create files.
pub(crate) struct CrashDump {
    threads: Vec<ThreadView>,
    regions: Vec<VaRegion>,
    /// The bytes of each of `regions`, in the same order.
    bytes: Vec<Vec<u8>>,
    auxv: Vec<Elf64_Auxv>,
}

impl std::fmt::Debug for CrashDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashDump")
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

/// One region of guest memory the dump may hold, with the access the guest has to it.
struct Candidate {
    region: Region,
    write: bool,
    execute: bool,
    /// Keep the top of the region if it does not fit whole (the stack grows down).
    keep_top: bool,
}

impl CrashDump {
    /// Captures the guest's state after `fault` (`None`: a dump on demand): `regs` as the vCPU holds them (inside a ring-0 exception
    /// stub after a fault: then the guest's RIP, CS, RFLAGS, RSP and SS come from the frame the
    /// CPU pushed on the ring-0 stack, and RAX and RDX from where the stub saved them), and
    /// the guest's memory regions, at most `max_bytes` of them by priority: the image's
    /// headers, the stack (its top if it does not fit whole), the rest of the image, boot info,
    /// output and input buffers, heap, module.
    pub(crate) fn capture(
        regs: GeneralRegisters,
        mem: &GuestMemory,
        layout: &Layout,
        fault: Option<&Error>,
        max_bytes: u64,
    ) -> Result<Self, Error> {
        let (regs, signal) = guest_view(regs, mem, fault);
        let region = |region, write, execute| Candidate {
            region,
            write,
            execute,
            keep_top: false,
        };
        // The image's first page holds its ELF and program headers, which gdb reads to
        // relocate the image (see `aux_vector`): it goes in first.
        let header = Region::at(layout.image.start, PAGE_SIZE.min(layout.image.size()));
        let candidates = [
            region(header, false, false),
            Candidate {
                keep_top: true,
                ..region(layout.stack, true, false)
            },
            // The image holds code, read-only data and data: per-segment rights are the ELF's.
            region(
                Region {
                    start: header.end,
                    end: layout.image.end,
                },
                true,
                true,
            ),
            region(Region::at(layout::BOOT_INFO, PAGE_SIZE), false, false),
            region(Region::at(layout::DOORBELL, PAGE_SIZE), true, false),
            region(layout.output, true, false),
            region(layout.input, false, false),
            region(layout.heap, true, false),
            region(layout.module, false, false),
        ];
        let mut budget = max_bytes - max_bytes % PAGE_SIZE;
        let mut chosen = Vec::new();
        for c in candidates {
            let size = c.region.size().min(budget);
            if size == 0 || (size < c.region.size() && !c.keep_top) {
                continue;
            }
            budget -= size;
            let start = if c.keep_top {
                c.region.end - size
            } else {
                c.region.start
            };
            chosen.push((start, size, c));
        }
        chosen.sort_by_key(|(start, ..)| *start);
        let mut regions = Vec::with_capacity(chosen.len());
        let mut bytes = Vec::with_capacity(chosen.len());
        for (start, size, c) in chosen {
            bytes.push(mem.read(start, size as usize)?);
            regions.push(VaRegion {
                begin: start,
                end: start + size,
                offset: 0,
                protection: VaProtection {
                    is_private: true,
                    read: true,
                    write: c.write,
                    execute: c.execute,
                },
                mapped_file_name: None,
            });
        }
        Ok(CrashDump {
            threads: vec![thread_view(&regs, signal)],
            regions,
            bytes,
            auxv: aux_vector(mem, layout.image),
        })
    }

    /// Writes the dump as an ELF core file at `path`, which must not exist yet, on a thread of
    /// its own (`elfcore` keeps 64 KiB buffers on the stack, more than a helper thread's stack
    /// holds in a debug build). Call it on a thread that may create files and threads. Returns
    /// the file's size.
    pub(crate) fn write(self, path: PathBuf) -> Result<u64, Error> {
        std::thread::Builder::new()
            .name("hyperlight-crash-dump".into())
            .stack_size(WRITER_STACK)
            .spawn(move || self.write_here(&path))
            .map_err(|source| Error::os("spawn crash dump writer", source))?
            .join()
            .unwrap_or_else(|_| {
                Err(Error::HostPanic {
                    during: "writing a crash dump",
                    message: "the crash dump writer panicked".into(),
                })
            })
    }

    fn write_here(self, path: &Path) -> Result<u64, Error> {
        let file_error = |source| Error::CrashDumpFile {
            path: path.to_owned(),
            source: Arc::new(source),
        };
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(file_error)?;
        let reader = Reader {
            regions: self.regions.iter().map(|r| (r.begin, r.end)).collect(),
            bytes: self.bytes,
        };
        let source = Source {
            threads: self.threads,
            regions: self.regions,
            auxv: self.auxv,
        };
        let written = CoreDumpBuilder::from_source(source, reader)
            .write(BufWriter::new(file))
            .map_err(|source| match source {
                CoreError::IoError(source) => file_error(source),
                source => Error::CrashDumpFormat {
                    path: path.to_owned(),
                    source: Arc::new(source),
                },
            })?;
        Ok(written as u64)
    }
}

/// A fresh file name for a dump in `dir`: `hyperlight-<pid>-<n>.core`, `n` counting the dumps
/// of this process.
pub(crate) fn file_in(dir: &Path) -> PathBuf {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("hyperlight-{}-{n}.core", std::process::id()))
}

/// The guest's own registers and the signal a dump reports: inside an exception stub (CS is
/// the ring-0 selector), the frame the CPU pushed holds the guest's RIP, CS, RFLAGS, RSP and
/// SS, and the stub saved RAX and RDX below it before it changed them. Out of a stub the
/// registers are the guest's as they are: a panic or heap exhaustion reported from ring 3 is
/// `SIGABRT`, a dump on demand no signal.
pub(crate) fn guest_view(
    mut regs: GeneralRegisters,
    mem: &GuestMemory,
    fault: Option<&Error>,
) -> (GeneralRegisters, u16) {
    if regs.selectors[0] != SELECTOR_KERNEL_CODE {
        return (regs, if fault.is_some() { SIGABRT } else { 0 });
    }
    let vector = regs.rax as u8;
    if vector == x86::SYSCALL_CODE {
        // `syscall` pushes no frame: the guest's RIP is in RCX (the stub keeps it).
        regs.rip = regs.rcx;
        regs.selectors[0] = hyperlight_schema::abi::SELECTOR_USER_CODE;
        return (regs, SIGSEGV);
    }
    let Ok(frame) = x86::GuestFrame::read(mem, vector) else {
        return (regs, SIGSEGV);
    };
    regs.rip = frame.rip;
    regs.selectors[0] = frame.cs;
    regs.rflags = frame.rflags;
    regs.rsp = frame.rsp;
    regs.selectors[1] = frame.ss;
    regs.rax = frame.rax;
    regs.rdx = frame.rdx;
    let signal = match vector {
        0 => SIGFPE,
        1 | 3 => SIGTRAP,
        6 => SIGILL,
        13 | 14 => SIGSEGV,
        _ => SIGBUS,
    };
    (regs, signal)
}

/// The vCPU as a Linux thread for `NT_PRSTATUS`, its registers in `user_regs_struct` order.
fn thread_view(r: &GeneralRegisters, signal: u16) -> ThreadView {
    let [cs, ss, ds, es, fs, gs] = r.selectors.map(u64::from);
    let gpr_state = vec![
        r.r[7], r.r[6], r.r[5], r.r[4], r.rbp, r.rbx, r.r[3], r.r[2], r.r[1], r.r[0], r.rax, r.rcx,
        r.rdx, r.rsi, r.rdi, r.rax, r.rip, cs, r.rflags, r.rsp, ss, r.fs_base, r.gs_base, ds, es,
        fs, gs,
    ];
    ThreadView {
        tid: GUEST_TID,
        cmd_line: "hyperlight-guest".into(),
        comm: "guest".into(),
        state: b'R',
        ppid: 0,
        pgrp: GUEST_TID,
        session: GUEST_TID,
        flags: 0,
        utime: 0,
        stime: 0,
        cutime: 0,
        cstime: 0,
        nice: 0,
        uid: 0,
        gid: 0,
        cursig: signal,
        sighold: 0,
        sigpend: 0,
        arch_state: Box::new(ArchState {
            gpr_state,
            components: Vec::new(),
        }),
    }
}

/// The auxiliary vector gdb relocates the guest's static PIE with: `AT_ENTRY` (the loaded entry
/// point; gdb subtracts the ELF's own) and `AT_PHDR`/`AT_PHNUM`/`AT_PHENT` (where the loaded
/// program headers are, which gdb compares with the file's). Read from the image's first page,
/// which holds the ELF header when the first `PT_LOAD` maps file offset 0 at address 0 (the
/// guest linker's layout, `docs/abi.md`); the guest cannot write that read-only page. Without an
/// ELF header there, only `AT_PAGESZ`: gdb then needs `add-symbol-file` (`docs/debugging.md`).
fn aux_vector(mem: &GuestMemory, image: Region) -> Vec<Elf64_Auxv> {
    let header = mem.read(image.start, 64).unwrap_or_default();
    aux_vector_of(&header, image)
        .into_iter()
        .map(|(a_type, a_val)| Elf64_Auxv { a_type, a_val })
        .collect()
}

/// The auxiliary vector (type, value pairs, ending with `AT_NULL`) of an image loaded at
/// `image` whose first 64 bytes are `header`: see [`aux_vector`]. The gdb stub serves the same.
pub(crate) fn aux_vector_of(header: &[u8], image: Region) -> Vec<(u64, u64)> {
    let mut auxv = vec![(AT_PAGESZ, PAGE_SIZE)];
    let u64_at = |at: usize| {
        let bytes = header.get(at..at + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    };
    let u16_at = |at: usize| {
        let bytes = header.get(at..at + 2)?;
        Some(u16::from_le_bytes(bytes.try_into().ok()?))
    };
    if header.starts_with(b"\x7fELF") {
        if let (Some(e_entry), Some(e_phoff), Some(e_phentsize), Some(e_phnum)) =
            (u64_at(24), u64_at(32), u16_at(54), u16_at(56))
        {
            let phdr = image.start.saturating_add(e_phoff);
            let table = u64::from(e_phentsize) * u64::from(e_phnum);
            if phdr.saturating_add(table) <= image.end {
                auxv.extend([
                    (AT_PHDR, phdr),
                    (AT_PHENT, e_phentsize.into()),
                    (AT_PHNUM, e_phnum.into()),
                ]);
            }
            auxv.push((AT_ENTRY, image.start.saturating_add(e_entry)));
        }
    }
    auxv.push((AT_NULL, 0));
    auxv
}

/// What `elfcore` asks of a process: the one guest thread, its regions and auxiliary vector.
struct Source {
    threads: Vec<ThreadView>,
    regions: Vec<VaRegion>,
    auxv: Vec<Elf64_Auxv>,
}

impl ProcessInfoSource for Source {
    fn pid(&self) -> i32 {
        GUEST_TID
    }

    fn threads(&self) -> &[ThreadView] {
        &self.threads
    }

    fn va_regions(&self) -> &[VaRegion] {
        &self.regions
    }

    fn mapped_files(&self) -> Option<&[MappedFile]> {
        None
    }

    fn aux_vector(&self) -> Option<&[Elf64_Auxv]> {
        Some(&self.auxv)
    }

    fn page_size(&self) -> usize {
        PAGE_SIZE as usize
    }
}

/// Reads the captured copy of guest memory for `elfcore`.
struct Reader {
    /// `[begin, end)` of each region, ascending.
    regions: Vec<(u64, u64)>,
    bytes: Vec<Vec<u8>>,
}

impl ReadProcessMemory for Reader {
    fn read_process_memory(&mut self, base: usize, buf: &mut [u8]) -> Result<usize, CoreError> {
        let base = base as u64;
        let (i, (begin, end)) = self
            .regions
            .iter()
            .enumerate()
            .find(|(_, (begin, end))| (*begin..*end).contains(&base))
            .ok_or(CoreError::InternalError(
                "read outside the captured regions",
            ))?;
        let len = buf.len().min((end - base) as usize);
        let from = (base - begin) as usize;
        buf[..len].copy_from_slice(&self.bytes[i][from..from + len]);
        Ok(len)
    }
}

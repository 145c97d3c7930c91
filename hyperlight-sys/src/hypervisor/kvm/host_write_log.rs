//! Finding the pages of guest memory written since they were last restored, from the host
//! kernel's own page tables: userfaultfd write-protection in asynchronous mode plus the
//! `PAGEMAP_SCAN` ioctl of `/proc/self/pagemap` (Linux 6.7 or later).
//!
//! The range of a sandbox's memory is registered, write-protected as a whole, with one
//! userfaultfd of the process. A write to a protected page (by the guest through the
//! hypervisor's mapping, or by the host) takes one fault in the kernel, which drops the
//! protection without telling anyone (no fault-handling thread exists; that is what
//! `UFFD_FEATURE_WP_ASYNC` means). `PAGEMAP_SCAN` then lists the pages whose protection is gone:
//! every page written since it was last protected.
//!
//! Protecting a page again makes the hypervisor drop its mapping of it, so the guest's next
//! access to it faults twice (read, then write) in the hypervisor: on PVM that costs far more
//! than comparing and copying the page. So a restore does not protect a written page again
//! until it found it unchanged several restores in a row: the pages a guest writes on every
//! call (its stack, the buffers, its allocator's bookkeeping) stay unprotected, are listed at
//! every restore, and cost a compare (and a copy if they differ) but no fault. At most
//! [`MAX_UNPROTECTED`] pages stay so; beyond that the longest unchanged are protected at once.
//!
//! Unlike the hypervisor's dirty log, this holds no file descriptor per sandbox: the process
//! keeps one userfaultfd and one pagemap file for all of them, so a KVM sandbox can close its
//! VM's fd once its vCPU exists and hold one fd in all (docs/performance.md, density).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use hyperlight_schema::abi::PAGE_SIZE;

use crate::error::Error;
use crate::hypervisor::DirtyLog;
use crate::vm::memory::GuestMemory;

/// The ioctls of write tracking, encoded from their argument structures (`vmm-sys-util`).
mod requests {
    use super::{PmScanArg, UffdioApi, UffdioRegister, UffdioWriteprotect};
    vmm_sys_util::ioctl_iowr_nr!(UFFDIO_API, 0xaa, 0x3f, UffdioApi);
    vmm_sys_util::ioctl_iowr_nr!(UFFDIO_REGISTER, 0xaa, 0x00, UffdioRegister);
    vmm_sys_util::ioctl_iowr_nr!(UFFDIO_WRITEPROTECT, 0xaa, 0x06, UffdioWriteprotect);
    vmm_sys_util::ioctl_iowr_nr!(PAGEMAP_SCAN, 0x66, 16, PmScanArg);
}

/// The write-tracking requests a running sandbox's vCPU thread issues (through the syscall
/// gate): `UFFDIO_WRITEPROTECT` and `PAGEMAP_SCAN`.
pub(crate) fn vcpu_thread_ioctls() -> [u64; 2] {
    [requests::UFFDIO_WRITEPROTECT(), requests::PAGEMAP_SCAN()]
}

const UFFD_API: u64 = 0xaa;
/// `userfaultfd(2)` flag: handle faults of user-mode accesses only. Asynchronous write
/// protection resolves every fault in the kernel, so nothing is lost, and this flag is what lets
/// processes without `CAP_SYS_PTRACE` create one where `vm.unprivileged_userfaultfd` is 0.
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
const PAGE_IS_WRITTEN: u64 = 1 << 1;

/// A written page found unchanged at this many restores in a row is write-protected again.
pub const PROTECT_AFTER: u8 = 64;
/// Most written pages left unprotected (each compared with the snapshot at every restore).
pub const MAX_UNPROTECTED: usize = 128;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// The process's userfaultfd and pagemap file, opened once.
struct Tracker {
    uffd: OwnedFd,
    pagemap: File,
}

/// `ioctl(fd, request, arg)` through the syscall gate (`seccomp/gate.rs`: the vCPU thread's filter
/// allows write tracking's requests from there only); a failure is [`Error::Os`] for `op`.
///
/// # Safety
/// `arg` must point to the structure `request` expects, valid for reads and writes.
unsafe fn ioctl<T>(
    fd: &impl AsRawFd,
    op: &'static str,
    request: u64,
    arg: *mut T,
) -> Result<libc::c_int, Error> {
    // SAFETY: the caller guarantees `arg` is what `request` reads and writes.
    unsafe { crate::seccomp::gate::ioctl(fd.as_raw_fd(), request as libc::c_ulong, arg as usize) }
        .map_err(|errno| Error::os(op, std::io::Error::from_raw_os_error(errno)))
}

impl Tracker {
    fn open() -> Result<Self, String> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY;
        // SAFETY: userfaultfd takes only flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if raw < 0 {
            return Err(format!("userfaultfd: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the syscall returned a new fd that nothing else owns.
        let uffd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API takes a struct uffdio_api, which `api` is.
        unsafe { ioctl(&uffd, "UFFDIO_API", requests::UFFDIO_API(), &mut api) }
            .map_err(|e| format!("asynchronous write protection (Linux 6.7+): {e}"))?;
        let pagemap =
            File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
        Ok(Self { uffd, pagemap })
    }

    fn get() -> Result<&'static Self, Error> {
        static TRACKER: OnceLock<Result<Tracker, String>> = OnceLock::new();
        TRACKER
            .get_or_init(Tracker::open)
            .as_ref()
            .map_err(|reason| Error::HypervisorFeature {
                reason: format!("host page-table write tracking unavailable: {reason}"),
            })
    }

    fn write_protect(&self, start: u64, len: u64) -> Result<(), Error> {
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start, len },
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        // SAFETY: UFFDIO_WRITEPROTECT takes a struct uffdio_writeprotect, which `wp` is; the
        // range is guest memory registered with this userfaultfd.
        unsafe {
            ioctl(
                &self.uffd,
                "UFFDIO_WRITEPROTECT",
                requests::UFFDIO_WRITEPROTECT(),
                &mut wp,
            )
        }
        .map(drop)
    }
}

/// Whether this kernel tracks writes this way; why not, otherwise. The first call opens the
/// process's userfaultfd and `/proc/self/pagemap`, which stay open for the life of the process
/// (call it before a seccomp filter that denies `open` applies to the calling thread).
pub fn available() -> Result<(), Error> {
    Tracker::get().map(drop)
}

/// The write log of one sandbox's memory, kept by the host kernel. Holds no file descriptor.
#[derive(Debug)]
pub struct HostWriteLog {
    /// Host address and length of the tracked memory, to check that the same memory is passed.
    range: (u64, u64),
    /// The written pages left unprotected, each with the number of restores in a row that
    /// found it unchanged.
    unprotected: BTreeMap<usize, u8>,
}

impl HostWriteLog {
    /// Starts tracking writes to `mem`: registers it with the process's userfaultfd and
    /// write-protects all of it, so that [`DirtyLog::written`] lists the pages written from now
    /// on. `mem` must outlive the log (its mapping carries the registration).
    pub fn start(mem: &GuestMemory) -> Result<Self, Error> {
        let tracker = Tracker::get()?;
        let range = (mem.host_addr(), mem.size() as u64);
        let mut register = UffdioRegister {
            range: UffdioRange {
                start: range.0,
                len: range.1,
            },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER takes a struct uffdio_register, which `register` is; the range
        // is a mapping `mem` owns. Asynchronous mode never blocks a faulting thread.
        unsafe {
            ioctl(
                &tracker.uffd,
                "UFFDIO_REGISTER",
                requests::UFFDIO_REGISTER(),
                &mut register,
            )
        }?;
        tracker.write_protect(range.0, range.1)?;
        Ok(Self {
            range,
            unprotected: BTreeMap::new(),
        })
    }

    fn check(&self, mem: &GuestMemory) -> Result<(), Error> {
        if (mem.host_addr(), mem.size() as u64) == self.range {
            Ok(())
        } else {
            Err(Error::OutOfBounds {
                gpa: 0,
                len: mem.size(),
                size: self.range.1 as usize,
            })
        }
    }
}

impl DirtyLog for HostWriteLog {
    fn written(&mut self, mem: &GuestMemory) -> Result<Vec<usize>, Error> {
        self.check(mem)?;
        let tracker = Tracker::get()?;
        let (base, len) = self.range;
        let mut regions = [PageRegion::default(); 64];
        let mut pages = Vec::new();
        let mut start = base;
        while start < base + len {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_CHECK_WPASYNC,
                start,
                end: base + len,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            // SAFETY: PAGEMAP_SCAN takes a struct pm_scan_arg, which `arg` is; `vec` points to
            // `vec_len` page_region structs that the kernel fills; the range is our memory.
            let found = unsafe {
                ioctl(
                    &tracker.pagemap,
                    "PAGEMAP_SCAN",
                    requests::PAGEMAP_SCAN(),
                    &mut arg,
                )
            }?;
            for region in &regions[..found as usize] {
                let first = (region.start - base) / PAGE_SIZE;
                let end = (region.end - base).div_ceil(PAGE_SIZE);
                pages.extend(first as usize..end as usize);
            }
            if arg.walk_end <= start {
                break;
            }
            start = arg.walk_end;
        }
        Ok(pages)
    }

    fn restored(
        &mut self,
        mem: &GuestMemory,
        pages: &[usize],
        unchanged: &[usize],
    ) -> Result<(), Error> {
        self.check(mem)?;
        let mut unchanged = unchanged.iter().peekable();
        for &page in pages {
            let same = unchanged.next_if_eq(&&page).is_some();
            let streak = self.unprotected.entry(page).or_insert(0);
            *streak = if same { streak.saturating_add(1) } else { 0 };
        }
        let (mut protect, mut keep): (Vec<_>, Vec<_>) = self
            .unprotected
            .iter()
            .map(|(&page, &streak)| (streak, page))
            .partition(|&(streak, _)| streak >= PROTECT_AFTER);
        if keep.len() > MAX_UNPROTECTED {
            keep.sort_unstable_by(|a, b| b.cmp(a));
            protect.extend(keep.drain(..keep.len() - MAX_UNPROTECTED));
        }
        let mut protect: Vec<usize> = protect.into_iter().map(|(_, page)| page).collect();
        protect.sort_unstable();
        for page in &protect {
            self.unprotected.remove(page);
        }
        self.protect(&protect)
    }
}

impl HostWriteLog {
    /// Write-protects `pages` (ascending), one ioctl per run of consecutive pages: each makes
    /// the hypervisor drop its mapping of just those pages.
    fn protect(&self, pages: &[usize]) -> Result<(), Error> {
        let tracker = Tracker::get()?;
        let mut runs = pages.iter().peekable();
        while let Some(&first) = runs.next() {
            let mut last = first;
            while runs.next_if_eq(&&(last + 1)).is_some() {
                last += 1;
            }
            let start = self.range.0 + first as u64 * PAGE_SIZE;
            tracker.write_protect(start, (last - first + 1) as u64 * PAGE_SIZE)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_kernels_numbers() {
        // The values of <linux/userfaultfd.h> and <linux/fs.h> on x86_64: a wrong structure
        // size would change them.
        assert_eq!(requests::UFFDIO_API(), 0xc018_aa3f);
        assert_eq!(requests::UFFDIO_REGISTER(), 0xc020_aa00);
        assert_eq!(requests::UFFDIO_WRITEPROTECT(), 0xc018_aa06);
        assert_eq!(requests::PAGEMAP_SCAN(), 0xc060_6610);
    }
    use crate::vm::memory::SnapshotMemory;

    /// Whether this kernel tracks writes so (tests/write_tracking.rs requires it on Linux 6.7+);
    /// if not, the calling test is reported skipped.
    fn available_here() -> bool {
        let ok = available();
        if let Err(e) = &ok {
            hyperlight_testing::skip(format!("the host kernel cannot track writes so: {e}"));
        }
        ok.is_ok()
    }

    /// One restore of `mem` to `snapshot` as a sandbox does it: returns the pages it copied.
    fn restore(
        log: &mut HostWriteLog,
        mem: &mut GuestMemory,
        snapshot: &SnapshotMemory,
    ) -> Vec<usize> {
        let pages = log.written(mem).unwrap();
        let unchanged = mem.restore_pages(snapshot, &pages).unwrap();
        log.restored(mem, &pages, &unchanged).unwrap();
        pages
            .into_iter()
            .filter(|p| !unchanged.contains(p))
            .collect()
    }

    #[test]
    fn lists_the_written_pages_until_they_stay_unchanged() {
        if !available_here() {
            return;
        }
        let mut mem = GuestMemory::new(16 * PAGE_SIZE as usize).unwrap();
        mem.write(0, b"before the snapshot").unwrap();
        let snapshot = mem.snapshot().unwrap();
        let mut log = HostWriteLog::start(&mem).unwrap();
        assert_eq!(log.written(&mem).unwrap(), Vec::<usize>::new());
        // Reads are not writes; the pages stay protected.
        mem.read(0, 16).unwrap();
        mem.read(5 * PAGE_SIZE, 16).unwrap();
        assert_eq!(log.written(&mem).unwrap(), Vec::<usize>::new());
        for page in [0u64, 1, 2, 9, 15] {
            mem.write(page * PAGE_SIZE + 100, b"x").unwrap();
        }
        // Listing does not protect.
        assert_eq!(log.written(&mem).unwrap(), vec![0, 1, 2, 9, 15]);
        assert_eq!(log.written(&mem).unwrap(), vec![0, 1, 2, 9, 15]);
        assert_eq!(restore(&mut log, &mut mem, &snapshot), vec![0, 1, 2, 9, 15]);
        assert_eq!(mem.read(0, 19).unwrap(), b"before the snapshot");
        assert_eq!(mem.read(9 * PAGE_SIZE + 100, 1).unwrap(), [0]);
        // Page 9 is written at every call; the others are left alone. They are listed (and
        // found unchanged) until PROTECT_AFTER restores in a row, then protected: not listed.
        for _ in 0..PROTECT_AFTER {
            mem.write(9 * PAGE_SIZE, b"hot").unwrap();
            assert_eq!(log.written(&mem).unwrap(), vec![0, 1, 2, 9, 15]);
            assert_eq!(restore(&mut log, &mut mem, &snapshot), vec![9]);
        }
        mem.write(9 * PAGE_SIZE, b"hot").unwrap();
        assert_eq!(log.written(&mem).unwrap(), vec![9]);
        assert_eq!(restore(&mut log, &mut mem, &snapshot), vec![9]);
        // A protected page written again is listed again.
        mem.write(2 * PAGE_SIZE, b"again").unwrap();
        assert_eq!(log.written(&mem).unwrap(), vec![2, 9]);
        assert_eq!(restore(&mut log, &mut mem, &snapshot), vec![2]);
        // Another memory is not this log's.
        let other = GuestMemory::new(16 * PAGE_SIZE as usize).unwrap();
        assert!(log.written(&other).is_err());
    }

    #[test]
    fn tracks_private_mappings_and_keeps_at_most_the_limit_unprotected() {
        if !available_here() {
            return;
        }
        let pages = MAX_UNPROTECTED + 64;
        let mut base = GuestMemory::new(pages * PAGE_SIZE as usize).unwrap();
        base.write(3 * PAGE_SIZE, b"snapshot").unwrap();
        let snapshot = base.snapshot().unwrap();
        let mut mem = GuestMemory::from_snapshot(&snapshot).unwrap();
        let mut log = HostWriteLog::start(&mem).unwrap();
        assert_eq!(mem.read(3 * PAGE_SIZE, 8).unwrap(), b"snapshot");
        assert_eq!(log.written(&mem).unwrap(), Vec::<usize>::new());
        for page in 0..pages {
            mem.write((page as u64) * PAGE_SIZE, b"changed!").unwrap();
        }
        assert_eq!(log.written(&mem).unwrap().len(), pages);
        assert_eq!(restore(&mut log, &mut mem, &snapshot).len(), pages);
        assert_eq!(mem.read(3 * PAGE_SIZE, 8).unwrap(), b"snapshot");
        assert_eq!(mem.read(4 * PAGE_SIZE, 8).unwrap(), [0; 8]);
        assert_eq!(log.written(&mem).unwrap().len(), MAX_UNPROTECTED);
    }
}

//! Guest memory: a mapping of a memfd per sandbox, and sealed snapshot memfds shared by many.
//!
//! A sandbox boots from its ELF in a shared mapping of a fresh memfd. Its memory after init
//! becomes a [`SnapshotMemory`]: a sealed (immutable) memfd. A snapshot is written through a
//! mapping ([`SnapshotTarget`]): the memfd and its mappings are made on a thread that may create
//! files and map them, the pages are copied in on the vCPU thread, whose seccomp filter allows
//! neither (`docs/security.md`). From then on the sandbox, and every
//! sandbox created from that snapshot, maps the snapshot `MAP_PRIVATE`: the host kernel shares
//! every page the guest only reads and copies a page on the guest's first write to it. Every
//! access from the host goes through bounds-checked copies: the host never holds a reference
//! into memory that the guest can change under it.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use hyperlight_schema::abi::PAGE_SIZE;

use crate::error::Error;

/// An owned mapping.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is owned by this value and only reached through `&self`/`&mut self`
// methods that copy bytes in and out; the raw pointer is never handed out except to the
// hypervisor (which is the guest's view of it). Moving it to another thread is sound.
unsafe impl Send for Mapping {}
// SAFETY: through `&Mapping`, `GuestMemory` only reads, while no vCPU runs; `SharedMemory` reads
// and writes bytes and atomics that the guest may change at the same moment, which yields
// arbitrary byte values and nothing else (bytes have no invalid values, and nothing holds a
// reference into them across the access).
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(
        fd: &OwnedFd,
        size: usize,
        prot: libc::c_int,
        flags: libc::c_int,
    ) -> Result<Self, Error> {
        // SAFETY: a fresh mapping of a memfd we hold; the kernel chooses the address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                prot,
                flags | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::last_os("mmap"));
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| Error::last_os("mmap"))?;
        Ok(Self { ptr, size })
    }
}

impl Mapping {
    /// The offset of `[gpa, gpa + len)` in the mapping, if it lies inside it.
    fn range(&self, gpa: u64, len: usize) -> Result<usize, Error> {
        let start = usize::try_from(gpa).ok();
        match start.and_then(|s| s.checked_add(len).map(|e| (s, e))) {
            Some((s, e)) if e <= self.size => Ok(s),
            _ => Err(Error::OutOfBounds {
                gpa,
                len,
                size: self.size,
            }),
        }
    }
}

impl Mapping {
    /// Copies `data` into the mapping at `gpa`.
    ///
    /// Callers that run while the vCPU may run ([`SharedMemory`]) accept that the guest sees or
    /// leaves arbitrary bytes there.
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        let start = self.range(gpa, data.len())?;
        // SAFETY: `range` checked that the destination lies inside the mapping, valid for
        // writes while `self` lives; `data` is host memory, disjoint from every guest mapping.
        // The guest may access the same bytes meanwhile: that leaves arbitrary byte values,
        // valid `u8`s, and no host reference into them exists.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(start), data.len())
        };
        Ok(())
    }

    /// Copies `len` bytes at `gpa` into a new vector, once: what the host decodes is this copy,
    /// which the guest cannot change.
    fn read(&self, gpa: u64, len: usize) -> Result<Vec<u8>, Error> {
        let start = self.range(gpa, len)?;
        let mut out = vec![0u8; len];
        // SAFETY: `range` checked the source range; `out` is a distinct allocation of `len`
        // bytes. A guest writing the source meanwhile only changes which (valid) byte values
        // are copied.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(start), out.as_mut_ptr(), len)
        };
        Ok(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/size describe a mapping created in `new`, unmapped exactly once here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

fn memfd(size: usize, sealable: bool) -> Result<OwnedFd, Error> {
    const NAME: &CStr = c"hyperlight-guest";
    let flags = libc::MFD_CLOEXEC | if sealable { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: NAME is a valid NUL-terminated string; the flags are valid for memfd_create.
    let raw = unsafe { libc::memfd_create(NAME.as_ptr(), flags) };
    if raw < 0 {
        return Err(Error::last_os("memfd_create"));
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let len = libc::off_t::try_from(size).map_err(|_| Error::InvalidConfig {
        field: "memory size",
        value: size as u64,
        reason: "does not fit in off_t",
    })?;
    // SAFETY: fd is a valid memfd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(Error::last_os("ftruncate"));
    }
    Ok(fd)
}

/// Where a snapshot's memory is written: a sealed memfd with one writable mapping, through
/// which the pages are copied, and the read-only view the snapshot keeps.
///
/// Made by [`SnapshotTarget::new`] on a thread that may create and map files (the one that
/// builds the sandbox, or an unfiltered helper thread), filled by [`GuestMemory::snapshot_into`]
/// on the vCPU thread, which may do neither. The memfd is sealed at once with
/// `F_SEAL_FUTURE_WRITE` (and against growing, shrinking and further seals): no write, no new
/// writable mapping, no resizing; the one writable mapping made before the seal is unmapped when
/// the copy is done, after which nothing can change the memfd's contents.
#[derive(Debug)]
pub struct SnapshotTarget {
    fd: OwnedFd,
    writable: Mapping,
    view: Mapping,
}

impl SnapshotTarget {
    /// A sealed memfd of `size` bytes (all holes), mapped writable for the copy and read-only
    /// for the snapshot's view.
    pub fn new(size: usize) -> Result<Self, Error> {
        let fd = memfd(size, true)?;
        let writable = Mapping::new(
            &fd,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE;
        // SAFETY: fd is our memfd, created with MFD_ALLOW_SEALING; F_SEAL_FUTURE_WRITE leaves
        // the writable mapping made above usable (it forbids new ones, and write(2)).
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(Error::last_os("fcntl(F_ADD_SEALS)"));
        }
        // Made after the seal, the kernel makes this shared view impossible to mprotect writable.
        let view = Mapping::new(&fd, size, libc::PROT_READ, libc::MAP_SHARED)?;
        Ok(Self { fd, writable, view })
    }
}

/// A sandbox's memory as it was at a snapshot: a sealed memfd that nothing can change, and a
/// read-only view of it for restoring pages.
#[derive(Debug)]
pub struct SnapshotMemory {
    fd: OwnedFd,
    view: Mapping,
}

impl SnapshotMemory {
    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.view.size
    }

    fn page(&self, index: usize) -> &[u8] {
        let start = index * PAGE_SIZE as usize;
        // SAFETY: callers pass indices below size / PAGE_SIZE; the view is a read-only mapping
        // of a memfd sealed with F_SEAL_FUTURE_WRITE whose one writable mapping was unmapped
        // before this value existed (`snapshot_into`), so its bytes never change while this
        // borrow lives.
        unsafe { std::slice::from_raw_parts(self.view.ptr.as_ptr().add(start), PAGE_SIZE as usize) }
    }
}

/// A mapping of guest memory in the host process. Guest physical address `a` is at offset `a`.
/// Holds no file descriptor: the mapping keeps its memfd alive.
#[derive(Debug)]
pub struct GuestMemory {
    map: Arc<Mapping>,
}

impl GuestMemory {
    /// Creates `size` bytes (a multiple of the page size) of zeroed guest memory.
    pub fn new(size: usize) -> Result<Self, Error> {
        let fd = memfd(size, false)?;
        let map = Mapping::new(
            &fd,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )?;
        Ok(Self { map: Arc::new(map) })
    }

    /// Maps `snapshot` copy-on-write: pages are shared with the snapshot (and every other
    /// sandbox mapping it) until written.
    pub fn from_snapshot(snapshot: &SnapshotMemory) -> Result<Self, Error> {
        let map = Mapping::new(
            &snapshot.fd,
            snapshot.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        )?;
        Ok(Self { map: Arc::new(map) })
    }

    /// Pages that may hold data: resident in the mapping (a page never touched, in a memfd hole
    /// and not copied on write, reads as zero). Reading the others would allocate them.
    fn resident_pages(&self) -> Result<Vec<usize>, Error> {
        let pages = self.size() / PAGE_SIZE as usize;
        let mut residency = vec![0u8; pages];
        // SAFETY: the range is our whole mapping; `residency` has one byte per page.
        let rc = unsafe {
            libc::mincore(
                self.map.ptr.as_ptr().cast(),
                self.size(),
                residency.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(Error::last_os("mincore"));
        }
        Ok((0..pages).filter(|&p| residency[p] & 1 != 0).collect())
    }

    /// Copies this memory into a new sealed snapshot, on a thread that may create and map files
    /// (the vCPU thread uses [`GuestMemory::snapshot_into`]).
    pub fn snapshot(&self) -> Result<SnapshotMemory, Error> {
        self.snapshot_into(SnapshotTarget::new(self.size())?)
    }

    /// Copies this memory into `target` (of the same size), which becomes the snapshot: no
    /// system call but `mincore` and `munmap`. Pages never touched and pages that are all zero
    /// stay holes in the snapshot's memfd and take no memory.
    pub fn snapshot_into(&self, target: SnapshotTarget) -> Result<SnapshotMemory, Error> {
        let SnapshotTarget { fd, writable, view } = target;
        if writable.size != self.size() {
            return Err(Error::OutOfBounds {
                gpa: 0,
                len: self.size(),
                size: writable.size,
            });
        }
        let page = PAGE_SIZE as usize;
        for index in self.resident_pages()? {
            let bytes = self.page(index);
            if bytes.iter().all(|&b| b == 0) {
                continue;
            }
            // SAFETY: `writable` maps `self.size()` bytes (checked above) and `index` is a page
            // of this memory, so the page lies inside it; the mapping is ours alone (no other
            // reference to it exists) and cannot overlap this memory's own mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    writable.ptr.as_ptr().add(index * page),
                    page,
                )
            };
        }
        // The last writable mapping goes: from here on nothing can change the memfd.
        drop(writable);
        Ok(SnapshotMemory { fd, view })
    }

    /// Brings each of `pages` back to its content in `snapshot` (same size as this memory):
    /// copies the pages that differ, and returns the others, which already equal it.
    pub fn restore_pages(
        &mut self,
        snapshot: &SnapshotMemory,
        pages: &[usize],
    ) -> Result<Vec<usize>, Error> {
        if snapshot.size() != self.size() {
            return Err(Error::OutOfBounds {
                gpa: 0,
                len: snapshot.size(),
                size: self.size(),
            });
        }
        let mut unchanged = Vec::new();
        for &index in pages {
            if index >= self.size() / PAGE_SIZE as usize {
                return Err(Error::OutOfBounds {
                    gpa: index as u64 * PAGE_SIZE,
                    len: PAGE_SIZE as usize,
                    size: self.size(),
                });
            }
            let original = snapshot.page(index);
            if self.page(index) == original {
                unchanged.push(index);
            } else {
                self.write(index as u64 * PAGE_SIZE, original)?;
            }
        }
        Ok(unchanged)
    }

    /// Size of the mapping in bytes.
    pub fn size(&self) -> usize {
        self.map.size
    }

    /// Host address of guest address 0, for the hypervisor's memory slot.
    pub fn host_addr(&self) -> u64 {
        self.map.ptr.as_ptr() as u64
    }

    fn page(&self, index: usize) -> &[u8] {
        let start = index * PAGE_SIZE as usize;
        // SAFETY: callers pass indices below size / PAGE_SIZE. The vCPU is not running while
        // the host reads (only the vCPU thread runs it, and it reads between runs).
        unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr().add(start), PAGE_SIZE as usize) }
    }

    /// A handle to this memory for another thread, usable while the vCPU runs (the doorbell's
    /// state word and the buffers of a call posted through it); it keeps the mapping alive.
    pub(crate) fn shared(&self) -> SharedMemory {
        SharedMemory {
            map: self.map.clone(),
        }
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        self.map.write(gpa, data)
    }

    /// Copies `len` bytes of guest memory at `gpa` into a new vector: the one read of guest data.
    pub fn read(&self, gpa: u64, len: usize) -> Result<Vec<u8>, Error> {
        self.map.read(gpa, len)
    }

    /// Reads a little-endian `u64` at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, Error> {
        let bytes = self.read(gpa, 8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(&bytes);
        Ok(u64::from_le_bytes(le))
    }

    /// Writes a little-endian `u64` at `gpa`.
    pub fn write_u64(&mut self, gpa: u64, value: u64) -> Result<(), Error> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// The whole memory as a mutable byte slice, for the ELF loader at build time.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `size` bytes, valid and initialized (zero-filled by the kernel
        // or the snapshot's contents), and `&mut self` guarantees no other host reference
        // exists; the vCPU is not running while the loader holds this borrow.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr.as_ptr(), self.size()) }
    }
}

/// Guest memory as a thread other than the vCPU thread reaches it while the guest runs: bytes
/// and state words the guest may change at any moment. Every read is a copy (decoded, if at
/// all, from the copy) and every word an atomic, so a guest racing the host can only make the
/// host see other values, never break an invariant of the host's.
#[derive(Debug, Clone)]
pub(crate) struct SharedMemory {
    map: Arc<Mapping>,
}

impl SharedMemory {
    /// The `u32` at `gpa` (4-byte aligned, inside guest memory) as an atomic.
    pub(crate) fn word(&self, gpa: u64) -> Result<&AtomicU32, Error> {
        let start = self.map.range(gpa, 4)?;
        if start % 4 != 0 {
            return Err(Error::OutOfBounds {
                gpa,
                len: 4,
                size: self.map.size,
            });
        }
        // SAFETY: [start, start + 4) lies inside the mapping (checked), which lives as long as
        // `self`, and is 4-byte aligned (checked; the mapping is page aligned). Every access to
        // these bytes from the host goes through this atomic; the guest's accesses are its
        // CPU's, which cannot make an `AtomicU32` hold an invalid value.
        Ok(unsafe { AtomicU32::from_ptr(self.map.ptr.as_ptr().add(start).cast()) })
    }

    /// Copies `data` into guest memory at `gpa`; the guest may see any mix of old and new
    /// bytes until the host signals it through the state word.
    pub(crate) fn write(&self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        self.map.write(gpa, data)
    }

    /// Copies `len` bytes of guest memory at `gpa` into a new vector, once.
    pub(crate) fn read(&self, gpa: u64, len: usize) -> Result<Vec<u8>, Error> {
        self.map.read(gpa, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_mappings_share_the_snapshot_until_written() {
        let mut mem = GuestMemory::new(4 * PAGE_SIZE as usize).unwrap();
        mem.write(PAGE_SIZE, b"snapshot").unwrap();
        let snap = mem.snapshot().unwrap();
        let mut a = GuestMemory::from_snapshot(&snap).unwrap();
        let b = GuestMemory::from_snapshot(&snap).unwrap();
        assert_eq!(a.read(PAGE_SIZE, 8).unwrap(), b"snapshot");
        a.write(PAGE_SIZE, b"changed!").unwrap();
        a.write(3 * PAGE_SIZE, b"x").unwrap();
        assert_eq!(
            b.read(PAGE_SIZE, 8).unwrap(),
            b"snapshot",
            "a write leaked to a sibling"
        );
        // Pages 1 and 3 differ and are copied back; page 2 already equals the snapshot.
        assert_eq!(a.restore_pages(&snap, &[1, 2, 3]).unwrap(), vec![2]);
        assert_eq!(a.read(PAGE_SIZE, 8).unwrap(), b"snapshot");
        assert_eq!(a.read(3 * PAGE_SIZE, 1).unwrap(), [0]);
        // The original memory is untouched by the snapshot, and the snapshot is sealed.
        mem.write(PAGE_SIZE, b"original").unwrap();
        assert_eq!(b.read(PAGE_SIZE, 8).unwrap(), b"snapshot");
        assert!(a.restore_pages(&snap, &[4]).is_err());
    }

    #[test]
    fn a_snapshot_cannot_be_changed_once_taken() {
        let mut mem = GuestMemory::new(2 * PAGE_SIZE as usize).unwrap();
        mem.write(0, b"sealed").unwrap();
        let target = SnapshotTarget::new(mem.size()).unwrap();
        let snap = mem.snapshot_into(target).unwrap();
        let fd = snap.fd.as_raw_fd();
        let errno = || std::io::Error::last_os_error().raw_os_error();
        // SAFETY: plain syscalls on our own fd with valid arguments; a mapping that should not
        // exist is unmapped if it does.
        unsafe {
            assert_eq!(libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0), -1);
            assert_eq!(errno(), Some(libc::EPERM), "write(2)");
            let shared = libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            if shared != libc::MAP_FAILED {
                libc::munmap(shared, PAGE_SIZE as usize);
            }
            assert_eq!(shared, libc::MAP_FAILED, "a new writable shared mapping");
            assert_eq!(libc::ftruncate(fd, 0), -1, "shrinking");
            assert_eq!(
                libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE),
                -1,
                "changing the seals"
            );
        }
        // The view has what the memory had; changing the memory changes no snapshot.
        assert_eq!(&snap.page(0)[..6], b"sealed");
        mem.write(0, b"later!").unwrap();
        assert_eq!(&snap.page(0)[..6], b"sealed");
        let wrong_size = SnapshotTarget::new(PAGE_SIZE as usize).unwrap();
        assert!(mem.snapshot_into(wrong_size).is_err());
    }
}

//! Guest memory: one memfd-backed, shared mapping per sandbox.
//!
//! The memfd makes the memory a file the kernel can later map copy-on-write (`MAP_PRIVATE`) into
//! many sandboxes; for now each sandbox owns one read-write shared mapping. Every access from the
//! host goes through bounds-checked copies: the host never holds a reference into memory that the
//! guest can change under it.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::Error;

/// A mapping of guest memory in the host process. Guest physical address `a` is at offset `a`.
#[derive(Debug)]
pub struct GuestMemory {
    ptr: NonNull<u8>,
    size: usize,
    _fd: OwnedFd,
}

// SAFETY: the mapping is owned by this value and only reached through `&self`/`&mut self`
// methods that copy bytes in and out; the raw pointer is never handed out except to the
// hypervisor (which is the guest's view of it). Moving it to another thread is sound.
unsafe impl Send for GuestMemory {}

impl GuestMemory {
    /// Creates `size` bytes (a multiple of the page size) of zeroed guest memory.
    pub fn new(size: usize) -> Result<Self, Error> {
        const NAME: &CStr = c"hyperlight-guest";
        // SAFETY: NAME is a valid NUL-terminated string; the flags are valid for memfd_create.
        let raw = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC) };
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
        // SAFETY: a fresh shared mapping of our own memfd; the kernel chooses the address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Error::last_os("mmap"));
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(|| Error::last_os("mmap"))?;
        Ok(Self { ptr, size, _fd: fd })
    }

    /// Size of the mapping in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Host address of guest address 0, for the hypervisor's memory slot.
    pub fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

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

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), Error> {
        let start = self.range(gpa, data.len())?;
        // SAFETY: `range` checked that [start, start+len) lies inside the mapping, which is
        // valid for writes for the lifetime of self; `data` cannot overlap it (it is host memory
        // borrowed immutably while we hold &mut self).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(start), data.len())
        };
        Ok(())
    }

    /// Copies `len` bytes of guest memory at `gpa` into a new vector: the one read of guest data.
    pub fn read(&self, gpa: u64, len: usize) -> Result<Vec<u8>, Error> {
        let start = self.range(gpa, len)?;
        let mut out = vec![0u8; len];
        // SAFETY: `range` checked the source range; `out` is a distinct allocation of `len` bytes.
        // The guest may write the source concurrently only while its vCPU runs, which never
        // happens during a read (the vCPU thread is the only one that runs the vCPU and reads).
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(start), out.as_mut_ptr(), len)
        };
        Ok(out)
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
        // SAFETY: the mapping is `size` bytes, valid and initialized (zero-filled by the kernel),
        // and `&mut self` guarantees no other host reference exists; the vCPU is not running
        // while the loader holds this borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.size) }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/size describe the mapping created in `new`, unmapped exactly once here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.size) };
    }
}

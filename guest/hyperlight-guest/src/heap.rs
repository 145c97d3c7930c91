//! The guest heap: a first-fit linked-list allocator over the heap region the host gives in
//! `BootInfo`, which records failed allocations so that the panic that follows one (the default
//! `no_std` allocation error handler panics) is reported as `OutOfMemory`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, RefCell};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;

use crate::global::Global;

/// Size of the emergency reserve: a block allocated at init and freed by the panic handler, so
/// that reporting a panic can allocate even when the heap is exhausted.
const RESERVE_SIZE: usize = 16 * 1024;

/// The `#[global_allocator]` of every guest.
pub(crate) struct GuestAllocator {
    heap: Global<RefCell<Heap>>,
    /// Whether the most recent allocation attempt failed.
    last_failed: Global<Cell<bool>>,
    /// The emergency reserve, while it is held.
    reserve: Global<Cell<Option<NonNull<u8>>>>,
}

#[cfg_attr(not(test), global_allocator)]
pub(crate) static ALLOCATOR: GuestAllocator = GuestAllocator {
    heap: Global::new(RefCell::new(Heap::empty())),
    last_failed: Global::new(Cell::new(false)),
    reserve: Global::new(Cell::new(None)),
};

impl GuestAllocator {
    /// Hands the region `[base, base + size)` to the allocator, then takes the emergency
    /// reserve out of it (unless the heap is too small to spare it).
    ///
    /// # Safety
    ///
    /// Must be called once, before any allocation; the region must be mapped read-write, unused
    /// by anything else, and stay so for the rest of the guest's life.
    pub(crate) unsafe fn init(&self, base: *mut u8, size: usize) {
        // SAFETY: the caller guarantees the region is valid, exclusive and 'static, and that this
        // is the only init.
        unsafe { self.heap.borrow_mut().init(base, size) };
        if size >= 8 * RESERVE_SIZE {
            let reserve = self
                .heap
                .borrow_mut()
                .allocate_first_fit(reserve_layout())
                .ok();
            self.reserve.set(reserve);
        }
    }

    /// Whether the most recent allocation failed. The panic handler reads it first thing: a
    /// failed allocation is followed directly by the allocation error handler's panic.
    pub(crate) fn last_allocation_failed(&self) -> bool {
        self.last_failed.get()
    }

    /// Frees the emergency reserve, if it is still held.
    pub(crate) fn release_reserve(&self) {
        if let Some(block) = self.reserve.take() {
            // SAFETY: `block` was returned by this heap for `reserve_layout()` and has not been
            // freed: `take()` guarantees it is freed at most once.
            unsafe { self.heap.borrow_mut().deallocate(block, reserve_layout()) };
        }
    }
}

fn reserve_layout() -> Layout {
    const LAYOUT: Layout = match Layout::from_size_align(RESERVE_SIZE, 16) {
        Ok(layout) => layout,
        Err(_) => panic!("invalid reserve layout"),
    };
    LAYOUT
}

// SAFETY: allocation and deallocation are delegated to `linked_list_allocator::Heap`, which hands
// out disjoint blocks of the region given at init that honour the requested layout. The
// `RefCell` borrow is never held across a call out of the allocator, and the guest is
// single-threaded with no interrupts, so it can never be found already borrowed (if it were,
// `borrow_mut` would panic rather than alias).
unsafe impl GlobalAlloc for GuestAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let result = self.heap.borrow_mut().allocate_first_fit(layout);
        self.last_failed.set(result.is_err());
        result.map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: the `GlobalAlloc` contract: `ptr` was returned by `alloc` of this
            // allocator (so of this heap) with this `layout`, and is freed once.
            unsafe { self.heap.borrow_mut().deallocate(ptr, layout) };
        }
    }
}

/// Heap statistics, for guests that want to report or test their memory use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Size of the heap region in bytes.
    pub size: usize,
    /// Bytes currently allocated (the emergency reserve included).
    pub used: usize,
    /// Bytes currently free.
    pub free: usize,
}

/// Current heap statistics.
pub fn heap_stats() -> HeapStats {
    let heap = ALLOCATOR.heap.borrow();
    HeapStats {
        size: heap.size(),
        used: heap.used(),
        free: heap.free(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn records_failure_and_frees_reserve() {
        let mut region = vec![0u64; (16 * RESERVE_SIZE) / 8];
        let allocator = GuestAllocator {
            heap: Global::new(RefCell::new(Heap::empty())),
            last_failed: Global::new(Cell::new(false)),
            reserve: Global::new(Cell::new(None)),
        };
        let size = region.len() * 8;
        // SAFETY: `region` is a live, exclusive buffer that outlives `allocator`'s use below.
        unsafe { allocator.init(region.as_mut_ptr().cast(), size) };
        assert!(allocator.reserve.get().is_some());
        let used = allocator.heap.borrow().used();
        assert!(used >= RESERVE_SIZE);

        let huge = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a valid non-zero layout; a null result is handled.
        let p = unsafe { allocator.alloc(huge) };
        assert!(p.is_null());
        assert!(allocator.last_allocation_failed());

        let small = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid non-zero layout.
        let q = unsafe { allocator.alloc(small) };
        assert!(!q.is_null());
        assert!(!allocator.last_allocation_failed());
        // SAFETY: `q` came from this allocator with this layout.
        unsafe { allocator.dealloc(q, small) };

        allocator.release_reserve();
        allocator.release_reserve();
        assert!(allocator.reserve.get().is_none());
        assert_eq!(allocator.heap.borrow().used(), 0);
    }
}

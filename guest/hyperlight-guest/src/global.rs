//! A `static` holder for the guest's global state (the library's own, and a guest binary's).

/// Makes a value that is not `Sync` (a `Cell`, a `RefCell`) usable in a `static`.
///
/// The guest runs on exactly one vCPU, in one thread, with interrupts disabled (`IF` clear, no
/// IDT entry reachable from ring 3 but the exception stubs, which never return): no two pieces of
/// guest code ever run at the same time, so sharing between "threads" cannot happen. Reentrancy
/// within the one thread is what the inner `Cell`/`RefCell` is there to handle.
///
/// Public so that a guest binary can keep its own state the same way, without `unsafe`:
/// `static STATE: Global<RefCell<Option<State>>> = Global::new(RefCell::new(None));`.
pub struct Global<T>(T);

// SAFETY: see the type's documentation: the guest is single-threaded and has no interrupts, so a
// `&Global<T>` is never used from two threads; `T` itself handles same-thread reentrancy.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }
}

impl<T> core::ops::Deref for Global<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

//! Snapshots: the complete state of a sandbox (memory and vCPU registers), shared by every
//! sandbox created from it.

use std::sync::Arc;

use crate::hypervisor::VcpuState;
use crate::vm::layout::Layout;
use crate::vm::memory::SnapshotMemory;

/// The complete state of a sandbox at one moment: its memory (a sealed memfd that sandboxes
/// created from the snapshot map copy-on-write) and its vCPU's registers, including the
/// x87/SSE/AVX state. Cheap to clone; `Send + Sync`.
///
/// Every sandbox takes one automatically right after its guest's init; `Sandbox::snapshot`
/// takes one on demand, between calls.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub(crate) data: Arc<SnapshotData>,
}

#[derive(Debug)]
pub(crate) struct SnapshotData {
    pub(crate) memory: SnapshotMemory,
    pub(crate) layout: Layout,
    pub(crate) vcpu: VcpuState,
}

impl Snapshot {
    pub(crate) fn new(memory: SnapshotMemory, layout: Layout, vcpu: VcpuState) -> Self {
        Self {
            data: Arc::new(SnapshotData {
                memory,
                layout,
                vcpu,
            }),
        }
    }

    /// Size of the sandbox memory the snapshot holds, in bytes (most of it typically holes that
    /// take no memory).
    pub fn memory_size(&self) -> u64 {
        self.data.layout.total
    }

    /// Whether two handles are the same snapshot.
    pub fn same_as(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}

//! The raw KVM floor the project's figures are measured against: a VM built with the same crates,
//! memory layout and ring-3 CPU tables as a sandbox, whose guest is just `out; jmp` in a loop.
//! Benchmarks use it to quote a sandbox's costs as ratios of what the hypervisor itself costs.

use hyperlight_schema::abi::PAGE_SIZE;

use crate::config::SandboxConfig;
use crate::error::Error;
use crate::hypervisor::{Exit, Hypervisor, Vcpu, Vm};
use crate::vm::elf::{LoadedImage, LoadedSegment, SegmentPerms};
use crate::vm::layout::Layout;
use crate::vm::memory::GuestMemory;
use crate::vm::x86;

/// `mov dx, PORT_DONE; out dx, eax; jmp <the out>`: one exit per run.
const LOOP: [u8; 7] = [0x66, 0xba, 0x03, 0x01, 0xef, 0xeb, 0xfd];

/// The memory of the smallest ring-3 VM: one page each of heap, stack and buffers, `code` at the
/// start of a read-execute image, and the tables written; with its layout and image.
pub(crate) fn code_only(code: &[u8]) -> Result<(Layout, GuestMemory, LoadedImage), Error> {
    let page = SandboxConfig::MIN_REGION;
    let config = SandboxConfig {
        heap_size: page,
        stack_size: page,
        input_size: page,
        output_size: page,
        ..SandboxConfig::default()
    };
    let layout = Layout::new(&config, PAGE_SIZE, 0)?;
    let mut mem = GuestMemory::new(layout.total as usize)?;
    mem.write(layout.image.start, code)?;
    let image = LoadedImage {
        base: layout.image.start,
        entry: layout.image.start,
        segments: vec![LoadedSegment {
            start: layout.image.start,
            end: layout.image.end,
            perms: SegmentPerms {
                read: true,
                write: false,
                execute: true,
            },
        }],
        end: layout.image.end,
    };
    x86::write_tables(&mut mem, &layout, &image)?;
    Ok((layout, mem, image))
}

/// A minimal ring-3 VM whose every run is one `out` exit.
pub struct FloorVm {
    vcpu: Box<dyn Vcpu>,
    _vm: Box<dyn Vm>,
    _mem: GuestMemory,
}

impl FloorVm {
    /// Sets up the VM: memory, tables, VM, vCPU and registers (the raw set-up cost).
    pub fn new(hv: &dyn Hypervisor) -> Result<Self, Error> {
        let (layout, mem, image) = code_only(&LOOP)?;
        let mut vm = hv.create_vm()?;
        // SAFETY: `mem` is stored in the returned value and dropped after the VM and vCPU.
        unsafe { vm.map_memory(0, mem.host_addr(), layout.total)? };
        let mut vcpu = vm.create_vcpu()?;
        vcpu.set_special_registers(&x86::initial_special_registers(&layout))?;
        vcpu.set_registers(&x86::initial_registers(&layout, image.entry))?;
        Ok(Self {
            vcpu,
            _vm: vm,
            _mem: mem,
        })
    }

    /// One `KVM_RUN` round trip: enter the guest, take its `out` exit.
    pub fn round_trip(&mut self) -> Result<(), Error> {
        match self.vcpu.run()? {
            Exit::Out { .. } => Ok(()),
            other => Err(Error::UnexpectedExit {
                exit: format!("{other:?}"),
            }),
        }
    }
}

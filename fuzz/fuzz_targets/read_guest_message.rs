//! The shared-memory reader, `boundary::read_guest_message`, on a real sandbox memory layout
//! (`Layout::new(&SandboxConfig::default(), 4096, 0)`, a real memfd-backed `GuestMemory`), with
//! hostile `out` values: any length, any width, and output regions placed anywhere (the real
//! output buffer most often; the input buffer; one straddling the end of guest memory; one near
//! the top of the address space; one anywhere). A host-side shadow copy of guest memory is the
//! oracle: a read succeeds exactly when the width is 4, the length fits the region and the
//! region's first `len` bytes lie in memory, and it returns exactly the shadow's bytes. What it
//! returns then goes through the host's dispatcher for a fuzzer-chosen port.
//!
//! Input: `len: u32 LE | size: u8 | region: u8 | shift: u32 LE | port: u8 | bytes written at the
//! region's start`.
#![no_main]

use std::cell::RefCell;

use hyperlight_fuzz::input::ReadInput;
use hyperlight_sys::boundary::read_guest_message;
use hyperlight_sys::vm::layout::Layout;
use hyperlight_sys::vm::memory::GuestMemory;
use hyperlight_sys::{Error, SandboxConfig};
use libfuzzer_sys::fuzz_target;

struct Memory {
    layout: Layout,
    mem: GuestMemory,
    shadow: Vec<u8>,
}

thread_local! {
    static MEMORY: RefCell<Memory> = RefCell::new({
        let layout = Layout::new(&SandboxConfig::default(), 4096, 0).expect("default layout");
        let mem = GuestMemory::new(layout.total as usize).expect("guest memory");
        let shadow = vec![0; layout.total as usize];
        Memory { layout, mem, shadow }
    });
}

fuzz_target!(|data: &[u8]| {
    let input = ReadInput::parse(data);
    let (len, size, bytes) = (input.len, input.size, input.bytes);

    MEMORY.with_borrow_mut(|m| {
        let total = m.layout.total;
        let region = input.region(&m.layout);

        // The guest's write: the bytes at the start of the region, as far as memory goes.
        if region.start < total {
            let room = (total - region.start).min(region.size());
            let n = bytes.len().min(room as usize);
            m.mem.write(region.start, &bytes[..n]).expect("in bounds");
            let at = region.start as usize;
            m.shadow[at..at + n].copy_from_slice(&bytes[..n]);
        }

        let read = read_guest_message(&m.mem, region, len, size);
        let in_memory = region
            .start
            .checked_add(u64::from(len))
            .is_some_and(|end| end <= total);
        match &read {
            Ok(message) => {
                assert!(size == 4 && u64::from(len) <= region.size() && in_memory);
                let at = region.start as usize;
                assert!(
                    message[..] == m.shadow[at..at + len as usize],
                    "read other bytes"
                );
            }
            Err(Error::Protocol { .. }) => assert!(size != 4 || u64::from(len) > region.size()),
            Err(Error::OutOfBounds { .. }) => {
                assert!(size == 4 && u64::from(len) <= region.size() && !in_memory)
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
        if let Ok(message) = read {
            hyperlight_fuzz::decode::guest_message(input.port, &message);
        }
    });
});

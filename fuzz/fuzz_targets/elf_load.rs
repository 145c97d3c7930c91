//! The ELF loader on raw bytes, as `Machine::load` uses it: `ElfImage::parse`, the layout check
//! of the image span, then `load` at the image base into a bounded buffer. Checks what the loader
//! documents: `load` of a parsed image fails only for its own arguments (base alignment, memory
//! size), the loaded image is `[base, base + span)` with sorted, disjoint, page-aligned, W^X
//! segments inside it and the entry point in an executable one, it never writes outside its
//! span, and loading at another (aligned) base moves the entry point by the same amount.
#![no_main]

use std::cell::RefCell;

use hyperlight_sys::vm::elf::{ElfError, ElfImage, LoadedImage, PAGE_SIZE};
use hyperlight_sys::vm::layout::{Layout, IMAGE_BASE};
use hyperlight_sys::SandboxConfig;
use libfuzzer_sys::fuzz_target;

/// The largest span loaded; a larger image is only checked to not fit a small buffer.
const MAX_SPAN: u64 = 16 << 20;
/// The buffer: room for the image at `IMAGE_BASE` and at a second base above it.
const BUFFER: usize = (2 * IMAGE_BASE + 2 * MAX_SPAN) as usize;
/// A byte the loader must not write outside the span.
const CANARY: u8 = 0xa5;

thread_local! {
    static MEM: RefCell<Vec<u8>> = RefCell::new(vec![CANARY; BUFFER]);
}

fn check_loaded(image: &ElfImage<'_>, loaded: &LoadedImage, base: u64) {
    assert_eq!(loaded.base, base);
    assert_eq!(loaded.end, base + image.span());
    assert!(!loaded.segments.is_empty());
    let mut previous_end = base;
    for s in &loaded.segments {
        assert!(s.start % PAGE_SIZE == 0 && s.end % PAGE_SIZE == 0, "{s:?}");
        assert!(
            previous_end <= s.start && s.start < s.end && s.end <= loaded.end,
            "{s:?}"
        );
        assert!(!(s.perms.write && s.perms.execute), "W^X: {s:?}");
        previous_end = s.end;
    }
    assert!(
        loaded
            .segments
            .iter()
            .any(|s| s.perms.execute && (s.start..s.end).contains(&loaded.entry)),
        "entry {:#x} outside the executable segments {:?}",
        loaded.entry,
        loaded.segments
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(image) = ElfImage::parse(data) else {
        return;
    };
    let span = image.span();
    let align = image.alignment();
    assert!(span > 0 && span % PAGE_SIZE == 0, "span {span:#x}");
    assert!(
        align.is_power_of_two() && align >= PAGE_SIZE,
        "alignment {align:#x}"
    );
    // The machine lays out memory for the span before it loads anything.
    if Layout::new(&SandboxConfig::default(), span, 0).is_err() {
        return;
    }
    if span > MAX_SPAN {
        let mut small = vec![0u8; IMAGE_BASE as usize];
        assert!(matches!(
            image.load(&mut small, IMAGE_BASE),
            Err(ElfError::DoesNotFit { .. } | ElfError::BaseNotAligned { .. })
        ));
        return;
    }
    MEM.with_borrow_mut(|mem| {
        let first = match image.load(mem, IMAGE_BASE) {
            Ok(loaded) => loaded,
            Err(ElfError::BaseNotAligned { .. }) => return,
            Err(e) => panic!("load of a parsed image failed: {e}"),
        };
        check_loaded(&image, &first, IMAGE_BASE);
        let end = (IMAGE_BASE + span) as usize;
        assert!(
            mem[..IMAGE_BASE as usize].iter().all(|&b| b == CANARY),
            "wrote below the base"
        );
        assert!(
            mem[end..end + PAGE_SIZE as usize]
                .iter()
                .all(|&b| b == CANARY),
            "wrote past the span"
        );
        // Another base with the same alignment: everything moves by the difference.
        let shift = align.max(IMAGE_BASE);
        let second_base = IMAGE_BASE + shift;
        if second_base + span <= BUFFER as u64 {
            let second = image
                .load(mem, second_base)
                .expect("load at an aligned base");
            check_loaded(&image, &second, second_base);
            assert_eq!(second.entry - first.entry, shift);
            for (a, b) in first.segments.iter().zip(&second.segments) {
                assert_eq!((b.start - a.start, b.end - a.end), (shift, shift));
                assert_eq!(a.perms, b.perms);
            }
            mem[second_base as usize..second_base as usize + span as usize].fill(CANARY);
        }
        mem[IMAGE_BASE as usize..end].fill(CANARY);
    });
});

//! The panic handler: reports the panic to the host on `PORT_ABORT` and never returns.
//!
//! Allocation failures end up here too: the default `no_std` allocation error handler panics, and
//! the allocator records the failure, so such a panic is reported as `OutOfMemory`.
//!
//! Reporting needs the heap (the message is a `String`, encoding builds a `Vec`), which may be
//! exhausted. So the handler formats the message into a fixed buffer on the stack first, then
//! frees the allocator's emergency reserve before allocating. If that still fails (the failed
//! allocation panics again, re-entering this handler), or the handler panics for any other
//! reason, it sends a `GuestError` encoded at init instead, without allocating.

use alloc::string::String;
use core::cell::Cell;
use core::fmt::{self, Write};
use core::panic::PanicInfo;

use hyperlight_schema::wire::encode_guest_error;
use hyperlight_schema::{ErrorCode, GuestError};

use crate::global::Global;
use crate::heap::ALLOCATOR;
use crate::runtime::{abort_with, abort_without_message};

/// Longest panic message sent (in bytes, before the location), longer ones are truncated.
const MAX_MESSAGE: usize = 1024;
/// Longest " at file:line:col" suffix sent.
const MAX_LOCATION: usize = 256;

/// `GuestError`s encoded at init, for when the handler cannot allocate.
#[derive(Clone, Copy)]
struct Fallbacks {
    out_of_memory: &'static [u8],
    panic: &'static [u8],
}

static FALLBACKS: Global<Cell<Option<Fallbacks>>> = Global::new(Cell::new(None));

/// The code of the panic being reported, once the handler has started.
static PANICKING: Global<Cell<Option<ErrorCode>>> = Global::new(Cell::new(None));

/// Encodes the fallback messages. Called once at init, right after the heap is set up.
pub(crate) fn prepare() {
    let encode = |code, message: &str| -> &'static [u8] {
        encode_guest_error(&GuestError {
            code,
            message: String::from(message),
        })
        .leak()
    };
    FALLBACKS.set(Some(Fallbacks {
        out_of_memory: encode(
            ErrorCode::OutOfMemory,
            "out of memory (the panic message could not be reported)",
        ),
        panic: encode(
            ErrorCode::Panic,
            "the guest panicked (the panic message could not be reported)",
        ),
    }));
}

#[cfg_attr(not(test), panic_handler)]
fn panic(info: &PanicInfo<'_>) -> ! {
    // First thing: a failed allocation is directly followed by this panic.
    let out_of_memory = ALLOCATOR.last_allocation_failed();
    if let Some(code) = PANICKING.get() {
        // Reporting the first panic panicked (most likely it could not allocate).
        abort_with_fallback(code);
    }
    let code = if out_of_memory {
        ErrorCode::OutOfMemory
    } else {
        ErrorCode::Panic
    };
    PANICKING.set(Some(code));

    let mut message = FixedText::<MAX_MESSAGE>::new();
    let _ = write!(message, "{}", info.message());
    let mut location = FixedText::<MAX_LOCATION>::new();
    if let Some(loc) = info.location() {
        let _ = write!(
            location,
            " at {}:{}:{}",
            loc.file(),
            loc.line(),
            loc.column()
        );
    }

    ALLOCATOR.release_reserve();
    let mut text = String::new();
    if text
        .try_reserve_exact(message.len() + location.len())
        .is_err()
    {
        abort_with_fallback(code);
    }
    text.push_str(message.as_str());
    text.push_str(location.as_str());
    let encoded = encode_guest_error(&GuestError {
        code,
        message: text,
    });
    abort_with(&encoded)
}

/// Aborts with the pre-encoded error for `code`, or with an empty message if there is none yet.
fn abort_with_fallback(code: ErrorCode) -> ! {
    match FALLBACKS.get() {
        Some(f) if code == ErrorCode::OutOfMemory => abort_with(f.out_of_memory),
        Some(f) => abort_with(f.panic),
        None => abort_without_message(),
    }
}

/// A string in a fixed buffer: formatting into it never allocates. Text past the capacity is
/// dropped (at a character boundary) and the text ends in `…`.
struct FixedText<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> FixedText<N> {
    /// Room kept for the `…` marker (3 bytes in UTF-8).
    const MARKER: &'static str = "…";

    fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s or whole characters of them are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn push(&mut self, s: &str) -> bool {
        let end = self.len + s.len();
        if end > N {
            return false;
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        true
    }
}

impl<const N: usize> Write for FixedText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = N - Self::MARKER.len();
        if self.len + s.len() <= room {
            self.push(s);
            return Ok(());
        }
        let mut keep = room.saturating_sub(self.len).min(s.len());
        while !s.is_char_boundary(keep) {
            keep -= 1;
        }
        self.push(&s[..keep]);
        self.push(Self::MARKER);
        self.truncated = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_text_keeps_short_text() {
        let mut text = FixedText::<16>::new();
        write!(text, "ab{}", 12).unwrap();
        assert_eq!(text.as_str(), "ab12");
    }

    #[test]
    fn fixed_text_truncates_at_a_char_boundary() {
        let mut text = FixedText::<10>::new();
        // Room for 7 bytes before the 3-byte marker: "aaaaaa" + half of "é" would be 8.
        let tail = "tail";
        write!(text, "aaaaaaé{tail}").unwrap();
        assert_eq!(text.as_str(), "aaaaaa…");
        assert!(text.len() <= 10);
        let mut exact = FixedText::<10>::new();
        write!(exact, "{}", "x".repeat(100)).unwrap();
        assert_eq!(exact.as_str(), "xxxxxxx…");
        assert_eq!(exact.len(), 10);
    }
}

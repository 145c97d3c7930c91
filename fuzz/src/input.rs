//! How the fuzz targets read their input bytes. The one copy that both the targets
//! (`fuzz_targets/*.rs`) and the regression tests that replay their seeds and crash inputs
//! (`hyperlight-sys/tests/fuzz_regressions.rs`, which includes this file with `#[path]`) use,
//! so that an input means the same to both. It uses only `hyperlight_sys`, which both have.

use hyperlight_sys::schema::Value;
use hyperlight_sys::vm::layout::{Layout, Region};
use hyperlight_sys::SandboxConfig;

/// The little-endian `u32` at `at` in `data`; bytes past the end read as zero.
pub fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut le = [0u8; 4];
    for (i, b) in le.iter_mut().enumerate() {
        *b = data.get(at + i).copied().unwrap_or(0);
    }
    u32::from_le_bytes(le)
}

/// A port from one byte: mostly the sixteen protocol ports, the four message ports most often
/// (0 host call, 1 log, 2 done, 3 abort; 12 is `0x100`, 13 the exception port).
pub fn port_from_byte(b: u8) -> u16 {
    match b % 16 {
        0..=11 => 0x101 + u16::from(b % 4),
        12 => 0x100,
        13 => 0x105,
        14 => 0x106 + u16::from(b >> 4) % 10,
        // Anything, mostly outside the protocol range.
        _ => u16::from(b) << 4,
    }
}

/// An input of `read_guest_message`: `len: u32 LE | size: u8 | region: u8 | shift: u32 LE |
/// port: u8 | bytes written at the region's start`.
pub struct ReadInput<'a> {
    /// The `out` value: the message length.
    pub len: u32,
    /// The `out` width in bytes.
    pub size: u8,
    /// Which output region ([`ReadInput::region`]).
    pub which: u8,
    /// Where the region starts, for the regions placed anywhere.
    pub shift: u64,
    /// The port the message goes to, after it was read.
    pub port: u16,
    /// What the guest wrote at the start of the region.
    pub bytes: &'a [u8],
}

impl<'a> ReadInput<'a> {
    /// Reads the input from the fuzzer's bytes (missing bytes are zero, the width 4).
    pub fn parse(data: &'a [u8]) -> Self {
        Self {
            len: u32_at(data, 0),
            size: data.get(4).copied().unwrap_or(4),
            which: data.get(5).copied().unwrap_or(0),
            shift: u64::from(u32_at(data, 6)),
            port: port_from_byte(data.get(10).copied().unwrap_or(0)),
            bytes: data.get(11..).unwrap_or_default(),
        }
    }

    /// The output region the host reads from: the real output buffer most often; the input
    /// buffer; one straddling the end of guest memory; one near the top of the address space;
    /// one anywhere.
    pub fn region(&self, layout: &Layout) -> Region {
        let (total, out, shift) = (layout.total, layout.output, self.shift);
        let at = |start: u64| Region {
            start,
            end: start.saturating_add(out.size()),
        };
        match self.which % 8 {
            0..=3 => out,
            4 => layout.input,
            5 => at(total.saturating_sub(shift % (2 * out.size() + 1))),
            6 => at(u64::MAX - shift),
            _ => at(shift * 8),
        }
    }
}

/// An input of `e2e_raw`: `port: u8 | mode: u8 | len: u32 LE | bytes`. `mode % 4`: 0, 1: guest
/// function `raw` (the library's `send_raw`: a 4-byte `out` of the bytes' length; `len` is
/// unused); 2: `raw_out` with a 4-byte `out` of `len`; 3: `raw_out` with a 1-, 2- or 4-byte `out`
/// (`mode / 4 % 3`).
pub struct RawInput {
    /// The port of the `out`.
    pub port: u16,
    /// The width of the `out` in bytes.
    pub width: u8,
    /// The value of the `out` before a narrower `out` truncates it.
    pub len: u32,
    /// The bytes the guest puts at the start of its output buffer.
    pub bytes: Vec<u8>,
    /// Whether the guest function is `raw` (else `raw_out`).
    raw: bool,
}

impl RawInput {
    /// Reads the input from the fuzzer's bytes (missing bytes are zero).
    pub fn parse(data: &[u8]) -> Self {
        let mode = data.get(1).copied().unwrap_or(0);
        let bytes = data.get(6..).unwrap_or_default().to_vec();
        let raw = mode % 4 < 2;
        let (width, len) = match mode % 4 {
            // `send_raw` truncates to the output buffer.
            0 | 1 => (
                4,
                bytes
                    .len()
                    .min(SandboxConfig::default().output_size as usize) as u32,
            ),
            2 => (4, u32_at(data, 2)),
            _ => ([1, 2, 4][usize::from(mode / 4 % 3)], u32_at(data, 2)),
        };
        Self {
            port: port_from_byte(data.first().copied().unwrap_or(0)),
            width,
            len,
            bytes,
            raw,
        }
    }

    /// What the `out` carries: a narrower `out` truncates the value.
    pub fn sent(&self) -> u32 {
        match self.width {
            1 => self.len & 0xff,
            2 => self.len & 0xffff,
            _ => self.len,
        }
    }

    /// The call of the `fuzz` guest that does the `out`: its name and arguments (it returns
    /// nothing).
    pub fn call(self) -> (&'static str, Vec<Value>) {
        let (port, bytes) = (Value::U32(self.port.into()), Value::Bytes(self.bytes));
        if self.raw {
            ("raw", vec![port, bytes])
        } else {
            let args = vec![
                port,
                Value::U32(self.width.into()),
                Value::U32(self.len),
                bytes,
            ];
            ("raw_out", args)
        }
    }
}

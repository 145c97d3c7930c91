//! The fuzz targets' inputs in the normal test suite (see `docs/fuzzing.md`):
//!
//! - every checked-in seed (`fuzz/corpus/<target>/seed-*`) and every minimized crash input
//!   (`fuzz/regressions/<target>/*`) of the targets that need no hypervisor goes through the same
//!   host code as in its target, and must give a typed answer (a seed not named `seed-bad-*`
//!   must be accepted, so that the seeds stay meaningful when the schema changes);
//! - the seeds of the end-to-end target `e2e_raw` run through a real `fuzz` guest on KVM;
//! - `write_seeds` (ignored) regenerates the seeds: `cargo test -p hyperlight-sys --test
//!   fuzz_regressions -- --ignored write_seeds`.

use std::path::{Path, PathBuf};

// How the targets read their inputs: the fuzz crate's own code, so that an input means the same
// here. The targets use all of it, this file not quite.
#[path = "../../fuzz/src/input.rs"]
#[allow(dead_code)]
mod input;

use hyperlight_sys::boundary::{decode_guest_message, is_message_port, read_guest_message};
use hyperlight_sys::schema::abi::{PORT_ABORT, PORT_DONE, PORT_HOST_CALL, PORT_LOG};
use hyperlight_sys::schema::wire;
use hyperlight_sys::schema::{
    ErrorCode, FunctionCall, GuestError, LogLevel, LogRecord, Value, ValueType,
};
use hyperlight_sys::vm::elf::ElfImage;
use hyperlight_sys::vm::layout::{Layout, IMAGE_BASE};
use hyperlight_sys::vm::memory::GuestMemory;
use hyperlight_sys::{Error, Sandbox, SandboxConfig};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The seeds and regression inputs of `target`: (file name, bytes).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for dir in [
        fuzz_dir().join("corpus").join(target),
        fuzz_dir().join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_seed = dir.ends_with(target) && dir.parent().unwrap().ends_with("corpus");
            if is_seed && !name.starts_with("seed-") {
                continue; // a local fuzzing run's corpus, not checked in
            }
            found.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    found.sort();
    found
}

fn must_accept(name: &str) -> bool {
    name.starts_with("seed-") && !name.starts_with("seed-bad-")
}

#[test]
fn decoder_inputs_replay() {
    type Decoder = fn(&[u8]) -> bool;
    let targets: [(&str, Decoder); 4] = [
        ("decode_function_call", |d| {
            wire::decode_function_call(d).is_ok()
        }),
        ("decode_function_call_result", |d| {
            wire::decode_function_call_result(d).is_ok()
        }),
        ("decode_guest_error", |d| {
            wire::decode_guest_error(d).is_ok()
        }),
        ("decode_log_record", |d| wire::decode_log_record(d).is_ok()),
    ];
    for (target, decode) in targets {
        let inputs = inputs(target);
        assert!(!inputs.is_empty(), "no seeds for {target}");
        for (name, data) in inputs {
            let ok = decode(&data);
            assert!(ok || !must_accept(&name), "{target}/{name} was rejected");
        }
    }
}

#[test]
fn guest_message_inputs_replay() {
    let inputs = inputs("guest_message");
    assert!(!inputs.is_empty());
    for (name, data) in inputs {
        let Some((&port, message)) = data.split_first() else {
            continue;
        };
        let port = input::port_from_byte(port);
        let decoded = decode_guest_message(port, message);
        match &decoded {
            Ok(_) => assert!(is_message_port(port)),
            Err(Error::Malformed(_)) => assert!(is_message_port(port)),
            Err(Error::Protocol { .. }) => assert!(!is_message_port(port)),
            Err(other) => panic!("guest_message/{name}: {other:?}"),
        }
        assert!(
            decoded.is_ok() || !must_accept(&name),
            "guest_message/{name}: {decoded:?}"
        );
    }
}

#[test]
fn read_guest_message_inputs_replay() {
    let layout = Layout::new(&SandboxConfig::default(), 4096, 0).unwrap();
    let mut mem = GuestMemory::new(layout.total as usize).unwrap();
    let inputs = inputs("read_guest_message");
    assert!(!inputs.is_empty());
    for (name, data) in inputs {
        let input = input::ReadInput::parse(&data);
        let (len, size, port, bytes) = (input.len, input.size, input.port, input.bytes);
        let total = layout.total;
        let region = input.region(&layout);
        if region.start < total {
            let n = bytes
                .len()
                .min((total - region.start).min(region.size()) as usize);
            mem.write(region.start, &bytes[..n]).unwrap();
        }
        let read = read_guest_message(&mem, region, len, size);
        match &read {
            Ok(message) => {
                assert_eq!(message.len(), len as usize);
                let decoded = decode_guest_message(port, message);
                assert!(
                    decoded.is_ok() || !must_accept(&name),
                    "read_guest_message/{name}: {decoded:?}"
                );
            }
            Err(Error::Protocol { .. } | Error::OutOfBounds { .. }) => {
                assert!(!must_accept(&name), "read_guest_message/{name}: {read:?}")
            }
            Err(other) => panic!("read_guest_message/{name}: {other:?}"),
        }
    }
}

#[test]
fn elf_inputs_replay() {
    let inputs = inputs("elf_load");
    assert!(!inputs.is_empty());
    for (name, data) in inputs {
        match ElfImage::parse(&data) {
            Ok(image) => {
                let span = image.span();
                assert!(span <= 16 << 20, "elf_load/{name}: span {span:#x}");
                let mut mem = vec![0u8; (IMAGE_BASE + span) as usize];
                let loaded = image.load(&mut mem, IMAGE_BASE);
                assert!(
                    loaded.is_ok() || !must_accept(&name),
                    "elf_load/{name}: {loaded:?}"
                );
            }
            Err(e) => assert!(!must_accept(&name), "elf_load/{name}: {e}"),
        }
    }
}

/// The `e2e_raw` inputs through a real `fuzz` guest: every answer is typed, and the sandbox
/// keeps working after a restore.
#[test]
fn e2e_raw_inputs_replay() {
    let guest = hyperlight_testing::guest_path("fuzz");
    let mut sandbox = Sandbox::builder(guest)
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .build()
        .unwrap();
    let inputs = inputs("e2e_raw");
    assert!(!inputs.is_empty());
    for (name, data) in inputs {
        let (function, args) = input::RawInput::parse(&data).call();
        let result = sandbox.call_value(function, args, ValueType::Void);
        assert!(
            !matches!(result, Err(Error::Poisoned { .. } | Error::ThreadGone)),
            "e2e_raw/{name}: {result:?}"
        );
        if must_accept(&name) {
            assert!(result.is_ok(), "e2e_raw/{name}: {result:?}");
        }
        // Whatever happened, a restored sandbox works.
        sandbox.restore().unwrap();
        let echo = sandbox
            .call_value("echo", vec![Value::Bytes(vec![1, 2, 3])], ValueType::Bytes)
            .unwrap();
        assert_eq!(echo, Value::Bytes(vec![1, 2, 3]), "e2e_raw/{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds

fn call(name: &str, args: Vec<Value>, return_type: ValueType) -> Vec<u8> {
    wire::encode_function_call(&FunctionCall {
        name: name.into(),
        args,
        return_type,
    })
}

fn error(code: ErrorCode, message: &str) -> GuestError {
    GuestError {
        code,
        message: message.into(),
    }
}

fn log(level: LogLevel, message: &str) -> Vec<u8> {
    wire::encode_log_record(&LogRecord {
        level,
        message: message.into(),
        target: "simple".into(),
        file: "guests/simple/src/main.rs".into(),
        line: 42,
    })
}

fn every_type() -> Vec<Value> {
    vec![
        Value::I32(-7),
        Value::U32(7),
        Value::I64(-1 << 40),
        Value::U64(1 << 40),
        Value::F32(1.5),
        Value::F64(-2.25),
        Value::Bool(true),
        Value::String("hi".into()),
        Value::Bytes(vec![1, 2, 255]),
    ]
}

/// A minimal static-PIE ELF the loader accepts: an R+X segment (headers and entry point) and an
/// RW one holding the dynamic section, one relocation table and its target, plus bss.
fn tiny_elf(relr: bool) -> Vec<u8> {
    let mut f = vec![0u8; 0x190];
    let put =
        |f: &mut Vec<u8>, at: usize, bytes: &[u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
    let u16le = |v: u16| v.to_le_bytes();
    let u32le = |v: u32| v.to_le_bytes();
    let u64le = |v: u64| v.to_le_bytes();
    put(&mut f, 0, b"\x7fELF\x02\x01\x01");
    put(&mut f, 16, &u16le(3)); // ET_DYN
    put(&mut f, 18, &u16le(62)); // EM_X86_64
    put(&mut f, 20, &u32le(1));
    put(&mut f, 24, &u64le(0x100)); // entry
    put(&mut f, 32, &u64le(0x40)); // phoff
    put(&mut f, 52, &u16le(64));
    put(&mut f, 54, &u16le(56));
    put(&mut f, 56, &u16le(3));
    // type, flags, offset, vaddr, paddr, filesz, memsz, align
    let phdrs: [(u32, u32, u64, u64, u64, u64, u64); 3] = [
        (1, 5, 0, 0, 0x110, 0x110, 0x1000),
        (1, 6, 0x110, 0x1110, 0x80, 0x200, 0x1000),
        (2, 6, 0x110, 0x1110, 0x50, 0x50, 8),
    ];
    for (i, (ty, flags, off, vaddr, filesz, memsz, align)) in phdrs.into_iter().enumerate() {
        let at = 0x40 + 56 * i;
        put(&mut f, at, &u32le(ty));
        put(&mut f, at + 4, &u32le(flags));
        put(&mut f, at + 8, &u64le(off));
        put(&mut f, at + 16, &u64le(vaddr));
        put(&mut f, at + 24, &u64le(vaddr));
        put(&mut f, at + 32, &u64le(filesz));
        put(&mut f, at + 40, &u64le(memsz));
        put(&mut f, at + 48, &u64le(align));
    }
    put(&mut f, 0x100, &[0x0f, 0x0b]); // ud2 at the entry point
    let dynamic: [(u64, u64); 5] = if relr {
        // DT_RELR, DT_RELRSZ, DT_RELRENT
        [(36, 0x1160), (35, 16), (37, 8), (0, 0), (0, 0)]
    } else {
        // DT_RELA, DT_RELASZ, DT_RELAENT, DT_RELACOUNT
        [(7, 0x1160), (8, 24), (9, 24), (0x6fff_fff9, 1), (0, 0)]
    };
    for (i, (tag, val)) in dynamic.into_iter().enumerate() {
        put(&mut f, 0x110 + 16 * i, &u64le(tag));
        put(&mut f, 0x118 + 16 * i, &u64le(val));
    }
    if relr {
        // An address (0x1180), then a bitmap relocating the next word (0x1188).
        put(&mut f, 0x160, &u64le(0x1180));
        put(&mut f, 0x168, &u64le(0b11));
    } else {
        // r_offset, r_info (R_X86_64_RELATIVE), r_addend.
        put(&mut f, 0x160, &u64le(0x1180));
        put(&mut f, 0x168, &u64le(8));
        put(&mut f, 0x170, &u64le(0x100));
    }
    f
}

/// `len | size | region | shift | port | bytes` for `read_guest_message`.
fn read_input(len: u32, size: u8, region: u8, shift: u32, port: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend([size, region]);
    v.extend(shift.to_le_bytes());
    v.push(port);
    v.extend(bytes);
    v
}

/// `port | mode | len | bytes` for `e2e_raw`.
fn raw_input(port: u8, mode: u8, len: u32, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![port, mode];
    v.extend(len.to_le_bytes());
    v.extend(bytes);
    v
}

/// Every seed: (target, name, bytes). Port bytes: 0 host call, 1 log, 2 done, 3 abort, 12 0x100.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let add = call(
        "host_add",
        vec![Value::I32(40), Value::I32(2)],
        ValueType::I32,
    );
    let info = log(LogLevel::Info, "hello from the guest");
    let void = wire::encode_function_call_result(&Ok(Value::Void));
    let panic = wire::encode_guest_error(&error(ErrorCode::Panic, "panicked at main.rs:1:1"));
    let mut seeds = vec![
        (
            "decode_function_call",
            "seed-no-args",
            call("nop", vec![], ValueType::Void),
        ),
        (
            "decode_function_call",
            "seed-every-type",
            call("mixed", every_type(), ValueType::String),
        ),
        (
            "decode_function_call",
            "seed-16-args",
            call("sum16", vec![Value::I64(1); 16], ValueType::I64),
        ),
        (
            "decode_function_call",
            "seed-bad-17-args",
            call("sum16", vec![Value::I64(1); 17], ValueType::I64),
        ),
        (
            "decode_function_call",
            "seed-bad-void-arg",
            call("f", vec![Value::Void], ValueType::I32),
        ),
        ("decode_function_call", "seed-bad-identifier", void.clone()),
        ("decode_function_call_result", "seed-void", void.clone()),
        (
            "decode_function_call_result",
            "seed-error",
            wire::encode_function_call_result(&Err(error(
                ErrorCode::UnknownFunction,
                "no such function",
            ))),
        ),
        ("decode_guest_error", "seed-panic", panic.clone()),
        (
            "decode_guest_error",
            "seed-oom",
            wire::encode_guest_error(&error(
                ErrorCode::OutOfMemory,
                "allocation of 65536 bytes failed",
            )),
        ),
        ("decode_log_record", "seed-info", info.clone()),
        ("decode_log_record", "seed-error", log(LogLevel::Error, "")),
        (
            "guest_message",
            "seed-host-call",
            [&[0u8][..], &add].concat(),
        ),
        ("guest_message", "seed-log", [&[1u8][..], &info].concat()),
        ("guest_message", "seed-done", [&[2u8][..], &void].concat()),
        ("guest_message", "seed-abort", [&[3u8][..], &panic].concat()),
        (
            "guest_message",
            "seed-bad-port-0x100",
            [&[12u8][..], &add].concat(),
        ),
        (
            "read_guest_message",
            "seed-host-call",
            read_input(add.len() as u32, 4, 0, 0, 0, &add),
        ),
        (
            "read_guest_message",
            "seed-log",
            read_input(info.len() as u32, 4, 0, 0, 1, &info),
        ),
        (
            "read_guest_message",
            "seed-done",
            read_input(void.len() as u32, 4, 0, 0, 2, &void),
        ),
        (
            "read_guest_message",
            "seed-abort",
            read_input(panic.len() as u32, 4, 0, 0, 3, &panic),
        ),
        (
            "read_guest_message",
            "seed-bad-width",
            read_input(void.len() as u32, 1, 0, 0, 2, &void),
        ),
        (
            "read_guest_message",
            "seed-bad-too-long",
            read_input(u32::MAX, 4, 0, 0, 2, &void),
        ),
        (
            "read_guest_message",
            "seed-bad-straddle",
            read_input(void.len() as u32, 4, 5, 8, 2, &void),
        ),
        ("elf_load", "seed-rela", tiny_elf(false)),
        ("elf_load", "seed-relr", tiny_elf(true)),
        (
            "elf_load",
            "seed-bad-truncated",
            tiny_elf(false)[..0x100].to_vec(),
        ),
        ("e2e_raw", "seed-host-call", raw_input(0, 0, 0, &add)),
        ("e2e_raw", "seed-log", raw_input(1, 0, 0, &info)),
        ("e2e_raw", "seed-done-void", raw_input(2, 0, 0, &void)),
        ("e2e_raw", "seed-bad-abort", raw_input(3, 0, 0, &panic)),
        (
            "e2e_raw",
            "seed-bad-garbage",
            raw_input(0, 0, 0, b"HLFC garbage, not a flatbuffer"),
        ),
        (
            "e2e_raw",
            "seed-bad-width-1",
            raw_input(2, 3, void.len() as u32, &void),
        ),
        ("e2e_raw", "seed-bad-len", raw_input(1, 2, 1 << 20, &info)),
    ];
    // `e2e_calls` reads its operations with `arbitrary`: any bytes are an input.
    seeds.push(("e2e_calls", "seed-zeros", vec![0; 64]));
    seeds.push(("e2e_calls", "seed-ramp", (0..=255).collect()));
    seeds
}

/// Writes the seeds into `fuzz/corpus/<target>/` (run by hand after a schema change).
#[test]
#[ignore = "writes the seed files; run by hand"]
fn write_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn the_port_bytes_of_the_seeds_mean_what_they_say() {
    use input::port_from_byte;
    assert_eq!(port_from_byte(0), PORT_HOST_CALL);
    assert_eq!(port_from_byte(1), PORT_LOG);
    assert_eq!(port_from_byte(2), PORT_DONE);
    assert_eq!(port_from_byte(3), PORT_ABORT);
    assert_eq!(port_from_byte(12), 0x100);
}

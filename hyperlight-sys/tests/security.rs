//! The security claims of `docs/security.md`, one test per claim, each attacking it from the
//! `hostile` guest (`guest/guests/hostile`) on real KVM.
//!
//! Every attack must end with a typed error (never a panic, hang or crash of the host), leave the
//! attacked sandbox poisoned (restorable) or usable as documented, and leave a bystander sandbox,
//! built before the attack in the same process, answering correctly with its state intact.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyperlight_sys::schema::abi::{
    BootInfo, BOOT_INFO_MAGIC, PORT_ABORT, PORT_DONE, PORT_HOST_CALL, PORT_LOG, PORT_PARK,
};
use hyperlight_sys::schema::{
    wire, ErrorCode, FunctionCall, LogLevel, LogRecord, Value, ValueType,
};
use hyperlight_sys::seccomp::thread_seccomp_mode;
use hyperlight_sys::{Access, Error, Sandbox, SandboxBuilder, SandboxConfig, SeccompPolicy};

const PAGE: u64 = 4096;

fn hostile() -> SandboxBuilder {
    Sandbox::builder(hyperlight_testing::guest_path("hostile"))
}

/// A sandbox of another guest, built before an attack: it must keep answering, with its state.
struct Bystander {
    sandbox: Sandbox,
    count: u64,
}

impl Bystander {
    fn new() -> Self {
        let mut sandbox = common::simple().build().unwrap();
        let count = sandbox.call::<u64>("counter", ()).unwrap();
        Bystander { sandbox, count }
    }

    fn check(&mut self) {
        self.count += 1;
        assert_eq!(self.sandbox.call::<u64>("counter", ()).unwrap(), self.count);
        let text = format!("still here {}", self.count);
        assert_eq!(
            self.sandbox
                .call::<String>("echo_string", (text.clone(),))
                .unwrap(),
            text
        );
    }
}

/// The hostile guest's memory layout, from its own `BootInfo`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    heap: u64,
    heap_size: u64,
    input: u64,

    output: u64,
    output_size: u64,
    stack: u64,
    stack_size: u64,
    image: u64,
}

impl Layout {
    fn of(sb: &mut Sandbox) -> Self {
        let bytes: Vec<u8> = sb.call("boot_info", ()).unwrap();
        let info = BootInfo::from_le_bytes(bytes.as_slice().try_into().unwrap());
        assert_eq!(info.magic, BOOT_INFO_MAGIC);
        Layout {
            heap: info.heap_base,
            heap_size: info.heap_size,
            input: info.input_base,

            output: info.output_base,
            output_size: info.output_size,
            stack: info.stack_base,
            stack_size: info.stack_size,
            image: info.image_base,
        }
    }

    /// The page tables: one guard page after the output buffer (docs/abi.md).
    fn page_tables(&self) -> u64 {
        self.output + self.output_size + PAGE
    }
}

/// Checks `result` is a fatal typed error matching `expected`, that the sandbox is poisoned,
/// that it restores and works again, and that the bystander is unaffected.
#[track_caller]
fn fatal<T: std::fmt::Debug>(
    sb: &mut Sandbox,
    bystander: &mut Bystander,
    what: &str,
    result: Result<T, Error>,
    expected: impl Fn(&Error) -> bool,
) {
    let err = result.expect_err(what);
    assert!(expected(&err), "{what}: unexpected error {err:?}");
    assert!(err.is_fatal(), "{what}: {err:?} should poison");
    assert!(
        matches!(sb.call::<u64>("echo", (1u64,)), Err(Error::Poisoned { .. })),
        "{what}: not poisoned"
    );
    sb.restore().unwrap();
    assert_eq!(sb.call::<u64>("echo", (7u64,)).unwrap(), 7, "{what}");
    bystander.check();
}

fn violation(addr: u64, access: Access) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::MemoryViolation { addr: a, access: x, .. } if *a == addr && *x == access)
}

fn gp(e: &Error) -> bool {
    matches!(e, Error::CpuException { vector: 13, .. })
}

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn isolation_no_access_outside_mapped_memory() {
    let mut by = Bystander::new();
    let mut sb = hostile().build().unwrap();
    let l = Layout::of(&mut sb);
    let non_canonical = 0x8000_0000_0000u64;
    let top = 0xffff_ffff_ffff_f000u64;
    // Unmapped: guard pages, far away, the top of each half of the address space.
    let unmapped = [
        ("null page", 0),
        ("gap below the image", 0x7000),
        ("guard between image and heap", l.heap - PAGE),
        ("guard above the stack", l.stack + l.stack_size),
        ("guard after the output buffer", l.output + l.output_size),
        ("page tables", l.page_tables()),
        ("1 GiB", 1 << 30),
        ("far", 0x40_0000_0000),
        ("top of the lower half", 0x7fff_ffff_f000),
        ("top of the address space", top),
    ];
    for (what, addr) in unmapped {
        let r = sb.call::<u64>("read_addr", (addr,));
        fatal(&mut sb, &mut by, what, r, violation(addr, Access::Read));
        let r = sb.call::<()>("write_addr", (addr, 0x4141u64));
        fatal(&mut sb, &mut by, what, r, violation(addr, Access::Write));
        let r = sb.call::<()>("exec_addr", (addr,));
        fatal(&mut sb, &mut by, what, r, violation(addr, Access::Execute));
    }
    // The guard page below the stack is reported as what it means.
    let guard = l.stack - PAGE;
    let r = sb.call::<u64>("read_addr", (guard,));
    fatal(
        &mut sb,
        &mut by,
        "stack guard",
        r,
        |e| matches!(e, Error::StackOverflow { addr, .. } if *addr == guard),
    );
    // Non-canonical addresses raise #GP, not #PF.
    let r = sb.call::<u64>("read_addr", (non_canonical,));
    fatal(&mut sb, &mut by, "non-canonical read", r, gp);
    let r = sb.call::<()>("write_addr", (non_canonical, 1u64));
    fatal(&mut sb, &mut by, "non-canonical write", r, gp);
    let r = sb.call::<()>("exec_addr", (non_canonical,));
    fatal(&mut sb, &mut by, "non-canonical execute", r, gp);
    // Supervisor pages (GDT + TSS, IDT, exception stubs, ring-0 stack): no ring-3 access.
    for addr in [0x1000u64, 0x2000, 0x3000, 0x4000] {
        let r = sb.call::<u64>("read_addr", (addr,));
        fatal(
            &mut sb,
            &mut by,
            "supervisor read",
            r,
            violation(addr, Access::Read),
        );
        let r = sb.call::<()>("write_addr", (addr, 0u64));
        fatal(
            &mut sb,
            &mut by,
            "supervisor write",
            r,
            violation(addr, Access::Write),
        );
        let r = sb.call::<()>("exec_addr", (addr,));
        fatal(
            &mut sb,
            &mut by,
            "supervisor execute",
            r,
            violation(addr, Access::Execute),
        );
    }
    // Read-only pages: boot info, the input buffer, the image's first (R) segment, the code.
    for (what, addr) in [
        ("boot info", 0x5000),
        ("input buffer", l.input),
        ("image headers", l.image),
    ] {
        let r = sb.call::<()>("write_addr", (addr, 0u64));
        fatal(&mut sb, &mut by, what, r, violation(addr, Access::Write));
    }
    let r = sb.call::<()>("write_code", ());
    fatal(&mut sb, &mut by, "own code", r, |e| {
        matches!(
            e,
            Error::MemoryViolation {
                access: Access::Write,
                ..
            }
        )
    });
    // Data is not executable (NX): heap, stack, buffers, boot info.
    let r = sb.call::<()>("exec_heap", ());
    fatal(&mut sb, &mut by, "heap", r, |e| {
        matches!(e, Error::MemoryViolation { access: Access::Execute, addr, .. }
            if (l.heap..l.heap + l.heap_size).contains(addr))
    });
    for (what, addr) in [
        ("stack", l.stack + l.stack_size - PAGE),
        ("input buffer", l.input),
        ("output buffer", l.output),
        ("boot info", 0x5000),
    ] {
        let r = sb.call::<()>("exec_addr", (addr,));
        fatal(&mut sb, &mut by, what, r, violation(addr, Access::Execute));
    }
}

#[test]
fn no_memory_growth_no_devices() {
    let mut by = Bystander::new();
    let mut sb = hostile().build().unwrap();
    let l = Layout::of(&mut sb);
    // Ports outside the sixteen protocol ports: denied by the TSS I/O bitmap (#GP), any width,
    // both directions. Legacy devices, PCI configuration, the debug port, the last port.
    for port in [
        0u32, 0x20, 0x60, 0x70, 0x80, 0xcf8, 0xcfc, 0x3f8, 0x402, 0x510, 0xffff,
    ] {
        for width in [1u32, 2, 4] {
            let r = sb.call::<()>("port_out", (port, width, 0x41u32));
            fatal(&mut sb, &mut by, &format!("out {port:#x}/{width}"), r, gp);
            let r = sb.call::<u32>("port_in", (port, width));
            fatal(&mut sb, &mut by, &format!("in {port:#x}/{width}"), r, gp);
        }
    }
    // Inside the protocol range: no `in`, no unknown port, no narrow or string `out`. (A 4-byte
    // access checks four ports: at 0x10f it reaches 0x112, outside the range: #GP.)
    for (port, width) in [(0x100u32, 4u32), (0x101, 4), (0x10a, 2), (0x10f, 1)] {
        let r = sb.call::<u32>("port_in", (port, width));
        fatal(&mut sb, &mut by, "in protocol port", r, |e| {
            matches!(e, Error::UnexpectedExit { .. })
        });
    }
    for (port, width) in [(0x100u32, 4u32), (0x107, 4), (0x10a, 2), (0x10f, 1)] {
        let r = sb.call::<()>("port_out", (port, width, 0u32));
        fatal(&mut sb, &mut by, "unknown protocol port", r, |e| {
            matches!(e, Error::UnexpectedExit { .. })
        });
    }
    // Parking (the doorbell's `PORT_PARK`) in the middle of a call breaks the protocol.
    let r = sb.call::<()>("port_out", (u32::from(PORT_PARK), 4u32, 0u32));
    fatal(&mut sb, &mut by, "park during a call", r, |e| {
        matches!(e, Error::Protocol { .. })
    });
    for width in [2u32, 4] {
        let r = sb.call::<u32>("port_in", (0x10fu32, width));
        fatal(&mut sb, &mut by, "in across the range end", r, gp);
        let r = sb.call::<()>("port_out", (0x10fu32, width, 0u32));
        fatal(&mut sb, &mut by, "out across the range end", r, gp);
    }
    for port in [PORT_HOST_CALL, PORT_LOG, PORT_DONE, PORT_ABORT] {
        for width in [1u32, 2] {
            let r = sb.call::<()>("port_out", (u32::from(port), width, 0u32));
            fatal(&mut sb, &mut by, "narrow out", r, |e| {
                matches!(e, Error::Protocol { .. })
            });
        }
        let r = sb.call::<()>("outs", (u32::from(port),));
        fatal(&mut sb, &mut by, "string out", r, |e| {
            matches!(e, Error::Protocol { .. } | Error::UnexpectedExit { .. })
        });
    }
    // MMIO: no guest page maps a guest-physical address without memory behind it, so the
    // classic device windows are plain page faults, never an MMIO exit.
    for addr in [
        0xfee0_0000u64, // local APIC
        0xfec0_0000,    // I/O APIC
        0xfed0_0000,    // HPET
        0xe000_0000,    // PCIe ECAM
        0xa_0000,       // VGA (below 1 MiB, not inside the image or heap of this guest)
    ] {
        if (l.image..l.page_tables() + PAGE).contains(&addr) {
            continue; // guest RAM in this layout, not a device window
        }
        let r = sb.call::<u64>("read_addr", (addr,));
        fatal(
            &mut sb,
            &mut by,
            "MMIO read",
            r,
            violation(addr, Access::Read),
        );
        let r = sb.call::<()>("write_addr", (addr, 1u64));
        fatal(
            &mut sb,
            &mut by,
            "MMIO write",
            r,
            violation(addr, Access::Write),
        );
    }
    // Its own page tables: not mapped at any linear address, and CR3 cannot be written.
    let pt = l.page_tables();
    let r = sb.call::<u64>("read_addr", (pt,));
    fatal(
        &mut sb,
        &mut by,
        "read PML4",
        r,
        violation(pt, Access::Read),
    );
    let r = sb.call::<()>("write_addr", (pt, 0x87u64));
    fatal(
        &mut sb,
        &mut by,
        "write PML4",
        r,
        violation(pt, Access::Write),
    );
    // Privileged and trapping instructions: hlt, cli, sti, rdmsr, wrmsr, mov cr3 (both ways),
    // mov cr0, lgdt, lidt, invlpg, int3, int 0x80, syscall, sysenter, ud2, wbinvd, clts, ltr,
    // mov dr7.
    for which in 0..20u32 {
        let r = sb.call::<()>("insn", (which,));
        fatal(
            &mut sb,
            &mut by,
            &format!("insn {which}"),
            r,
            |e| match which {
                15 => matches!(e, Error::CpuException { vector: 6, .. }),
                // `syscall` enters the ring-0 stub LSTAR points at, which reports it (the same on
                // hardware KVM and on PVM, where SCE clear would not raise #UD).
                13 => matches!(e, Error::SyscallInstruction),
                // Software interrupts: the IDT's gates have DPL 0 and only 32 entries, so
                // `int3` and `int 0x80` should raise #GP; under (nested) KVM they may arrive as
                // #BP or #UD instead. Every vector lands in a ring-0 stub that ends the call.
                11 | 12 | 14 => matches!(
                    e,
                    Error::CpuException {
                        vector: 3 | 6 | 13,
                        ..
                    }
                ),
                _ => gp(e),
            },
        );
    }
    // `hlt` at odd times: right after a host call returned, right after a log record.
    let mut sb = hostile().host_fn("host_u64", || 7u64).build().unwrap();
    let r = sb.call::<()>("hlt_after_host_call", ("host_u64".to_string(),));
    fatal(&mut sb, &mut by, "hlt after a host call", r, gp);
    let r = sb.call::<()>("hlt_after_log", ());
    fatal(&mut sb, &mut by, "hlt after a log", r, gp);
    // ... and in the guest's init: the sandbox is never built.
    let err = Sandbox::builder(hyperlight_testing::guest_path("hostile_init_hlt"))
        .build()
        .unwrap_err();
    assert!(gp(&err), "hlt in init: {err:?}");
    by.check();
    // No memory growth: a guest that allocates without end hits its own heap limit; the host
    // maps nothing more for it.
    let before = rss_anon_kib();
    let r = sb.call::<u64>("exhaust_heap", ());
    fatal(&mut sb, &mut by, "exhaust heap", r, |e| {
        matches!(e, Error::GuestOutOfMemory { .. })
    });
    let grown = rss_anon_kib().saturating_sub(before);
    assert!(
        grown < 16 << 10,
        "host anonymous memory grew by {grown} KiB"
    );
}

#[test]
fn only_registered_host_functions() {
    let mut by = Bystander::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let config = SandboxConfig {
        output_size: 128 << 10,
        ..SandboxConfig::default()
    };
    let mut sb = hostile()
        .config(config)
        .host_fn("host_one", move |x: i32| {
            counter.fetch_add(1, Ordering::SeqCst);
            x + 1
        })
        .build()
        .unwrap();
    let huge = "h".repeat(100_000);
    let huge_nuls = "\0".repeat(120_000);
    let cases: &[(&str, &str)] = &[
        ("unregistered", "not_registered"),
        ("empty", ""),
        ("case", "HOST_ONE"),
        ("leading space", " host_one"),
        ("trailing space", "host_one "),
        ("trailing NUL", "host_one\0"),
        ("leading NUL", "\0host_one"),
        ("NUL inside", "host\0_one"),
        ("NUL and more", "host_one\0evil"),
        ("only NULs", "\0\0\0"),
        ("huge", &huge),
        ("huge NULs", &huge_nuls),
    ];
    for (what, name) in cases {
        let start = Instant::now();
        let outcome: String = sb.call("call_host_named", (name.to_string(),)).unwrap();
        assert!(
            outcome.starts_with("err:UnknownFunction:"),
            "{what}: {}",
            &outcome[..outcome.len().min(200)]
        );
        // The error message does not echo a huge name back in full.
        assert!(outcome.len() < 1024, "{what}: {} bytes", outcome.len());
        assert!(start.elapsed() < Duration::from_secs(5), "{what}");
    }
    // A name larger than the output buffer never leaves the guest.
    // (The guest library's own error message quotes the name, so the guest's result does not
    // fit either: the guest call fails, without poisoning.)
    let too_big = sb.call::<String>("call_host_named", ("x".repeat(200_000),));
    assert!(
        matches!(
            &too_big,
            Err(Error::GuestCall {
                code: ErrorCode::MalformedMessage,
                ..
            })
        ),
        "{:?}",
        too_big.map(|s| s.len())
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a rejected name ran a host function"
    );
    // None of that poisoned the sandbox; the registered name works.
    let ok: String = sb
        .call("call_host_named", ("host_one".to_string(),))
        .unwrap();
    assert_eq!(ok, "ok:2");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    by.check();
}

#[test]
fn no_host_call_before_a_guest_function_runs() {
    let mut by = Bystander::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut sb = Sandbox::builder(hyperlight_testing::guest_path("hostile_init_calls"))
        .host_fn("host_count", move || {
            counter.fetch_add(1, Ordering::SeqCst) as u64 + 1
        })
        .build()
        .unwrap();
    let results: String = sb.call("init_results", ()).unwrap();
    assert_eq!(
        results,
        "err:HostCallNotAllowed;err:HostCallNotAllowed;err:HostCallNotAllowed;\
         err:HostCallNotAllowed;raw-sent",
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a host function ran during init"
    );
    // Once a guest function runs, the host call is allowed.
    assert_eq!(sb.call::<u64>("call_host_count", ()).unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A restore re-enters the post-init state; init's refusals do not run anything either.
    sb.restore().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    by.check();
}

fn call_host_dyn(
    sb: &mut Sandbox,
    name: &str,
    args: Vec<Value>,
    ret: ValueType,
) -> Result<Result<Value, ErrorCode>, Error> {
    let call = wire::encode_function_call(&FunctionCall {
        name: name.to_string(),
        args,
        return_type: ret,
    });
    let reply: Vec<u8> = sb.call("call_host_dyn", (call,))?;
    Ok(wire::decode_function_call_result(&reply)
        .unwrap()
        .map_err(|e| e.code))
}

#[test]
fn arguments_as_the_host_declared() {
    let mut by = Bystander::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut sb = hostile()
        .host_fn("host_add", move |a: i32, b: i32| {
            counter.fetch_add(1, Ordering::SeqCst);
            a.wrapping_add(b)
        })
        .build()
        .unwrap();
    use Value as V;
    let i = |x| V::I32(x);
    let cases: Vec<(&str, Vec<Value>, ValueType, ErrorCode)> = vec![
        ("no args", vec![], ValueType::I32, ErrorCode::WrongArity),
        ("one arg", vec![i(1)], ValueType::I32, ErrorCode::WrongArity),
        (
            "extra arg",
            vec![i(1), i(2), i(3)],
            ValueType::I32,
            ErrorCode::WrongArity,
        ),
        (
            "sixteen args",
            vec![i(1); 16],
            ValueType::I32,
            ErrorCode::WrongArity,
        ),
        (
            "bool",
            vec![i(1), V::Bool(true)],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "u32",
            vec![V::U32(1), V::U32(2)],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "i64",
            vec![V::I64(1), V::I64(2)],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "f32",
            vec![V::F32(1.0), i(2)],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "f64",
            vec![i(1), V::F64(2.0)],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "string",
            vec![V::String("1".into()), i(2)],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "bytes",
            vec![i(1), V::Bytes(vec![2; 4])],
            ValueType::I32,
            ErrorCode::WrongArgumentType,
        ),
        (
            "return string",
            vec![i(1), i(2)],
            ValueType::String,
            ErrorCode::WrongReturnType,
        ),
        (
            "return void",
            vec![i(1), i(2)],
            ValueType::Void,
            ErrorCode::WrongReturnType,
        ),
        (
            "return u64",
            vec![i(1), i(2)],
            ValueType::U64,
            ErrorCode::WrongReturnType,
        ),
    ];
    for (what, args, ret, code) in cases {
        let got = call_host_dyn(&mut sb, "host_add", args, ret).unwrap();
        assert_eq!(got, Err(code), "{what}");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a mistyped call ran the host function"
    );
    // Off the schema's rules: a void argument, more than 16 arguments. The host's decoder
    // refuses the message itself: the guest broke the protocol, the sandbox is poisoned.
    for (what, args) in [
        ("void argument", vec![i(1), V::Void]),
        ("seventeen args", vec![i(1); 17]),
    ] {
        let call = wire::encode_function_call(&FunctionCall {
            name: "host_add".into(),
            args,
            return_type: ValueType::I32,
        });
        let r = sb.call::<()>("raw", (u32::from(PORT_HOST_CALL), call));
        fatal(&mut sb, &mut by, what, r, |e| {
            matches!(e, Error::Malformed(_))
        });
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let ok = call_host_dyn(&mut sb, "host_add", vec![i(40), i(2)], ValueType::I32).unwrap();
    assert_eq!(ok, Ok(V::I32(42)));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// The offset of `marker` in `bytes`.
fn find(bytes: &[u8], marker: &[u8]) -> usize {
    bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker in message")
}

/// A `FunctionCall` whose `n` parameters all point at one shared `Parameter` table (whose
/// value is a string of `len` bytes): a small buffer that would expand to `n` copies.
fn shared_parameter_call(n: usize, len: usize) -> Vec<u8> {
    use flatbuffers::{FlatBufferBuilder, WIPOffset};
    let mut fbb = FlatBufferBuilder::new();
    let name = fbb.create_string("host_add");
    let text = fbb.create_string(&"s".repeat(len));
    let t = fbb.start_table();
    fbb.push_slot_always::<WIPOffset<_>>(4, text); // StringValue.value
    let value = fbb.end_table(t);
    let t = fbb.start_table();
    fbb.push_slot_always::<WIPOffset<_>>(6, value); // Parameter.value
    fbb.push_slot_always::<u8>(4, 9); // Parameter.value_type = StringValue
    let param = fbb.end_table(t);
    let params = fbb.create_vector(&vec![param; n]);
    let t = fbb.start_table();
    fbb.push_slot_always::<WIPOffset<_>>(4, name); // FunctionCall.name
    fbb.push_slot_always::<WIPOffset<_>>(6, params); // FunctionCall.parameters
    fbb.push_slot_always::<u8>(8, 0); // FunctionCall.return_type = I32
    let root = fbb.end_table(t);
    fbb.finish(root, Some(wire::FUNCTION_CALL_IDENTIFIER));
    fbb.finished_data().to_vec()
}

#[test]
fn host_accepts_nothing_off_schema() {
    let mut by = Bystander::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut sb = hostile()
        .host_fn("host_add", move |a: i32, b: i32| {
            counter.fetch_add(1, Ordering::SeqCst);
            a.wrapping_add(b)
        })
        .build()
        .unwrap();
    let l = Layout::of(&mut sb);
    // The builder above is right: two shared parameters make a valid (if mistyped) call.
    let small = wire::decode_function_call(&shared_parameter_call(2, 3)).unwrap();
    assert_eq!(small.args, vec![Value::String("sss".into()); 2]);

    let valid_call = wire::encode_function_call(&FunctionCall {
        name: "NAMEMARKER".into(),
        args: vec![Value::Bytes(b"BYTESMARKER".to_vec())],
        return_type: ValueType::I32,
    });
    let valid_log = wire::encode_log_record(&LogRecord {
        level: LogLevel::Info,
        message: "MESSAGEMARK".into(),
        target: "t".into(),
        file: "f".into(),
        line: 1,
    });
    let valid_result = wire::encode_function_call_result(&Ok(Value::String("RESULT".into())));
    let mut garbage = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        garbage.push(x as u8);
    }
    let patched = |base: &[u8], at: usize, with: &[u8]| {
        let mut m = base.to_vec();
        m[at..at + with.len()].copy_from_slice(with);
        m
    };
    let name_at = find(&valid_call, b"NAMEMARKER");
    let bytes_at = find(&valid_call, b"BYTESMARKER");
    assert_eq!(valid_call[bytes_at - 4..bytes_at], 11u32.to_le_bytes());
    let root = u32::from_le_bytes(valid_call[..4].try_into().unwrap()) as usize;
    let messages: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", garbage.clone()),
        ("garbage with the right identifier", {
            let mut g = garbage[..256].to_vec();
            g[4..8].copy_from_slice(b"HLFC");
            g
        }),
        (
            "truncated call",
            valid_call[..valid_call.len() / 2].to_vec(),
        ),
        ("truncated log", valid_log[..valid_log.len() / 2].to_vec()),
        (
            "truncated result",
            valid_result[..valid_result.len() / 2].to_vec(),
        ),
        (
            "root offset outside",
            patched(&valid_call, 0, &u32::MAX.to_le_bytes()),
        ),
        ("root offset just past the end", {
            let end = valid_call.len() as u32;
            patched(&valid_call, 0, &end.to_le_bytes())
        }),
        (
            "vtable offset outside",
            patched(&valid_call, root, &i32::MIN.to_le_bytes()),
        ),
        (
            "invalid UTF-8 in the name",
            patched(&valid_call, name_at, &[0xff; 10]),
        ),
        (
            "string claiming 2^32 bytes",
            patched(&valid_call, name_at - 4, &u32::MAX.to_le_bytes()),
        ),
        (
            "vector claiming 2^32 elements",
            patched(&valid_call, bytes_at - 4, &u32::MAX.to_le_bytes()),
        ),
        (
            "one table shared by 10000 parameters",
            shared_parameter_call(10_000, 8),
        ),
        (
            "a 64 KiB string shared by 3 parameters",
            shared_parameter_call(3, 64 << 10),
        ),
        ("a message of another type", valid_log.clone()),
    ];
    let before = rss_anon_kib();
    for port in [PORT_HOST_CALL, PORT_LOG, PORT_DONE, PORT_ABORT] {
        for (what, message) in &messages {
            let what = format!("{what} on port {port:#x}");
            if port == PORT_LOG && message == &valid_log {
                continue; // that one is on-schema for this port
            }
            let start = Instant::now();
            let r = sb.call::<()>("raw", (u32::from(port), message.clone()));
            let took = start.elapsed();
            fatal(&mut sb, &mut by, &what, r, |e| {
                matches!(e, Error::Malformed(_))
            });
            assert!(took < Duration::from_secs(2), "{what}: {took:?}");
        }
        // Lengths beyond the output buffer: refused before anything is read.
        for len in [l.output_size + 1, l.output_size + PAGE, u64::from(u32::MAX)] {
            let r = sb.call::<()>("out_len", (u32::from(port), len as u32));
            fatal(
                &mut sb,
                &mut by,
                &format!("length {len} on {port:#x}"),
                r,
                |e| matches!(e, Error::Protocol { .. }),
            );
        }
    }
    let grown = rss_anon_kib().saturating_sub(before);
    assert!(
        grown < 32 << 10,
        "host anonymous memory grew by {grown} KiB"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a malformed call ran a host function"
    );
}

#[test]
fn two_sandboxes_cannot_read_each_other() {
    let mut by = Bystander::new();
    let mut a = hostile().build().unwrap();
    let mut b = hostile().build().unwrap();
    // Distinct random secrets (from the OS), one per sandbox.
    let secret = |tag: u8| {
        let mut s = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut s))
            .unwrap();
        s[0] = tag;
        s.to_vec()
    };
    let secret_a = secret(0xa5);
    let secret_b = secret(0x5a);
    assert_ne!(secret_a, secret_b);
    a.call::<()>("store_secret", (secret_a.clone(),)).unwrap();
    b.call::<()>("store_secret", (secret_b.clone(),)).unwrap();
    let inverted = |s: &[u8]| s.iter().map(|b| !b).collect::<Vec<u8>>();
    // Each finds its own secret (the scan works) and not the other's, in every region it can
    // read.
    assert!(a.call::<u64>("scan", (inverted(&secret_a),)).unwrap() >= 1);
    assert!(b.call::<u64>("scan", (inverted(&secret_b),)).unwrap() >= 1);
    assert_eq!(b.call::<u64>("scan", (inverted(&secret_a),)).unwrap(), 0);
    assert_eq!(a.call::<u64>("scan", (inverted(&secret_b),)).unwrap(), 0);
    // Beyond its own memory there is nothing to read: the other sandbox's memory is not in its
    // guest-physical address space at all.
    let l = Layout::of(&mut b);
    for addr in [
        l.page_tables() + 64 * PAGE,
        1 << 30,
        4 << 30,
        0x40_0000_0000,
    ] {
        let r = b.call::<u64>("read_addr", (addr,));
        fatal(
            &mut b,
            &mut by,
            "beyond memory",
            r,
            violation(addr, Access::Read),
        );
    }
    // B overwrites all of its heap (wrecking its own allocator: restore when it breaks); A's
    // secret is still there, B's scan still finds nothing.
    let mut addr = l.heap;
    while addr < l.heap + l.heap_size {
        if b.call::<()>("write_addr", (addr, 0xdead_beef_u64)).is_err() {
            b.restore().unwrap();
        }
        addr += PAGE;
    }
    b.restore().unwrap();
    assert!(a.call::<u64>("scan", (inverted(&secret_a),)).unwrap() >= 1);
    assert_eq!(b.call::<u64>("scan", (inverted(&secret_a),)).unwrap(), 0);
    // A restored sandbox does not keep an earlier call's data either.
    a.restore().unwrap();
    assert_eq!(a.call::<u64>("scan", (inverted(&secret_a),)).unwrap(), 0);
    by.check();
}

/// Counts guest log events (whatever the thread), without keeping them.
struct CountGuestLogs(Arc<AtomicU64>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountGuestLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "hyperlight_guest" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn guest_log_count() -> &'static AtomicU64 {
    static COUNT: OnceLock<Arc<AtomicU64>> = OnceLock::new();
    COUNT.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let count = Arc::new(AtomicU64::new(0));
        let subscriber = tracing_subscriber::registry().with(CountGuestLogs(count.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        count
    })
}

#[test]
fn flooding_logs_and_host_calls_is_bounded() {
    let logs = guest_log_count();
    let mut by = Bystander::new();
    let mut sb = hostile().host_fn("host_u64", || 3u64).build().unwrap();
    // Warm up (allocator, tracing's callsite registry), then measure.
    sb.call::<u32>("log_flood", (100u32, 16u32)).unwrap();
    sb.call::<u64>("host_call_flood", ("host_u64".to_string(), 100u32))
        .unwrap();
    let before = rss_anon_kib();
    let logged_before = logs.load(Ordering::Relaxed);
    let start = Instant::now();
    assert_eq!(
        sb.call::<u32>("log_flood", (100_000u32, 64u32)).unwrap(),
        100_000
    );
    // Records as large as the output buffer (the guest truncates what does not fit).
    assert_eq!(
        sb.call::<u32>("log_flood", (1_000u32, 300_000u32)).unwrap(),
        1_000
    );
    assert_eq!(
        sb.call::<u64>("host_call_flood", ("host_u64".to_string(), 100_000u32))
            .unwrap(),
        300_000
    );
    let took = start.elapsed();
    let grown = rss_anon_kib().saturating_sub(before);
    let logged = logs.load(Ordering::Relaxed) - logged_before;
    // Every record reached the subscriber, synchronously; none is queued anywhere.
    assert!(logged >= 101_000, "{logged} records");
    assert!(
        grown < 64 << 10,
        "host anonymous memory grew by {grown} KiB"
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
    by.check();
}

/// What a host function running on some thread may do, as a bit set of what was denied with
/// `EPERM`: 1 open a file, 2 create a socket, 4 start a process, 8 map executable memory.
fn forbidden_attempts() -> u64 {
    let mut denied = 0;
    let eperm = |e: &std::io::Error| e.raw_os_error() == Some(libc::EPERM);
    if std::fs::File::open("/etc/hostname").is_err_and(|e| eperm(&e)) {
        denied |= 1;
    }
    // SAFETY: plain syscalls with valid arguments; the fds are closed if they were created.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 && eperm(&std::io::Error::last_os_error()) {
            denied |= 2;
        } else if fd >= 0 {
            libc::close(fd);
        }
    }
    if std::process::Command::new("/bin/true")
        .status()
        .is_err_and(|e| eperm(&e))
    {
        denied |= 4;
    }
    // SAFETY: an anonymous mapping the kernel places; unmapped right away if created.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED && eperm(&std::io::Error::last_os_error()) {
            denied |= 8;
        } else if p != libc::MAP_FAILED {
            libc::munmap(p, 4096);
        }
    }
    denied
}

fn gettid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

#[test]
fn seccomp_vcpu_thread_cannot_open_files() {
    if hyperlight_sys::seccomp::default_disabled_by_env() {
        hyperlight_testing::skip("HYPERLIGHT_SECCOMP=off: no seccomp filter to test");
        return;
    }
    let mut by = Bystander::new();
    let tids = Arc::new(Mutex::new(Vec::new()));
    let seen = tids.clone();
    let mut sb = hostile()
        .host_fn("host_tid", move || {
            seen.lock().unwrap().push(gettid());
            gettid()
        })
        .host_fn("host_attempts", forbidden_attempts)
        .build()
        .unwrap();
    let tid = sb
        .call::<u64>("host_call_flood", ("host_tid".to_string(), 1u32))
        .unwrap();
    // The plain host function ran inline, on the vCPU thread, which runs under a filter.
    assert_ne!(tid, gettid());
    assert_eq!(thread_seccomp_mode(tid as i32), Some(2));
    let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap();
    assert_eq!(name.trim(), "hyperlight-vcpu");
    let denied = sb
        .call::<u64>("host_call_flood", ("host_attempts".to_string(), 1u32))
        .unwrap();
    assert_eq!(denied, 1 | 2 | 4 | 8, "denied set {denied:#b}");
    // The host function saw ordinary errors; the sandbox and the process go on.
    assert_eq!(sb.call::<u64>("echo", (3u64,)).unwrap(), 3);
    // This thread (not filtered) can still do all of it.
    assert_eq!(forbidden_attempts(), 0);
    by.check();
}

#[test]
fn seccomp_host_function_with_extra_syscalls_runs_on_its_own_worker() {
    if hyperlight_sys::seccomp::default_disabled_by_env() {
        hyperlight_testing::skip("HYPERLIGHT_SECCOMP=off: no seccomp filter to test");
        return;
    }
    let mut by = Bystander::new();
    let file_syscalls = [
        libc::SYS_openat,
        libc::SYS_read,
        libc::SYS_close,
        libc::SYS_statx,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_lseek,
    ];
    let worker_tid = Arc::new(AtomicU64::new(0));
    let seen = worker_tid.clone();
    let mut sb = hostile()
        .host_fn_with_syscalls("host_read_file", &file_syscalls, move || {
            seen.store(gettid(), Ordering::SeqCst);
            let text = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
            // Only file syscalls were added: a socket is still refused on this thread.
            // SAFETY: a plain syscall with valid arguments.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            if fd >= 0 {
                return Err("socket allowed".to_string());
            }
            Ok::<u64, String>(text.len() as u64)
        })
        .host_fn("host_tid", gettid)
        .host_fn("host_attempts", forbidden_attempts)
        .host_fn_with_syscalls("host_panics", &[libc::SYS_openat], || -> u64 {
            panic!("worker host function bug")
        })
        .build()
        .unwrap();
    let read = sb
        .call::<u64>("host_call_flood", ("host_read_file".to_string(), 1u32))
        .unwrap();
    assert!(read > 0);
    let worker = worker_tid.load(Ordering::SeqCst);
    let vcpu = sb
        .call::<u64>("host_call_flood", ("host_tid".to_string(), 1u32))
        .unwrap();
    assert_ne!(worker, vcpu, "the extended function ran on the vCPU thread");
    assert_eq!(thread_seccomp_mode(worker as i32), Some(2));
    assert_eq!(thread_seccomp_mode(vcpu as i32), Some(2));
    let name = std::fs::read_to_string(format!("/proc/self/task/{worker}/comm")).unwrap();
    assert_eq!(name.trim(), "hyperlight-hfn");
    // The extension is per function: a plain one still runs under the vCPU thread's filter.
    let denied = sb
        .call::<u64>("host_call_flood", ("host_attempts".to_string(), 1u32))
        .unwrap();
    assert_eq!(denied, 1 | 2 | 4 | 8);
    // A panic on the worker reaches the guest as a host function failure.
    let r = sb.call::<u64>("host_call_flood", ("host_panics".to_string(), 1u32));
    assert!(
        matches!(&r, Err(Error::GuestCall { code: ErrorCode::HostFunctionFailed, message }) if message.contains("panicked")),
        "{r:?}"
    );
    // Restores keep the same workers working.
    sb.restore().unwrap();
    assert!(
        sb.call::<u64>("host_call_flood", ("host_read_file".to_string(), 2u32))
            .unwrap()
            > 0
    );
    drop(sb);
    // Dropping the sandbox ended the worker.
    assert!(!std::path::Path::new(&format!("/proc/self/task/{worker}")).exists());
    by.check();
}

#[test]
fn seccomp_disabled_is_an_opt_out() {
    let config = SandboxConfig {
        seccomp: SeccompPolicy::Disabled,
        ..SandboxConfig::default()
    };
    let mut sb = hostile()
        .config(config)
        .host_fn("host_tid", gettid)
        .host_fn("host_attempts", forbidden_attempts)
        .host_fn_with_syscalls("host_tid_extended", &[libc::SYS_openat], gettid)
        .build()
        .unwrap();
    let tid = sb
        .call::<u64>("host_call_flood", ("host_tid".to_string(), 1u32))
        .unwrap();
    assert_eq!(thread_seccomp_mode(tid as i32), Some(0));
    // With no filters, a function registered with extra syscalls needs no worker: inline.
    let extended = sb
        .call::<u64>("host_call_flood", ("host_tid_extended".to_string(), 1u32))
        .unwrap();
    assert_eq!(extended, tid);
    assert_eq!(
        sb.call::<u64>("host_call_flood", ("host_attempts".to_string(), 1u32))
            .unwrap(),
        0
    );
}

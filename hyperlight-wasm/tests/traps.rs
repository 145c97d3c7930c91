//! Traps, limits and hostile modules on KVM: each becomes a typed error naming what happened,
//! and the sandbox is usable afterwards.

mod common;

use std::time::Duration;

use hyperlight_async::SandboxConfig;
use hyperlight_wasm::{Error, Trap, WasmLimits, WasmSandbox};

fn trap_of<T: std::fmt::Debug>(result: Result<T, Error>) -> Trap {
    match result {
        Err(Error::Trap { trap, .. }) => trap,
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn every_trap_kind_is_named_and_the_instance_recovers() {
    let sandbox = common::wat("traps").build().await.unwrap();
    let cases = [
        ("unreachable", Trap::Unreachable),
        ("oob", Trap::MemoryOutOfBounds),
        ("int_overflow", Trap::IntegerOverflow),
        ("bad_convert", Trap::BadConversionToInteger),
        ("indirect_null", Trap::IndirectCallToNull),
        ("indirect_type", Trap::BadSignature),
    ];
    for (export, want) in cases {
        let result = if matches!(export, "unreachable" | "indirect_null" | "indirect_type") {
            sandbox.call::<()>(export, ()).await.map(|_| 0)
        } else {
            sandbox.call::<i32>(export, ()).await
        };
        let err = result.unwrap_err();
        assert!(err.to_string().contains(want.name()), "{err}");
        assert_eq!(trap_of::<i32>(Err(err)), want, "{export}");
    }
    assert_eq!(
        trap_of(sandbox.call::<i32>("div_zero", (7i32,)).await),
        Trap::IntegerDivisionByZero
    );
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let sandbox = common::wat("recurse")
        .limits(WasmLimits {
            max_recursion_depth: 500,
            ..WasmLimits::default()
        })
        .build()
        .await
        .unwrap();
    assert_eq!(
        sandbox.call::<i32>("recurse", (400i32,)).await.unwrap(),
        400
    );
    assert_eq!(
        trap_of(sandbox.call::<i32>("recurse", (600i32,)).await),
        Trap::StackOverflow
    );
    assert_eq!(
        trap_of(sandbox.call::<i32>("forever", ()).await),
        Trap::StackOverflow
    );
    assert_eq!(sandbox.call::<i32>("recurse", (10i32,)).await.unwrap(), 10);
}

#[tokio::test]
async fn fuel_is_a_deterministic_budget() {
    let sandbox = common::wat("loop")
        .limits(WasmLimits {
            fuel: Some(100_000),
            ..WasmLimits::default()
        })
        .build()
        .await
        .unwrap();
    assert_eq!(
        trap_of(sandbox.call::<()>("spin", ()).await),
        Trap::OutOfFuel
    );
    // Fuel is refilled per call: a short call after an exhausted one runs.
    // (Each import call is a VM exit: a small budget keeps the exhausting call short.)
    let sum = common::plugin()
        .limits(WasmLimits {
            fuel: Some(100_000),
            ..WasmLimits::default()
        })
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(sum.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
    }
    assert_eq!(
        trap_of(sum.call::<i64>("sum_host", (i32::MAX,)).await),
        Trap::OutOfFuel
    );
    assert_eq!(sum.call::<i32>("add", (1i32, 2i32)).await.unwrap(), 3);
}

#[tokio::test]
async fn an_infinite_loop_is_kicked_out_at_its_timeout() {
    let sandbox = common::wat("loop").build().await.unwrap();
    let err = sandbox
        .call::<()>("spin", ())
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Sandbox(hyperlight_async::Error::Timeout { .. })),
        "{err:?}"
    );
    // The timed-out sandbox is restored and runs again.
    let err = sandbox
        .call::<()>("spin", ())
        .timeout(Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Sandbox(hyperlight_async::Error::Timeout { .. })
    ));
}

#[tokio::test]
async fn memory_growth_stops_at_the_cap() {
    let sandbox = common::wat("grow")
        .limits(WasmLimits {
            max_memory: 4 << 20,
            ..WasmLimits::default()
        })
        .build()
        .await
        .unwrap();
    // 1 page, grown by 62 to 63 of the 64 allowed (4 MiB).
    assert_eq!(sandbox.call::<i32>("grow", (62i32,)).await.unwrap(), 1);
    assert_eq!(
        trap_of(sandbox.call::<i32>("grow", (2i32,)).await),
        Trap::MemoryLimit
    );
    // After the trap the instance is back to its one page.
    assert_eq!(sandbox.call::<i32>("grow", (63i32,)).await.unwrap(), 1);
    assert_eq!(
        trap_of(sandbox.call::<i32>("grow_until_fail", ()).await),
        Trap::MemoryLimit
    );
}

/// A module of one memory of `pages` pages with a data segment of `data` bytes of 42 at address
/// 0, a custom section of `custom` bytes, and an export `first` that loads the byte at 0. The two
/// large sections are appended in binary: the text format of megabytes of data parses slowly.
fn module_with(pages: u32, data: usize, custom: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(payload.len(), out);
        out.extend_from_slice(payload);
    }
    let mut module = wat::parse_str(format!(
        "(module (memory {pages}) (func (export \"first\") (result i32) (i32.load8_u (i32.const 0))))"
    ))
    .unwrap();
    // Data section (id 11, after the code section): one active segment at `i32.const 0`.
    let mut payload = vec![1, 0, 0x41, 0, 0x0b];
    leb(data, &mut payload);
    payload.resize(payload.len() + data, 42);
    section(11, &payload, &mut module);
    // A custom section (id 0) named "pad".
    let mut payload = vec![3];
    payload.extend_from_slice(b"pad");
    payload.resize(payload.len() + custom, 0);
    section(0, &payload, &mut module);
    module
}

#[tokio::test]
async fn hostile_modules_get_typed_errors() {
    // Malformed bytes.
    let err = common::build_error(WasmSandbox::builder(b"\0asm\x01\0\0\0garbage".to_vec())).await;
    assert!(matches!(err, Error::InvalidModule { .. }), "{err:?}");
    let err = common::build_error(WasmSandbox::builder(Vec::new())).await;
    assert!(matches!(err, Error::InvalidModule { .. }), "{err:?}");
    // An initial memory beyond the cap.
    let err = common::build_error(WasmSandbox::builder(module_with(1000, 1, 0)).limits(
        WasmLimits {
            max_memory: 1 << 20,
            ..WasmLimits::default()
        },
    ))
    .await;
    assert!(
        matches!(
            err,
            Error::InitTrapped {
                trap: Trap::MemoryLimit,
                ..
            }
        ),
        "{err:?}"
    );
    // A huge data segment (8 MiB) within the cap works.
    let big = WasmSandbox::builder(module_with(130, 8 << 20, 0))
        .build()
        .await
        .unwrap();
    assert_eq!(big.call::<i32>("first", ()).await.unwrap(), 42);
}

#[tokio::test]
async fn a_ten_mib_module_loads_and_a_larger_than_allowed_one_is_refused() {
    let ten = module_with(1, 1, 10 << 20);
    assert!(ten.len() > 10 << 20);
    let sandbox = WasmSandbox::builder(ten.clone()).build().await.unwrap();
    assert_eq!(sandbox.call::<i32>("first", ()).await.unwrap(), 42);
    // Past `max_module_size`: refused when the sandbox is laid out, before the guest runs.
    let config = SandboxConfig {
        max_module_size: 4 << 20,
        heap_size: 128 << 20,
        ..SandboxConfig::default()
    };
    let err = common::build_error(WasmSandbox::builder(ten).config(config)).await;
    assert!(
        matches!(
            err,
            Error::Sandbox(hyperlight_async::Error::Sandbox(
                hyperlight_async::SandboxError::InvalidConfig {
                    field: "module size",
                    ..
                }
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn limits_are_checked_against_the_heap() {
    let config = SandboxConfig {
        heap_size: 8 << 20,
        ..SandboxConfig::default()
    };
    let err = common::build_error(common::wat("loop").config(config)).await;
    assert!(
        matches!(
            err,
            Error::InvalidLimit {
                field: "max_memory",
                ..
            }
        ),
        "{err:?}"
    );
    let err = common::build_error(common::wat("loop").limits(WasmLimits {
        fuel: Some(0),
        ..WasmLimits::default()
    }))
    .await;
    assert!(
        matches!(err, Error::InvalidLimit { field: "fuel", .. }),
        "{err:?}"
    );
}

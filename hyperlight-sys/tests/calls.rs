//! Guest calls on real KVM: every value type, multiple arguments, typed errors.

mod common;

use hyperlight_sys::schema::{ErrorCode, Value, ValueType};
use hyperlight_sys::Error;

#[test]
fn every_value_type_round_trips() {
    let mut sb = common::simple().build().unwrap();
    for v in [0i32, -1, i32::MIN, i32::MAX] {
        assert_eq!(sb.call::<i32>("echo_i32", (v,)).unwrap(), v);
    }
    for v in [0u32, u32::MAX] {
        assert_eq!(sb.call::<u32>("echo_u32", (v,)).unwrap(), v);
    }
    for v in [i64::MIN, -7, i64::MAX] {
        assert_eq!(sb.call::<i64>("echo_i64", (v,)).unwrap(), v);
    }
    for v in [0u64, u64::MAX] {
        assert_eq!(sb.call::<u64>("echo_u64", (v,)).unwrap(), v);
    }
    for v in [0.0f32, -1.5, f32::MAX, f32::MIN_POSITIVE, f32::INFINITY] {
        assert_eq!(
            sb.call::<f32>("echo_f32", (v,)).unwrap().to_bits(),
            v.to_bits()
        );
    }
    let nan = f64::from_bits(0x7ff8_0000_dead_beef);
    for v in [0.0f64, -2.25, f64::MAX, nan] {
        assert_eq!(
            sb.call::<f64>("echo_f64", (v,)).unwrap().to_bits(),
            v.to_bits()
        );
    }
    for v in [true, false] {
        assert_eq!(sb.call::<bool>("echo_bool", (v,)).unwrap(), v);
    }
    for v in ["", "hello", "héllo wörld ✓", &"x".repeat(10_000)] {
        assert_eq!(
            sb.call::<String>("echo_string", (v.to_string(),)).unwrap(),
            v
        );
    }
    for v in [vec![], vec![0u8, 1, 255], vec![7u8; 100_000]] {
        assert_eq!(sb.call::<Vec<u8>>("echo_bytes", (v.clone(),)).unwrap(), v);
    }
    sb.call::<()>("void_fn", ()).unwrap();
}

#[test]
fn multi_argument_calls() {
    let mut sb = common::simple().build().unwrap();
    assert_eq!(sb.call::<i32>("add", (40i32, 2i32)).unwrap(), 42);
    let mixed: String = sb
        .call("mixed", (7i32, "s".to_string(), true, 1.5f64, vec![1u8, 2]))
        .unwrap();
    assert!(
        mixed.contains('7') && mixed.contains('s') && mixed.contains("true"),
        "{mixed}"
    );
    let args = (
        1i64, 2i64, 3i64, 4i64, 5i64, 6i64, 7i64, 8i64, 9i64, 10i64, 11i64, 12i64, 13i64, 14i64,
        15i64, 16i64,
    );
    assert_eq!(sb.call::<i64>("sum16", args).unwrap(), 136);
}

fn guest_code(err: Error) -> ErrorCode {
    match err {
        Error::GuestCall { code, .. } => code,
        other => panic!("expected a guest call error, got {other:?}"),
    }
}

#[test]
fn unknown_function_wrong_arity_and_types_are_typed_errors() {
    let mut sb = common::simple().build().unwrap();
    assert_eq!(
        guest_code(sb.call::<i32>("no_such_function", ()).unwrap_err()),
        ErrorCode::UnknownFunction
    );
    assert_eq!(
        guest_code(sb.call::<i32>("add", (1i32,)).unwrap_err()),
        ErrorCode::WrongArity
    );
    assert_eq!(
        guest_code(
            sb.call::<i32>("add", (1i32, "two".to_string()))
                .unwrap_err()
        ),
        ErrorCode::WrongArgumentType
    );
    assert_eq!(
        guest_code(sb.call::<String>("add", (1i32, 2i32)).unwrap_err()),
        ErrorCode::WrongReturnType
    );
    // None of these poisoned the sandbox.
    assert_eq!(sb.call::<i32>("add", (1i32, 2i32)).unwrap(), 3);
    // Dynamic calls check too.
    let err = sb
        .call_value("echo_i32", vec![Value::I64(1)], ValueType::I32)
        .unwrap_err();
    assert_eq!(guest_code(err), ErrorCode::WrongArgumentType);
}

#[test]
fn too_large_arguments_are_refused_before_the_guest_runs() {
    let mut sb = common::simple().build().unwrap();
    let huge = vec![0u8; 2 << 20];
    assert!(matches!(
        sb.call::<Vec<u8>>("echo_bytes", (huge,)).unwrap_err(),
        Error::MessageTooLarge {
            buffer: "input",
            ..
        }
    ));
    assert_eq!(sb.call::<i32>("echo_i32", (5i32,)).unwrap(), 5);
}

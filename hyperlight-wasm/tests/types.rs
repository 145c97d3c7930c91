//! Every wire type through exports and imports of a module built from Rust source, on KVM.

mod common;

use hyperlight_wasm::{Error, ExternKind};

#[tokio::test]
async fn scalars_cross_both_ways() {
    let sandbox = common::plugin().build().await.unwrap();
    assert_eq!(sandbox.call::<i32>("add", (40i32, 2i32)).await.unwrap(), 42);
    assert_eq!(
        sandbox.call::<i32>("add", (i32::MAX, 1i32)).await.unwrap(),
        i32::MIN
    );
    assert_eq!(
        sandbox
            .call::<i64>("add64", (1i64 << 40, 1i64))
            .await
            .unwrap(),
        (1i64 << 40) + 1
    );
    assert_eq!(
        sandbox
            .call::<f32>("mul_f32", (1.5f32, -2.0f32))
            .await
            .unwrap(),
        -3.0
    );
    assert_eq!(
        sandbox
            .call::<f64>("mul_f64", (0.1f64, 3.0f64))
            .await
            .unwrap(),
        0.1 * 3.0
    );
    // bool lowers to i32 both ways; u32 and u64 to their signed twins, bit for bit.
    assert!(!sandbox.call::<bool>("negate", (true,)).await.unwrap());
    assert!(sandbox.call::<bool>("negate", (false,)).await.unwrap());
    assert_eq!(
        sandbox
            .call::<u64>("wrapping_u64", (u64::MAX,))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        sandbox
            .call::<u64>("wrapping_u64", (u64::MAX - 1,))
            .await
            .unwrap(),
        u64::MAX
    );
    // Imports with f32, f64 and i64: 1.5 * 2 + 2.25 * 2 + (2^40 + 1).
    assert_eq!(
        sandbox.call::<f64>("scalars_host", ()).await.unwrap(),
        3.0 + 4.5 + ((1u64 << 40) + 1) as f64
    );
}

#[tokio::test]
async fn strings_and_bytes_cross_both_ways() {
    let sandbox = common::plugin().build().await.unwrap();
    assert_eq!(
        sandbox
            .call::<String>("upper", ("héllo wasm".to_string(),))
            .await
            .unwrap(),
        "HéLLO WASM"
    );
    assert_eq!(
        sandbox
            .call::<String>("upper", (String::new(),))
            .await
            .unwrap(),
        ""
    );
    assert_eq!(
        sandbox
            .call::<String>("concat", ("ab".to_string(), "cd".to_string()))
            .await
            .unwrap(),
        "abcd"
    );
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut reversed = big.clone();
    reversed.reverse();
    assert_eq!(
        sandbox
            .call::<Vec<u8>>("reverse", (big.clone(),))
            .await
            .unwrap(),
        reversed
    );
    assert_eq!(
        sandbox.call::<i32>("len_of", (big,)).await.unwrap(),
        100_000
    );
    // Imports taking and returning a String and bytes.
    assert_eq!(
        sandbox
            .call::<String>("echo_host", ("x".to_string(),))
            .await
            .unwrap(),
        "echo: x"
    );
    assert_eq!(
        sandbox
            .call::<Vec<u8>>("bytes_host", (vec![1u8, 2],))
            .await
            .unwrap(),
        vec![1, 2, 0xff]
    );
    // Many calls in one instance: memory is freed by the post-return functions, nothing breaks.
    for i in 0..200 {
        let s = format!("round {i}");
        assert_eq!(
            sandbox.call::<String>("upper", (s.clone(),)).await.unwrap(),
            s.to_uppercase()
        );
    }
}

#[tokio::test]
async fn async_import_and_ten_thousand_import_calls() {
    let sandbox = common::plugin().build().await.unwrap();
    assert_eq!(
        sandbox
            .call::<String>("lookup", ("key".to_string(),))
            .await
            .unwrap(),
        "value of key"
    );
    // 10,000 calls of the sync import inside one export call: sum of (i + 1) for i < 10,000.
    assert_eq!(
        sandbox.call::<i64>("sum_host", (10_000i32,)).await.unwrap(),
        10_000 * 10_001 / 2
    );
}

#[tokio::test]
async fn the_module_is_described_and_failed_imports_reach_the_caller() {
    let sandbox = common::plugin()
        .import("env", "host_echo", |s: String| -> Result<String, String> {
            Err(format!("refused {s}"))
        })
        .build()
        .await
        .unwrap();
    let names: Vec<&str> = sandbox
        .exports()
        .iter()
        .filter(|e| e.kind == ExternKind::Func)
        .map(|e| e.name.as_str())
        .collect();
    for name in ["add", "upper", "lookup", "cabi_realloc", "sum_host"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(sandbox.imports().len(), 7);
    // A failing host function fails the export call with its message, as a host-function
    // error, not as a trap; the sandbox stays usable.
    let err = sandbox
        .call::<String>("echo_host", ("x".to_string(),))
        .await
        .unwrap_err();
    match &err {
        Error::Sandbox(hyperlight_async::Error::Sandbox(
            hyperlight_async::SandboxError::GuestCall { code, message },
        )) => {
            assert_eq!(*code, hyperlight_async::ErrorCode::HostFunctionFailed);
            assert!(message.contains("refused x"), "{message}");
        }
        other => panic!("expected a host-function error, got {other:?}"),
    }
    assert_eq!(sandbox.call::<i32>("add", (1i32, 1i32)).await.unwrap(), 2);
}

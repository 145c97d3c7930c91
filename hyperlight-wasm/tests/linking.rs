//! Linking on KVM: every missing, mistyped or unsupported import is listed at build; calls of
//! unknown exports or with the wrong types fail before any Wasm runs.

mod common;

use hyperlight_wasm::{CoreType, Error, FuncType, ProblemKind, WasmSandbox};

fn problems(error: Error) -> Vec<(String, String, ProblemKind)> {
    match error {
        Error::Link { problems } => problems
            .into_iter()
            .map(|p| (p.module, p.name, p.kind))
            .collect(),
        other => panic!("expected a link error, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_imports_are_all_listed() {
    let err = common::build_error(common::wat("missing")).await;
    let listed = problems(err);
    assert_eq!(
        listed,
        [
            ("env".into(), "nonexistent".into(), ProblemKind::Missing),
            ("other".into(), "thing".into(), ProblemKind::Missing),
        ]
    );
    // The plugin without any import: all seven are missing.
    let err = common::build_error(WasmSandbox::builder(hyperlight_testing::wasm_bytes(
        "plugin",
    )))
    .await;
    assert_eq!(problems(err).len(), 7);
}

#[tokio::test]
async fn a_forged_signature_is_refused_with_both_types() {
    let err =
        common::build_error(
            common::wat("forged").import("env", "host_add", |a: i32, b: i32| a + b),
        )
        .await;
    let text = err.to_string();
    match err {
        Error::Link { problems } => {
            assert_eq!(problems.len(), 1);
            let p = &problems[0];
            assert_eq!(p.kind, ProblemKind::Mistyped);
            assert_eq!(
                p.declared,
                Some(FuncType {
                    params: vec![CoreType::I64],
                    results: vec![CoreType::I64]
                })
            );
            assert_eq!(
                p.registered,
                Some(FuncType {
                    params: vec![CoreType::I32, CoreType::I32],
                    results: vec![CoreType::I32]
                })
            );
        }
        other => panic!("expected a link error, got {other:?}"),
    }
    assert!(text.contains("(param i64) (result i64)"), "{text}");
}

#[tokio::test]
async fn non_function_imports_are_unsupported() {
    let err = common::build_error(common::wat("import_memory")).await;
    assert_eq!(
        problems(err),
        [("env".into(), "memory".into(), ProblemKind::Unsupported)]
    );
}

#[tokio::test]
async fn calls_are_checked_before_any_wasm_runs() {
    let sandbox = common::wat("imports")
        .import("env", "host_add", |a: i32, b: i32| a + b)
        .build()
        .await
        .unwrap();
    assert_eq!(
        sandbox.call::<i32>("call_add", (2i32, 3i32)).await.unwrap(),
        5
    );
    assert!(matches!(
        sandbox.call::<i32>("nope", ()).await,
        Err(Error::UnknownExport { name }) if name == "nope"
    ));
    // Wrong arity, wrong argument type, wrong result type.
    for err in [
        sandbox.call::<i32>("call_add", (2i32,)).await.unwrap_err(),
        sandbox
            .call::<i32>("call_add", (2i64, 3i32))
            .await
            .unwrap_err(),
        sandbox
            .call::<i64>("call_add", (2i32, 3i32))
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::ExportType { name, .. } if name == "call_add"),
            "{err:?}"
        );
    }
    // A `String` result lowers to an `i32` (a return-area pointer), the same core type as
    // `call_add`'s: the call runs, and the result 5 read as a return area is refused.
    let err = sandbox
        .call::<String>("call_add", (2i32, 3i32))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Abi { message, .. } if message.contains("not 4-aligned")),
        "{err:?}"
    );
    assert_eq!(
        sandbox.call::<i32>("call_add", (2i32, 3i32)).await.unwrap(),
        5
    );
    // The runner's own link function is not an export.
    assert!(matches!(
        sandbox
            .call::<Vec<u8>>("__hyperlight_wasm_link", (vec![0u8],))
            .await,
        Err(Error::UnknownExport { .. })
    ));
}

#[tokio::test]
async fn start_functions_and_reactors_run_once_before_the_snapshot() {
    let start = common::wat("start").build().await.unwrap();
    assert_eq!(start.call::<i32>("get", ()).await.unwrap(), 42);
    let reactor = common::wat("reactor")
        .fresh_per_call(true)
        .build()
        .await
        .unwrap();
    assert_eq!(reactor.call::<i32>("get", ()).await.unwrap(), 7);
    assert_eq!(reactor.call::<i32>("get", ()).await.unwrap(), 7);
    // A start function may call an import: instantiation runs inside a guest call.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let sandbox = common::wat("start_calls_import")
        .import("env", "host_add", move |a: i32, b: i32| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            a + b
        })
        .build()
        .await
        .unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Restores return to the state after the start function: it does not run again.
    sandbox.restore().await.unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

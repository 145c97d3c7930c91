//! Guest -> host calls on real KVM.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyperlight_sys::Sandbox;

#[test]
fn guest_calls_registered_host_function_and_uses_result() {
    let mut sb = common::simple().build().unwrap();
    assert_eq!(sb.call::<i32>("call_host_add", (20i32, 22i32)).unwrap(), 42);
    assert_eq!(
        sb.call::<String>("call_host_echo_string", ("ping".to_string(),))
            .unwrap(),
        "ping"
    );
}

#[test]
fn unregistered_and_mistyped_host_calls_never_run_host_code() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("host_add", move |a: i32, b: i32| {
            counter.fetch_add(1, Ordering::SeqCst);
            a + b
        })
        .build()
        .unwrap();
    let unknown: String = sb
        .call("call_host_raw", ("not_registered".to_string(), 1i32))
        .unwrap();
    assert!(unknown.starts_with("err:UnknownFunction"), "{unknown}");
    // host_add takes two arguments; call_host_raw passes one.
    let arity: String = sb
        .call("call_host_raw", ("host_add".to_string(), 1i32))
        .unwrap();
    assert!(arity.starts_with("err:WrongArity"), "{arity}");
    let types: String = sb.call("call_host_wrong_types", ()).unwrap();
    assert!(types.starts_with("err:WrongArgumentType"), "{types}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a rejected call ran the host function"
    );
    assert_eq!(sb.call::<i32>("call_host_add", (1i32, 2i32)).unwrap(), 3);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn host_function_errors_and_panics_reach_the_guest_not_the_host() {
    let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("fails", |x: i32| {
            if x > 0 {
                Ok(x)
            } else {
                Err("must be positive")
            }
        })
        .host_fn("panics", |_: i32| -> i32 { panic!("host function bug") })
        .build()
        .unwrap();
    let failed: String = sb
        .call("call_host_raw", ("fails".to_string(), -1i32))
        .unwrap();
    assert!(
        failed.starts_with("err:HostFunctionFailed") && failed.contains("must be positive"),
        "{failed}"
    );
    let ok: String = sb
        .call("call_host_raw", ("fails".to_string(), 5i32))
        .unwrap();
    assert_eq!(ok, "ok:5");
    let panicked: String = sb
        .call("call_host_raw", ("panics".to_string(), 1i32))
        .unwrap();
    assert!(
        panicked.starts_with("err:HostFunctionFailed") && panicked.contains("panicked"),
        "{panicked}"
    );
}

#[test]
fn many_host_calls_in_one_guest_call() {
    let mut sb = Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn("seven", || 7u64)
        .build()
        .unwrap();
    assert_eq!(
        sb.call::<u64>("call_host_n", ("seven".to_string(), 1000u32))
            .unwrap(),
        7000
    );
}

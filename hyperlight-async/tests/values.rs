//! Every value type and host-function signature through the async API, on KVM.

mod common;

use hyperlight_async::{Error, ErrorCode, Sandbox, SandboxError, Value, ValueType};

#[tokio::test]
async fn every_value_type_round_trips() {
    let sb = common::simple().build().await.unwrap();
    assert_eq!(sb.call::<i32>("echo_i32", (-5i32,)).await.unwrap(), -5);
    assert_eq!(
        sb.call::<u32>("echo_u32", (u32::MAX,)).await.unwrap(),
        u32::MAX
    );
    assert_eq!(
        sb.call::<i64>("echo_i64", (i64::MIN,)).await.unwrap(),
        i64::MIN
    );
    assert_eq!(
        sb.call::<u64>("echo_u64", (u64::MAX,)).await.unwrap(),
        u64::MAX
    );
    assert_eq!(sb.call::<f32>("echo_f32", (1.25f32,)).await.unwrap(), 1.25);
    assert_eq!(sb.call::<f64>("echo_f64", (-0.5f64,)).await.unwrap(), -0.5);
    assert!(sb.call::<bool>("echo_bool", (true,)).await.unwrap());
    assert_eq!(
        sb.call::<String>("echo_string", ("ünï".to_string(),))
            .await
            .unwrap(),
        "ünï"
    );
    assert_eq!(
        sb.call::<Vec<u8>>("echo_bytes", (vec![9u8; 1000],))
            .await
            .unwrap(),
        vec![9u8; 1000]
    );
    sb.call::<()>("void_fn", ()).await.unwrap();
    let v = sb
        .call_value("add", vec![Value::I32(2), Value::I32(3)], ValueType::I32)
        .await
        .unwrap();
    assert_eq!(v, Value::I32(5));
}

#[tokio::test]
async fn sync_and_async_host_functions_of_every_arity_and_type() {
    // Host functions taking 0, 1, 2 and 16 arguments, sync and async, of every type, called by
    // the guest through call_host_raw (one i32) and the typed helpers.
    let sb = common::simple()
        .host_fn("sync_neg", |x: i32| -x)
        .host_fn_async("async_neg", |x: i32| async move { -x })
        .host_fn_async("async_fails", |x: i32| async move {
            if x > 0 {
                Ok(x)
            } else {
                Err(format!("bad {x}"))
            }
        })
        .host_fn_async("async_panics", |_: i32| async move {
            if true {
                panic!("async host function bug");
            }
            0i32
        })
        .build()
        .await
        .unwrap();
    assert_eq!(
        sb.call::<i32>("call_host_add", (2i32, 40i32))
            .await
            .unwrap(),
        42
    );
    assert_eq!(
        sb.call::<String>("call_host_echo_string", ("x".to_string(),))
            .await
            .unwrap(),
        "x"
    );
    for (name, want) in [("sync_neg", "ok:-7"), ("async_neg", "ok:-7")] {
        let got: String = sb
            .call("call_host_raw", (name.to_string(), 7i32))
            .await
            .unwrap();
        assert_eq!(got, want);
    }
    let failed: String = sb
        .call("call_host_raw", ("async_fails".to_string(), -1i32))
        .await
        .unwrap();
    assert!(
        failed.starts_with("err:HostFunctionFailed") && failed.contains("bad -1"),
        "{failed}"
    );
    let panicked: String = sb
        .call("call_host_raw", ("async_panics".to_string(), 1i32))
        .await
        .unwrap();
    assert!(
        panicked.starts_with("err:HostFunctionFailed") && panicked.contains("panicked"),
        "{panicked}"
    );
    // A host error the guest passes on is a typed error at the caller, and the sandbox lives on.
    let sb2 = Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn_async("host_add", |_: i32, _: i32| async {
            Err::<i32, _>("unavailable")
        })
        .build()
        .await
        .unwrap();
    match sb2
        .call::<i32>("call_host_add", (1i32, 2i32))
        .await
        .unwrap_err()
    {
        Error::Sandbox(SandboxError::GuestCall { code, message }) => {
            assert_eq!(code, ErrorCode::HostFunctionFailed);
            assert!(message.contains("unavailable"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sb2.call::<i32>("echo_i32", (3i32,)).await.unwrap(), 3);
    // Many host calls in one guest call, each awaiting a timer.
    assert_eq!(
        sb.call::<u64>("call_host_n", ("tick".to_string(), 200u32))
            .await
            .unwrap(),
        200
    );
}

#[tokio::test]
async fn calls_on_one_sandbox_run_in_fifo_order() {
    let sb = common::simple().build().await.unwrap();
    // join_all polls the futures in order, so they queue in that order.
    let calls: Vec<_> = (0..50)
        .map(|_| sb.call::<u64>("counter", ()))
        .map(std::future::IntoFuture::into_future)
        .collect();
    let results = futures_join_all(calls).await;
    let values: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, (1..=50).collect::<Vec<_>>());
}

async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

//! Smoke runs of the examples' code with small sizes, on KVM.

use std::time::Duration;

mod common;

use common::{get, post, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_server_maps_results_timeouts_and_errors_and_shuts_down_gracefully() {
    let pool = hyperlight_examples::web_server::pool(2).await.unwrap();
    let app = hyperlight_examples::web_server::app(pool, Duration::from_millis(200));
    let server = Server::start(app).await;
    let addr = server.addr;
    assert_eq!(
        get(addr, "/add/40/2").await,
        (200, serde_json::json!({ "result": 42 }))
    );
    assert_eq!(
        get(addr, "/native/add/40/2").await,
        (200, serde_json::json!({ "result": 42 }))
    );
    assert_eq!(get(addr, "/echo/hi").await.1["result"], "hi");
    let (status, body) = get(addr, "/spin/100000000000000").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("timed out"),
        "{body}"
    );
    let (status, body) = get(addr, "/call/no_such_function").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(addr, "/call/do_panic").await;
    assert_eq!(status, 400, "do_panic takes an argument: {body}");
    let (status, _) = get(addr, "/call/infinite_loop").await;
    assert_eq!(status, 504);
    // The pool recovered from the timeouts.
    let concurrent: Vec<_> = (0..20)
        .map(|i| tokio::spawn(async move { get(addr, &format!("/add/{i}/1")).await }))
        .collect();
    for (i, c) in concurrent.into_iter().enumerate() {
        assert_eq!(
            c.await.unwrap(),
            (200, serde_json::json!({ "result": i + 1 }))
        );
    }
    let (_, stats) = get(addr, "/stats").await;
    assert_eq!(stats["size"], 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_host_functions_example_does_network_lookups() {
    assert_eq!(
        hyperlight_examples::async_io::run(4, 100).await.unwrap(),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sandboxes_example_runs() {
    let report = hyperlight_examples::many::run(8, 50, Default::default())
        .await
        .unwrap();
    assert_eq!(report.calls, 400);
    assert!(report.calls_per_second() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_example_runs() {
    hyperlight_examples::hello::run(100).await.unwrap();
}

#[tokio::test]
async fn own_guest_loads_a_guest_by_a_string_path() {
    // The guide's in-repository guest has the template's `greet`.
    let path = hyperlight_testing::guest_path("greeter");
    let hello = hyperlight_examples::own_guest::greet(path.to_str().unwrap(), "Ada")
        .await
        .unwrap();
    assert_eq!(hello, "hello Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_server_runs_each_request_in_a_fresh_instance() {
    let pool = hyperlight_examples::wasm_server::pool(2).await.unwrap();
    let app = hyperlight_examples::wasm_server::app(pool, Duration::from_millis(200));
    let server = Server::start(app).await;
    let addr = server.addr;
    assert_eq!(
        get(addr, "/upper/hello").await,
        (200, serde_json::json!({ "result": "HELLO" }))
    );
    assert_eq!(get(addr, "/native/upper/hello").await.1["result"], "HELLO");
    assert_eq!(get(addr, "/add/40/2").await.1["result"], 42);
    assert_eq!(get(addr, "/lookup/k").await.1["result"], "value of k");
    assert_eq!(get(addr, "/sum/100").await.1["result"], 5050);
    let (status, body) = get(addr, "/sum/2000000000").await;
    assert_eq!(status, 504, "{body}");
    let (status, body) = get(addr, "/call/fail").await;
    assert_eq!(status, 400, "`fail` takes an i32: {body}");
    let (status, _) = get(addr, "/call/no_such_export").await;
    assert_eq!(status, 404);
    // Concurrent requests, each in a fresh instance.
    let tasks: Vec<_> = (0..16)
        .map(|i| tokio::spawn(async move { get(addr, &format!("/add/{i}/1")).await }))
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().1["result"], i as i64 + 1);
    }
    server.stop().await;
}

/// Serves the WASI example's app with `wasm` on a free port.
async fn wasi_server(wasm: Vec<u8>, timeout: Duration) -> Server {
    let pool = hyperlight_examples::wasi_server::pool(wasm, 2)
        .await
        .unwrap();
    let app = hyperlight_examples::wasi_server::app(pool, timeout);
    Server::start(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_server_runs_the_program_on_each_body() {
    let jsonfmt = hyperlight_examples::wasi_server::jsonfmt();
    let server = wasi_server(jsonfmt, Duration::from_secs(10)).await;
    let addr = server.addr;
    assert_eq!(
        post(addr, "/run", br#"{"b": 1, "a": [true]}"#).await,
        (200, "{\"a\":[true],\"b\":1}\n".to_string())
    );
    assert_eq!(
        post(addr, "/native/run", br#"{"b": 1, "a": [true]}"#).await,
        (200, "{\"a\":[true],\"b\":1}\n".to_string())
    );
    let (status, stderr) = post(addr, "/run", b"not json").await;
    assert_eq!(status, 422);
    assert!(stderr.starts_with("jsonfmt: not JSON"), "{stderr}");
    let (status, _) = post(addr, "/run", &vec![b' '; 100 << 10]).await;
    assert_eq!(status, 413);
    server.stop().await;
    // A program that sleeps in poll_oneoff for 60 s is cut off by the timeout.
    let sleeper = hyperlight_testing::wat("wasi_sleep");
    let server = wasi_server(sleeper, Duration::from_millis(100)).await;
    let addr = server.addr;
    assert_eq!(post(addr, "/run", b"").await.0, 504);
    server.stop().await;
}

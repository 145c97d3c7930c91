//! Smoke runs of the examples' code with small sizes, on KVM.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.1 GET: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_server_maps_results_timeouts_and_errors_and_shuts_down_gracefully() {
    let pool = hyperlight_examples::web_server::pool(2).await.unwrap();
    let app = hyperlight_examples::web_server::app(pool, Duration::from_millis(200));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hyperlight_examples::web_server::serve(
        listener,
        app,
        async {
            let _ = stopped.await;
        },
    ));
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
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hyperlight_examples::web_server::serve(
        listener,
        app,
        async {
            let _ = stopped.await;
        },
    ));
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
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

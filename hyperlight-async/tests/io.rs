//! Async host functions that await timers and real I/O, in many sandboxes at once.

mod common;

use std::time::Duration;

use hyperlight_async::Sandbox;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_functions_doing_timer_and_tcp_io_in_many_sandboxes() {
    // An echo server on loopback that uppercases what it receives.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap();
                socket
                    .write_all(&buf[..n].to_ascii_uppercase())
                    .await
                    .unwrap();
            });
        }
    });
    let mut tasks = Vec::new();
    for i in 0..40 {
        tasks.push(tokio::spawn(async move {
            let sb = Sandbox::builder(hyperlight_testing::simple_guest())
                .host_fn_async("host_echo", move |s: String| async move {
                    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                    stream
                        .write_all(s.as_bytes())
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut reply = String::new();
                    stream
                        .read_to_string(&mut reply)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(reply)
                })
                .host_fn_async("host_add", |a: i32, b: i32| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    a + b
                })
                .build()
                .await
                .unwrap();
            for round in 0..5 {
                let text = format!("sandbox {i} round {round}");
                let reply: String = sb
                    .call("call_host_echo_string", (text.clone(),))
                    .await
                    .unwrap();
                assert_eq!(reply, text.to_uppercase());
                assert_eq!(
                    sb.call::<i32>("call_host_add", (i, round)).await.unwrap(),
                    i + round
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.abort();
}

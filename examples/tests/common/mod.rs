//! What the examples' tests share: minimal HTTP/1.1 requests and a server on a free port.
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request with `Connection: close`: (status, body as text).
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// A GET: (status, body as text).
pub async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, b"").await
}

/// A GET of a JSON answer: (status, body parsed; `Null` if it is not JSON).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get_text(addr, path).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A POST: (status, body as text).
pub async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    request(addr, "POST", path, body).await
}

/// An app served on a free loopback port by the examples' `serve`, until [`Server::stop`].
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serves `app`.
    pub async fn start(app: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(hyperlight_examples::web_server::serve(
            listener,
            app,
            async {
                let _ = stopped.await;
            },
        ));
        Server { addr, stop, task }
    }

    /// Shuts the server down gracefully and checks that it ended without an error.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

//! A host function that does real async I/O: the guest asks the host to look a key up in a
//! key-value service reached over TCP; the host function awaits the network round trip on the
//! async runtime while the guest waits for its result.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hyperlight_async::{Error, Sandbox};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Starts a line-based key-value service on loopback: for each line `key` it answers the value
/// (or `?`). Returns its address; it runs until the runtime ends.
pub async fn start_kv_service(entries: HashMap<String, String>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let entries = Arc::new(entries);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let entries = entries.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(key)) = lines.next_line().await {
                    let value = entries.get(&key).map_or("?", String::as_str);
                    if write
                        .write_all(format!("{value}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Looks `key` up in the service at `addr`: one TCP connection, one line each way.
pub async fn lookup(addr: SocketAddr, key: String) -> Result<String, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{key}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer.trim_end().to_string())
}

/// A sandbox of the `simple` guest whose `host_echo` host function is a lookup in the service:
/// the guest's `call_host_echo_string(key)` returns the value.
pub async fn sandbox(addr: SocketAddr) -> Result<Sandbox, Error> {
    Sandbox::builder(hyperlight_testing::simple_guest())
        .host_fn_async("host_echo", move |key: String| lookup(addr, key))
        .build()
        .await
}

/// Runs `lookups` guest calls, each doing one network lookup, spread over `sandboxes`
/// sandboxes concurrently; checks every answer and returns how many were done.
pub async fn run(sandboxes: usize, lookups: usize) -> Result<usize, Error> {
    let entries: HashMap<String, String> = (0..100)
        .map(|i| (format!("key{i}"), format!("value{i}")))
        .collect();
    let addr = start_kv_service(entries).await.expect("bind loopback");
    let mut tasks = Vec::new();
    for s in 0..sandboxes {
        let sb = sandbox(addr).await?;
        let count = lookups / sandboxes + usize::from(s < lookups % sandboxes);
        tasks.push(tokio::spawn(async move {
            for i in 0..count {
                let key = format!("key{}", (s + i) % 100);
                let value: String = sb.call("call_host_echo_string", (key.clone(),)).await?;
                assert_eq!(value, key.replace("key", "value"));
            }
            Ok::<_, Error>(count)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await.expect("lookup task")?;
    }
    Ok(done)
}

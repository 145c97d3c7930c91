//! A guest of your own, loaded by path: what the `own_guest` example runs.

use hyperlight_async::{Error, Sandbox};

/// Loads the guest ELF at `path` (any `&str`, `String`, `&Path` or `PathBuf`), with the host
/// function `host_add(i32, i32) -> i32` the guide's guests call, and returns its
/// `greet(name) -> String`.
pub async fn greet(path: &str, name: &str) -> Result<String, Error> {
    let sandbox = Sandbox::builder(path)
        .host_fn("host_add", |a: i32, b: i32| a.wrapping_add(b))
        .build()
        .await?;
    sandbox.call("greet", (name.to_string(),)).await
}

//! Load a guest of your own by path and call it: the last step of `docs/guest-guide.md`, for a
//! guest made from the guide's template (`docs/guest-template`, which has `greet(String) ->
//! String`). The test guests of this repository are not involved.
//!
//! ```text
//! cp -r docs/guest-template ~/my-guest          # then point its hyperlight-guest path here
//! (cd ~/my-guest && cargo build --release --target x86_64-unknown-none)
//! cargo run --example own_guest -- ~/my-guest/target/x86_64-unknown-none/release/my-guest Ada
//! ```

#[tokio::main]
async fn main() -> Result<(), hyperlight_async::Error> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: own_guest <guest ELF> [name]");
        std::process::exit(2);
    };
    let name = args.next().unwrap_or_else(|| "world".to_string());
    println!(
        "{}",
        hyperlight_examples::own_guest::greet(&path, &name).await?
    );
    Ok(())
}

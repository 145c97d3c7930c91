//! The guest's logic: plain `no_std` Rust that knows nothing of the sandbox, so that it is unit
//! tested on the host (`cargo test --target x86_64-unknown-linux-gnu`). `src/main.rs` registers it.
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

use alloc::format;
use alloc::string::String;

/// The greeting for `name`.
pub fn greet(name: &str) -> String {
    format!("hello {name}")
}

/// `a / b`, or an error message the host receives as `GuestFunctionFailed`.
pub fn checked_div(a: i64, b: i64) -> Result<i64, String> {
    a.checked_div(b)
        .ok_or_else(|| String::from("division by zero"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_divides() {
        assert_eq!(greet("Ada"), "hello Ada");
        assert_eq!(checked_div(7, 2), Ok(3));
        assert!(checked_div(1, 0).is_err());
    }
}

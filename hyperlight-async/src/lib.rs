//! Async sandboxes on Tokio. The async API is the next milestone; today this crate re-exports the
//! blocking API of `hyperlight-sys`.
#![forbid(unsafe_code)]

pub use hyperlight_sys::*;

//! Shared code of the examples, so their tests can run them with small sizes.

pub mod async_io;
pub mod density;
pub mod hello;
pub mod many;
pub mod own_guest;
pub mod wasm_server;
pub mod web_server;
